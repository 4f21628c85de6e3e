//! The waits an endpoint's deliveries are retried after: its own retry
//! policy over the installation's `HERALD_RETRY_SCHEDULE`. One definition
//! for the dispatcher, which schedules by it, and the registry, which
//! refuses a policy whose retries would outlast the event retention.

use std::time::Duration;

use crate::env::parse_duration;
use crate::model::RetryPolicy;

/// The delays and attempt cap in force for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    delays: Vec<Duration>,
    max_attempts: usize,
}

impl Schedule {
    /// The endpoint's `policy` over the `installation`'s schedule.
    pub fn new(installation: &[Duration], policy: Option<&RetryPolicy>) -> Self {
        let own: Vec<Duration> =
            policy.map(|p| p.schedule.iter().filter_map(|d| parse_duration(d)).collect()).unwrap_or_default();
        let delays = if own.is_empty() { installation.to_vec() } else { own };
        let max_attempts = policy.and_then(|p| p.max_attempts).map_or(delays.len() + 1, |n| n as usize);
        Schedule { delays, max_attempts }
    }

    /// The (unjittered) delay after failed attempt `attempt` (1-based), if
    /// another attempt is allowed. Past the listed delays the last repeats.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let n = usize::try_from(attempt).ok()?;
        if n == 0 || n >= self.max_attempts {
            return None;
        }
        self.delays.get(n - 1).or(self.delays.last()).copied()
    }

    /// Every wait a delivery may go through, in order.
    pub fn waits(&self) -> impl Iterator<Item = Duration> + '_ {
        (1..self.max_attempts).filter_map(|n| self.delay_after(u32::try_from(n).ok()?))
    }
}
