//! Connecting to Redis.
//!
//! Services hold a [`redis::aio::ConnectionManager`]: one multiplexed
//! connection that pipelines concurrent commands and reconnects by itself
//! after Redis restarts, so no process needs a restart when Redis comes back.
//! `rediss://` URLs speak TLS (rustls), verified against the Mozilla root
//! certificates or, when `HERALD_REDIS_CA_FILE` names one, a private CA.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::Result;

/// Where Redis is: its URL and, for TLS with a private CA, that CA (PEM).
#[derive(Clone, Debug)]
pub struct RedisTarget {
    pub url: String,
    pub root_ca: Option<Arc<[u8]>>,
}

impl RedisTarget {
    /// A URL verified, if `rediss://`, against the public roots.
    pub fn url(url: impl Into<String>) -> Self {
        RedisTarget { url: url.into(), root_ca: None }
    }

    fn client(&self) -> Result<redis::Client> {
        Ok(match &self.root_ca {
            Some(ca) => redis::Client::build_with_tls(
                self.url.as_str(),
                redis::TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) },
            )?,
            None => redis::Client::open(self.url.as_str())?,
        })
    }
}

pub async fn connect(target: &RedisTarget) -> Result<ConnectionManager> {
    let client = target.client()?;
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
    target: &RedisTarget,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<Option<ConnectionManager>> {
    // A malformed URL or CA will not get better by waiting.
    target.client()?;
    let mut delay = Duration::from_millis(250);
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            attempt = connect(target) => attempt,
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
