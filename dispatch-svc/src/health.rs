//! An endpoint's live delivery health: consecutive failures, the circuit
//! breaker, and when it started failing.
//!
//! The breaker holds an endpoint back instead of hammering it: after
//! [`Breaker::failures`] consecutive failed attempts spanning at least
//! [`Breaker::failing_for`], the circuit opens for a cool-down (doubling on
//! each re-open, up to [`Breaker::max_cool_down`]); queued jobs wait in the
//! actor until it ends, without counting an attempt. Then one probe goes
//! through (half open): success closes the circuit, failure opens it again.
//! An endpoint failing without a single success for the configured
//! `disable_after` is reported so the caller disables it.
//!
//! The state is shared (`Arc`) between the endpoint's actor, which asks
//! [`Health::admit`] before starting an attempt, and the attempt futures,
//! which [`Health::record`] their result and store the snapshot with it
//! (`ep:{id}:hp`, in the same `MULTI` as the outcome).
//!
//! **Persistence.** An actor does not live for ever (it stops when idle,
//! when its partition moves, when the process restarts), and a breaker that
//! forgot everything with it would never disable an endpoint that fails for
//! days across restarts. So the snapshot carries what the breaker needs —
//! consecutive failures, `failingSince`, and the open circuit's end and
//! cool-down, as wall-clock milliseconds — and a new actor starts from the
//! stored snapshot ([`Health::restore`]). How long an endpoint has been
//! failing is measured on the wall clock for the same reason.
//!
//! Beside the breaker, [`Pause`] holds the endpoint while a receiver's
//! `Retry-After` runs.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use herald_common::model::Millis;
use tokio::time::Instant;

use crate::observe::{Circuit, CircuitGauge};
use crate::records::HealthRecord;

mod breaker;
mod pause;

pub use breaker::Breaker;
pub use pause::Pause;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Start the attempt.
    Go,
    /// Hold everything back until then.
    HoldUntil(Instant),
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    last_success_at: Option<Millis>,
    failing_since: Option<Millis>,
    /// Monotonic twin of `failing_since`, for the breaker.
    failing_since_instant: Option<Instant>,
    open_until: Option<Instant>,
    cool_down: Duration,
    probing: bool,
    in_flight: u32,
    token_error: Option<String>,
    /// When the health hash was last written with a success on a clean
    /// record, to write a run of successes at most once per
    /// [`QUIET_PERSIST_EVERY_MS`].
    quiet_persisted_at: Option<Millis>,
    /// This endpoint's place in `herald_circuit_state`.
    circuit: CircuitGauge,
}

#[derive(Debug)]
pub struct Health {
    breaker: Breaker,
    state: Mutex<State>,
}

/// What recording an attempt learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    pub snapshot: HealthRecord,
    /// The snapshot says something the stored one does not (a failure, a
    /// recovery, a token error, or a success after a quiet second): store it.
    pub persist: bool,
    /// The endpoint has failed for longer than allowed: disable it.
    pub disable: bool,
    /// The token endpoint started failing with this error, or with another
    /// than before (`herald.endpoint.token_failed`, once per change).
    pub token_failed: Option<String>,
}

/// A healthy endpoint's stored record changes only in `lastSuccessAt` and
/// `inFlight`; writing it at most every ten seconds instead of with every
/// delivery saves two Redis commands per delivery and loses nothing the
/// breaker needs (any failure is written at once). With many endpoints each
/// sent an event every few seconds, a shorter interval made the health
/// write half of Redis's commands; what it costs is a `lastSuccessAt` up to
/// ten seconds behind in the health API.
const QUIET_PERSIST_EVERY_MS: Millis = 10_000;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Health {
    pub fn new(breaker: Breaker) -> Self {
        Health { breaker, state: Mutex::default() }
    }

    /// A breaker that carries on from a stored snapshot. `now`/`now_ms` are
    /// the same moment on the two clocks.
    pub fn restore(breaker: Breaker, stored: &HealthRecord, now: Instant, now_ms: Millis) -> Self {
        let ago = |at: Millis| Duration::from_millis(u64::try_from(now_ms.saturating_sub(at)).unwrap_or(0));
        let ahead = |at: Millis| Duration::from_millis(u64::try_from(at.saturating_sub(now_ms)).unwrap_or(0));
        let failing = stored.consecutive_failures > 0;
        let mut state = State {
            consecutive_failures: stored.consecutive_failures,
            last_success_at: stored.last_success_at,
            failing_since: stored.failing_since.filter(|_| failing),
            // An instant before the process started may not exist; then the
            // breaker counts from now (the disable clock is the wall clock).
            failing_since_instant: stored
                .failing_since
                .filter(|_| failing)
                .map(|at| now.checked_sub(ago(at)).unwrap_or(now)),
            open_until: stored.open_until.filter(|_| failing).map(|at| now + ahead(at)),
            cool_down: Duration::from_millis(stored.cool_down_ms).min(breaker.max_cool_down),
            probing: false,
            in_flight: 0,
            token_error: stored.token_error.clone(),
            quiet_persisted_at: None,
            circuit: CircuitGauge::default(),
        };
        track(&mut state);
        Health { breaker, state: Mutex::new(state) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// May an attempt start now? Counts it as in flight when it may.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut state = self.lock();
        match state.open_until {
            Some(until) if now < until => Admission::HoldUntil(until),
            Some(_) if state.probing => Admission::HoldUntil(now + Duration::from_millis(250)),
            Some(_) => {
                state.probing = true;
                state.in_flight += 1;
                track(&mut state);
                Admission::Go
            }
            None => {
                state.in_flight += 1;
                Admission::Go
            }
        }
    }

    /// Until when the circuit holds attempts back, if it does now.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.lock().open_until.filter(|until| now < *until)
    }

    /// Records the end of an admitted attempt. `now`/`now_ms` are the same
    /// moment on the monotonic and the wall clock.
    pub fn record(&self, delivered: bool, token_error: Option<String>, now: Instant, now_ms: Millis) -> Recorded {
        let breaker = self.breaker;
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.probing = false;
        let was_clean = state.consecutive_failures == 0 && state.open_until.is_none();
        let token_changed = state.token_error != token_error;
        let mut persist = !delivered || !was_clean || token_changed;
        let token_failed = if token_changed { token_error.clone() } else { None };
        state.token_error = token_error;
        let mut disable = false;
        if delivered {
            let quiet_due =
                state.quiet_persisted_at.is_none_or(|at| now_ms.saturating_sub(at) >= QUIET_PERSIST_EVERY_MS);
            if persist || quiet_due {
                persist = true;
                state.quiet_persisted_at = Some(now_ms);
            }
            state.consecutive_failures = 0;
            state.last_success_at = Some(now_ms);
            state.failing_since = None;
            state.failing_since_instant = None;
            state.open_until = None;
            state.cool_down = Duration::ZERO;
        } else {
            state.consecutive_failures = state.consecutive_failures.saturating_add(1);
            let since = *state.failing_since_instant.get_or_insert(now);
            let since_ms = *state.failing_since.get_or_insert(now_ms);
            let failing_for = now.saturating_duration_since(since);
            let was_open = state.open_until.is_some();
            if was_open || (state.consecutive_failures >= breaker.failures && failing_for >= breaker.failing_for) {
                state.cool_down = if was_open && !state.cool_down.is_zero() {
                    (state.cool_down * 2).min(breaker.max_cool_down)
                } else {
                    breaker.cool_down
                };
                state.open_until = Some(now + state.cool_down);
            }
            disable = now_ms.saturating_sub(since_ms) >= millis(breaker.disable_after);
        }
        if !delivered {
            state.quiet_persisted_at = None;
        }
        track(&mut state);
        Recorded { snapshot: snapshot(&state, now, now_ms), persist, disable, token_failed }
    }

    /// Forgets an admitted attempt that never ran.
    pub fn cancel(&self) {
        let mut state = self.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        state.probing = false;
        track(&mut state);
    }

    pub fn snapshot(&self, now: Instant, now_ms: Millis) -> HealthRecord {
        snapshot(&self.lock(), now, now_ms)
    }
}

/// Keeps `herald_circuit_state` in step with the breaker. An open circuit
/// whose cool-down has ended counts as open until its probe starts.
fn track(state: &mut State) {
    let circuit = match state.open_until {
        None => Circuit::Closed,
        Some(_) if state.probing => Circuit::HalfOpen,
        Some(_) => Circuit::Open,
    };
    state.circuit.set(circuit);
}

fn snapshot(state: &State, now: Instant, now_ms: Millis) -> HealthRecord {
    let circuit = match state.open_until {
        Some(until) if now < until => "open",
        Some(_) => "half_open",
        None => "closed",
    };
    HealthRecord {
        circuit: circuit.to_owned(),
        in_flight: state.in_flight,
        consecutive_failures: state.consecutive_failures,
        last_success_at: state.last_success_at,
        failing_since: state.failing_since,
        token_error: state.token_error.clone(),
        open_until: state.open_until.map(|until| now_ms.saturating_add(millis(until.saturating_duration_since(now)))),
        cool_down_ms: u64::try_from(state.cool_down.as_millis()).unwrap_or(u64::MAX),
        // The attempt that stores it knows which endpoint incarnation it is.
        epoch: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISABLE_AFTER: Duration = Duration::from_secs(3600);

    fn breaker() -> Breaker {
        Breaker { disable_after: DISABLE_AFTER, ..Breaker::default() }
    }

    fn fail(h: &Health, now: Instant) -> Recorded {
        assert_eq!(h.admit(now), Admission::Go);
        h.record(false, None, now, 0)
    }

    #[test]
    fn opens_after_a_run_of_failures_and_probes_once() {
        let h = Health::new(breaker());
        let b = breaker();
        let start = Instant::now();
        for i in 0..b.failures - 1 {
            fail(&h, start + Duration::from_secs(u64::from(i)));
        }
        assert_eq!(h.snapshot(start + Duration::from_secs(30), 0).circuit, "closed");
        let t = start + Duration::from_secs(30);
        fail(&h, t);
        assert_eq!(h.snapshot(t, 0).circuit, "open");
        assert_eq!(h.admit(t + Duration::from_secs(1)), Admission::HoldUntil(t + b.cool_down));

        let probe_at = t + b.cool_down;
        assert_eq!(h.snapshot(probe_at, 0).circuit, "half_open");
        assert_eq!(h.admit(probe_at), Admission::Go);
        assert!(matches!(h.admit(probe_at), Admission::HoldUntil(_)), "one probe at a time");
        h.record(false, None, probe_at, 0);
        assert_eq!(h.admit(probe_at), Admission::HoldUntil(probe_at + b.cool_down * 2));

        let later = probe_at + b.cool_down * 2;
        assert_eq!(h.admit(later), Admission::Go);
        let r = h.record(true, None, later, 77);
        assert_eq!(r.snapshot.circuit, "closed");
        assert_eq!(r.snapshot.consecutive_failures, 0);
        assert_eq!(r.snapshot.last_success_at, Some(77));
        assert_eq!(r.snapshot.failing_since, None);
        assert_eq!(r.snapshot.open_until, None);
    }

    #[test]
    fn circuit_gauge_follows_the_breaker() {
        let h = Health::new(breaker());
        let start = Instant::now();
        let mut t = start;
        for i in 0..Breaker::default().failures {
            t = start + Duration::from_secs(u64::from(i));
            fail(&h, t);
        }
        assert_eq!(h.lock().circuit.current(), Circuit::Open);
        let probe_at = t + Breaker::default().cool_down;
        assert_eq!(h.admit(probe_at), Admission::Go);
        assert_eq!(h.lock().circuit.current(), Circuit::HalfOpen);
        h.cancel();
        assert_eq!(h.lock().circuit.current(), Circuit::Open);
        assert_eq!(h.admit(probe_at), Admission::Go);
        h.record(true, None, probe_at, 1);
        assert_eq!(h.lock().circuit.current(), Circuit::Closed);
    }

    #[test]
    fn quick_bursts_of_failures_do_not_open() {
        let h = Health::new(breaker());
        let now = Instant::now();
        for _ in 0..100 {
            fail(&h, now);
        }
        assert_eq!(h.snapshot(now, 0).circuit, "closed");
        assert_eq!(h.snapshot(now, 0).consecutive_failures, 100);
    }

    #[test]
    fn thresholds_come_from_the_configuration() {
        let b =
            Breaker { failures: 2, failing_for: Duration::ZERO, cool_down: Duration::from_millis(500), ..breaker() };
        let h = Health::new(b);
        let now = Instant::now();
        fail(&h, now);
        assert_eq!(h.snapshot(now, 0).circuit, "closed");
        fail(&h, now);
        assert_eq!(h.admit(now), Admission::HoldUntil(now + Duration::from_millis(500)));
    }

    #[test]
    fn long_failure_asks_to_disable() {
        let h = Health::new(breaker());
        let now = Instant::now();
        assert_eq!(h.admit(now), Admission::Go);
        assert!(!h.record(false, None, now, 1_000).disable);
        let later_ms = 1_000 + millis(DISABLE_AFTER);
        assert_eq!(h.admit(now + DISABLE_AFTER), Admission::Go);
        let r = h.record(false, Some("invalid_client".into()), now + DISABLE_AFTER, later_ms);
        assert!(r.disable);
        assert_eq!(r.snapshot.token_error.as_deref(), Some("invalid_client"));
        assert_eq!(r.snapshot.in_flight, 0);
    }

    #[test]
    fn a_restored_breaker_carries_on() {
        let b = Breaker { failures: 3, failing_for: Duration::ZERO, ..breaker() };
        let first = Health::new(b);
        let t0 = Instant::now();
        let t0_ms = 1_000_000;
        for i in 0..3u64 {
            assert_eq!(first.admit(t0), Admission::Go);
            first.record(false, Some("invalid_client".into()), t0 + Duration::from_millis(i), t0_ms + i as i64);
        }
        let stored = first.snapshot(t0 + Duration::from_millis(3), t0_ms + 3);
        assert_eq!(stored.circuit, "open");
        assert_eq!(stored.open_until, Some(t0_ms + 2 + millis(b.cool_down)));

        // A new actor a second later: still failing since t0, still open.
        let now = t0 + Duration::from_secs(1);
        let now_ms = t0_ms + 1_000;
        let second = Health::restore(b, &stored, now, now_ms);
        let snap = second.snapshot(now, now_ms);
        assert_eq!((snap.consecutive_failures, snap.failing_since), (3, Some(t0_ms)));
        assert_eq!(snap.token_error.as_deref(), Some("invalid_client"));
        assert_eq!(snap.circuit, "open");
        assert!(matches!(second.admit(now), Admission::HoldUntil(_)));

        // The disable clock started at the first failure, not at the restart.
        let late = now + b.cool_down;
        let late_ms = t0_ms + millis(DISABLE_AFTER);
        assert_eq!(second.admit(late), Admission::Go);
        let r = second.record(false, None, late, late_ms);
        assert!(r.disable);
        assert_eq!(r.snapshot.consecutive_failures, 4);
        assert_eq!(r.snapshot.cool_down_ms, u64::try_from((b.cool_down * 2).as_millis()).unwrap());

        // A success forgets everything; so does a restore of a healthy record.
        let fresh = Health::restore(b, &HealthRecord::default(), now, now_ms);
        assert_eq!(fresh.admit(now), Admission::Go);
        assert_eq!(fresh.snapshot(now, now_ms).failing_since, None);
    }
}
