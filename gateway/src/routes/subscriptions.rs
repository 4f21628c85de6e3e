//! `/v1/subscriptions`: which event types (and, by filter, which events) go
//! to which endpoint.

use std::collections::{BTreeMap, HashMap};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use herald_proto::v1;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{json_bytes, json_value, rfc3339};
use crate::auth::Scope;
use crate::error::GatewayError;
use crate::extract::{PageParams, Path, Query, TenantParam, next_cursor, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::{AppState, created};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_create_subscription, create_subscription)
        .route(__path_list_subscriptions, list_subscriptions)
        .route(__path_get_subscription, get_subscription)
        .route(__path_update_subscription, update_subscription)
        .route(__path_delete_subscription, delete_subscription)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionInput {
    pub endpoint_id: String,
    /// Event type names, or `["*"]` for all.
    pub event_types: Vec<String>,
    /// Dotted event paths to conditions that must all hold: a plain value
    /// (equality) or an object of operators (`$eq`, `$ne`, `$in`, `$nin`,
    /// `$gt`, `$gte`, `$lt`, `$lte`, `$exists`, `$prefix`); `$or`/`$and`
    /// take a list of such filters.
    #[schema(value_type = Option<Object>, example = json!({"type": "order.paid", "data.amount": {"$gte": 100},
        "$or": [{"resource.region": {"$in": ["eu", "uk"]}}, {"data.priority": true}]}))]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    pub metadata: Option<HashMap<String, String>>,
}

/// Fields to change; absent ones are kept. `filter: null` removes the filter.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SubscriptionPatch {
    /// Event type names, or `["*"]` for all.
    pub event_types: Option<Vec<String>>,
    /// As on create; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Option<serde_json::Map<String, serde_json::Value>>>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    pub endpoint_id: String,
    pub event_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
}

impl From<v1::Subscription> for Subscription {
    fn from(s: v1::Subscription) -> Self {
        let v1::Subscription { id, tenant: _, endpoint_id, event_types, filter, metadata, created_at } = s;
        Subscription {
            id,
            endpoint_id,
            event_types,
            filter: json_value(&filter),
            metadata: metadata.into_iter().collect(),
            created_at: rfc3339(created_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionList {
    pub data: Vec<Subscription>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionFilter {
    /// Only this endpoint's subscriptions.
    pub endpoint_id: Option<String>,
}

/// Subscribe an endpoint to event types.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", params(TenantParam),
    request_body = SubscriptionInput, responses((status = 201, description = "Created", body = Subscription), Problems))]
pub async fn create_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Json(input): Json<SubscriptionInput>,
) -> Result<Response, GatewayError> {
    let SubscriptionInput { endpoint_id, event_types, filter, metadata } = input;
    let filter = filter.map(serde_json::Value::Object);
    let request = v1::CreateSubscriptionRequest {
        tenant: scope.tenant,
        endpoint_id,
        event_types,
        filter: json_bytes(filter.as_ref()),
        metadata: metadata.unwrap_or_default(),
    };
    let answer = state.upstream.registry().create_subscription(request).await?.into_inner();
    let location = format!("/v1/subscriptions/{}", answer.id);
    Ok(created(&location, Subscription::from(answer)))
}

/// List subscriptions, optionally of one endpoint.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions",
    params(TenantParam, PageParams, SubscriptionFilter),
    responses((status = 200, description = "OK", body = SubscriptionList), Problems))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    scope: Scope,
    Query(params): Query<PageParams>,
    Query(filter): Query<SubscriptionFilter>,
) -> Result<axum::Json<SubscriptionList>, GatewayError> {
    let page = Some(params.page()?);
    let endpoint_id = match filter.endpoint_id.filter(|e| !e.is_empty()) {
        // An id that cannot exist matches nothing.
        Some(id) if resource_id("endpoint", &id).is_err() => {
            return Ok(axum::Json(SubscriptionList { data: Vec::new(), next_cursor: None }));
        }
        Some(id) => id,
        None => String::new(),
    };
    let request = v1::ListSubscriptionsRequest { tenant: scope.tenant, page, endpoint_id };
    let answer = state.upstream.registry().list_subscriptions(request).await?.into_inner();
    Ok(axum::Json(SubscriptionList {
        data: answer.subscriptions.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

fn subscription_ref(scope: &Scope, id: &str) -> Result<v1::SubscriptionRef, GatewayError> {
    Ok(v1::SubscriptionRef { tenant: scope.tenant.clone(), id: resource_id("subscription", id)?.to_owned() })
}

/// Get a subscription.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path), TenantParam), responses((status = 200, description = "OK", body = Subscription), Problems))]
pub async fn get_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Subscription>, GatewayError> {
    let answer = state.upstream.registry().get_subscription(subscription_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Change a subscription's event types or filter. Deliveries follow the
/// change from the next published event on.
#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path), TenantParam), request_body = SubscriptionPatch,
    responses((status = 200, description = "OK", body = Subscription), Problems))]
pub async fn update_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(patch): Json<SubscriptionPatch>,
) -> Result<axum::Json<Subscription>, GatewayError> {
    let v1::SubscriptionRef { tenant, id } = subscription_ref(&scope, &id)?;
    let SubscriptionPatch { event_types, filter } = patch;
    let mut fields = Vec::new();
    if event_types.is_some() {
        fields.push("event_types".to_owned());
    }
    if filter.is_some() {
        fields.push("filter".to_owned());
    }
    let filter = filter.flatten().map(serde_json::Value::Object);
    let request = v1::UpdateSubscriptionRequest {
        tenant,
        id,
        event_types: event_types.unwrap_or_default(),
        filter: json_bytes(filter.as_ref()),
        fields,
    };
    let answer = state.upstream.registry().update_subscription(request).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Delete a subscription.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path), TenantParam), responses((status = 204, description = "Deleted"), Problems))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<StatusCode, GatewayError> {
    state.upstream.registry().delete_subscription(subscription_ref(&scope, &id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
