//! `/v1/portal/sessions`: links that open the integrator portal for one
//! tenant. The token travels in the link's fragment, which browsers never
//! send, so it stays out of every server and proxy log.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use herald_common::time_fmt;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339_opt;
use crate::auth::{Access, Caller, Scope, Session};
use crate::error::GatewayError;
use crate::extract::{Path, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::{AppState, created};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_create_session, create_session)
        .route(__path_revoke_session, revoke_session)
        .route(__path_current_session, current_session)
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionInput {
    /// The admin names the tenant; a tenant key may only name its own.
    pub tenant: Option<String>,
    /// 60 to 604800; default 3600.
    pub ttl_seconds: Option<u32>,
    /// A read-only session is refused every call that changes something.
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedSession {
    pub id: String,
    /// Open this in a browser: the portal, with the token in the fragment.
    pub url: String,
    /// The session's bearer token (`hk_ps_…`), shown once.
    pub token: String,
    pub expires_at: Option<String>,
    pub read_only: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub tenant: String,
    /// `null` for an API key.
    pub session_id: Option<String>,
    pub read_only: bool,
    /// `null` for an API key, which does not expire.
    pub expires_at: Option<String>,
}

/// Open a portal session for a tenant.
#[utoipa::path(post, path = "/v1/portal/sessions", tag = "portal", request_body = SessionInput,
    responses((status = 201, description = "Created", body = CreatedSession), Problems))]
pub async fn create_session(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(input): Json<SessionInput>,
) -> Result<Response, GatewayError> {
    caller.require_key_or_admin()?;
    let SessionInput { tenant, ttl_seconds, read_only } = input;
    let tenant = match (&caller, tenant) {
        (Caller::Admin, Some(tenant)) => resource_id("tenant", &tenant)?.to_owned(),
        (Caller::Admin, None) => return Err(GatewayError::invalid("tenant", "the admin must name the tenant")),
        (Caller::Tenant { tenant: own, .. }, Some(other)) if &other != own => {
            return Err(GatewayError::Forbidden("a tenant key opens sessions for its own tenant only".to_owned()));
        }
        (Caller::Tenant { tenant: own, .. }, _) => own.clone(),
    };
    let request = v1::CreatePortalSessionRequest { tenant, ttl_seconds: ttl_seconds.unwrap_or(0), read_only };
    let v1::PortalSession { id, tenant: _, token, expires_at, read_only } =
        state.upstream.registry().create_portal_session(request).await?.into_inner();
    let url = format!("{}/portal/#token={token}", public_base(state.public_url.as_deref(), &headers));
    let location = format!("/v1/portal/sessions/{id}");
    Ok(created(&location, CreatedSession { id, url, token, expires_at: rfc3339_opt(expires_at.as_ref()), read_only }))
}

/// Revoke a portal session: its token stops working at once.
#[utoipa::path(delete, path = "/v1/portal/sessions/{id}", tag = "portal", params(("id" = String, Path)),
    responses((status = 204, description = "Revoked"), Problems))]
pub async fn revoke_session(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let id = resource_id("portal session", &id)?.to_owned();
    // A session may end itself (signing out), not another one.
    if let Caller::Tenant { key_id, access: Access::Session(_), .. } = &scope.caller
        && key_id != &id
    {
        return Err(GatewayError::Forbidden("a portal session can only revoke itself".to_owned()));
    }
    let request = v1::RevokePortalSessionRequest { tenant: scope.tenant, id: id.clone() };
    state.upstream.registry().revoke_portal_session(request).await?;
    state.auth.forget_key(&id);
    Ok(StatusCode::NO_CONTENT)
}

/// Who the caller is: the portal asks this to know its tenant and whether it may change anything.
#[utoipa::path(get, path = "/v1/portal/session", tag = "portal",
    responses((status = 200, description = "OK", body = SessionInfo), Problems))]
pub async fn current_session(scope: Scope) -> Result<axum::Json<SessionInfo>, GatewayError> {
    let info = match scope.caller {
        Caller::Tenant { key_id, access: Access::Session(Session { read_only, expires_at }), .. } => SessionInfo {
            tenant: scope.tenant,
            session_id: Some(key_id),
            read_only,
            expires_at: Some(time_fmt::rfc3339(time_fmt::from_millis(expires_at))),
        },
        _ => SessionInfo { tenant: scope.tenant, session_id: None, read_only: false, expires_at: None },
    };
    Ok(axum::Json(info))
}

/// `HERALD_PUBLIC_URL`, else the scheme-less host the caller reached us by.
fn public_base(configured: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(base) = configured {
        return base.to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("localhost");
    format!("http://{host}")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn the_link_base_is_the_configured_url_or_the_host_called() {
        let mut headers = HeaderMap::new();
        assert_eq!(public_base(Some("https://hooks.example.com"), &headers), "https://hooks.example.com");
        assert_eq!(public_base(None, &headers), "http://localhost");
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert_eq!(public_base(None, &headers), "http://127.0.0.1:8080");
        headers.insert(header::HOST, HeaderValue::from_static("evil/<x>"));
        assert_eq!(public_base(None, &headers), "http://localhost");
    }
}
