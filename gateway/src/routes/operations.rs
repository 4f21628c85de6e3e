//! Operational routes: `/openapi.json`, served here, and `/healthz`,
//! `/readyz`, `/metrics`, served by the shared admin router and documented here.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;
use crate::openapi::ApiRouter;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_openapi_json, openapi_json)
        .served_elsewhere(__path_healthz)
        .served_elsewhere(__path_readyz)
        .served_elsewhere(__path_metrics)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "OpenAPI 3.1 document of every route", content_type = "application/json")))]
pub async fn openapi_json(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], state.openapi.clone())
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "Alive", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn healthz() {}

/// Readiness: the registry and the dispatcher answer their gRPC health checks.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String),
        (status = 503, description = "An upstream service is unreachable", content_type = "text/plain", body = String)
    ))]
#[allow(dead_code)]
fn readyz() {}

/// Prometheus metrics, including `herald_http_requests_total{route,status}`.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}
