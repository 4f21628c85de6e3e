//! `/v1/events`: publishing (admin only, the REST twin of gRPC
//! `Registry.Publish`) and the tenant's event log (answered by the
//! registry, an event's deliveries by the dispatcher).

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::deliveries::Delivery;
use super::{json_value, parse_optional_time, parse_time, rfc3339};
use crate::AppState;
use crate::auth::{Admin, Scope};
use crate::error::GatewayError;
use crate::extract::{PageParams, Path, Query, TenantParam, next_cursor, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_publish_event, publish_event)
        .route(__path_list_events, list_events)
        .route(__path_get_event, get_event)
}

/// How many of an event's deliveries its page shows.
const EVENT_DELIVERIES_SHOWN: u32 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventInput {
    pub tenant: String,
    /// Idempotency id: the same id again within the window creates nothing new.
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    /// What the event is about (used by subscription filters).
    #[schema(value_type = Option<Object>)]
    pub resource: Option<Box<RawValue>>,
    /// Validated against the event type's schema.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// RFC 3339; defaults to now.
    pub time: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    pub id: String,
    /// Deliveries created (0 for a duplicate).
    pub deliveries: u32,
    /// True when `id` was already published within the idempotency window.
    pub duplicate: bool,
}

/// Publish an event to every subscribed endpoint of the tenant.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = EventInput,
    responses((status = 202, description = "Accepted", body = Published), Problems))]
pub async fn publish_event(
    State(state): State<AppState>,
    _: Admin,
    Json(input): Json<EventInput>,
) -> Result<(StatusCode, axum::Json<Published>), GatewayError> {
    let EventInput { tenant, id, kind, resource, data, time } = input;
    if data.get() == "null" {
        return Err(GatewayError::invalid("data", "is required"));
    }
    let time = time.as_deref().map(|t| parse_time("time", t)).transpose()?;
    let request = v1::PublishRequest {
        tenant,
        id: id.unwrap_or_default(),
        r#type: kind,
        // Passed on as sent: the registry parses and validates it once.
        resource: resource.map(raw_bytes).unwrap_or_default(),
        data: raw_bytes(data),
        time,
        ..Default::default()
    };
    let v1::PublishResponse { id, deliveries, duplicate } =
        state.upstream.registry().publish(request).await?.into_inner();
    Ok((StatusCode::ACCEPTED, axum::Json(Published { id, deliveries, duplicate })))
}

/// A published event as the log shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggedEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's own time.
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub resource: Option<serde_json::Value>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Deliveries its publish created.
    pub deliveries: u32,
    pub published_at: String,
    /// Its deliveries, newest first (the first 100; only when getting one event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_records: Option<Vec<Delivery>>,
}

impl From<v1::Event> for LoggedEvent {
    fn from(e: v1::Event) -> Self {
        let v1::Event { id, tenant: _, r#type, time, resource, data, deliveries, published_at } = e;
        LoggedEvent {
            id,
            kind: r#type,
            time: rfc3339(time.as_ref()),
            resource: json_value(&resource),
            data: json_value(&data).unwrap_or(serde_json::Value::Null),
            deliveries,
            published_at: rfc3339(published_at.as_ref()),
            delivery_records: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub data: Vec<LoggedEvent>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Published after this RFC 3339 time.
    pub after: Option<String>,
    /// Published before this RFC 3339 time.
    pub before: Option<String>,
}

/// The tenant's published events, newest first, kept for the event retention.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(TenantParam, PageParams, EventFilter),
    responses((status = 200, description = "OK", body = EventList), Problems))]
pub async fn list_events(
    State(state): State<AppState>,
    scope: Scope,
    Query(params): Query<PageParams>,
    Query(filter): Query<EventFilter>,
) -> Result<axum::Json<EventList>, GatewayError> {
    let page = Some(params.page()?);
    let EventFilter { kind, after, before } = filter;
    let request = v1::ListEventsRequest {
        tenant: scope.tenant,
        r#type: kind.unwrap_or_default(),
        after: parse_optional_time("after", after)?,
        before: parse_optional_time("before", before)?,
        page,
    };
    let answer = state.upstream.registry().list_events(request).await?.into_inner();
    Ok(axum::Json(EventList {
        data: answer.events.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

/// One event with its data and its deliveries.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path), TenantParam),
    responses((status = 200, description = "OK", body = LoggedEvent), Problems))]
pub async fn get_event(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<LoggedEvent>, GatewayError> {
    let id = resource_id("event", &id)?.to_owned();
    let request = v1::GetEventRequest { tenant: scope.tenant.clone(), id: id.clone() };
    let mut event = LoggedEvent::from(state.upstream.registry().get_event(request).await?.into_inner());
    let page = Some(v1::PageRequest { limit: EVENT_DELIVERIES_SHOWN, cursor: String::new() });
    let request = v1::ListDeliveriesRequest { tenant: scope.tenant, event_id: id, page, ..Default::default() };
    let answer = state.upstream.dispatch().list_deliveries(request).await?.into_inner();
    event.delivery_records = Some(answer.deliveries.into_iter().map(|d| Delivery::from_wire(d, false)).collect());
    Ok(axum::Json(event))
}

/// The JSON text of a raw value; `null` is "absent" like an empty value.
fn raw_bytes(raw: Box<RawValue>) -> Vec<u8> {
    if raw.get() == "null" { Vec::new() } else { String::from(Box::<str>::from(raw)).into_bytes() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    #[test]
    fn data_and_resource_pass_through_verbatim() {
        let input: EventInput = parse(br#"{"tenant":"a","type":"t","data":{"b": [1, 2.50]},"resource":null}"#).unwrap();
        assert_eq!(raw_bytes(input.data), br#"{"b": [1, 2.50]}"#);
        assert!(input.resource.is_none());
        let err = parse::<EventInput>(br#"{"tenant":"a","type":"t"}"#).unwrap_err();
        assert_eq!(err.problem().errors[0].field, "data");
        let err = parse::<EventInput>(br#"{"tenant":"a","type":"t","data":{"x":}}"#).unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST);
    }
}
