//! Dispatcher metrics that outlive a single call site: the per-partition
//! stream gauges and the number of endpoints in each circuit state.
//!
//! Gauges describe what this process holds. When a partition or an endpoint
//! actor goes away its contribution is taken back (a partition's gauges drop
//! to zero, an endpoint leaves its circuit state), so summing a gauge over
//! every dispatcher gives the cluster's figure without counting twice.

use std::sync::OnceLock;

use herald_common::redis_conn::RedisConn;
use metrics::{Counter, Histogram};

use crate::records::{DeliveryStatus, stream_sample};

pub const STREAM_PENDING: &str = "herald_stream_pending";
pub const STREAM_LAG: &str = "herald_stream_lag";
pub const RETRY_SET: &str = "herald_retry_set_size";
pub const CIRCUIT_STATE: &str = "herald_circuit_state";
pub const TOKEN_REQUESTS: &str = "herald_token_requests_total";
pub const HOST_WAITS: &str = "herald_host_waits_total";

/// Describes the dispatcher's series and starts its counters at zero, so a
/// scrape shows every series (and `rate()` has a start) before the first
/// delivery. Installs the process's recorder first if need be.
pub fn describe() {
    herald_common::admin::prometheus();
    herald_common::grpc_metrics::describe();
    metrics::describe_counter!("herald_deliveries_total", "settled delivery attempts, by outcome");
    metrics::describe_counter!("herald_deliveries_parked_total", "jobs parked because their endpoint's queue was full");
    metrics::describe_counter!("herald_retries_scheduled_total", "retries scheduled after a failed attempt");
    metrics::describe_histogram!(
        "herald_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "one webhook request, from connecting to the answer"
    );
    metrics::describe_gauge!(STREAM_PENDING, "entries read from a partition stream and not yet acknowledged");
    metrics::describe_gauge!(STREAM_LAG, "entries of a partition stream not yet read by the consumer group");
    metrics::describe_gauge!(RETRY_SET, "deliveries of a partition waiting in its retry set for their next attempt");
    metrics::describe_gauge!(herald_common::admin::REDIS_UP, "1 when Redis answered this process's last check, else 0");
    metrics::describe_gauge!("herald_partitions_owned", "partitions this dispatcher leases");
    metrics::describe_gauge!("herald_live_actors", "endpoint actors alive in this dispatcher");
    metrics::describe_gauge!(CIRCUIT_STATE, "endpoints with a live actor, by circuit breaker state");
    metrics::describe_counter!(TOKEN_REQUESTS, "OAuth 2.0 client-credentials token requests, by result");
    metrics::describe_counter!(HOST_WAITS, "attempts that waited for a slot of their host (HERALD_HOST_MAX_IN_FLIGHT)");
    for outcome in ["delivered", "retrying", "failed"] {
        metrics::counter!("herald_deliveries_total", "outcome" => outcome).increment(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(TOKEN_REQUESTS, "result" => result).increment(0);
    }
    metrics::counter!("herald_deliveries_parked_total").increment(0);
    metrics::counter!("herald_retries_scheduled_total").increment(0);
    metrics::counter!(HOST_WAITS).increment(0);
    metrics::gauge!("herald_live_actors").increment(0.0);
    metrics::gauge!(herald_common::admin::REDIS_UP).set(0.0);
    for state in [Circuit::Closed, Circuit::Open, Circuit::HalfOpen] {
        metrics::gauge!(CIRCUIT_STATE, "state" => state.as_str()).increment(0.0);
    }
}

/// The series every delivery touches, looked up once: a macro call hashes
/// its name and labels into the recorder's registry each time.
pub struct DeliveryMetrics {
    delivered: Counter,
    retrying: Counter,
    failed: Counter,
    pub retries_scheduled: Counter,
    pub attempt_duration: Histogram,
    pub host_waits: Counter,
}

impl DeliveryMetrics {
    /// The handles, made on first use (after [`describe`] installed the recorder).
    pub fn get() -> &'static DeliveryMetrics {
        static HANDLES: OnceLock<DeliveryMetrics> = OnceLock::new();
        HANDLES.get_or_init(|| DeliveryMetrics {
            delivered: metrics::counter!("herald_deliveries_total", "outcome" => "delivered"),
            retrying: metrics::counter!("herald_deliveries_total", "outcome" => "retrying"),
            failed: metrics::counter!("herald_deliveries_total", "outcome" => "failed"),
            retries_scheduled: metrics::counter!("herald_retries_scheduled_total"),
            attempt_duration: metrics::histogram!("herald_attempt_duration_seconds"),
            host_waits: metrics::counter!(HOST_WAITS),
        })
    }

    /// `herald_deliveries_total` for a settled outcome (`pending` is none).
    pub fn settled(&self, status: DeliveryStatus) -> Option<&Counter> {
        match status {
            DeliveryStatus::Pending => None,
            DeliveryStatus::Delivered => Some(&self.delivered),
            DeliveryStatus::Retrying => Some(&self.retrying),
            DeliveryStatus::Failed => Some(&self.failed),
        }
    }
}

/// Samples a partition stream's consumer group: entries delivered to a
/// consumer and not yet acknowledged (`herald_stream_pending`), entries
/// not yet read by the group at all (`herald_stream_lag`), and the
/// partition's retry set (`herald_retry_set_size`), in one round trip.
pub async fn sample_stream(conn: &mut RedisConn, stream: &str, retry_set: &str, partition: u32) {
    // A failed sample keeps the last values: the reader logs Redis trouble itself.
    let Ok(sample) = stream_sample::sample(conn, stream, retry_set).await else { return };
    let label = partition.to_string();
    metrics::gauge!(RETRY_SET, "partition" => label.clone()).set(sample.retrying as f64);
    if let Some(n) = sample.pending {
        metrics::gauge!(STREAM_PENDING, "partition" => label.clone()).set(n as f64);
    }
    if let Some(n) = sample.lag {
        metrics::gauge!(STREAM_LAG, "partition" => label).set(n as f64);
    }
}

/// Held by a partition's reader: when the reader ends (the partition is
/// lost, handed back or the process drains) its gauges drop to zero, so a
/// partition is reported only by the dispatcher that owns it.
#[derive(Debug)]
pub struct PartitionGauges {
    partition: u32,
}

impl PartitionGauges {
    pub fn new(partition: u32) -> Self {
        PartitionGauges { partition }
    }
}

impl Drop for PartitionGauges {
    fn drop(&mut self) {
        let label = self.partition.to_string();
        metrics::gauge!(STREAM_PENDING, "partition" => label.clone()).set(0.0);
        metrics::gauge!(STREAM_LAG, "partition" => label.clone()).set(0.0);
        metrics::gauge!(RETRY_SET, "partition" => label).set(0.0);
    }
}

/// A circuit breaker's state, as `herald_circuit_state{state}` labels it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Circuit {
    Closed,
    /// Tripped: attempts are held back.
    Open,
    /// One probe attempt is running.
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// One endpoint's place in `herald_circuit_state{state}`: counted as closed
/// from creation, moved between states by [`CircuitGauge::set`], and taken
/// out when dropped (the endpoint's actor stopped).
#[derive(Debug)]
pub struct CircuitGauge {
    current: Circuit,
}

impl Default for CircuitGauge {
    fn default() -> Self {
        metrics::gauge!(CIRCUIT_STATE, "state" => Circuit::Closed.as_str()).increment(1.0);
        CircuitGauge { current: Circuit::Closed }
    }
}

impl CircuitGauge {
    pub fn set(&mut self, state: Circuit) {
        if state != self.current {
            metrics::gauge!(CIRCUIT_STATE, "state" => self.current.as_str()).decrement(1.0);
            metrics::gauge!(CIRCUIT_STATE, "state" => state.as_str()).increment(1.0);
            self.current = state;
        }
    }

    pub fn current(&self) -> Circuit {
        self.current
    }
}

impl Drop for CircuitGauge {
    fn drop(&mut self) {
        metrics::gauge!(CIRCUIT_STATE, "state" => self.current.as_str()).decrement(1.0);
    }
}

/// Counts one request to an OAuth token endpoint by its result (`ok`, `error`).
pub fn token_request(ok: bool) {
    metrics::counter!(TOKEN_REQUESTS, "result" => if ok { "ok" } else { "error" }).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_gauge_moves_between_states() {
        let mut gauge = CircuitGauge::default();
        assert_eq!(gauge.current(), Circuit::Closed);
        gauge.set(Circuit::Open);
        gauge.set(Circuit::Open);
        assert_eq!(gauge.current(), Circuit::Open);
        gauge.set(Circuit::HalfOpen);
        assert_eq!(gauge.current().as_str(), "half_open");
    }
}
