//! `/v1/tenants` and their API keys: admin only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::auth::Admin;
use crate::error::GatewayError;
use crate::extract::{PageParams, Path, Query, next_cursor, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::{AppState, created};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_create_tenant, create_tenant)
        .route(__path_list_tenants, list_tenants)
        .route(__path_get_tenant, get_tenant)
        .route(__path_delete_tenant, delete_tenant)
        .route(__path_create_api_key, create_api_key)
        .route(__path_list_api_keys, list_api_keys)
        .route(__path_revoke_api_key, revoke_api_key)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TenantInput {
    /// Chosen by the caller: letters, digits, `-`, `_`, `.`, `~`.
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl From<v1::Tenant> for Tenant {
    fn from(t: v1::Tenant) -> Self {
        let v1::Tenant { id, name, created_at, metadata: _ } = t;
        Tenant { id, name, created_at: rfc3339(created_at.as_ref()) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantList {
    pub data: Vec<Tenant>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyInput {
    /// A label for people; not secret.
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    pub id: String,
    /// The `hk_…` key. Shown only in this answer.
    pub key: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl From<v1::ApiKey> for ApiKey {
    fn from(k: v1::ApiKey) -> Self {
        let v1::ApiKey { id, tenant: _, name, created_at, expires_at: _, read_only: _ } = k;
        ApiKey { id, name, created_at: rfc3339(created_at.as_ref()) }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
    pub next_cursor: Option<String>,
}

/// Create a tenant.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = TenantInput,
    responses((status = 201, description = "Created", body = Tenant), Problems))]
pub async fn create_tenant(
    State(state): State<AppState>,
    _: Admin,
    Json(input): Json<TenantInput>,
) -> Result<Response, GatewayError> {
    let TenantInput { id, name } = input;
    let tenant = state.upstream.registry().create_tenant(v1::CreateTenantRequest { id, name }).await?.into_inner();
    let location = format!("/v1/tenants/{}", tenant.id);
    Ok(created(&location, Tenant::from(tenant)))
}

/// List tenants.
#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(PageParams),
    responses((status = 200, description = "OK", body = TenantList), Problems))]
pub async fn list_tenants(
    State(state): State<AppState>,
    _: Admin,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<TenantList>, GatewayError> {
    let page = Some(params.page()?);
    let answer = state.upstream.registry().list_tenants(v1::ListTenantsRequest { page }).await?.into_inner();
    Ok(axum::Json(TenantList {
        data: answer.tenants.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

/// Get a tenant.
#[utoipa::path(get, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 200, description = "OK", body = Tenant), Problems))]
pub async fn get_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Tenant>, GatewayError> {
    let id = resource_id("tenant", &id)?.to_owned();
    let tenant = state.upstream.registry().get_tenant(v1::GetTenantRequest { id }).await?.into_inner();
    Ok(axum::Json(tenant.into()))
}

/// Delete a tenant with everything it owns.
#[utoipa::path(delete, path = "/v1/tenants/{id}", tag = "tenants", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), Problems))]
pub async fn delete_tenant(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let id = resource_id("tenant", &id)?.to_owned();
    state.upstream.registry().delete_tenant(v1::DeleteTenantRequest { id: id.clone() }).await?;
    state.auth.forget_tenant(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Create an API key for a tenant. The key is shown once.
#[utoipa::path(post, path = "/v1/tenants/{id}/api-keys", tag = "tenants", params(("id" = String, Path)),
    request_body = ApiKeyInput, responses((status = 201, description = "Created", body = CreatedApiKey), Problems))]
pub async fn create_api_key(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Json(input): Json<ApiKeyInput>,
) -> Result<Response, GatewayError> {
    let tenant = resource_id("tenant", &id)?.to_owned();
    let ApiKeyInput { name } = input;
    let answer = state.upstream.registry().create_api_key(v1::CreateApiKeyRequest { tenant, name }).await?.into_inner();
    let v1::CreateApiKeyResponse { key, secret } = answer;
    let key = key.ok_or_else(|| GatewayError::Internal("registry answered an api key without its record".into()))?;
    let location = format!("/v1/tenants/{id}/api-keys/{}", key.id);
    let ApiKey { id, name, created_at } = key.into();
    Ok(created(&location, CreatedApiKey { id, key: secret, name, created_at }))
}

/// List a tenant's API keys (without the keys themselves).
#[utoipa::path(get, path = "/v1/tenants/{id}/api-keys", tag = "tenants", params(("id" = String, Path), PageParams),
    responses((status = 200, description = "OK", body = ApiKeyList), Problems))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<ApiKeyList>, GatewayError> {
    let tenant = resource_id("tenant", &id)?.to_owned();
    let page = Some(params.page()?);
    let answer = state.upstream.registry().list_api_keys(v1::ListApiKeysRequest { tenant, page }).await?.into_inner();
    Ok(axum::Json(ApiKeyList {
        data: answer.keys.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

/// Revoke an API key.
#[utoipa::path(delete, path = "/v1/tenants/{id}/api-keys/{keyId}", tag = "tenants",
    params(("id" = String, Path), ("keyId" = String, Path)),
    responses((status = 204, description = "Revoked"), Problems))]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    _: Admin,
    Path((id, key_id)): Path<(String, String)>,
) -> Result<Response, GatewayError> {
    let tenant = resource_id("tenant", &id)?.to_owned();
    let key_id = resource_id("api key", &key_id)?.to_owned();
    state.upstream.registry().revoke_api_key(v1::RevokeApiKeyRequest { tenant, key_id: key_id.clone() }).await?;
    state.auth.forget_key(&key_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}
