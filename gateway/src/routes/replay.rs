//! `POST /v1/endpoints/{id}/replay`: the event log sent again to one
//! endpoint. The dispatcher names the events the endpoint has deliveries of
//! already; the registry queues the others its subscriptions match.

use axum::extract::State;
use axum::http::StatusCode;
use herald_proto::v1;
use prost_types::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::deliveries::each_delivery_page;
use super::parse_time;
use crate::AppState;
use crate::auth::Scope;
use crate::error::GatewayError;
use crate::extract::{Path, TenantParam, resource_id};
use crate::json::Json;
use crate::openapi::{ApiRouter, Problems};

/// Pages of the endpoint's deliveries read to find what it has already.
const MAX_PAGES: usize = 50;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().route(__path_replay_endpoint, replay_endpoint)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReplayInput {
    /// RFC 3339: events published at or after this time.
    pub since: String,
    /// RFC 3339: events published before this time (default: now).
    pub until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// Deliveries queued.
    pub count: u32,
}

/// Send the endpoint every retained event since a time that its
/// subscriptions match and that it has no delivery of yet (at most 10,000
/// events are read per call). With `HERALD_SUCCESS_RETENTION` shorter than
/// the event retention, `since` may reach back that far only.
#[utoipa::path(post, path = "/v1/endpoints/{id}/replay", tag = "endpoints",
    params(("id" = String, Path), TenantParam), request_body = ReplayInput,
    responses((status = 202, description = "Accepted", body = Replayed), Problems))]
pub async fn replay_endpoint(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
    Json(input): Json<ReplayInput>,
) -> Result<(StatusCode, axum::Json<Replayed>), GatewayError> {
    let endpoint_id = resource_id("endpoint", &id)?.to_owned();
    let since = parse_time("since", &input.since)?;
    within_horizon(&state, &since)?;
    let until = input.until.as_deref().map(|t| parse_time("until", t)).transpose()?;
    let delivered_event_ids = delivered_events(&state, &scope.tenant, &endpoint_id, &since).await?;
    let request =
        v1::ReplayEndpointRequest { tenant: scope.tenant, endpoint_id, since: Some(since), until, delivered_event_ids };
    let answer = state.upstream.registry().replay_endpoint(request).await?.into_inner();
    Ok((StatusCode::ACCEPTED, axum::Json(Replayed { count: answer.count })))
}

/// Refuses a `since` older than the replay horizon: what the endpoint had
/// delivered before it is no longer recorded, so it would get it again.
fn within_horizon(state: &AppState, since: &Timestamp) -> Result<(), GatewayError> {
    let Some(horizon) = state.replay_horizon else { return Ok(()) };
    let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
    let oldest = herald_common::time_fmt::now_millis().saturating_sub(horizon_ms);
    if herald_proto::convert::millis(since) >= oldest {
        return Ok(());
    }
    Err(GatewayError::invalid(
        "since",
        format!(
            "is older than HERALD_SUCCESS_RETENTION ({}s): delivered deliveries before then are no longer \
             recorded, so a replay could send their events again; replay from {} on",
            horizon.as_secs(),
            herald_common::time_fmt::rfc3339(herald_common::time_fmt::from_millis(oldest)),
        ),
    ))
}

/// The events the endpoint has deliveries of, made since `since` (a
/// delivery is made when its event is published, never before).
async fn delivered_events(
    state: &AppState,
    tenant: &str,
    endpoint_id: &str,
    since: &Timestamp,
) -> Result<Vec<String>, GatewayError> {
    let just_before = herald_proto::convert::millis(since).saturating_sub(1);
    let request = v1::ListDeliveriesRequest {
        tenant: tenant.to_owned(),
        endpoint_id: endpoint_id.to_owned(),
        after: herald_proto::convert::timestamp(just_before),
        ..Default::default()
    };
    let mut events = Vec::new();
    let complete = each_delivery_page(state, request, MAX_PAGES, |page| {
        events.extend(page.into_iter().map(|d| d.event_id));
    })
    .await?;
    if complete {
        return Ok(events);
    }
    Err(GatewayError::invalid(
        "since",
        "the endpoint has too many deliveries since then to replay at once; replay a shorter range",
    ))
}
