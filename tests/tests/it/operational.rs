//! Operational webhooks: `herald.delivery.failed`, `herald.endpoint.disabled`
//! and `herald.endpoint.token_failed` are in every catalogue; a tenant that
//! subscribes an endpoint to them receives its own tenant's, signed like
//! any delivery, and a failing operational delivery publishes nothing more.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use herald_tests::{Receiver, Reply, Stack, TokenServer};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{EVENT_TYPE, subscribed_endpoint as endpoint, tenant_with_event_type as tenant};

const WAIT: Duration = Duration::from_secs(15);

async fn publish(stack: &Stack, tenant: &str, id: &str) {
    let event = json!({"tenant": tenant, "id": id, "type": EVENT_TYPE, "data": {"n": 1}});
    let (status, body) = stack.admin_post("/v1/events", event).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn the_operational_types_are_in_the_catalogue() {
    let stack = Stack::start().await;
    for name in ["herald.endpoint.disabled", "herald.delivery.failed", "herald.endpoint.token_failed"] {
        let (status, body) = stack.admin_get(&format!("/v1/event-types/{name}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["schema"]["required"].is_array(), "{body}");
    }
    stack.stop().await;
}

/// A delivery sent once (`maxAttempts: 1`) that fails is reported to the
/// tenant's operations endpoint, signed, and to no other tenant's; when the
/// operations endpoint itself fails that report, nothing more is published.
#[tokio::test]
async fn a_failed_delivery_is_reported_to_its_own_tenant_once() {
    let stack = Stack::start().await;
    let (acme, globex) = (tenant(&stack, "acme").await, tenant(&stack, "globex").await);
    let failing = Receiver::start().await;
    failing.respond_with(500);
    let (ops, other_ops) = (Receiver::start().await, Receiver::start().await);
    let broken =
        endpoint(&stack, &acme, json!({"url": failing.url(), "retry": {"maxAttempts": 1}}), &[EVENT_TYPE]).await;
    let ops_spec = json!({"url": ops.url(), "retry": {"maxAttempts": 1}});
    endpoint(&stack, &acme, ops_spec, &["herald.delivery.failed"]).await;
    endpoint(&stack, &globex, json!({"url": other_ops.url()}), &["herald.delivery.failed"]).await;

    publish(&stack, "acme", "o-1").await;
    let got = ops.wait_for(1, WAIT).await;
    let report = got[0].json();
    assert_eq!(report["type"], "herald.delivery.failed", "{report}");
    let data = &report["data"];
    assert_eq!((data["endpointId"].as_str(), data["eventId"].as_str()), (Some(broken.as_str()), Some("o-1")), "{data}");
    assert_eq!((data["eventType"].as_str(), data["attempts"].as_u64()), (Some(EVENT_TYPE), Some(1)), "{data}");
    assert_eq!(data["lastStatusCode"], 500, "{data}");
    assert!(data["deliveryId"].as_str().is_some_and(|d| d.starts_with("dlv_")), "{data}");
    assert!(got[0].header("webhook-signature").is_some_and(|s| s.starts_with("v1,")));

    // The operations endpoint fails its next report: no report of that.
    ops.respond_with(500);
    publish(&stack, "acme", "o-2").await;
    ops.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(ops.count(), 2, "a failed operational delivery was reported");
    assert_eq!(other_ops.count(), 0, "another tenant heard of acme's failures");
    stack.stop().await;
}

/// An endpoint answering `410 Gone` is disabled and the tenant hears of it.
#[tokio::test]
async fn a_disabled_endpoint_is_reported() {
    let stack = Stack::start().await;
    let key = tenant(&stack, "acme").await;
    let gone = Receiver::start().await;
    gone.script([Reply::status(410)]);
    let ops = Receiver::start().await;
    let id = endpoint(&stack, &key, json!({"url": gone.url()}), &[EVENT_TYPE]).await;
    endpoint(&stack, &key, json!({"url": ops.url()}), &["herald.endpoint.disabled"]).await;

    publish(&stack, "acme", "g-1").await;
    let got = ops.wait_for(1, WAIT).await;
    let report = got[0].json();
    assert_eq!(report["type"], "herald.endpoint.disabled", "{report}");
    assert_eq!(report["data"], json!({"endpointId": id, "reason": "gone"}), "{report}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ops.count(), 1);
    stack.stop().await;
}

/// A token endpoint that refuses the client is reported once, however many
/// attempts it refuses.
#[tokio::test]
async fn a_failing_token_endpoint_is_reported_once_per_change() {
    let stack = Stack::start_with(|env| env.set("HERALD_RETRY_SCHEDULE", "100ms,100ms,100ms")).await;
    let key = tenant(&stack, "acme").await;
    let tokens = TokenServer::start().await;
    tokens.fail_with(401, "invalid_client");
    let (receiver, ops) = (Receiver::start().await, Receiver::start().await);
    let auth =
        json!({"type": "oauth2_client_credentials", "tokenUrl": tokens.url(), "clientId": "c", "clientSecret": "s"});
    let id = endpoint(&stack, &key, json!({"url": receiver.url(), "auth": auth}), &[EVENT_TYPE]).await;
    endpoint(&stack, &key, json!({"url": ops.url()}), &["herald.endpoint.token_failed"]).await;

    publish(&stack, "acme", "t-1").await;
    let got = ops.wait_for(1, WAIT).await;
    let report = got[0].json();
    assert_eq!(report["type"], "herald.endpoint.token_failed", "{report}");
    assert_eq!(report["data"], json!({"endpointId": id, "error": "invalid_client"}), "{report}");
    // Every attempt fails the same way: one report.
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokens.requests() < 3 {
        assert!(tokio::time::Instant::now() < deadline, "the attempts stopped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ops.count(), 1, "reported again without a change");
    assert_eq!(receiver.count(), 0);
    stack.stop().await;
}
