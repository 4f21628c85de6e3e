//! `/v1/event-types`: the catalogue. Admins write it; every caller reads it
//! (discovery), schemas included.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use herald_proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{json_bytes, json_value, rfc3339};
use crate::auth::{Admin, Caller};
use crate::error::GatewayError;
use crate::extract::{PageParams, Path, Query, next_cursor, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};
use crate::{AppState, created};

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .route(__path_create_event_type, create_event_type)
        .route(__path_list_event_types, list_event_types)
        .route(__path_get_event_type, get_event_type)
        .route(__path_update_event_type, update_event_type)
        .route(__path_delete_event_type, delete_event_type)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeInput {
    /// Letters, digits, `.`, `_` and `-`, e.g. `order.created`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema (2020-12) that published `data` must satisfy.
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    /// Optional integer alias.
    pub code: Option<i64>,
}

/// The body of `PUT`: the event type's new content (its name is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventTypeUpdate {
    /// When given, must equal the name in the path.
    pub name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    pub code: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventType {
    pub name: String,
    pub description: String,
    #[schema(value_type = Option<Object>)]
    pub schema: Option<serde_json::Value>,
    pub code: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<v1::EventType> for EventType {
    fn from(t: v1::EventType) -> Self {
        let v1::EventType { name, description, schema, code, created_at, updated_at } = t;
        EventType {
            name,
            description,
            schema: json_value(&schema),
            code,
            created_at: rfc3339(created_at.as_ref()),
            updated_at: rfc3339(updated_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventTypeList {
    pub data: Vec<EventType>,
    pub next_cursor: Option<String>,
}

/// Add an event type to the catalogue.
#[utoipa::path(post, path = "/v1/event-types", tag = "event-types", request_body = EventTypeInput,
    responses((status = 201, description = "Created", body = EventType), Problems))]
pub async fn create_event_type(
    State(state): State<AppState>,
    _: Admin,
    Json(input): Json<EventTypeInput>,
) -> Result<Response, GatewayError> {
    let EventTypeInput { name, description, schema, code } = input;
    let request = v1::EventType {
        name,
        description,
        schema: json_bytes(schema.as_ref()),
        code,
        created_at: None,
        updated_at: None,
    };
    let answer = state.upstream.registry().create_event_type(request).await?.into_inner();
    let location = format!("/v1/event-types/{}", answer.name);
    Ok(created(&location, EventType::from(answer)))
}

/// The event type catalogue, with schemas.
#[utoipa::path(get, path = "/v1/event-types", tag = "event-types", params(PageParams),
    responses((status = 200, description = "OK", body = EventTypeList), Problems))]
pub async fn list_event_types(
    State(state): State<AppState>,
    _: Caller,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<EventTypeList>, GatewayError> {
    let page = Some(params.page()?);
    let answer = state.upstream.registry().list_event_types(v1::ListEventTypesRequest { page }).await?.into_inner();
    Ok(axum::Json(EventTypeList {
        data: answer.event_types.into_iter().map(Into::into).collect(),
        next_cursor: next_cursor(answer.page),
    }))
}

/// One event type.
#[utoipa::path(get, path = "/v1/event-types/{name}", tag = "event-types", params(("name" = String, Path)),
    responses((status = 200, description = "OK", body = EventType), Problems))]
pub async fn get_event_type(
    State(state): State<AppState>,
    _: Caller,
    Path(name): Path<String>,
) -> Result<axum::Json<EventType>, GatewayError> {
    let name = resource_id("event type", &name)?.to_owned();
    let key = Some(v1::get_event_type_request::Key::Name(name));
    let answer = state.upstream.registry().get_event_type(v1::GetEventTypeRequest { key }).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Replace an event type's description, schema and code.
#[utoipa::path(put, path = "/v1/event-types/{name}", tag = "event-types", params(("name" = String, Path)),
    request_body = EventTypeUpdate, responses((status = 200, description = "OK", body = EventType), Problems))]
pub async fn update_event_type(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
    Json(input): Json<EventTypeUpdate>,
) -> Result<axum::Json<EventType>, GatewayError> {
    let name = resource_id("event type", &name)?.to_owned();
    let EventTypeUpdate { name: body_name, description, schema, code } = input;
    if body_name.is_some_and(|n| n != name) {
        return Err(GatewayError::invalid("name", "must equal the name in the path (event types cannot be renamed)"));
    }
    let request = v1::EventType {
        name,
        description,
        schema: json_bytes(schema.as_ref()),
        code,
        created_at: None,
        updated_at: None,
    };
    let answer = state.upstream.registry().update_event_type(request).await?.into_inner();
    Ok(axum::Json(answer.into()))
}

/// Remove an event type from the catalogue.
#[utoipa::path(delete, path = "/v1/event-types/{name}", tag = "event-types", params(("name" = String, Path)),
    responses((status = 204, description = "Deleted"), Problems))]
pub async fn delete_event_type(
    State(state): State<AppState>,
    _: Admin,
    Path(name): Path<String>,
) -> Result<StatusCode, GatewayError> {
    let name = resource_id("event type", &name)?.to_owned();
    state.upstream.registry().delete_event_type(v1::DeleteEventTypeRequest { name }).await?;
    Ok(StatusCode::NO_CONTENT)
}
