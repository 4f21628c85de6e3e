//! `herald.v1.Dispatch` over gRPC: deliveries, manual retries, recovery,
//! test sends and endpoint health.
//!
//! Each call takes its message apart, checks it, calls [`Records`] (or sends
//! the test) and converts the answer; errors become `tonic::Status` only in
//! [`crate::status`]. Tenant isolation: a delivery or endpoint of another
//! tenant is answered `NOT_FOUND`, exactly like a missing one.

use std::sync::Arc;

use herald_common::ids;
use herald_common::model::EndpointRecord;
use herald_proto::convert::{millis, timestamp};
use herald_proto::v1::dispatch_server::Dispatch;
use herald_proto::v1::{
    self, DeliveryRef, EndpointHealthRequest, ListDeliveriesRequest, ListDeliveriesResponse, PageInfo, PageRequest,
    RecoverEndpointRequest, RecoverEndpointResponse, TestEndpointRequest, TestEndpointResponse,
};
use serde_json::Value;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::Shared;
use crate::actor::Actors;
use crate::error::DispatchError;
use crate::lifecycle::health_epoch;
use crate::records::{AttemptRecord, DeliveryRecord, DeliveryStatus, ListFilter, Waiting};
use crate::send::attempt::PreparedEndpoint;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
/// Longest id accepted in a request (ids are checked before they become keys).
const MAX_ID_LEN: usize = 128;

type Answer<T> = Result<Response<T>, Status>;

#[derive(Clone)]
pub struct DispatchService {
    shared: Arc<Shared>,
    actors: Arc<Actors>,
}

impl DispatchService {
    pub fn new(shared: Arc<Shared>, actors: Arc<Actors>) -> Self {
        DispatchService { shared, actors }
    }

    /// The endpoint record, if it exists and belongs to `tenant`.
    async fn endpoint(&self, tenant: &str, id: &str) -> Result<EndpointRecord, DispatchError> {
        let not_found = || DispatchError::NotFound(format!("endpoint {id}"));
        let raw = self.shared.records.endpoint_raw(id).await?.ok_or_else(not_found)?;
        let record: EndpointRecord = serde_json::from_slice(&raw)?;
        if record.tenant != tenant {
            return Err(not_found());
        }
        Ok(record)
    }

    /// Whether `id` is an endpoint of another tenant.
    async fn foreign_endpoint(&self, tenant: &str, id: &str) -> Result<bool, DispatchError> {
        let Some(raw) = self.shared.records.endpoint_raw(id).await? else { return Ok(false) };
        let record: EndpointRecord = serde_json::from_slice(&raw)?;
        Ok(record.tenant != tenant)
    }

    async fn delivery(&self, tenant: &str, id: &str) -> Result<DeliveryRecord, DispatchError> {
        self.shared.records.get(tenant, id).await?.ok_or_else(|| DispatchError::NotFound(format!("delivery {id}")))
    }
}

fn invalid(field: &str, message: &str) -> DispatchError {
    DispatchError::Invalid { field: field.to_owned(), message: message.to_owned() }
}

fn required_id<'a>(field: &str, value: &'a str) -> Result<&'a str, DispatchError> {
    if value.is_empty() {
        return Err(invalid(field, "is required"));
    }
    optional_id(field, value)?;
    Ok(value)
}

fn optional_id<'a>(field: &str, value: &'a str) -> Result<Option<&'a str>, DispatchError> {
    if value.is_empty() {
        return Ok(None);
    }
    if !ids::is_valid_external_id(value, MAX_ID_LEN) {
        return Err(invalid(field, "is not a valid id"));
    }
    Ok(Some(value))
}

/// Limit and cursor of a list call.
pub fn page(request: Option<&PageRequest>) -> Result<(usize, Option<String>), DispatchError> {
    let (limit, cursor) = request.map(|p| (p.limit as usize, p.cursor.as_str())).unwrap_or((0, ""));
    if limit > MAX_LIMIT {
        return Err(invalid("page.limit", &format!("must be between 1 and {MAX_LIMIT}")));
    }
    let cursor = optional_id("page.cursor", cursor).map_err(|_| invalid("page.cursor", "is not a valid cursor"))?;
    Ok((if limit == 0 { DEFAULT_LIMIT } else { limit }, cursor.map(str::to_owned)))
}

fn status_to_wire(status: DeliveryStatus) -> v1::DeliveryStatus {
    match status {
        DeliveryStatus::Pending => v1::DeliveryStatus::Pending,
        DeliveryStatus::Delivered => v1::DeliveryStatus::Delivered,
        DeliveryStatus::Retrying => v1::DeliveryStatus::Retrying,
        DeliveryStatus::Failed => v1::DeliveryStatus::Failed,
    }
}

fn status_from_wire(raw: i32) -> Result<Option<DeliveryStatus>, DispatchError> {
    match v1::DeliveryStatus::try_from(raw) {
        Ok(v1::DeliveryStatus::Unspecified) => Ok(None),
        Ok(v1::DeliveryStatus::Pending) => Ok(Some(DeliveryStatus::Pending)),
        Ok(v1::DeliveryStatus::Delivered) => Ok(Some(DeliveryStatus::Delivered)),
        Ok(v1::DeliveryStatus::Retrying) => Ok(Some(DeliveryStatus::Retrying)),
        Ok(v1::DeliveryStatus::Failed) => Ok(Some(DeliveryStatus::Failed)),
        Err(_) => Err(invalid("status", "is not a delivery status")),
    }
}

fn attempt_to_wire(a: &AttemptRecord) -> v1::Attempt {
    let AttemptRecord { n, at, status_code, latency_ms, error, response_body, sent } = a;
    v1::Attempt {
        n: *n,
        at: timestamp(*at),
        status_code: status_code.map_or(0, u32::from),
        latency_ms: *latency_ms,
        error: error.clone().unwrap_or_default(),
        response_body: response_body.clone(),
        request: sent.as_ref().and_then(|s| {
            let (url, headers) = s.url_and_headers()?;
            Some(v1::SentRequest {
                url: url.to_owned(),
                body_bytes: s.body_bytes,
                headers: headers
                    .into_iter()
                    .map(|(name, value)| v1::Header { name: name.to_owned(), value: value.to_owned() })
                    .collect(),
            })
        }),
    }
}

pub fn delivery_to_wire(d: &DeliveryRecord) -> v1::Delivery {
    let DeliveryRecord {
        id,
        tenant,
        endpoint_id,
        event_id,
        event_type,
        status,
        attempt_count,
        created_at,
        updated_at,
        next_attempt_at,
        waiting: _,
        traceparent: _,
        generation: _,
        attempts,
    } = d;
    v1::Delivery {
        id: id.clone(),
        tenant: tenant.clone(),
        endpoint_id: endpoint_id.clone(),
        event_id: event_id.clone(),
        event_type: event_type.clone(),
        status: status_to_wire(*status) as i32,
        attempt_count: *attempt_count,
        created_at: timestamp(*created_at),
        updated_at: timestamp(*updated_at),
        next_attempt_at: next_attempt_at.and_then(timestamp),
        attempts: attempts.iter().map(attempt_to_wire).collect(),
    }
}

// `Status` is the error type of every tonic call.
#[allow(clippy::result_large_err)]
fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl Dispatch for DispatchService {
    async fn list_deliveries(&self, request: Request<ListDeliveriesRequest>) -> Answer<ListDeliveriesResponse> {
        let ListDeliveriesRequest {
            tenant,
            endpoint_id,
            event_id,
            status,
            page: page_request,
            event_type,
            after,
            before,
        } = request.into_inner();
        let tenant = required_id("tenant", &tenant)?;
        let filter = ListFilter {
            tenant: tenant.to_owned(),
            endpoint_id: optional_id("endpoint_id", &endpoint_id)?.map(str::to_owned),
            event_id: optional_id("event_id", &event_id)?.map(str::to_owned),
            event_type: Some(event_type).filter(|t| !t.is_empty()),
            status: status_from_wire(status)?,
            created_from: after.as_ref().map(|t| millis(t).saturating_add(1)),
            created_before: before.as_ref().map(millis),
        };
        let (limit, cursor) = page(page_request.as_ref())?;
        if let Some(endpoint_id) = &filter.endpoint_id
            && self.foreign_endpoint(tenant, endpoint_id).await?
        {
            // Nothing about another tenant's endpoint, not even a cursor.
            return ok(ListDeliveriesResponse { deliveries: Vec::new(), page: Some(PageInfo::default()) });
        }
        let (deliveries, next) = self.shared.records.list(&filter, cursor.as_deref(), limit).await?;
        ok(ListDeliveriesResponse {
            deliveries: deliveries.iter().map(delivery_to_wire).collect(),
            page: Some(PageInfo { next_cursor: next.unwrap_or_default() }),
        })
    }

    async fn get_delivery(&self, request: Request<DeliveryRef>) -> Answer<v1::Delivery> {
        let DeliveryRef { tenant, id } = request.into_inner();
        let (tenant, id) = (required_id("tenant", &tenant)?, required_id("id", &id)?);
        ok(delivery_to_wire(&self.delivery(tenant, id).await?))
    }

    async fn retry_delivery(&self, request: Request<DeliveryRef>) -> Answer<v1::Delivery> {
        let DeliveryRef { tenant, id } = request.into_inner();
        let (tenant, id) = (required_id("tenant", &tenant)?, required_id("id", &id)?);
        let record = self.delivery(tenant, id).await?;
        // A pending delivery, or a retrying one its `fifo` actor holds, has
        // its next attempt queued already: another would send it twice.
        let queued = record.status == DeliveryStatus::Pending
            || (record.status == DeliveryStatus::Retrying && record.waiting == Waiting::Actor);
        let requeued = if queued {
            Vec::new()
        } else {
            self.shared.records.requeue(std::slice::from_ref(&record), self.shared.config.partitions).await?
        };
        if requeued.is_empty() {
            return Err(DispatchError::Conflict(format!("delivery {id} has its next attempt queued already")).into());
        }
        tracing::info!(delivery = id, "delivery queued again by request");
        ok(delivery_to_wire(&self.delivery(tenant, id).await?))
    }

    async fn recover_endpoint(&self, request: Request<RecoverEndpointRequest>) -> Answer<RecoverEndpointResponse> {
        let RecoverEndpointRequest { tenant, endpoint_id, since } = request.into_inner();
        let tenant = required_id("tenant", &tenant)?;
        let endpoint_id = required_id("endpoint_id", &endpoint_id)?;
        let endpoint = self.endpoint(tenant, endpoint_id).await?;
        let since = since.as_ref().map_or(0, millis);
        let records = &self.shared.records;
        let mut recovered = 0u32;
        let mut cursor: Option<String> = None;
        loop {
            let (chunk, next) =
                records.endpoint_deliveries_since(tenant, endpoint_id, since, cursor.as_deref()).await?;
            let failed: Vec<DeliveryRecord> = chunk
                .into_iter()
                .filter(|d| d.tenant == tenant && d.endpoint_id == endpoint_id && d.status == DeliveryStatus::Failed)
                // An earlier endpoint under this id failed these; they are not this one's to send.
                .filter(|d| d.generation.as_ref().is_none_or(|g| *g == endpoint.generation))
                .collect();
            let queued = records.requeue(&failed, self.shared.config.partitions).await?;
            recovered = recovered.saturating_add(queued.len() as u32);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::info!(endpoint = endpoint_id, recovered, "endpoint recovered");
        ok(RecoverEndpointResponse { recovered })
    }

    async fn test_endpoint(&self, request: Request<TestEndpointRequest>) -> Answer<TestEndpointResponse> {
        let TestEndpointRequest { tenant, endpoint_id, event_type, data } = request.into_inner();
        let tenant = required_id("tenant", &tenant)?;
        let endpoint_id = required_id("endpoint_id", &endpoint_id)?;
        if event_type.is_empty() {
            return Err(invalid("event_type", "is required").into());
        }
        let data: Value = if data.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&data).map_err(|_| invalid("data", "is not valid JSON"))?
        };
        let record = self.endpoint(tenant, endpoint_id).await?;
        let config = &self.shared.config;
        let prepared = PreparedEndpoint::prepare(&record, &config.secrets, &config.url_policy, &config.webhook_origin)?;
        // The endpoint's actor, when it runs here, lends its token: a test
        // send then costs no token request of its own.
        let tokens = self.actors.token_cache(endpoint_id).await.unwrap_or_default();
        let span = tracing::info_span!("webhook.test", otel.kind = "client", endpoint = endpoint_id);
        let outcome = async {
            let traceparent = crate::delivery::webhook_traceparent(herald_common::telemetry::current_traceparent());
            prepared.test_send(&self.shared.client, &tokens, &event_type, data, Some(&traceparent)).await
        }
        .instrument(span)
        .await;
        ok(TestEndpointResponse {
            delivered: outcome.delivered(),
            status_code: outcome.status_code.map_or(0, u32::from),
            latency_ms: outcome.latency_ms(),
            error: outcome.error.unwrap_or_default(),
        })
    }

    async fn get_endpoint_health(&self, request: Request<EndpointHealthRequest>) -> Answer<v1::EndpointHealth> {
        let EndpointHealthRequest { tenant, endpoint_id } = request.into_inner();
        let tenant = required_id("tenant", &tenant)?;
        let endpoint_id = required_id("endpoint_id", &endpoint_id)?;
        let endpoint = self.endpoint(tenant, endpoint_id).await?;
        let health = self.shared.records.health(&endpoint).await?.for_epoch(&health_epoch(&endpoint));
        ok(v1::EndpointHealth {
            endpoint_id: endpoint_id.to_owned(),
            circuit: health.circuit_at(herald_common::time_fmt::now_millis()).to_owned(),
            in_flight: health.in_flight,
            consecutive_failures: health.consecutive_failures,
            last_success_at: health.last_success_at.and_then(timestamp),
            failing_since: health.failing_since.and_then(timestamp),
            token_error: health.token_error.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_default_and_refuse_out_of_range() {
        assert_eq!(page(None).unwrap(), (DEFAULT_LIMIT, None));
        let request = PageRequest { limit: 1000, cursor: "dlv_01".into() };
        assert_eq!(page(Some(&request)).unwrap(), (1000, Some("dlv_01".into())));
        assert!(page(Some(&PageRequest { limit: 1001, cursor: String::new() })).is_err());
        assert!(page(Some(&PageRequest { limit: 1, cursor: "(x".into() })).is_err());
    }

    #[test]
    fn statuses_cross_the_wire() {
        assert_eq!(status_from_wire(0).unwrap(), None);
        assert_eq!(status_from_wire(4).unwrap(), Some(DeliveryStatus::Failed));
        assert!(status_from_wire(99).is_err());
        for s in [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Retrying, DeliveryStatus::Failed]
        {
            assert_eq!(status_from_wire(status_to_wire(s) as i32).unwrap(), Some(s));
        }
    }

    #[test]
    fn ids_are_checked_before_they_become_keys() {
        assert!(required_id("id", "").is_err());
        assert!(required_id("id", "dlv:1").is_err());
        assert_eq!(required_id("id", "dlv_1").unwrap(), "dlv_1");
        assert_eq!(optional_id("id", "").unwrap(), None);
    }
}
