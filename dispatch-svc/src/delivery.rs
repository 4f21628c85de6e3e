//! From a batch of jobs to a stored, acknowledged outcome.
//!
//! [`deliver`] is what an endpoint actor spawns for each attempt. It runs on
//! the actor's arbiter, as a task of its own; when spans are exported, inside
//! a span whose parent is the publisher's `traceparent`. Either way the
//! webhook's own `traceparent` header carries the publisher's trace id
//! (and without a publisher's, the delivery id), with a span id of the
//! attempt's own ([`telemetry::attempt_traceparent`]).
//! After the attempt it works out what follows for every job
//! ([`crate::retry::next_step`]) and stores outcome, attempt, next retry and
//! acknowledgement in one `MULTI` ([`Records::settle`]). Only then does the
//! endpoint get disabled for a `410` (through the registry).
//!
//! Storing is retried for a while when Redis is briefly away. If it still
//! fails, nothing is acknowledged: the entries stay pending, are claimed
//! again and sent again (receivers deduplicate by `webhook-id`), which is the
//! at-least-once side of the trade.
//!
//! **`fifo` endpoints** do not use the retry set: a failed job that will be
//! tried again is stored (attempt, `retrying`, `nextAttemptAt`) without
//! acknowledging its stream entry and handed back to the actor in
//! [`Report::held`], which keeps it at the head of its queue and tries it
//! again when it is due, while the jobs behind it wait. See [`crate::actor`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald_common::backoff::{Backoff, retry};
use herald_common::model::Job;
use herald_common::{telemetry, time_fmt};
use tokio::time::Instant;
use tracing::Instrument;

use crate::Shared;
use crate::health::Health;
use crate::observe::DeliveryMetrics;
use crate::operational;
use crate::partition::LiveGuard;
use crate::records::{AttemptRecord, DeliveryStatus, Entry, HealthRecord, KnownValues, Settlement};
use crate::retry::{Next, Schedule, due_at, next_step, random_unit};
use crate::send::attempt::PreparedEndpoint;
use crate::send::oauth::TokenCache;
use crate::send::outcome::{AttemptOutcome, Verdict};
use crate::send::render::LoadedEvent;

mod webhook_id;

use webhook_id::message_id;

/// How often storing an outcome is tried before the entry is left pending.
const SETTLE_TRIES: u32 = 8;

/// A job taken from a partition stream and not yet settled. Dropping it
/// (an actor stopping with a queue) leaves the entry pending for a reclaim.
#[derive(Debug)]
pub struct Taken {
    pub job: Job,
    pub entry: Entry,
    pub guard: LiveGuard,
    /// Claimed from the pending entries rather than read new: for a `fifo`
    /// job, the attempt number in the entry may be behind the stored one.
    pub reclaimed: bool,
}

/// A job with its loaded event, ready for an endpoint actor.
#[derive(Debug)]
pub struct Work {
    pub taken: Taken,
    pub event: Arc<LoadedEvent>,
}

/// An endpoint as its actor holds it, shared with the attempts it spawns.
pub struct Target {
    pub prepared: PreparedEndpoint,
    /// The HTTP client of the arbiter the endpoint's actor lives on.
    pub client: reqwest::Client,
    pub tokens: Arc<TokenCache>,
    pub health: Arc<Health>,
    /// The CloudEvents handshake, when the endpoint asks for one, is done.
    pub handshake_needed: bool,
    pub handshake_done: AtomicBool,
    pub handshake_lock: tokio::sync::Mutex<()>,
    /// `ordering: fifo`: failed jobs go back to the actor, not the retry set.
    pub fifo: bool,
    /// The endpoint's retry policy over the installation's schedule.
    pub schedule: Schedule,
    /// The endpoint incarnation `health` belongs to, stored with its snapshot.
    pub epoch: String,
}

/// What an attempt tells its actor.
#[derive(Debug, Default)]
pub struct Report {
    /// The endpoint was disabled (`410`, or failing too long): stop delivering.
    pub disabled: bool,
    /// `fifo` only: the jobs to try again (attempt number already raised),
    /// still pending in the stream, and when.
    pub held: Vec<Work>,
    pub retry_at: Option<Instant>,
}

/// Sends one batch (one job, or several for `envelope`) and settles it.
///
/// The attempt gets a `webhook.deliver` span only when spans are exported
/// and the publisher's trace is sampled; otherwise the webhook's
/// `traceparent` is made from the publisher's, the delivery id and the
/// attempt number.
pub async fn deliver(shared: Arc<Shared>, target: Arc<Target>, batch: Vec<Work>) -> Report {
    let Some(first) = batch.first() else { return Report::default() };
    let publisher = first.taken.job.traceparent.as_deref();
    if !telemetry::recorded(publisher) {
        return deliver_batch(shared, target, batch, None).await;
    }
    let span = tracing::info_span!(
        "webhook.deliver",
        otel.kind = "client",
        endpoint = %first.taken.job.endpoint_id,
        delivery = %first.taken.job.delivery_id,
        attempt = first.taken.job.attempt,
        batch = batch.len(),
    );
    if let Some(tp) = publisher {
        telemetry::set_parent(&span, tp);
    }
    let traceparent = telemetry::traceparent_of(&span);
    deliver_batch(shared, target, batch, traceparent).instrument(span).await
}

/// `span_traceparent` is the attempt span's, when one was made.
async fn deliver_batch(
    shared: Arc<Shared>,
    target: Arc<Target>,
    mut batch: Vec<Work>,
    span_traceparent: Option<String>,
) -> Report {
    if target.fifo {
        catch_up_attempts(&shared, &mut batch).await;
    }
    // Made from the first job alone when no span and no publisher trace
    // stand behind it: then that job's record can make it again.
    let made_from_first =
        span_traceparent.is_none() && batch.first().is_some_and(|w| w.taken.job.traceparent.is_none());
    let traceparent = match (span_traceparent, batch.first()) {
        (Some(span), _) => span,
        (None, Some(first)) => made_traceparent(&first.taken.job),
        (None, None) => new_traceparent(),
    };
    let events: Vec<Arc<LoadedEvent>> = batch.iter().map(|w| w.event.clone()).collect();
    let msg_id = message_id(batch.iter().map(|w| w.taken.job.event_id.as_str()));

    let mut outcome = match handshake(&target).await {
        Ok(()) => target.prepared.attempt(&target.client, &target.tokens, &events, &msg_id, Some(&traceparent)).await,
        Err(error) => AttemptOutcome::failed(Verdict::Retry, error),
    };
    let series = DeliveryMetrics::get();
    series.attempt_duration.record(outcome.latency.as_secs_f64());

    let token_error = target.tokens.last_error().map(|e| e.code().map_or_else(|| e.to_string(), str::to_owned));
    let now_ms = time_fmt::now_millis();
    let now = Instant::now();
    let mut recorded = target.health.record(outcome.delivered(), token_error, now, now_ms);
    if recorded.persist {
        recorded.snapshot.epoch = Some(target.epoch.clone());
    }
    let gone = outcome.verdict == Verdict::Gone;
    if !outcome.delivered() {
        tracing::info!(
            status = outcome.status_code,
            error = outcome.error.as_deref().unwrap_or_default(),
            "webhook attempt failed"
        );
    }

    let event_types: Vec<&str> = batch.iter().map(|w| w.event.event_type.as_str()).collect();
    let mut settlements = Vec::with_capacity(batch.len());
    let mut hold_for: Option<Duration> = None;
    let cfg = &shared.config;
    let last = batch.len().saturating_sub(1);
    for (i, (work, event_type)) in batch.iter().zip(&event_types).enumerate() {
        let job = &work.taken.job;
        let (error, response_body, sent) = if i == last { outcome.take_detail() } else { outcome.detail() };
        let attempt = AttemptRecord {
            n: job.attempt,
            at: now_ms,
            status_code: outcome.status_code,
            latency_ms: outcome.latency_ms(),
            error,
            response_body,
            sent: sent.map(|sent| {
                // One request, one `traceparent`: only the first job's record
                // can make it again (the others' delivery ids differ).
                let remade = (i == 0 && made_from_first).then_some(traceparent.as_str());
                sent.without_known(&KnownValues { event_id: &job.event_id, traceparent: remade })
            }),
        };
        let (status, retry, held) =
            match next_step(&target.schedule, cfg.retry_after_max, job.attempt, outcome.verdict, random_unit()) {
                Next::Delivered => (DeliveryStatus::Delivered, None, None),
                Next::RetryIn(delay) if target.fifo => {
                    hold_for = Some(hold_for.map_or(delay, |d| d.max(delay)));
                    (DeliveryStatus::Retrying, None, Some(due_at(now_ms, delay)))
                }
                Next::RetryIn(delay) => {
                    let next = Job { attempt: job.attempt.saturating_add(1), ..job.clone() };
                    (DeliveryStatus::Retrying, Some((due_at(now_ms, delay), next)), None)
                }
                Next::Failed { .. } => (DeliveryStatus::Failed, None, None),
            };
        settlements.push(Settlement {
            job,
            entry: &work.taken.entry,
            event_type: Some(event_type),
            attempt: Some(attempt),
            status,
            retry,
            held,
        });
    }
    let health = recorded.persist.then(|| (target.prepared.id(), &recorded.snapshot));
    let settled = settle(&shared, &settlements, health).await;
    if settled {
        for s in &settlements {
            if let Some(settled) = series.settled(s.status) {
                settled.increment(1);
            }
            if s.retry.is_some() || s.held.is_some() {
                series.retries_scheduled.increment(1);
            }
            if let (DeliveryStatus::Failed, Some(last)) = (s.status, &s.attempt) {
                let failed = operational::FailedDelivery {
                    tenant: &s.job.tenant,
                    delivery_id: &s.job.delivery_id,
                    endpoint_id: &s.job.endpoint_id,
                    event_id: &s.job.event_id,
                    event_type: s.event_type.unwrap_or_default(),
                    last,
                };
                operational::delivery_failed(&shared, &failed);
            }
        }
    }
    if let Some(error) = &recorded.token_failed {
        operational::token_failed(&shared, target.prepared.tenant(), target.prepared.id(), error);
    }
    let keep: Vec<bool> = settlements.iter().map(|s| s.held.is_some()).collect();
    drop(settlements);
    drop(event_types);
    // A held job stays with the actor even when storing its attempt
    // failed: its entry is pending either way, and the order must hold.
    // (In an envelope batch a job may have run out of attempts while the
    // others are held: it is settled and dropped here.)
    let held: Vec<Work> = batch
        .into_iter()
        .zip(keep)
        .filter(|(_, keep)| *keep)
        .map(|(mut w, _)| {
            w.taken.job.attempt = w.taken.job.attempt.saturating_add(1);
            w
        })
        .collect();

    let reason = if gone {
        Some("gone")
    } else if recorded.disable {
        Some("failing")
    } else {
        None
    };
    if let Some(reason) = reason {
        let (tenant, id) = (target.prepared.tenant().to_owned(), target.prepared.id().to_owned());
        shared.rt.spawn(disable_endpoint(shared.clone(), tenant, id, reason));
    }
    // Held jobs of an endpoint just disabled go back too: the actor fails
    // them with the rest of its queue.
    // Delays are bounded, but a clock overflow must not take the task down
    // whatever the schedule says: a year is as good as forever here.
    let retry_at = hold_for.map(|d| now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(365 * 86_400)));
    Report { disabled: reason.is_some(), held, retry_at }
}

/// How often disabling an endpoint in the registry is tried.
const DISABLE_TRIES: u32 = 8;

/// Disables an endpoint in the registry, trying again with backoff while
/// the registry is unreachable (for about two minutes): the actor has
/// already stopped delivering, but until the registry records it the
/// endpoint still shows `active` and another dispatcher would deliver to it.
async fn disable_endpoint(shared: Arc<Shared>, tenant: String, id: String, reason: &'static str) {
    let backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
    let disable = || shared.registry.disable_endpoint(&tenant, &id, reason);
    let on_failure =
        |e: &_, _| tracing::warn!(endpoint = %id, reason, error = %e, "could not disable the endpoint yet");
    match retry(backoff, DISABLE_TRIES, disable, on_failure).await {
        Ok(()) => tracing::warn!(endpoint = %id, reason, "endpoint disabled"),
        Err(e) => tracing::error!(endpoint = %id, reason, error = %e, "could not disable the endpoint; giving up"),
    }
}

/// A `fifo` job claimed again after a crash or a move carries the attempt
/// number of its stream entry, which does not count the attempts its
/// previous actor made while holding it; the stored count does.
async fn catch_up_attempts(shared: &Shared, batch: &mut [Work]) {
    if !batch.iter().any(|w| w.taken.reclaimed) {
        return;
    }
    let ids: Vec<&str> = batch.iter().map(|w| w.taken.job.delivery_id.as_str()).collect();
    match shared.records.attempt_counts(&ids).await {
        Ok(counts) => {
            for (work, stored) in batch.iter_mut().zip(counts) {
                let job = &mut work.taken.job;
                job.attempt = job.attempt.max(stored.saturating_add(1));
                work.taken.reclaimed = false;
            }
        }
        // The entry's own number then: at worst a few attempts more.
        Err(e) => tracing::warn!(error = %e, "cannot read stored attempt counts"),
    }
}

/// The `traceparent` a webhook carries: `known` (the attempt span's, a child
/// of the publisher's; or the publisher's own when no span was made), else a
/// new trace, so every webhook carries a valid one whatever the log level.
pub fn webhook_traceparent(known: Option<String>) -> String {
    known.unwrap_or_else(new_traceparent)
}

/// The `traceparent` of a job's attempt sent without a span of its own.
fn made_traceparent(job: &Job) -> String {
    telemetry::attempt_traceparent(job.traceparent.as_deref(), &job.delivery_id, job.attempt)
        .unwrap_or_else(new_traceparent)
}

/// A `traceparent` that starts a trace of its own.
fn new_traceparent() -> String {
    let trace: u128 = rand::random::<u128>().max(1);
    let span: u64 = rand::random::<u64>().max(1);
    format!("00-{trace:032x}-{span:016x}-01")
}

/// The CloudEvents abuse-protection handshake, once per loaded endpoint.
async fn handshake(target: &Target) -> Result<(), String> {
    if !target.handshake_needed || target.handshake_done.load(Ordering::Acquire) {
        return Ok(());
    }
    let _one = target.handshake_lock.lock().await;
    if target.handshake_done.load(Ordering::Acquire) {
        return Ok(());
    }
    target.prepared.handshake(&target.client, &target.tokens).await?;
    target.handshake_done.store(true, Ordering::Release);
    Ok(())
}

/// Stores settlements, retrying while Redis is away; `false` when it gave up
/// (the entries stay pending and will be claimed again).
pub async fn settle(shared: &Shared, settlements: &[Settlement<'_>], health: Option<(&str, &HealthRecord)>) -> bool {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let store = || shared.records.settle(settlements, health);
    let on_failure = |e: &_, delay: Duration| tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "storing an outcome failed");
    match retry(backoff, SETTLE_TRIES, store, on_failure).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, jobs = settlements.len(), "outcome not stored; the jobs stay pending");
            false
        }
    }
}

/// Fails jobs without sending them (payload expired, endpoint deleted or
/// not active), with `error` stored as the attempt's error.
pub async fn fail_unsent(shared: Arc<Shared>, taken: Vec<Taken>, event_types: Vec<Option<String>>, error: String) {
    let now = time_fmt::now_millis();
    let settlements: Vec<Settlement<'_>> = taken
        .iter()
        .zip(event_types.iter().map(Option::as_deref).chain(std::iter::repeat(None)))
        .map(|(t, event_type)| Settlement {
            job: &t.job,
            entry: &t.entry,
            event_type,
            attempt: Some(AttemptRecord {
                n: t.job.attempt,
                at: now,
                status_code: None,
                latency_ms: 0,
                error: Some(error.clone()),
                response_body: String::new(),
                sent: None,
            }),
            status: DeliveryStatus::Failed,
            retry: None,
            held: None,
        })
        .collect();
    if settle(&shared, &settlements, None).await {
        metrics::counter!("herald_deliveries_total", "outcome" => "failed").increment(settlements.len() as u64);
    }
}

/// Parks jobs whose endpoint's queue (or mailbox) is full, without
/// counting an attempt: they wait in the endpoint's park list, durable, and
/// come back through the stream as the queue drains (see
/// `records::parking`), so the partition reader never waits on a slow
/// endpoint and never reads the same job twice a second.
pub async fn park(shared: Arc<Shared>, works: Vec<Work>) {
    let jobs: Vec<(&Job, &crate::records::Entry)> = works.iter().map(|w| (&w.taken.job, &w.taken.entry)).collect();
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let store = || shared.records.park(&jobs);
    let on_failure = |e: &_, delay: Duration| tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "parking jobs failed");
    match retry(backoff, SETTLE_TRIES, store, on_failure).await {
        Ok(()) => metrics::counter!("herald_deliveries_parked_total").increment(jobs.len() as u64),
        Err(e) => tracing::error!(error = %e, jobs = jobs.len(), "jobs not parked; they stay pending"),
    }
}
