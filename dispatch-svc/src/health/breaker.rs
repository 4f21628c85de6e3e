//! The breaker's thresholds, from the configuration.

use std::time::Duration;

use herald_common::config::HeraldConfig;

/// When the circuit opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub failing_for: Duration,
    pub cool_down: Duration,
    pub max_cool_down: Duration,
    /// Auto-disable after this long of nothing but failures.
    pub disable_after: Duration,
}

impl Breaker {
    pub fn from_config(config: &HeraldConfig) -> Self {
        Breaker {
            failures: config.circuit_failures.max(1),
            failing_for: config.circuit_failing_for,
            cool_down: config.circuit_cool_down.max(Duration::from_millis(1)),
            max_cool_down: config.circuit_max_cool_down.max(config.circuit_cool_down),
            disable_after: config.disable_after,
        }
    }
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 20,
            failing_for: Duration::from_secs(10),
            cool_down: Duration::from_secs(5),
            max_cool_down: Duration::from_secs(300),
            disable_after: Duration::from_secs(5 * 24 * 3600),
        }
    }
}
