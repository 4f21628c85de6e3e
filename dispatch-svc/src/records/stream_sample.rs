//! A sample of a partition's backlog for the stream gauges: the consumer
//! group's pending count (`XPENDING`) and lag (`XINFO GROUPS`) and the size
//! of the partition's retry set (`ZCARD`), read in one round trip.

use herald_common::keys::CONSUMER_GROUP;
use herald_common::redis_conn::RedisConn;
use redis::Value as RedisValue;

use super::replies::text;
use crate::error::DispatchError;

/// A partition's backlog as one sample saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamSample {
    /// Entries delivered to a consumer and not yet acknowledged.
    pub pending: Option<i64>,
    /// Entries the group has not read yet; `None` when Redis cannot tell.
    pub lag: Option<i64>,
    /// Members of the retry set.
    pub retrying: i64,
}

pub async fn sample(conn: &mut RedisConn, stream: &str, retry_set: &str) -> Result<StreamSample, DispatchError> {
    let (pending, groups, retrying): (RedisValue, RedisValue, i64) = redis::pipe()
        .cmd("XPENDING")
        .arg(stream)
        .arg(CONSUMER_GROUP)
        .cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .cmd("ZCARD")
        .arg(retry_set)
        .query_async(conn)
        .await?;
    Ok(StreamSample { pending: pending_count(&pending), lag: group_lag(&groups, CONSUMER_GROUP), retrying })
}

/// The count of an `XPENDING key group` summary.
fn pending_count(value: &RedisValue) -> Option<i64> {
    match value {
        RedisValue::Array(summary) => integer(summary.first()?),
        _ => None,
    }
}

/// The `lag` of one group in an `XINFO GROUPS` answer (Redis 7+; `None`
/// when Redis cannot tell, e.g. after entries were deleted mid-stream).
fn group_lag(value: &RedisValue, group: &str) -> Option<i64> {
    let RedisValue::Array(groups) = value else { return None };
    groups.iter().find_map(|g| {
        let fields = fields(g);
        let name = fields.iter().find(|(k, _)| k == "name").and_then(|(_, v)| text(v))?;
        if name != group {
            return None;
        }
        integer(fields.iter().find(|(k, _)| k == "lag").map(|(_, v)| *v)?)
    })
}

/// A number Redis answered as an integer or as its text.
fn integer(value: &RedisValue) -> Option<i64> {
    match value {
        RedisValue::Int(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// The field/value pairs of a RESP2 flat array or a RESP3 map.
fn fields(value: &RedisValue) -> Vec<(String, &RedisValue)> {
    match value {
        RedisValue::Array(items) => items.chunks_exact(2).filter_map(|kv| Some((text(&kv[0])?, &kv[1]))).collect(),
        RedisValue::Map(pairs) => pairs.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> RedisValue {
        RedisValue::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_pending_and_lag_from_resp2_and_resp3_answers() {
        let pending = RedisValue::Array(vec![RedisValue::Int(7), bulk("1-0"), bulk("2-0"), RedisValue::Nil]);
        assert_eq!(pending_count(&pending), Some(7));
        let group = |name: &str, lag: RedisValue| {
            RedisValue::Array(vec![
                bulk("name"),
                bulk(name),
                bulk("consumers"),
                RedisValue::Int(1),
                bulk("pending"),
                RedisValue::Int(7),
                bulk("lag"),
                lag,
            ])
        };
        let groups =
            RedisValue::Array(vec![group("other", RedisValue::Int(99)), group(CONSUMER_GROUP, RedisValue::Int(3))]);
        assert_eq!(group_lag(&groups, CONSUMER_GROUP), Some(3));
        let unknown = RedisValue::Array(vec![group(CONSUMER_GROUP, RedisValue::Nil)]);
        assert_eq!(group_lag(&unknown, CONSUMER_GROUP), None);
        let resp3 = RedisValue::Array(vec![RedisValue::Map(vec![
            (bulk("name"), bulk(CONSUMER_GROUP)),
            (bulk("lag"), RedisValue::Int(5)),
        ])]);
        assert_eq!(group_lag(&resp3, CONSUMER_GROUP), Some(5));
        assert_eq!(group_lag(&RedisValue::Nil, CONSUMER_GROUP), None);
    }
}
