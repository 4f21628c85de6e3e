//! What an endpoint admits, without actix: the [`Gate`] owns an endpoint's
//! queue of waiting jobs, its in-flight count and `maxInFlight`, its
//! `rateLimitPerSecond` window and its `fifo` hold, and answers when the
//! next attempt may start and with which jobs ([`Decision`]). It is told the
//! time and asks the `Retry-After` pause and the circuit breaker
//! ([`crate::health`]) through [`Outside`]; the endpoint's actor
//! ([`crate::actor`]) executes its answers (timers, attempts, mailbox).

use tokio::time::Instant;

use crate::health::{Admission, Health, Pause};

mod gate;

pub use gate::{Decision, Gate, LET_GO_FORGET, Outside, Queued, SETTLE_POLL};

/// A stream entry id (`<ms>-<seq>`) as a number pair that sorts like the stream.
pub fn entry_order(id: &str) -> (u64, u64) {
    let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(u64::MAX), seq.parse().unwrap_or(u64::MAX))
}

/// The endpoint's `Retry-After` pause and circuit breaker, as the gate asks them.
pub struct Guards<'a> {
    pub pause: &'a Pause,
    pub health: &'a Health,
}

impl Outside for Guards<'_> {
    fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.pause.until(now)
    }

    fn admit(&self, now: Instant) -> Result<(), Instant> {
        match self.health.admit(now) {
            Admission::Go => Ok(()),
            Admission::HoldUntil(until) => Err(until),
        }
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
