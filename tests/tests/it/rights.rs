//! Per-method gRPC rights over real gRPC: with `HERALD_GRPC_TOKEN` and
//! `HERALD_GRPC_PUBLISH_TOKENS` set, a publish token may call `Publish`,
//! `PublishBatch`, health and reflection and nothing else
//! (`PERMISSION_DENIED`), the full token may call anything (the gateway
//! uses it), and a call without a token or with an unknown one is
//! `UNAUTHENTICATED`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_proto::v1::dispatch_client::DispatchClient;
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    CreateTenantRequest, EventType, GetTenantRequest, ListDeliveriesRequest, ListEndpointsRequest, PublishBatchRequest,
};
use herald_tests::{Stack, publish_request};
use reqwest::StatusCode;
use tonic::Code;

const FULL: &str = "grpc-full-token";
const PUBLISHERS: &str = "producer-a-token,producer-b-token";

fn with_token<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> Code {
    result.err().map_or(Code::Ok, |s| s.code())
}

#[tokio::test]
async fn publish_tokens_may_only_publish() {
    let stack = Stack::start_with(|env| {
        env.set("HERALD_GRPC_TOKEN", FULL);
        env.set("HERALD_GRPC_PUBLISH_TOKENS", PUBLISHERS);
    })
    .await;
    let channel = stack.registry_channel().await;
    let mut registry = RegistryClient::new(channel.clone());
    let mut dispatch = DispatchClient::new(stack.dispatch_channel().await);

    // The full token sets things up; the gateway, which sends it, works.
    let tenant = CreateTenantRequest { id: "acme".into(), name: "Acme".into() };
    registry.create_tenant(with_token(Some(FULL), tenant)).await.unwrap();
    let event_type = EventType { name: "order.created".into(), description: "d".into(), ..Default::default() };
    registry.create_event_type(with_token(Some(FULL), event_type)).await.unwrap();
    let key = stack.tenant_with_key("globex").await;
    let answer = stack.tenant(&key, reqwest::Method::GET, "/v1/endpoints").send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    for producer in PUBLISHERS.split(',') {
        let token = Some(producer);
        let published = registry.publish(with_token(token, publish_request("acme", "", "order.created"))).await;
        assert_eq!(code(published), Code::Ok, "{producer} publishes");
        let batch = PublishBatchRequest { events: vec![publish_request("acme", "", "order.created")] };
        assert_eq!(code(registry.publish_batch(with_token(token, batch)).await), Code::Ok, "{producer} batches");

        let denied = [
            code(registry.get_tenant(with_token(token, GetTenantRequest { id: "acme".into() })).await),
            code(
                registry
                    .create_tenant(with_token(token, CreateTenantRequest { id: "evil".into(), name: "e".into() }))
                    .await,
            ),
            code(
                registry
                    .list_endpoints(with_token(token, ListEndpointsRequest { tenant: "acme".into(), page: None }))
                    .await,
            ),
            code(
                dispatch
                    .list_deliveries(with_token(
                        token,
                        ListDeliveriesRequest { tenant: "acme".into(), ..Default::default() },
                    ))
                    .await,
            ),
        ];
        assert_eq!(denied, [Code::PermissionDenied; 4], "{producer}");
    }

    for token in [None, Some("not-a-token"), Some("producer-a")] {
        let published = registry.publish(with_token(token, publish_request("acme", "", "order.created"))).await;
        assert_eq!(code(published), Code::Unauthenticated, "{token:?}");
        let read = registry.get_tenant(with_token(token, GetTenantRequest { id: "acme".into() })).await;
        assert_eq!(code(read), Code::Unauthenticated, "{token:?}");
        let listed = dispatch
            .list_deliveries(with_token(token, ListDeliveriesRequest { tenant: "acme".into(), ..Default::default() }))
            .await;
        assert_eq!(code(listed), Code::Unauthenticated, "{token:?}");
    }

    // The full token keeps every right, on both services.
    assert_eq!(
        code(registry.get_tenant(with_token(Some(FULL), GetTenantRequest { id: "acme".into() })).await),
        Code::Ok
    );
    let listed = dispatch
        .list_deliveries(with_token(Some(FULL), ListDeliveriesRequest { tenant: "acme".into(), ..Default::default() }))
        .await;
    assert_eq!(code(listed), Code::Ok);

    // Health and reflection answer a producer (and anyone) as before.
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(with_token(Some("producer-a-token"), tonic_health::pb::HealthCheckRequest { service: String::new() }))
        .await
        .unwrap();
    assert_eq!(health.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let stream = futures::stream::iter([request]);
        let mut answers = ServerReflectionClient::new(channel)
            .server_reflection_info(with_token(Some("producer-b-token"), stream))
            .await
            .unwrap()
            .into_inner();
        let answer = answers.message().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
        assert!(list.service.iter().any(|s| s.name == "herald.v1.Registry"), "{list:?}");
    }
    stack.stop().await;
}
