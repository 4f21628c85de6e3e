//! The registry over real gRPC: CRUD and its error codes, paging, tenant
//! isolation, publishing (idempotency, schemas, fan-out), secrets at rest,
//! the changes stream, health, reflection and the gRPC token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;

use herald_common::endpoint_secrets as sealing;
use herald_common::model::Job;
use herald_proto::v1::endpoint_auth::{Basic, Kind, OAuth2ClientCredentials};
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    AuthenticateApiKeyRequest, CreateApiKeyRequest, CreateEndpointRequest, CreateSubscriptionRequest,
    CreateTenantRequest, DeleteTenantRequest, DisableEndpointRequest, EndpointAuth, EndpointFormat, EndpointRef,
    EndpointSpec, EndpointStatus, EventType, GetEventTypeRequest, GetTenantRequest, ListEndpointsRequest,
    ListSubscriptionsRequest, ListTenantsRequest, PageRequest, PublishBatchRequest, PublishRequest,
    RevokeApiKeyRequest, SubscriptionRef, UpdateEndpointRequest, UpdateTenantRequest, get_event_type_request,
};
use herald_tests::{Services, Stack};
use redis::AsyncCommands;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt;

type Client = RegistryClient<Channel>;

async fn start() -> (Stack, Client) {
    let stack = Stack::start_services(Services::REGISTRY).await;
    let client = RegistryClient::new(stack.registry_channel().await);
    (stack, client)
}

async fn tenant(client: &mut Client, id: &str) {
    client.create_tenant(CreateTenantRequest { id: id.into(), name: format!("{id} inc") }).await.unwrap();
}

async fn event_type(client: &mut Client, name: &str, schema: Option<serde_json::Value>) {
    client
        .create_event_type(EventType {
            name: name.into(),
            description: format!("{name} happened"),
            schema: schema.map(|s| s.to_string().into_bytes()).unwrap_or_default(),
            ..Default::default()
        })
        .await
        .unwrap();
}

fn spec(url: &str) -> EndpointSpec {
    EndpointSpec { url: url.into(), ..Default::default() }
}

async fn endpoint(client: &mut Client, tenant: &str, url: &str) -> String {
    let created = client
        .create_endpoint(CreateEndpointRequest { tenant: tenant.into(), spec: Some(spec(url)), id: String::new() })
        .await
        .unwrap()
        .into_inner();
    created.endpoint.unwrap().id
}

async fn subscribe(
    client: &mut Client,
    tenant: &str,
    endpoint: &str,
    types: &[&str],
    filter: Option<serde_json::Value>,
) {
    client
        .create_subscription(CreateSubscriptionRequest {
            tenant: tenant.into(),
            endpoint_id: endpoint.into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            filter: filter.map(|f| f.to_string().into_bytes()).unwrap_or_default(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
}

fn event(tenant: &str, id: &str, kind: &str, data: serde_json::Value) -> PublishRequest {
    PublishRequest {
        tenant: tenant.into(),
        id: id.into(),
        r#type: kind.into(),
        resource: Vec::new(),
        data: data.to_string().into_bytes(),
        time: None,
        ..Default::default()
    }
}

/// Every job in every partition stream.
async fn jobs(stack: &Stack) -> Vec<Job> {
    let mut conn = stack.redis().await;
    let mut all = Vec::new();
    for p in 0..stack.config.partitions {
        let reply: redis::streams::StreamRangeReply = conn.xrange_all(stack.keys.partition_stream(p)).await.unwrap();
        for entry in reply.ids {
            let fields: Vec<(String, String)> =
                entry.map.iter().map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap())).collect();
            let job = Job::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
            assert_eq!(herald_common::keys::partition_of(&job.endpoint_id, stack.config.partitions), p);
            all.push(job);
        }
    }
    all
}

fn violations(status: &tonic::Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn tenants_crud_and_codes() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    let again = client.create_tenant(CreateTenantRequest { id: "acme".into(), name: "x".into() }).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let bad = client.create_tenant(CreateTenantRequest { id: "a:b".into(), name: "x".into() }).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), ["id"]);

    let got = client.get_tenant(GetTenantRequest { id: "acme".into() }).await.unwrap().into_inner();
    assert_eq!(got.name, "acme inc");
    assert!(got.created_at.is_some());
    let updated = client
        .update_tenant(UpdateTenantRequest {
            id: "acme".into(),
            name: "Acme".into(),
            metadata: [("contactEmail".to_owned(), "ops@acme.test".to_owned())].into(),
            replace_metadata: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "Acme");
    assert_eq!(updated.metadata["contactEmail"], "ops@acme.test");

    let missing = client.get_tenant(GetTenantRequest { id: "nobody".into() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    client.delete_tenant(DeleteTenantRequest { id: "acme".into() }).await.unwrap();
    let gone = client.get_tenant(GetTenantRequest { id: "acme".into() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let twice = client.delete_tenant(DeleteTenantRequest { id: "acme".into() }).await.unwrap_err();
    assert_eq!(twice.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn paging_neither_loses_nor_repeats() {
    let (stack, mut client) = start().await;
    for i in 0..120 {
        tenant(&mut client, &format!("t{i:03}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_tenants(ListTenantsRequest { page: Some(PageRequest { limit: 50, cursor: cursor.clone() }) })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.tenants.len() <= 50);
        seen.extend(page.tenants.into_iter().map(|t| t.id));
        // A tenant created mid-listing, after the cursor, shows up later; one before it does not repeat.
        if pages == 1 {
            tenant(&mut client, "t999").await;
        }
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 121);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 121, "no repeats");
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);

    let too_big = client
        .list_tenants(ListTenantsRequest { page: Some(PageRequest { limit: 1001, cursor: String::new() }) })
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    let default = client.list_tenants(ListTenantsRequest { page: None }).await.unwrap().into_inner();
    assert_eq!(default.tenants.len(), 50);

    // Endpoints page the same way.
    tenant(&mut client, "pager").await;
    let mut made = HashSet::new();
    for i in 0..7 {
        made.insert(endpoint(&mut client, "pager", &format!("http://127.0.0.1:9/{i}")).await);
    }
    let mut listed = HashSet::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .list_endpoints(ListEndpointsRequest {
                tenant: "pager".into(),
                page: Some(PageRequest { limit: 3, cursor: cursor.clone() }),
            })
            .await
            .unwrap()
            .into_inner();
        for ep in page.endpoints {
            assert!(listed.insert(ep.id), "repeated");
        }
        cursor = page.page.unwrap().next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(listed, made);
    stack.stop().await;
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    let created = client
        .create_api_key(CreateApiKeyRequest { tenant: "acme".into(), name: "ci".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(created.secret.starts_with("hk_"));
    let key = created.key.unwrap();
    assert!(key.id.starts_with("key_"));

    let who = client
        .authenticate_api_key(AuthenticateApiKeyRequest { secret: created.secret.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.tenant, "acme");
    assert_eq!(who.id, key.id);

    // Only the hash is stored.
    let mut conn = stack.redis().await;
    let keys: Vec<String> = conn.keys(format!("{}:*", stack.prefix)).await.unwrap();
    for k in keys {
        if let Ok(Some(value)) = conn.get::<_, Option<String>>(&k).await {
            assert!(!value.contains(&created.secret), "plaintext key stored under {k}");
        }
    }

    for wrong in ["hk_nope", "nope", ""] {
        let err = client.authenticate_api_key(AuthenticateApiKeyRequest { secret: wrong.into() }).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
    }
    let other = client
        .revoke_api_key(RevokeApiKeyRequest { tenant: "other".into(), key_id: key.id.clone() })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    client.revoke_api_key(RevokeApiKeyRequest { tenant: "acme".into(), key_id: key.id.clone() }).await.unwrap();
    let revoked = client.authenticate_api_key(AuthenticateApiKeyRequest { secret: created.secret }).await.unwrap_err();
    assert_eq!(revoked.code(), Code::Unauthenticated);
    let no_tenant =
        client.create_api_key(CreateApiKeyRequest { tenant: "ghost".into(), name: "x".into() }).await.unwrap_err();
    assert_eq!(no_tenant.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn event_types_with_schemas_and_codes() {
    let (stack, mut client) = start().await;
    let bad_schema = client
        .create_event_type(EventType {
            name: "bad".into(),
            schema: br#"{"type":"nonsense"}"#.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_schema.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad_schema), ["schema"]);
    let bad_name = client.create_event_type(EventType { name: "a b".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(violations(&bad_name), ["name"]);

    client
        .create_event_type(EventType { name: "order.created".into(), code: Some(7), ..Default::default() })
        .await
        .unwrap();
    let dup =
        client.create_event_type(EventType { name: "order.created".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists);
    let code_taken = client
        .create_event_type(EventType { name: "order.paid".into(), code: Some(7), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(code_taken.code(), Code::AlreadyExists);

    let by_code = client
        .get_event_type(GetEventTypeRequest { key: Some(get_event_type_request::Key::Code(7)) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_code.name, "order.created");

    // PUT semantics: the code moves, the old one is released.
    let updated = client
        .update_event_type(EventType {
            name: "order.created".into(),
            description: "new".into(),
            code: Some(8),
            schema: br#"{"type":"object"}"#.to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.code, Some(8));
    assert!(updated.updated_at.unwrap().seconds >= updated.created_at.unwrap().seconds);
    let old = client
        .get_event_type(GetEventTypeRequest { key: Some(get_event_type_request::Key::Code(7)) })
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::NotFound);
    client
        .create_event_type(EventType { name: "order.paid".into(), code: Some(7), ..Default::default() })
        .await
        .unwrap();
    let missing = client.update_event_type(EventType { name: "never".into(), ..Default::default() }).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn endpoint_validation_names_fields() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    let mut bad = spec("ftp://example.com/hook");
    bad.headers = [("Content-Type".to_owned(), "x".to_owned()), ("X-Ok".to_owned(), "y".to_owned())].into();
    bad.max_in_flight = Some(0);
    bad.format = EndpointFormat::Template as i32;
    bad.auth = Some(EndpointAuth { kind: Some(Kind::Basic(Basic { username: "u".into(), password: String::new() })) });
    let err = client
        .create_endpoint(CreateEndpointRequest { tenant: "acme".into(), spec: Some(bad), id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: HashSet<String> = violations(&err).into_iter().collect();
    for f in ["url", "headers.Content-Type", "maxInFlight", "template", "auth.password"] {
        assert!(fields.contains(f), "{f} missing from {fields:?}");
    }
    assert!(!fields.contains("headers.X-Ok"));

    let ghost = client
        .create_endpoint(CreateEndpointRequest {
            tenant: "ghost".into(),
            spec: Some(spec("http://127.0.0.1:9/")),
            id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(ghost.code(), Code::NotFound);

    // The URL policy applies when private networks are not allowed.
    let strict = Stack::start_services_with(Services::REGISTRY, |env| {
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
    })
    .await;
    let mut strict_client = RegistryClient::new(strict.registry_channel().await);
    tenant(&mut strict_client, "acme").await;
    for url in ["http://127.0.0.1:9/", "http://169.254.169.254/latest", "http://[::1]/"] {
        let err = strict_client
            .create_endpoint(CreateEndpointRequest { tenant: "acme".into(), spec: Some(spec(url)), id: String::new() })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{url}");
        assert_eq!(violations(&err), ["url"], "{url}");
    }
    strict.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn tenants_cannot_see_each_other() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "alpha").await;
    tenant(&mut client, "beta").await;
    event_type(&mut client, "ping", None).await;
    let ep = endpoint(&mut client, "alpha", "http://127.0.0.1:9/a").await;
    subscribe(&mut client, "alpha", &ep, &["ping"], None).await;
    let sub = client
        .list_subscriptions(ListSubscriptionsRequest { tenant: "alpha".into(), page: None, endpoint_id: ep.clone() })
        .await
        .unwrap()
        .into_inner()
        .subscriptions
        .remove(0);

    let as_beta = EndpointRef { tenant: "beta".into(), id: ep.clone() };
    assert_eq!(client.get_endpoint(as_beta.clone()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(client.get_endpoint_secret(as_beta.clone()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(client.rotate_endpoint_secret(as_beta.clone()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(client.deactivate_endpoint(as_beta.clone()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(client.delete_endpoint(as_beta.clone()).await.unwrap_err().code(), Code::NotFound);
    let update = client
        .update_endpoint(UpdateEndpointRequest {
            tenant: "beta".into(),
            id: ep.clone(),
            spec: Some(spec("http://127.0.0.1:9/evil")),
            fields: vec!["url".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::NotFound);
    let sub_ref = SubscriptionRef { tenant: "beta".into(), id: sub.id.clone() };
    assert_eq!(client.get_subscription(sub_ref.clone()).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(client.delete_subscription(sub_ref).await.unwrap_err().code(), Code::NotFound);
    let listed =
        client.list_endpoints(ListEndpointsRequest { tenant: "beta".into(), page: None }).await.unwrap().into_inner();
    assert!(listed.endpoints.is_empty());
    // Subscribing beta to alpha's endpoint is refused as an unknown endpoint.
    let cross = client
        .create_subscription(CreateSubscriptionRequest {
            tenant: "beta".into(),
            endpoint_id: ep.clone(),
            event_types: vec!["ping".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(cross.code(), Code::InvalidArgument);
    assert_eq!(violations(&cross), ["endpointId"]);
    // alpha still has everything.
    client.get_endpoint(EndpointRef { tenant: "alpha".into(), id: ep }).await.unwrap();
    stack.stop().await;
}

#[tokio::test]
async fn subscriptions_validate_types_and_follow_their_endpoint() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    event_type(&mut client, "order.created", None).await;
    let ep = endpoint(&mut client, "acme", "http://127.0.0.1:9/").await;
    let unknown = client
        .create_subscription(CreateSubscriptionRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            event_types: vec!["order.created".into(), "nope".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert_eq!(violations(&unknown), ["eventTypes"]);
    let empty = client
        .create_subscription(CreateSubscriptionRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&empty), ["eventTypes"]);
    let mixed = client
        .create_subscription(CreateSubscriptionRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            event_types: vec!["*".into(), "order.created".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&mixed), ["eventTypes"]);
    let no_endpoint = client
        .create_subscription(CreateSubscriptionRequest {
            tenant: "acme".into(),
            endpoint_id: "ep_missing".into(),
            event_types: vec!["*".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violations(&no_endpoint), ["endpointId"]);

    subscribe(&mut client, "acme", &ep, &["order.created"], Some(serde_json::json!({"data.a": 1}))).await;
    subscribe(&mut client, "acme", &ep, &["*"], None).await;
    let listed = client
        .list_subscriptions(ListSubscriptionsRequest { tenant: "acme".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.subscriptions.len(), 2);
    let with_filter = listed.subscriptions.iter().find(|s| !s.filter.is_empty()).unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&with_filter.filter).unwrap()["data.a"], 1);

    client.delete_endpoint(EndpointRef { tenant: "acme".into(), id: ep.clone() }).await.unwrap();
    let after = client
        .list_subscriptions(ListSubscriptionsRequest { tenant: "acme".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert!(after.subscriptions.is_empty(), "deleting an endpoint deletes its subscriptions");
    let sub = client
        .get_subscription(SubscriptionRef { tenant: "acme".into(), id: listed.subscriptions[0].id.clone() })
        .await
        .unwrap_err();
    assert_eq!(sub.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn publish_fans_out_to_matching_active_endpoints() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    tenant(&mut client, "other").await;
    event_type(&mut client, "order.created", None).await;
    event_type(&mut client, "order.paid", None).await;
    let exact = endpoint(&mut client, "acme", "http://127.0.0.1:9/exact").await;
    let wildcard = endpoint(&mut client, "acme", "http://127.0.0.1:9/wild").await;
    let filtered_in = endpoint(&mut client, "acme", "http://127.0.0.1:9/in").await;
    let filtered_out = endpoint(&mut client, "acme", "http://127.0.0.1:9/out").await;
    let paid_only = endpoint(&mut client, "acme", "http://127.0.0.1:9/paid").await;
    let inactive = endpoint(&mut client, "acme", "http://127.0.0.1:9/off").await;
    let foreign = endpoint(&mut client, "other", "http://127.0.0.1:9/foreign").await;
    subscribe(&mut client, "acme", &exact, &["order.created"], None).await;
    // A second subscription to the same endpoint still means one job.
    subscribe(&mut client, "acme", &exact, &["order.created", "order.paid"], None).await;
    subscribe(&mut client, "acme", &wildcard, &["*"], None).await;
    subscribe(&mut client, "acme", &filtered_in, &["order.created"], Some(serde_json::json!({"resource.org": "tfo"})))
        .await;
    subscribe(&mut client, "acme", &filtered_out, &["order.created"], Some(serde_json::json!({"resource.org": "x"})))
        .await;
    subscribe(&mut client, "acme", &paid_only, &["order.paid"], None).await;
    subscribe(&mut client, "acme", &inactive, &["*"], None).await;
    subscribe(&mut client, "other", &foreign, &["*"], None).await;
    client.deactivate_endpoint(EndpointRef { tenant: "acme".into(), id: inactive.clone() }).await.unwrap();

    let mut request = event("acme", "", "order.created", serde_json::json!({"orderId": "o1"}));
    request.resource = br#"{"org":"tfo"}"#.to_vec();
    let mut request = tonic::Request::new(request);
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    request.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    let answer = client.publish(request).await.unwrap().into_inner();
    assert!(answer.id.starts_with("evt_"));
    assert_eq!(answer.deliveries, 3);
    assert!(!answer.duplicate);

    let jobs = jobs(&stack).await;
    let reached: HashSet<&str> = jobs.iter().map(|j| j.endpoint_id.as_str()).collect();
    assert_eq!(reached, [exact.as_str(), wildcard.as_str(), filtered_in.as_str()].into_iter().collect());
    let deliveries: HashSet<&str> = jobs.iter().map(|j| j.delivery_id.as_str()).collect();
    assert_eq!(deliveries.len(), 3);
    for job in &jobs {
        assert_eq!(job.event_id, answer.id);
        assert_eq!(job.tenant, "acme");
        assert_eq!(job.attempt, 1);
        assert!(job.delivery_id.starts_with("dlv_"));
        let traceparent = job.traceparent.as_deref().unwrap();
        assert_eq!(traceparent.split('-').nth(1), Some(trace_id), "the publish's trace continues: {traceparent}");
    }

    // The payload is stored once, as the `json` body, after the header
    // that counts its deliveries.
    let mut conn = stack.redis().await;
    let stored: Vec<u8> = conn.get(stack.keys.event("acme", &answer.id)).await.unwrap();
    let header = herald_common::stored_event::EventHeader::read(&stored);
    assert_eq!(header.map(|h| h.deliveries), Some(3));
    assert!(!String::from_utf8_lossy(&stored).contains(&answer.id), "the key holds the id");
    let body = herald_common::stored_event::json_body(&answer.id, &stored).unwrap();
    let stored: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stored["id"], answer.id);
    assert_eq!(stored["type"], "order.created");
    assert_eq!(stored["data"]["orderId"], "o1");
    assert_eq!(stored["resource"]["org"], "tfo");
    assert!(stored["timestamp"].as_str().unwrap().ends_with('Z'));
    let ttl: i64 = conn.pttl(stack.keys.event("acme", &answer.id)).await.unwrap();
    assert!(ttl > 0);

    // Routing follows changes at once: reactivating adds the endpoint.
    client.activate_endpoint(EndpointRef { tenant: "acme".into(), id: inactive.clone() }).await.unwrap();
    let again = client.publish(event("acme", "", "order.created", serde_json::json!({}))).await.unwrap().into_inner();
    assert_eq!(again.deliveries, 3, "exact, wildcard, inactive (filters exclude the others without a resource)");
    let paid = client.publish(event("acme", "", "order.paid", serde_json::json!({}))).await.unwrap().into_inner();
    assert_eq!(paid.deliveries, 4, "exact, wildcard, paid_only, inactive");
    stack.stop().await;
}

#[tokio::test]
async fn publishing_an_id_twice_enqueues_once() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    event_type(&mut client, "ping", None).await;
    for i in 0..3 {
        let ep = endpoint(&mut client, "acme", &format!("http://127.0.0.1:9/{i}")).await;
        subscribe(&mut client, "acme", &ep, &["ping"], None).await;
    }
    let first = client.publish(event("acme", "order-42", "ping", serde_json::json!({"n": 1}))).await.unwrap();
    let first = first.into_inner();
    assert_eq!((first.id.as_str(), first.deliveries, first.duplicate), ("order-42", 3, false));
    let second = client.publish(event("acme", "order-42", "ping", serde_json::json!({"n": 2}))).await.unwrap();
    let second = second.into_inner();
    assert_eq!((second.id.as_str(), second.deliveries, second.duplicate), ("order-42", 3, true));
    assert_eq!(jobs(&stack).await.len(), 3);

    // Within one batch too; and the same id in another tenant is another event.
    tenant(&mut client, "other").await;
    let batch = client
        .publish_batch(PublishBatchRequest {
            events: vec![
                event("acme", "b-1", "ping", serde_json::json!({})),
                event("acme", "b-1", "ping", serde_json::json!({})),
                event("other", "order-42", "ping", serde_json::json!({})),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let answers: Vec<(u32, bool)> = batch.results.iter().map(|r| (r.deliveries, r.duplicate)).collect();
    assert_eq!(answers, [(3, false), (3, true), (0, false)]);
    assert_eq!(jobs(&stack).await.len(), 6);
    stack.stop().await;
}

#[tokio::test]
async fn schemas_and_batches_reject_with_field_paths() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    let schema = serde_json::json!({
        "type": "object",
        "required": ["orderId"],
        "properties": {"orderId": {"type": "string"}, "total": {"type": "number"}}
    });
    event_type(&mut client, "order.created", Some(schema)).await;
    let ep = endpoint(&mut client, "acme", "http://127.0.0.1:9/").await;
    subscribe(&mut client, "acme", &ep, &["*"], None).await;

    let err = client.publish(event("acme", "", "order.created", serde_json::json!({"total": "x"}))).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: HashSet<String> = violations(&err).into_iter().collect();
    assert!(fields.contains("data.orderId") && fields.contains("data.total"), "{fields:?}");

    let unknown_type = client.publish(event("acme", "", "nope", serde_json::json!({}))).await.unwrap_err();
    assert_eq!(violations(&unknown_type), ["type"]);
    let unknown_tenant = client.publish(event("ghost", "", "order.created", serde_json::json!({}))).await.unwrap_err();
    assert_eq!(unknown_tenant.code(), Code::InvalidArgument);
    assert_eq!(violations(&unknown_tenant), ["tenant"]);
    let mut not_object = event("acme", "", "order.created", serde_json::json!({}));
    not_object.data = b"[1,2]".to_vec();
    assert_eq!(violations(&client.publish(not_object).await.unwrap_err()), ["data"]);
    let mut too_big = event("acme", "", "order.created", serde_json::json!({}));
    too_big.data = format!(r#"{{"orderId":"{}"}}"#, "x".repeat(stack.config.max_event_bytes)).into_bytes();
    assert_eq!(violations(&client.publish(too_big).await.unwrap_err()), ["data"]);

    // A batch is all or nothing, and errors name the event's index.
    let batch = client
        .publish_batch(PublishBatchRequest {
            events: vec![
                event("acme", "", "order.created", serde_json::json!({"orderId": "a"})),
                event("acme", "", "order.created", serde_json::json!({"orderId": "b"})),
                event("acme", "", "order.created", serde_json::json!({"orderId": "c"})),
                event("acme", "", "order.created", serde_json::json!({"orderId": 4})),
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(batch.code(), Code::InvalidArgument);
    assert_eq!(violations(&batch), ["events[3].data.orderId"]);
    assert!(jobs(&stack).await.is_empty());

    let ok = client
        .publish_batch(PublishBatchRequest {
            events: (0..20)
                .map(|i| event("acme", "", "order.created", serde_json::json!({"orderId": format!("o{i}")})))
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), 20);
    assert!(ok.results.iter().all(|r| r.deliveries == 1 && !r.duplicate));
    assert_eq!(jobs(&stack).await.len(), 20);
    stack.stop().await;
}

#[tokio::test]
async fn secrets_are_sealed_at_rest() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    let mut basic = spec("http://127.0.0.1:9/basic");
    basic.auth = Some(EndpointAuth {
        kind: Some(Kind::Basic(Basic { username: "user".into(), password: "pa55-word-basic".into() })),
    });
    let created = client
        .create_endpoint(CreateEndpointRequest { tenant: "acme".into(), spec: Some(basic), id: String::new() })
        .await
        .unwrap()
        .into_inner();
    let signing = created.signing_secret.clone();
    assert!(signing.starts_with("whsec_"));
    let ep = created.endpoint.unwrap();
    match ep.spec.unwrap().auth.unwrap().kind.unwrap() {
        Kind::Basic(b) => {
            assert_eq!(b.username, "user");
            assert!(b.password.is_empty(), "answers never carry the password");
        }
        other => panic!("unexpected {other:?}"),
    }

    let mut oauth = spec("http://127.0.0.1:9/oauth");
    oauth.format = EndpointFormat::Cloudevents as i32;
    oauth.auth = Some(EndpointAuth {
        kind: Some(Kind::Oauth2ClientCredentials(OAuth2ClientCredentials {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: "client".into(),
            client_secret: "cl1ent-secret-value".into(),
            scope: "hooks".into(),
            audience: String::new(),
            client_auth: "post".into(),
        })),
    });
    let oauth_ep = client
        .create_endpoint(CreateEndpointRequest { tenant: "acme".into(), spec: Some(oauth), id: "seed-001-sub".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(oauth_ep.endpoint.as_ref().unwrap().id, "seed-001-sub");
    let taken = client
        .create_endpoint(CreateEndpointRequest {
            tenant: "acme".into(),
            spec: Some(spec("http://127.0.0.1:9/")),
            id: "seed-001-sub".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists);

    let mut conn = stack.redis().await;
    let raw: String = conn.get(stack.keys.endpoint(&ep.id)).await.unwrap();
    assert!(!raw.contains("pa55-word-basic"), "{raw}");
    assert!(!raw.contains(&signing), "{raw}");
    assert!(!raw.contains(signing.trim_start_matches("whsec_")), "{raw}");
    let raw_oauth: String = conn.get(stack.keys.endpoint("seed-001-sub")).await.unwrap();
    assert!(!raw_oauth.contains("cl1ent-secret-value"), "{raw_oauth}");
    assert!(!raw_oauth.contains(&oauth_ep.signing_secret), "{raw_oauth}");
    let record: herald_common::model::EndpointRecord = serde_json::from_str(&raw_oauth).unwrap();
    match &record.auth {
        herald_common::model::StoredAuth::Oauth2ClientCredentials { client_secret, client_auth, .. } => {
            assert_eq!(
                stack.config.secrets.open(client_secret, sealing::binding(&record.id, sealing::CLIENT_SECRET)).unwrap(),
                "cl1ent-secret-value"
            );
            assert_eq!(*client_auth, herald_common::model::ClientAuth::Post);
        }
        other => panic!("unexpected {other:?}"),
    }

    // The signing secret is readable through the API only.
    let ep_ref = EndpointRef { tenant: "acme".into(), id: ep.id.clone() };
    let fetched = client.get_endpoint_secret(ep_ref.clone()).await.unwrap().into_inner().secret;
    assert_eq!(fetched, signing);

    // Rotation: the new one signs first, the old one keeps going for a day.
    let rotated = client.rotate_endpoint_secret(ep_ref.clone()).await.unwrap().into_inner().secret;
    assert_ne!(rotated, signing);
    assert_eq!(client.get_endpoint_secret(ep_ref.clone()).await.unwrap().into_inner().secret, rotated);
    let raw: String = conn.get(stack.keys.endpoint(&ep.id)).await.unwrap();
    let record: herald_common::model::EndpointRecord = serde_json::from_str(&raw).unwrap();
    assert_eq!(record.signing_secrets.len(), 2);
    let signing_binding = sealing::binding(&record.id, sealing::SIGNING_SECRET);
    assert_eq!(stack.config.secrets.open(&record.signing_secrets[0].secret, signing_binding).unwrap(), rotated);
    assert_eq!(record.signing_secrets[0].expires_at, None);
    assert_eq!(stack.config.secrets.open(&record.signing_secrets[1].secret, signing_binding).unwrap(), signing);
    let expires = record.signing_secrets[1].expires_at.unwrap();
    let day = 24 * 3_600_000;
    let now = herald_common::time_fmt::now_millis();
    assert!(expires > now + day - 60_000 && expires <= now + day, "{expires}");

    // Updating another field keeps the stored password.
    let mut change = spec("");
    change.description = "renamed".into();
    let updated = client
        .update_endpoint(UpdateEndpointRequest {
            tenant: "acme".into(),
            id: ep.id.clone(),
            spec: Some(change),
            fields: vec!["description".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.spec.as_ref().unwrap().description, "renamed");
    assert_eq!(updated.spec.as_ref().unwrap().url, "http://127.0.0.1:9/basic");
    let raw: String = conn.get(stack.keys.endpoint(&ep.id)).await.unwrap();
    let record: herald_common::model::EndpointRecord = serde_json::from_str(&raw).unwrap();
    match &record.auth {
        herald_common::model::StoredAuth::Basic { password, .. } => {
            assert_eq!(
                stack.config.secrets.open(password, sealing::binding(&record.id, sealing::PASSWORD)).unwrap(),
                "pa55-word-basic"
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    stack.stop().await;
}

#[tokio::test]
async fn endpoint_changes_are_announced() {
    let (stack, mut client) = start().await;
    tenant(&mut client, "acme").await;
    let ep = endpoint(&mut client, "acme", "http://127.0.0.1:9/").await;
    let ep_ref = EndpointRef { tenant: "acme".into(), id: ep.clone() };
    let disabled = client
        .disable_endpoint(DisableEndpointRequest { tenant: "acme".into(), id: ep.clone(), reason: "gone".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disabled.status, EndpointStatus::Disabled as i32);
    assert_eq!(disabled.disabled_reason, "gone");
    let active = client.activate_endpoint(ep_ref.clone()).await.unwrap().into_inner();
    assert_eq!(active.status, EndpointStatus::Active as i32);
    assert!(active.disabled_reason.is_empty());
    client.delete_endpoint(ep_ref.clone()).await.unwrap();
    assert_eq!(client.get_endpoint(ep_ref).await.unwrap_err().code(), Code::NotFound);

    let ep2 = endpoint(&mut client, "acme", "http://127.0.0.1:9/2").await;
    client.delete_tenant(DeleteTenantRequest { id: "acme".into() }).await.unwrap();

    let mut conn = stack.redis().await;
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(stack.keys.changes()).await.unwrap();
    let entries: Vec<(String, String, String, String)> = reply
        .ids
        .iter()
        .map(|e| {
            let get = |k: &str| e.get::<String>(k).unwrap();
            (get("kind"), get("id"), get("tenant"), get("op"))
        })
        .collect();
    let expect = |id: &str, op: &str| ("endpoint".to_owned(), id.to_owned(), "acme".to_owned(), op.to_owned());
    assert_eq!(
        entries,
        [
            expect(&ep, "upsert"),
            expect(&ep, "upsert"),
            expect(&ep, "upsert"),
            expect(&ep, "delete"),
            expect(&ep2, "upsert"),
            expect(&ep2, "delete"),
        ]
    );
    // Nothing of the tenant is left but its routing generation (and the
    // catalogue's operational types, which are the installation's, and the
    // `herald.endpoint.disabled` event of the disable, kept for the
    // retention like any event).
    let left: Vec<String> = conn.keys(format!("{}:*", stack.prefix)).await.unwrap();
    let catalogue = |k: &str| {
        k.starts_with(&format!("{}:etype", stack.prefix))
            || k.starts_with(&format!("{}:evt:acme:herald.", stack.prefix))
    };
    let left: Vec<&String> = left
        .iter()
        .filter(|k| **k != stack.keys.changes() && **k != stack.keys.routing_generation("acme") && !catalogue(k))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    stack.stop().await;
}

#[tokio::test]
async fn health_and_reflection_in_both_versions() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let (stack, _client) = start().await;
    let channel = stack.registry_channel().await;
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: "herald.v1.Registry".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = ServerReflectionClient::new(channel.clone())
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!() };
        let names: HashSet<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains("herald.v1.Registry"), "{names:?}");
        assert!(names.contains("grpc.health.v1.Health"), "{names:?}");
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let requests = [
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol("herald.v1.Registry".into())),
            },
        ];
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(futures::stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        let first = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else { panic!() };
        assert!(list.service.iter().any(|s| s.name == "herald.v1.Registry"));
        let second = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::FileDescriptorResponse(files)) = second.message_response else { panic!() };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    stack.stop().await;
}

fn with_token<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn grpc_token_is_required_when_set() {
    let stack = Stack::start_services_with(Services::REGISTRY, |env| env.set("HERALD_GRPC_TOKEN", "grpc-s3cret")).await;
    let channel = stack.registry_channel().await;
    let mut anonymous = RegistryClient::new(channel.clone());
    let refused = anonymous.get_tenant(GetTenantRequest { id: "acme".into() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    let wrong = anonymous.get_tenant(with_token("nope", GetTenantRequest { id: "acme".into() })).await.unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let create = CreateTenantRequest { id: "acme".into(), name: "Acme".into() };
    anonymous.create_tenant(with_token("grpc-s3cret", create)).await.unwrap();
    anonymous.get_tenant(with_token("grpc-s3cret", GetTenantRequest { id: "acme".into() })).await.unwrap();

    // Health stays open.
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    stack.stop().await;
}
