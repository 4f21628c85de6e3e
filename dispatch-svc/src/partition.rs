//! Partition ownership and stream consumption.
//!
//! **Leases.** Partition `p` is owned by the dispatcher whose id is stored in
//! `{pN}:lease` (`SET NX PX`, TTL [`LEASE_TTL`]). The owner renews it every
//! third of the TTL with a compare-and-extend script and releases it
//! (compare-and-delete) when it stops. Every [`TICK`] a dispatcher heartbeats
//! into the `dispatchers` set, works out its fair share
//! (`ceil(partitions / live dispatchers)`), takes free partitions up to that
//! share, takes any partition that has stayed free for a few ticks (its
//! owner died), and hands back partitions above its share so that a newly
//! started dispatcher gets work.
//!
//! **Reading.** The owner reads `{pN}:jobs` through the consumer group
//! [`CONSUMER_GROUP`] with `XREADGROUP ... BLOCK` on a connection of its own
//! (a blocking read must not hold up the shared multiplexed connection). On
//! taking a partition it first claims the entries its previous owners left
//! pending (`XAUTOCLAIM`) with a minimum idle time longer than the delivery
//! timeout, so an attempt still running elsewhere is not sent twice. The same
//! claim runs periodically to pick up entries this process let go of (an
//! actor that stopped with a queue); entries still held in this process
//! (queued in an actor, being attempted, or a `fifo` job held for its retry)
//! are recognised by the partition's [`LiveSet`] and left alone. A `NOGROUP`
//! error (Redis lost its data) recreates the group and reading goes on.
//!
//! **Settling.** Until every entry other consumers left pending has been
//! claimed (`XPENDING` names no other consumer), the partition is not
//! *settled*: the claim then runs every second instead of every
//! [`RECLAIM_EVERY`], and `fifo` actors start nothing, so a new job cannot
//! overtake an older one still waiting for its claim. Other endpoints are
//! not held up. A partition settles at the latest after the claim idle
//! time and two claim rounds, whatever is left.
//!
//! **Loading.** Each read batch fetches every distinct event payload and
//! every endpoint record that has no actor yet in one pipelined round trip;
//! a payload is parsed once into an `Arc` shared by all jobs that need it.
//!
//! **Retry pump.** Per owned partition, moves due retries back into the
//! stream (see [`crate::retry`]).
//!
//! A lost lease stops reading at once and stops the partition's actors
//! (queued jobs stay pending for the next owner); attempts already running
//! finish and their acknowledgement is harmless.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use herald_common::backoff::{Backoff, retry_until_stopped};
use herald_common::keys::{CONSUMER_GROUP, partition_of};
use herald_common::model::{EndpointRecord, Job};
use herald_common::redis_conn::RedisConn;
use herald_common::time_fmt;
use redis::{Script, Value as RedisValue};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::actor::{Actors, Loaded, Refused};
use crate::delivery::{Taken, Work, fail_unsent, put_off};
use crate::error::DispatchError;
use crate::records::{Entry, HealthRecord, parse_entries, text};
use crate::render::LoadedEvent;
use crate::retry::{PUMP, PUMP_BATCH, due_at};

pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often leases are looked at (renewals happen every third of the TTL).
pub const TICK: Duration = Duration::from_secs(1);
/// A partition free for this many ticks is taken regardless of fair share.
const FREE_TICKS_BEFORE_TAKING: u32 = 3;
/// A partition handed back is not taken again for this many ticks.
const HANDBACK_COOL_DOWN_TICKS: u32 = 10;
/// A dispatcher missing heartbeats this long no longer counts.
const MEMBER_EXPIRY: Duration = Duration::from_secs(30);
pub const READ_COUNT: usize = 256;
pub const READ_BLOCK: Duration = Duration::from_millis(1000);
/// How often the owner claims entries it let go of.
const RECLAIM_EVERY: Duration = Duration::from_secs(10);
/// How often the claim runs while the partition is not settled.
const SETTLING_CLAIM_EVERY: Duration = Duration::from_secs(1);
/// Delay of a job put off because its endpoint's queue is full.
pub const PUT_OFF_DELAY: Duration = Duration::from_secs(1);
const PUMP_MAX_SLEEP: Duration = Duration::from_millis(250);
const PUMP_MIN_SLEEP: Duration = Duration::from_millis(20);

static RENEW: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
",
    )
});

static RELEASE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Stream entries of one partition that this process holds (queued in an
/// actor or being attempted), so a periodic claim does not start them twice.
#[derive(Debug, Default)]
pub struct LiveSet {
    ids: Mutex<HashSet<String>>,
    emptied: Notify,
    /// Every entry a previous owner left pending has been claimed.
    settled: AtomicBool,
}

impl LiveSet {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks `id` as held; `None` if it already is.
    pub fn hold(self: &Arc<Self>, id: &str) -> Option<LiveGuard> {
        if self.lock().insert(id.to_owned()) { Some(LiveGuard { set: self.clone(), id: id.to_owned() }) } else { None }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_settled(&self) -> bool {
        self.settled.load(AtomicOrdering::Acquire)
    }

    pub fn mark_settled(&self) {
        self.settled.store(true, AtomicOrdering::Release);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Waits until nothing is held, or `timeout`.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.emptied.notified();
            if self.is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.is_empty();
            }
        }
    }
}

/// Releases its entry from the [`LiveSet`] when dropped, whichever way the
/// job ends: settled, or dropped with a stopping actor.
#[derive(Debug)]
pub struct LiveGuard {
    set: Arc<LiveSet>,
    id: String,
}

impl LiveGuard {
    /// Whether the entry's partition is settled (see the module header).
    pub fn partition_settled(&self) -> bool {
        self.set.is_settled()
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut ids = self.set.lock();
        ids.remove(&self.id);
        if ids.is_empty() {
            self.set.emptied.notify_waiters();
        }
    }
}

/// A partition this dispatcher owns.
struct Owned {
    stop: CancellationToken,
    live: Arc<LiveSet>,
    tasks: Vec<JoinHandle<()>>,
    renewed_at: Instant,
}

#[derive(Default)]
struct Slot {
    owned: Option<Owned>,
    free_ticks: u32,
    cool_down: u32,
}

/// Owns partitions until `shutdown`, then drains and releases them.
pub async fn run_leases(shared: Arc<Shared>, actors: Arc<Actors>, shutdown: CancellationToken) {
    let partitions = shared.config.partitions;
    let mut slots: Vec<Slot> = (0..partitions).map(|_| Slot::default()).collect();
    let mut conn = shared.records.conn();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(e) = tick(&shared, &actors, &mut conn, &mut slots).await {
            tracing::warn!(error = %e, "partition lease round failed");
        }
        let owned = slots.iter().filter(|s| s.owned.is_some()).count();
        metrics::gauge!("herald_partitions_owned").set(owned as f64);
    }

    // Drain: stop reading everywhere, drop queued jobs (they stay pending),
    // let running attempts finish, then hand the partitions back.
    let mut held = Vec::new();
    for (p, slot) in slots.iter_mut().enumerate() {
        if let Some(owned) = slot.owned.take() {
            owned.stop.cancel();
            held.push((p as u32, owned));
        }
    }
    actors.evict_all();
    // One grace period for the whole drain, however many partitions are held.
    let deadline = Instant::now() + shared.config.delivery_timeout + Duration::from_secs(2);
    for (_, owned) in &held {
        if !owned.live.drained(deadline.saturating_duration_since(Instant::now())).await {
            tracing::warn!(left = owned.live.len(), "attempts still running at shutdown; they will be claimed again");
        }
    }
    for (p, owned) in held {
        for task in owned.tasks {
            task.abort();
        }
        if let Err(e) = release(&shared, &mut conn, p).await {
            tracing::warn!(partition = p, error = %e, "could not release the lease");
        }
    }
    let _: Result<(), _> =
        redis::cmd("ZREM").arg(shared.keys.dispatchers()).arg(&shared.id).query_async(&mut conn).await;
    metrics::gauge!("herald_partitions_owned").set(0.0);
}

async fn tick(
    shared: &Arc<Shared>,
    actors: &Arc<Actors>,
    conn: &mut RedisConn,
    slots: &mut [Slot],
) -> Result<(), DispatchError> {
    let now_ms = time_fmt::now_millis();
    let expiry_ms = i64::try_from(MEMBER_EXPIRY.as_millis()).unwrap_or(i64::MAX);
    let (_, _, members): (i64, i64, u32) = redis::pipe()
        .zadd(shared.keys.dispatchers(), &shared.id, now_ms)
        .cmd("ZREMRANGEBYSCORE")
        .arg(shared.keys.dispatchers())
        .arg("-inf")
        .arg(now_ms - expiry_ms)
        .zcard(shared.keys.dispatchers())
        .query_async(conn)
        .await?;
    let partitions = slots.len() as u32;
    let fair = partitions.div_ceil(members.max(1)) as usize;
    let ttl_ms = LEASE_TTL.as_millis() as u64;

    // Renew what we own; whatever cannot be renewed is lost.
    let renew_every = LEASE_TTL / 3;
    let now = Instant::now();
    let due: Vec<u32> = slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.owned.as_ref().is_some_and(|o| now.duration_since(o.renewed_at) >= renew_every))
        .map(|(p, _)| p as u32)
        .collect();
    if !due.is_empty() {
        let mut pipe = redis::pipe();
        for p in &due {
            pipe.invoke_script(RENEW.key(shared.keys.partition_lease(*p)).arg(&shared.id).arg(ttl_ms));
        }
        let renewed: Result<Vec<i64>, _> = pipe.query_async(conn).await;
        let renewed = match renewed {
            Err(e) if herald_common::redis_conn::is_no_script(&e) => {
                RENEW.prepare_invoke().load_async(conn).await?;
                pipe.query_async(conn).await
            }
            other => other,
        };
        match renewed {
            Ok(answers) => {
                for (p, ok) in due.iter().zip(answers) {
                    let slot = &mut slots[*p as usize];
                    if ok == 1 {
                        if let Some(owned) = slot.owned.as_mut() {
                            owned.renewed_at = now;
                        }
                    } else {
                        tracing::warn!(partition = p, "partition lease lost");
                        lose(actors, slot, *p, partitions);
                    }
                }
            }
            Err(e) => {
                // Not known to be lost; give up only once it surely expired.
                tracing::warn!(error = %e, "lease renewal failed");
                for p in &due {
                    let slot = &mut slots[*p as usize];
                    if slot.owned.as_ref().is_some_and(|o| now.duration_since(o.renewed_at) >= LEASE_TTL) {
                        lose(actors, slot, *p, partitions);
                    }
                }
            }
        }
    }

    // Hand back partitions above the fair share (highest numbers first).
    let mut owned: Vec<u32> =
        slots.iter().enumerate().filter(|(_, s)| s.owned.is_some()).map(|(p, _)| p as u32).collect();
    while owned.len() > fair {
        let Some(p) = owned.pop() else { break };
        let slot = &mut slots[p as usize];
        if let Some(owned) = slot.owned.take() {
            slot.cool_down = HANDBACK_COOL_DOWN_TICKS;
            tracing::info!(partition = p, fair, "handing a partition back");
            hand_back(shared.clone(), actors.clone(), owned, p);
        }
    }

    // Try to take free partitions.
    let mut count = owned.len();
    let candidates: Vec<u32> = slots
        .iter_mut()
        .enumerate()
        .filter_map(|(p, s)| {
            if s.owned.is_some() {
                return None;
            }
            if s.cool_down > 0 {
                s.cool_down -= 1;
                return None;
            }
            Some(p as u32)
        })
        .collect();
    if candidates.is_empty() {
        return Ok(());
    }
    // Only partitions the rules allow are asked for: see which are free first.
    let mut exists = redis::pipe();
    for p in &candidates {
        exists.exists(shared.keys.partition_lease(*p));
    }
    let taken: Vec<bool> = exists.query_async(conn).await?;
    let mut chosen = Vec::new();
    for (p, is_taken) in candidates.iter().zip(taken) {
        let slot = &mut slots[*p as usize];
        if is_taken {
            slot.free_ticks = 0;
            continue;
        }
        slot.free_ticks = slot.free_ticks.saturating_add(1);
        if count < fair || slot.free_ticks > FREE_TICKS_BEFORE_TAKING {
            chosen.push(*p);
            count += 1;
        }
    }
    if chosen.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for p in &chosen {
        pipe.cmd("SET").arg(shared.keys.partition_lease(*p)).arg(&shared.id).arg("NX").arg("PX").arg(ttl_ms);
    }
    let answers: Vec<Option<String>> = pipe.query_async(conn).await?;
    for (p, answer) in chosen.into_iter().zip(answers) {
        if answer.is_none() {
            continue;
        }
        tracing::info!(partition = p, "partition acquired");
        let slot = &mut slots[p as usize];
        slot.free_ticks = 0;
        slot.owned = Some(start_partition(shared.clone(), actors.clone(), p));
    }
    Ok(())
}

fn lose(actors: &Actors, slot: &mut Slot, p: u32, partitions: u32) {
    if let Some(owned) = slot.owned.take() {
        owned.stop.cancel();
        actors.evict_partition(p, partitions);
    }
}

/// Stops reading a partition, waits for its running attempts, then releases
/// the lease so another dispatcher can take it without waiting for a claim.
fn hand_back(shared: Arc<Shared>, actors: Arc<Actors>, owned: Owned, p: u32) {
    owned.stop.cancel();
    actors.evict_partition(p, shared.config.partitions);
    tokio::spawn(async move {
        let grace = shared.config.delivery_timeout + Duration::from_secs(2);
        // Keep the lease alive while attempts finish.
        let mut conn = shared.records.conn();
        let ttl_ms = LEASE_TTL.as_millis() as u64;
        let deadline = Instant::now() + grace;
        while !owned.live.is_empty() && Instant::now() < deadline {
            let _: Result<i64, _> =
                RENEW.key(shared.keys.partition_lease(p)).arg(&shared.id).arg(ttl_ms).invoke_async(&mut conn).await;
            owned.live.drained(Duration::from_secs(2)).await;
        }
        if let Err(e) = release(&shared, &mut conn, p).await {
            tracing::warn!(partition = p, error = %e, "could not release the lease");
        }
    });
}

async fn release(shared: &Shared, conn: &mut RedisConn, p: u32) -> Result<(), DispatchError> {
    let _: i64 = RELEASE.key(shared.keys.partition_lease(p)).arg(&shared.id).invoke_async(conn).await?;
    Ok(())
}

fn start_partition(shared: Arc<Shared>, actors: Arc<Actors>, p: u32) -> Owned {
    let stop = CancellationToken::new();
    let live = Arc::new(LiveSet::default());
    let reader = tokio::spawn(read_partition(shared.clone(), actors, p, live.clone(), stop.clone()));
    let pump = tokio::spawn(pump(shared, p, stop.clone()));
    Owned { stop, live, tasks: vec![reader, pump], renewed_at: Instant::now() }
}

/// A connection of the reader's own, made again until it works or `stop`.
async fn dedicated_connection(shared: &Shared, stop: &CancellationToken) -> Option<RedisConn> {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let connect = || herald_common::redis_conn::connect(&shared.config.redis);
    retry_until_stopped(backoff, stop, connect, |e, _| tracing::warn!(error = %e, "reader cannot connect to redis"))
        .await
}

async fn ensure_group(conn: &mut RedisConn, stream: &str) -> Result<(), DispatchError> {
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

async fn read_partition(shared: Arc<Shared>, actors: Arc<Actors>, p: u32, live: Arc<LiveSet>, stop: CancellationToken) {
    let _gauges = crate::observe::PartitionGauges::new(p);
    let Some(mut conn) = dedicated_connection(&shared, &stop).await else { return };
    let stream = shared.keys.partition_stream(p);
    let min_idle = shared.config.delivery_timeout + Duration::from_secs(5);
    let mut group_ready = false;
    let mut next_claim = Instant::now();
    let settle_by = Instant::now() + min_idle + RECLAIM_EVERY * 2;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !stop.is_cancelled() {
        if !group_ready {
            match ensure_group(&mut conn, &stream).await {
                Ok(()) => group_ready = true,
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "cannot create the consumer group");
                    backoff.wait(&stop).await;
                    continue;
                }
            }
        }
        if Instant::now() >= next_claim {
            match claim(&shared, &actors, &mut conn, p, &live, min_idle).await {
                Ok(()) if live.is_settled() => next_claim = Instant::now() + RECLAIM_EVERY,
                Ok(()) if Instant::now() >= settle_by => {
                    tracing::warn!(partition = p, "entries of a previous owner are still pending; not waiting longer");
                    live.mark_settled();
                    next_claim = Instant::now() + RECLAIM_EVERY;
                }
                Ok(()) => next_claim = Instant::now() + SETTLING_CLAIM_EVERY,
                Err(e) if is_nogroup(&e) => {
                    group_ready = false;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "claiming pending entries failed");
                    next_claim = Instant::now() + Duration::from_secs(1);
                }
            }
        }
        let read: Result<RedisValue, redis::RedisError> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(CONSUMER_GROUP)
            .arg(&shared.id)
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(READ_BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await;
        match read {
            Ok(value) => {
                backoff.reset();
                let entries = stream_entries(&value);
                if !entries.is_empty() {
                    // Read before the lease was lost: still handled, the
                    // next owner's claim waits longer than any attempt.
                    handle_entries(&shared, &actors, p, &live, entries, false).await;
                }
            }
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!(partition = p, "consumer group vanished; creating it again");
                group_ready = false;
            }
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "reading the partition failed");
                backoff.wait(&stop).await;
            }
        }
    }
}

fn is_nogroup(e: &DispatchError) -> bool {
    matches!(e, DispatchError::Redis(r) if r.code() == Some("NOGROUP"))
}

/// The entries of the one stream in an `XREADGROUP` answer.
fn stream_entries(value: &RedisValue) -> Vec<(String, Vec<(String, String)>)> {
    let items = match value {
        RedisValue::Array(items) => items,
        RedisValue::Map(pairs) => {
            return pairs.first().map(|(_, entries)| parse_entries(entries)).unwrap_or_default();
        }
        _ => return Vec::new(),
    };
    let Some(RedisValue::Array(stream)) = items.first() else { return Vec::new() };
    stream.get(1).map(parse_entries).unwrap_or_default()
}

/// Claims entries pending longer than `min_idle` (a previous owner's, or
/// ones this process let go of) and handles those not held here.
async fn claim(
    shared: &Arc<Shared>,
    actors: &Arc<Actors>,
    conn: &mut RedisConn,
    p: u32,
    live: &Arc<LiveSet>,
    min_idle: Duration,
) -> Result<(), DispatchError> {
    let stream = shared.keys.partition_stream(p);
    let mut cursor = "0-0".to_owned();
    let mut total = 0usize;
    // Bounded per round; the next round carries on.
    for _ in 0..64 {
        let answer: RedisValue = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(CONSUMER_GROUP)
            .arg(&shared.id)
            .arg(min_idle.as_millis() as u64)
            .arg(&cursor)
            .arg("COUNT")
            .arg(READ_COUNT)
            .query_async(conn)
            .await?;
        let RedisValue::Array(parts) = answer else { break };
        let next = parts.first().and_then(text).unwrap_or_else(|| "0-0".to_owned());
        let entries = parts.get(1).map(parse_entries).unwrap_or_default();
        // Entries deleted from the stream while pending: nothing to deliver.
        let deleted: Vec<String> = match parts.get(2) {
            Some(RedisValue::Array(ids)) => ids.iter().filter_map(text).collect(),
            _ => Vec::new(),
        };
        if !deleted.is_empty() {
            let _: i64 = redis::cmd("XACK").arg(&stream).arg(CONSUMER_GROUP).arg(&deleted).query_async(conn).await?;
        }
        total += entries.len();
        if !entries.is_empty() {
            handle_entries(shared, actors, p, live, entries, true).await;
        }
        if next == "0-0" {
            break;
        }
        cursor = next;
    }
    if total > 0 {
        tracing::info!(partition = p, claimed = total, "claimed pending entries");
    }
    crate::observe::sample_stream(conn, &stream, &shared.keys.retry_set(p), p).await;
    if !live.is_settled() {
        let pending: RedisValue = redis::cmd("XPENDING").arg(&stream).arg(CONSUMER_GROUP).query_async(conn).await?;
        if pending_consumers(&pending).iter().all(|c| *c == shared.id) {
            live.mark_settled();
        }
    }
    Ok(())
}

/// The consumers an `XPENDING` summary names as holding pending entries.
fn pending_consumers(summary: &RedisValue) -> Vec<String> {
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

/// Loads what a batch of entries needs and routes each job to its actor.
/// `reclaimed`: the entries come from the pending-entry claim.
async fn handle_entries(
    shared: &Arc<Shared>,
    actors: &Arc<Actors>,
    p: u32,
    live: &Arc<LiveSet>,
    entries: Vec<(String, Vec<(String, String)>)>,
    reclaimed: bool,
) {
    let mut malformed = Vec::new();
    let mut taken = Vec::with_capacity(entries.len());
    for (id, fields) in entries {
        let Some(guard) = live.hold(&id) else { continue };
        match Job::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Some(job) => taken.push(Taken { job, entry: Entry { partition: p, id }, guard, reclaimed, listed: false }),
            None => malformed.push(id),
        }
    }
    if !malformed.is_empty() {
        tracing::warn!(partition = p, count = malformed.len(), "dropping stream entries that are not jobs");
        let stream = shared.keys.partition_stream(p);
        let mut conn = shared.records.conn();
        let _: Result<(), _> = redis::pipe()
            .xack(&stream, CONSUMER_GROUP, &malformed)
            .ignore()
            .xdel(&stream, &malformed)
            .ignore()
            .query_async(&mut conn)
            .await;
    }
    if taken.is_empty() {
        return;
    }

    let (events, endpoints) = match load(shared, actors, &taken).await {
        Ok(loaded) => loaded,
        Err(e) => {
            // Left pending: the periodic claim picks them up again.
            tracing::warn!(partition = p, error = %e, "loading events failed");
            return;
        }
    };

    // Each job's event, looked up once (the key is owned strings).
    let job_events: Vec<Option<Arc<LoadedEvent>>> =
        taken.iter().map(|t| events.get(&(t.job.tenant.clone(), t.job.event_id.clone())).cloned().flatten()).collect();
    list_pending(shared, &mut taken, &job_events).await;

    let mut missing_event = Vec::new();
    let mut no_endpoint = Vec::new();
    let mut full = Vec::new();
    let mut unloaded = Vec::new();
    let partitions = shared.config.partitions;
    for (t, event) in taken.into_iter().zip(job_events) {
        if partition_of(&t.job.endpoint_id, partitions) != p {
            tracing::warn!(partition = p, endpoint = %t.job.endpoint_id, "job in the wrong partition; delivering anyway");
        }
        let Some(event) = event else {
            missing_event.push(t);
            continue;
        };
        let work = Work { taken: t, event };
        let loaded = endpoints.get(&work.taken.job.endpoint_id).map(Option::as_ref);
        match actors.dispatch(work, loaded) {
            Ok(()) => {}
            Err(Refused::Later(work)) => full.push(work.taken),
            Err(Refused::NeedEndpoint(work)) => unloaded.push(*work),
            Err(Refused::NoEndpoint(work)) => {
                let event_type = Some(work.event.event.event_type.clone());
                no_endpoint.push((work.taken, event_type));
            }
        }
    }
    // Their actor stopped between loading and dispatching: load them now
    // rather than put them off, which would reorder a fifo endpoint.
    if !unloaded.is_empty() {
        let ids: Vec<String> = {
            let mut seen = HashSet::new();
            unloaded.iter().map(|w| &w.taken.job.endpoint_id).filter(|id| seen.insert(*id)).cloned().collect()
        };
        match load_endpoints(shared, redis::pipe(), ids).await {
            Ok(endpoints) => {
                for work in unloaded {
                    let loaded = endpoints.get(&work.taken.job.endpoint_id).map(Option::as_ref);
                    match actors.dispatch(work, loaded) {
                        Ok(()) => {}
                        Err(Refused::NoEndpoint(work)) => {
                            let event_type = Some(work.event.event.event_type.clone());
                            no_endpoint.push((work.taken, event_type));
                        }
                        Err(Refused::Later(work) | Refused::NeedEndpoint(work)) => full.push(work.taken),
                    }
                }
            }
            // Left pending: the periodic claim picks them up again.
            Err(e) => tracing::warn!(partition = p, error = %e, "loading endpoints failed"),
        }
    }
    let shared = shared.clone();
    if !missing_event.is_empty() {
        fail_unsent(shared.clone(), missing_event, Vec::new(), "event payload expired or missing".to_owned()).await;
    }
    if !no_endpoint.is_empty() {
        let (taken, types): (Vec<_>, Vec<_>) = no_endpoint.into_iter().unzip();
        fail_unsent(shared.clone(), taken, types, "endpoint deleted".to_owned()).await;
    }
    if !full.is_empty() {
        put_off(shared, full, due_at(time_fmt::now_millis(), PUT_OFF_DELAY)).await;
    }
}

type Events = HashMap<(String, String), Option<Arc<LoadedEvent>>>;
type Endpoints = HashMap<String, Option<Loaded>>;

/// One round trip: every distinct payload, and the records and stored
/// health of endpoints without an actor.
async fn load(shared: &Shared, actors: &Actors, taken: &[Taken]) -> Result<(Events, Endpoints), DispatchError> {
    let mut event_keys: Vec<(String, String)> = Vec::new();
    let mut seen = HashSet::new();
    let mut endpoint_ids: Vec<String> = Vec::new();
    let mut seen_ep = HashSet::new();
    for t in taken {
        if seen.insert((t.job.tenant.as_str(), t.job.event_id.as_str())) {
            event_keys.push((t.job.tenant.clone(), t.job.event_id.clone()));
        }
        if seen_ep.insert(t.job.endpoint_id.as_str()) && !actors.contains(&t.job.endpoint_id) {
            endpoint_ids.push(t.job.endpoint_id.clone());
        }
    }
    let mut pipe = redis::pipe();
    let mut mget = redis::cmd("MGET");
    for (tenant, id) in &event_keys {
        mget.arg(shared.keys.event(tenant, id));
    }
    pipe.add_command(mget);
    let (first, endpoints) = query_with_endpoints(shared, pipe, endpoint_ids).await?;
    let event_raw: Vec<Option<Vec<u8>>> = redis::from_redis_value_ref(&first)?;

    let mut events = HashMap::with_capacity(event_keys.len());
    for (key, raw) in event_keys.into_iter().zip(event_raw.into_iter().chain(std::iter::repeat(None))) {
        let loaded = raw.and_then(|raw| match LoadedEvent::parse(raw.into()) {
            Ok(event) => Some(Arc::new(event)),
            Err(e) => {
                tracing::error!(event = %key.1, error = %e, "stored event is corrupt");
                None
            }
        });
        events.insert(key, loaded);
    }
    Ok((events, endpoints))
}

/// Records the batch's first attempts as `pending`
/// ([`crate::records::Records::record_pending`]) before they are handed to
/// actors, so a delivery held back (rate limit, in-flight cap, open circuit,
/// `fifo` order) is listed before it is tried, and its settlement then only
/// writes what changed. On failure the jobs go on unlisted and their
/// settlements write the whole record.
async fn list_pending(shared: &Shared, taken: &mut [Taken], job_events: &[Option<Arc<LoadedEvent>>]) {
    let mut listed = Vec::with_capacity(taken.len());
    let mut waiting = Vec::with_capacity(taken.len());
    for (i, (t, event)) in taken.iter().zip(job_events).enumerate() {
        if t.job.attempt != 1 {
            continue;
        }
        let Some(event) = event else { continue };
        waiting.push((&t.job, event.event.event_type.as_str()));
        listed.push(i);
    }
    match shared.records.record_pending(&waiting).await {
        Ok(()) => {
            for i in listed {
                taken[i].listed = true;
            }
        }
        Err(e) => tracing::warn!(error = %e, deliveries = waiting.len(), "recording pending deliveries failed"),
    }
}

/// The records and stored health of `ids`, in one round trip.
async fn load_endpoints(shared: &Shared, pipe: redis::Pipeline, ids: Vec<String>) -> Result<Endpoints, DispatchError> {
    let mut pipe = pipe;
    // A placeholder first answer keeps the shape of `query_with_endpoints`.
    pipe.cmd("PING");
    Ok(query_with_endpoints(shared, pipe, ids).await?.1)
}

/// Runs `pipe` (whose one command answers first) with the endpoint
/// records (`MGET`) and health hashes (`HGETALL` each) of `ids` appended.
async fn query_with_endpoints(
    shared: &Shared,
    mut pipe: redis::Pipeline,
    ids: Vec<String>,
) -> Result<(RedisValue, Endpoints), DispatchError> {
    if !ids.is_empty() {
        let mut mget = redis::cmd("MGET");
        for id in &ids {
            mget.arg(shared.keys.endpoint(id));
        }
        pipe.add_command(mget);
        for id in &ids {
            pipe.hgetall(shared.keys.endpoint_health(id));
        }
    }
    let mut conn = shared.records.conn();
    let answers: Vec<RedisValue> = pipe.query_async(&mut conn).await?;
    let mut answers = answers.into_iter();
    let first = answers.next().unwrap_or(RedisValue::Nil);
    let mut endpoints = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok((first, endpoints));
    }
    let records: Vec<Option<Vec<u8>>> = match answers.next() {
        Some(value) => redis::from_redis_value_ref(&value)?,
        None => Vec::new(),
    };
    for (id, raw) in ids.into_iter().zip(records.into_iter().chain(std::iter::repeat(None))) {
        let health: HashMap<String, String> = match answers.next() {
            Some(value) => redis::from_redis_value_ref(&value).unwrap_or_default(),
            None => HashMap::new(),
        };
        let record = raw.and_then(|raw| match serde_json::from_slice::<EndpointRecord>(&raw) {
            Ok(record) => Some(record),
            Err(e) => {
                tracing::error!(endpoint = %id, error = %e, "stored endpoint is corrupt");
                None
            }
        });
        let loaded = record.map(|record| Loaded { record, health: HealthRecord::from_hash(&health) });
        endpoints.insert(id, loaded);
    }
    Ok((first, endpoints))
}

/// Moves due retries of partition `p` back into its stream until `stop`.
async fn pump(shared: Arc<Shared>, p: u32, stop: CancellationToken) {
    let retry_set = shared.keys.retry_set(p);
    let stream = shared.keys.partition_stream(p);
    let mut conn = shared.records.conn();
    while !stop.is_cancelled() {
        let now = time_fmt::now_millis();
        let answer: Result<(usize, String), _> =
            PUMP.key(&retry_set).key(&stream).arg(now).arg(PUMP_BATCH).invoke_async(&mut conn).await;
        let sleep = match answer {
            Ok((moved, _)) if moved >= PUMP_BATCH => Duration::ZERO,
            Ok((_, next)) => match next.parse::<f64>() {
                Ok(next) => {
                    let wait = (next as i64).saturating_sub(time_fmt::now_millis()).max(0) as u64;
                    Duration::from_millis(wait).clamp(PUMP_MIN_SLEEP, PUMP_MAX_SLEEP)
                }
                Err(_) => PUMP_MAX_SLEEP,
            },
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "retry pump failed");
                Duration::from_secs(1)
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_set_releases_on_drop_and_reports_drained() {
        let set = Arc::new(LiveSet::default());
        let a = set.hold("1-0").unwrap();
        assert!(set.hold("1-0").is_none(), "an entry is held once");
        let b = set.hold("2-0").unwrap();
        assert_eq!(set.len(), 2);
        drop(a);
        assert!(!set.drained(Duration::from_millis(10)).await);
        let waiter = {
            let set = set.clone();
            tokio::spawn(async move { set.drained(Duration::from_secs(5)).await })
        };
        drop(b);
        assert!(waiter.await.unwrap());
        assert!(set.is_empty());
    }

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
        assert_eq!(pending_consumers(&summary), ["dsp_a", "dsp_b"]);
        let empty = RedisValue::Array(vec![RedisValue::Int(0), RedisValue::Nil, RedisValue::Nil, RedisValue::Nil]);
        assert!(pending_consumers(&empty).is_empty());
    }

    #[test]
    fn live_sets_start_unsettled() {
        let set = Arc::new(LiveSet::default());
        let guard = set.hold("1-0").unwrap();
        assert!(!guard.partition_settled());
        set.mark_settled();
        assert!(guard.partition_settled());
    }

    #[test]
    fn reads_xreadgroup_answers() {
        let entry = |id: &str| {
            RedisValue::Array(vec![
                RedisValue::BulkString(id.as_bytes().to_vec()),
                RedisValue::Array(vec![
                    RedisValue::BulkString(b"d".to_vec()),
                    RedisValue::BulkString(b"dlv_1".to_vec()),
                ]),
            ])
        };
        let answer = RedisValue::Array(vec![RedisValue::Array(vec![
            RedisValue::BulkString(b"h:{p0}:jobs".to_vec()),
            RedisValue::Array(vec![entry("1-0"), entry("2-0")]),
        ])]);
        let entries = stream_entries(&answer);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].0, "2-0");
        assert_eq!(entries[0].1, vec![("d".to_owned(), "dlv_1".to_owned())]);
        assert!(stream_entries(&RedisValue::Nil).is_empty());
    }
}
