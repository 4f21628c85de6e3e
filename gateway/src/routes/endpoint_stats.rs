//! `GET /v1/endpoints/{id}/stats`: the endpoint's deliveries of the last
//! hour counted per minute, from the delivery history (the portal's chart).

use axum::extract::State;
use herald_common::time_fmt;
use herald_proto::v1;
use serde::Serialize;
use utoipa::ToSchema;

use super::deliveries::each_delivery_page;
use crate::AppState;
use crate::auth::Scope;
use crate::error::GatewayError;
use crate::extract::{Path, TenantParam, resource_id};
use crate::openapi::{ApiRouter, Problems};

const MINUTE_MS: i64 = 60_000;
const MINUTES: usize = 60;
/// Deliveries read at most; past them the answer says `truncated`.
const MAX_PAGES: usize = 10;

pub fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().route(__path_endpoint_stats, endpoint_stats)
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinuteCount {
    /// The minute's start, RFC 3339.
    pub minute: String,
    /// Deliveries that succeeded in that minute.
    pub delivered: u32,
    /// Deliveries whose latest attempt in that minute failed (retrying or failed).
    pub failed: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointStats {
    /// The last 60 minutes, oldest first.
    pub minutes: Vec<MinuteCount>,
    /// More than 10,000 deliveries in the hour: the oldest are not counted.
    pub truncated: bool,
}

/// Delivered and failed deliveries per minute over the last hour.
#[utoipa::path(get, path = "/v1/endpoints/{id}/stats", tag = "endpoints",
    params(("id" = String, Path), TenantParam),
    responses((status = 200, description = "OK", body = EndpointStats), Problems))]
pub async fn endpoint_stats(
    State(state): State<AppState>,
    scope: Scope,
    Path(id): Path<String>,
) -> Result<axum::Json<EndpointStats>, GatewayError> {
    let endpoint_id = resource_id("endpoint", &id)?.to_owned();
    // An unknown or foreign endpoint is 404, not an empty chart.
    let reference = v1::EndpointRef { tenant: scope.tenant.clone(), id: endpoint_id.clone() };
    state.upstream.registry().get_endpoint(reference).await?;
    let first_minute = (time_fmt::now_millis() / MINUTE_MS - (MINUTES as i64 - 1)) * MINUTE_MS;
    let mut counts = [(0u32, 0u32); MINUTES];
    let request = v1::ListDeliveriesRequest {
        tenant: scope.tenant.clone(),
        endpoint_id: endpoint_id.clone(),
        // A delivery settled in the hour may have been created before it,
        // when it retried: an hour more of creation covers the schedule's start.
        after: herald_proto::convert::timestamp(first_minute - 60 * MINUTE_MS),
        ..Default::default()
    };
    let complete = each_delivery_page(&state, request, MAX_PAGES, |page| {
        for d in &page {
            let at = d.updated_at.as_ref().map_or(0, herald_proto::convert::millis);
            let Ok(slot) = usize::try_from((at - first_minute).div_euclid(MINUTE_MS)) else { continue };
            let Some(count) = counts.get_mut(slot) else { continue };
            match v1::DeliveryStatus::try_from(d.status) {
                Ok(v1::DeliveryStatus::Delivered) => count.0 += 1,
                Ok(v1::DeliveryStatus::Retrying | v1::DeliveryStatus::Failed) => count.1 += 1,
                _ => {}
            }
        }
    })
    .await?;
    let minutes = counts
        .iter()
        .enumerate()
        .map(|(i, (delivered, failed))| MinuteCount {
            minute: time_fmt::rfc3339(time_fmt::from_millis(first_minute + i as i64 * MINUTE_MS)),
            delivered: *delivered,
            failed: *failed,
        })
        .collect();
    Ok(axum::Json(EndpointStats { minutes, truncated: !complete }))
}
