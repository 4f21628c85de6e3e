//! When an endpoint's next attempt may start, and with how many of its
//! queued jobs. [`Gate::next`] asks, in this order:
//!
//! 1. **`maxInFlight`**: nothing starts while that many attempts run
//!    (`fifo`: one).
//! 2. **`fifo` order** (`fifo` endpoints only): a held head job waits for
//!    its retry time, no job starts before the partition is settled, and
//!    none newer than a job let go for a full queue.
//! 3. **The batch size**: as many queued jobs as one `envelope` body carries
//!    ([`envelope::batch_len_of`]), at most the endpoint's batch size.
//! 4. **`rateLimitPerSecond`**: a sliding window of start times.
//! 5. **The `Retry-After` pause** ([`Outside::paused_until`]): a `429` or
//!    `503` with `Retry-After` holds every delivery to the endpoint, not
//!    only the one that got it.
//! 6. **The circuit breaker** ([`Outside::admit`]), last, because admitting
//!    counts the attempt as in flight (and may make it the half-open probe).
//!
//! A closed gate answers when to ask again ([`Decision::AskAt`]); the actor
//! sets a timer for it, and its queued jobs wait without counting an attempt.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::send::envelope;

/// The span of the `rateLimitPerSecond` window.
const WINDOW: Duration = Duration::from_secs(1);
/// A `fifo` gate waiting for its partition to settle looks again this often.
pub const SETTLE_POLL: Duration = Duration::from_millis(100);
/// A let-go `fifo` job that has not come back after this long is forgotten
/// (its entry was acknowledged or deleted elsewhere), so the queue moves on.
pub const LET_GO_FORGET: Duration = Duration::from_secs(120);

/// What the gate needs to know of a queued job.
pub trait Queued {
    /// Its stream entry id as a number pair that sorts like the stream.
    fn order(&self) -> (u64, u64);
    /// Bytes it takes as one message of an `envelope` body.
    fn envelope_len(&self) -> usize;
    /// Whether its partition is settled (every entry a previous owner left
    /// pending is claimed), which a `fifo` job waits for.
    fn partition_settled(&self) -> bool;
}

/// What the gate asks outside itself, after its own checks passed.
pub trait Outside {
    /// The receiver's `Retry-After`: until when every delivery is held.
    fn paused_until(&self, now: Instant) -> Option<Instant>;
    /// The circuit breaker: `Ok` admits the attempt (counting it in
    /// flight), `Err` is when to ask again.
    fn admit(&self, now: Instant) -> Result<(), Instant>;
}

/// The gate's answer to [`Gate::next`].
#[derive(Debug)]
pub enum Decision<W> {
    /// Start one attempt with these jobs, taken from the front of the queue.
    /// It counts as in flight until [`Gate::finished`].
    Start(Vec<W>),
    /// Nothing may start before then: ask again at that instant.
    AskAt(Instant),
    /// Nothing to start until a job comes or an attempt ends.
    Idle,
}

/// An endpoint's admission state: its queue, in-flight count, rate window
/// and `fifo` hold.
#[derive(Debug)]
pub struct Gate<W> {
    /// Jobs held beyond those in flight.
    capacity: usize,
    max_batch_bytes: usize,
    /// Sorted by stream entry id when `fifo`.
    queue: VecDeque<W>,
    fifo: bool,
    max_in_flight: usize,
    in_flight: usize,
    rate_per_second: Option<usize>,
    /// Start times of attempts within the last second, for the rate limit.
    recent: VecDeque<Instant>,
    max_batch: usize,
    /// `fifo`: the held job at the head of the queue is due again then.
    hold_until: Option<Instant>,
    /// `fifo`: entries let go for a full queue, by entry id, with when.
    let_go: BTreeMap<(u64, u64), Instant>,
}

impl<W: Queued> Gate<W> {
    /// An empty gate holding up to `capacity` jobs, one at a time, in
    /// bodies of at most `max_batch_bytes`, until [`Self::configure`]d.
    pub fn new(capacity: usize, max_batch_bytes: usize) -> Self {
        Gate {
            capacity,
            max_batch_bytes,
            queue: VecDeque::new(),
            fifo: false,
            max_in_flight: 1,
            in_flight: 0,
            rate_per_second: None,
            recent: VecDeque::new(),
            max_batch: 1,
            hold_until: None,
            let_go: BTreeMap::new(),
        }
    }

    /// Takes the endpoint's delivery control: `fifo` (one attempt at a
    /// time, queue in entry order), `maxInFlight`, `rateLimitPerSecond`
    /// (`None` or `0`: unlimited). Leaving `fifo` drops its hold and
    /// let-go bookkeeping.
    pub fn configure(&mut self, fifo: bool, max_in_flight: usize, rate_per_second: Option<usize>) {
        self.fifo = fifo;
        if fifo {
            self.queue.make_contiguous().sort_by_key(|w| w.order());
        } else {
            self.hold_until = None;
            self.let_go.clear();
        }
        self.max_in_flight = if fifo { 1 } else { max_in_flight.max(1) };
        self.rate_per_second = rate_per_second.filter(|r| *r > 0);
    }

    /// How many jobs one attempt may carry (the endpoint's batch size).
    pub fn set_max_batch(&mut self, max_batch: usize) {
        self.max_batch = max_batch.max(1);
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Nothing queued, in flight or let go.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight == 0 && self.let_go.is_empty()
    }

    /// Forgets let-go `fifo` jobs that have not come back for [`LET_GO_FORGET`].
    pub fn forget_let_go(&mut self, now: Instant) {
        self.let_go.retain(|_, at| now.duration_since(*at) < LET_GO_FORGET);
    }

    /// Queues `work`. `fifo`: in entry order, and with the queue full the
    /// newest of it and the queued jobs is let go (dropped, so left pending)
    /// and remembered. Otherwise at the back, and a full queue hands it back.
    pub fn enqueue(&mut self, work: W, now: Instant) -> Result<(), W> {
        if !self.fifo {
            if self.queue.len() >= self.capacity {
                return Err(work);
            }
            self.queue.push_back(work);
            return Ok(());
        }
        let order = work.order();
        self.let_go.remove(&order);
        let work = if self.queue.len() >= self.capacity {
            match self.queue.back() {
                Some(tail) if tail.order() > order => {
                    let Some(tail) = self.queue.pop_back() else { return Ok(()) };
                    self.let_go.insert(tail.order(), now);
                    work
                }
                _ => {
                    self.let_go.insert(order, now);
                    return Ok(());
                }
            }
        } else {
            work
        };
        let at = self.queue.iter().rposition(|w| w.order() < order).map_or(0, |i| i + 1);
        self.queue.insert(at, work);
        Ok(())
    }

    /// The next attempt to start now, if any (see the module header).
    pub fn next(&mut self, now: Instant, outside: &impl Outside) -> Decision<W> {
        if self.in_flight >= self.max_in_flight || self.queue.is_empty() {
            return Decision::Idle;
        }
        match self.admit(now, outside) {
            Ok(0) => Decision::Idle,
            Ok(n) => {
                self.in_flight += 1;
                Decision::Start(self.queue.drain(..n).collect())
            }
            Err(at) => Decision::AskAt(at),
        }
    }

    /// An attempt [`Decision::Start`]ed has ended.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// `fifo`: an attempt handed its jobs back; they are the oldest of the
    /// endpoint, so they go back to the head, and nothing starts before
    /// `retry_at`.
    pub fn hold(&mut self, held: Vec<W>, retry_at: Option<Instant>) {
        for work in held.into_iter().rev() {
            self.queue.push_front(work);
        }
        self.hold_until = retry_at;
    }

    /// Empties the queue (and drops the `fifo` hold of its head).
    pub fn take_all(&mut self) -> Vec<W> {
        self.hold_until = None;
        self.queue.drain(..).collect()
    }

    /// Takes out the queued jobs `refuse` gives a reason for, keeping the
    /// others in order.
    pub fn remove_where<R>(&mut self, mut refuse: impl FnMut(&W) -> Option<R>) -> Vec<(R, W)> {
        let mut removed = Vec::new();
        let mut kept = VecDeque::with_capacity(self.queue.len());
        for work in self.queue.drain(..) {
            match refuse(&work) {
                Some(reason) => removed.push((reason, work)),
                None => kept.push_back(work),
            }
        }
        self.queue = kept;
        removed
    }

    /// How many queued jobs the next attempt may carry now (`0`: nothing
    /// to start), or when to ask again. Answering `n > 0` counts the
    /// attempt as started (rate window, breaker).
    fn admit(&mut self, now: Instant, outside: &impl Outside) -> Result<usize, Instant> {
        let n = if self.fifo { self.fifo_gate(now)? } else { self.max_batch.min(self.queue.len()) };
        if n == 0 {
            return Ok(0);
        }
        let n = if n > 1 {
            let lens = self.queue.iter().map(W::envelope_len);
            envelope::batch_len_of(lens, n, self.max_batch_bytes)
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
        if let Some(until) = outside.paused_until(now) {
            return Err(until);
        }
        outside.admit(now)?;
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
        if !head.partition_settled() {
            return Err(now + SETTLE_POLL);
        }
        self.let_go.retain(|_, at| now.duration_since(*at) < LET_GO_FORGET);
        let older_outside = self.let_go.first_key_value().map(|(k, at)| (*k, *at + LET_GO_FORGET));
        match older_outside {
            Some((oldest_out, forget_at)) if oldest_out < head.order() => Err(forget_at),
            Some((oldest_out, _)) => {
                Ok(self.queue.iter().take(self.max_batch).take_while(|w| w.order() < oldest_out).count())
            }
            None => Ok(self.max_batch.min(self.queue.len())),
        }
    }
}

#[cfg(test)]
mod tests;
