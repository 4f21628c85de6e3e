//! One actix actor per endpoint, and the directory that finds it.
//!
//! This is the only module that uses actix. The actors run on a small set of
//! arbiters (threads with their own single-threaded runtime) of an actix
//! system started on a dedicated thread ([`ActorSystem`]); an endpoint's
//! actor lives on the arbiter its id hashes to. An actor holds the endpoint
//! as prepared for delivery, its OAuth token cache, its circuit breaker, and
//! its gate ([`crate::endpoint`]: a bounded queue of jobs, the rate limit and
//! the in-flight limit).
//!
//! An actor only keeps books. Each attempt is spawned as a task of its own
//! on the actor's arbiter, with that arbiter's HTTP client (whose pooled
//! connections are driven on the same thread), and the actor is told when it
//! ends, so up to `maxInFlight` attempts run at once and no slow endpoint
//! holds up the actor. Only the outcome's write crosses to the dispatcher's
//! runtime, where the group-committing writer and the Redis connection
//! live. The attempt stores its outcome and acknowledges the stream entry
//! itself ([`crate::delivery`]), so an actor that stops (idle, reloaded
//! away, lease lost, shutdown) never loses an outcome: what was only queued
//! stays pending in Redis and is claimed again.
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
//! the queue while open. The actor asks its gate ([`crate::endpoint::Gate`],
//! which keeps the queue and these limits, without actix) before each
//! attempt, and executes its answer: starts the attempt, or sets a timer to
//! ask again. A new actor's breaker carries on from the endpoint's stored
//! health.
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

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

use actix::fut::wrap_future;
use actix::prelude::*;
use herald_common::model::{EndpointRecord, EndpointStatus, Ordering};
use herald_common::time_fmt;
use tokio::time::Instant;

use crate::Shared;
use crate::delivery::{self, Taken, Target, Work};
use crate::endpoint::{Decision, Gate, Guards, Queued, entry_order};
use crate::error::DispatchError;
use crate::health::{Breaker, Health, Pause};
use crate::lifecycle::{self, health_epoch};
use crate::retry::Schedule;
use crate::send::attempt::PreparedEndpoint;
use crate::send::host_limit::HostLimits;
use crate::send::oauth::TokenCache;

mod directory;
mod mailbox;
mod system;

pub use directory::{Actors, Loaded, Refused};
use directory::{Directory, lock};
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

/// A job as the gate sees it.
impl Queued for Work {
    fn order(&self) -> (u64, u64) {
        entry_order(&self.taken.entry.id)
    }

    fn envelope_len(&self) -> usize {
        self.event.envelope_message_len()
    }

    fn partition_settled(&self) -> bool {
        self.taken.guard.partition_settled()
    }
}

enum State {
    Ready(Arc<Target>),
    /// Jobs fail with this error.
    Inactive(String),
}

/// Where an actor lives: what the dispatcher shares, the directory it is
/// listed in, and its arbiter's HTTP client and slots per host.
struct Home {
    shared: Arc<Shared>,
    directory: Arc<Directory>,
    client: reqwest::Client,
    hosts: Arc<HostLimits>,
}

pub struct EndpointActor {
    id: String,
    shared: Arc<Shared>,
    directory: Arc<Directory>,
    client: reqwest::Client,
    hosts: Arc<HostLimits>,
    record: Option<EndpointRecord>,
    state: State,
    tokens: Arc<TokenCache>,
    health: Arc<Health>,
    /// The receiver's `Retry-After`, which holds every delivery.
    pause: Arc<Pause>,
    /// The incarnation and activation `health` and `tokens` belong to.
    epoch: String,
    /// `ordering: fifo`, shared with the directory entry.
    fifo: Arc<AtomicBool>,
    /// The queue's length, shared with the directory entry.
    queued: Arc<AtomicUsize>,
    /// The queue, the in-flight count and the limits.
    gate: Gate<Work>,
    wake: Option<(SpawnHandle, Instant)>,
    last_active: Instant,
    last_refresh: Instant,
}

impl EndpointActor {
    fn new(home: Home, loaded: &Loaded, fifo: Arc<AtomicBool>, queued: Arc<AtomicUsize>) -> Self {
        let Home { shared, directory, client, hosts } = home;
        let breaker = Breaker::from_config(&shared.config);
        let epoch = health_epoch(&loaded.record);
        let stored = loaded.health.clone().for_epoch(&epoch);
        let health = Health::restore(breaker, &stored, Instant::now(), time_fmt::now_millis());
        let pause = Arc::new(Pause::new(shared.config.retry_after_max));
        let gate = Gate::new(QUEUE_CAPACITY, shared.config.max_batch_bytes);
        let mut actor = EndpointActor {
            id: loaded.record.id.clone(),
            shared,
            directory,
            client,
            hosts,
            record: None,
            state: State::Inactive(String::new()),
            tokens: Arc::new(TokenCache::new()),
            health: Arc::new(health),
            pause,
            epoch,
            fifo,
            queued,
            gate,
            wake: None,
            last_active: Instant::now(),
            last_refresh: Instant::now(),
        };
        actor.apply(Some(loaded.record.clone()));
        actor
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
        let max_in_flight = record.max_in_flight.unwrap_or(self.shared.config.default_max_in_flight).max(1) as usize;
        self.gate.configure(fifo, max_in_flight, record.rate_limit_per_second.map(|r| r as usize));
        let cfg = &self.shared.config;
        self.state = match record.status {
            EndpointStatus::Deactivated => State::Inactive("endpoint deactivated".into()),
            EndpointStatus::Disabled => State::Inactive("endpoint disabled".into()),
            EndpointStatus::Active => {
                match PreparedEndpoint::prepare(&record, &cfg.secrets, &cfg.url_policy, &cfg.webhook_origin) {
                    Ok(prepared) => {
                        self.gate.set_max_batch(prepared.max_batch_size());
                        let host_slots = self.hosts.slots_for(prepared.url());
                        State::Ready(Arc::new(Target {
                            prepared: prepared.pausing(self.pause.clone()).sharing_host(host_slots),
                            client: self.client.clone(),
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
        let Some(record) = &self.record else { return };
        let mut refused: BTreeMap<String, Vec<Work>> = BTreeMap::new();
        for (reason, work) in self.gate.remove_where(|work| lifecycle::refusal(&work.taken.job, record)) {
            refused.entry(reason).or_default().push(work);
        }
        for (reason, works) in refused {
            self.fail_unsent(works, reason);
        }
    }

    /// Starts as many queued jobs as the limits allow.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.start_queued(ctx);
        self.queued.store(self.gate.len(), AtomicOrdering::Relaxed);
    }

    fn start_queued(&mut self, ctx: &mut Context<Self>) {
        if self.gate.is_empty() {
            return;
        }
        let target = match &self.state {
            State::Ready(target) => target.clone(),
            State::Inactive(reason) => {
                let reason = reason.clone();
                let queued = self.gate.take_all();
                self.fail_unsent(queued, reason);
                return;
            }
        };
        loop {
            let guards = Guards { pause: &self.pause, health: &target.health };
            let batch = match self.gate.next(Instant::now(), &guards) {
                Decision::Start(batch) => batch,
                Decision::AskAt(at) => {
                    self.wake_at(at, ctx);
                    return;
                }
                Decision::Idle => return,
            };
            // On this arbiter, like the client's connections: no hand-off
            // between threads from the actor to the attempt to the socket.
            let attempt = actix::spawn(delivery::deliver(self.shared.clone(), target.clone(), batch));
            let health = target.health.clone();
            ctx.spawn(wrap_future::<_, Self>(attempt).map(move |result, act, ctx| {
                act.gate.finished();
                act.last_active = Instant::now();
                match result {
                    Ok(report) => {
                        if report.disabled {
                            act.state = State::Inactive("endpoint disabled".into());
                        }
                        if !report.held.is_empty() {
                            act.gate.hold(report.held, report.retry_at);
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

    fn fail_unsent(&self, works: Vec<Work>, reason: String) {
        let (taken, types): (Vec<Taken>, Vec<Option<String>>) = works
            .into_iter()
            .map(|w| {
                let event_type = Some(w.event.event_type.clone());
                (w.taken, event_type)
            })
            .unzip();
        if !taken.is_empty() {
            self.shared.rt.spawn(delivery::fail_unsent(self.shared.clone(), taken, types, reason));
        }
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        self.gate.forget_let_go(Instant::now());
        if self.gate.is_idle() && self.last_active.elapsed() >= IDLE_STOP {
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
