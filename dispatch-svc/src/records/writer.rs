//! Group commit of outcomes: every settlement goes through one writer task,
//! which takes whatever has queued up while its previous write was in
//! flight and stores it all in one `MULTI`. Each caller still waits until
//! its own outcome is stored, so the acknowledgement invariant holds; what
//! changes is that many outcomes share one hash write per hour bucket, one
//! `XACK` and one `XDEL` per partition, and one round trip (one `MULTI`
//! per record shard, which on a cluster is a slot of its own).

use std::collections::BTreeMap;

use herald_common::keys::{CONSUMER_GROUP, Keys};
use herald_common::model::Millis;
use herald_common::redis_conn::RedisConn;
use redis::Pipeline;
use tokio::sync::{mpsc, oneshot};

use super::{Retention, bucket_expiry};
use crate::error::DispatchError;

/// Most requests stored in one write.
const MAX_REQUESTS: usize = 512;

/// One delivery's share of a write.
#[derive(Debug)]
pub struct Write {
    /// Record shard of the delivery (see `Keys::record_shard`).
    pub shard: u32,
    /// Hour bucket of the delivery (its creation hour).
    pub bucket: i64,
    /// Fields of the bucket hash: the state, and an attempt of its own.
    pub fields: Vec<(String, Vec<u8>)>,
    /// The state of a delivered delivery kept for less than the rest (see
    /// [`Retention::delivered_ms`]): it goes to the hour's delivered
    /// bucket, and any earlier state of the delivery leaves the main one.
    pub delivered: Option<(String, Vec<u8>)>,
    /// Partition, due time and member of a retry to schedule.
    pub retry: Option<(u32, Millis, String)>,
    /// Partition and id of the stream entry to acknowledge and delete.
    pub ack: Option<(u32, String)>,
    /// Partition, endpoint and member of a job to park (see `parking`).
    pub park: Option<(u32, String, String)>,
}

/// An endpoint's packed health, written with the outcome that changed it.
#[derive(Debug)]
pub struct HealthWrite {
    pub shard: u32,
    pub key: String,
    pub value: Vec<u8>,
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
    pub fn start(conn: RedisConn, keys: Keys, retention: Retention) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, keys, retention, rx));
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

async fn run(conn: RedisConn, keys: Keys, retention: Retention, mut rx: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_REQUESTS {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let result = flush(&conn, &keys, retention, &batch).await.map_err(|e| e.to_string());
        for request in batch.drain(..) {
            // A caller that gave up waiting has nothing left to be told.
            let _ = request.done.send(result.clone());
        }
    }
}

/// What one record shard gets from a batch: on a cluster each shard is a
/// slot of its own, so each gets its own `MULTI`.
#[derive(Default)]
struct ShardWrites<'a> {
    buckets: BTreeMap<i64, Vec<(&'a str, &'a [u8])>>,
    delivered: BTreeMap<i64, Vec<(&'a str, &'a [u8])>>,
    acks: BTreeMap<u32, Vec<&'a str>>,
    retries: BTreeMap<u32, Vec<(Millis, &'a str)>>,
    parks: BTreeMap<(u32, &'a str), Vec<&'a str>>,
    health: Vec<&'a HealthWrite>,
}

async fn flush(conn: &RedisConn, keys: &Keys, retention: Retention, batch: &[Request]) -> Result<(), DispatchError> {
    let mut shards: BTreeMap<u32, ShardWrites<'_>> = BTreeMap::new();
    for request in batch {
        for write in &request.writes {
            let shard = shards.entry(write.shard).or_default();
            if !write.fields.is_empty() {
                let fields = shard.buckets.entry(write.bucket).or_default();
                fields.extend(write.fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
            }
            if let Some((id, state)) = &write.delivered {
                shard.delivered.entry(write.bucket).or_default().push((id, state.as_slice()));
            }
            if let Some((partition, endpoint, member)) = &write.park {
                shard.parks.entry((*partition, endpoint)).or_default().push(member);
            }
            if let Some((partition, due, member)) = &write.retry {
                shard.retries.entry(*partition).or_default().push((*due, member));
            }
            if let Some((partition, id)) = &write.ack {
                shard.acks.entry(*partition).or_default().push(id);
            }
        }
        if let Some(health) = &request.health {
            shards.entry(health.shard).or_default().health.push(health);
        }
    }
    let writes = shards.iter().map(|(shard, writes)| {
        let pipe = shard_pipeline(keys, *shard, writes, retention);
        let mut conn = conn.clone();
        async move { pipe.query_async::<()>(&mut conn).await }
    });
    for result in futures::future::join_all(writes).await {
        result?;
    }
    Ok(())
}

fn shard_pipeline(keys: &Keys, shard: u32, writes: &ShardWrites<'_>, retention: Retention) -> Pipeline {
    let retention_ms = retention.all_ms;
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (hour, fields) in &writes.buckets {
        let key = keys.delivery_bucket(shard, *hour);
        pipe.hset_multiple(&key, fields).ignore();
        pipe.pexpire_at(&key, bucket_expiry(*hour, retention_ms)).ignore();
    }
    for (hour, states) in &writes.delivered {
        let key = keys.delivered_bucket(shard, *hour);
        pipe.hset_multiple(&key, states).ignore();
        let kept_ms = retention.delivered_ms.unwrap_or(retention_ms);
        pipe.pexpire_at(&key, bucket_expiry(*hour, kept_ms)).ignore();
        // A pending or retrying state written before: the delivered one
        // replaces it.
        let ids: Vec<&str> = states.iter().map(|(id, _)| *id).collect();
        pipe.hdel(keys.delivery_bucket(shard, *hour), ids).ignore();
    }
    for (partition, members) in &writes.retries {
        pipe.zadd_multiple(keys.retry_set(*partition), members).ignore();
    }
    for ((partition, endpoint), members) in &writes.parks {
        pipe.rpush(keys.park_list(*partition, endpoint), members).ignore();
        pipe.sadd(keys.parked_endpoints(*partition), *endpoint).ignore();
    }
    for health in &writes.health {
        pipe.pset_ex(&health.key, &health.value, retention_ms.unsigned_abs()).ignore();
    }
    for (partition, ids) in &writes.acks {
        let stream = keys.partition_stream(*partition);
        pipe.xack(&stream, CONSUMER_GROUP, ids).ignore();
        pipe.xdel(&stream, ids).ignore();
    }
    pipe
}
