//! Per-request observability: a tracing span continuing the caller's W3C
//! trace, one JSON log line per request (method, path, status, latency),
//! and the Prometheus series `herald_http_requests_total{route,status}` and
//! `herald_http_request_duration_seconds{route}`.
//!
//! Routes are labelled by their pattern (`/v1/endpoints/:id`), never the
//! concrete path, so the series count stays bounded whatever callers send.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::upstream::INCOMING_TRACEPARENT;

/// Label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

/// Describes the gateway's series (their HELP lines). Installs the
/// process's recorder first if need be.
pub fn describe() {
    herald_common::admin::prometheus();
    metrics::describe_counter!("herald_http_requests_total", "HTTP requests answered, by route pattern and status");
    metrics::describe_counter!(
        "herald_http_connections_refused_total",
        "connections closed unserved: over the per-peer limit, or no request head in time"
    );
    metrics::describe_histogram!(
        "herald_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "time to answer an HTTP request, by route pattern"
    );
}

pub async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED, MatchedPath::as_str).to_owned();
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128)
        .map(str::to_owned);
    let span = tracing::info_span!("http.request", otel.kind = "server", http.method = %method, http.route = %route);
    if let Some(tp) = &traceparent {
        herald_common::telemetry::set_parent(&span, tp);
    }
    let response = INCOMING_TRACEPARENT.scope(traceparent, next.run(request)).instrument(span).await;
    let status = response.status().as_u16();
    let latency = started.elapsed();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    // Probes arrive every few seconds from every orchestrator; they would drown the log.
    if matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics") && status < 500 {
        tracing::debug!(method = %method, path = %path, route = %route, status, latency_ms, "request");
    } else {
        tracing::info!(method = %method, path = %path, route = %route, status, latency_ms, "request");
    }
    metrics::counter!("herald_http_requests_total", "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("herald_http_request_duration_seconds", "route" => route).record(latency.as_secs_f64());
    response
}
