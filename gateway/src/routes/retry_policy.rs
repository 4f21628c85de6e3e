//! An endpoint's `retry` policy as the REST API spells it. Bounds and
//! duration syntax are the registry's to check, so the errors an
//! integrator sees (`retry.schedule[2]`) are the same over gRPC and REST.

use herald_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How failed deliveries to this endpoint are retried, in place of the
/// installation's schedule (`HERALD_RETRY_SCHEDULE`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"schedule": ["5s", "1m", "10m"], "maxAttempts": 4}))]
pub struct RetryPolicy {
    /// Waits before the 2nd, 3rd, … attempt (`500ms`, `5s`, `1m`, `2h`,
    /// `1d`; 100ms to 7d, at most 32), each jittered by ±20 %.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<String>,
    /// Most attempts, the first included (1 to 100; `1` sends once and never
    /// retries). Without it, a schedule of N waits allows N + 1 attempts;
    /// with it, the schedule's last wait repeats until this many were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
}

impl RetryPolicy {
    pub fn into_wire(self) -> v1::RetryPolicy {
        let RetryPolicy { schedule, max_attempts } = self;
        v1::RetryPolicy { schedule, max_attempts }
    }

    pub fn from_wire(wire: v1::RetryPolicy) -> Self {
        let v1::RetryPolicy { schedule, max_attempts } = wire;
        RetryPolicy { schedule, max_attempts }
    }
}
