//! Reading the registry's `changes` stream: where it ends now, and the
//! entries after a given id (`XREAD BLOCK`, no consumer group).

use std::time::Duration;

use herald_common::redis_conn::RedisConn;
use redis::Value as RedisValue;

use super::replies::{StreamEntry, blocking_read, parse_entries};
use crate::error::DispatchError;

/// The id of the stream's newest entry; `None` when it has none.
pub async fn newest_id(conn: &mut RedisConn, stream: &str) -> Result<Option<String>, DispatchError> {
    let newest: RedisValue =
        redis::cmd("XREVRANGE").arg(stream).arg("+").arg("-").arg("COUNT").arg(1).query_async(conn).await?;
    Ok(parse_entries(newest).into_iter().next().map(|(id, _)| id))
}

/// Up to `count` entries after `last`, waiting up to `block` for the first.
pub async fn read_after(
    conn: &mut RedisConn,
    stream: &str,
    last: &str,
    count: usize,
    block: Duration,
) -> Result<Vec<StreamEntry>, DispatchError> {
    blocking_read(redis::cmd("XREAD"), conn, count, block, stream, last).await
}
