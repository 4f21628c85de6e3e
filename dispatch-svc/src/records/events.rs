//! What a read batch loads in one pipelined round trip: the stored events
//! its jobs name (one `MGET`, or on a cluster, where events live in their
//! home partitions' slots, one `MGET` per home) and, for endpoints without
//! an actor, their records and packed health (an `MGET` each; on a cluster
//! the client splits them by slot).

use std::collections::BTreeMap;

use herald_common::keys::Keys;
use herald_common::redis_conn::RedisConn;
use redis::Value as RedisValue;

use super::HealthRecord;
use crate::error::DispatchError;

/// The answers of [`load_batch`], raw: parsing them is the caller's.
pub struct BatchLoad {
    /// Each asked-for event's stored bytes, in order; `None` when missing.
    pub events: Vec<Option<Vec<u8>>>,
    pub endpoints: StoredEndpoints,
}

/// One endpoint's stored record (raw JSON) and packed health, when any.
pub struct StoredEndpoint {
    pub record: Option<Vec<u8>>,
    pub health: Option<HealthRecord>,
}

/// The endpoints asked for, one item each, in order.
pub struct StoredEndpoints {
    records: std::vec::IntoIter<Option<Vec<u8>>>,
    health: std::vec::IntoIter<Option<Vec<u8>>>,
}

impl Iterator for StoredEndpoints {
    type Item = StoredEndpoint;

    fn next(&mut self) -> Option<StoredEndpoint> {
        let record = self.records.next()?;
        // Health that cannot be read is no stored health.
        let health = self.health.next().flatten().as_deref().and_then(HealthRecord::unpack);
        Some(StoredEndpoint { record, health })
    }
}

/// The events `(tenant, event id)` and the endpoints `endpoints`, in one
/// round trip.
pub async fn load_batch(
    conn: &mut RedisConn,
    keys: &Keys,
    events: &[(&str, &str)],
    endpoints: &[String],
) -> Result<BatchLoad, DispatchError> {
    let mut pipe = redis::pipe();
    let by_home = SlotMget::add(
        &mut pipe,
        events.iter().map(|(tenant, id)| (keys.event_home(tenant, id), keys.event(tenant, id))),
    );
    let (mut answers, endpoints) = query_with_endpoints(conn, keys, pipe, endpoints).await?;
    let events = by_home.take(&mut answers)?;
    Ok(BatchLoad { events, endpoints })
}

/// The records and stored health of `endpoints`, in one round trip.
pub async fn load_endpoints(
    conn: &mut RedisConn,
    keys: &Keys,
    endpoints: &[String],
) -> Result<StoredEndpoints, DispatchError> {
    Ok(query_with_endpoints(conn, keys, redis::pipe(), endpoints).await?.1)
}

/// Runs `pipe` with the endpoint records and packed health of `ids`
/// appended, and answers what `pipe` asked and the endpoints.
async fn query_with_endpoints(
    conn: &mut RedisConn,
    keys: &Keys,
    mut pipe: redis::Pipeline,
    ids: &[String],
) -> Result<(std::vec::IntoIter<RedisValue>, StoredEndpoints), DispatchError> {
    let leading = pipe.len();
    let records = SlotMget::add(&mut pipe, ids.iter().map(|id| (0, keys.endpoint(id))));
    let health = SlotMget::add(&mut pipe, ids.iter().map(|id| (keys.endpoint_shard(id), keys.endpoint_health(id))));
    let answers: Vec<RedisValue> = pipe.query_async(conn).await?;
    let mut answers = answers.into_iter();
    let first: Vec<RedisValue> = answers.by_ref().take(leading).collect();
    let (records, health) = (records.take(&mut answers)?, health.take(&mut answers)?);
    Ok((first.into_iter(), StoredEndpoints { records: records.into_iter(), health: health.into_iter() }))
}

/// Values read with one `MGET` per slot group (a cluster keeps each
/// partition's keys, and the registry's, in a slot of their own; one
/// Redis has one group), put back in the order they were asked for.
struct SlotMget {
    asked: usize,
    /// Per `MGET`, in pipeline order, the places of its keys.
    groups: Vec<Vec<usize>>,
}

impl SlotMget {
    /// Appends the `MGET`s for `(group, key)` pairs to `pipe`.
    fn add(pipe: &mut redis::Pipeline, keys: impl Iterator<Item = (u32, String)>) -> SlotMget {
        let mut by_group: BTreeMap<u32, (Vec<usize>, redis::Cmd)> = BTreeMap::new();
        let mut asked = 0;
        for (i, (group, key)) in keys.enumerate() {
            let (indexes, mget) = by_group.entry(group).or_insert_with(|| (Vec::new(), redis::cmd("MGET")));
            indexes.push(i);
            mget.arg(key);
            asked = i + 1;
        }
        let groups = by_group
            .into_values()
            .map(|(indexes, mget)| {
                pipe.add_command(mget);
                indexes
            })
            .collect();
        SlotMget { asked, groups }
    }

    /// Takes this read's answers off the front of `answers`.
    fn take(self, answers: &mut impl Iterator<Item = RedisValue>) -> Result<Vec<Option<Vec<u8>>>, DispatchError> {
        let mut values = vec![None; self.asked];
        for indexes in self.groups {
            let answer: Vec<Option<Vec<u8>>> =
                answers.next().map(redis::from_redis_value).transpose()?.unwrap_or_default();
            for (i, value) in indexes.into_iter().zip(answer) {
                values[i] = value;
            }
        }
        Ok(values)
    }
}
