//! Retries: when the next attempt is due. How a waiting job is stored and
//! moved back into its stream is the store's (`records::retry_set`).
//!
//! A delivery that must be tried again is not kept in memory. Its next job
//! (the same delivery id and event, `attempt + 1`) is added to the
//! partition's retry set `{pN}:retry`, a sorted set scored by the due time in
//! milliseconds, in the same `MULTI` that stores the outcome and
//! acknowledges the stream entry (see [`crate::records`]). The member is the
//! job's stream fields as a JSON object of strings, so the pump's Lua script
//! can `XADD` it back without knowing what a job is.
//!
//! The pump runs for each partition this dispatcher owns. One script call
//! moves up to `PUMP_BATCH` due members into the stream and removes them
//! from the set, atomically, so a job is never both waiting and queued, and
//! answers the score of the next member so the pump sleeps until then.
//!
//! A schedule of N delays allows N + 1 attempts: attempt `n` failing with a
//! retryable verdict waits `schedule[n - 1]` (with ±20 % jitter so a burst of
//! failures does not come back as a burst); after attempt N + 1 the delivery
//! is failed. An endpoint's own `retry` policy replaces the installation's
//! schedule and may cap the attempts (`maxAttempts`, the first included);
//! past the end of its schedule the last delay repeats up to that cap. `Retry-After` is honoured as a lower bound, itself bounded by
//! `HERALD_RETRY_AFTER_MAX`: a receiver must not park its deliveries for
//! years (or overflow a clock) by answering a huge delay or a far date.

use std::time::Duration;

use herald_common::model::Millis;
pub use herald_common::retry_schedule::Schedule;

use crate::send::outcome::Verdict;

/// Jitter applied to scheduled delays: ±20 % (the start-up check of the
/// event retention counts it, hence one constant).
pub const JITTER: f64 = herald_common::config::RETRY_JITTER;

/// What happens to a delivery after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Delivered,
    /// Try again after this long.
    RetryIn(Duration),
    /// No more attempts. `disable` is set for `410 Gone`.
    Failed {
        disable: bool,
    },
}

/// Decides what follows attempt `attempt` (1-based) ending in `verdict`.
/// `unit` is a uniform sample in `[0, 1)` that drives the jitter; a
/// `Retry-After` wait counts up to `retry_after_max`.
pub fn next_step(schedule: &Schedule, retry_after_max: Duration, attempt: u32, verdict: Verdict, unit: f64) -> Next {
    let scheduled = || schedule.delay_after(attempt).map(|base| jittered(base, unit));
    match verdict {
        Verdict::Delivered => Next::Delivered,
        Verdict::Gone => Next::Failed { disable: true },
        Verdict::Permanent => Next::Failed { disable: false },
        Verdict::Retry => scheduled().map_or(Next::Failed { disable: false }, Next::RetryIn),
        Verdict::RetryAfter(wait) => {
            let wait = wait.min(retry_after_max);
            scheduled().map_or(Next::Failed { disable: false }, |delay| Next::RetryIn(delay.max(wait)))
        }
    }
}

/// `base` scaled by a factor in `[1 - JITTER, 1 + JITTER)` chosen by `unit`.
pub fn jittered(base: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
    base.mul_f64(1.0 - JITTER + 2.0 * JITTER * unit)
}

/// A uniform sample for [`next_step`].
pub fn random_unit() -> f64 {
    rand::random::<f64>()
}

/// Due time in ms of a job delayed by `delay` from `now`.
pub fn due_at(now: Millis, delay: Duration) -> Millis {
    now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use herald_common::model::RetryPolicy;

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const DELAYS: [Duration; 3] = [Duration::from_millis(200), Duration::from_millis(400), Duration::from_millis(800)];

    fn installation() -> Schedule {
        Schedule::new(&DELAYS, None)
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        let base = Duration::from_secs(10);
        assert_eq!(jittered(base, 0.0), Duration::from_secs(8));
        assert_eq!(jittered(base, 0.5), Duration::from_secs(10));
        assert!(jittered(base, 0.999_999) < Duration::from_secs(12));
        assert_eq!(jittered(base, f64::NAN), base);
        for _ in 0..1000 {
            let d = jittered(base, random_unit());
            assert!(d >= Duration::from_secs(8) && d < Duration::from_secs(12), "{d:?}");
        }
    }

    #[test]
    fn a_schedule_of_n_delays_allows_n_plus_one_attempts() {
        let at = |attempt| next_step(&installation(), HOUR, attempt, Verdict::Retry, 0.5);
        assert_eq!(at(1), Next::RetryIn(Duration::from_millis(200)));
        assert_eq!(at(2), Next::RetryIn(Duration::from_millis(400)));
        assert_eq!(at(3), Next::RetryIn(Duration::from_millis(800)));
        assert_eq!(at(4), Next::Failed { disable: false });
        // A manual retry of an exhausted delivery is one more attempt.
        assert_eq!(at(9), Next::Failed { disable: false });
        assert_eq!(at(0), Next::Failed { disable: false });
        assert_eq!(next_step(&Schedule::new(&[], None), HOUR, 1, Verdict::Retry, 0.5), Next::Failed { disable: false });
    }

    #[test]
    fn an_endpoint_policy_replaces_the_schedule_and_caps_attempts() {
        let policy = |schedule: &[&str], max_attempts| RetryPolicy {
            schedule: schedule.iter().map(|s| (*s).to_owned()).collect(),
            max_attempts,
        };
        let steps = |p: RetryPolicy| -> Vec<Next> {
            let schedule = Schedule::new(&DELAYS, Some(&p));
            (1..=5).map(|n| next_step(&schedule, HOUR, n, Verdict::Retry, 0.5)).collect()
        };
        let (s1, s2) = (Duration::from_secs(1), Duration::from_secs(2));
        let failed = Next::Failed { disable: false };
        assert_eq!(steps(policy(&["1s", "2s"], None)), [Next::RetryIn(s1), Next::RetryIn(s2), failed, failed, failed]);
        assert_eq!(steps(policy(&[], Some(1))), [failed; 5], "send once, never retry");
        assert_eq!(
            steps(policy(&[], Some(2))),
            [Next::RetryIn(Duration::from_millis(200)), failed, failed, failed, failed]
        );
        let repeating = steps(policy(&["1s", "2s"], Some(5)));
        assert_eq!(repeating, [Next::RetryIn(s1), Next::RetryIn(s2), Next::RetryIn(s2), Next::RetryIn(s2), failed]);
        let retry_after = Verdict::RetryAfter(Duration::from_secs(3));
        assert_eq!(next_step(&Schedule::new(&DELAYS, Some(&policy(&[], Some(1)))), HOUR, 1, retry_after, 0.5), failed);
    }

    #[test]
    fn verdicts_map_to_steps() {
        assert_eq!(next_step(&installation(), HOUR, 1, Verdict::Delivered, 0.5), Next::Delivered);
        assert_eq!(next_step(&installation(), HOUR, 1, Verdict::Gone, 0.5), Next::Failed { disable: true });
        assert_eq!(next_step(&installation(), HOUR, 1, Verdict::Permanent, 0.5), Next::Failed { disable: false });
        let wait = Duration::from_secs(3);
        assert_eq!(next_step(&installation(), HOUR, 1, Verdict::RetryAfter(wait), 0.5), Next::RetryIn(wait));
        // Retry-After shorter than the schedule: the schedule wins.
        let short = Duration::from_millis(10);
        assert_eq!(
            next_step(&installation(), HOUR, 2, Verdict::RetryAfter(short), 0.5),
            Next::RetryIn(Duration::from_millis(400))
        );
        assert_eq!(
            next_step(&installation(), HOUR, 4, Verdict::RetryAfter(wait), 0.5),
            Next::Failed { disable: false }
        );
    }

    #[test]
    fn retry_after_is_bounded() {
        let huge = Verdict::RetryAfter(Duration::from_secs(u64::MAX));
        assert_eq!(next_step(&installation(), HOUR, 1, huge, 0.5), Next::RetryIn(HOUR));
        let cap = Duration::from_secs(30);
        assert_eq!(next_step(&installation(), cap, 1, huge, 0.5), Next::RetryIn(cap));
        // Below the bound the wait counts in full; the schedule still wins when longer.
        let wait = Duration::from_secs(20);
        assert_eq!(next_step(&installation(), cap, 1, Verdict::RetryAfter(wait), 0.5), Next::RetryIn(wait));
        let long = Schedule::new(&[Duration::from_secs(90)], None);
        assert_eq!(next_step(&long, cap, 1, huge, 0.5), Next::RetryIn(Duration::from_secs(90)));
    }

    #[test]
    fn due_times_saturate() {
        assert_eq!(due_at(1_000, Duration::from_millis(250)), 1_250);
        assert_eq!(due_at(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
    }
}
