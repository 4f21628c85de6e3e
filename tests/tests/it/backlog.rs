//! A backlog beyond what an endpoint's actor holds is parked once in Redis
//! and fed back as the endpoint drains: it never circles through the retry
//! set, never holds up another endpoint of the same partition, and costs
//! Redis next to nothing while it waits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_proto::v1::PublishBatchRequest;
use herald_proto::v1::registry_client::RegistryClient;
use herald_tests::{Receiver, Stack};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::subscribed_endpoint;

const SLOW: &str = "slow.thing";
const FAST: &str = "fast.thing";

/// A Redis of this test's own (its command count is the test's alone) and
/// one partition, so both endpoints share one stream and one reader.
async fn start() -> Stack {
    let port = herald_tests::free_port();
    let dir = std::env::temp_dir().join(format!("herald-test-backlog-{}-{port}", std::process::id()));
    // Stops with the test process, like every test Redis.
    std::mem::forget(herald_tests::spawn_redis(port, &dir, &[]));
    let url = format!("redis://127.0.0.1:{port}");
    herald_tests::wait_for_redis(&url, Duration::from_secs(10));
    Stack::start_with(|env| {
        env.set("HERALD_REDIS_URL", url);
        env.set("HERALD_PARTITIONS", "1");
    })
    .await
}

async fn endpoint(stack: &Stack, key: &str, spec: Value, event_type: &str) {
    subscribed_endpoint(stack, key, spec, &[event_type]).await;
}

async fn set_up(stack: &Stack) -> String {
    let key = stack.tenant_with_key("acme").await;
    for name in [SLOW, FAST] {
        let (status, body) = stack.admin_post("/v1/event-types", json!({"name": name, "description": "d"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    key
}

async fn publish(stack: &Stack, event_type: &str, ids: impl Iterator<Item = String>) {
    let mut registry = RegistryClient::new(stack.registry_channel().await);
    let ids: Vec<String> = ids.collect();
    for chunk in ids.chunks(500) {
        let events = chunk.iter().map(|id| herald_tests::publish_request("acme", id, event_type)).collect();
        registry.publish_batch(PublishBatchRequest { events }).await.unwrap();
    }
}

async fn commands_processed(stack: &Stack) -> u64 {
    let mut conn = stack.redis().await;
    let info: String = redis::cmd("INFO").arg("stats").query_async(&mut conn).await.unwrap();
    info.lines().find_map(|l| l.strip_prefix("total_commands_processed:")).unwrap().trim().parse().unwrap()
}

/// 6,000 events for an endpoint limited to one request a second: the actor
/// holds what its queue takes and the rest is parked. While that backlog
/// waits, Redis runs well under 1,000 commands a second, and another
/// endpoint of the same (only) partition gets each of its events within 2 s.
#[tokio::test]
async fn a_slow_endpoints_backlog_is_parked_and_holds_up_no_one() {
    let stack = start().await;
    let key = set_up(&stack).await;
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    endpoint(&stack, &key, json!({"url": slow.url(), "rateLimitPerSecond": 1}), SLOW).await;
    endpoint(&stack, &key, json!({"url": fast.url()}), FAST).await;

    publish(&stack, SLOW, (0..6_000).map(|n| format!("slow-{n}"))).await;
    // Settled: every entry left in the stream has been read (the actor
    // holds it), and the rest is parked.
    let stream = stack.keys.partition_stream(0);
    let mut conn = stack.redis().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (entries, pending, parked): (u64, redis::Value, Vec<String>) = redis::pipe()
            .cmd("XLEN")
            .arg(&stream)
            .cmd("XPENDING")
            .arg(&stream)
            .arg(herald_common::keys::CONSUMER_GROUP)
            .cmd("SMEMBERS")
            .arg(stack.keys.parked_endpoints(0))
            .query_async(&mut conn)
            .await
            .unwrap();
        let read = match pending {
            redis::Value::Array(summary) => {
                matches!(summary.first(), Some(redis::Value::Int(n)) if *n as u64 == entries)
            }
            _ => false,
        };
        if read && !parked.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the backlog never settled: {entries} entries in the stream");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let before = (commands_processed(&stack).await, Instant::now());
    for n in 0..5 {
        let id = format!("fast-{n}");
        let sent = Instant::now();
        publish(&stack, FAST, std::iter::once(id.clone())).await;
        let got = fast.wait_for(n + 1, Duration::from_secs(2)).await;
        assert_eq!(got.last().unwrap().json()["id"], id.as_str());
        assert!(sent.elapsed() < Duration::from_secs(2), "{id} took {:?}", sent.elapsed());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (after, at) = (commands_processed(&stack).await, Instant::now());
    let per_second = (after - before.0) as f64 / at.duration_since(before.1).as_secs_f64();
    eprintln!("Redis ran {per_second:.0} commands/s while a backlog of 6,000 waited");
    assert!(per_second < 1_000.0, "Redis ran {per_second:.0} commands/s while the backlog waited");
    assert!(slow.count() <= 10, "the rate limit held: {}", slow.count());
    stack.stop().await;
}

/// More events than an actor's queue holds, for an endpoint that takes them
/// as fast as they come: the excess is parked and fed back as the queue
/// drains, and every event arrives exactly once.
#[tokio::test]
async fn parked_jobs_come_back_and_each_arrives_once() {
    let stack = start().await;
    let key = set_up(&stack).await;
    let receiver = Receiver::start().await;
    endpoint(&stack, &key, json!({"url": receiver.url(), "maxInFlight": 4}), SLOW).await;

    let ids: Vec<String> = (0..7_000).map(|n| format!("e-{n}")).collect();
    publish(&stack, SLOW, ids.iter().cloned()).await;
    receiver.wait_for(ids.len(), Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = receiver.received();
    let unique: HashSet<String> = got.iter().map(|r| r.json()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(unique.len(), ids.len());
    assert_eq!(got.len(), ids.len(), "no event twice");
    let mut conn = stack.redis().await;
    let parked: Vec<String> =
        redis::cmd("SMEMBERS").arg(stack.keys.parked_endpoints(0)).query_async(&mut conn).await.unwrap();
    assert!(parked.is_empty(), "{parked:?}");
    stack.stop().await;
}
