//! Delivery records in Redis: what the Dispatch API shows, and the one write
//! that settles a stream entry.
//!
//! Data model (all keys from [`Keys`], all with the event retention TTL):
//! - `dlv:{id}`: a hash — `tenant`, `endpointId`, `eventId`, `eventType`,
//!   `status` (`pending` from the moment a dispatcher reads the job, see
//!   [`Records::record_pending`], then `delivered|retrying|failed`), `attemptCount`,
//!   `createdAt`, `updatedAt`, `nextAttemptAt` (ms; empty when none), and
//!   while a retry waits, `retryMember` (its member in the retry set, so a
//!   manual retry can take it out, see [`Records::requeue`]), `traceparent`, and
//!   `generation` (the endpoint incarnation it was published for).
//! - `dlv:{id}:attempts`: a list of JSON attempts
//!   `{n, at, statusCode, latencyMs, error, responseBody}`.
//! - `tenant:{t}:dlvs`, `ep:{id}:dlvs`, `evt:{t}:{id}:dlvs`: indexes. Every
//!   member has score 0 and delivery ids are ULIDs, so lexicographic order is
//!   creation order: lists read newest first with `ZREVRANGEBYLEX` and the
//!   last id of a page is a stable cursor; "since" is a lexicographic bound;
//!   members older than the retention are trimmed by range on every write.
//!
//! **Invariant:** a stream entry is acknowledged only in [`Records::settle`],
//! in the same `MULTI` as its outcome (record, attempt, next retry), so a
//! crash either loses both or neither. A `fifo` job held for its retry by its
//! actor ([`Settlement::held`]) has its attempt stored without the
//! acknowledgement: the entry stays pending until the final outcome.
//!
//! `ep:{id}:health` (a hash, written with each settled attempt) is the
//! endpoint's health: what `GetEndpointHealth` shows and what a new actor's
//! circuit breaker carries on from ([`HealthRecord`], for one epoch of the
//! endpoint). `createdAt` comes from the ULID of the
//! delivery id (made at publish time), so every write of it is the same.

use std::collections::HashMap;

use herald_common::keys::{CONSUMER_GROUP, Keys};
use herald_common::model::{Job, Millis};
use herald_common::redis_conn::RedisConn;
use herald_common::{ids, time_fmt};
use redis::Pipeline;
use serde::{Deserialize, Serialize};

use crate::error::DispatchError;
use crate::retry::encode_job;

mod endpoint_health;
mod requeue;

pub use endpoint_health::HealthRecord;

/// Most index members read per round trip while filling a page.
const LIST_CHUNK: usize = 200;
/// Most chunks scanned for one filtered page; the cursor then resumes.
const LIST_MAX_CHUNKS: usize = 25;

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

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "retrying" => Some(DeliveryStatus::Retrying),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One attempt as stored in `dlv:{id}:attempts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptRecord {
    pub n: u32,
    pub at: Millis,
    #[serde(default)]
    pub status_code: Option<u16>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub response_body: String,
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
    pub retry_member: Option<String>,
    pub traceparent: Option<String>,
    /// The endpoint incarnation it was published for (see [`Job::generation`]).
    pub generation: Option<String>,
    /// Filled by [`Records::get`] only.
    pub attempts: Vec<AttemptRecord>,
}

impl DeliveryRecord {
    fn from_hash(id: &str, mut hash: HashMap<String, String>) -> Option<Self> {
        let tenant = hash.remove("tenant")?;
        let millis = |v: Option<String>| v.and_then(|v| v.parse::<Millis>().ok());
        Some(DeliveryRecord {
            id: id.to_owned(),
            tenant,
            endpoint_id: hash.remove("endpointId").unwrap_or_default(),
            event_id: hash.remove("eventId").unwrap_or_default(),
            event_type: hash.remove("eventType").unwrap_or_default(),
            status: hash.get("status").and_then(|s| DeliveryStatus::parse(s)).unwrap_or(DeliveryStatus::Pending),
            attempt_count: hash.get("attemptCount").and_then(|n| n.parse().ok()).unwrap_or(0),
            created_at: millis(hash.remove("createdAt")).unwrap_or(0),
            updated_at: millis(hash.remove("updatedAt")).unwrap_or(0),
            next_attempt_at: millis(hash.remove("nextAttemptAt")),
            retry_member: hash.remove("retryMember").filter(|m| !m.is_empty()),
            traceparent: hash.remove("traceparent").filter(|t| !t.is_empty()),
            generation: hash.remove("generation").filter(|g| !g.is_empty()),
            attempts: Vec::new(),
        })
    }
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
    /// The delivery's record and indexes were written when it was read
    /// ([`Records::record_pending`]): only what changed is written now.
    pub listed: bool,
    pub event_type: Option<&'a str>,
    /// `None` when no attempt was made (the job was only put off).
    pub attempt: Option<AttemptRecord>,
    pub status: DeliveryStatus,
    /// The next job and when it is due.
    pub retry: Option<(Millis, Job)>,
    /// A `fifo` job its actor keeps and tries again itself at this time.
    /// Its stream entry is not acknowledged: it stays pending (and so
    /// survives a crash) until the job's final outcome is stored.
    pub held: Option<Millis>,
}

/// Which index a list reads.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub tenant: String,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub status: Option<DeliveryStatus>,
}

#[derive(Clone)]
pub struct Records {
    conn: RedisConn,
    keys: Keys,
    retention_ms: i64,
}

impl Records {
    pub fn new(conn: RedisConn, keys: Keys, retention: std::time::Duration) -> Self {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX).max(1);
        Records { conn, keys, retention_ms }
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
        let mut pipe = redis::pipe();
        pipe.atomic();
        for s in settlements {
            self.settle_commands(&mut pipe, s, now);
        }
        if let Some((endpoint_id, health)) = health {
            let key = self.keys.endpoint_health(endpoint_id);
            pipe.hset_multiple(&key, &health.fields()).ignore();
            pipe.pexpire(&key, self.retention_ms).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    fn settle_commands(&self, pipe: &mut Pipeline, s: &Settlement<'_>, now: Millis) {
        let job = s.job;
        let id = job.delivery_id.as_str();
        let key = self.keys.delivery(id);
        let mut fields: Vec<(&str, String)> = Vec::with_capacity(12);
        fields.push(("status", s.status.as_str().to_owned()));
        fields.push(("updatedAt", now.to_string()));
        let next_attempt = s.retry.as_ref().map(|(due, _)| *due).or(s.held);
        fields.push(("nextAttemptAt", next_attempt.map(|d| d.to_string()).unwrap_or_default()));
        if !s.listed {
            let created = ids::created_millis(id).unwrap_or(now);
            fields.push(("tenant", job.tenant.clone()));
            fields.push(("endpointId", job.endpoint_id.clone()));
            fields.push(("eventId", job.event_id.clone()));
            fields.push(("createdAt", created.to_string()));
            if let Some(generation) = &job.generation {
                fields.push(("generation", generation.clone()));
            }
            if let Some(event_type) = s.event_type {
                fields.push(("eventType", event_type.to_owned()));
            }
        }
        if let Some(attempt) = &s.attempt {
            fields.push(("attemptCount", attempt.n.to_string()));
        }
        if let Some(tp) = &job.traceparent {
            fields.push(("traceparent", tp.clone()));
        }
        let member = s.retry.as_ref().map(|(due, next)| (*due, encode_job(next)));
        match &member {
            Some((_, member)) => fields.push(("retryMember", member.clone())),
            // A first attempt has never had a retry scheduled.
            None if job.attempt > 1 => {
                pipe.hdel(&key, "retryMember").ignore();
            }
            None => {}
        }
        pipe.hset_multiple(&key, &fields).ignore();
        if let Some(attempt) = &s.attempt {
            let attempts = self.keys.delivery_attempts(id);
            pipe.rpush(&attempts, serde_json::to_string(attempt).unwrap_or_default()).ignore();
            pipe.pexpire(&attempts, self.retention_ms).ignore();
        }
        if !s.listed {
            pipe.pexpire(&key, self.retention_ms).ignore();
            let oldest = self.oldest_kept(now);
            for index in self.indexes(job) {
                pipe.zadd(&index, id, 0).ignore();
                self.trim_index(pipe, &index, &oldest);
            }
        }
        if let Some((due, member)) = member {
            pipe.zadd(self.keys.retry_set(s.entry.partition), member, due).ignore();
        }
        if s.held.is_none() {
            let stream = self.keys.partition_stream(s.entry.partition);
            pipe.xack(&stream, CONSUMER_GROUP, &[&s.entry.id]).ignore();
            pipe.xdel(&stream, &[&s.entry.id]).ignore();
        }
    }

    /// The listing indexes a delivery belongs to.
    fn indexes(&self, job: &Job) -> [String; 3] {
        [
            self.keys.tenant_deliveries(&job.tenant),
            self.keys.endpoint_deliveries(&job.endpoint_id),
            self.keys.event_deliveries(&job.tenant, &job.event_id),
        ]
    }

    /// The exclusive lower bound (`ZREMRANGEBYLEX` syntax) of the delivery
    /// ids still within retention: ids sort by creation time.
    fn oldest_kept(&self, now: Millis) -> String {
        format!("({}", ids::floor_id(ids::DELIVERY, now.saturating_sub(self.retention_ms)))
    }

    /// Drops ids past retention from an index and keeps the index itself
    /// alive as long as it gains members.
    fn trim_index(&self, pipe: &mut Pipeline, index: &str, oldest_kept: &str) {
        pipe.cmd("ZREMRANGEBYLEX").arg(index).arg("-").arg(oldest_kept).ignore();
        pipe.pexpire(index, self.retention_ms).ignore();
    }

    /// Makes first attempts visible as `pending` as soon as a dispatcher has
    /// read them, so a delivery held back (rate limit, in-flight cap, open
    /// circuit, `fifo` order) is listed before it is tried. Only what every
    /// settlement writes with the same value is set outright; `status` and
    /// `updatedAt` are set only if absent, so whichever of this and the
    /// settlement Redis runs first, a settled delivery never turns back
    /// into a pending one.
    pub async fn record_pending(&self, waiting: &[(&Job, &str)]) -> Result<(), DispatchError> {
        if waiting.is_empty() {
            return Ok(());
        }
        let now = time_fmt::now_millis();
        let now_text = now.to_string();
        let mut pipe = redis::pipe();
        // A batch mostly shares its tenant and endpoint indexes: each gains
        // its members in one `ZADD` and is trimmed once per batch.
        let mut members: HashMap<String, Vec<(u8, &str)>> = HashMap::new();
        for (job, event_type) in waiting {
            let id = job.delivery_id.as_str();
            let key = self.keys.delivery(id);
            let created = ids::created_millis(id).unwrap_or(now).to_string();
            pipe.hset_nx(&key, "status", DeliveryStatus::Pending.as_str()).ignore();
            pipe.hset_nx(&key, "updatedAt", &now_text).ignore();
            pipe.hset_multiple(
                &key,
                &[
                    ("tenant", job.tenant.as_str()),
                    ("endpointId", &job.endpoint_id),
                    ("eventId", &job.event_id),
                    ("eventType", event_type),
                    ("createdAt", &created),
                ],
            )
            .ignore();
            if let Some(generation) = &job.generation {
                pipe.hset(&key, "generation", generation).ignore();
            }
            pipe.pexpire(&key, self.retention_ms).ignore();
            for index in self.indexes(job) {
                members.entry(index).or_default().push((0, id));
            }
        }
        let oldest = self.oldest_kept(now);
        for (index, ids) in &members {
            pipe.zadd_multiple(index, ids).ignore();
            self.trim_index(&mut pipe, index, &oldest);
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    /// A delivery with its attempts, if it exists and belongs to `tenant`.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Option<DeliveryRecord>, DispatchError> {
        let mut conn = self.conn.clone();
        let (hash, attempts): (HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.keys.delivery(id))
            .lrange(self.keys.delivery_attempts(id), 0, -1)
            .query_async(&mut conn)
            .await?;
        let Some(mut record) = DeliveryRecord::from_hash(id, hash) else { return Ok(None) };
        if record.tenant != tenant {
            return Ok(None);
        }
        record.attempts = attempts.iter().filter_map(|a| serde_json::from_str(a).ok()).collect();
        Ok(Some(record))
    }

    /// Several deliveries by id, in order; missing ones are skipped.
    async fn load_many(&self, ids: &[String]) -> Result<Vec<DeliveryRecord>, DispatchError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.delivery(id));
        }
        let mut conn = self.conn.clone();
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut conn).await?;
        Ok(ids.iter().zip(hashes).filter_map(|(id, hash)| DeliveryRecord::from_hash(id, hash)).collect())
    }

    /// One page of deliveries, newest first, and the cursor of the next page.
    pub async fn list(
        &self,
        filter: &ListFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeliveryRecord>, Option<String>), DispatchError> {
        let index = match (&filter.event_id, &filter.endpoint_id) {
            (Some(event_id), _) => self.keys.event_deliveries(&filter.tenant, event_id),
            (None, Some(endpoint_id)) => self.keys.endpoint_deliveries(endpoint_id),
            (None, None) => self.keys.tenant_deliveries(&filter.tenant),
        };
        // Endpoint ids are global and can be reused after a delete, so an
        // endpoint's index may hold another tenant's deliveries: a cursor
        // answered from it must be one of the caller's own.
        let shared_index = filter.event_id.is_none() && filter.endpoint_id.is_some();
        let mut own_resume: Option<String> = None;
        let mut page: Vec<DeliveryRecord> = Vec::with_capacity(limit);
        let mut after = cursor.map(str::to_owned);
        let mut conn = self.conn.clone();
        for _ in 0..LIST_MAX_CHUNKS {
            let max = after.as_ref().map_or_else(|| "+".to_owned(), |c| format!("({c}"));
            let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
                .arg(&index)
                .arg(&max)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(LIST_CHUNK)
                .query_async(&mut conn)
                .await?;
            let exhausted = ids.len() < LIST_CHUNK;
            let records = self.load_many(&ids).await?;
            let mut by_id: HashMap<String, DeliveryRecord> = records.into_iter().map(|r| (r.id.clone(), r)).collect();
            for id in &ids {
                after = Some(id.clone());
                let Some(record) = by_id.remove(id) else { continue };
                if record.tenant == filter.tenant {
                    own_resume = Some(id.clone());
                }
                let keep = record.tenant == filter.tenant
                    && filter.endpoint_id.as_ref().is_none_or(|e| *e == record.endpoint_id)
                    && filter.event_id.as_ref().is_none_or(|e| *e == record.event_id)
                    && filter.status.is_none_or(|s| s == record.status);
                if keep {
                    // A match beyond a full page: only now is there a next page.
                    if page.len() == limit {
                        let cursor = page.last().map(|r| r.id.clone());
                        return Ok((page, cursor));
                    }
                    page.push(record);
                }
            }
            if exhausted {
                return Ok((page, None));
            }
        }
        if shared_index {
            // No own record since the cursor: nothing of the caller's to
            // resume from, and no other tenant's id to hand out.
            return Ok((page, own_resume.filter(|resume| Some(resume.as_str()) != cursor)));
        }
        Ok((page, after))
    }

    /// An endpoint's deliveries created at or after `since`, oldest first,
    /// one chunk at a time: `after` is the cursor the previous chunk answered.
    /// Answers the chunk and its cursor (`None` at the end).
    pub async fn endpoint_deliveries_since(
        &self,
        endpoint_id: &str,
        since: Millis,
        after: Option<&str>,
    ) -> Result<(Vec<DeliveryRecord>, Option<String>), DispatchError> {
        let min = match after {
            Some(after) => format!("({after}"),
            None => format!("[{}", ids::floor_id(ids::DELIVERY, since)),
        };
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.keys.endpoint_deliveries(endpoint_id))
            .arg(&min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(LIST_CHUNK)
            .query_async(&mut conn)
            .await?;
        let cursor = if ids.len() < LIST_CHUNK { None } else { ids.last().cloned() };
        Ok((self.load_many(&ids).await?, cursor))
    }

    pub async fn health(&self, endpoint_id: &str) -> Result<HealthRecord, DispatchError> {
        let mut conn = self.conn.clone();
        let hash: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.keys.endpoint_health(endpoint_id)).query_async(&mut conn).await?;
        Ok(HealthRecord::from_hash(&hash))
    }

    /// The stored attempt counts of deliveries (0 when unknown), in order.
    pub async fn attempt_counts(&self, ids: &[&str]) -> Result<Vec<u32>, DispatchError> {
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(self.keys.delivery(id), "attemptCount");
        }
        let mut conn = self.conn.clone();
        let counts: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        Ok(counts.into_iter().map(|c| c.and_then(|c| c.parse().ok()).unwrap_or(0)).collect())
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
        for s in [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Retrying, DeliveryStatus::Failed]
        {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DeliveryStatus::parse("gone"), None);
    }

    #[test]
    fn attempts_serialise_in_camel_case() {
        let a = AttemptRecord {
            n: 2,
            at: 5,
            status_code: Some(500),
            latency_ms: 12,
            error: Some("endpoint answered status 500".into()),
            response_body: "x".into(),
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["statusCode"], 500);
        assert_eq!(json["latencyMs"], 12);
        assert_eq!(json["responseBody"], "x");
        assert_eq!(serde_json::from_value::<AttemptRecord>(json).unwrap(), a);
    }

    #[test]
    fn records_read_back_from_hashes() {
        let hash: HashMap<String, String> = [
            ("tenant", "acme"),
            ("endpointId", "ep_1"),
            ("eventId", "evt_1"),
            ("status", "retrying"),
            ("attemptCount", "2"),
            ("createdAt", "10"),
            ("updatedAt", "20"),
            ("nextAttemptAt", ""),
            ("retryMember", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let r = DeliveryRecord::from_hash("dlv_1", hash).unwrap();
        assert_eq!(
            (r.status, r.attempt_count, r.next_attempt_at, r.retry_member),
            (DeliveryStatus::Retrying, 2, None, None)
        );
        assert_eq!(DeliveryRecord::from_hash("dlv_2", HashMap::new()), None);
    }
}
