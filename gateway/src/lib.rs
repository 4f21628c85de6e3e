//! Herald's REST gateway: the canonical `/v1` API (and, under
//! [`profiles`], the seed compatibility profiles) over the registry and
//! dispatch gRPC services.
//!
//! The gateway knows JSON; nothing below it does. A request passes
//! [`observe`] (trace, log, metrics), is routed by the table that
//! [`openapi::ApiRouter`] builds together with the OpenAPI document, is
//! authenticated by the [`auth`] extractors, has its body read by
//! [`json::Json`], and becomes one gRPC call through [`upstream`]. Every
//! failure is a [`GatewayError`], answered as problem+json by [`error`].

pub mod auth;
pub mod error;
pub mod extract;
pub mod json;
pub mod observe;
pub mod openapi;
pub mod portal;
pub mod profiles;
pub mod ratelimit;
pub mod routes;
pub mod serve;
pub mod upstream;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use herald_common::admin::ReadinessCheck;
use herald_common::config::HeraldConfig;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use error::GatewayError;

use crate::auth::Authenticator;
use crate::json::BodyLimit;
use crate::upstream::Upstream;

/// What every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) upstream: Upstream,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) body_limit: BodyLimit,
    /// The serialized OpenAPI document, built once at start-up.
    pub(crate) openapi: Bytes,
    /// What the compatibility profiles take from the configuration.
    pub(crate) profiles: profiles::Settings,
    /// `HERALD_PUBLIC_URL`, the base of portal links.
    pub(crate) public_url: Option<Arc<str>>,
    /// How far back a replay may reach: `HERALD_SUCCESS_RETENTION` when it
    /// is shorter than the event retention, as before it a delivered
    /// delivery's record is gone and its event would be sent again.
    pub(crate) replay_horizon: Option<std::time::Duration>,
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> BodyLimit {
        state.body_limit
    }
}

/// The OpenAPI document of every route this gateway serves.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::api().merge(profiles::routes()).finish().1
}

/// The whole HTTP application: API, profiles, the portal (`/portal/`),
/// `/openapi.json`, `/healthz`, `/readyz`, `/metrics`.
pub fn app(config: &HeraldConfig) -> Result<Router, GatewayError> {
    observe::describe();
    let upstream = Upstream::new(config)?;
    let (api, doc) = routes::api().merge(profiles::routes()).finish();
    let openapi = doc.to_json().map_err(|e| GatewayError::Internal(format!("openapi document: {e}")))?;
    let state = AppState {
        upstream: upstream.clone(),
        auth: Arc::new(Authenticator::new(config.admin_token.clone(), upstream.clone(), config.api_rate_limit)),
        body_limit: BodyLimit(config.max_event_bytes),
        openapi: Bytes::from(openapi),
        profiles: profiles::Settings::new(config),
        public_url: config.public_url.as_deref().map(Arc::from),
        replay_horizon: Some(config.success_retention).filter(|kept| *kept < config.event_retention),
    };
    let readiness: ReadinessCheck = Arc::new(move || {
        let upstream = upstream.clone();
        Box::pin(async move { upstream.check().await })
    });
    Ok(api
        .with_state(state)
        .merge(portal::router())
        .merge(herald_common::admin::router(readiness))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(observe::observe)))
}

/// Serves the gateway on `listener` until `shutdown` is cancelled, then
/// finishes the requests in flight. Slow or greedy clients are bounded
/// ([`serve`]).
pub async fn run(config: HeraldConfig, listener: TcpListener, shutdown: CancellationToken) -> Result<(), GatewayError> {
    let app = app(&config)?;
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        registry = %config.registry_url,
        dispatch = %config.dispatch_url,
        "gateway listening"
    );
    let limits = serve::Limits {
        header_read_timeout: config.header_read_timeout,
        connections_per_peer: config.max_connections_per_peer,
    };
    serve::serve(listener, app, limits, shutdown).await;
    tracing::info!("gateway stopped");
    Ok(())
}

async fn not_found() -> GatewayError {
    GatewayError::NotFound("no such route".to_owned())
}

async fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed
}

/// A `201 Created` answer with `Location`.
pub(crate) fn created<T: Serialize>(location: &str, body: T) -> Response {
    let mut response = (StatusCode::CREATED, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};

    use axum::body::Body;
    use axum::http::{Method, Request};
    use herald_common::config::Env;
    use tower::ServiceExt;

    use super::*;

    /// An app whose upstreams are a closed port.
    fn offline_app() -> Router {
        let env = Env::from_pairs([
            ("HERALD_REGISTRY_URL", "http://127.0.0.1:1"),
            ("HERALD_DISPATCH_URL", "http://127.0.0.1:1"),
            ("HERALD_ADMIN_TOKEN", "admin"),
        ]);
        app(&HeraldConfig::from_env(&env, true).unwrap()).unwrap()
    }

    async fn call(app: &Router, method: Method, uri: &str, auth: Option<&str>) -> (StatusCode, Response) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = auth {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        (response.status(), response)
    }

    async fn json_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22).await.unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// Every `(method, path)` of the document.
    fn documented() -> BTreeSet<(String, String)> {
        let doc = serde_json::to_value(openapi()).unwrap();
        let mut routes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                if matches!(method.as_str(), "get" | "post" | "put" | "patch" | "delete") {
                    routes.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        routes
    }

    #[test]
    fn the_document_is_openapi_3_1_and_every_reference_resolves() {
        let doc = serde_json::to_value(openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "dangling $ref {name}");
        }
    }

    #[test]
    fn the_document_lists_the_contract_routes() {
        let routes = documented();
        for (method, path) in [
            ("POST", "/v1/tenants"),
            ("GET", "/v1/tenants/{id}"),
            ("DELETE", "/v1/tenants/{id}"),
            ("POST", "/v1/tenants/{id}/api-keys"),
            ("DELETE", "/v1/tenants/{id}/api-keys/{keyId}"),
            ("POST", "/v1/event-types"),
            ("GET", "/v1/event-types"),
            ("GET", "/v1/event-types/{name}"),
            ("PUT", "/v1/event-types/{name}"),
            ("DELETE", "/v1/event-types/{name}"),
            ("POST", "/v1/events"),
            ("POST", "/v1/endpoints"),
            ("GET", "/v1/endpoints"),
            ("GET", "/v1/endpoints/{id}"),
            ("PATCH", "/v1/endpoints/{id}"),
            ("DELETE", "/v1/endpoints/{id}"),
            ("POST", "/v1/endpoints/{id}/deactivate"),
            ("POST", "/v1/endpoints/{id}/activate"),
            ("GET", "/v1/endpoints/{id}/secret"),
            ("POST", "/v1/endpoints/{id}/secret/rotate"),
            ("POST", "/v1/endpoints/{id}/test"),
            ("POST", "/v1/endpoints/{id}/recover"),
            ("POST", "/v1/subscriptions"),
            ("GET", "/v1/subscriptions"),
            ("GET", "/v1/subscriptions/{id}"),
            ("DELETE", "/v1/subscriptions/{id}"),
            ("GET", "/v1/deliveries"),
            ("GET", "/v1/deliveries/{id}"),
            ("POST", "/v1/deliveries/{id}/retry"),
            ("GET", "/openapi.json"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
        ] {
            assert!(routes.contains(&(method.to_owned(), path.to_owned())), "{method} {path} is not documented");
        }
    }

    /// Documented routes are served: none answers "no such route" or 405.
    #[tokio::test]
    async fn every_documented_route_is_served() {
        let app = offline_app();
        for (method, path) in documented() {
            let uri = path.replace('{', "x").replace('}', "");
            let (status, response) = call(&app, Method::from_bytes(method.as_bytes()).unwrap(), &uri, None).await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            if status == StatusCode::NOT_FOUND {
                panic!("{method} {path} is not routed: {}", json_of(response).await);
            }
            if path.starts_with("/v1/") {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} must need credentials");
            }
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_problems() {
        let app = offline_app();
        let (status, response) = call(&app, Method::GET, "/v1/nothing", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(response.headers()[header::CONTENT_TYPE], error::PROBLEM_JSON);
        assert_eq!(json_of(response).await["status"], 404);

        let (status, response) = call(&app, Method::PUT, "/v1/endpoints", Some("admin")).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], error::PROBLEM_JSON);
        let allow = response.headers()[header::ALLOW].to_str().unwrap().to_owned();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
        assert_eq!(json_of(response).await["status"], 405);

        let (status, _) = call(&app, Method::DELETE, "/healthz", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn roles_and_scopes_are_checked_before_upstream() {
        let app = offline_app();
        let (status, response) = call(&app, Method::GET, "/v1/endpoints", Some("admin")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(json_of(response).await["errors"][0]["field"], "tenant");
        let (status, _) = call(&app, Method::GET, "/v1/endpoints", Some("wrong")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(&app, Method::GET, "/v1/endpoints?tenant=a&limit=0", Some("admin")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let long = "x".repeat(300);
        let (status, _) = call(&app, Method::GET, &format!("/v1/endpoints/{long}?tenant=a"), Some("admin")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = call(&app, Method::GET, "/v1/endpoints/%FF%FE?tenant=a", Some("admin")).await;
        assert!(status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND, "{status}");
    }

    #[tokio::test]
    async fn a_down_upstream_is_503_quickly() {
        let app = offline_app();
        let started = Instant::now();
        let (status, response) = call(&app, Method::GET, "/v1/endpoints?tenant=a", Some("admin")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], error::PROBLEM_JSON);
        let (status, _) = call(&app, Method::GET, "/v1/endpoints", Some("hk_unknown")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = call(&app, Method::GET, "/readyz", None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let (status, _) = call(&app, Method::GET, "/healthz", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn openapi_json_is_served() {
        let app = offline_app();
        let (status, response) = call(&app, Method::GET, "/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        let doc = json_of(response).await;
        assert!(doc["paths"]["/v1/endpoints/{id}"]["patch"].is_object());
    }
}
