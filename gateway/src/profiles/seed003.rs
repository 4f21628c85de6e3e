//! Seed 003 (`/partners/{partnerUniqueID}/callbacks`): one callback URL per
//! partner and notification type, the type named by its integer code, plus
//! an echo that validates a notification body and sends it to the callback.
//!
//! Mapping onto the canonical model: the partner is the caller's tenant (the
//! admin may name any). A callback is an endpoint (`format: json`) with the
//! id `s003.<code>.<tenant>` (ids are global, so the tenant is part of it; the
//! code comes first because it cannot contain a `.`), subscribed to the
//! event type whose `code` the path names, so `PUT` is an idempotent
//! create-or-replace and every other call finds its callback without a list.
//! The echo publishes an event of that type with `data` = `rawBody`: the
//! registry validates it against the type's schema (for the shipped types,
//! exactly one of `processUniqueId` and `simulationUniqueId`) and the one
//! delivery path sends it to the callback like any other event.

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::shared;
use crate::AppState;
use crate::auth::Caller;
use crate::error::GatewayError;
use crate::extract::{DEFAULT_LIMIT, MAX_LIMIT, Path, Query, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::routes::endpoint_auth::{AuthInput, AuthView};
use crate::routes::rfc3339;

const PROFILE: &str = "seed003";
/// Endpoint metadata: the notification type's code and event type name.
const CODE_KEY: &str = "seed003.notificationType";
const TYPE_KEY: &str = "seed003.eventType";
/// The spec fields a `PUT` replaces on an existing callback.
const PUT_FIELDS: &[&str] = &["url", "auth", "format", "template", "description", "metadata"];

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_list_callbacks, list_callbacks)
        .route(__path_put_callback, put_callback)
        .route(__path_delete_callback, delete_callback)
        .route(__path_echo, echo)
}

// ------------------------------------------------------------------ bodies

/// Where notifications of one type go, and how Herald authenticates there.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed003CallbackInput {
    pub callback_url: String,
    /// Herald's endpoint authentication (`none`, `basic`, `bearer`, `oauth2_client_credentials`).
    pub auth: Option<AuthInput>,
}

/// A partner's callback for one notification type.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Seed003Callback {
    #[serde(rename = "partnerUniqueID")]
    pub partner_unique_id: String,
    /// The notification type's integer code.
    pub notification_type: i64,
    /// The event type with that code.
    pub event_type: String,
    pub callback_url: String,
    /// Without passwords, tokens or client secrets; absent when none is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthView>,
    /// `active`, `deactivated` or `disabled` (by Herald, e.g. after `410 Gone`).
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Seed003Callback {
    fn from_endpoint(partner: &str, endpoint: v1::Endpoint) -> Option<Seed003Callback> {
        let v1::Endpoint { spec, status, created_at, updated_at, .. } = endpoint;
        let spec = spec?;
        if !shared::is_tagged(&spec.metadata, PROFILE) {
            return None;
        }
        let notification_type = spec.metadata.get(CODE_KEY)?.parse().ok()?;
        let event_type = spec.metadata.get(TYPE_KEY).cloned().unwrap_or_default();
        let auth = spec.auth.filter(|a| a.kind.is_some()).map(|a| AuthView::from_wire(Some(a)));
        let status = match v1::EndpointStatus::try_from(status).unwrap_or(v1::EndpointStatus::Unspecified) {
            v1::EndpointStatus::Unspecified | v1::EndpointStatus::Active => "active",
            v1::EndpointStatus::Deactivated => "deactivated",
            v1::EndpointStatus::Disabled => "disabled",
        };
        Some(Seed003Callback {
            partner_unique_id: partner.to_owned(),
            notification_type,
            event_type,
            callback_url: spec.url,
            auth,
            status: status.to_owned(),
            created_at: rfc3339(created_at.as_ref()),
            updated_at: rfc3339(updated_at.as_ref()),
        })
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Seed003ListParams {
    /// Callbacks to skip (default 0).
    #[param(value_type = Option<u32>, minimum = 0)]
    pub offset: Option<String>,
    /// Most callbacks to answer, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// A notification body to validate and send to the callback.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed003EchoInput {
    /// Must match the notification type's schema.
    #[serde(rename = "rawBody")]
    #[schema(value_type = Object)]
    pub raw_body: Box<RawValue>,
}

/// The event the echo published and the deliveries it made.
#[derive(Debug, Serialize, ToSchema)]
pub struct Seed003EchoResult {
    /// The event id (`webhook-id` of the delivery).
    pub id: String,
    pub deliveries: u32,
}

// ------------------------------------------------------------------ helpers

/// The tenant a partner id names: the caller's own (another partner is
/// answered `404`, as every other tenant's resource is), or any for the admin.
fn partner_tenant(caller: &Caller, partner: &str) -> Result<String, GatewayError> {
    let missing = || GatewayError::not_found(format!("partner {partner}"));
    resource_id("partner", partner).map_err(|_| missing())?;
    match caller {
        Caller::Admin => Ok(partner.to_owned()),
        Caller::Tenant { tenant, .. } if tenant == partner => Ok(partner.to_owned()),
        Caller::Tenant { .. } => Err(missing()),
    }
}

fn parse_code(field: &str, raw: &str) -> Result<i64, GatewayError> {
    raw.trim().parse().map_err(|_| GatewayError::invalid(field, "must be an integer notification type"))
}

/// The event type a notification type code names; `404` when none does.
async fn event_type_of(state: &AppState, code: i64) -> Result<v1::EventType, GatewayError> {
    let key = Some(v1::get_event_type_request::Key::Code(code));
    match state.upstream.registry().get_event_type(v1::GetEventTypeRequest { key }).await {
        Ok(answer) => Ok(answer.into_inner()),
        Err(status) if status.code() == tonic::Code::NotFound => {
            Err(GatewayError::NotFound(format!("notification type {code} not found")))
        }
        Err(status) => Err(status.into()),
    }
}

fn endpoint_id(tenant: &str, code: i64) -> String {
    format!("s003.{code}.{tenant}")
}

/// The callback endpoint of (tenant, code); `404` when there is none.
async fn callback(state: &AppState, tenant: &str, code: i64) -> Result<v1::Endpoint, GatewayError> {
    let missing = || GatewayError::NotFound(format!("no callback is configured for notification type {code}"));
    let reference = v1::EndpointRef { tenant: tenant.to_owned(), id: endpoint_id(tenant, code) };
    match state.upstream.registry().get_endpoint(reference).await {
        Ok(answer) => {
            let endpoint = answer.into_inner();
            let ours = endpoint.spec.as_ref().is_some_and(|s| shared::is_tagged(&s.metadata, PROFILE));
            if ours { Ok(endpoint) } else { Err(missing()) }
        }
        Err(status) if status.code() == tonic::Code::NotFound => Err(missing()),
        Err(status) => Err(status.into()),
    }
}

fn count(
    field: &str,
    raw: Option<&str>,
    default: u32,
    range: std::ops::RangeInclusive<u32>,
) -> Result<u32, GatewayError> {
    match raw.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(default),
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(GatewayError::invalid(
                field,
                format!("must be an integer from {} to {}", range.start(), range.end()),
            )),
        },
    }
}

// ------------------------------------------------------------------ handlers

/// The partner's active callbacks, by notification type. A callback that is
/// deactivated, or that Herald disabled, receives nothing and is left out.
#[utoipa::path(get, path = "/partners/{partnerUniqueID}/callbacks", tag = "seed003",
    params(("partnerUniqueID" = String, Path, description = "The partner: the caller's tenant id"), Seed003ListParams),
    responses((status = 200, description = "The list of callbacks", body = Vec<Seed003Callback>), Problems))]
pub async fn list_callbacks(
    State(state): State<AppState>,
    caller: Caller,
    Path(partner): Path<String>,
    Query(params): Query<Seed003ListParams>,
) -> Result<axum::Json<Vec<Seed003Callback>>, GatewayError> {
    let tenant = partner_tenant(&caller, &partner)?;
    let offset = count("offset", params.offset.as_deref(), 0, 0..=u32::MAX)?;
    let limit = count("limit", params.limit.as_deref(), DEFAULT_LIMIT, 1..=MAX_LIMIT)?;
    let mut callbacks: Vec<Seed003Callback> = shared::all_endpoints(&state, &tenant)
        .await?
        .into_iter()
        .filter_map(|e| Seed003Callback::from_endpoint(&tenant, e))
        .filter(|c| c.status == "active")
        .collect();
    callbacks.sort_by_key(|c| c.notification_type);
    Ok(axum::Json(callbacks.into_iter().skip(offset as usize).take(limit as usize).collect()))
}

/// Create or replace the callback for one notification type.
#[utoipa::path(put, path = "/partners/{partnerUniqueID}/callbacks/{notificationType}", tag = "seed003",
    params(("partnerUniqueID" = String, Path, description = "The partner: the caller's tenant id"),
        ("notificationType" = i64, Path, description = "The notification type's integer code")),
    request_body = Seed003CallbackInput,
    responses((status = 200, description = "The callback configuration", body = Seed003Callback), Problems))]
pub async fn put_callback(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, code)): Path<(String, String)>,
    Json(input): Json<Seed003CallbackInput>,
) -> Result<axum::Json<Seed003Callback>, GatewayError> {
    let tenant = partner_tenant(&caller, &partner)?;
    let code = parse_code("notificationType", &code)?;
    let event_type = event_type_of(&state, code).await?;
    let Seed003CallbackInput { callback_url, auth } = input;
    let id = endpoint_id(&tenant, code);
    let spec = v1::EndpointSpec {
        url: callback_url,
        description: format!("seed 003 callback for notification type {code} ({})", event_type.name),
        auth: auth.and_then(AuthInput::into_wire),
        format: v1::EndpointFormat::Json as i32,
        metadata: shared::tag(
            PROFILE,
            [(CODE_KEY.to_owned(), code.to_string()), (TYPE_KEY.to_owned(), event_type.name.clone())],
        ),
        ..Default::default()
    };
    let renames = [("url", "callbackUrl")];
    let (endpoint, created) = shared::upsert_endpoint(&state, &tenant, &id, spec, PUT_FIELDS)
        .await
        .map_err(|e| shared::rename_fields(e, &renames))?;
    let subscribed =
        shared::ensure_subscription(&state, &tenant, &id, vec![event_type.name], None, shared::tag(PROFILE, [])).await;
    if let Err(e) = subscribed {
        if created {
            shared::roll_back_endpoint(&state, &tenant, &id).await;
        }
        return Err(e);
    }
    let callback = Seed003Callback::from_endpoint(&tenant, endpoint)
        .ok_or_else(|| GatewayError::Internal("the callback endpoint lost its profile metadata".into()))?;
    Ok(axum::Json(callback))
}

/// Remove the callback for one notification type (`404` when there is none).
#[utoipa::path(delete, path = "/partners/{partnerUniqueID}/callbacks/{notificationType}", tag = "seed003",
    params(("partnerUniqueID" = String, Path, description = "The partner: the caller's tenant id"),
        ("notificationType" = i64, Path, description = "The notification type's integer code")),
    responses((status = 204, description = "Removed"), Problems))]
pub async fn delete_callback(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, code)): Path<(String, String)>,
) -> Result<StatusCode, GatewayError> {
    let tenant = partner_tenant(&caller, &partner)?;
    let code = parse_code("notificationType", &code)?;
    let endpoint = callback(&state, &tenant, code).await?;
    let reference = v1::EndpointRef { tenant, id: endpoint.id };
    state.upstream.registry().delete_endpoint(reference).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Validate `rawBody` against the notification type's schema and send it to
/// the configured callback, as an event of that type.
#[utoipa::path(post, path = "/partners/{partnerUniqueID}/callbacks/{notificationTypeID}/echo", tag = "seed003",
    params(("partnerUniqueID" = String, Path, description = "The partner: the caller's tenant id"),
        ("notificationTypeID" = i64, Path, description = "The notification type's integer code")),
    request_body = Seed003EchoInput,
    responses((status = 200, description = "The notification was processed", body = Seed003EchoResult), Problems))]
pub async fn echo(
    State(state): State<AppState>,
    caller: Caller,
    Path((partner, code)): Path<(String, String)>,
    Json(input): Json<Seed003EchoInput>,
) -> Result<axum::Json<Seed003EchoResult>, GatewayError> {
    let tenant = partner_tenant(&caller, &partner)?;
    let code = parse_code("notificationTypeID", &code)?;
    if !input.raw_body.get().trim_start().starts_with('{') {
        return Err(GatewayError::invalid("rawBody", "must be a JSON object"));
    }
    let event_type = event_type_of(&state, code).await?;
    callback(&state, &tenant, code).await?;
    let request = v1::PublishRequest {
        tenant,
        id: String::new(),
        r#type: event_type.name,
        resource: Vec::new(),
        data: String::from(Box::<str>::from(input.raw_body)).into_bytes(),
        time: None,
        ..Default::default()
    };
    let answer = state
        .upstream
        .registry()
        .publish(request)
        .await
        .map_err(|status| shared::rename_fields(status.into(), &[("data", "rawBody")]))?
        .into_inner();
    Ok(axum::Json(Seed003EchoResult { id: answer.id, deliveries: answer.deliveries }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn partners_are_the_callers_tenant() {
        let acme = Caller::tenant_key("acme", "key_1");
        assert_eq!(partner_tenant(&acme, "acme").unwrap(), "acme");
        assert_eq!(partner_tenant(&acme, "globex").unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(partner_tenant(&acme, "a b").unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(partner_tenant(&Caller::Admin, "globex").unwrap(), "globex");
    }

    #[test]
    fn codes_and_ids() {
        assert_eq!(parse_code("notificationType", "3").unwrap(), 3);
        assert_eq!(parse_code("notificationType", "-7").unwrap(), -7);
        let err = parse_code("notificationType", "Notes").unwrap_err();
        assert_eq!(err.problem().errors[0].field, "notificationType");
        assert_eq!(endpoint_id("acme", 2), "s003.2.acme");
        assert_ne!(endpoint_id("a.1", 2), endpoint_id("a", 12));
        assert!(herald_common::ids::is_valid_external_id(&endpoint_id(&"t".repeat(64), i64::MIN), 128));
    }

    #[test]
    fn paging_is_checked() {
        assert_eq!(count("limit", None, 50, 1..=1000).unwrap(), 50);
        assert_eq!(count("offset", Some("7"), 0, 0..=u32::MAX).unwrap(), 7);
        for bad in ["0", "1001", "-1", "x"] {
            assert_eq!(count("limit", Some(bad), 50, 1..=1000).unwrap_err().problem().errors[0].field, "limit");
        }
    }

    #[test]
    fn bodies_use_the_seed_names() {
        let input: Seed003CallbackInput =
            parse(br#"{"callbackUrl":"https://p.example.com/cb","auth":{"type":"bearer","token":"t"}}"#).unwrap();
        assert_eq!(input.callback_url, "https://p.example.com/cb");
        let err = parse::<Seed003CallbackInput>(br#"{"url":"x"}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "url");
        let echo: Seed003EchoInput = parse(br#"{"rawBody":{"processUniqueId":"p-1"}}"#).unwrap();
        assert_eq!(echo.raw_body.get(), r#"{"processUniqueId":"p-1"}"#);
        let err = parse::<Seed003EchoInput>(br#"{}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "rawBody");
    }
}
