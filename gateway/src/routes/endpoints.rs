//! `/v1/endpoints`: where a tenant's webhooks go, how they are signed,
//! authenticated and shaped, plus test sends and recovery.
//!
//! Secrets flow one way: passwords, tokens and client secrets are accepted
//! here and never shown again (answers carry `auth` without them); the
//! signing secret appears in the `201` answer and from `GET …/secret` only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use herald_proto::v1;

use super::endpoint_bodies::{
    CreatedEndpoint, Endpoint, EndpointHealth, EndpointInput, EndpointList, EndpointPatch, RecoverInput, Recovered,
    Secret, TestInput, TestOutcome,
};
use super::{json_bytes, parse_time, rfc3339_opt};
use crate::auth::Scope;
use crate::error::GatewayError;
use crate::extract::{PageParams, Path, Query, TenantParam, next_cursor, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::{AppState, created};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_create_endpoint, create_endpoint)
        .route(__path_list_endpoints, list_endpoints)
        .route(__path_get_endpoint, get_endpoint)
        .route(__path_update_endpoint, update_endpoint)
        .route(__path_delete_endpoint, delete_endpoint)
        .route(__path_deactivate_endpoint, deactivate_endpoint)
        .route(__path_activate_endpoint, activate_endpoint)
        .route(__path_get_endpoint_secret, get_endpoint_secret)
        .route(__path_rotate_endpoint_secret, rotate_endpoint_secret)
        .route(__path_test_endpoint, test_endpoint)
        .route(__path_recover_endpoint, recover_endpoint)
        .route(__path_get_endpoint_health, get_endpoint_health)
}
// ------------------------------------------------------------------ handlers

fn endpoint_ref(scope: &Scope, id: &str) -> Result<v1::EndpointRef, GatewayError> {
    Ok(v1::EndpointRef { tenant: scope.tenant.clone(), id: resource_id("endpoint", id)?.to_owned() })
}

/// Register an endpoint. The answer holds its signing secret.
#[utoipa::path(post, path = "/v1/endpoints", tag = "endpoints", params(TenantParam), request_body = EndpointInput,
    responses((status = 201, description = "Created", body = CreatedEndpoint), Problems))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Json(input): Json<EndpointInput>,
) -> Result<Response, GatewayError> {
    let request = v1::CreateEndpointRequest { tenant: scope.tenant, spec: Some(input.into_spec()), id: String::new() };
    let v1::CreateEndpointResponse { endpoint, signing_secret } =
        state.upstream.registry().create_endpoint(request).await?.into_inner();
    let endpoint = endpoint.ok_or_else(|| GatewayError::Internal("registry answered without the endpoint".into()))?;
    let location = format!("/v1/endpoints/{}", endpoint.id);
    Ok(created(&location, CreatedEndpoint { endpoint: endpoint.into(), secret: signing_secret }))
}

/// List endpoints.
#[utoipa::path(get, path = "/v1/endpoints", tag = "endpoints", params(TenantParam, PageParams),
    responses((status = 200, description = "OK", body = EndpointList), Problems))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    scope: Scope,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<EndpointList>, GatewayError> {
    let page = Some(params.page()?);
    let answer = state
        .upstream
        .registry()
        .list_endpoints(v1::ListEndpointsRequest { tenant: scope.tenant, page })
        .await?
        .into_inner();
    Ok(axum::Json(EndpointList {
        data: answer.endpoints.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

/// Get an endpoint.
#[utoipa::path(get, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path), TenantParam),
    responses((status = 200, description = "OK", body = Endpoint), Problems))]
pub async fn get_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Endpoint>, GatewayError> {
    let answer = state.upstream.registry().get_endpoint(endpoint_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Change some of an endpoint's fields.
#[utoipa::path(patch, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path), TenantParam),
    request_body = EndpointPatch, responses((status = 200, description = "OK", body = Endpoint), Problems))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(patch): Json<EndpointPatch>,
) -> Result<axum::Json<Endpoint>, GatewayError> {
    let v1::EndpointRef { tenant, id } = endpoint_ref(&scope, &id)?;
    let (spec, fields) = patch.into_update()?;
    let request = v1::UpdateEndpointRequest { tenant, id, spec: Some(spec), fields };
    let answer = state.upstream.registry().update_endpoint(request).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Delete an endpoint and its subscriptions.
#[utoipa::path(delete, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = String, Path), TenantParam),
    responses((status = 204, description = "Deleted"), Problems))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    state.upstream.registry().delete_endpoint(endpoint_ref(&scope, &id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Stop deliveries to an endpoint until it is activated again.
#[utoipa::path(post, path = "/v1/endpoints/{id}/deactivate", tag = "endpoints",
    params(("id" = String, Path), TenantParam), responses((status = 200, description = "OK", body = Endpoint), Problems))]
pub async fn deactivate_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Endpoint>, GatewayError> {
    let answer = state.upstream.registry().deactivate_endpoint(endpoint_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Resume deliveries to a deactivated or disabled endpoint.
#[utoipa::path(post, path = "/v1/endpoints/{id}/activate", tag = "endpoints",
    params(("id" = String, Path), TenantParam), responses((status = 200, description = "OK", body = Endpoint), Problems))]
pub async fn activate_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Endpoint>, GatewayError> {
    let answer = state.upstream.registry().activate_endpoint(endpoint_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// The endpoint's signing secret.
#[utoipa::path(get, path = "/v1/endpoints/{id}/secret", tag = "endpoints",
    params(("id" = String, Path), TenantParam), responses((status = 200, description = "OK", body = Secret), Problems))]
pub async fn get_endpoint_secret(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Secret>, GatewayError> {
    let answer = state.upstream.registry().get_endpoint_secret(endpoint_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(Secret { secret: answer.secret }))
}

/// Rotate the signing secret. For a while deliveries carry signatures by both the old and the new secret.
#[utoipa::path(post, path = "/v1/endpoints/{id}/secret/rotate", tag = "endpoints",
    params(("id" = String, Path), TenantParam), responses((status = 200, description = "OK", body = Secret), Problems))]
pub async fn rotate_endpoint_secret(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Secret>, GatewayError> {
    let answer = state.upstream.registry().rotate_endpoint_secret(endpoint_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(Secret { secret: answer.secret }))
}

/// Send one event to the endpoint now and answer the attempt's outcome.
#[utoipa::path(post, path = "/v1/endpoints/{id}/test", tag = "endpoints", params(("id" = String, Path), TenantParam),
    request_body = TestInput, responses((status = 200, description = "OK", body = TestOutcome), Problems))]
pub async fn test_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(input): Json<TestInput>,
) -> Result<axum::Json<TestOutcome>, GatewayError> {
    let v1::EndpointRef { tenant, id } = endpoint_ref(&scope, &id)?;
    let TestInput { event_type, data } = input;
    let data = data.filter(|d| !d.is_null()).unwrap_or_else(|| serde_json::json!({}));
    let request = v1::TestEndpointRequest { tenant, endpoint_id: id, event_type, data: json_bytes(Some(&data)) };
    let v1::TestEndpointResponse { delivered, status_code, latency_ms, error } =
        state.upstream.dispatch().test_endpoint(request).await?.into_inner();
    Ok(axum::Json(TestOutcome {
        delivered,
        status_code: Some(status_code).filter(|c| *c != 0),
        latency_ms,
        error: Some(error).filter(|e| !e.is_empty()),
    }))
}

/// Send every `failed` delivery of the endpoint since a time again.
#[utoipa::path(post, path = "/v1/endpoints/{id}/recover", tag = "endpoints",
    params(("id" = String, Path), TenantParam), request_body = RecoverInput,
    responses((status = 202, description = "Accepted", body = Recovered), Problems))]
pub async fn recover_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(input): Json<RecoverInput>,
) -> Result<(StatusCode, axum::Json<Recovered>), GatewayError> {
    let v1::EndpointRef { tenant, id } = endpoint_ref(&scope, &id)?;
    let since = Some(parse_time("since", &input.since)?);
    let request = v1::RecoverEndpointRequest { tenant, endpoint_id: id, since };
    let answer = state.upstream.dispatch().recover_endpoint(request).await?.into_inner();
    Ok((StatusCode::ACCEPTED, axum::Json(Recovered { recovered: answer.recovered })))
}

/// The live delivery state of an endpoint: circuit breaker, in-flight sends, OAuth token errors.
#[utoipa::path(get, path = "/v1/endpoints/{id}/health", tag = "endpoints",
    params(("id" = String, Path), TenantParam), responses((status = 200, description = "OK", body = EndpointHealth), Problems))]
pub async fn get_endpoint_health(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointHealth>, GatewayError> {
    let v1::EndpointRef { tenant, id } = endpoint_ref(&scope, &id)?;
    let request = v1::EndpointHealthRequest { tenant, endpoint_id: id };
    let v1::EndpointHealth {
        endpoint_id,
        circuit,
        in_flight,
        consecutive_failures,
        last_success_at,
        failing_since,
        token_error,
    } = state.upstream.dispatch().get_endpoint_health(request).await?.into_inner();
    Ok(axum::Json(EndpointHealth {
        endpoint_id,
        circuit,
        in_flight,
        consecutive_failures,
        last_success_at: rfc3339_opt(last_success_at.as_ref()),
        failing_since: rfc3339_opt(failing_since.as_ref()),
        token_error: Some(token_error).filter(|e| !e.is_empty()),
    }))
}
