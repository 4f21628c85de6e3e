//! Seed 000 (`/api/v1/notifications`): one subscriber per tenant, and
//! subscriptions that each send one message type, scoped to an
//! organization (and optionally a location and a revenue center), to a
//! callback URI in the seed's `{"messages":[…]}` envelope.
//!
//! Mapping onto the canonical model:
//! - the subscriber `{subscriberId, name, contactEmail}` is one JSON value in
//!   the tenant's metadata (`seed000.subscriber`), written with `UpdateTenant`;
//! - a subscription is an endpoint (`format: envelope`, `url` = `callbackUri`)
//!   plus one canonical subscription to `messageType.id` whose filter is
//!   `{"resource.orgShortName", "resource.locRef"?, "resource.rvcRef"?}`, so
//!   only events about that scope are delivered. The seed's own fields are
//!   kept in the subscription's metadata (`seed000.subscription`), and
//!   `subscriptionId` is the canonical subscription id;
//! - the endpoint's retry policy is `maxAttempts: 1`: the seed supports no
//!   retries, a notification is sent only once;
//! - message types (discovery) are the seed's own event types, those its
//!   catalogue file defines ([`message_types`]); a subscription may name
//!   no other.
//!
//! Callback URIs pass the global URL policy (in the registry) and, when
//! private networks are not allowed, the seed's own rule: https on port 443
//! under one of its top-level domains.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::shared::{self, finish, optional_text, required_text};
use crate::AppState;
use crate::auth::Scope;
use crate::error::{FieldProblem, GatewayError};
use crate::extract::{Path, TenantParam, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};

mod message_types;

/// The top-level domains seed 000 supports for callback URIs.
pub const CALLBACK_TLDS: &[&str] = &["com", "net", "org", "edu", "ca", "io", "site", "se", "sa"];

const PROFILE: &str = "seed000";
/// Tenant metadata key of the subscriber record.
const SUBSCRIBER_KEY: &str = "seed000.subscriber";
/// Subscription metadata key of the seed's subscription fields.
const SUBSCRIPTION_KEY: &str = "seed000.subscription";
/// Endpoint metadata key naming the subscriber that made it.
const SUBSCRIBER_ID_KEY: &str = "seed000.subscriberId";
const MAX_TEXT: usize = 256;
/// The stored subscription fields must fit one metadata value.
const MAX_STORED: usize = 4096;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_register, register)
        .route(__path_put_registration, put_registration)
        .route(__path_delete_registration, delete_registration)
        .route(__path_list_subscriptions, list_subscriptions)
        .route(__path_create_subscription, create_subscription)
        .route(__path_delete_subscriptions, delete_subscriptions)
        .route(__path_get_subscription, get_subscription)
        .route(__path_delete_subscription, delete_subscription)
        .route(message_types::__path_discovery, message_types::discovery)
}

// ------------------------------------------------------------------ bodies

/// The integrator registering as the tenant's subscriber.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed000RegistrationInput {
    pub name: String,
    pub contact_email: Option<String>,
}

/// The tenant's subscriber.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Seed000Subscriber {
    pub subscriber_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
}

/// A message type, by its id (an event type name such as `CheckNotification`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Seed000MessageType {
    pub id: String,
}

/// A subscription request: which message type, about which organization
/// (location, revenue center), to which callback.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed000SubscriptionInput {
    pub callback_uri: String,
    pub message_type: Seed000MessageType,
    pub org_short_name: String,
    pub loc_ref: Option<String>,
    pub rvc_ref: Option<String>,
    /// Kept and answered as given.
    #[schema(value_type = Option<Object>)]
    pub post_office_options: Option<Value>,
}

/// A subscription: the request's fields with `subscriptionId` and `subscriberId`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Seed000Subscription {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subscription_id: String,
    pub subscriber_id: String,
    pub callback_uri: String,
    pub message_type: Seed000MessageType,
    pub org_short_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loc_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rvc_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub post_office_options: Option<Value>,
}

impl Seed000Subscription {
    /// The canonical filter: the event's `resource` must name this scope.
    fn filter(&self) -> Value {
        let mut filter = Map::new();
        filter.insert("resource.orgShortName".into(), Value::String(self.org_short_name.clone()));
        if let Some(loc) = &self.loc_ref {
            filter.insert("resource.locRef".into(), Value::String(loc.clone()));
        }
        if let Some(rvc) = &self.rvc_ref {
            filter.insert("resource.rvcRef".into(), Value::String(rvc.clone()));
        }
        Value::Object(filter)
    }
}

// ------------------------------------------------------------------ validation

fn validate_registration(input: &Seed000RegistrationInput) -> Result<(), GatewayError> {
    let mut errors = Vec::new();
    required_text(&mut errors, "name", &input.name, MAX_TEXT);
    if let Some(email) = &input.contact_email {
        optional_text(&mut errors, "contactEmail", email, MAX_TEXT);
        let plausible = email.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'));
        if !plausible {
            errors.push(FieldProblem::new("contactEmail", "must be an email address"));
        }
    }
    finish(errors)
}

/// Checks the request's own fields and makes the record to store.
fn validate_subscription(
    state: &AppState,
    input: Seed000SubscriptionInput,
    subscriber_id: String,
) -> Result<Seed000Subscription, GatewayError> {
    let Seed000SubscriptionInput { callback_uri, message_type, org_short_name, loc_ref, rvc_ref, post_office_options } =
        input;
    let mut errors = Vec::new();
    if callback_uri.trim().is_empty() {
        errors.push(FieldProblem::new("callbackUri", "is required"));
    } else if let Err(problem) = check_callback(state, &callback_uri) {
        errors.push(problem);
    }
    required_text(&mut errors, "messageType.id", &message_type.id, MAX_TEXT);
    if !message_type.id.trim().is_empty() && !message_types::is_message_type(&message_type.id) {
        errors.push(FieldProblem::new(
            "messageType.id",
            format!(
                "{} is not a seed 000 message type; GET /api/v1/notifications/discovery lists them",
                message_type.id
            ),
        ));
    }
    required_text(&mut errors, "orgShortName", &org_short_name, MAX_TEXT);
    for (field, value) in [("locRef", &loc_ref), ("rvcRef", &rvc_ref)] {
        if let Some(value) = value {
            required_text(&mut errors, field, value, MAX_TEXT);
        }
    }
    let post_office_options = post_office_options.filter(|v| !v.is_null());
    if post_office_options.as_ref().is_some_and(|v| !v.is_object()) {
        errors.push(FieldProblem::new("postOfficeOptions", "must be a JSON object"));
    }
    finish(errors)?;
    let record = Seed000Subscription {
        subscription_id: String::new(),
        subscriber_id,
        callback_uri: callback_uri.trim().to_owned(),
        message_type,
        org_short_name,
        loc_ref,
        rvc_ref,
        post_office_options,
    };
    Ok(record)
}

/// The seed's own callback rule (see [`super::Settings`]). The host must be
/// a name: an IP address has no top-level domain.
fn check_callback(state: &AppState, raw: &str) -> Result<(), FieldProblem> {
    let Some(policy) = &state.profiles.seed000_callbacks else { return Ok(()) };
    let rule = "seed 000 callbacks must be https on port 443 under .com, .net, .org, .edu, .ca, .io, .site, .se or .sa";
    match policy.check(raw.trim()) {
        Ok(url) if url.domain().is_some() => Ok(()),
        Ok(_) => Err(FieldProblem::new("callbackUri", format!("must name a host, not an address ({rule})"))),
        Err(rejection) => Err(FieldProblem::new("callbackUri", format!("{rejection} ({rule})"))),
    }
}

// ------------------------------------------------------------------ subscriber

/// The tenant record and its subscriber, if one is registered.
async fn load_subscriber(
    state: &AppState,
    tenant: &str,
) -> Result<(v1::Tenant, Option<Seed000Subscriber>), GatewayError> {
    let record = state.upstream.registry().get_tenant(v1::GetTenantRequest { id: tenant.to_owned() }).await?;
    let record = record.into_inner();
    let subscriber = match record.metadata.get(SUBSCRIBER_KEY) {
        None => None,
        Some(raw) => match serde_json::from_str(raw) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(tenant = %tenant, error = %e, "the seed 000 subscriber record does not parse; treated as absent");
                None
            }
        },
    };
    Ok((record, subscriber))
}

/// Writes (or with `None` removes) the subscriber, keeping the tenant's other metadata.
async fn store_subscriber(
    state: &AppState,
    tenant: v1::Tenant,
    subscriber: Option<&Seed000Subscriber>,
) -> Result<(), GatewayError> {
    let v1::Tenant { id, metadata: mut all, .. } = tenant;
    match subscriber {
        Some(s) => {
            let raw =
                serde_json::to_string(s).map_err(|e| GatewayError::Internal(format!("subscriber record: {e}")))?;
            all.insert(SUBSCRIBER_KEY.to_owned(), raw);
        }
        None => {
            all.remove(SUBSCRIBER_KEY);
        }
    }
    let request = v1::UpdateTenantRequest { id, name: String::new(), metadata: all, replace_metadata: true };
    state.upstream.registry().update_tenant(request).await?;
    Ok(())
}

/// Register the subscriber. One per tenant: a second `POST` is a conflict (use `PUT`).
#[utoipa::path(post, path = "/api/v1/notifications/registration", tag = "seed000", params(TenantParam),
    request_body = Seed000RegistrationInput,
    responses((status = 200, description = "Registered", body = Seed000Subscriber), Problems))]
pub async fn register(
    State(state): State<AppState>,
    scope: Scope,
    Json(input): Json<Seed000RegistrationInput>,
) -> Result<axum::Json<Seed000Subscriber>, GatewayError> {
    validate_registration(&input)?;
    let (tenant, existing) = load_subscriber(&state, &scope.tenant).await?;
    if existing.is_some() {
        return Err(GatewayError::Conflict(
            "a subscriber is already registered; PUT /api/v1/notifications/registration updates it".to_owned(),
        ));
    }
    let Seed000RegistrationInput { name, contact_email } = input;
    let subscriber = Seed000Subscriber { subscriber_id: shared::new_uuid(), name, contact_email };
    store_subscriber(&state, tenant, Some(&subscriber)).await?;
    Ok(axum::Json(subscriber))
}

/// Register the subscriber, or update its name and contact.
#[utoipa::path(put, path = "/api/v1/notifications/registration", tag = "seed000", params(TenantParam),
    request_body = Seed000RegistrationInput,
    responses((status = 200, description = "Registered or updated", body = Seed000Subscriber), Problems))]
pub async fn put_registration(
    State(state): State<AppState>,
    scope: Scope,
    Json(input): Json<Seed000RegistrationInput>,
) -> Result<axum::Json<Seed000Subscriber>, GatewayError> {
    validate_registration(&input)?;
    let (tenant, existing) = load_subscriber(&state, &scope.tenant).await?;
    let Seed000RegistrationInput { name, contact_email } = input;
    let subscriber_id = existing.map_or_else(shared::new_uuid, |s| s.subscriber_id);
    let subscriber = Seed000Subscriber { subscriber_id, name, contact_email };
    store_subscriber(&state, tenant, Some(&subscriber)).await?;
    Ok(axum::Json(subscriber))
}

/// Remove the subscriber with all its subscriptions.
#[utoipa::path(delete, path = "/api/v1/notifications/registration", tag = "seed000", params(TenantParam),
    responses((status = 204, description = "Removed"), Problems))]
pub async fn delete_registration(State(state): State<AppState>, scope: Scope) -> Result<StatusCode, GatewayError> {
    let (_, existing) = load_subscriber(&state, &scope.tenant).await?;
    if existing.is_none() {
        return Err(GatewayError::NotFound("no subscriber is registered".to_owned()));
    }
    // Subscriptions first: should this fail half-way, the subscriber is still
    // there and the same DELETE finishes the job.
    remove_all(&state, &scope.tenant).await?;
    let (tenant, _) = load_subscriber(&state, &scope.tenant).await?;
    store_subscriber(&state, tenant, None).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ subscriptions

/// The seed record of a canonical subscription, when it is one of this profile's.
fn record_of(subscription: &v1::Subscription) -> Option<Seed000Subscription> {
    if !shared::is_tagged(&subscription.metadata, PROFILE) {
        return None;
    }
    let raw = subscription.metadata.get(SUBSCRIPTION_KEY)?;
    match serde_json::from_str::<Seed000Subscription>(raw) {
        Ok(mut record) => {
            record.subscription_id = subscription.id.clone();
            Some(record)
        }
        Err(e) => {
            tracing::warn!(subscription = %subscription.id, error = %e, "a seed 000 subscription record does not parse");
            None
        }
    }
}

/// This profile's subscriptions of the tenant, oldest first.
async fn seed_subscriptions(
    state: &AppState,
    tenant: &str,
) -> Result<Vec<(v1::Subscription, Seed000Subscription)>, GatewayError> {
    let all = shared::all_subscriptions(state, tenant, "").await?;
    Ok(all.into_iter().filter_map(|s| record_of(&s).map(|r| (s, r))).collect())
}

/// Removes one subscription with the endpoint made for it.
async fn remove(state: &AppState, tenant: &str, subscription: &v1::Subscription) -> Result<(), GatewayError> {
    shared::delete_endpoint(state, tenant, &subscription.endpoint_id).await?;
    // Deleting the endpoint took its subscriptions along; this covers one whose endpoint was already gone.
    let reference = v1::SubscriptionRef { tenant: tenant.to_owned(), id: subscription.id.clone() };
    match state.upstream.registry().delete_subscription(reference).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(()),
        Err(status) => Err(status.into()),
    }
}

async fn remove_all(state: &AppState, tenant: &str) -> Result<(), GatewayError> {
    for (subscription, _) in seed_subscriptions(state, tenant).await? {
        remove(state, tenant, &subscription).await?;
    }
    Ok(())
}

/// The subscriber's subscriptions.
#[utoipa::path(get, path = "/api/v1/notifications/subscriptions", tag = "seed000", params(TenantParam),
    responses((status = 200, description = "OK", body = Vec<Seed000Subscription>), Problems))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    scope: Scope,
) -> Result<axum::Json<Vec<Seed000Subscription>>, GatewayError> {
    let records = seed_subscriptions(&state, &scope.tenant).await?;
    Ok(axum::Json(records.into_iter().map(|(_, r)| r).collect()))
}

/// Subscribe a callback to one message type about an organization (location, revenue center).
/// The subscriber must be registered first (`409` otherwise).
#[utoipa::path(post, path = "/api/v1/notifications/subscriptions", tag = "seed000", params(TenantParam),
    request_body = Seed000SubscriptionInput,
    responses((status = 200, description = "The subscription", body = Seed000Subscription), Problems))]
pub async fn create_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Json(input): Json<Seed000SubscriptionInput>,
) -> Result<axum::Json<Seed000Subscription>, GatewayError> {
    let tenant = scope.tenant;
    let (_, subscriber) = load_subscriber(&state, &tenant).await?;
    let Some(subscriber) = subscriber else {
        return Err(GatewayError::Conflict(
            "no subscriber is registered; POST /api/v1/notifications/registration first".to_owned(),
        ));
    };
    let mut record = validate_subscription(&state, input, subscriber.subscriber_id)?;
    let stored = serde_json::to_string(&record).map_err(|e| GatewayError::Internal(format!("subscription: {e}")))?;
    if stored.len() > MAX_STORED {
        let field = if record.post_office_options.is_some() { "postOfficeOptions" } else { "body" };
        return Err(GatewayError::invalid(field, "is too large"));
    }
    let event_type = record.message_type.id.clone();
    let key = Some(v1::get_event_type_request::Key::Name(event_type.clone()));
    match state.upstream.registry().get_event_type(v1::GetEventTypeRequest { key }).await {
        Ok(_) => {}
        Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
            return Err(GatewayError::invalid(
                "messageType.id",
                format!("unknown message type {event_type}; GET /api/v1/notifications/discovery lists them"),
            ));
        }
        Err(status) => return Err(status.into()),
    }

    let spec = v1::EndpointSpec {
        url: record.callback_uri.clone(),
        description: format!("seed 000 subscription to {event_type} of {}", record.org_short_name),
        format: v1::EndpointFormat::Envelope as i32,
        metadata: shared::tag(PROFILE, [(SUBSCRIBER_ID_KEY.to_owned(), record.subscriber_id.clone())]),
        // The seed supports no retries: a notification is sent only once.
        retry: Some(v1::RetryPolicy { schedule: Vec::new(), max_attempts: Some(1) }),
        ..Default::default()
    };
    let endpoint = shared::create_endpoint(&state, &tenant, String::new(), spec)
        .await
        .map_err(|status| shared::rename_fields(status.into(), &[("url", "callbackUri")]))?;
    let request = v1::CreateSubscriptionRequest {
        tenant: tenant.clone(),
        endpoint_id: endpoint.id.clone(),
        event_types: vec![event_type],
        filter: crate::routes::json_bytes(Some(&record.filter())),
        metadata: HashMap::from([
            (shared::PROFILE.to_owned(), PROFILE.to_owned()),
            (SUBSCRIPTION_KEY.to_owned(), stored),
        ]),
    };
    let subscription = match state.upstream.registry().create_subscription(request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => {
            shared::roll_back_endpoint(&state, &tenant, &endpoint.id).await;
            return Err(shared::rename_fields(status.into(), &[("eventTypes", "messageType.id")]));
        }
    };
    record.subscription_id = subscription.id;
    Ok(axum::Json(record))
}

/// Remove every subscription of the subscriber.
#[utoipa::path(delete, path = "/api/v1/notifications/subscriptions", tag = "seed000", params(TenantParam),
    responses((status = 204, description = "Removed"), Problems))]
pub async fn delete_subscriptions(State(state): State<AppState>, scope: Scope) -> Result<StatusCode, GatewayError> {
    remove_all(&state, &scope.tenant).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn find(
    state: &AppState,
    tenant: &str,
    id: &str,
) -> Result<(v1::Subscription, Seed000Subscription), GatewayError> {
    let missing = || GatewayError::not_found(format!("subscription {id}"));
    let id = resource_id("subscription", id).map_err(|_| missing())?;
    let reference = v1::SubscriptionRef { tenant: tenant.to_owned(), id: id.to_owned() };
    let subscription = state.upstream.registry().get_subscription(reference).await?.into_inner();
    let record = record_of(&subscription).ok_or_else(missing)?;
    Ok((subscription, record))
}

/// One subscription.
#[utoipa::path(get, path = "/api/v1/notifications/subscriptions/{subscriptionId}", tag = "seed000",
    params(("subscriptionId" = String, Path), TenantParam),
    responses((status = 200, description = "OK", body = Seed000Subscription), Problems))]
pub async fn get_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Seed000Subscription>, GatewayError> {
    let (_, record) = find(&state, &scope.tenant, &id).await?;
    Ok(axum::Json(record))
}

/// Remove one subscription.
#[utoipa::path(delete, path = "/api/v1/notifications/subscriptions/{subscriptionId}", tag = "seed000",
    params(("subscriptionId" = String, Path), TenantParam),
    responses((status = 204, description = "Removed"), Problems))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let (subscription, _) = find(&state, &scope.tenant, &id).await?;
    remove(&state, &scope.tenant, &subscription).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::json::parse;

    #[test]
    fn the_filter_names_only_the_given_scope() {
        let record = Seed000Subscription {
            subscription_id: String::new(),
            subscriber_id: "s".into(),
            callback_uri: "https://a.example.com/".into(),
            message_type: Seed000MessageType { id: "CheckNotification".into() },
            org_short_name: "tfoinc".into(),
            loc_ref: Some("fdmnh144".into()),
            rvc_ref: None,
            post_office_options: None,
        };
        assert_eq!(record.filter(), json!({"resource.orgShortName": "tfoinc", "resource.locRef": "fdmnh144"}));
        let stored = serde_json::to_value(&record).unwrap();
        assert!(stored.get("subscriptionId").is_none() && stored.get("rvcRef").is_none(), "{stored}");
    }

    #[test]
    fn bodies_use_the_seed_names() {
        let input: Seed000SubscriptionInput = parse(
            br#"{"callbackUri":"https://h.example.io/cb","messageType":{"id":"CheckNotification"},
                "orgShortName":"tfoinc","locRef":"fdmnh144","rvcRef":"42","postOfficeOptions":{"PostOfficeType":"PushOnePostOffice"}}"#,
        )
        .unwrap();
        assert_eq!(input.rvc_ref.as_deref(), Some("42"));
        let err = parse::<Seed000SubscriptionInput>(br#"{"messageType":{"id":"x"},"orgShortName":"o"}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "callbackUri");
        let err = parse::<Seed000SubscriptionInput>(br#"{"callbackUri":"u","messageType":{},"orgShortName":"o"}"#)
            .unwrap_err();
        assert_eq!(err.problem().errors[0].field, "messageType.id");
        let reg =
            validate_registration(&Seed000RegistrationInput { name: " ".into(), contact_email: Some("x".into()) })
                .unwrap_err();
        let fields: Vec<String> = reg.problem().errors.into_iter().map(|e| e.field).collect();
        assert_eq!(fields, vec!["name", "contactEmail"]);
    }
}
