//! A manual retry moves a waiting delivery from its retry set to its stream
//! in one step: a Redis that refuses the write leaves it waiting, and a
//! retry once Redis takes writes again sends it.

use herald_tests::own_redis::OwnRedis;
use herald_tests::{Receiver, Stack};
use reqwest::Method;
use serde_json::json;

use crate::support::{WAIT, call, delivery_in, expect, publish, set_up};

/// A delivery waits on a one-hour retry; Redis reaches `maxmemory` with
/// `noeviction` (it still deletes, but refuses writes that grow memory).
/// `POST /v1/deliveries/{id}/retry` is then `503` problem+json and the
/// delivery is still waiting, not lost; once Redis takes writes again the
/// same retry is `202` and the delivery arrives.
#[tokio::test]
async fn a_manual_retry_refused_by_a_full_redis_loses_nothing() {
    let redis = OwnRedis::start();
    let url = redis.url.clone();
    let stack = Stack::start_with(|env| {
        env.set("HERALD_REDIS_URL", url);
        env.set("HERALD_RETRY_SCHEDULE", "1h");
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (key, _) = set_up(&stack, &receiver).await;
    expect(&publish(&stack, "e-1", json!({"n": 1})).await, 202, "publish");
    receiver.wait_for(1, WAIT).await;
    let waiting = delivery_in(&stack, &key, "e-1", "retrying").await;
    let id = waiting["id"].as_str().unwrap().to_owned();
    assert!(waiting["nextAttemptAt"].is_string(), "{waiting}");
    let retry = format!("/v1/deliveries/{id}/retry");

    redis.config_set("maxmemory-policy", "noeviction");
    redis.config_set("maxmemory", "1");
    let a = call(&stack, &key, Method::POST, &retry, None).await;
    expect(&a, 503, "retry while redis refuses writes");
    let a = call(&stack, &key, Method::GET, &format!("/v1/deliveries/{id}"), None).await;
    expect(&a, 200, "the delivery after the refused retry");
    assert_eq!(a.body["status"], "retrying", "{}", a.raw);
    assert_eq!(a.body["nextAttemptAt"], waiting["nextAttemptAt"], "still waiting on its retry: {}", a.raw);

    redis.config_set("maxmemory", "0");
    receiver.respond_with(204);
    let a = call(&stack, &key, Method::POST, &retry, None).await;
    expect(&a, 202, "retry once redis takes writes");
    receiver.wait_for(2, WAIT).await;
    let delivered = delivery_in(&stack, &key, "e-1", "delivered").await;
    assert_eq!(delivered["attemptCount"], 2, "{delivered}");
    // Queued once: a second retry of the same attempt is not queued again.
    assert_eq!(receiver.count(), 2);
    stack.stop().await;
}
