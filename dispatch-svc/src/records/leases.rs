//! Partition leases `{pN}:lease` and the `dispatchers` heartbeat set:
//! taking a lease (`SET NX PX`), renewing it (compare-and-extend) and
//! releasing it (compare-and-delete), and counting live dispatchers.

use std::sync::LazyLock;
use std::time::Duration;

use herald_common::keys::Keys;
use herald_common::redis_conn::RedisConn;
use redis::Script;

use crate::error::DispatchError;

static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

fn ttl_ms(ttl: Duration) -> u64 {
    ttl.as_millis() as u64
}

/// Heartbeats `id` into the dispatcher set at `now_ms`, drops members
/// silent for `expiry`, and answers how many are left, in one round trip.
pub async fn heartbeat(
    conn: &mut RedisConn,
    keys: &Keys,
    id: &str,
    now_ms: i64,
    expiry: Duration,
) -> Result<u32, DispatchError> {
    let expiry_ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
    let (_, _, members): (i64, i64, u32) = redis::pipe()
        .zadd(keys.dispatchers(), id, now_ms)
        .cmd("ZREMRANGEBYSCORE")
        .arg(keys.dispatchers())
        .arg("-inf")
        .arg(now_ms - expiry_ms)
        .zcard(keys.dispatchers())
        .query_async(conn)
        .await?;
    Ok(members)
}

/// Takes `id` out of the dispatcher set.
pub async fn leave(conn: &mut RedisConn, keys: &Keys, id: &str) -> Result<(), DispatchError> {
    redis::cmd("ZREM").arg(keys.dispatchers()).arg(id).query_async::<()>(conn).await?;
    Ok(())
}

/// Extends the leases of `partitions` held by `id` to `ttl`, in one round
/// trip (loading the script once if Redis lost it). The outer error is a
/// script that cannot be loaded; the inner result is the renewal's: for each
/// partition, whether `id` still held it.
pub async fn renew_all(
    conn: &mut RedisConn,
    keys: &Keys,
    partitions: &[u32],
    id: &str,
    ttl: Duration,
) -> Result<Result<Vec<bool>, DispatchError>, DispatchError> {
    let mut pipe = redis::pipe();
    for p in partitions {
        pipe.invoke_script(RENEW.key(keys.partition_lease(*p)).arg(id).arg(ttl_ms(ttl)));
    }
    let renewed: Result<Vec<i64>, _> = pipe.query_async(conn).await;
    let renewed = match renewed {
        Err(e) if herald_common::redis_conn::is_no_script(&e) => {
            RENEW.prepare_invoke().load_async(conn).await?;
            pipe.query_async(conn).await
        }
        other => other,
    };
    Ok(renewed.map(|answers| answers.into_iter().map(|ok| ok == 1).collect()).map_err(DispatchError::from))
}

/// Extends the lease of partition `p` if `id` holds it; answers whether it did.
pub async fn renew(conn: &mut RedisConn, keys: &Keys, p: u32, id: &str, ttl: Duration) -> Result<bool, DispatchError> {
    let renewed: i64 = RENEW.key(keys.partition_lease(p)).arg(id).arg(ttl_ms(ttl)).invoke_async(conn).await?;
    Ok(renewed == 1)
}

/// For each partition, whether someone holds its lease.
pub async fn held(conn: &mut RedisConn, keys: &Keys, partitions: &[u32]) -> Result<Vec<bool>, DispatchError> {
    let mut exists = redis::pipe();
    for p in partitions {
        exists.exists(keys.partition_lease(*p));
    }
    Ok(exists.query_async(conn).await?)
}

/// Takes the free leases of `partitions` for `id` for `ttl`, in one round
/// trip; for each partition, whether it was taken.
pub async fn acquire(
    conn: &mut RedisConn,
    keys: &Keys,
    partitions: &[u32],
    id: &str,
    ttl: Duration,
) -> Result<Vec<bool>, DispatchError> {
    let mut pipe = redis::pipe();
    for p in partitions {
        pipe.cmd("SET").arg(keys.partition_lease(*p)).arg(id).arg("NX").arg("PX").arg(ttl_ms(ttl));
    }
    let answers: Vec<Option<String>> = pipe.query_async(conn).await?;
    Ok(answers.iter().map(Option::is_some).collect())
}

/// Deletes the lease of partition `p` if `id` holds it.
pub async fn release(conn: &mut RedisConn, keys: &Keys, p: u32, id: &str) -> Result<(), DispatchError> {
    let _: i64 = RELEASE.key(keys.partition_lease(p)).arg(id).invoke_async(conn).await?;
    Ok(())
}
