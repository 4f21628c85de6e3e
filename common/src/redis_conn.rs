//! Connecting to Redis.
//!
//! Services hold a [`redis::aio::ConnectionManager`]: one multiplexed
//! connection that pipelines concurrent commands and reconnects by itself
//! after Redis restarts, so no process needs a restart when Redis comes back.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Result;

pub async fn connect(url: &str) -> Result<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(2))
        .set_response_timeout(Duration::from_secs(10))
        .set_number_of_retries(2)
        .set_max_delay(500);
    Ok(ConnectionManager::new_with_config(client, config).await?)
}

/// `PING`, for readiness checks.
pub async fn ping(conn: &mut ConnectionManager) -> std::result::Result<(), String> {
    redis::cmd("PING").query_async::<String>(conn).await.map(|_| ()).map_err(|e| format!("redis: {e}"))
}

/// Connects, retrying with backoff until Redis answers, so a service started
/// before Redis waits instead of exiting. `None` when shutdown came first.
pub async fn connect_until_ready(
    url: &str,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<ConnectionManager>> {
    // A malformed URL will not get better by waiting.
    redis::Client::open(url)?;
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            attempt = connect(url) => attempt,
        };
        match attempt {
            Ok(conn) => return Ok(Some(conn)),
            Err(e) => tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "redis is not reachable yet"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
