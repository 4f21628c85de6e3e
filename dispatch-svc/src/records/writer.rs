//! Group commit of outcomes: every settlement goes through one writer task,
//! which takes whatever has queued up while its previous write was in
//! flight and stores it all in one `MULTI`. Each caller still waits until
//! its own outcome is stored, so the acknowledgement invariant holds; what
//! changes is that many outcomes share one hash write per hour bucket, one
//! `XACK` and one `XDEL` per partition, and one round trip.

use std::collections::BTreeMap;

use herald_common::keys::{CONSUMER_GROUP, Keys};
use herald_common::model::Millis;
use herald_common::redis_conn::RedisConn;
use herald_common::time_fmt;
use redis::Pipeline;
use tokio::sync::{mpsc, oneshot};

use super::bucket_expiry;
use crate::error::DispatchError;

/// Most requests stored in one write.
const MAX_REQUESTS: usize = 512;

/// One delivery's share of a write.
#[derive(Debug)]
pub struct Write {
    /// Hour bucket of the delivery (its creation hour).
    pub bucket: i64,
    /// Fields of the bucket hash: the state, and an attempt of its own.
    pub fields: Vec<(String, String)>,
    /// Add to the tenant's listing index (it was not listed when read).
    pub index: Option<(String, String)>,
    /// Partition, due time and member of a retry to schedule.
    pub retry: Option<(u32, Millis, String)>,
    /// Partition and id of the stream entry to acknowledge and delete.
    pub ack: Option<(u32, String)>,
}

/// An endpoint's health hash, written with the outcome that changed it.
#[derive(Debug)]
pub struct HealthWrite {
    pub key: String,
    pub fields: Vec<(&'static str, String)>,
}

struct Request {
    writes: Vec<Write>,
    health: Option<HealthWrite>,
    done: oneshot::Sender<Result<(), String>>,
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Writer {
    /// Starts the writer task on the current runtime.
    pub fn start(conn: RedisConn, keys: Keys, retention_ms: i64) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, keys, retention_ms, rx));
        Writer { tx }
    }

    /// Stores `writes` (and `health`) and answers once they are stored.
    pub async fn write(&self, writes: Vec<Write>, health: Option<HealthWrite>) -> Result<(), DispatchError> {
        let (done, stored) = oneshot::channel();
        let stopped = || DispatchError::Unstored("the outcome writer has stopped".to_owned());
        self.tx.send(Request { writes, health, done }).map_err(|_| stopped())?;
        stored.await.map_err(|_| stopped())?.map_err(DispatchError::Unstored)
    }
}

async fn run(conn: RedisConn, keys: Keys, retention_ms: i64, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_REQUESTS {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let result = flush(&conn, &keys, retention_ms, &batch).await.map_err(|e| e.to_string());
        for request in batch.drain(..) {
            // A caller that gave up waiting has nothing left to be told.
            let _ = request.done.send(result.clone());
        }
    }
}

async fn flush(conn: &RedisConn, keys: &Keys, retention_ms: i64, batch: &[Request]) -> Result<(), DispatchError> {
    let mut buckets: BTreeMap<i64, Vec<(&str, &str)>> = BTreeMap::new();
    let mut acks: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    let mut retries: BTreeMap<u32, Vec<(Millis, &str)>> = BTreeMap::new();
    let mut indexes: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for write in batch.iter().flat_map(|r| &r.writes) {
        let fields = buckets.entry(write.bucket).or_default();
        fields.extend(write.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        if let Some((tenant, id)) = &write.index {
            indexes.entry(tenant).or_default().push(id);
        }
        if let Some((partition, due, member)) = &write.retry {
            retries.entry(*partition).or_default().push((*due, member));
        }
        if let Some((partition, id)) = &write.ack {
            acks.entry(*partition).or_default().push(id);
        }
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (hour, fields) in &buckets {
        let key = keys.delivery_bucket(*hour);
        pipe.hset_multiple(&key, fields).ignore();
        pipe.pexpire_at(&key, bucket_expiry(*hour, retention_ms)).ignore();
    }
    let now = time_fmt::now_millis();
    for (tenant, ids) in &indexes {
        add_to_index(&mut pipe, keys, tenant, ids, now, retention_ms);
    }
    for (partition, members) in &retries {
        pipe.zadd_multiple(keys.retry_set(*partition), members).ignore();
    }
    for health in batch.iter().filter_map(|r| r.health.as_ref()) {
        pipe.hset_multiple(&health.key, &health.fields).ignore();
        pipe.pexpire(&health.key, retention_ms).ignore();
    }
    for (partition, ids) in &acks {
        let stream = keys.partition_stream(*partition);
        pipe.xack(&stream, CONSUMER_GROUP, ids).ignore();
        pipe.xdel(&stream, ids).ignore();
    }
    let mut conn = conn.clone();
    pipe.query_async::<()>(&mut conn).await?;
    Ok(())
}

/// Adds delivery ids to a tenant's listing index, drops ids past retention
/// from it, and keeps it alive as long as it gains members.
pub fn add_to_index(pipe: &mut Pipeline, keys: &Keys, tenant: &str, ids: &[&str], now: Millis, retention_ms: i64) {
    let index = keys.tenant_deliveries(tenant);
    let members: Vec<(u8, &str)> = ids.iter().map(|id| (0, *id)).collect();
    pipe.zadd_multiple(&index, &members).ignore();
    let oldest_kept =
        format!("({}", herald_common::ids::floor_id(herald_common::ids::DELIVERY, now.saturating_sub(retention_ms)));
    pipe.cmd("ZREMRANGEBYLEX").arg(&index).arg("-").arg(oldest_kept).ignore();
    pipe.pexpire(&index, retention_ms).ignore();
}
