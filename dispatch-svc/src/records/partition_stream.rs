//! A partition stream `{pN}:jobs` as its consumer group sees it: creating
//! the group, reading new entries, claiming pending ones, acknowledging
//! entries deleted while pending or that are not jobs, and who holds what.

use std::time::Duration;

use herald_common::keys::CONSUMER_GROUP;
use herald_common::redis_conn::RedisConn;
use redis::Value as RedisValue;

use super::replies::{StreamEntry, blocking_read, parse_entries, text};
use crate::error::DispatchError;

/// Creates the consumer group (and the stream), reading from the start;
/// a group that exists already is fine.
pub async fn ensure_group(conn: &mut RedisConn, stream: &str) -> Result<(), DispatchError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => Ok(()),
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The consumer group is gone (Redis lost its data): it must be created
/// again before reading goes on.
pub fn is_nogroup(e: &DispatchError) -> bool {
    matches!(e, DispatchError::Redis(r) if r.code() == Some("NOGROUP"))
}

/// Up to `count` entries never delivered to the group, for `consumer`,
/// waiting up to `block` for the first.
pub async fn read_new(
    conn: &mut RedisConn,
    stream: &str,
    consumer: &str,
    count: usize,
    block: Duration,
) -> Result<Vec<StreamEntry>, DispatchError> {
    let mut read = redis::cmd("XREADGROUP");
    read.arg("GROUP").arg(CONSUMER_GROUP).arg(consumer);
    blocking_read(read, conn, count, block, stream, ">").await
}

/// One `XAUTOCLAIM` page.
#[derive(Debug)]
pub struct Claimed {
    /// Where the next page starts; `0-0` once the pending list is done.
    pub next: String,
    pub entries: Vec<StreamEntry>,
    /// Ids still pending whose entries were deleted from the stream.
    pub deleted: Vec<String>,
}

/// Claims for `consumer` up to `count` entries pending longer than
/// `min_idle`, from `cursor` on. `None` when the answer is not a page.
pub async fn claim(
    conn: &mut RedisConn,
    stream: &str,
    consumer: &str,
    min_idle: Duration,
    cursor: &str,
    count: usize,
) -> Result<Option<Claimed>, DispatchError> {
    let answer: RedisValue = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .arg(consumer)
        .arg(min_idle.as_millis() as u64)
        .arg(cursor)
        .arg("COUNT")
        .arg(count)
        .query_async(conn)
        .await?;
    let RedisValue::Array(parts) = answer else { return Ok(None) };
    let mut parts = parts.into_iter();
    let next = parts.next().as_ref().and_then(text).unwrap_or_else(|| "0-0".to_owned());
    let entries = parts.next().map(parse_entries).unwrap_or_default();
    let deleted = match parts.next() {
        Some(RedisValue::Array(ids)) => ids.iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    Ok(Some(Claimed { next, entries, deleted }))
}

/// Acknowledges pending ids whose entries are gone: nothing to deliver.
pub async fn ack_deleted(conn: &mut RedisConn, stream: &str, ids: &[String]) -> Result<(), DispatchError> {
    let _: i64 = redis::cmd("XACK").arg(stream).arg(CONSUMER_GROUP).arg(ids).query_async(conn).await?;
    Ok(())
}

/// Acknowledges and deletes entries that are not jobs, in one round trip.
pub async fn drop_entries(conn: &mut RedisConn, stream: &str, ids: &[String]) -> Result<(), DispatchError> {
    redis::pipe().xack(stream, CONSUMER_GROUP, ids).ignore().xdel(stream, ids).ignore().query_async::<()>(conn).await?;
    Ok(())
}

/// The consumers holding pending entries of the group (`XPENDING` summary).
pub async fn pending_consumers(conn: &mut RedisConn, stream: &str) -> Result<Vec<String>, DispatchError> {
    let summary: RedisValue = redis::cmd("XPENDING").arg(stream).arg(CONSUMER_GROUP).query_async(conn).await?;
    Ok(summary_consumers(&summary))
}

fn summary_consumers(summary: &RedisValue) -> Vec<String> {
    let RedisValue::Array(parts) = summary else { return Vec::new() };
    match parts.get(3) {
        Some(RedisValue::Array(consumers)) => consumers
            .iter()
            .filter_map(|c| match c {
                RedisValue::Array(pair) => pair.first().and_then(text),
                _ => None,
            })
            .collect(),
        Some(RedisValue::Map(pairs)) => pairs.iter().filter_map(|(k, _)| text(k)).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xpending_summaries_name_their_consumers() {
        let bulk = |s: &str| RedisValue::BulkString(s.as_bytes().to_vec());
        let summary = RedisValue::Array(vec![
            RedisValue::Int(3),
            bulk("1-0"),
            bulk("3-0"),
            RedisValue::Array(vec![
                RedisValue::Array(vec![bulk("dsp_a"), bulk("2")]),
                RedisValue::Array(vec![bulk("dsp_b"), bulk("1")]),
            ]),
        ]);
        assert_eq!(summary_consumers(&summary), ["dsp_a", "dsp_b"]);
        let empty = RedisValue::Array(vec![RedisValue::Int(0), RedisValue::Nil, RedisValue::Nil, RedisValue::Nil]);
        assert!(summary_consumers(&empty).is_empty());
    }
}
