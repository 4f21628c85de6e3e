//! Faults of what Herald depends on: Redis killed and restarted from its
//! append-only file, Redis down, and a gRPC upstream that is not there.
//!
//! Each test runs its own `redis-server` (AOF on, fsync on every write), so
//! killing it disturbs no other test.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_tests::own_redis::OwnRedis;
use herald_tests::{Receiver, Services, Stack};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
/// How long an answer may take while a dependency is down.
const PROMPT: Duration = Duration::from_secs(5);
const EVENT_TYPE: &str = "order.created";

#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    body: Value,
    raw: String,
    took: Duration,
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let started = Instant::now();
    let response = request.timeout(Duration::from_secs(20)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let raw = response.text().await.unwrap();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer { status, content_type, body, raw, took: started.elapsed() }
}

/// `503` problem+json, answered promptly.
#[track_caller]
fn assert_unavailable(a: &Answer, context: &str) {
    assert_eq!(a.status, 503, "{context}: expected 503, got {} {}", a.status, a.raw);
    assert!(a.content_type.starts_with("application/problem+json"), "{context}: {:?} {}", a.content_type, a.raw);
    assert_eq!(a.body["status"], json!(503), "{context}: {}", a.raw);
    for member in ["type", "title", "detail"] {
        assert!(a.body[member].is_string(), "{context}: problem has no {member:?}: {}", a.raw);
    }
    assert!(a.took < PROMPT, "{context}: the 503 took {:?}", a.took);
}

/// A tenant with a key, the event type, and an endpoint at `receiver`
/// subscribed to everything; answers the key.
async fn set_up(stack: &Stack, receiver: &Receiver) -> String {
    let key = stack.tenant_with_key("acme").await;
    let (status, body) = stack.admin_post("/v1/event-types", json!({"name": EVENT_TYPE, "description": "d"})).await;
    assert_eq!(status, 201, "{body}");
    let a = answer(stack.tenant(&key, Method::POST, "/v1/endpoints").json(&json!({"url": receiver.url()}))).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let endpoint = a.body["id"].as_str().unwrap().to_owned();
    let a = answer(
        stack
            .tenant(&key, Method::POST, "/v1/subscriptions")
            .json(&json!({"endpointId": endpoint, "eventTypes": ["*"]})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.raw);
    key
}

async fn publish(stack: &Stack, id: &str) -> Answer {
    answer(
        stack
            .admin(Method::POST, "/v1/events")
            .json(&json!({"tenant": "acme", "id": id, "type": EVENT_TYPE, "data": {"n": id}})),
    )
    .await
}

fn readiness_urls(stack: &Stack) -> [(&'static str, String); 3] {
    [
        ("registry", format!("{}/readyz", stack.registry_admin_url)),
        ("dispatch", format!("{}/readyz", stack.dispatch_admin_url)),
        ("gateway", format!("{}/readyz", stack.gateway_url)),
    ]
}

/// Waits until every `/readyz` answers `ready` (2xx) or not; answers the
/// services that did not get there within `within`.
async fn wait_readiness(stack: &Stack, ready: bool, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut late = Vec::new();
    for (service, url) in readiness_urls(stack) {
        loop {
            let started = Instant::now();
            let result = stack.http.get(&url).timeout(Duration::from_secs(10)).send().await;
            let took = started.elapsed();
            let is_ready = matches!(&result, Ok(r) if r.status().is_success());
            if !ready {
                assert!(took < PROMPT, "{service} {url} took {took:?} while redis is down");
            }
            if is_ready == ready {
                break;
            }
            if Instant::now() > deadline {
                let status = result.map(|r| r.status().as_u16().to_string()).unwrap_or_else(|e| e.to_string());
                late.push(format!("{service} /readyz still answered {status} after {within:?} (wanted ready={ready})"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    late
}

/// Distinct `webhook-id`s and event ids the receiver got.
fn delivered(receiver: &Receiver) -> (HashSet<String>, HashSet<String>) {
    let got = receiver.received();
    let webhook_ids = got.iter().filter_map(|r| r.header("webhook-id")).map(str::to_owned).collect();
    let event_ids = got.iter().filter_map(|r| r.json()["id"].as_str().map(str::to_owned)).collect();
    (webhook_ids, event_ids)
}

async fn wait_delivered(receiver: &Receiver, expected: &HashSet<String>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let (webhook_ids, event_ids) = delivered(receiver);
        if expected.is_subset(&event_ids) {
            assert_eq!(&event_ids, expected, "events that were never published were delivered");
            assert_eq!(webhook_ids.len(), expected.len(), "one webhook-id per event: {webhook_ids:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "missing deliveries after {WAIT:?}: {:?}",
            expected.difference(&event_ids).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Events published before Redis is killed (SIGKILL, fsync on every write)
/// and after it restarts from its AOF are all delivered, at least once
/// each, without restarting any service.
#[tokio::test]
async fn redis_crash_and_restart_loses_no_delivery() {
    const N: usize = 20;
    let mut redis = OwnRedis::start();
    let url = redis.url.clone();
    let stack = Stack::start_with(|env| env.set("HERALD_REDIS_URL", url)).await;
    let receiver = Receiver::start().await;
    set_up(&stack, &receiver).await;

    let mut expected = HashSet::new();
    for i in 0..N {
        let id = format!("before-{i}");
        let a = publish(&stack, &id).await;
        assert_eq!(a.status, 202, "{}", a.raw);
        expected.insert(id);
    }
    // Half of them may still be in flight when Redis dies.
    receiver.wait_for(N / 2, WAIT).await;
    redis.kill();
    let down_at = Instant::now();
    let a = publish(&stack, "while-down").await;
    assert!(a.status == 503, "publishing while redis is down: {} {}", a.status, a.raw);
    redis.restart();
    println!("redis was down for {:?}", down_at.elapsed());
    let late = wait_readiness(&stack, true, WAIT).await;
    assert!(late.is_empty(), "{late:?}");

    for i in 0..N {
        let id = format!("after-{i}");
        let a = publish(&stack, &id).await;
        assert_eq!(a.status, 202, "{}", a.raw);
        expected.insert(id);
    }
    wait_delivered(&receiver, &expected).await;
    let (webhook_ids, _) = delivered(&receiver);
    println!(
        "{} requests for {} events ({} distinct webhook-ids)",
        receiver.count(),
        expected.len(),
        webhook_ids.len()
    );
    // Every service kept running through the outage (stop panics on one that failed).
    stack.stop().await;
}

/// While Redis is down the gateway answers `503` problem+json promptly and
/// every `/readyz` fails while `/healthz` stays up; after Redis returns,
/// everything recovers without a restart.
#[tokio::test]
async fn redis_outage_is_503_and_not_ready_then_recovers() {
    let mut redis = OwnRedis::start();
    let url = redis.url.clone();
    let stack = Stack::start_with(|env| env.set("HERALD_REDIS_URL", url)).await;
    let receiver = Receiver::start().await;
    let key = set_up(&stack, &receiver).await;
    assert_eq!(publish(&stack, "first").await.status, 202);
    receiver.wait_for(1, WAIT).await;

    redis.kill();
    for round in 0..2 {
        let context = |what: &str| format!("{what} (round {round})");
        assert_unavailable(&answer(stack.tenant(&key, Method::GET, "/v1/endpoints")).await, &context("list endpoints"));
        assert_unavailable(&publish(&stack, "while-down").await, &context("publish"));
        assert_unavailable(
            &answer(stack.admin(Method::POST, "/v1/tenants").json(&json!({"id": "other", "name": "o"}))).await,
            &context("create tenant"),
        );
        assert_unavailable(&answer(stack.admin(Method::GET, "/v1/tenants/acme")).await, &context("get tenant"));
        assert_unavailable(
            &answer(stack.admin(Method::GET, "/v1/deliveries?tenant=acme")).await,
            &context("list deliveries"),
        );
    }
    // Checked at the end, so that recovery is tested even when this fails.
    let still_ready = wait_readiness(&stack, false, Duration::from_secs(10)).await;
    for url in [
        format!("{}/healthz", stack.registry_admin_url),
        format!("{}/healthz", stack.dispatch_admin_url),
        format!("{}/healthz", stack.gateway_url),
    ] {
        let a = answer(stack.http.get(&url)).await;
        assert_eq!(a.status, 200, "{url} while redis is down: {}", a.raw);
    }

    redis.restart();
    let late = wait_readiness(&stack, true, WAIT).await;
    assert!(late.is_empty(), "{late:?}");
    let a = answer(stack.tenant(&key, Method::GET, "/v1/endpoints")).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(publish(&stack, "second").await.status, 202);
    let expected: HashSet<String> = ["first", "second"].map(String::from).into();
    wait_delivered(&receiver, &expected).await;
    stack.stop().await;
    assert!(still_ready.is_empty(), "not every process reported redis being down: {still_ready:?}");
}

/// A gateway whose registry (or dispatcher) is not listening answers `503`
/// problem+json at once, and is not ready.
#[tokio::test]
async fn unreachable_upstream_is_503() {
    let closed = format!("http://127.0.0.1:{}", herald_tests::free_port());
    let without_registry = Services { registry: false, dispatch: false, gateway: true };
    let registry_url = closed.clone();
    let stack = Stack::start_services_with(without_registry, |env| env.set("HERALD_REGISTRY_URL", registry_url)).await;
    for _ in 0..2 {
        let requests = [
            ("list endpoints", stack.tenant("hk_some-key", Method::GET, "/v1/endpoints")),
            ("create tenant", stack.admin(Method::POST, "/v1/tenants").json(&json!({"id": "a", "name": "a"}))),
            ("get tenant", stack.admin(Method::GET, "/v1/tenants/a")),
            ("publish", stack.admin(Method::POST, "/v1/events").json(&json!({"tenant": "a", "type": "t", "data": {}}))),
            ("event types", stack.admin(Method::GET, "/v1/event-types?tenant=a")),
        ];
        for (what, request) in requests {
            assert_unavailable(&answer(request).await, what);
        }
    }
    let a = answer(stack.http.get(format!("{}/readyz", stack.gateway_url))).await;
    assert!(!(200..300).contains(&a.status), "gateway ready without its registry: {}", a.raw);
    assert!(a.took < PROMPT, "readyz took {:?}", a.took);
    stack.stop().await;

    let without_dispatch = Services::REGISTRY_AND_GATEWAY;
    let stack = Stack::start_services_with(without_dispatch, |env| env.set("HERALD_DISPATCH_URL", closed)).await;
    let key = stack.tenant_with_key("acme").await;
    let a = answer(stack.tenant(&key, Method::GET, "/v1/endpoints")).await;
    assert_eq!(a.status, 200, "registry routes work without the dispatcher: {}", a.raw);
    assert_unavailable(&answer(stack.tenant(&key, Method::GET, "/v1/deliveries")).await, "list deliveries");
    assert_unavailable(&answer(stack.tenant(&key, Method::GET, "/v1/deliveries/dlv_x")).await, "get delivery");
    stack.stop().await;
}
