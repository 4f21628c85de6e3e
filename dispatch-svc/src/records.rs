//! Delivery records in Redis: what the Dispatch API shows, and the one write
//! that settles a stream entry.
//!
//! Data model (keys from [`Keys`]):
//! - `dlv:{hour}`: one hash per hour of delivery creation (the ULID time of
//!   the delivery id), expiring `HERALD_EVENT_RETENTION` after its hour
//!   ends. Field `<delivery id>` is the delivery's state with its latest
//!   attempt; `<id>.<n>` an earlier attempt ([`codec`]). A delivery costs
//!   fields in a shared hash, not keys of its own.
//! - `dlv:{hour}:ok`: only when `HERALD_SUCCESS_RETENTION` is shorter than
//!   the event retention, the states of the hour's *delivered* deliveries,
//!   expiring the success retention after the hour ends; the settlement
//!   that writes one there removes any earlier state from `dlv:{hour}`
//!   ([`Retention`]). A listing skips an id whose state has expired.
//!
//! There is no listing index: the stored event keeps its deliveries' ids,
//! and lists read them through the tenant's event log ([`listing`]). The
//! index of the first layout (`tenant:{t}:dlvs`) is read for events stored
//! before, never written.
//!
//! A first attempt is written as `pending` (one pipeline per read batch,
//! [`Records::record_pending`]) before it is handed to its actor, so a
//! delivery held back is listed before it is tried.
//!
//! **Invariant:** a stream entry is acknowledged only in [`Records::settle`],
//! in the same `MULTI` as its outcome (state, attempt, next retry), so a
//! crash either loses both or neither. Settlements from every actor go
//! through one writer ([`writer`]) that stores whatever queued up during its
//! previous write in one `MULTI`, and answers each caller once its own
//! outcome is stored. A `fifo` job held for its retry by its actor
//! ([`Settlement::held`]) has its attempt stored without the
//! acknowledgement: the entry stays pending until the final outcome.
//!
//! `ep:{id}:hp` (one packed value, written with each settled attempt that
//! changes it) is the endpoint's health: what `GetEndpointHealth` shows and
//! what a new actor's circuit breaker carries on from ([`HealthRecord`], for
//! one epoch of the endpoint).

use std::collections::{BTreeMap, HashMap};

use herald_common::keys::Keys;
use herald_common::model::{Job, Millis};
use herald_common::redis_conn::RedisConn;
use herald_common::{ids, telemetry, time_fmt};

use crate::error::DispatchError;

pub mod changes_stream;
mod codec;
mod compact;
mod endpoint_health;
pub mod events;
pub mod leases;
mod listing;
mod parking;
pub mod partition_stream;
mod replies;
mod request_shape;
mod requeue;
pub mod retry_set;
pub mod stream_sample;
mod writer;

pub use codec::Waiting;
pub use endpoint_health::HealthRecord;
pub use listing::ListFilter;
pub use replies::StreamEntry;
pub use request_shape::{KnownValues, REDACTED, RequestShape, SentRequest, is_varying};

use codec::{State, attempt_field, decode_attempt, decode_state, encode_attempt, encode_state};
use writer::{HealthWrite, Write, Writer};

const HOUR_MS: i64 = 3_600_000;

/// A delivery id and its encoded state: one field of an hour bucket.
type StateField<'a> = (&'a str, Vec<u8>);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Retrying,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Failed => "failed",
        }
    }
}

/// One attempt, as the latest in a delivery's state or in a field of its
/// own (see `codec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptRecord {
    pub n: u32,
    pub at: Millis,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub response_body: String,
    /// What was sent; `None` when nothing was (the attempt failed before).
    pub sent: Option<SentRequest>,
}

/// A delivery as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub next_attempt_at: Option<Millis>,
    pub waiting: Waiting,
    pub traceparent: Option<String>,
    /// The endpoint incarnation it was published for (see [`Job::generation`]).
    pub generation: Option<String>,
    /// The latest attempt only, except from [`Records::get`], which reads
    /// them all.
    pub attempts: Vec<AttemptRecord>,
}

/// The stream entry a settlement acknowledges.
#[derive(Clone, Debug)]
pub struct Entry {
    pub partition: u32,
    pub id: String,
}

/// The outcome of one job, stored and acknowledged in one step.
#[derive(Clone, Debug)]
pub struct Settlement<'a> {
    pub job: &'a Job,
    pub entry: &'a Entry,
    pub event_type: Option<&'a str>,
    /// `None` when no attempt was made (the job was not attempted).
    pub attempt: Option<AttemptRecord>,
    pub status: DeliveryStatus,
    /// The next job and when it is due.
    pub retry: Option<(Millis, Job)>,
    /// A `fifo` job its actor keeps and tries again itself at this time.
    /// Its stream entry is not acknowledged: it stays pending (and so
    /// survives a crash) until the job's final outcome is stored.
    pub held: Option<Millis>,
}

/// The hour bucket of a delivery id (the hour it was created in).
pub fn bucket_of(id: &str) -> Option<i64> {
    ids::created_millis(id).map(|ms| ms.div_euclid(HOUR_MS))
}

/// When an hour bucket expires: a retention after the hour ends, so every
/// delivery in it is kept at least the retention.
fn bucket_expiry(hour: i64, retention_ms: i64) -> i64 {
    hour.saturating_add(1).saturating_mul(HOUR_MS).saturating_add(retention_ms)
}

/// How long delivery records are kept, in ms.
#[derive(Clone, Copy, Debug)]
pub struct Retention {
    /// Every record: `HERALD_EVENT_RETENTION`.
    pub all_ms: i64,
    /// A delivered delivery's state when it is kept for less
    /// (`HERALD_SUCCESS_RETENTION`): it is then stored in the hour's
    /// delivered bucket, which expires sooner.
    pub delivered_ms: Option<i64>,
}

impl Retention {
    pub fn new(all: std::time::Duration, delivered: std::time::Duration) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1);
        let all_ms = ms(all);
        Retention { all_ms, delivered_ms: Some(ms(delivered)).filter(|d| *d < all_ms) }
    }
}

#[derive(Clone)]
pub struct Records {
    conn: RedisConn,
    keys: Keys,
    retention: Retention,
    writer: Writer,
    /// Request shapes this process stored, by (shard, hour bucket, shape id).
    shapes_stored: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<(u32, i64, u64)>>>,
    /// When the installation first stored health packed: an endpoint
    /// whose epoch began before may still have it in the first layout.
    packed_health_since: Millis,
}

/// Past this many remembered shapes, the memory is cleared (storing a
/// shape again is harmless).
const SHAPES_REMEMBERED: usize = 10_000;

impl Records {
    /// Starts the outcome writer on the current runtime, once it knows
    /// since when the installation stores health packed.
    pub async fn start(conn: RedisConn, keys: Keys, retention: Retention) -> Result<Self, DispatchError> {
        let packed_health_since = endpoint_health::packed_since(&mut conn.clone(), &keys).await?;
        let writer = Writer::start(conn.clone(), keys.clone(), retention);
        Ok(Records { conn, keys, retention, writer, shapes_stored: Default::default(), packed_health_since })
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// Stores outcomes and acknowledges their stream entries, atomically,
    /// with the endpoint's health when given.
    pub async fn settle(
        &self,
        settlements: &[Settlement<'_>],
        health: Option<(&str, &HealthRecord)>,
    ) -> Result<(), DispatchError> {
        if settlements.is_empty() && health.is_none() {
            return Ok(());
        }
        let now = time_fmt::now_millis();
        let writes = settlements.iter().map(|s| self.write_of(s, now)).collect();
        let health = health.map(|(endpoint_id, health)| HealthWrite {
            shard: self.keys.endpoint_shard(endpoint_id),
            key: self.keys.endpoint_health(endpoint_id),
            value: health.pack(),
        });
        let written = self.writer.write(writes, health).await;
        if written.is_err() {
            // A shape may have been remembered as stored with a write that failed.
            self.shapes().clear();
        }
        written
    }

    fn shapes(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(u32, i64, u64)>> {
        // Only inserts and clears happen under this lock: a panic cannot leave it half-changed.
        self.shapes_stored.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The shape field to store beside an attempt, unless this process
    /// stored it in that bucket already.
    fn shape_to_store(&self, shard: u32, bucket: i64, sent: &SentRequest) -> Option<(String, Vec<u8>)> {
        let shape = sent.shape.as_deref()?;
        let mut stored = self.shapes();
        if stored.len() >= SHAPES_REMEMBERED {
            stored.clear();
        }
        stored
            .insert((shard, bucket, sent.shape_id))
            .then(|| (request_shape::shape_field(sent.shape_id), shape.encode().into_bytes()))
    }

    fn write_of(&self, s: &Settlement<'_>, now: Millis) -> Write {
        let job = s.job;
        let id = job.delivery_id.as_str();
        let waiting = match (&s.retry, s.held) {
            (Some(_), _) => Waiting::RetrySet,
            (None, Some(_)) => Waiting::Actor,
            (None, None) => Waiting::Nothing,
        };
        let state = State {
            status: s.status,
            attempt_count: s.attempt.as_ref().map_or(job.attempt.saturating_sub(1), |a| a.n),
            updated_at: now,
            next_attempt_at: s.retry.as_ref().map(|(due, _)| *due).or(s.held),
            waiting,
            event_type: s.event_type.unwrap_or_default(),
            last_attempt: s.attempt.as_ref(),
        };
        let state = (id.to_owned(), encode_state(job, &state));
        // A delivered state kept for less than the rest goes to the bucket
        // that expires sooner.
        let (mut fields, delivered) = match self.retention.delivered_ms {
            Some(_) if s.status == DeliveryStatus::Delivered => (Vec::new(), Some(state)),
            _ => (vec![state], None),
        };
        // An attempt more will follow: it gets a field of its own, as the
        // state's latest attempt will be the next one.
        if let Some(attempt) = &s.attempt
            && waiting != Waiting::Nothing
        {
            fields.push((attempt_field(id, attempt.n), encode_attempt(id, attempt)));
        }
        // Beside the stream entry it acknowledges, so both are one step.
        let shard = self.keys.record_shard(s.entry.partition);
        let bucket = bucket_of(id).unwrap_or(now.div_euclid(HOUR_MS));
        if let Some(field) =
            s.attempt.as_ref().and_then(|a| a.sent.as_ref()).and_then(|sent| self.shape_to_store(shard, bucket, sent))
        {
            fields.push(field);
        }
        Write {
            shard,
            bucket,
            fields,
            delivered,
            retry: s.retry.as_ref().map(|(due, next)| (s.entry.partition, *due, retry_set::encode_job(next))),
            ack: s.held.is_none().then(|| (s.entry.partition, s.entry.id.clone())),
            park: None,
        }
    }

    /// Makes first attempts visible as `pending` as soon as a dispatcher has
    /// read them, so a delivery held back (rate limit, in-flight cap, open
    /// circuit, `fifo` order) is listed before it is tried. Only jobs read
    /// new from the stream come here: no outcome of theirs can be stored yet,
    /// and their settlement is written after this returns.
    pub async fn record_pending(&self, waiting: &[(&Job, &str)]) -> Result<(), DispatchError> {
        if waiting.is_empty() {
            return Ok(());
        }
        let now = time_fmt::now_millis();
        // Per (record shard, hour bucket): the states to write there.
        let mut buckets: BTreeMap<(u32, i64), Vec<StateField<'_>>> = BTreeMap::new();
        for (job, event_type) in waiting {
            let id = job.delivery_id.as_str();
            let state = State {
                status: DeliveryStatus::Pending,
                attempt_count: 0,
                updated_at: now,
                next_attempt_at: None,
                waiting: Waiting::Nothing,
                event_type,
                last_attempt: None,
            };
            let bucket = bucket_of(id).unwrap_or(now.div_euclid(HOUR_MS));
            let shard = self.shard_of(id);
            buckets.entry((shard, bucket)).or_default().push((id, encode_state(job, &state)));
        }
        // Not atomic: each write stands alone, and on a cluster they go to
        // the slots of their shards.
        let mut pipe = redis::pipe();
        for ((shard, hour), fields) in &buckets {
            let key = self.keys.delivery_bucket(*shard, *hour);
            pipe.hset_multiple(&key, fields).ignore();
            pipe.pexpire_at(&key, bucket_expiry(*hour, self.retention.all_ms)).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// The record shard of a delivery, from the partition its id names.
    fn shard_of(&self, id: &str) -> u32 {
        self.keys.record_shard(ids::delivery_partition(id).unwrap_or(0))
    }

    /// The hour bucket holding a delivery.
    fn bucket_key(&self, id: &str) -> String {
        self.keys.delivery_bucket(self.shard_of(id), bucket_of(id).unwrap_or_default())
    }

    /// The hour bucket holding a delivered delivery's state when delivered
    /// states are kept for less (see [`Retention::delivered_ms`]). Reads
    /// look there whatever this process's setting: the states another
    /// setting wrote stay found.
    fn delivered_bucket_key(&self, id: &str) -> String {
        self.keys.delivered_bucket(self.shard_of(id), bucket_of(id).unwrap_or_default())
    }

    /// A delivery with all its attempts, if it exists and belongs to `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<DeliveryRecord>, DispatchError> {
        let Some(mut record) = self.load_many(&[id]).await?.pop() else { return Ok(None) };
        if record.tenant != tenant {
            return Ok(None);
        }
        let latest = record.attempts.pop();
        let earlier = latest.as_ref().map_or(record.attempt_count, |a| a.n.saturating_sub(1));
        if earlier > 0 {
            let fields: Vec<String> = (1..=earlier).map(|n| attempt_field(id, n)).collect();
            let mut conn = self.conn.clone();
            let raw: Vec<Option<Vec<u8>>> =
                redis::cmd("HMGET").arg(self.bucket_key(id)).arg(&fields).query_async(&mut conn).await?;
            record.attempts = raw.iter().flatten().filter_map(|a| decode_attempt(id, a)).collect();
        }
        record.attempts.extend(latest);
        self.read_shapes(id, &mut record.attempts).await?;
        for attempt in &mut record.attempts {
            let Some(sent) = attempt.sent.as_mut() else { continue };
            let traceparent = telemetry::attempt_traceparent(None, &record.id, attempt.n);
            sent.restore_known(&KnownValues { event_id: &record.event_id, traceparent: traceparent.as_deref() });
        }
        Ok(Some(record))
    }

    /// Fills in the request shapes of a delivery's attempts from its bucket.
    async fn read_shapes(&self, id: &str, attempts: &mut [AttemptRecord]) -> Result<(), DispatchError> {
        let mut ids: Vec<u64> = attempts.iter().filter_map(|a| a.sent.as_ref()).map(|s| s.shape_id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Ok(());
        }
        let fields: Vec<String> = ids.iter().map(|s| request_shape::shape_field(*s)).collect();
        let mut conn = self.conn.clone();
        let raw: Vec<Option<String>> =
            redis::cmd("HMGET").arg(self.bucket_key(id)).arg(&fields).query_async(&mut conn).await?;
        let shapes: HashMap<u64, std::sync::Arc<RequestShape>> = ids
            .into_iter()
            .zip(raw)
            .filter_map(|(id, raw)| Some((id, std::sync::Arc::new(RequestShape::decode(raw.as_deref()?)?))))
            .collect();
        for sent in attempts.iter_mut().filter_map(|a| a.sent.as_mut()) {
            sent.shape = shapes.get(&sent.shape_id).cloned();
        }
        Ok(())
    }

    /// Several deliveries by id (each with its latest attempt), in order;
    /// missing ones are skipped.
    async fn load_many(&self, ids: &[&str]) -> Result<Vec<DeliveryRecord>, DispatchError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.bucket_key(id), id);
            pipe.hget(self.delivered_bucket_key(id), id);
        }
        let mut conn = self.conn.clone();
        let states: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await?;
        let records = ids.iter().zip(states.chunks(2)).filter_map(|(id, raws)| {
            // The writes that move a state between the two buckets remove
            // it from the other; should both hold one, the newer stands.
            raws.iter().flatten().filter_map(|raw| decode_state(id, raw)).max_by_key(|r| r.updated_at)
        });
        Ok(records.collect())
    }

    /// The stored attempt counts of deliveries (0 when unknown), in order.
    pub async fn attempt_counts(&self, ids: &[&str]) -> Result<Vec<u32>, DispatchError> {
        let records = self.load_many(ids).await?;
        let counts: HashMap<&str, u32> = records.iter().map(|r| (r.id.as_str(), r.attempt_count)).collect();
        Ok(ids.iter().map(|id| counts.get(id).copied().unwrap_or(0)).collect())
    }

    /// The raw stored JSON of an endpoint record, if any.
    pub async fn endpoint_raw(&self, endpoint_id: &str) -> Result<Option<Vec<u8>>, DispatchError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> =
            redis::cmd("GET").arg(self.keys.endpoint(endpoint_id)).query_async(&mut conn).await?;
        Ok(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_use_contract_names() {
        let names =
            [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Retrying, DeliveryStatus::Failed]
                .map(DeliveryStatus::as_str);
        assert_eq!(names, ["pending", "delivered", "retrying", "failed"]);
    }

    #[test]
    fn buckets_keep_every_delivery_a_whole_retention() {
        let id = ids::new_id(ids::DELIVERY);
        let created = ids::created_millis(&id).unwrap();
        let hour = bucket_of(&id).unwrap();
        assert!(hour * HOUR_MS <= created && created < (hour + 1) * HOUR_MS);
        assert!(bucket_expiry(hour, 1_000) >= created + 1_000);
        assert_eq!(bucket_of("dlv_not-a-ulid"), None);
    }
}
