//! The retry pump of an owned partition: moves due retries back into the
//! stream.

use std::sync::Arc;
use std::time::Duration;

use herald_common::time_fmt;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::records::retry_set::{PUMP_BATCH, pump_due};

const PUMP_MAX_SLEEP: Duration = Duration::from_millis(250);
const PUMP_MIN_SLEEP: Duration = Duration::from_millis(20);

/// Moves due retries of partition `p` back into its stream until `stop`.
pub(super) async fn run(shared: Arc<Shared>, p: u32, stop: CancellationToken) {
    let retry_set = shared.keys.retry_set(p);
    let stream = shared.keys.partition_stream(p);
    let mut conn = shared.records.conn();
    while !stop.is_cancelled() {
        let now = time_fmt::now_millis();
        let answer = pump_due(&mut conn, &retry_set, &stream, now).await;
        let sleep = match answer {
            Ok((moved, _)) if moved >= PUMP_BATCH => Duration::ZERO,
            Ok((_, next)) => match next.parse::<f64>() {
                Ok(next) => {
                    let wait = (next as i64).saturating_sub(time_fmt::now_millis()).max(0) as u64;
                    Duration::from_millis(wait).clamp(PUMP_MIN_SLEEP, PUMP_MAX_SLEEP)
                }
                Err(_) => PUMP_MAX_SLEEP,
            },
            Err(e) => {
                tracing::warn!(partition = p, error = %e, "retry pump failed");
                Duration::from_secs(1)
            }
        };
        if sleep.is_zero() {
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}
