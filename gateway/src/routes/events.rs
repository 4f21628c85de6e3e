//! `POST /v1/events`: the REST twin of gRPC `Registry.Publish` (admin only).

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::parse_time;
use crate::AppState;
use crate::auth::Admin;
use crate::error::GatewayError;
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().route(__path_publish_event, publish_event)
}

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
