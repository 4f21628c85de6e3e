//! One actix actor per endpoint, and the directory that finds it.
//!
//! This is the only module that uses actix. The actors run on a small set of
//! arbiters (threads with their own single-threaded runtime) of an actix
//! system started on a dedicated thread ([`ActorSystem`]); an endpoint's
//! actor lives on the arbiter its id hashes to. An actor holds the endpoint
//! as prepared for delivery, its OAuth token cache, its circuit breaker, its
//! rate limit and its in-flight limit, and a bounded queue of jobs.
//!
//! An actor only keeps books. Each attempt is spawned onto the dispatcher's
//! tokio runtime (where the shared HTTP client and the Redis connection
//! live, and which uses every core) and the actor is told when it ends, so
//! up to `maxInFlight` attempts run at once and no slow endpoint holds up a
//! thread. The attempt stores its outcome and acknowledges the stream entry
//! itself ([`crate::delivery`]), so an actor that stops (idle, reloaded away,
//! lease lost, shutdown) never loses an outcome: what was only queued stays
//! pending in Redis and is claimed again.
//!
//! Back-pressure: mailboxes are bounded and the partition reader only ever
//! uses `try_send` on the one stored address (actix parks a sender that
//! filled the mailbox, so clones would not be bounded); a full mailbox or a
//! full queue parks the job (`records::parking`), and the partition feeds
//! parked jobs back as the actor's queue drains ([`Actors::room_for_parked`]).
//! The reader never waits, and a backlog costs nothing while it waits.
//!
//! Jobs for an endpoint that is deleted, deactivated or disabled are stored
//! as failed with that reason and acknowledged, as Svix does for disabled
//! endpoints; after reactivation `RecoverEndpoint` sends them again. Jobs
//! of another tenant or of an earlier incarnation of the endpoint (an id
//! deleted and created again, see [`crate::lifecycle`]) are failed unsent
//! too, and a new incarnation or an activation starts the breaker over.
//!
//! **Delivery control.** `maxInFlight` bounds the attempts running at once
//! (`fifo`: one); `rateLimitPerSecond` bounds the attempts started in any
//! one-second window (a sliding window of start times, so the first second
//! may start `rate` at once and no window ever sees more); a receiver's
//! `Retry-After` pauses every delivery to the endpoint until it ends
//! ([`crate::health::Pause`]); the circuit breaker ([`crate::health`]) holds
//! the queue while open. The gates are in `actor/gate.rs`. A new actor's
//! breaker carries on from the endpoint's stored health.
//!
//! **`fifo` ordering.** An endpoint with `ordering: fifo` gets one attempt
//! at a time, in stream order (publish order: the registry appends an
//! endpoint's jobs to its one partition stream in publish order), and a job
//! that fails holds back every job behind it until it is delivered or finally
//! failed:
//! - The actor's queue is kept sorted by stream entry id, so an older entry
//!   that comes back through a claim goes before newer ones.
//! - A failed job is not put into the retry set (which would send it after
//!   the jobs behind it). Its attempt is stored without acknowledging the
//!   entry, and the attempt hands the job back ([`delivery::Report::held`]);
//!   the actor puts it back at the head of the queue and starts nothing
//!   until its retry is due. The jobs behind it wait in the queue, still
//!   pending in the stream and marked in the partition's live set, so the
//!   periodic pending-claim leaves them alone, and a crash or a partition
//!   move loses nothing: the next owner claims every pending entry, in id
//!   order, and carries the attempt count on from the delivery record.
//! - A new owner of a partition starts no `fifo` job before it has claimed
//!   every entry the previous owner left pending (the partition is
//!   *settled*, see [`crate::partition`]), so a newer job cannot overtake an
//!   older one that is still waiting for its claim.
//! - `fifo` actors are sent jobs past the mailbox bound (`do_send`): the
//!   reader must not put a job off through the retry set. When the queue
//!   itself is full the newest job is let go (left pending, to be claimed
//!   again) and remembered, and no job newer than a let-go one starts until
//!   it is back.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::dev::SendError;
use actix::fut::wrap_future;
use actix::prelude::*;
use herald_common::keys::partition_of;
use herald_common::model::{EndpointRecord, EndpointStatus, Ordering};
use herald_common::time_fmt;
use tokio::time::Instant;

use crate::Shared;
use crate::delivery::{self, Taken, Target, Work};
use crate::error::DispatchError;
use crate::health::{Breaker, Health, Pause};
use crate::lifecycle::{self, health_epoch};
use crate::records::HealthRecord;
use crate::retry::Schedule;
use crate::send::attempt::PreparedEndpoint;
use crate::send::oauth::TokenCache;

mod gate;
mod system;

pub use system::ActorSystem;

/// Messages waiting in an actor's mailbox.
pub const MAILBOX_CAPACITY: usize = 256;
/// Jobs an actor holds beyond those in flight.
pub const QUEUE_CAPACITY: usize = 4096;
/// An actor with nothing to do for this long stops; it is made again on demand.
pub const IDLE_STOP: Duration = Duration::from_secs(300);
const CHECK_EVERY: Duration = Duration::from_secs(15);
/// Endpoint records are read again this often, in case a change was missed.
const REFRESH_EVERY: Duration = Duration::from_secs(60);
/// A `fifo` actor waiting for its partition to settle looks again this often.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// A let-go `fifo` job that has not come back after this long is forgotten
/// (its entry was acknowledged or deleted elsewhere), so the queue moves on.
const LET_GO_FORGET: Duration = Duration::from_secs(120);

/// Why a job could not be handed to an actor.
#[derive(Debug)]
pub enum Refused {
    /// The actor is busy: put the job off.
    Later(Box<Work>),
    /// There is no actor and the endpoint was not loaded: load it and
    /// dispatch again.
    NeedEndpoint(Box<Work>),
    /// The endpoint record does not exist.
    NoEndpoint(Box<Work>),
}

/// What starting an endpoint's actor needs: its record and stored health.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub record: EndpointRecord,
    pub health: HealthRecord,
}

/// A live actor: its address, whether it wants jobs past the mailbox bound,
/// and how many jobs it holds (for feeding parked jobs back).
struct Handle {
    addr: Addr<EndpointActor>,
    fifo: Arc<AtomicBool>,
    queued: Arc<AtomicUsize>,
}

type Directory = Mutex<HashMap<String, Handle>>;

fn lock(directory: &Directory) -> MutexGuard<'_, HashMap<String, Handle>> {
    directory.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A stream entry id (`<ms>-<seq>`) as a number pair that sorts like the stream.
pub fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(u64::MAX), seq.parse().unwrap_or(u64::MAX))
}

fn work_order(work: &Work) -> (u64, u64) {
    entry_order(&work.taken.entry.id)
}

/// Endpoint id → actor address.
pub struct Actors {
    shared: Arc<Shared>,
    arbiters: Vec<ArbiterHandle>,
    directory: Arc<Directory>,
}

impl Actors {
    pub fn new(shared: Arc<Shared>, system: &ActorSystem) -> Self {
        Actors { shared, arbiters: system.arbiters.clone(), directory: Arc::default() }
    }

    pub fn contains(&self, endpoint_id: &str) -> bool {
        lock(&self.directory).contains_key(endpoint_id)
    }

    pub fn len(&self) -> usize {
        lock(&self.directory).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hands `work` to its endpoint's actor, starting one from `loaded` when
    /// there is none. `loaded` is `None` when the endpoint was not loaded
    /// (an actor existed then) and `Some(None)` when it does not exist.
    pub fn dispatch(&self, work: Work, loaded: Option<Option<&Loaded>>) -> Result<(), Refused> {
        let mut directory = lock(&self.directory);
        let id = work.taken.job.endpoint_id.clone();
        let mut work = work;
        if let Some(handle) = directory.get(&id) {
            if handle.addr.connected() && handle.fifo.load(AtomicOrdering::Acquire) {
                // Putting a fifo job off would reorder it; the actor's own
                // queue bound applies instead.
                handle.addr.do_send(Deliver(work));
                return Ok(());
            }
            match handle.addr.try_send(Deliver(work)) {
                Ok(()) => return Ok(()),
                Err(SendError::Full(Deliver(w))) => return Err(Refused::Later(Box::new(w))),
                Err(SendError::Closed(Deliver(w))) => {
                    directory.remove(&id);
                    work = w;
                }
            }
        }
        let loaded = match loaded {
            None => return Err(Refused::NeedEndpoint(Box::new(work))),
            Some(None) => return Err(Refused::NoEndpoint(Box::new(work))),
            Some(Some(loaded)) => loaded,
        };
        let Some(arbiter) = self.arbiters.get(partition_of(&id, self.arbiters.len() as u32) as usize) else {
            return Err(Refused::Later(Box::new(work)));
        };
        let fifo = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let actor =
            EndpointActor::new(self.shared.clone(), self.directory.clone(), loaded, fifo.clone(), queued.clone());
        let addr = EndpointActor::start_in_arbiter(arbiter, move |ctx: &mut Context<EndpointActor>| {
            ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
            actor
        });
        let sent = addr.try_send(Deliver(work));
        directory.insert(id, Handle { addr, fifo, queued });
        match sent {
            Ok(()) => Ok(()),
            Err(SendError::Full(Deliver(w)) | SendError::Closed(Deliver(w))) => Err(Refused::Later(Box::new(w))),
        }
    }

    /// How many parked jobs the endpoint's actor on this dispatcher can take
    /// now: `None` when it has none here, and nothing until its queue is
    /// down to half, so jobs come back in chunks rather than one by one.
    pub fn room_for_parked(&self, endpoint_id: &str) -> Option<usize> {
        let queued = lock(&self.directory).get(endpoint_id)?.queued.load(AtomicOrdering::Relaxed);
        Some((QUEUE_CAPACITY / 2).saturating_sub(queued))
    }

    /// The endpoint changed (`None`: deleted); its actor, if any, reloads.
    pub fn reload(&self, endpoint_id: &str, record: Option<EndpointRecord>) {
        if let Some(handle) = lock(&self.directory).get(endpoint_id) {
            // A rare control message; it must not be refused for a full mailbox.
            handle.addr.do_send(Reload(record));
        }
    }

    /// Stops the actors of partition `p`; their queued jobs stay pending.
    pub fn evict_partition(&self, p: u32, partitions: u32) {
        let mut directory = lock(&self.directory);
        let ids: Vec<String> = directory.keys().filter(|id| partition_of(id, partitions) == p).cloned().collect();
        for id in ids {
            if let Some(handle) = directory.remove(&id) {
                handle.addr.do_send(Evict);
            }
        }
    }

    pub fn evict_all(&self) {
        for (_, handle) in lock(&self.directory).drain() {
            handle.addr.do_send(Evict);
        }
    }

    /// The token cache of the endpoint's live actor on this dispatcher, so a
    /// test send reuses its token instead of requesting one of its own.
    /// `None` when no actor runs here (or it does not answer promptly).
    pub async fn token_cache(&self, endpoint_id: &str) -> Option<Arc<TokenCache>> {
        let addr = lock(&self.directory).get(endpoint_id).map(|handle| handle.addr.clone())?;
        tokio::time::timeout(TOKEN_CACHE_WAIT, addr.send(CurrentTokens)).await.ok()?.ok()
    }
}

/// How long a test send waits for the actor to hand over its token cache.
const TOKEN_CACHE_WAIT: Duration = Duration::from_secs(1);

#[derive(Message)]
#[rtype(result = "()")]
struct Deliver(Work);

#[derive(Message)]
#[rtype(result = "()")]
struct Reload(Option<EndpointRecord>);

#[derive(Message)]
#[rtype(result = "()")]
struct Evict;

#[derive(Message)]
#[rtype(result = "Arc<TokenCache>")]
struct CurrentTokens;

enum State {
    Ready(Arc<Target>),
    /// Jobs fail with this error.
    Inactive(String),
}

pub struct EndpointActor {
    id: String,
    shared: Arc<Shared>,
    directory: Arc<Directory>,
    record: Option<EndpointRecord>,
    state: State,
    tokens: Arc<TokenCache>,
    health: Arc<Health>,
    /// The receiver's `Retry-After`, which holds every delivery.
    pause: Arc<Pause>,
    /// The incarnation and activation `health` and `tokens` belong to.
    epoch: String,
    max_in_flight: usize,
    rate_per_second: Option<usize>,
    max_batch: usize,
    /// `ordering: fifo`, shared with the directory entry.
    fifo: Arc<AtomicBool>,
    /// The queue's length, shared with the directory entry.
    queued: Arc<AtomicUsize>,
    /// Sorted by stream entry id when `fifo`.
    queue: VecDeque<Work>,
    in_flight: usize,
    /// `fifo`: the held job at the head of the queue is due again then.
    hold_until: Option<Instant>,
    /// `fifo`: entries let go for a full queue, by entry id, with when.
    let_go: BTreeMap<(u64, u64), Instant>,
    /// Start times of attempts within the last second, for the rate limit.
    recent: VecDeque<Instant>,
    wake: Option<(SpawnHandle, Instant)>,
    last_active: Instant,
    last_refresh: Instant,
}

impl EndpointActor {
    fn new(
        shared: Arc<Shared>,
        directory: Arc<Directory>,
        loaded: &Loaded,
        fifo: Arc<AtomicBool>,
        queued: Arc<AtomicUsize>,
    ) -> Self {
        let breaker = Breaker::from_config(&shared.config);
        let epoch = health_epoch(&loaded.record);
        let stored = loaded.health.clone().for_epoch(&epoch);
        let health = Health::restore(breaker, &stored, Instant::now(), time_fmt::now_millis());
        let pause = Arc::new(Pause::new(shared.config.retry_after_max));
        let mut actor = EndpointActor {
            id: loaded.record.id.clone(),
            shared,
            directory,
            record: None,
            state: State::Inactive(String::new()),
            tokens: Arc::new(TokenCache::new()),
            health: Arc::new(health),
            pause,
            epoch,
            max_in_flight: 1,
            rate_per_second: None,
            max_batch: 1,
            fifo,
            queued,
            queue: VecDeque::new(),
            in_flight: 0,
            hold_until: None,
            let_go: BTreeMap::new(),
            recent: VecDeque::new(),
            wake: None,
            last_active: Instant::now(),
            last_refresh: Instant::now(),
        };
        actor.apply(Some(loaded.record.clone()));
        actor
    }

    fn is_fifo(&self) -> bool {
        self.fifo.load(AtomicOrdering::Acquire)
    }

    /// Takes a (new) version of the endpoint record.
    fn apply(&mut self, record: Option<EndpointRecord>) {
        self.last_refresh = Instant::now();
        let Some(record) = record else {
            self.state = State::Inactive("endpoint deleted".into());
            self.record = None;
            return;
        };
        let epoch = health_epoch(&record);
        if epoch != self.epoch {
            // Created again under this id, or activated again: neither the
            // old breaker (an open circuit, a running disable clock), nor a
            // pause, nor the old token carries over.
            self.health = Arc::new(Health::new(Breaker::from_config(&self.shared.config)));
            self.pause = Arc::new(Pause::new(self.shared.config.retry_after_max));
            self.tokens = Arc::new(TokenCache::new());
            self.epoch = epoch;
        } else if self.record.as_ref().is_some_and(|old| old.auth != record.auth) {
            self.tokens = Arc::new(TokenCache::new());
        }
        let fifo = record.ordering == Ordering::Fifo;
        self.fifo.store(fifo, AtomicOrdering::Release);
        if fifo {
            self.queue.make_contiguous().sort_by_key(work_order);
        } else {
            self.hold_until = None;
            self.let_go.clear();
        }
        self.max_in_flight = if fifo {
            1
        } else {
            record.max_in_flight.unwrap_or(self.shared.config.default_max_in_flight).max(1) as usize
        };
        self.rate_per_second = record.rate_limit_per_second.filter(|r| *r > 0).map(|r| r as usize);
        let cfg = &self.shared.config;
        self.state = match record.status {
            EndpointStatus::Deactivated => State::Inactive("endpoint deactivated".into()),
            EndpointStatus::Disabled => State::Inactive("endpoint disabled".into()),
            EndpointStatus::Active => {
                match PreparedEndpoint::prepare(&record, &cfg.secrets, &cfg.url_policy, &cfg.webhook_origin) {
                    Ok(prepared) => {
                        self.max_batch = prepared.max_batch_size().max(1);
                        State::Ready(Arc::new(Target {
                            prepared: prepared.pausing(self.pause.clone()),
                            tokens: self.tokens.clone(),
                            health: self.health.clone(),
                            handshake_needed: record.handshake,
                            handshake_done: AtomicBool::new(false),
                            handshake_lock: tokio::sync::Mutex::new(()),
                            fifo,
                            schedule: Schedule::new(&cfg.retry_schedule, record.retry.as_ref()),
                            epoch: self.epoch.clone(),
                        }))
                    }
                    Err(e) => {
                        tracing::error!(endpoint = %record.id, error = %e, "endpoint cannot be prepared for delivery");
                        State::Inactive(format!("endpoint configuration is unusable: {e}"))
                    }
                }
            }
        };
        self.record = Some(record);
        self.fail_refused();
    }

    /// Why `work` must not reach this endpoint (see [`lifecycle::refusal`]).
    fn refusal(&self, work: &Work) -> Option<String> {
        self.record.as_ref().and_then(|record| lifecycle::refusal(&work.taken.job, record))
    }

    /// Fails, unsent, the queued jobs of another tenant or of an earlier
    /// incarnation of this endpoint.
    fn fail_refused(&mut self) {
        let mut refused: BTreeMap<String, Vec<Work>> = BTreeMap::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for work in self.queue.drain(..) {
            match self.record.as_ref().and_then(|record| lifecycle::refusal(&work.taken.job, record)) {
                Some(reason) => refused.entry(reason).or_default().push(work),
                None => kept.push_back(work),
            }
        }
        self.queue = kept;
        for (reason, works) in refused {
            self.fail_unsent(works, reason);
        }
    }

    /// Starts as many queued jobs as the limits allow.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.start_queued(ctx);
        self.queued.store(self.queue.len(), AtomicOrdering::Relaxed);
    }

    fn start_queued(&mut self, ctx: &mut Context<Self>) {
        if self.queue.is_empty() {
            return;
        }
        let target = match &self.state {
            State::Ready(target) => target.clone(),
            State::Inactive(reason) => {
                let reason = reason.clone();
                self.hold_until = None;
                self.fail_queued(reason);
                return;
            }
        };
        while self.in_flight < self.max_in_flight && !self.queue.is_empty() {
            let n = match self.gate(&target, Instant::now()) {
                Ok(0) => return,
                Ok(n) => n,
                Err(at) => {
                    self.wake_at(at, ctx);
                    return;
                }
            };
            let batch: Vec<Work> = self.queue.drain(..n).collect();
            self.in_flight += 1;
            let attempt = self.shared.rt.spawn(delivery::deliver(self.shared.clone(), target.clone(), batch));
            let health = target.health.clone();
            ctx.spawn(wrap_future::<_, Self>(attempt).map(move |result, act, ctx| {
                act.in_flight = act.in_flight.saturating_sub(1);
                act.last_active = Instant::now();
                match result {
                    Ok(report) => {
                        if report.disabled {
                            act.state = State::Inactive("endpoint disabled".into());
                        }
                        if !report.held.is_empty() {
                            // The oldest jobs of the endpoint: back to the head.
                            for work in report.held.into_iter().rev() {
                                act.queue.push_front(work);
                            }
                            act.hold_until = report.retry_at;
                            // The endpoint may have been created again meanwhile.
                            act.fail_refused();
                        }
                    }
                    Err(e) => {
                        health.cancel();
                        tracing::error!(error = %e, "delivery task ended abnormally");
                    }
                }
                act.pump(ctx);
            }));
        }
    }

    /// Runs [`Self::pump`] at `at`, or earlier if it is already due earlier.
    fn wake_at(&mut self, at: Instant, ctx: &mut Context<Self>) {
        if let Some((handle, when)) = self.wake {
            if when <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let after = at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let handle = ctx.run_later(after, |act, ctx| {
            act.wake = None;
            act.pump(ctx);
        });
        self.wake = Some((handle, at));
    }

    fn fail_queued(&mut self, reason: String) {
        let queued: Vec<Work> = self.queue.drain(..).collect();
        self.fail_unsent(queued, reason);
    }

    fn fail_unsent(&self, works: Vec<Work>, reason: String) {
        let (taken, types): (Vec<Taken>, Vec<Option<String>>) = works
            .into_iter()
            .map(|w| {
                let event_type = Some(w.event.event.event_type.clone());
                (w.taken, event_type)
            })
            .unzip();
        if !taken.is_empty() {
            self.shared.rt.spawn(delivery::fail_unsent(self.shared.clone(), taken, types, reason));
        }
    }

    /// `fifo`: queues `work` in entry order; with the queue full, the newest
    /// of it and the queued jobs is let go (left pending) and remembered.
    fn enqueue_fifo(&mut self, work: Work) {
        let order = work_order(&work);
        self.let_go.remove(&order);
        let work = if self.queue.len() >= QUEUE_CAPACITY {
            match self.queue.back() {
                Some(tail) if work_order(tail) > order => {
                    let Some(tail) = self.queue.pop_back() else { return };
                    self.let_go.insert(work_order(&tail), Instant::now());
                    work
                }
                _ => {
                    self.let_go.insert(order, Instant::now());
                    return;
                }
            }
        } else {
            work
        };
        let at = self.queue.iter().rposition(|w| work_order(w) < order).map_or(0, |i| i + 1);
        self.queue.insert(at, work);
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        self.let_go.retain(|_, at| at.elapsed() < LET_GO_FORGET);
        let idle = self.queue.is_empty() && self.in_flight == 0 && self.let_go.is_empty();
        if idle && self.last_active.elapsed() >= IDLE_STOP {
            let me = ctx.address();
            let mut directory = lock(&self.directory);
            if directory.get(&self.id).is_some_and(|h| h.addr == me) {
                directory.remove(&self.id);
            }
            drop(directory);
            ctx.stop();
            return;
        }
        if self.last_refresh.elapsed() >= REFRESH_EVERY {
            self.last_refresh = Instant::now();
            let records = self.shared.records.clone();
            let id = self.id.clone();
            let fetch = self.shared.rt.spawn(async move {
                let raw = records.endpoint_raw(&id).await?;
                raw.map(|raw| serde_json::from_slice::<EndpointRecord>(&raw)).transpose().map_err(DispatchError::from)
            });
            ctx.spawn(wrap_future::<_, Self>(fetch).map(|result, act, ctx| {
                if let Ok(Ok(record)) = result {
                    act.apply(record);
                    act.pump(ctx);
                }
            }));
        }
    }
}

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        metrics::gauge!("herald_live_actors").increment(1.0);
        ctx.run_interval(CHECK_EVERY, |act, ctx| act.check(ctx));
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        metrics::gauge!("herald_live_actors").decrement(1.0);
    }
}

impl Handler<Deliver> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Deliver(work): Deliver, ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        if let Some(reason) = self.refusal(&work) {
            self.fail_unsent(vec![work], reason);
            return;
        }
        if self.is_fifo() {
            self.enqueue_fifo(work);
            self.pump(ctx);
            return;
        }
        if self.queue.len() >= QUEUE_CAPACITY {
            self.shared.rt.spawn(delivery::park(self.shared.clone(), vec![work]));
            return;
        }
        self.queue.push_back(work);
        self.pump(ctx);
    }
}

impl Handler<Reload> for EndpointActor {
    type Result = ();

    fn handle(&mut self, Reload(record): Reload, ctx: &mut Self::Context) {
        self.apply(record);
        self.pump(ctx);
    }
}

impl Handler<CurrentTokens> for EndpointActor {
    type Result = MessageResult<CurrentTokens>;

    fn handle(&mut self, _: CurrentTokens, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.tokens.clone())
    }
}

impl Handler<Evict> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Evict, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_sort_like_the_stream() {
        assert!(entry_order("1700000000000-2") < entry_order("1700000000000-10"));
        assert!(entry_order("999-5") < entry_order("1000-0"));
        assert_eq!(entry_order("12-3"), (12, 3));
        assert_eq!(entry_order("12"), (12, 0));
        assert_eq!(entry_order("x-y"), (u64::MAX, u64::MAX));
    }
}
