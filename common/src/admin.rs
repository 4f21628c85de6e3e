//! `/healthz`, `/readyz` and `/metrics`, served by every process.
//!
//! Liveness only says the process answers. Readiness runs the service's own
//! check (Redis reachable, upstream gRPC services reachable). Metrics are the
//! Prometheus text rendering of the process-wide `metrics` recorder; each
//! scrape runs the readiness check first and reports it as `herald_ready`,
//! so an alert sees a process that is up but not ready without anyone
//! having to probe `/readyz`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Answers `Err(reason)` when the process should not receive traffic.
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// 1 when the process's readiness check passed at the last scrape, else 0.
pub const READY: &str = "herald_ready";
/// 1 when Redis answered the process's last check, else 0 (registry, dispatch).
pub const REDIS_UP: &str = "herald_redis_up";
/// A scrape waits at most this long for the readiness check.
const SCRAPE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A Redis check gives up before the scrape does, so an unreachable Redis
/// is recorded as such rather than left at its last value.
const REDIS_CHECK_TIMEOUT: Duration = Duration::from_millis(1500);

/// Runs a Redis check (bounded in time) and records its result as `herald_redis_up`.
pub async fn check_redis(ping: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    let result = match tokio::time::timeout(REDIS_CHECK_TIMEOUT, ping).await {
        Ok(result) => result,
        Err(_) => Err(format!("redis: no answer within {} ms", REDIS_CHECK_TIMEOUT.as_millis())),
    };
    metrics::gauge!(REDIS_UP).set(if result.is_ok() { 1.0 } else { 0.0 });
    result
}

/// The process-wide Prometheus recorder, installed on first use. `None` when
/// another recorder was installed first (only possible in tests).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
            PrometheusBuilder::new().set_buckets(&buckets).ok().and_then(|b| b.install_recorder().ok())
        })
        .as_ref()
}

#[derive(Clone)]
struct AdminState {
    readiness: ReadinessCheck,
}

/// The three admin routes, to serve alone or merge into a service router.
pub fn router(readiness: ReadinessCheck) -> Router {
    prometheus();
    metrics::describe_gauge!(READY, "1 when the readiness check passed at this scrape, else 0");
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AdminState { readiness })
}

async fn readyz(State(state): State<AdminState>) -> Response {
    match (state.readiness)().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

async fn metrics_text(State(state): State<AdminState>) -> Response {
    let ready = matches!(tokio::time::timeout(SCRAPE_CHECK_TIMEOUT, (state.readiness)()).await, Ok(Ok(())));
    metrics::gauge!(READY).set(if ready { 1.0 } else { 0.0 });
    let body = prometheus().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// A readiness check installed once the process has what it needs (Redis
/// connected). Until then `/readyz` answers 503 with `reason` while
/// `/healthz` already answers, so an orchestrator waits for a process that is
/// only waiting for Redis instead of restarting it.
#[derive(Clone)]
pub struct LateReadiness {
    installed: Arc<OnceLock<ReadinessCheck>>,
    reason: &'static str,
}

impl LateReadiness {
    pub fn new(reason: &'static str) -> Self {
        LateReadiness { installed: Arc::default(), reason }
    }

    pub fn install(&self, check: ReadinessCheck) {
        // Installed once per process run; a second call has nothing to add.
        let _ = self.installed.set(check);
    }

    pub fn check(&self) -> ReadinessCheck {
        let this = self.clone();
        Arc::new(move || match this.installed.get() {
            Some(check) => check(),
            None => Box::pin(std::future::ready(Err(this.reason.to_owned()))),
        })
    }
}

/// What a service's work is started with by [`serve_alongside`].
pub struct Serving {
    /// Install the real readiness check here once Redis is connected.
    pub readiness: LateReadiness,
    /// Cancelled when `shutdown` fires or the admin server fails.
    pub stop: CancellationToken,
    pub admin_addr: SocketAddr,
}

/// Serves the admin routes on `listener` from start-up while the work that
/// `start` makes runs: `/readyz` answers 503 "redis is not connected yet"
/// until the work installs its check; when either ends, the other is
/// stopped.
pub async fn serve_alongside<E, W>(
    listener: tokio::net::TcpListener,
    shutdown: &CancellationToken,
    start: impl FnOnce(Serving) -> W,
) -> Result<(), E>
where
    E: From<std::io::Error>,
    W: Future<Output = Result<(), E>>,
{
    let stop = shutdown.child_token();
    let readiness = LateReadiness::new("redis is not connected yet");
    let check = readiness.check();
    let work = start(Serving { readiness, stop: stop.clone(), admin_addr: listener.local_addr()? });
    let (work_result, admin_result) = tokio::join!(
        async {
            let result = work.await;
            stop.cancel();
            result
        },
        async {
            let result = serve(listener, check, stop.clone()).await;
            stop.cancel();
            result
        },
    );
    work_result?;
    admin_result?;
    Ok(())
}

/// Serves the admin routes until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    readiness: ReadinessCheck,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(readiness)).with_graceful_shutdown(async move { shutdown.cancelled().await }).await
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}
