//! Herald on a Redis Cluster (`HERALD_REDIS_CLUSTER_URLS`), three masters
//! started by the harness: the registry's scripts, publishing (one and in
//! batches, idempotently), delivery, a retry and the delivery records all
//! work, and every key Herald wrote sits in the one slot of its prefix's
//! hash tag, on the node that serves that slot.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{PublishBatchRequest, PublishRequest};
use herald_tests::{Receiver, Reply, Stack, json_answer};
use reqwest::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const EVENT_TYPE: &str = "order.created";

fn event(id: &str) -> PublishRequest {
    herald_tests::publish_request("acme", id, EVENT_TYPE)
}

#[tokio::test]
async fn herald_runs_on_a_redis_cluster_with_its_keys_in_one_slot() {
    let cluster = herald_tests::redis_cluster_urls();
    let stack = Stack::start_with(|env| env.set("HERALD_REDIS_CLUSTER_URLS", cluster.clone())).await;
    let receiver = Receiver::start().await;
    // The first delivery fails once: the retry set and its pump run too.
    receiver.script([Reply::status(500)]);

    let key = stack.tenant_with_key("acme").await;
    let schema = json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "string"}}});
    let (status, body) =
        stack.admin_post("/v1/event-types", json!({"name": EVENT_TYPE, "description": "d", "schema": schema})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = json_answer(
        stack.tenant(&key, Method::POST, "/v1/endpoints").json(&json!({"url": receiver.url()})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let endpoint = body["id"].as_str().unwrap().to_owned();
    let subscription = json!({"endpointId": endpoint, "eventTypes": [EVENT_TYPE]});
    let (status, body) =
        json_answer(stack.tenant(&key, Method::POST, "/v1/subscriptions").json(&subscription).send().await.unwrap())
            .await;
    assert_eq!(status, 201, "{body}");

    // Ten events over REST, ten in one gRPC batch, and a repeated id.
    let mut expected = HashSet::new();
    for i in 0..10 {
        let id = format!("rest-{i}");
        let (status, body) = stack
            .admin_post("/v1/events", json!({"tenant": "acme", "id": id, "type": EVENT_TYPE, "data": {"n": id}}))
            .await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["deliveries"], 1, "{body}");
        expected.insert(id);
    }
    let (status, body) = stack
        .admin_post("/v1/events", json!({"tenant": "acme", "id": "rest-0", "type": EVENT_TYPE, "data": {"n": "x"}}))
        .await;
    assert!(status.is_success(), "a repeated id is answered, not refused: {status} {body}");
    let mut registry = RegistryClient::new(stack.registry_channel().await);
    let events: Vec<PublishRequest> = (0..10).map(|i| event(&format!("grpc-{i}"))).collect();
    expected.extend(events.iter().map(|e| e.id.clone()));
    let answer = registry.publish_batch(PublishBatchRequest { events }).await.unwrap().into_inner();
    assert_eq!(answer.results.iter().map(|r| r.deliveries).sum::<u32>(), 10);
    // Schema validation runs as on one Redis.
    let (status, _) =
        stack.admin_post("/v1/events", json!({"tenant": "acme", "type": EVENT_TYPE, "data": {"n": 1}})).await;
    assert_eq!(status, 400);

    // Every event arrives once at least, and each is recorded delivered.
    let deadline = Instant::now() + WAIT;
    loop {
        let got: HashSet<String> =
            receiver.received().iter().filter_map(|r| r.json()["id"].as_str().map(str::to_owned)).collect();
        if got == expected {
            break;
        }
        assert!(Instant::now() < deadline, "delivered {} of {}: {got:?}", got.len(), expected.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) =
            json_answer(stack.tenant(&key, Method::GET, "/v1/deliveries?limit=100").send().await.unwrap()).await;
        assert_eq!(status, 200, "{body}");
        let deliveries = body["data"].as_array().unwrap();
        let delivered = deliveries.iter().filter(|d| d["status"] == "delivered").count();
        let retried = deliveries.iter().filter(|d| d["attemptCount"].as_u64() == Some(2)).count();
        if deliveries.len() == expected.len() && delivered == expected.len() && retried == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "deliveries not all recorded delivered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Raw: all of Herald's keys hash to the slot of `{prefix}`, and only the
    // node serving that slot holds any of them.
    let tag = format!("{{{}}}", stack.prefix);
    let mut per_node = Vec::new();
    let mut slot_of_tag = None;
    for (url, (first, last)) in herald_tests::redis_cluster_nodes() {
        let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&tag).query_async(&mut conn).await.unwrap();
        slot_of_tag = Some(slot);
        let keys = herald_tests::scan_keys(&mut conn, &format!("{tag}:*")).await;
        for key in &keys {
            let slot_of_key: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut conn).await.unwrap();
            assert_eq!(slot_of_key, slot, "{key} is outside the prefix's slot");
        }
        per_node.push((first..=last, keys.len()));
    }
    let slot = slot_of_tag.unwrap();
    for (slots, count) in &per_node {
        if slots.contains(&slot) {
            assert!(*count > 20, "the slot's node holds only {count} keys");
        } else {
            assert_eq!(*count, 0, "a node not serving slot {slot} holds Herald keys");
        }
    }
    stack.stop().await;
}
