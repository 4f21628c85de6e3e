//! What a read batch loads in one pipelined round trip: the stored events
//! its jobs name (one `MGET`, or on a cluster, where events live in their
//! home partitions' slots, one `MGET` per home) and, for endpoints without
//! an actor, their records (`MGET`) and stored health (`HGETALL` each).

use std::collections::{BTreeMap, HashMap};

use herald_common::keys::Keys;
use herald_common::redis_conn::RedisConn;
use redis::Value as RedisValue;

use crate::error::DispatchError;

/// The answers of [`load_batch`], raw: parsing them is the caller's.
pub struct BatchLoad {
    /// Each asked-for event's stored bytes, in order; `None` when missing.
    pub events: Vec<Option<Vec<u8>>>,
    pub endpoints: StoredEndpoints,
}

/// One endpoint's stored record (raw JSON) and health hash.
pub struct StoredEndpoint {
    pub record: Option<Vec<u8>>,
    pub health: HashMap<String, String>,
}

/// The endpoints asked for, one item each, in order. Health hashes are
/// decoded as they are taken, so a batch holds no second copy of them.
pub struct StoredEndpoints {
    left: usize,
    records: std::vec::IntoIter<Option<Vec<u8>>>,
    health: std::vec::IntoIter<RedisValue>,
}

impl Iterator for StoredEndpoints {
    type Item = StoredEndpoint;

    fn next(&mut self) -> Option<StoredEndpoint> {
        self.left = self.left.checked_sub(1)?;
        let record = self.records.next().flatten();
        // A health hash that cannot be read is no stored health.
        let health = self.health.next().and_then(|value| redis::from_redis_value_ref(&value).ok()).unwrap_or_default();
        Some(StoredEndpoint { record, health })
    }
}

/// The events `(tenant, event id)` and the endpoints `endpoints`, in one
/// round trip.
pub async fn load_batch(
    conn: &mut RedisConn,
    keys: &Keys,
    events: &[(String, String)],
    endpoints: &[String],
) -> Result<BatchLoad, DispatchError> {
    // Event indexes by home (one home on a single Redis).
    let mut homes: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, (tenant, id)) in events.iter().enumerate() {
        homes.entry(keys.event_home(tenant, id)).or_default().push(i);
    }
    let mut pipe = redis::pipe();
    for indexes in homes.values() {
        let mut mget = redis::cmd("MGET");
        for &i in indexes {
            let (tenant, id) = &events[i];
            mget.arg(keys.event(tenant, id));
        }
        pipe.add_command(mget);
    }
    let (first, endpoints) = query_with_endpoints(conn, keys, pipe, homes.len(), endpoints).await?;
    let mut loaded: Vec<Option<Vec<u8>>> = vec![None; events.len()];
    for (indexes, answer) in homes.values().zip(&first) {
        let values: Vec<Option<Vec<u8>>> = redis::from_redis_value_ref(answer)?;
        for (&i, value) in indexes.iter().zip(values) {
            loaded[i] = value;
        }
    }
    let events = loaded;
    Ok(BatchLoad { events, endpoints })
}

/// The records and stored health of `endpoints`, in one round trip.
pub async fn load_endpoints(
    conn: &mut RedisConn,
    keys: &Keys,
    endpoints: &[String],
) -> Result<StoredEndpoints, DispatchError> {
    Ok(query_with_endpoints(conn, keys, redis::pipe(), 0, endpoints).await?.1)
}

/// Runs `pipe` (whose `leading` commands answer first) with the endpoint
/// records (`MGET`) and health hashes (`HGETALL` each) of `ids` appended.
async fn query_with_endpoints(
    conn: &mut RedisConn,
    keys: &Keys,
    mut pipe: redis::Pipeline,
    leading: usize,
    ids: &[String],
) -> Result<(Vec<RedisValue>, StoredEndpoints), DispatchError> {
    if !ids.is_empty() {
        let mut mget = redis::cmd("MGET");
        for id in ids {
            mget.arg(keys.endpoint(id));
        }
        pipe.add_command(mget);
        for id in ids {
            pipe.hgetall(keys.endpoint_health(id));
        }
    }
    let answers: Vec<RedisValue> = pipe.query_async(conn).await?;
    let mut answers = answers.into_iter();
    let first: Vec<RedisValue> = answers.by_ref().take(leading).collect();
    // Nothing follows the leading answers when no endpoint was asked for.
    let records: Vec<Option<Vec<u8>>> = match answers.next() {
        Some(value) => redis::from_redis_value_ref(&value)?,
        None => Vec::new(),
    };
    Ok((first, StoredEndpoints { left: ids.len(), records: records.into_iter(), health: answers }))
}
