//! Seed 002 (`/api/notifications/v1/webhooks`): webhook registrations with
//! `basic`, `client_credential` or no authentication, answered as the
//! seed's registration record.
//!
//! Mapping onto the canonical model: a webhook is an endpoint (`format:
//! json`, `url` = `targetURL`) whose id is a fresh random UUID, the id shape
//! the seed shows, so it is served by `GetEndpoint` directly (the random id
//! cannot collide with another tenant's; a collision would be answered
//! `ALREADY_EXISTS` and another id drawn). `client_credential` is
//! `oauth2_client_credentials` with `clientAuth: basic`, so tokens come from
//! the dispatcher's shared token cache, which also tries
//! `client_secret_post` when the token endpoint refuses Basic (the seed
//! does not say which its integrators' token endpoints take). The seed's
//! platform notifies a webhook of everything it has for the account
//! (purchase delivery completion is its example), so the endpoint is
//! subscribed to `*`, every event type of the tenant. A webhook Herald
//! disabled (`410 Gone`, long failure) shows as `deactivated`, the seed's
//! only other status.

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use herald_proto::v1::endpoint_auth::Kind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::shared;
use crate::AppState;
use crate::auth::Scope;
use crate::error::GatewayError;
use crate::extract::{Path, TenantParam, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::routes::rfc3339;

const PROFILE: &str = "seed002";
/// Canonical field names in problems, as the seed spells them.
const RENAMES: &[(&str, &str)] =
    &[("url", "targetURL"), ("auth.tokenUrl", "auth.tokenURL"), ("auth.clientId", "auth.clientID")];
/// Fresh ids drawn before giving up on collisions (one is all it ever takes).
const ID_ATTEMPTS: usize = 3;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_register_webhook, register_webhook)
        .route(__path_list_webhooks, list_webhooks)
        .route(__path_get_webhook, get_webhook)
        .route(__path_delete_webhook, delete_webhook)
        .route(__path_deactivate_webhook, deactivate_webhook)
}

// ------------------------------------------------------------------ bodies

/// How Herald authenticates to the callback server.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Seed002AuthInput {
    Basic(Seed002Basic),
    ClientCredential(Seed002ClientCredential),
    Noauth,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed002Basic {
    pub username: String,
    pub password: String,
}

/// OAuth 2.0 client credentials grant against `tokenURL`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed002ClientCredential {
    #[serde(rename = "clientID")]
    pub client_id: String,
    #[serde(rename = "clientSecret")]
    pub client_secret: String,
    #[serde(rename = "tokenURL")]
    pub token_url: String,
}

impl Seed002AuthInput {
    fn into_wire(self) -> Option<v1::EndpointAuth> {
        let kind = match self {
            Seed002AuthInput::Noauth => return None,
            Seed002AuthInput::Basic(Seed002Basic { username, password }) => {
                Kind::Basic(v1::endpoint_auth::Basic { username, password })
            }
            Seed002AuthInput::ClientCredential(Seed002ClientCredential { client_id, client_secret, token_url }) => {
                Kind::Oauth2ClientCredentials(v1::endpoint_auth::OAuth2ClientCredentials {
                    token_url,
                    client_id,
                    client_secret,
                    scope: String::new(),
                    audience: String::new(),
                    client_auth: "basic".to_owned(),
                })
            }
        };
        Some(v1::EndpointAuth { kind: Some(kind) })
    }
}

/// `registerWebhook`: the callback URL and, optionally, how to authenticate to it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed002WebhookInput {
    #[serde(rename = "targetURL")]
    pub target_url: String,
    pub auth: Option<Seed002AuthInput>,
}

/// The webhook's authentication without secrets.
#[derive(Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Seed002AuthView {
    Basic {
        username: String,
    },
    ClientCredential {
        #[serde(rename = "clientID")]
        client_id: String,
        #[serde(rename = "tokenURL")]
        token_url: String,
    },
    /// Set through `/v1` (not a seed 002 type).
    Bearer,
    Noauth,
}

impl Seed002AuthView {
    fn from_wire(auth: Option<v1::EndpointAuth>) -> Seed002AuthView {
        match auth.and_then(|a| a.kind) {
            None => Seed002AuthView::Noauth,
            Some(Kind::Basic(basic)) => Seed002AuthView::Basic { username: basic.username },
            Some(Kind::Bearer(_)) => Seed002AuthView::Bearer,
            Some(Kind::Oauth2ClientCredentials(oauth)) => {
                Seed002AuthView::ClientCredential { client_id: oauth.client_id, token_url: oauth.token_url }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Seed002Status {
    Active,
    Deactivated,
}

/// The webhook registration record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Seed002Webhook {
    /// A UUID.
    pub id: String,
    #[serde(rename = "createdAt")]
    pub created_at: String,
    #[serde(rename = "updatedAt")]
    pub updated_at: String,
    #[serde(rename = "targetURL")]
    pub target_url: String,
    pub auth: Seed002AuthView,
    pub status: Seed002Status,
}

impl From<v1::Endpoint> for Seed002Webhook {
    fn from(endpoint: v1::Endpoint) -> Self {
        let v1::Endpoint { id, spec, status, created_at, updated_at, .. } = endpoint;
        let spec = spec.unwrap_or_default();
        Seed002Webhook {
            id,
            created_at: rfc3339(created_at.as_ref()),
            updated_at: rfc3339(updated_at.as_ref()),
            target_url: spec.url,
            auth: Seed002AuthView::from_wire(spec.auth),
            status: if status == v1::EndpointStatus::Active as i32 || status == v1::EndpointStatus::Unspecified as i32 {
                Seed002Status::Active
            } else {
                Seed002Status::Deactivated
            },
        }
    }
}

/// `deactivateWebhook`'s body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed002Deactivation {
    /// Must be `deactivated`.
    pub status: String,
}

// ------------------------------------------------------------------ handlers

/// Register a webhook. Answers `200` with the registration record.
#[utoipa::path(post, path = "/api/notifications/v1/webhooks", tag = "seed002", params(TenantParam),
    request_body = Seed002WebhookInput,
    responses((status = 200, description = "The webhook registration record", body = Seed002Webhook), Problems))]
pub async fn register_webhook(
    State(state): State<AppState>,
    scope: Scope,
    Json(input): Json<Seed002WebhookInput>,
) -> Result<axum::Json<Seed002Webhook>, GatewayError> {
    let tenant = scope.tenant;
    let Seed002WebhookInput { target_url, auth } = input;
    let spec = v1::EndpointSpec {
        url: target_url,
        description: "seed 002 webhook".to_owned(),
        auth: auth.and_then(Seed002AuthInput::into_wire),
        format: v1::EndpointFormat::Json as i32,
        metadata: shared::tag(PROFILE, []),
        ..Default::default()
    };
    let mut attempt = 0;
    let endpoint = loop {
        attempt += 1;
        match shared::create_endpoint(&state, &tenant, shared::new_uuid(), spec.clone()).await {
            Ok(endpoint) => break endpoint,
            Err(status) if status.code() == tonic::Code::AlreadyExists && attempt < ID_ATTEMPTS => continue,
            Err(status) => return Err(shared::rename_fields(status.into(), RENAMES)),
        }
    };
    let request = v1::CreateSubscriptionRequest {
        tenant: tenant.clone(),
        endpoint_id: endpoint.id.clone(),
        event_types: vec!["*".to_owned()],
        filter: Vec::new(),
        metadata: shared::tag(PROFILE, []),
    };
    if let Err(status) = state.upstream.registry().create_subscription(request).await {
        shared::roll_back_endpoint(&state, &tenant, &endpoint.id).await;
        return Err(status.into());
    }
    Ok(axum::Json(endpoint.into()))
}

/// The webhooks of the caller, oldest first, as a JSON array of registration records.
#[utoipa::path(get, path = "/api/notifications/v1/webhooks", tag = "seed002", params(TenantParam),
    responses((status = 200, description = "OK", body = Vec<Seed002Webhook>), Problems))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    scope: Scope,
) -> Result<axum::Json<Vec<Seed002Webhook>>, GatewayError> {
    let mut endpoints: Vec<v1::Endpoint> = shared::all_endpoints(&state, &scope.tenant)
        .await?
        .into_iter()
        .filter(|e| e.spec.as_ref().is_some_and(|s| shared::is_tagged(&s.metadata, PROFILE)))
        .collect();
    // Random ids list in no particular order; the seed's users expect registration order.
    endpoints.sort_by_key(|e| (e.created_at.as_ref().map(|t| (t.seconds, t.nanos)).unwrap_or_default(), e.id.clone()));
    Ok(axum::Json(endpoints.into_iter().map(Into::into).collect()))
}

/// The endpoint behind a webhook id, when it is one of this profile's.
async fn find(state: &AppState, tenant: &str, id: &str) -> Result<v1::Endpoint, GatewayError> {
    let missing = || GatewayError::not_found(format!("webhook {id}"));
    let id = resource_id("webhook", id).map_err(|_| missing())?;
    let reference = v1::EndpointRef { tenant: tenant.to_owned(), id: id.to_owned() };
    let endpoint = state
        .upstream
        .registry()
        .get_endpoint(reference)
        .await
        .map_err(|status| if status.code() == tonic::Code::NotFound { missing() } else { status.into() })?;
    let endpoint = endpoint.into_inner();
    if endpoint.spec.as_ref().is_some_and(|s| shared::is_tagged(&s.metadata, PROFILE)) {
        Ok(endpoint)
    } else {
        Err(missing())
    }
}

/// One webhook's registration record.
#[utoipa::path(get, path = "/api/notifications/v1/webhooks/{id}", tag = "seed002",
    params(("id" = String, Path), TenantParam),
    responses((status = 200, description = "OK", body = Seed002Webhook), Problems))]
pub async fn get_webhook(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Seed002Webhook>, GatewayError> {
    Ok(axum::Json(find(&state, &scope.tenant, &id).await?.into()))
}

/// Remove a webhook.
#[utoipa::path(delete, path = "/api/notifications/v1/webhooks/{id}", tag = "seed002",
    params(("id" = String, Path), TenantParam), responses((status = 204, description = "Removed"), Problems))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let endpoint = find(&state, &scope.tenant, &id).await?;
    shared::delete_endpoint(&state, &scope.tenant, &endpoint.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivate a webhook: no more notifications are sent to it. Answers the record.
#[utoipa::path(patch, path = "/api/notifications/v1/webhooks/{id}/deactivation", tag = "seed002",
    params(("id" = String, Path), TenantParam), request_body = Seed002Deactivation,
    responses((status = 200, description = "The deactivated webhook", body = Seed002Webhook), Problems))]
pub async fn deactivate_webhook(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(input): Json<Seed002Deactivation>,
) -> Result<axum::Json<Seed002Webhook>, GatewayError> {
    if input.status != "deactivated" {
        return Err(GatewayError::invalid("status", "must be \"deactivated\""));
    }
    let endpoint = find(&state, &scope.tenant, &id).await?;
    let reference = v1::EndpointRef { tenant: scope.tenant, id: endpoint.id };
    let endpoint = state.upstream.registry().deactivate_endpoint(reference).await?.into_inner();
    Ok(axum::Json(endpoint.into()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::json::parse;

    #[test]
    fn the_seed_example_request_parses() {
        let input: Seed002WebhookInput = parse(
            br#"{"targetURL": "https://example.com",
                 "auth": {"type": "basic", "username": "USERNAME", "password": "PASSWORD"}}"#,
        )
        .unwrap();
        assert_eq!(input.target_url, "https://example.com");
        match input.auth.unwrap().into_wire().unwrap().kind.unwrap() {
            Kind::Basic(b) => assert_eq!((b.username.as_str(), b.password.as_str()), ("USERNAME", "PASSWORD")),
            other => panic!("{other:?}"),
        }
        let cc: Seed002WebhookInput = parse(
            br#"{"targetURL":"https://a.example.com","auth":{"type":"client_credential","clientID":"c","clientSecret":"s","tokenURL":"https://id.example.com/token"}}"#,
        )
        .unwrap();
        match cc.auth.unwrap().into_wire().unwrap().kind.unwrap() {
            Kind::Oauth2ClientCredentials(o) => {
                assert_eq!((o.client_id.as_str(), o.token_url.as_str()), ("c", "https://id.example.com/token"))
            }
            other => panic!("{other:?}"),
        }
        let none: Seed002WebhookInput =
            parse(br#"{"targetURL":"https://a.example.com","auth":{"type":"noauth"}}"#).unwrap();
        assert!(none.auth.unwrap().into_wire().is_none());
    }

    #[test]
    fn seed_field_names_are_required_exactly() {
        let err = parse::<Seed002WebhookInput>(br#"{"auth":{"type":"noauth"}}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "targetURL");
        let err = parse::<Seed002WebhookInput>(
            br#"{"targetURL":"u","auth":{"type":"client_credential","clientId":"c","clientSecret":"s","tokenURL":"t"}}"#,
        )
        .unwrap_err();
        assert!(err.problem().errors[0].field.starts_with("auth."), "{:?}", err.problem());
    }

    #[test]
    fn records_carry_no_secrets() {
        let endpoint = v1::Endpoint {
            id: "0b5e0c2a-8a61-4a7e-9f59-3f0e3c1f2b7a".into(),
            spec: Some(v1::EndpointSpec {
                url: "https://example.com/notify".into(),
                auth: Some(v1::EndpointAuth {
                    kind: Some(Kind::Oauth2ClientCredentials(v1::endpoint_auth::OAuth2ClientCredentials {
                        token_url: "https://id.example.com/token".into(),
                        client_id: "c".into(),
                        client_secret: "s".into(),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            }),
            status: v1::EndpointStatus::Disabled as i32,
            ..Default::default()
        };
        let json = serde_json::to_value(Seed002Webhook::from(endpoint)).unwrap();
        assert_eq!(
            json["auth"],
            json!({"type": "client_credential", "clientID": "c", "tokenURL": "https://id.example.com/token"})
        );
        assert_eq!(json["status"], "deactivated");
        assert_eq!(json["targetURL"], "https://example.com/notify");
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
    }
}
