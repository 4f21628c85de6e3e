//! The one retry policy of every loop that waits on something outside the
//! process (Redis, the registry): exponential backoff between a first and a
//! largest delay, cut short by shutdown.
//!
//! Callers say what they retry and how they log a failure; how long they
//! wait lives here, so no loop hand-rolls its own doubling.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays that double from `first` up to `max`.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max, next: first }
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// The delay to wait now; the one after it is twice as long (at most `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Waits the next delay; `false` when `stop` fired first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// Runs `op` until it succeeds or has failed `tries` times, waiting with
/// `backoff` in between. `on_failure` sees each failure but the last and the
/// delay before the next try; the last failure is returned.
pub async fn retry<T, E, Op, Fut>(
    mut backoff: Backoff,
    tries: u32,
    mut op: Op,
    mut on_failure: impl FnMut(&E, Duration),
) -> Result<T, E>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tried = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(e) if tried >= tries => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                on_failure(&e, delay);
                tokio::time::sleep(delay).await;
                tried += 1;
            }
        }
    }
}

/// Runs `op` until it succeeds; `None` when `stop` fired first.
pub async fn retry_until_stopped<T, E, Op, Fut>(
    mut backoff: Backoff,
    stop: &CancellationToken,
    mut op: Op,
    mut on_failure: impl FnMut(&E, Duration),
) -> Option<T>
where
    Op: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    loop {
        let outcome = tokio::select! {
            _ = stop.cancelled() => return None,
            outcome = op() => outcome,
        };
        match outcome {
            Ok(value) => return Some(value),
            Err(e) => {
                let delay = backoff.next_delay();
                on_failure(&e, delay);
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn delays_double_up_to_the_largest_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let delays: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_at_the_first_success() {
        let calls = AtomicU32::new(0);
        let mut failures = Vec::new();
        let answer = retry(
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            5,
            || async {
                let n = calls.fetch_add(1, Ordering::Relaxed);
                if n < 2 { Err(n) } else { Ok("done") }
            },
            |e, delay| failures.push((*e, delay.as_millis())),
        )
        .await;
        assert_eq!(answer, Ok("done"));
        assert_eq!(failures, [(0, 10), (1, 20)]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_with_the_last_error() {
        let calls = AtomicU32::new(0);
        let answer: Result<(), u32> = retry(
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            3,
            || async { Err(calls.fetch_add(1, Ordering::Relaxed)) },
            |_, _| {},
        )
        .await;
        assert_eq!(answer, Err(2));
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_until_stopped_gives_up_on_shutdown() {
        let stop = CancellationToken::new();
        let calls = AtomicU32::new(0);
        let answer: Option<()> = retry_until_stopped(
            Backoff::new(Duration::from_millis(10), Duration::from_millis(10)),
            &stop,
            || async {
                if calls.fetch_add(1, Ordering::Relaxed) == 3 {
                    stop.cancel();
                }
                Err::<(), _>("down")
            },
            |_, _| {},
        )
        .await;
        assert_eq!(answer, None);
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }
}
