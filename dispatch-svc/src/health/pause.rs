//! An endpoint's `Retry-After` pause.
//!
//! A `429` or `503` with `Retry-After` says the receiver wants nothing more
//! for a while, not only that one message again. So the whole endpoint waits:
//! the attempt that got the answer [`Pause::extend`]s its endpoint's pause,
//! and the endpoint's actor starts no attempt of any delivery until it ends
//! ([`Pause::until`] is one of its gates). Jobs queued meanwhile wait in the
//! actor without counting an attempt; the delivery that got the answer is
//! retried from the retry set no earlier than the wait either
//! ([`crate::retry::next_step`]).
//!
//! The wait is capped at `HERALD_RETRY_AFTER_MAX`, as the delivery's own
//! retry is, so one answer can neither park an endpoint for good nor
//! overflow a clock. Answers only ever lengthen a pause: attempts that were
//! already running when the first one came back may bring shorter waits.
//!
//! The pause is kept in memory by the endpoint's actor, with its breaker. An
//! actor made again (after an idle stop, a partition move or a restart)
//! starts without it; the delivery that got the answer still waits in the
//! retry set, and the receiver's next `Retry-After` pauses the endpoint
//! again.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Until when an endpoint asked not to be sent anything.
#[derive(Debug)]
pub struct Pause {
    cap: Duration,
    until: Mutex<Option<Instant>>,
}

/// What a clock overflow turns a wait into: a year is as good as forever
/// here, and the cap keeps real waits far below it.
const FAR: Duration = Duration::from_secs(365 * 86_400);

impl Pause {
    /// A pause that no answer can make longer than `cap`.
    pub fn new(cap: Duration) -> Self {
        Pause { cap, until: Mutex::new(None) }
    }

    /// The endpoint answered `Retry-After: wait` at `now`: nothing starts
    /// before `now + wait` (at most the cap), unless it was paused longer.
    pub fn extend(&self, wait: Duration, now: Instant) {
        let wait = wait.min(self.cap);
        let end = now.checked_add(wait).unwrap_or_else(|| now + FAR);
        let mut until = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        if until.is_none_or(|current| current < end) {
            *until = Some(end);
        }
    }

    /// When the pause ends, if it has not yet.
    pub fn until(&self, now: Instant) -> Option<Instant> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner).filter(|end| now < *end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn holds_until_the_wait_is_over() {
        let pause = Pause::new(Duration::from_secs(3600));
        let now = Instant::now();
        assert_eq!(pause.until(now), None);
        pause.extend(2 * SECOND, now);
        assert_eq!(pause.until(now), Some(now + 2 * SECOND));
        assert_eq!(pause.until(now + SECOND), Some(now + 2 * SECOND));
        assert_eq!(pause.until(now + 2 * SECOND), None);
    }

    #[test]
    fn answers_only_lengthen_it() {
        let pause = Pause::new(Duration::from_secs(3600));
        let now = Instant::now();
        pause.extend(5 * SECOND, now);
        pause.extend(SECOND, now + SECOND);
        assert_eq!(pause.until(now), Some(now + 5 * SECOND));
        pause.extend(10 * SECOND, now + SECOND);
        assert_eq!(pause.until(now), Some(now + 11 * SECOND));
    }

    #[test]
    fn the_cap_bounds_any_wait() {
        let pause = Pause::new(30 * SECOND);
        let now = Instant::now();
        pause.extend(Duration::from_secs(u64::MAX), now);
        assert_eq!(pause.until(now), Some(now + 30 * SECOND));
        let uncapped = Pause::new(Duration::MAX);
        uncapped.extend(Duration::MAX, now);
        assert!(uncapped.until(now).is_some_and(|end| end >= now + FAR));
    }
}
