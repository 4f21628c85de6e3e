//! Rules the compatibility profiles add on top of the canonical model,
//! black box: seed 000's own message types and its send-once deliveries,
//! seed 002's `client_credential` against a token endpoint that accepts
//! only `client_secret_post`, and the ids profile-made endpoints carry
//! (not `ep_…`) working under `/v1`.
//!
//! Every stack loads the shipped catalogue (`deploy/catalog`), as a fresh
//! install does; `profiles.rs` covers each seed's own requests and bodies.

use std::time::Duration;

use herald_tests::{ADMIN_TOKEN, Receiver, Reply, Stack, TokenServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Answer, call, expect, wait_until};

const WAIT: Duration = Duration::from_secs(15);

/// A stack with the shipped catalogue and one tenant; answers the tenant's key.
async fn start(tenant: &str) -> (Stack, String) {
    let catalog = herald_tests::workspace_root().join("deploy/catalog");
    let stack = Stack::start_with(|env| env.set("HERALD_CATALOG_DIR", catalog.display().to_string())).await;
    let key = stack.tenant_with_key(tenant).await;
    (stack, key)
}

/// Publishes an event of `kind` to `tenant`; answers how many deliveries it made.
async fn publish(stack: &Stack, tenant: &str, kind: &str, resource: Option<Value>, data: Value) -> u64 {
    let mut body = json!({"tenant": tenant, "type": kind, "data": data});
    if let Some(resource) = resource {
        body["resource"] = resource;
    }
    let a = call(stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body)).await;
    expect(&a, 202, &format!("publish {kind}"));
    a.body["deliveries"].as_u64().unwrap()
}

/// The `400` problem names `field` in its `errors`.
#[track_caller]
fn expect_invalid(a: &Answer, field: &str, context: &str) {
    expect(a, 400, context);
    let named = a.body["errors"].as_array().is_some_and(|errors| errors.iter().any(|e| e["field"] == field));
    assert!(named, "{context}: the problem does not name {field}: {}", a.raw);
}

// ---------------------------------------------------------------- seed 000

const N: &str = "/api/v1/notifications";
const SEED_000_TYPES: [&str; 4] =
    ["OrganizationsNotification", "ConfigurationNotification", "CheckNotification", "EmployeesNotification"];

/// Seed 000 discovers only the message types of its own catalogue file,
/// though the installation serves every seed's; a subscription to another
/// seed's type is a `400` naming `messageType.id` and leaves nothing behind.
/// The seed supports no retries, a notification is sent only once: the
/// subscription's endpoint has `retry.maxAttempts: 1`, so a callback that
/// fails gets the notification once and the delivery fails.
#[tokio::test]
async fn seed_000_has_its_own_message_types_and_sends_once() {
    let (stack, key) = start("tfo").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);

    let a = call(&stack, &key, Method::GET, &format!("{N}/discovery"), None).await;
    expect(&a, 200, "discovery");
    let ids: Vec<&str> = a.body["messageTypes"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, SEED_000_TYPES, "{}", a.raw);
    let catalogue = call(&stack, &key, Method::GET, "/v1/event-types?limit=1000", None).await;
    let all = catalogue.body["data"].as_array().unwrap();
    assert!(all.iter().any(|t| t["name"] == "WorkflowStateChange"), "the catalogue holds the other seeds' types too");

    let a = call(&stack, &key, Method::PUT, &format!("{N}/registration"), Some(json!({"name": "TFO"}))).await;
    expect(&a, 200, "register");
    let subscription = |message_type: &str| json!({"callbackUri": receiver.url(), "messageType": {"id": message_type}, "orgShortName": "tfoinc"});
    for other in ["WorkflowStateChange", "USER_PII_UPDATE", "purchase.delivery.completed"] {
        let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(subscription(other))).await;
        expect_invalid(&a, "messageType.id", other);
    }
    let endpoints = call(&stack, &key, Method::GET, "/v1/endpoints", None).await;
    assert_eq!(endpoints.body["data"], json!([]), "a refused subscription left an endpoint behind");

    let a =
        call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(subscription("CheckNotification"))).await;
    expect(&a, 200, "subscribe");
    let endpoints = call(&stack, &key, Method::GET, "/v1/endpoints", None).await;
    let ep = endpoints.body["data"][0].clone();
    assert_eq!(ep["retry"], json!({"maxAttempts": 1}), "{ep}");
    let resource = json!({"orgShortName": "tfoinc", "locRef": "fdmnh144"});
    let data = json!({"status": "Submitted"});
    assert_eq!(publish(&stack, "tfo", "CheckNotification", Some(resource), data).await, 1);
    let path = format!("/v1/deliveries?endpointId={}&status=failed", ep["id"].as_str().unwrap());
    let failed = wait_until("the failed delivery", || async {
        let a = call(&stack, &key, Method::GET, &path, None).await;
        let id = a.body["data"].as_array()?.first()?["id"].as_str()?.to_owned();
        Some(call(&stack, &key, Method::GET, &format!("/v1/deliveries/{id}"), None).await.body)
    })
    .await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(receiver.count(), 1);
    stack.stop().await;
}

// ---------------------------------------------------------------- seed 002

const W: &str = "/api/notifications/v1/webhooks";

/// Seed 002's `client_credential` does not say how the client authenticates
/// to the token endpoint. Against one that accepts only `client_secret_post`
/// the webhook still gets its token: HTTP Basic is refused once, the same
/// credentials are then posted in the form, and the token cache keeps to
/// that style for the next token (here after the receiver refuses the first).
#[tokio::test]
async fn seed_002_client_credential_works_with_a_post_only_token_endpoint() {
    let (stack, key) = start("acme").await;
    let receiver = Receiver::start().await;
    let tokens = TokenServer::start().await;
    tokens.accept_only_post("herald", "s3cret");
    let auth = json!({"type": "client_credential", "clientID": "herald", "clientSecret": "s3cret",
                      "tokenURL": tokens.url()});
    let a = call(&stack, &key, Method::POST, W, Some(json!({"targetURL": receiver.url(), "auth": auth}))).await;
    expect(&a, 200, "register with client_credential");
    let id = a.body["id"].as_str().unwrap().to_owned();

    let data = json!({"purchaseId": "p-1", "status": "COMPLETED"});
    assert_eq!(publish(&stack, "acme", "purchase.delivery.completed", None, data.clone()).await, 1);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-1"));
    let seen = tokens.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].0.get("authorization").is_some_and(|h| h.starts_with("Basic ")), "{seen:?}");
    assert!(!seen[1].0.contains_key("authorization"), "{seen:?}");
    assert!(seen[1].1.contains("client_id=herald") && seen[1].1.contains("client_secret=s3cret"), "{seen:?}");

    // The receiver refuses the cached token: the fresh one is asked for by post alone.
    receiver.script([Reply::status(401)]);
    assert_eq!(publish(&stack, "acme", "purchase.delivery.completed", None, data).await, 1);
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].header("authorization"), Some("Bearer tok-2"));
    let seen = tokens.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(!seen[2].0.contains_key("authorization"), "{seen:?}");
    let health = wait_until("endpoint health", || async {
        let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{id}/health"), None).await;
        (a.status == 200 && a.body["consecutiveFailures"] == 0).then_some(a.body)
    })
    .await;
    assert!(health.get("tokenError").is_none_or(Value::is_null), "{health}");
    stack.stop().await;
}

// ---------------------------------------------------------------- ids

/// Profile-made endpoints keep the ids their seed shows or derives: a UUID
/// (seed 002), `s003.{type}.{partner}`, `s004.{company}`. `/v1` serves them
/// as it serves an `ep_` id: listed once each when paged one by one, read,
/// changed, deactivated and activated, their secret, health, subscriptions
/// and deliveries, and deleted.
#[tokio::test]
async fn profile_endpoint_ids_work_under_v1() {
    let (stack, key) = start("acme").await;
    let receiver = Receiver::start().await;
    let url = receiver.url();
    let made = [
        call(&stack, &key, Method::POST, W, Some(json!({"targetURL": url}))).await,
        call(&stack, &key, Method::PUT, "/partners/acme/callbacks/1", Some(json!({"callbackUrl": url}))).await,
        call(
            &stack,
            &key,
            Method::POST,
            "/company/webhook",
            Some(json!({"companyAccessCode": "acme", "webhookURL": url})),
        )
        .await,
    ];
    for a in &made {
        expect(a, 200, "a profile endpoint");
    }
    let a = call(&stack, &key, Method::POST, "/v1/endpoints", Some(json!({"url": url}))).await;
    expect(&a, 201, "a /v1 endpoint");
    let ep = a.body["id"].as_str().unwrap().to_owned();
    let subscription = json!({"endpointId": ep, "eventTypes": ["WorkflowStateChange"]});
    expect(&call(&stack, &key, Method::POST, "/v1/subscriptions", Some(subscription)).await, 201, "subscribe");
    let uuid = made[0].body["id"].as_str().unwrap().to_owned();
    let ids = [uuid.clone(), "s003.1.acme".to_owned(), "s004.acme".to_owned(), ep];

    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints?limit=1{cursor}"), None).await;
        expect(&a, 200, "a page of endpoints");
        listed.extend(a.body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match a.body["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    listed.sort();
    let mut want = ids.to_vec();
    want.sort();
    assert_eq!(listed, want);

    for id in &ids {
        let path = format!("/v1/endpoints/{id}");
        let a = call(&stack, &key, Method::GET, &path, None).await;
        expect(&a, 200, id);
        assert_eq!(a.body["id"], id.as_str());
        let a = call(&stack, &key, Method::PATCH, &path, Some(json!({"description": "seen from /v1"}))).await;
        expect(&a, 200, id);
        assert_eq!(a.body["description"], "seen from /v1");
        for (action, status) in [("deactivate", "deactivated"), ("activate", "active")] {
            let a = call(&stack, &key, Method::POST, &format!("{path}/{action}"), None).await;
            expect(&a, 200, id);
            assert_eq!(a.body["status"], status, "{id}");
        }
        let a = call(&stack, &key, Method::GET, &format!("{path}/secret"), None).await;
        assert!(a.body["secret"].as_str().is_some_and(|s| s.starts_with("whsec_")), "{id}: {}", a.raw);
        let a = call(&stack, &key, Method::GET, &format!("{path}/health"), None).await;
        assert_eq!(a.body["endpointId"], id.as_str(), "{}", a.raw);
        let a = call(&stack, &key, Method::GET, &format!("/v1/subscriptions?endpointId={id}"), None).await;
        assert_eq!(a.body["data"].as_array().map(Vec::len), Some(1), "{id}: {}", a.raw);
    }

    // Each gets a delivery, found under its id.
    let workflow = json!({"processUniqueId": "p-1", "state": "Approved"});
    assert_eq!(publish(&stack, "acme", "WorkflowStateChange", None, workflow).await, 3);
    let pii = json!({"userAccessCode": "u-1"});
    assert_eq!(publish(&stack, "acme", "USER_PII_UPDATE", None, pii).await, 2);
    receiver.wait_for(5, WAIT).await;
    for id in &ids {
        wait_until(&format!("a delivered delivery of {id}"), || async {
            let path = format!("/v1/deliveries?endpointId={id}&status=delivered");
            let a = call(&stack, &key, Method::GET, &path, None).await;
            a.body["data"].as_array().is_some_and(|d| !d.is_empty()).then_some(())
        })
        .await;
    }

    // Deleted under /v1, the seed 002 webhook is gone from its own API too.
    expect(&call(&stack, &key, Method::DELETE, &format!("/v1/endpoints/{uuid}"), None).await, 204, "delete");
    expect(&call(&stack, &key, Method::GET, &format!("{W}/{uuid}"), None).await, 404, "the deleted webhook");
    stack.stop().await;
}
