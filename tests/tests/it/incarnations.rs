//! An endpoint id outlives its endpoint: a profile names endpoints after
//! their tenant, so deleting and creating one again reuses the id. The new
//! endpoint must not inherit the old one's waiting retries or its circuit
//! breaker, and an endpoint activated again after a "failing" disable must
//! start a fresh disable clock.

use herald_common::keys::partition_of;
use herald_tests::{Receiver, Reply, Stack};
use redis::AsyncCommands;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{WAIT, call, delivery_in, expect, publish, set_up, wait_until};

/// Seed 003's partner is the tenant; its callbacks are `s003.{code}.{partner}`.
const PARTNER: &str = "7d1c9b2e-4f5a-4b6c-8d7e-9f0a1b2c3d4e";

async fn health(stack: &Stack, key: &str, endpoint: &str) -> Value {
    let a = call(stack, key, Method::GET, &format!("/v1/endpoints/{endpoint}/health"), None).await;
    expect(&a, 200, "health");
    a.body
}

async fn echo(stack: &Stack, key: &str, process: &str) -> String {
    let body = json!({"rawBody": {"processUniqueId": process, "state": "Approved"}});
    let a = call(stack, key, Method::POST, &format!("/partners/{PARTNER}/callbacks/1/echo"), Some(body)).await;
    expect(&a, 200, "echo");
    a.body["id"].as_str().unwrap().to_owned()
}

/// A callback fails twice (its circuit opens for an hour, its third attempt
/// waits an hour in the retry set); it is deleted and put again under the
/// same id to another receiver. The new callback's health is clean, a new
/// event reaches it at once, and the old delivery, when its retry comes due,
/// is failed unsent, naming why, instead of reaching the new receiver.
#[tokio::test]
async fn an_endpoint_created_again_under_its_profile_id_starts_clean() {
    let catalog = herald_tests::workspace_root().join("deploy/catalog");
    let stack = Stack::start_with(|env| {
        env.set("HERALD_CATALOG_DIR", catalog.display().to_string());
        env.set("HERALD_RETRY_SCHEDULE", "300ms,1h");
        env.set("HERALD_CIRCUIT_FAILURES", "2");
        env.set("HERALD_CIRCUIT_FAILING_FOR", "0s");
        env.set("HERALD_CIRCUIT_COOL_DOWN", "1h");
        env.set("HERALD_CIRCUIT_MAX_COOL_DOWN", "1h");
    })
    .await;
    let key = stack.tenant_with_key(PARTNER).await;
    let (old, new) = (Receiver::start().await, Receiver::start().await);
    old.respond_with(500);
    let callback = format!("/partners/{PARTNER}/callbacks/1");
    expect(&call(&stack, &key, Method::PUT, &callback, Some(json!({"callbackUrl": old.url()}))).await, 200, "put");
    let a = call(&stack, &key, Method::GET, "/v1/endpoints", None).await;
    let endpoint = a.body["data"][0]["id"].as_str().unwrap().to_owned();

    let first = echo(&stack, &key, "p-1").await;
    old.wait_for(2, WAIT).await;
    let waiting = wait_until("the old delivery waiting on its hour", || async {
        let d = delivery_in(&stack, &key, &first, "retrying").await;
        (d["attemptCount"] == 2).then_some(d)
    })
    .await;
    let before = health(&stack, &key, &endpoint).await;
    assert_eq!((before["circuit"].as_str(), before["consecutiveFailures"].as_u64()), (Some("open"), Some(2)));

    expect(&call(&stack, &key, Method::DELETE, &callback, None).await, 204, "delete");
    expect(&call(&stack, &key, Method::PUT, &callback, Some(json!({"callbackUrl": new.url()}))).await, 200, "again");
    let a = call(&stack, &key, Method::GET, "/v1/endpoints", None).await;
    assert_eq!(a.body["data"][0]["id"], endpoint.as_str(), "the profile names the endpoint the same: {}", a.raw);
    let after = health(&stack, &key, &endpoint).await;
    assert_eq!(after["circuit"], "closed", "{after}");
    assert_eq!(after["consecutiveFailures"], 0, "{after}");
    assert!(after.get("failingSince").is_none_or(Value::is_null), "{after}");

    // An open inherited circuit would hold this for an hour.
    let second = echo(&stack, &key, "p-2").await;
    let got = new.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], second.as_str());

    // The old delivery's retry comes due now.
    let id = waiting["id"].as_str().unwrap();
    let mut redis = stack.redis().await;
    let retry_set = stack.keys.retry_set(partition_of(&endpoint, stack.config.partitions));
    let members: Vec<String> = redis.zrange(&retry_set, 0, -1).await.unwrap();
    let member = members.into_iter().find(|m| m.contains(id)).expect("the old delivery's retry waits");
    let moved: i64 = redis::cmd("ZADD")
        .arg(&retry_set)
        .arg("XX")
        .arg("CH")
        .arg(0)
        .arg(&member)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(moved, 1, "the old retry was waiting in {retry_set}");
    let failed = delivery_in(&stack, &key, &first, "failed").await;
    let last = failed["attempts"].as_array().and_then(|a| a.last()).cloned().unwrap_or_default();
    assert_eq!(last["n"], 3, "{failed}");
    assert!(last["error"].as_str().is_some_and(|e| e.contains("created again")), "{failed}");
    assert_eq!(new.count(), 1, "only the new endpoint's own event reached it");
    assert_eq!(old.count(), 2);
    stack.stop().await;
}

/// An endpoint that failed long enough is disabled (`failing`). Activated
/// again, it starts with clean health: its first failure does not disable
/// it again, and a delivery failing once then succeeding is delivered.
#[tokio::test]
async fn an_endpoint_activated_again_starts_a_fresh_disable_clock() {
    let stack = Stack::start_with(|env| {
        env.set("HERALD_RETRY_SCHEDULE", ["300ms"; 8].join(","));
        env.set("HERALD_DISABLE_AFTER", "500ms");
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (key, endpoint) = set_up(&stack, &receiver).await;
    expect(&publish(&stack, "e-1", json!({"n": 1})).await, 202, "publish");
    wait_until("the endpoint disabled for failing", || async {
        let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{endpoint}"), None).await;
        (a.body["status"] == "disabled").then_some(())
    })
    .await;
    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{endpoint}"), None).await;
    assert_eq!(a.body["disabledReason"], "failing", "{}", a.raw);
    delivery_in(&stack, &key, "e-1", "failed").await;
    let before = health(&stack, &key, &endpoint).await;
    assert!(before["failingSince"].is_string(), "{before}");

    receiver.script([Reply::status(500)]);
    receiver.respond_with(204);
    let sent_before = receiver.count();
    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/{endpoint}/activate"), None).await;
    expect(&a, 200, "activate");
    let after = health(&stack, &key, &endpoint).await;
    assert_eq!(after["consecutiveFailures"], 0, "{after}");
    assert!(after.get("failingSince").is_none_or(Value::is_null), "{after}");

    expect(&publish(&stack, "e-2", json!({"n": 2})).await, 202, "publish after activation");
    let delivered = delivery_in(&stack, &key, "e-2", "delivered").await;
    assert_eq!(delivered["attemptCount"], 2, "failed once, then delivered: {delivered}");
    assert_eq!(receiver.count(), sent_before + 2);
    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{endpoint}"), None).await;
    assert_eq!(a.body["status"], "active", "{}", a.raw);
    stack.stop().await;
}
