//! Herald on a Redis Cluster (`HERALD_REDIS_CLUSTER_URLS`), three masters
//! started by the harness: the registry's scripts, publishing (one and in
//! batches, idempotently), delivery, a retry and the delivery records all
//! work; registry keys sit in the one slot of the prefix's hash tag, and
//! what each partition owns in that partition's slot, so partitions spread
//! over every master (delivered states kept apart by
//! `HERALD_SUCCESS_RETENTION` among them). A publish that stops between its partition steps
//! (here: a master refusing writes) completes when published again, and no
//! delivery is doubled.

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
    // Delivered states are kept apart (for less than the rest), so their
    // buckets share the slots of their partitions too.
    let stack = Stack::start_with(|env| {
        env.set("HERALD_REDIS_CLUSTER_URLS", cluster.clone());
        env.set("HERALD_SUCCESS_RETENTION", "24h");
    })
    .await;
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

    // Raw: registry keys sit in the one slot of `{prefix}`; partition keys
    // spread over every master, each in its partition's slot.
    let tag = format!("{{{}}}", stack.prefix);
    let mut streams_per_node = Vec::new();
    let mut delivered_states = 0;
    for (url, _) in herald_tests::redis_cluster_nodes() {
        let mut conn = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let tag_slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&tag).query_async(&mut conn).await.unwrap();
        for key in herald_tests::scan_keys(&mut conn, &format!("{tag}:*")).await {
            let slot: u16 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key).query_async(&mut conn).await.unwrap();
            assert_eq!(slot, tag_slot, "{key} is outside the registry's slot");
        }
        let streams = herald_tests::scan_keys(&mut conn, &format!("{}:{{p*}}:jobs", stack.prefix)).await;
        streams_per_node.push(streams.len());
        for bucket in herald_tests::scan_keys(&mut conn, &format!("{}:{{p*}}:dlv:*:ok", stack.prefix)).await {
            let states: usize = redis::cmd("HLEN").arg(&bucket).query_async(&mut conn).await.unwrap();
            delivered_states += states;
        }
    }
    assert_eq!(delivered_states, expected.len(), "every delivered state is in a delivered bucket");
    let total: usize = streams_per_node.iter().sum();
    assert_eq!(total, stack.config.partitions as usize, "one stream per partition: {streams_per_node:?}");
    for count in &streams_per_node {
        assert!(*count * 5 >= total, "every master holds at least a fifth of the streams: {streams_per_node:?}");
    }
    stack.stop().await;
}

/// Eight endpoints spread over the partitions of a private cluster; one
/// master refuses writes (`min-replicas-to-write` with no replicas) while an
/// event is published, so the payload step and the other masters' partition
/// steps go through and that master's do not: the publish fails. Once the
/// master takes writes again, the same id published again is answered as a
/// duplicate with the full count, and every endpoint gets the event exactly
/// once.
#[tokio::test]
async fn a_publish_cut_short_between_partition_steps_completes_when_published_again() {
    let nodes = herald_tests::private_redis_cluster();
    let urls: Vec<String> = nodes.iter().map(|(url, _)| url.clone()).collect();
    let stack = Stack::start_with(|env| env.set("HERALD_REDIS_CLUSTER_URLS", urls.join(","))).await;
    let key = stack.tenant_with_key("acme").await;
    let (status, body) = stack.admin_post("/v1/event-types", json!({"name": EVENT_TYPE, "description": "d"})).await;
    assert_eq!(status, 201, "{body}");
    let receiver = Receiver::start().await;
    let mut endpoints = Vec::new();
    for n in 0..8 {
        let url = format!("{}/{n}", receiver.url());
        let (status, body) = json_answer(
            stack.tenant(&key, Method::POST, "/v1/endpoints").json(&json!({"url": url})).send().await.unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        let endpoint = body["id"].as_str().unwrap().to_owned();
        let subscription = json!({"endpointId": endpoint, "eventTypes": [EVENT_TYPE]});
        let (status, body) = json_answer(
            stack.tenant(&key, Method::POST, "/v1/subscriptions").json(&subscription).send().await.unwrap(),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        endpoints.push(endpoint);
    }

    // The node of some endpoint's partition that is not the event's home.
    let node_of = |slot: u16| nodes.iter().position(|(_, (first, last))| (*first..=*last).contains(&slot)).unwrap();
    let mut conn = redis::Client::open(urls[0].as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let mut slot_of = async |key: String| -> u16 {
        redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut conn).await.unwrap()
    };
    let event_node = node_of(slot_of(stack.keys.event("acme", "cut-1")).await);
    let mut partition_nodes = Vec::new();
    for endpoint in &endpoints {
        let p = herald_common::keys::partition_of(endpoint, stack.config.partitions);
        partition_nodes.push(node_of(slot_of(stack.keys.partition_stream(p)).await));
    }
    let Some(&refusing) = partition_nodes.iter().find(|n| **n != event_node) else {
        panic!("every endpoint's partition is on the event's node: {partition_nodes:?}")
    };
    assert!(partition_nodes.contains(&refusing) && partition_nodes.iter().any(|n| *n != refusing));
    let mut node =
        redis::Client::open(urls[refusing].as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let set = |value: &'static str| redis::cmd("CONFIG").arg("SET").arg("min-replicas-to-write").arg(value).clone();
    let () = set("1").query_async(&mut node).await.unwrap();

    let publish = json!({"tenant": "acme", "id": "cut-1", "type": EVENT_TYPE, "data": {"n": "1"}});
    let (status, body) = stack.admin_post("/v1/events", publish.clone()).await;
    assert!(status.is_server_error(), "the publish was cut short: {status} {body}");
    let reached = partition_nodes.iter().filter(|n| **n != refusing).count();
    receiver.wait_for(reached, WAIT).await;

    let () = set("0").query_async(&mut node).await.unwrap();
    let (status, body) = stack.admin_post("/v1/events", publish).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!((body["duplicate"].as_bool(), body["deliveries"].as_u64()), (Some(true), Some(8)), "{body}");
    receiver.wait_for(8, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got: Vec<String> = receiver.received().iter().map(|r| r.path.clone()).collect();
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!((got.len(), unique.len()), (8, 8), "each endpoint once: {got:?}");
    stack.stop().await;
}
