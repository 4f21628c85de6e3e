//! Seed 004 (`POST /company/webhook`): sets, or replaces, the company's one
//! webhook URL; every event of the seed is then sent there in the seed's
//! body `{"id","event","eventDate","order"}`.
//!
//! Mapping onto the canonical model: `companyAccessCode` is the caller's
//! tenant id (another company is `403`, as the seed's contract says; the
//! admin may set any company's). The webhook is the endpoint
//! `s004.<tenant>` (one per company, so setting it again updates it in
//! place and activates it if it was deactivated or disabled) with `format:
//! template` and the template [`TEMPLATE`], subscribed to the seed's event
//! types ([`EVENT_TYPES`]) that the catalogue holds. Types added to the
//! catalogue later are picked up the next time the webhook is set.

use axum::extract::State;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::shared;
use crate::AppState;
use crate::auth::Caller;
use crate::error::GatewayError;
use crate::extract::resource_id;
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};

const PROFILE: &str = "seed004";
/// The seed's webhook events, in the seed's order.
pub const EVENT_TYPES: &[&str] = &[
    "USER_PII_UPDATE",
    "SELF_VERIFICATION_TRY_STATUS",
    "CRIMINAL_REQUEST_STATUS_UPDATE",
    "ALL_CRIMINAL_REQUESTS_COMPLETE",
    "UPLOAD_ID_ENHANCED_REVIEW_STATUS",
    "UPLOAD_PASSPORT_ENHANCED_REVIEW_STATUS",
    "USER_PDF_REPORT_GENERATION",
    "SEX_OFFENDER_CHECK_STATUS_UPDATE",
];
/// The spec fields setting the webhook again replaces. The seed has no
/// authentication, so any added through `/v1` is kept.
const SET_FIELDS: &[&str] = &["url", "format", "template", "description", "metadata"];

/// The seed's delivery body: the event id, its type, its time and `data` as `order`.
pub fn template() -> Value {
    json!({"id": "$.id", "event": "$.type", "eventDate": "$.time", "order": "$.data"})
}

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().route(__path_set_webhook, set_webhook)
}

/// The company and its webhook URL.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed004WebhookInput {
    #[serde(rename = "companyAccessCode")]
    pub company_access_code: String,
    #[serde(rename = "webhookURL")]
    pub webhook_url: String,
}

/// The webhook as set, with the events it receives.
#[derive(Debug, Serialize, ToSchema)]
pub struct Seed004Webhook {
    #[serde(rename = "companyAccessCode")]
    pub company_access_code: String,
    #[serde(rename = "webhookURL")]
    pub webhook_url: String,
    /// The seed's events the webhook is subscribed to (those in the catalogue).
    pub events: Vec<String>,
}

/// The company a `companyAccessCode` names, for this caller.
fn company_tenant(caller: &Caller, code: &str) -> Result<String, GatewayError> {
    match caller {
        Caller::Tenant { tenant, .. } if tenant == code => Ok(code.to_owned()),
        Caller::Tenant { .. } => {
            Err(GatewayError::Forbidden("companyAccessCode is not the company this API key belongs to".to_owned()))
        }
        Caller::Admin => {
            if code.trim().is_empty() {
                return Err(GatewayError::invalid("companyAccessCode", "is required"));
            }
            resource_id("company", code)?;
            Ok(code.to_owned())
        }
    }
}

/// Set the company's webhook URL (replacing the previous one).
#[utoipa::path(post, path = "/company/webhook", tag = "seed004", request_body = Seed004WebhookInput,
    responses((status = 200, description = "The webhook is set", body = Seed004Webhook), Problems))]
pub async fn set_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Json(input): Json<Seed004WebhookInput>,
) -> Result<axum::Json<Seed004Webhook>, GatewayError> {
    let Seed004WebhookInput { company_access_code, webhook_url } = input;
    let tenant = company_tenant(&caller, &company_access_code)?;
    let catalogue = shared::all_event_types(&state).await?;
    let events: Vec<String> =
        EVENT_TYPES.iter().filter(|name| catalogue.iter().any(|t| t.name == **name)).map(|n| (*n).to_owned()).collect();
    let id = format!("s004.{tenant}");
    let spec = v1::EndpointSpec {
        url: webhook_url,
        description: "seed 004 company webhook".to_owned(),
        format: v1::EndpointFormat::Template as i32,
        template: crate::routes::json_bytes(Some(&template())),
        metadata: shared::tag(PROFILE, []),
        ..Default::default()
    };
    let (endpoint, created) = shared::upsert_endpoint(&state, &tenant, &id, spec, SET_FIELDS)
        .await
        .map_err(|e| shared::rename_fields(e, &[("url", "webhookURL")]))?;
    let subscribed =
        shared::ensure_subscription(&state, &tenant, &id, events.clone(), None, shared::tag(PROFILE, [])).await;
    if let Err(e) = subscribed {
        if created {
            shared::roll_back_endpoint(&state, &tenant, &id).await;
        }
        return Err(e);
    }
    if events.is_empty() {
        tracing::warn!(tenant = %tenant, "none of the seed 004 event types is in the catalogue; the webhook receives nothing until it is set again");
    }
    let webhook_url = endpoint.spec.map(|s| s.url).unwrap_or_default();
    Ok(axum::Json(Seed004Webhook { company_access_code: tenant, webhook_url, events }))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::json::parse;

    #[test]
    fn another_company_is_forbidden() {
        let acme = Caller::tenant_key("acme", "key_1");
        assert_eq!(company_tenant(&acme, "acme").unwrap(), "acme");
        assert_eq!(company_tenant(&acme, "globex").unwrap_err().status(), StatusCode::FORBIDDEN);
        assert_eq!(company_tenant(&Caller::Admin, "globex").unwrap(), "globex");
        assert_eq!(company_tenant(&Caller::Admin, "").unwrap_err().status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn bodies_use_the_seed_names() {
        let input: Seed004WebhookInput =
            parse(br#"{"companyAccessCode":"acme","webhookURL":"https://hooks.example.com/a"}"#).unwrap();
        assert_eq!(input.webhook_url, "https://hooks.example.com/a");
        let err = parse::<Seed004WebhookInput>(br#"{"companyAccessCode":"acme"}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "webhookURL");
        assert_eq!(template()["order"], "$.data");
    }
}
