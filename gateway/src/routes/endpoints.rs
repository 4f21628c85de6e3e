//! `/v1/endpoints`: where a tenant's webhooks go, how they are signed,
//! authenticated and shaped, plus test sends and recovery.
//!
//! Secrets flow one way: passwords, tokens and client secrets are accepted
//! here and never shown again (answers carry `auth` without them); the
//! signing secret appears in the `201` answer and from `GET …/secret` only.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use herald_proto::v1;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

pub use super::endpoint_auth::{AuthInput, AuthView};
use super::retry_policy::RetryPolicy;
use super::{json_bytes, json_value, parse_time, rfc3339, rfc3339_opt};
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

// ------------------------------------------------------------------ enums

/// Body format of deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    Json,
    Cloudevents,
    CloudeventsBinary,
    Envelope,
    Template,
}

impl Format {
    fn to_wire(self) -> v1::EndpointFormat {
        match self {
            Format::Json => v1::EndpointFormat::Json,
            Format::Cloudevents => v1::EndpointFormat::Cloudevents,
            Format::CloudeventsBinary => v1::EndpointFormat::CloudeventsBinary,
            Format::Envelope => v1::EndpointFormat::Envelope,
            Format::Template => v1::EndpointFormat::Template,
        }
    }

    fn from_wire(raw: i32) -> Format {
        match v1::EndpointFormat::try_from(raw).unwrap_or(v1::EndpointFormat::Unspecified) {
            v1::EndpointFormat::Unspecified | v1::EndpointFormat::Json => Format::Json,
            v1::EndpointFormat::Cloudevents => Format::Cloudevents,
            v1::EndpointFormat::CloudeventsBinary => Format::CloudeventsBinary,
            v1::EndpointFormat::Envelope => Format::Envelope,
            v1::EndpointFormat::Template => Format::Template,
        }
    }
}

/// `fifo` delivers strictly one at a time, in publish order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    None,
    Fifo,
}

impl Ordering {
    fn to_wire(self) -> v1::EndpointOrdering {
        match self {
            Ordering::None => v1::EndpointOrdering::None,
            Ordering::Fifo => v1::EndpointOrdering::Fifo,
        }
    }

    fn from_wire(raw: i32) -> Ordering {
        match v1::EndpointOrdering::try_from(raw).unwrap_or(v1::EndpointOrdering::Unspecified) {
            v1::EndpointOrdering::Unspecified | v1::EndpointOrdering::None => Ordering::None,
            v1::EndpointOrdering::Fifo => Ordering::Fifo,
        }
    }
}

/// `disabled` is Herald's doing (see `disabledReason`); `deactivated` the integrator's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    Active,
    Deactivated,
    Disabled,
}

impl EndpointStatus {
    fn from_wire(raw: i32) -> EndpointStatus {
        match v1::EndpointStatus::try_from(raw).unwrap_or(v1::EndpointStatus::Unspecified) {
            v1::EndpointStatus::Unspecified | v1::EndpointStatus::Active => EndpointStatus::Active,
            v1::EndpointStatus::Deactivated => EndpointStatus::Deactivated,
            v1::EndpointStatus::Disabled => EndpointStatus::Disabled,
        }
    }
}

// ------------------------------------------------------------------ bodies

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointInput {
    pub url: String,
    pub description: Option<String>,
    pub auth: Option<AuthInput>,
    pub format: Option<Format>,
    /// For `format: template`: a JSON template whose string leaves `"$.id"`,
    /// `"$.type"`, `"$.time"`, `"$.resource"`, `"$.data"`, `"$.data.some.path"` are replaced.
    #[schema(value_type = Option<Object>)]
    pub template: Option<serde_json::Value>,
    pub headers: Option<HashMap<String, String>>,
    pub rate_limit_per_second: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub ordering: Option<Ordering>,
    pub metadata: Option<HashMap<String, String>>,
    /// For `format: envelope`: most events per POST.
    pub max_batch_size: Option<u32>,
    /// CloudEvents abuse-protection handshake before the first delivery.
    pub handshake: Option<bool>,
    pub retry: Option<RetryPolicy>,
}

impl EndpointInput {
    fn into_spec(self) -> v1::EndpointSpec {
        let EndpointInput {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = self;
        v1::EndpointSpec {
            url,
            description: description.unwrap_or_default(),
            auth: auth.and_then(AuthInput::into_wire),
            format: format.map_or(v1::EndpointFormat::Unspecified, Format::to_wire) as i32,
            template: json_bytes(template.as_ref()),
            headers: headers.unwrap_or_default(),
            rate_limit_per_second,
            max_in_flight,
            ordering: ordering.map_or(v1::EndpointOrdering::Unspecified, Ordering::to_wire) as i32,
            metadata: metadata.unwrap_or_default(),
            max_batch_size,
            handshake: handshake.unwrap_or(false),
            retry: retry.map(RetryPolicy::into_wire),
        }
    }
}

/// Tells "absent" (`None`) from "null" (`Some(None)`) in a PATCH body.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Fields to change; absent fields are kept, `null` resets a field to its default.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndpointPatch {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub url: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AuthInput>)]
    pub auth: Option<Option<AuthInput>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Format>)]
    pub format: Option<Option<Format>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub template: Option<Option<serde_json::Value>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub headers: Option<Option<HashMap<String, String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_second: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Ordering>)]
    pub ordering: Option<Option<Ordering>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub metadata: Option<Option<HashMap<String, String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    pub max_batch_size: Option<Option<u32>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub handshake: Option<Option<bool>>,
    /// `null` removes the endpoint's policy (the installation's schedule applies again).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<RetryPolicy>)]
    pub retry: Option<Option<RetryPolicy>>,
}

impl EndpointPatch {
    /// The new values and the `EndpointSpec` field names they replace.
    fn into_update(self) -> Result<(v1::EndpointSpec, Vec<String>), GatewayError> {
        let EndpointPatch {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = self;
        let mut spec = v1::EndpointSpec::default();
        let mut fields = Vec::new();
        let mut mark = |name: &str, present: bool| {
            if present {
                fields.push(name.to_owned());
            }
        };
        mark("url", url.is_some());
        mark("description", description.is_some());
        mark("auth", auth.is_some());
        mark("format", format.is_some());
        mark("template", template.is_some());
        mark("headers", headers.is_some());
        mark("rate_limit_per_second", rate_limit_per_second.is_some());
        mark("max_in_flight", max_in_flight.is_some());
        mark("ordering", ordering.is_some());
        mark("metadata", metadata.is_some());
        mark("max_batch_size", max_batch_size.is_some());
        mark("handshake", handshake.is_some());
        mark("retry", retry.is_some());
        if let Some(url) = url {
            spec.url = url.ok_or_else(|| GatewayError::invalid("url", "cannot be null"))?;
        }
        spec.description = description.flatten().unwrap_or_default();
        spec.auth = auth.flatten().and_then(AuthInput::into_wire);
        spec.format = format.flatten().map_or(v1::EndpointFormat::Unspecified, Format::to_wire) as i32;
        spec.template = json_bytes(template.flatten().as_ref());
        spec.headers = headers.flatten().unwrap_or_default();
        spec.rate_limit_per_second = rate_limit_per_second.flatten();
        spec.max_in_flight = max_in_flight.flatten();
        spec.ordering = ordering.flatten().map_or(v1::EndpointOrdering::Unspecified, Ordering::to_wire) as i32;
        spec.metadata = metadata.flatten().unwrap_or_default();
        spec.max_batch_size = max_batch_size.flatten();
        spec.handshake = handshake.flatten().unwrap_or(false);
        spec.retry = retry.flatten().map(RetryPolicy::into_wire);
        Ok((spec, fields))
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// `ep_…`; an endpoint a compatibility profile made keeps its seed's id
    /// (a UUID for seed 002, `s003.{notificationType}.{partner}`,
    /// `s004.{company}`).
    pub id: String,
    pub url: String,
    pub description: String,
    pub auth: AuthView,
    pub format: Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub template: Option<serde_json::Value>,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_second: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    pub ordering: Ordering,
    pub metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    pub handshake: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    pub status: EndpointStatus,
    /// Why Herald disabled the endpoint, e.g. `gone` or `failing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<v1::Endpoint> for Endpoint {
    fn from(e: v1::Endpoint) -> Self {
        let v1::Endpoint { id, tenant: _, spec, status, disabled_reason, created_at, updated_at } = e;
        let v1::EndpointSpec {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = spec.unwrap_or_default();
        Endpoint {
            id,
            url,
            description,
            auth: AuthView::from_wire(auth),
            format: Format::from_wire(format),
            template: json_value(&template),
            headers: headers.into_iter().collect(),
            rate_limit_per_second,
            max_in_flight,
            ordering: Ordering::from_wire(ordering),
            metadata: metadata.into_iter().collect(),
            max_batch_size,
            handshake,
            retry: retry.map(RetryPolicy::from_wire),
            status: EndpointStatus::from_wire(status),
            disabled_reason: Some(disabled_reason).filter(|r| !r.is_empty()),
            created_at: rfc3339(created_at.as_ref()),
            updated_at: rfc3339(updated_at.as_ref()),
        }
    }
}

/// The `201` answer: the endpoint and its signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedEndpoint {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify `webhook-signature` with it.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointList {
    pub data: Vec<Endpoint>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Secret {
    /// `whsec_…`.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestInput {
    pub event_type: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

/// The outcome of the one attempt a test send makes.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestOutcome {
    pub delivered: bool,
    /// `null` when no HTTP answer was received.
    pub status_code: Option<u32>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverInput {
    /// RFC 3339: every `failed` delivery since then is sent again.
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Recovered {
    /// Deliveries scheduled again.
    pub recovered: u32,
}

/// The live state of an endpoint's delivery pipeline.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointHealth {
    pub endpoint_id: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: String,
    pub in_flight: u32,
    pub consecutive_failures: u32,
    pub last_success_at: Option<String>,
    pub failing_since: Option<String>,
    /// The last error from the OAuth token endpoint, e.g. `invalid_client`.
    pub token_error: Option<String>,
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

#[cfg(test)]
mod tests {
    use herald_proto::v1::endpoint_auth::Kind;

    use super::*;
    use crate::json::parse;

    #[test]
    fn create_bodies_map_to_the_spec() {
        let input: EndpointInput = parse(
            br#"{"url":"https://example.com/hook","format":"cloudevents-binary","ordering":"fifo",
                "auth":{"type":"oauth2_client_credentials","tokenUrl":"https://a/token","clientId":"c","clientSecret":"s","clientAuth":"post"},
                "headers":{"x-a":"1"},"rateLimitPerSecond":5,"template":{"k":"$.id"}}"#,
        )
        .unwrap();
        let spec = input.into_spec();
        assert_eq!(spec.format, v1::EndpointFormat::CloudeventsBinary as i32);
        assert_eq!(spec.ordering, v1::EndpointOrdering::Fifo as i32);
        assert_eq!(spec.rate_limit_per_second, Some(5));
        assert_eq!(spec.template, br#"{"k":"$.id"}"#);
        match spec.auth.unwrap().kind.unwrap() {
            Kind::Oauth2ClientCredentials(o) => {
                assert_eq!(
                    (o.token_url.as_str(), o.client_secret.as_str(), o.client_auth.as_str()),
                    ("https://a/token", "s", "post")
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_enum_values_and_fields_name_the_field() {
        let err = parse::<EndpointInput>(br#"{"url":"u","format":"xml"}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "format");
        let err = parse::<EndpointInput>(br#"{"url":"u","auth":{"type":"basic","username":"a"}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "auth.password", "{:?}", err.problem());
        let err = parse::<EndpointInput>(br#"{"url":"u","auth":{"type":"bearer","token":"t","extra":1}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "auth.extra", "{:?}", err.problem());
        let err = parse::<EndpointInput>(br#"{"url":"u","auth":{"type":"kerberos"}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "auth.type", "{:?}", err.problem());
    }

    #[test]
    fn patches_name_only_present_fields() {
        let patch: EndpointPatch =
            parse(br#"{"description":"d","rateLimitPerSecond":null,"auth":{"type":"none"}}"#).unwrap();
        let (spec, fields) = patch.into_update().unwrap();
        assert_eq!(fields, vec!["description", "auth", "rate_limit_per_second"]);
        assert_eq!(spec.description, "d");
        assert_eq!(spec.rate_limit_per_second, None);
        assert!(spec.auth.is_none());
        let patch: EndpointPatch = parse(br#"{"url":null}"#).unwrap();
        assert_eq!(patch.into_update().unwrap_err().problem().errors[0].field, "url");
    }

    #[test]
    fn answers_never_show_auth_secrets() {
        let wire = v1::Endpoint {
            id: "ep_1".into(),
            spec: Some(v1::EndpointSpec {
                url: "https://x".into(),
                auth: Some(v1::EndpointAuth {
                    kind: Some(Kind::Basic(v1::endpoint_auth::Basic { username: "u".into(), password: "p".into() })),
                }),
                ..Default::default()
            }),
            status: v1::EndpointStatus::Disabled as i32,
            disabled_reason: "gone".into(),
            ..Default::default()
        };
        let json = serde_json::to_value(Endpoint::from(wire)).unwrap();
        assert_eq!(json["auth"], serde_json::json!({"type": "basic", "username": "u"}));
        assert_eq!(json["status"], "disabled");
        assert_eq!(json["disabledReason"], "gone");
        assert_eq!(json["format"], "json");
        assert_eq!(json["ordering"], "none");
        assert!(json.get("rateLimitPerSecond").is_none());
    }
}
