//! An event id published again after the idempotency window, while the
//! first event's deliveries are still being retried under it, does not
//! replace the stored payload: the retries go on carrying the first data.

use herald_tests::{Receiver, Stack};
use serde_json::json;

use crate::support::{WAIT, delivery_in, expect, publish, set_up};

/// A one-second idempotency window and a receiver that fails: `e-1` is
/// published with `{"v": "first"}` and keeps being retried; once the window
/// has passed, `e-1` is published again with `{"v": "second"}` and answered
/// as a duplicate. Every request the receiver gets, the final successful
/// one included, carries the first data.
#[tokio::test]
async fn a_republished_id_does_not_overwrite_a_retrying_payload() {
    let stack = Stack::start_with(|env| {
        env.set("HERALD_IDEMPOTENCY_WINDOW", "1s");
        env.set("HERALD_RETRY_SCHEDULE", ["300ms"; 30].join(","));
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let (key, _) = set_up(&stack, &receiver).await;
    let a = publish(&stack, "e-1", json!({"v": "first"})).await;
    expect(&a, 202, "first publish");
    assert_eq!((a.body["duplicate"].as_bool(), a.body["deliveries"].as_u64()), (Some(false), Some(1)), "{}", a.raw);
    receiver.wait_for(1, WAIT).await;

    // The window runs from the first publish.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let retrying = delivery_in(&stack, &key, "e-1", "retrying").await;
    assert!(retrying["attemptCount"].as_u64().unwrap() < 30, "still being retried: {retrying}");

    let a = publish(&stack, "e-1", json!({"v": "second"})).await;
    expect(&a, 202, "publish again after the window");
    assert_eq!(a.body["duplicate"], true, "the stored event answers: {}", a.raw);
    assert_eq!(a.body["deliveries"], 0, "{}", a.raw);

    receiver.respond_with(204);
    delivery_in(&stack, &key, "e-1", "delivered").await;
    let got = receiver.received();
    assert!(got.len() >= 2, "{} requests", got.len());
    for request in &got {
        let body = request.json();
        assert_eq!(body["id"], "e-1");
        assert_eq!(body["data"], json!({"v": "first"}), "a retry carried other data under the same webhook-id");
        assert_eq!(request.header("webhook-id"), Some("e-1"));
    }
    stack.stop().await;
}
