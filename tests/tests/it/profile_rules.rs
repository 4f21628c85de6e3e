//! Rules the compatibility profiles add on top of the canonical model,
//! black box: seed 002's `client_credential` against a token endpoint that
//! accepts only `client_secret_post`.
//!
//! Every stack loads the shipped catalogue (`deploy/catalog`), as a fresh
//! install does; `profiles.rs` covers each seed's own requests and bodies.

use std::time::Duration;

use herald_tests::{ADMIN_TOKEN, Receiver, Reply, Stack, TokenServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{call, expect, wait_until};

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
