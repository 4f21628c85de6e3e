//! When an endpoint's actor may start its next attempt, and with how many
//! of its queued jobs. The gates are asked in this order:
//!
//! 1. **`fifo` order** (`fifo` endpoints only): a held head job waits for
//!    its retry time, no job starts before the partition is settled, and
//!    none newer than a job let go for a full queue (see [`super`]).
//! 2. **`rateLimitPerSecond`**: a sliding window of start times.
//! 3. **The `Retry-After` pause** ([`crate::health::Pause`]): a `429` or
//!    `503` with `Retry-After` holds every delivery to the endpoint, not
//!    only the one that got it.
//! 4. **The circuit breaker** ([`crate::health::Health::admit`]), last,
//!    because admitting counts the attempt as in flight (and may make it
//!    the half-open probe).
//!
//! A closed gate answers when to ask again; the actor sets a timer for it,
//! and its queued jobs wait without counting an attempt.

use std::time::Duration;

use tokio::time::Instant;

use super::{EndpointActor, LET_GO_FORGET, SETTLE_POLL, work_order};
use crate::delivery::Target;
use crate::health::Admission;
use crate::send::envelope;

const WINDOW: Duration = Duration::from_secs(1);

impl EndpointActor {
    /// How many queued jobs the next attempt may carry now (`0`: nothing
    /// to start), or when to ask again. Answering `n > 0` counts the
    /// attempt as started (rate window, breaker).
    pub(super) fn gate(&mut self, target: &Target, now: Instant) -> Result<usize, Instant> {
        let n = if self.is_fifo() { self.fifo_gate(now)? } else { self.max_batch.min(self.queue.len()) };
        if n == 0 {
            return Ok(0);
        }
        let n = if n > 1 {
            let queued = self.queue.iter().map(|w| w.event.as_ref());
            envelope::batch_len(queued, n, self.shared.config.max_batch_bytes)
        } else {
            n
        };
        if let Some(rate) = self.rate_per_second {
            while self.recent.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
                self.recent.pop_front();
            }
            if self.recent.len() >= rate {
                return Err(self.recent.front().map_or(now, |t| *t + WINDOW));
            }
        }
        if let Some(until) = self.pause.until(now) {
            return Err(until);
        }
        if let Admission::HoldUntil(until) = target.health.admit(now) {
            return Err(until);
        }
        if self.rate_per_second.is_some() {
            self.recent.push_back(now);
        }
        Ok(n)
    }

    /// `fifo`: may the head of the queue start now, and with how many of
    /// the jobs behind it (an envelope batch)? `Err` is when to look again.
    fn fifo_gate(&mut self, now: Instant) -> Result<usize, Instant> {
        if let Some(until) = self.hold_until {
            if now < until {
                return Err(until);
            }
            self.hold_until = None;
        }
        let Some(head) = self.queue.front() else { return Ok(0) };
        if !head.taken.guard.partition_settled() {
            return Err(now + SETTLE_POLL);
        }
        self.let_go.retain(|_, at| now.duration_since(*at) < LET_GO_FORGET);
        let older_outside = self.let_go.first_key_value().map(|(k, at)| (*k, *at + LET_GO_FORGET));
        match older_outside {
            Some((oldest_out, forget_at)) if oldest_out < work_order(head) => Err(forget_at),
            Some((oldest_out, _)) => {
                Ok(self.queue.iter().take(self.max_batch).take_while(|w| work_order(w) < oldest_out).count())
            }
            None => Ok(self.max_batch.min(self.queue.len())),
        }
    }
}
