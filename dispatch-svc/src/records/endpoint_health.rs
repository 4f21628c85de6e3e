//! `ep:{id}:hp`, the stored side of an endpoint's circuit breaker: one
//! packed value ([`HealthRecord::pack`]), written with one `PSETEX` and
//! read with the batch's `MGET`. The first layout, a hash at
//! `ep:{id}:health`, is still read ([`HealthRecord::from_hash`]) for
//! endpoints whose epoch began before the installation packed health.
//!
//! The record outlives the endpoint (its id may be taken again) and a
//! deactivation, so it names the incarnation it was written for: `epoch`
//! ([`crate::lifecycle::health_epoch`]) changes when an endpoint is created
//! again under the same id or activated again. A record of another epoch
//! is read as no record at all, so neither a new endpoint nor a re-activated
//! one inherits an open circuit or an old disable clock.

use std::collections::HashMap;

use herald_common::keys::Keys;
use herald_common::model::{EndpointRecord, Millis};
use herald_common::redis_conn::RedisConn;
use herald_common::{ids, time_fmt};
use redis::AsyncCommands;

use super::Records;
use super::compact::{Decoder, Encoder};
use crate::error::DispatchError;

/// The packed layout's version, its first byte.
const PACKED: u8 = 1;
const HAS_LAST_SUCCESS: u8 = 1;
const HAS_FAILING_SINCE: u8 = 1 << 1;
const HAS_TOKEN_ERROR: u8 = 1 << 2;
const HAS_OPEN_UNTIL: u8 = 1 << 3;
const HAS_EPOCH: u8 = 1 << 4;

/// Live health of an endpoint, stored in `ep:{id}:hp`: what
/// `GetEndpointHealth` shows, and what a new actor's breaker starts from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthRecord {
    pub circuit: String,
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub last_success_at: Option<Millis>,
    pub failing_since: Option<Millis>,
    pub token_error: Option<String>,
    /// When an open circuit lets the next probe through (wall clock, ms).
    pub open_until: Option<Millis>,
    /// The current cool-down, which doubles on each re-open.
    pub cool_down_ms: u64,
    /// The endpoint incarnation this was written for; `None` in records
    /// written before epochs existed, which are taken as current.
    pub epoch: Option<String>,
}

/// An endpoint with no attempts yet: closed, nothing failing.
impl Default for HealthRecord {
    fn default() -> Self {
        HealthRecord::from_hash(&HashMap::new())
    }
}

impl HealthRecord {
    /// The stored value: a version byte, a byte saying which optional
    /// values follow, then the values in field order.
    pub fn pack(&self) -> Vec<u8> {
        let flags = [
            (self.last_success_at.is_some(), HAS_LAST_SUCCESS),
            (self.failing_since.is_some(), HAS_FAILING_SINCE),
            (self.token_error.is_some(), HAS_TOKEN_ERROR),
            (self.open_until.is_some(), HAS_OPEN_UNTIL),
            (self.epoch.is_some(), HAS_EPOCH),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit);
        let mut out = Encoder::with_capacity(48);
        out.byte(PACKED);
        out.byte(flags);
        out.text(&self.circuit);
        out.uint(u64::from(self.in_flight));
        out.uint(u64::from(self.consecutive_failures));
        for millis in [self.last_success_at, self.failing_since].into_iter().flatten() {
            out.int(millis);
        }
        if let Some(error) = &self.token_error {
            out.text(error);
        }
        if let Some(until) = self.open_until {
            out.int(until);
        }
        out.uint(self.cool_down_ms);
        if let Some(epoch) = &self.epoch {
            out.text(epoch);
        }
        out.finish()
    }

    /// Reads a [`HealthRecord::pack`] value; `None` for bytes it does not
    /// write.
    pub fn unpack(raw: &[u8]) -> Option<Self> {
        let mut input = Decoder::new(raw);
        if input.byte()? != PACKED {
            return None;
        }
        let flags = input.byte()?;
        let has = |bit: u8| flags & bit != 0;
        let circuit = input.text()?;
        let in_flight = u32::try_from(input.uint()?).ok()?;
        let consecutive_failures = u32::try_from(input.uint()?).ok()?;
        let last_success_at = if has(HAS_LAST_SUCCESS) { Some(input.int()?) } else { None };
        let failing_since = if has(HAS_FAILING_SINCE) { Some(input.int()?) } else { None };
        let token_error = if has(HAS_TOKEN_ERROR) { Some(input.text()?) } else { None };
        let open_until = if has(HAS_OPEN_UNTIL) { Some(input.int()?) } else { None };
        let cool_down_ms = input.uint()?;
        let epoch = if has(HAS_EPOCH) { Some(input.text()?) } else { None };
        input.is_empty().then_some(HealthRecord {
            circuit,
            in_flight,
            consecutive_failures,
            last_success_at,
            failing_since,
            token_error,
            open_until,
            cool_down_ms,
            epoch,
        })
    }

    /// Reads a record of the first layout, a hash of text fields.
    pub fn from_hash(hash: &HashMap<String, String>) -> Self {
        let millis = |k: &str| hash.get(k).and_then(|v| v.parse::<Millis>().ok());
        HealthRecord {
            circuit: hash.get("circuit").cloned().unwrap_or_else(|| "closed".to_owned()),
            in_flight: hash.get("inFlight").and_then(|v| v.parse().ok()).unwrap_or(0),
            consecutive_failures: hash.get("consecutiveFailures").and_then(|v| v.parse().ok()).unwrap_or(0),
            last_success_at: millis("lastSuccessAt"),
            failing_since: millis("failingSince"),
            token_error: hash.get("tokenError").filter(|v| !v.is_empty()).cloned(),
            open_until: millis("openUntil"),
            cool_down_ms: hash.get("coolDownMs").and_then(|v| v.parse().ok()).unwrap_or(0),
            epoch: hash.get("epoch").filter(|v| !v.is_empty()).cloned(),
        }
    }

    /// This record if it was written for `epoch`, else a clean one.
    pub fn for_epoch(self, epoch: &str) -> Self {
        if self.epoch.as_deref().is_none_or(|own| own == epoch) { self } else { HealthRecord::default() }
    }

    /// The circuit as it is at `now_ms`: an open circuit whose cool-down
    /// has passed lets a probe through, whatever was stored with the last
    /// attempt.
    pub fn circuit_at(&self, now_ms: Millis) -> &str {
        match self.open_until {
            Some(until) if self.circuit == "open" && until <= now_ms => "half_open",
            _ => &self.circuit,
        }
    }
}

/// Since when this installation stores health packed (ms): the first
/// dispatcher to start sets it. A value that does not read as a time
/// counts as always (every missing record is looked for in the first
/// layout: slower, never wrong).
pub(super) async fn packed_since(conn: &mut RedisConn, keys: &Keys) -> Result<Millis, DispatchError> {
    let now = time_fmt::now_millis();
    let before: Option<String> =
        redis::cmd("SET").arg(keys.packed_health_since()).arg(now).arg("NX").arg("GET").query_async(conn).await?;
    Ok(before.map_or(now, |at| at.parse().unwrap_or(Millis::MAX)))
}

impl Records {
    /// An endpoint's stored health for its current record (clean when
    /// none).
    pub async fn health(&self, record: &EndpointRecord) -> Result<HealthRecord, DispatchError> {
        let mut conn = self.conn.clone();
        let packed: Option<Vec<u8>> = conn.get(self.keys.endpoint_health(&record.id)).await?;
        if let Some(health) = packed.as_deref().and_then(HealthRecord::unpack) {
            return Ok(health);
        }
        Ok(self.first_layout_health([record]).await?.remove(&record.id).unwrap_or_default())
    }

    /// The health `records` (endpoints found without packed health) left
    /// in the first layout, by endpoint id: one round trip for those whose
    /// epoch began before the installation packed health, none otherwise.
    pub async fn first_layout_health<'a>(
        &self,
        records: impl IntoIterator<Item = &'a EndpointRecord>,
    ) -> Result<HashMap<String, HealthRecord>, DispatchError> {
        let ids: Vec<&str> = records
            .into_iter()
            .filter(|record| epoch_began(record) < self.packed_health_since)
            .map(|record| record.id.as_str())
            .collect();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.keys.first_layout_health(id));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn.clone()).await?;
        let found = ids.into_iter().zip(hashes).filter(|(_, hash)| !hash.is_empty());
        Ok(found.map(|(id, hash)| (id.to_owned(), HealthRecord::from_hash(&hash))).collect())
    }
}

/// When the endpoint's current epoch began (created or activated again);
/// `0` when its generation is not a Herald id.
fn epoch_began(record: &EndpointRecord) -> Millis {
    ids::created_millis(&record.generation).unwrap_or(0).max(record.activated_at.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(epoch: Option<&str>) -> HealthRecord {
        HealthRecord {
            circuit: "open".into(),
            consecutive_failures: 7,
            failing_since: Some(1_000),
            epoch: epoch.map(str::to_owned),
            ..HealthRecord::default()
        }
    }

    #[test]
    fn a_record_of_another_epoch_reads_as_clean() {
        assert_eq!(failing(Some("g1@0")).for_epoch("g1@0"), failing(Some("g1@0")));
        assert_eq!(failing(Some("g1@0")).for_epoch("g2@0"), HealthRecord::default());
        assert_eq!(failing(Some("g1@0")).for_epoch("g1@5"), HealthRecord::default(), "activated again");
        assert_eq!(failing(None).for_epoch("g1@0"), failing(None), "written before epochs existed");
    }

    #[test]
    fn records_round_trip_through_the_packed_layout() {
        let full = HealthRecord {
            in_flight: 3,
            last_success_at: Some(1_700_000_000_000),
            token_error: Some("invalid_client".into()),
            open_until: Some(-5),
            cool_down_ms: 60_000,
            ..failing(Some("gen_01m8ry9bqs9h9d9hw6b7j3w6ns@1700000000123"))
        };
        for record in [HealthRecord::default(), failing(None), full] {
            let packed = record.pack();
            assert_eq!(HealthRecord::unpack(&packed), Some(record.clone()));
            for cut in 0..packed.len() {
                assert_eq!(HealthRecord::unpack(&packed[..cut]), None, "cut at {cut}");
            }
            let mut longer = packed.clone();
            longer.push(0);
            assert_eq!(HealthRecord::unpack(&longer), None);
        }
        assert!(HealthRecord::default().pack().len() < 16);
        assert_eq!(HealthRecord::unpack(b"{\"circuit\":\"open\"}"), None);
    }

    #[test]
    fn records_of_the_first_layout_read_from_their_hash() {
        let hash: HashMap<String, String> = [
            ("circuit", "open"),
            ("inFlight", "0"),
            ("consecutiveFailures", "7"),
            ("lastSuccessAt", ""),
            ("failingSince", "1000"),
            ("tokenError", "invalid_client"),
            ("openUntil", ""),
            ("coolDownMs", "0"),
            ("epoch", "g1@3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let record = HealthRecord { token_error: Some("invalid_client".into()), ..failing(Some("g1@3")) };
        assert_eq!(HealthRecord::from_hash(&hash), record);
    }
}
