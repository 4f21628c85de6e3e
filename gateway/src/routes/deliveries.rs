//! `/v1/deliveries`: the history of every delivery and its attempts, and
//! manual retries. Answered by the dispatcher.

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{parse_optional_time, rfc3339, rfc3339_opt};
use crate::AppState;
use crate::auth::Scope;
use crate::error::GatewayError;
use crate::extract::{PageParams, Path, Query, TenantParam, next_cursor, resource_id};
use crate::openapi::{ApiRouter, Problems};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_list_deliveries, list_deliveries)
        .route(__path_get_delivery, get_delivery)
        .route(__path_retry_delivery, retry_delivery)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Retrying,
    Failed,
}

impl DeliveryStatus {
    fn from_wire(raw: i32) -> DeliveryStatus {
        match v1::DeliveryStatus::try_from(raw).unwrap_or(v1::DeliveryStatus::Unspecified) {
            v1::DeliveryStatus::Unspecified | v1::DeliveryStatus::Pending => DeliveryStatus::Pending,
            v1::DeliveryStatus::Delivered => DeliveryStatus::Delivered,
            v1::DeliveryStatus::Retrying => DeliveryStatus::Retrying,
            v1::DeliveryStatus::Failed => DeliveryStatus::Failed,
        }
    }

    fn parse(raw: &str) -> Result<v1::DeliveryStatus, GatewayError> {
        match raw {
            "pending" => Ok(v1::DeliveryStatus::Pending),
            "delivered" => Ok(v1::DeliveryStatus::Delivered),
            "retrying" => Ok(v1::DeliveryStatus::Retrying),
            "failed" => Ok(v1::DeliveryStatus::Failed),
            _ => Err(GatewayError::invalid("status", "must be one of pending, delivered, retrying, failed")),
        }
    }
}

/// One HTTP attempt.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub n: u32,
    pub at: String,
    /// `null` when no HTTP answer was received.
    pub status_code: Option<u32>,
    pub latency_ms: u64,
    pub error: Option<String>,
    /// The first 1 KiB of the answer body.
    pub response_body: String,
    /// What was sent; absent when the attempt failed before sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<SentRequest>,
}

/// An attempt's request. Credentials (`Authorization`, the endpoint's own
/// secret headers) and signatures show as `[redacted]`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SentRequest {
    pub url: String,
    pub body_bytes: u64,
    /// Header name to value, in the order sent.
    pub headers: Vec<SentHeader>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SentHeader {
    pub name: String,
    pub value: String,
}

impl From<v1::Attempt> for Attempt {
    fn from(a: v1::Attempt) -> Self {
        let v1::Attempt { n, at, status_code, latency_ms, error, response_body, request } = a;
        Attempt {
            n,
            at: rfc3339(at.as_ref()),
            status_code: Some(status_code).filter(|c| *c != 0),
            latency_ms,
            error: Some(error).filter(|e| !e.is_empty()),
            response_body,
            request: request.map(|r| SentRequest {
                url: r.url,
                body_bytes: r.body_bytes,
                headers: r.headers.into_iter().map(|h| SentHeader { name: h.name, value: h.value }).collect(),
            }),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub created_at: String,
    pub updated_at: String,
    pub next_attempt_at: Option<String>,
    /// Every attempt, oldest first (only when getting one delivery).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<Attempt>>,
}

impl Delivery {
    pub(crate) fn from_wire(d: v1::Delivery, with_attempts: bool) -> Self {
        let v1::Delivery {
            id,
            tenant: _,
            endpoint_id,
            event_id,
            event_type,
            status,
            attempt_count,
            created_at,
            updated_at,
            next_attempt_at,
            attempts,
        } = d;
        Delivery {
            id,
            endpoint_id,
            event_id,
            event_type,
            status: DeliveryStatus::from_wire(status),
            attempt_count,
            created_at: rfc3339(created_at.as_ref()),
            updated_at: rfc3339(updated_at.as_ref()),
            next_attempt_at: rfc3339_opt(next_attempt_at.as_ref()),
            attempts: with_attempts.then(|| attempts.into_iter().map(Into::into).collect()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub data: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryFilter {
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    /// `pending`, `delivered`, `retrying` or `failed`.
    #[param(value_type = Option<DeliveryStatus>)]
    pub status: Option<String>,
    /// Only deliveries of events of this type.
    pub event_type: Option<String>,
    /// Created after this RFC 3339 time.
    pub after: Option<String>,
    /// Created before this RFC 3339 time.
    pub before: Option<String>,
}

/// List deliveries, newest first, optionally by endpoint, event, event type, status and creation time.
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries", params(TenantParam, PageParams, DeliveryFilter),
    responses((status = 200, description = "OK", body = DeliveryList), Problems))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    scope: Scope,
    Query(params): Query<PageParams>,
    Query(filter): Query<DeliveryFilter>,
) -> Result<axum::Json<DeliveryList>, GatewayError> {
    let page = Some(params.page()?);
    let DeliveryFilter { endpoint_id, event_id, status, event_type, after, before } = filter;
    let (after, before) = (parse_optional_time("after", after)?, parse_optional_time("before", before)?);
    let status = match status.as_deref().filter(|s| !s.is_empty()) {
        Some(raw) => DeliveryStatus::parse(raw)? as i32,
        None => v1::DeliveryStatus::Unspecified as i32,
    };
    let empty = || axum::Json(DeliveryList { data: Vec::new(), next_cursor: None });
    let mut ids = [endpoint_id.unwrap_or_default(), event_id.unwrap_or_default()];
    for id in &mut ids {
        // An id that cannot exist matches nothing.
        if !id.is_empty() && resource_id("id", id).is_err() {
            return Ok(empty());
        }
    }
    let [endpoint_id, event_id] = ids;
    let event_type = event_type.unwrap_or_default();
    let request = v1::ListDeliveriesRequest {
        tenant: scope.tenant,
        endpoint_id,
        event_id,
        status,
        page,
        event_type,
        after,
        before,
    };
    let answer = state.upstream.dispatch().list_deliveries(request).await?.into_inner();
    Ok(axum::Json(DeliveryList {
        data: answer.deliveries.into_iter().map(|d| Delivery::from_wire(d, false)).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

/// Reads the deliveries `request` asks for, a page of 1,000 at a time, up
/// to `max_pages`, handing each page to `visit`; answers whether every page
/// was read.
pub(crate) async fn each_delivery_page(
    state: &AppState,
    mut request: v1::ListDeliveriesRequest,
    max_pages: usize,
    mut visit: impl FnMut(Vec<v1::Delivery>),
) -> Result<bool, GatewayError> {
    let mut cursor = String::new();
    for _ in 0..max_pages {
        request.page = Some(v1::PageRequest { limit: 1000, cursor });
        let answer = state.upstream.dispatch().list_deliveries(request.clone()).await?.into_inner();
        visit(answer.deliveries);
        match answer.page.map(|p| p.next_cursor).filter(|c| !c.is_empty()) {
            Some(next) => cursor = next,
            None => return Ok(true),
        }
    }
    Ok(false)
}

fn delivery_ref(scope: &Scope, id: &str) -> Result<v1::DeliveryRef, GatewayError> {
    Ok(v1::DeliveryRef { tenant: scope.tenant.clone(), id: resource_id("delivery", id)?.to_owned() })
}

/// A delivery with all its attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = String, Path), TenantParam),
    responses((status = 200, description = "OK", body = Delivery), Problems))]
pub async fn get_delivery(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<Delivery>, GatewayError> {
    let answer = state.upstream.dispatch().get_delivery(delivery_ref(&scope, &id)?).await?.into_inner();
    Ok(axum::Json(Delivery::from_wire(answer, true)))
}

/// Send a delivery again now. `409` when its next attempt is queued already
/// (it is pending, or held for a retry by its endpoint's `fifo` order).
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path), TenantParam), responses((status = 202, description = "Accepted", body = Delivery), Problems))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Delivery>), GatewayError> {
    let answer = state.upstream.dispatch().retry_delivery(delivery_ref(&scope, &id)?).await?.into_inner();
    Ok((StatusCode::ACCEPTED, axum::Json(Delivery::from_wire(answer, false))))
}
