//! `herald.v1.Registry` over gRPC: each call takes its message apart,
//! hands the fields to the domain ([`Registry`]) and converts the answer.
//! Validation lives in the domain; errors become `tonic::Status` only
//! through `From<RegistryError>` in [`crate::error`].

use std::sync::Arc;

use herald_common::model::{ApiKeyRecord, EndpointStatus, StoredEvent};
use herald_common::time_fmt;
use herald_proto::convert::{millis, timestamp};
use herald_proto::v1::registry_server::Registry as RegistryRpc;
use herald_proto::v1::{
    self, AuthenticateApiKeyRequest, CreateApiKeyRequest, CreateApiKeyResponse, CreateEndpointRequest,
    CreateEndpointResponse, CreatePortalSessionRequest, CreateSubscriptionRequest, CreateTenantRequest,
    DeleteEventTypeRequest, DeleteResponse, DeleteTenantRequest, DisableEndpointRequest, EndpointRef, EndpointSecret,
    GetEventTypeRequest, GetTenantRequest, ListApiKeysRequest, ListApiKeysResponse, ListEndpointsRequest,
    ListEndpointsResponse, ListEventTypesRequest, ListEventTypesResponse, ListSubscriptionsRequest,
    ListSubscriptionsResponse, ListTenantsRequest, ListTenantsResponse, PageInfo, PortalSession, PublishBatchRequest,
    PublishBatchResponse, PublishRequest, PublishResponse, RevokeApiKeyRequest, RevokePortalSessionRequest,
    SubscriptionRef, UpdateEndpointRequest, UpdateSubscriptionRequest, UpdateTenantRequest, get_event_type_request,
};
use tonic::{Request, Response, Status};

use crate::Registry;
use crate::error::RegistryError;
use crate::event_log::{EventQuery, LoggedEvent};
use crate::event_types::EventTypeInput;
use crate::publish::Published;
use crate::validate;

type Answer<T> = Result<Response<T>, Status>;

/// The tonic service; cheap to clone.
#[derive(Clone)]
pub struct RegistryService {
    registry: Arc<Registry>,
}

impl RegistryService {
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryService { registry }
    }

    async fn endpoint_status(
        &self,
        tenant: String,
        id: String,
        status: EndpointStatus,
        reason: Option<String>,
    ) -> Answer<v1::Endpoint> {
        let record = self.registry.set_endpoint_status(&tenant, &id, status, reason).await?;
        ok(self.registry.endpoint_answer(&record)?)
    }
}

fn page_info(next: Option<String>) -> Option<PageInfo> {
    Some(PageInfo { next_cursor: next.unwrap_or_default() })
}

fn api_key(record: &ApiKeyRecord) -> v1::ApiKey {
    let ApiKeyRecord { id, tenant, name, key_hash: _, created_at, expires_at, read_only } = record;
    v1::ApiKey {
        id: id.clone(),
        tenant: tenant.clone(),
        name: name.clone(),
        created_at: timestamp(*created_at),
        expires_at: expires_at.and_then(timestamp),
        read_only: *read_only,
    }
}

fn logged_event(tenant: &str, logged: LoggedEvent) -> v1::Event {
    let LoggedEvent { event, deliveries, published_ms } = logged;
    let StoredEvent { id, event_type, timestamp: time, resource, data } = event;
    let json = |v: &serde_json::Value| serde_json::to_vec(v).unwrap_or_default();
    v1::Event {
        id,
        tenant: tenant.to_owned(),
        r#type: event_type,
        time: time_fmt::parse_rfc3339(&time).and_then(|t| timestamp(time_fmt::to_millis(t))),
        resource: resource.as_ref().map(json).unwrap_or_default(),
        data: json(&data),
        deliveries,
        published_at: timestamp(published_ms),
    }
}

fn published(p: Published) -> PublishResponse {
    let Published { id, deliveries, duplicate } = p;
    PublishResponse { id, deliveries, duplicate }
}

/// The caller's W3C `traceparent`, when it sent a well-formed one.
fn traceparent<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("traceparent")?.to_str().ok()?;
    let well_formed = value.len() == 55
        && value.split('-').map(str::len).eq([2, 32, 16, 2])
        && value.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
    well_formed.then(|| value.to_ascii_lowercase())
}

// `Status` is the error type of every tonic call; boxing it is not an option here.
#[allow(clippy::result_large_err)]
fn ok<T>(value: T) -> Answer<T> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl RegistryRpc for RegistryService {
    async fn create_tenant(&self, request: Request<CreateTenantRequest>) -> Answer<v1::Tenant> {
        let CreateTenantRequest { id, name } = request.into_inner();
        ok((&self.registry.create_tenant(id, name).await?).into())
    }

    async fn get_tenant(&self, request: Request<GetTenantRequest>) -> Answer<v1::Tenant> {
        let GetTenantRequest { id } = request.into_inner();
        ok((&self.registry.tenant(&id).await?).into())
    }

    async fn update_tenant(&self, request: Request<UpdateTenantRequest>) -> Answer<v1::Tenant> {
        let UpdateTenantRequest { id, name, metadata, replace_metadata } = request.into_inner();
        ok((&self.registry.update_tenant(&id, name, metadata, replace_metadata).await?).into())
    }

    async fn list_tenants(&self, request: Request<ListTenantsRequest>) -> Answer<ListTenantsResponse> {
        let ListTenantsRequest { page } = request.into_inner();
        let page = validate::page(page.as_ref())?;
        let (tenants, next) = self.registry.list_tenants(&page).await?;
        ok(ListTenantsResponse { tenants: tenants.iter().map(Into::into).collect(), page: page_info(next) })
    }

    async fn delete_tenant(&self, request: Request<DeleteTenantRequest>) -> Answer<DeleteResponse> {
        let DeleteTenantRequest { id } = request.into_inner();
        self.registry.delete_tenant(&id).await?;
        ok(DeleteResponse {})
    }

    async fn create_api_key(&self, request: Request<CreateApiKeyRequest>) -> Answer<CreateApiKeyResponse> {
        let CreateApiKeyRequest { tenant, name } = request.into_inner();
        let (record, secret) = self.registry.create_api_key(&tenant, name).await?;
        ok(CreateApiKeyResponse { key: Some(api_key(&record)), secret })
    }

    async fn list_api_keys(&self, request: Request<ListApiKeysRequest>) -> Answer<ListApiKeysResponse> {
        let ListApiKeysRequest { tenant, page } = request.into_inner();
        let page = validate::page(page.as_ref())?;
        let (keys, next) = self.registry.list_api_keys(&tenant, &page).await?;
        ok(ListApiKeysResponse { keys: keys.iter().map(api_key).collect(), page: page_info(next) })
    }

    async fn revoke_api_key(&self, request: Request<RevokeApiKeyRequest>) -> Answer<DeleteResponse> {
        let RevokeApiKeyRequest { tenant, key_id } = request.into_inner();
        self.registry.revoke_api_key(&tenant, &key_id).await?;
        ok(DeleteResponse {})
    }

    async fn create_portal_session(&self, request: Request<CreatePortalSessionRequest>) -> Answer<PortalSession> {
        let CreatePortalSessionRequest { tenant, ttl_seconds, read_only } = request.into_inner();
        let (record, token) = self.registry.create_portal_session(&tenant, ttl_seconds, read_only).await?;
        ok(PortalSession {
            id: record.id,
            tenant: record.tenant,
            token,
            expires_at: record.expires_at.and_then(timestamp),
            read_only: record.read_only,
        })
    }

    async fn revoke_portal_session(&self, request: Request<RevokePortalSessionRequest>) -> Answer<DeleteResponse> {
        let RevokePortalSessionRequest { tenant, id } = request.into_inner();
        self.registry.revoke_portal_session(&tenant, &id).await?;
        ok(DeleteResponse {})
    }

    async fn authenticate_api_key(&self, request: Request<AuthenticateApiKeyRequest>) -> Answer<v1::ApiKey> {
        let AuthenticateApiKeyRequest { secret } = request.into_inner();
        ok(api_key(&self.registry.authenticate_api_key(&secret).await?))
    }

    async fn create_event_type(&self, request: Request<v1::EventType>) -> Answer<v1::EventType> {
        let v1::EventType { name, description, schema, code, created_at: _, updated_at: _ } = request.into_inner();
        let input = EventTypeInput::parse(name, description, &schema, code)?;
        ok((&self.registry.create_event_type(input).await?).into())
    }

    async fn update_event_type(&self, request: Request<v1::EventType>) -> Answer<v1::EventType> {
        let v1::EventType { name, description, schema, code, created_at: _, updated_at: _ } = request.into_inner();
        if !validate::is_event_type_name(&name) {
            return Err(RegistryError::not_found("event type", &name).into());
        }
        let input = EventTypeInput::parse(name, description, &schema, code)?;
        ok((&self.registry.update_event_type(input).await?).into())
    }

    async fn get_event_type(&self, request: Request<GetEventTypeRequest>) -> Answer<v1::EventType> {
        let GetEventTypeRequest { key } = request.into_inner();
        let record = match key {
            Some(get_event_type_request::Key::Name(name)) => self.registry.event_type_by_name(&name).await?,
            Some(get_event_type_request::Key::Code(code)) => self.registry.event_type_by_code(code).await?,
            None => return Err(RegistryError::invalid("name", "name or code is required").into()),
        };
        ok((&record).into())
    }

    async fn list_event_types(&self, request: Request<ListEventTypesRequest>) -> Answer<ListEventTypesResponse> {
        let ListEventTypesRequest { page } = request.into_inner();
        let page = validate::page(page.as_ref())?;
        let (types, next) = self.registry.list_event_types(&page).await?;
        ok(ListEventTypesResponse { event_types: types.iter().map(Into::into).collect(), page: page_info(next) })
    }

    async fn delete_event_type(&self, request: Request<DeleteEventTypeRequest>) -> Answer<DeleteResponse> {
        let DeleteEventTypeRequest { name } = request.into_inner();
        self.registry.delete_event_type(&name).await?;
        ok(DeleteResponse {})
    }

    async fn create_endpoint(&self, request: Request<CreateEndpointRequest>) -> Answer<CreateEndpointResponse> {
        let CreateEndpointRequest { tenant, spec, id } = request.into_inner();
        let (record, signing_secret) = self.registry.create_endpoint(&tenant, id, spec).await?;
        ok(CreateEndpointResponse { endpoint: Some(self.registry.endpoint_answer(&record)?), signing_secret })
    }

    async fn get_endpoint(&self, request: Request<EndpointRef>) -> Answer<v1::Endpoint> {
        let EndpointRef { tenant, id } = request.into_inner();
        ok(self.registry.endpoint_answer(&self.registry.endpoint(&tenant, &id).await?)?)
    }

    async fn list_endpoints(&self, request: Request<ListEndpointsRequest>) -> Answer<ListEndpointsResponse> {
        let ListEndpointsRequest { tenant, page } = request.into_inner();
        let page = validate::page(page.as_ref())?;
        let (endpoints, next) = self.registry.list_endpoints(&tenant, &page).await?;
        let endpoints = endpoints.iter().map(|e| self.registry.endpoint_answer(e)).collect::<Result<_, _>>()?;
        ok(ListEndpointsResponse { endpoints, page: page_info(next) })
    }

    async fn update_endpoint(&self, request: Request<UpdateEndpointRequest>) -> Answer<v1::Endpoint> {
        let UpdateEndpointRequest { tenant, id, spec, fields } = request.into_inner();
        ok(self.registry.endpoint_answer(&self.registry.update_endpoint(&tenant, &id, spec, fields).await?)?)
    }

    async fn delete_endpoint(&self, request: Request<EndpointRef>) -> Answer<DeleteResponse> {
        let EndpointRef { tenant, id } = request.into_inner();
        self.registry.delete_endpoint(&tenant, &id).await?;
        ok(DeleteResponse {})
    }

    async fn activate_endpoint(&self, request: Request<EndpointRef>) -> Answer<v1::Endpoint> {
        let EndpointRef { tenant, id } = request.into_inner();
        self.endpoint_status(tenant, id, EndpointStatus::Active, None).await
    }

    async fn deactivate_endpoint(&self, request: Request<EndpointRef>) -> Answer<v1::Endpoint> {
        let EndpointRef { tenant, id } = request.into_inner();
        self.endpoint_status(tenant, id, EndpointStatus::Deactivated, None).await
    }

    async fn disable_endpoint(&self, request: Request<DisableEndpointRequest>) -> Answer<v1::Endpoint> {
        let DisableEndpointRequest { tenant, id, reason } = request.into_inner();
        let record = self.registry.set_endpoint_status(&tenant, &id, EndpointStatus::Disabled, Some(reason)).await?;
        self.registry.announce_disabled(&record).await;
        ok(self.registry.endpoint_answer(&record)?)
    }

    async fn get_endpoint_secret(&self, request: Request<EndpointRef>) -> Answer<EndpointSecret> {
        let EndpointRef { tenant, id } = request.into_inner();
        ok(EndpointSecret { secret: self.registry.endpoint_secret(&tenant, &id).await? })
    }

    async fn rotate_endpoint_secret(&self, request: Request<EndpointRef>) -> Answer<EndpointSecret> {
        let EndpointRef { tenant, id } = request.into_inner();
        ok(EndpointSecret { secret: self.registry.rotate_endpoint_secret(&tenant, &id).await? })
    }

    async fn create_subscription(&self, request: Request<CreateSubscriptionRequest>) -> Answer<v1::Subscription> {
        let CreateSubscriptionRequest { tenant, endpoint_id, event_types, filter, metadata } = request.into_inner();
        let record = self.registry.create_subscription(&tenant, endpoint_id, event_types, &filter, metadata).await?;
        ok((&record).into())
    }

    async fn get_subscription(&self, request: Request<SubscriptionRef>) -> Answer<v1::Subscription> {
        let SubscriptionRef { tenant, id } = request.into_inner();
        ok((&self.registry.subscription(&tenant, &id).await?).into())
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Answer<ListSubscriptionsResponse> {
        let ListSubscriptionsRequest { tenant, page, endpoint_id } = request.into_inner();
        let page = validate::page(page.as_ref())?;
        let (subs, next) = self.registry.list_subscriptions(&tenant, &endpoint_id, &page).await?;
        ok(ListSubscriptionsResponse { subscriptions: subs.iter().map(Into::into).collect(), page: page_info(next) })
    }

    async fn update_subscription(&self, request: Request<UpdateSubscriptionRequest>) -> Answer<v1::Subscription> {
        let UpdateSubscriptionRequest { tenant, id, event_types, filter, fields } = request.into_inner();
        ok((&self.registry.update_subscription(&tenant, &id, event_types, &filter, &fields).await?).into())
    }

    async fn delete_subscription(&self, request: Request<SubscriptionRef>) -> Answer<DeleteResponse> {
        let SubscriptionRef { tenant, id } = request.into_inner();
        self.registry.delete_subscription(&tenant, &id).await?;
        ok(DeleteResponse {})
    }

    async fn list_events(&self, request: Request<v1::ListEventsRequest>) -> Answer<v1::ListEventsResponse> {
        let v1::ListEventsRequest { tenant, r#type, after, before, page } = request.into_inner();
        // The log's cursor is an index entry, not an id: checked by `list_events`.
        let cursor = page.as_ref().map(|p| p.cursor.clone()).filter(|c| !c.is_empty());
        let limit = page.map(|p| v1::PageRequest { limit: p.limit, cursor: String::new() });
        let mut page = validate::page(limit.as_ref())?;
        page.after = cursor;
        let query = EventQuery {
            event_type: &r#type,
            published_after: after.as_ref().map(millis),
            published_before: before.as_ref().map(millis),
        };
        let (events, next) = self.registry.list_events(&tenant, query, &page).await?;
        ok(v1::ListEventsResponse {
            events: events.into_iter().map(|e| logged_event(&tenant, e)).collect(),
            page: page_info(next),
        })
    }

    async fn get_event(&self, request: Request<v1::GetEventRequest>) -> Answer<v1::Event> {
        let v1::GetEventRequest { tenant, id } = request.into_inner();
        let event = self.registry.get_event(&tenant, &id).await?;
        ok(logged_event(&tenant, event))
    }

    async fn replay_endpoint(&self, request: Request<v1::ReplayEndpointRequest>) -> Answer<v1::ReplayEndpointResponse> {
        let v1::ReplayEndpointRequest { tenant, endpoint_id, since, until, delivered_event_ids } = request.into_inner();
        let since = since.as_ref().map(millis).ok_or_else(|| RegistryError::invalid("since", "is required"))?;
        let delivered: std::collections::HashSet<String> = delivered_event_ids.into_iter().collect();
        let until = until.as_ref().map(millis);
        let count = self.registry.replay_endpoint(&tenant, &endpoint_id, since, until, &delivered).await?;
        ok(v1::ReplayEndpointResponse { count })
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Answer<PublishResponse> {
        let traceparent = traceparent(&request);
        ok(published(self.registry.publish(request.into_inner(), traceparent).await?))
    }

    async fn publish_batch(&self, request: Request<PublishBatchRequest>) -> Answer<PublishBatchResponse> {
        let traceparent = traceparent(&request);
        let PublishBatchRequest { events } = request.into_inner();
        let results = self.registry.publish_batch(events, traceparent).await?;
        ok(PublishBatchResponse { results: results.into_iter().map(published).collect() })
    }
}
