//! Endpoint authentication and delivery control, end to end with real
//! services, a real OAuth token endpoint and real receivers: the token
//! cache (one request for many deliveries, expiry, `401` → one refresh and
//! an immediate resend, `invalid_client` in the endpoint's health),
//! `Retry-After`, `rateLimitPerSecond`, `maxInFlight`, `fifo` ordering
//! (through failures and through a change of dispatcher), isolation from a
//! hanging endpoint, the circuit breaker, and breaker state that outlives
//! its actor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_common::config::Env;
use herald_common::keys::partition_of;
use herald_common::model::EndpointRecord;
use herald_dispatch::records::HealthRecord;
use herald_proto::v1::dispatch_client::DispatchClient;
use herald_proto::v1::endpoint_auth::{Kind, OAuth2ClientCredentials};
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    CreateEndpointRequest, CreateSubscriptionRequest, CreateTenantRequest, Delivery, DeliveryRef, DeliveryStatus,
    EndpointAuth, EndpointHealth, EndpointHealthRequest, EndpointOrdering, EndpointRef, EndpointSpec, EndpointStatus,
    EventType, ListDeliveriesRequest, PublishBatchRequest, PublishRequest, TestEndpointRequest,
};
use herald_tests::{Received, Receiver, Reply, Services, Stack, TokenServer};
use redis::AsyncCommands;
use reqwest::StatusCode;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(15);
const TENANT: &str = "acme";

struct Clients {
    registry: RegistryClient<Channel>,
    dispatch: DispatchClient<Channel>,
}

/// The full stack (registry, dispatch, gateway) with `customise` applied.
async fn start(customise: impl FnOnce(&mut Env)) -> (Stack, Clients) {
    let stack = Stack::start_with(customise).await;
    let mut clients = Clients {
        registry: RegistryClient::new(stack.registry_channel().await),
        dispatch: DispatchClient::new(stack.dispatch_channel().await),
    };
    setup_tenant(&mut clients).await;
    (stack, clients)
}

async fn setup_tenant(c: &mut Clients) {
    c.registry.create_tenant(CreateTenantRequest { id: TENANT.into(), name: TENANT.into() }).await.unwrap();
    let created = c
        .registry
        .create_event_type(EventType {
            name: "order.created".into(),
            description: "an order was placed".into(),
            ..Default::default()
        })
        .await;
    if let Err(e) = created {
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    }
}

fn spec(url: &str) -> EndpointSpec {
    EndpointSpec { url: url.into(), ..Default::default() }
}

fn oauth(spec: EndpointSpec, tokens: &TokenServer) -> EndpointSpec {
    EndpointSpec {
        auth: Some(EndpointAuth {
            kind: Some(Kind::Oauth2ClientCredentials(OAuth2ClientCredentials {
                token_url: tokens.url(),
                client_id: "herald".into(),
                client_secret: "s3cret".into(),
                ..Default::default()
            })),
        }),
        ..spec
    }
}

/// Creates the endpoint with a subscription to `order.created`; answers its id.
async fn endpoint(c: &mut Clients, spec: EndpointSpec) -> String {
    let created = c
        .registry
        .create_endpoint(CreateEndpointRequest { tenant: TENANT.into(), spec: Some(spec), id: String::new() })
        .await
        .unwrap()
        .into_inner();
    let id = created.endpoint.unwrap().id;
    c.registry
        .create_subscription(CreateSubscriptionRequest {
            tenant: TENANT.into(),
            endpoint_id: id.clone(),
            event_types: vec!["order.created".into()],
            filter: Vec::new(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    id
}

fn event(n: usize) -> PublishRequest {
    PublishRequest {
        tenant: TENANT.into(),
        id: String::new(),
        r#type: "order.created".into(),
        resource: Vec::new(),
        data: format!(r#"{{"n":{n}}}"#).into_bytes(),
        time: None,
        ..Default::default()
    }
}

async fn publish(c: &mut Clients, n: usize) -> String {
    c.registry.publish(event(n)).await.unwrap().into_inner().id
}

/// Publishes `n` events in batches of 50; answers their ids in publish order.
async fn publish_many(c: &mut Clients, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    let all: Vec<usize> = (0..n).collect();
    for chunk in all.chunks(50) {
        let events = chunk.iter().map(|i| event(*i)).collect();
        let answer = c.registry.publish_batch(PublishBatchRequest { events }).await.unwrap().into_inner();
        ids.extend(answer.results.into_iter().map(|r| r.id));
    }
    ids
}

fn status(d: &Delivery) -> DeliveryStatus {
    DeliveryStatus::try_from(d.status).unwrap()
}

/// Waits until the event's one delivery satisfies `done`; answers it with attempts.
async fn wait_delivery(c: &mut Clients, event_id: &str, done: impl Fn(&Delivery) -> bool) -> Delivery {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = c
            .dispatch
            .list_deliveries(ListDeliveriesRequest {
                tenant: TENANT.into(),
                event_id: event_id.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .deliveries;
        if let Some(d) = found.first() {
            let full = c
                .dispatch
                .get_delivery(DeliveryRef { tenant: TENANT.into(), id: d.id.clone() })
                .await
                .unwrap()
                .into_inner();
            if done(&full) {
                return full;
            }
            assert!(Instant::now() < deadline, "delivery never reached the expected state: {full:?}");
        } else {
            assert!(Instant::now() < deadline, "no delivery recorded for {event_id}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn health(c: &mut Clients, endpoint_id: &str) -> EndpointHealth {
    c.dispatch
        .get_endpoint_health(EndpointHealthRequest { tenant: TENANT.into(), endpoint_id: endpoint_id.into() })
        .await
        .unwrap()
        .into_inner()
}

/// Waits until the endpoint's stored health satisfies `done`.
async fn wait_health(c: &mut Clients, endpoint_id: &str, done: impl Fn(&EndpointHealth) -> bool) -> EndpointHealth {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = health(c, endpoint_id).await;
        if done(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "health never reached the expected state: {h:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the endpoint is disabled; answers the reason.
async fn wait_disabled(c: &mut Clients, endpoint_id: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let ep = c
            .registry
            .get_endpoint(EndpointRef { tenant: TENANT.into(), id: endpoint_id.into() })
            .await
            .unwrap()
            .into_inner();
        if ep.status == EndpointStatus::Disabled as i32 {
            return ep.disabled_reason;
        }
        assert!(Instant::now() < deadline, "endpoint never disabled: {ep:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn ids(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect()
}

fn bearer(r: &Received) -> &str {
    r.header("authorization").unwrap_or_default()
}

/// A dispatcher run in this process over a stack that has none, so a test
/// can stop it and start another (a new owner with new actors).
struct Dispatcher {
    grpc: std::net::SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<Result<(), String>>,
}

impl Dispatcher {
    async fn start(stack: &Stack) -> Dispatcher {
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ready = format!("http://{}/readyz", admin.local_addr().unwrap());
        let stop = CancellationToken::new();
        let (config, token) = (stack.config.clone(), stop.clone());
        let task =
            tokio::spawn(
                async move { herald_dispatch::run(config, grpc, admin, token).await.map_err(|e| e.to_string()) },
            );
        let deadline = Instant::now() + WAIT;
        loop {
            assert!(!task.is_finished(), "dispatcher stopped during start-up");
            match stack.http.get(&ready).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => break,
                _ => assert!(Instant::now() < deadline, "dispatcher never became ready"),
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Dispatcher { grpc: grpc_addr, stop, task }
    }

    async fn client(&self) -> DispatchClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.grpc)).unwrap().connect().await.unwrap();
        DispatchClient::new(channel)
    }

    async fn stop(self) {
        self.stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(15), self.task).await;
        assert!(matches!(stopped, Ok(Ok(Ok(())))), "dispatcher did not stop cleanly: {stopped:?}");
    }
}

/// Registry only (the test runs its own dispatchers), with gRPC clients.
async fn start_without_dispatch(customise: impl FnOnce(&mut Env)) -> (Stack, Clients) {
    let stack = Stack::start_services_with(Services::REGISTRY, customise).await;
    let mut clients = Clients {
        registry: RegistryClient::new(stack.registry_channel().await),
        // Replaced by a dispatcher's channel once one runs.
        dispatch: DispatchClient::new(stack.registry_channel().await),
    };
    setup_tenant(&mut clients).await;
    (stack, clients)
}

/// The stored (packed) health of an endpoint, straight from Redis.
async fn stored_failures(stack: &Stack, endpoint_id: &str) -> (u32, Option<i64>) {
    let mut conn = stack.redis().await;
    let packed: Option<Vec<u8>> = conn.get(stack.keys.endpoint_health(endpoint_id)).await.unwrap();
    let health = packed.map(|raw| HealthRecord::unpack(&raw).expect("packed health reads back")).unwrap_or_default();
    (health.consecutive_failures, health.failing_since)
}

fn now_millis() -> i64 {
    herald_common::time_fmt::now_millis()
}

// ------------------------------------------------------------------ oauth

#[tokio::test]
async fn a_hundred_concurrent_deliveries_share_one_token_request() {
    let (stack, mut c) = start(|_| {}).await;
    let tokens = TokenServer::start().await;
    // Slow enough that every delivery needs the token while it is fetched.
    tokens.set_delay(Duration::from_millis(300));
    let receiver = Receiver::start().await;
    receiver.respond_with_reply(Reply::status(200).delay(Duration::from_millis(100)));
    endpoint(&mut c, oauth(EndpointSpec { max_in_flight: Some(100), ..spec(&receiver.url()) }, &tokens)).await;
    let published = publish_many(&mut c, 100).await;

    let got = receiver.wait_for(100, WAIT).await;
    assert_eq!(tokens.requests(), 1, "one token request for all deliveries");
    assert!(got.iter().all(|r| bearer(r) == "Bearer tok-1"), "every delivery carries the one token");
    let seen: HashSet<String> = ids(&got).into_iter().collect();
    assert_eq!(seen, published.into_iter().collect::<HashSet<_>>());
    assert!(receiver.max_in_flight() > 10, "deliveries ran concurrently: {}", receiver.max_in_flight());
    stack.stop().await;
}

#[tokio::test]
async fn test_sends_reuse_the_token_of_the_endpoints_actor() {
    let (stack, mut c) = start(|_| {}).await;
    let tokens = TokenServer::start().await;
    let receiver = Receiver::start().await;
    let endpoint_id = endpoint(&mut c, oauth(spec(&receiver.url()), &tokens)).await;
    publish(&mut c, 1).await;
    receiver.wait_for(1, WAIT).await;
    assert_eq!(tokens.requests(), 1);
    for _ in 0..3 {
        let answer = c
            .dispatch
            .test_endpoint(TestEndpointRequest {
                tenant: TENANT.into(),
                endpoint_id: endpoint_id.clone(),
                event_type: "order.created".into(),
                data: br#"{"n":0}"#.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.delivered, "{answer:?}");
    }
    let got = receiver.wait_for(4, WAIT).await;
    assert!(got.iter().all(|r| bearer(r) == "Bearer tok-1"), "the test sends carry the actor's token");
    assert_eq!(tokens.requests(), 1, "no test send requested a token of its own");
    stack.stop().await;
}

#[tokio::test]
async fn an_expired_token_is_replaced() {
    let (stack, mut c) = start(|_| {}).await;
    let tokens = TokenServer::start().await;
    tokens.set_expires_in(Some(1));
    let receiver = Receiver::start().await;
    endpoint(&mut c, oauth(spec(&receiver.url()), &tokens)).await;

    publish(&mut c, 1).await;
    let first = receiver.wait_for(1, WAIT).await;
    assert_eq!(bearer(&first[0]), "Bearer tok-1");
    // The token lives one second; time itself is what is under test here.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    publish(&mut c, 2).await;
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(bearer(&got[1]), "Bearer tok-2", "the expired token was not reused");
    assert_eq!(tokens.requests(), 2);
    stack.stop().await;
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_resends_at_once() {
    // A schedule whose first delay is far longer than any immediate resend.
    let (stack, mut c) = start(|env| env.set("HERALD_RETRY_SCHEDULE", "5s,5s")).await;
    let tokens = TokenServer::start().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(401)]);
    endpoint(&mut c, oauth(spec(&receiver.url()), &tokens)).await;
    let event_id = publish(&mut c, 1).await;

    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!((bearer(&got[0]), bearer(&got[1])), ("Bearer tok-1", "Bearer tok-2"));
    let gap = got[1].at - got[0].at;
    assert!(gap < Duration::from_secs(1), "the resend waited {gap:?}, as if on the retry schedule");
    let d = wait_delivery(&mut c, &event_id, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d.attempt_count, 1, "the resend is part of the same attempt");
    assert_eq!(tokens.requests(), 2, "exactly one refresh");
    assert_eq!(receiver.count(), 2);
    stack.stop().await;
}

#[tokio::test]
async fn invalid_client_is_retried_and_shown_in_the_endpoint_health() {
    let (stack, mut c) = start(|_| {}).await;
    let tokens = TokenServer::start().await;
    tokens.fail_with(401, "invalid_client");
    let receiver = Receiver::start().await;
    let ep = endpoint(&mut c, oauth(spec(&receiver.url()), &tokens)).await;
    let event_id = publish(&mut c, 1).await;

    let d = wait_delivery(&mut c, &event_id, |d| d.attempt_count >= 2).await;
    assert_eq!(d.attempts[0].error, "token endpoint: invalid_client (401)");
    assert_eq!(d.attempts[0].status_code, 0, "nothing was sent to the endpoint");
    // On the retry schedule (200 ms, 400 ms, 800 ms, ±20 %).
    let (a0, a1) = (d.attempts[0].at.unwrap(), d.attempts[1].at.unwrap());
    let gap_ms = (a1.seconds - a0.seconds) * 1000 + i64::from(a1.nanos - a0.nanos) / 1_000_000;
    assert!(gap_ms >= 150, "retried after only {gap_ms} ms");
    let h = wait_health(&mut c, &ep, |h| h.token_error == "invalid_client").await;
    assert!(h.consecutive_failures >= 1);
    // The integrator sees it on the REST twin as well.
    let (code, body) = stack.admin_get(&format!("/v1/endpoints/{ep}/health?tenant={TENANT}")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["tokenError"], "invalid_client", "{body}");
    assert_eq!(receiver.count(), 0);

    // Once the token endpoint accepts the client, the delivery goes out
    // and the error clears.
    tokens.recover();
    wait_delivery(&mut c, &event_id, |d| status(d) == DeliveryStatus::Delivered).await;
    let h = wait_health(&mut c, &ep, |h| h.token_error.is_empty()).await;
    assert_eq!(h.consecutive_failures, 0);
    assert_eq!(bearer(&receiver.wait_for(1, WAIT).await[0]), "Bearer tok-1");
    stack.stop().await;
}

// ---------------------------------------------------------------- control

#[tokio::test]
async fn retry_after_holds_the_retry_back() {
    let (stack, mut c) = start(|_| {}).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503).header("retry-after", "3")]);
    endpoint(&mut c, spec(&receiver.url())).await;
    let event_id = publish(&mut c, 1).await;

    let got = receiver.wait_for(2, WAIT).await;
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_secs(3), "retried after only {gap:?}");
    assert!(gap < Duration::from_secs(5), "Retry-After is a lower bound, not a reason to dawdle: {gap:?}");
    let d = wait_delivery(&mut c, &event_id, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [503, 204]);
    stack.stop().await;
}

#[tokio::test]
async fn the_receiver_never_sees_more_than_the_rate_limit() {
    let (stack, mut c) = start(|_| {}).await;
    let receiver = Receiver::start().await;
    endpoint(&mut c, EndpointSpec { rate_limit_per_second: Some(5), ..spec(&receiver.url()) }).await;
    publish_many(&mut c, 20).await;

    let got = receiver.wait_for(20, WAIT).await;
    let at: Vec<Instant> = got.iter().map(|r| r.at).collect();
    // Attempts start at most 5 in any second (the first 5 at once); arrival
    // times carry a few milliseconds of network jitter on top.
    let window = Duration::from_secs(1) - Duration::from_millis(30);
    for (i, start) in at.iter().enumerate() {
        let within = at[i..].iter().take_while(|t| **t - *start < window).count();
        assert!(within <= 5, "{within} arrivals within a second from arrival {i}");
    }
    let span = at[19] - at[0];
    assert!(span >= Duration::from_millis(2900), "20 events at 5/s took only {span:?}");
    stack.stop().await;
}

#[tokio::test]
async fn the_receiver_never_sees_more_than_max_in_flight() {
    let (stack, mut c) = start(|_| {}).await;
    let receiver = Receiver::start().await;
    receiver.respond_with_reply(Reply::status(200).delay(Duration::from_millis(200)));
    endpoint(&mut c, EndpointSpec { max_in_flight: Some(3), ..spec(&receiver.url()) }).await;
    publish_many(&mut c, 12).await;

    receiver.wait_for(12, WAIT).await;
    assert_eq!(receiver.max_in_flight(), 3, "exactly maxInFlight at once, never more");
    stack.stop().await;
}

#[tokio::test]
async fn endpoints_of_one_host_share_its_bound() {
    let bound: usize = 2;
    let (stack, mut c) = start(|env| env.set("HERALD_HOST_MAX_IN_FLIGHT", bound.to_string())).await;
    let receiver = Receiver::start().await;
    receiver.respond_with_reply(Reply::status(200).delay(Duration::from_millis(150)));
    // Three endpoints on one host, 12 requests at once between them.
    for path in ["a", "b", "c"] {
        endpoint(&mut c, EndpointSpec { max_in_flight: Some(4), ..spec(&format!("{}/{path}", receiver.url())) }).await;
    }
    publish_many(&mut c, 8).await;

    receiver.wait_for(24, WAIT).await;
    let metrics = reqwest::get(format!("{}/metrics", stack.dispatch_admin_url)).await.unwrap().text().await.unwrap();
    let waits: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_host_waits_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_default();
    assert!(waits >= 1.0, "attempts that waited for the host are counted:\n{metrics}");
    // The bound is shared out between the dispatcher's actor threads.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(64);
    let most = threads.min(3) * bound.div_ceil(threads);
    assert!(
        receiver.max_in_flight() <= most,
        "{} requests at once to one host, bound {bound} over {threads} threads",
        receiver.max_in_flight()
    );
    stack.stop().await;
}

#[tokio::test]
async fn fifo_order_survives_a_failing_event() {
    let (stack, mut c) = start(|_| {}).await;
    let receiver = Receiver::start().await;
    // e1 and e2 go through, e3 fails twice and then goes through, and so
    // does everything after it: arrivals are strictly one at a time.
    receiver.script([Reply::status(204), Reply::status(204), Reply::status(500), Reply::status(503)]);
    let ep = endpoint(&mut c, EndpointSpec { ordering: EndpointOrdering::Fifo as i32, ..spec(&receiver.url()) }).await;
    let mut events = Vec::new();
    for n in 1..=10 {
        events.push(publish(&mut c, n).await);
    }

    let got = receiver.wait_for(12, WAIT).await;
    let arrived = ids(&got);
    let mut expected: Vec<String> = events[..3].to_vec();
    expected.extend([events[2].clone(), events[2].clone()]);
    expected.extend(events[3..].iter().cloned());
    assert_eq!(arrived, expected, "arrivals out of publish order");
    // The failed event was retried on the schedule, not at once.
    assert!(got[3].at - got[2].at >= Duration::from_millis(150), "{:?}", got[3].at - got[2].at);
    assert!(receiver.max_in_flight() <= 1);
    for (n, event_id) in events.iter().enumerate() {
        let d = wait_delivery(&mut c, event_id, |d| status(d) == DeliveryStatus::Delivered).await;
        assert_eq!(d.attempt_count, if n == 2 { 3 } else { 1 }, "{d:?}");
    }
    let d = wait_delivery(&mut c, &events[2], |_| true).await;
    assert_eq!(d.attempts.iter().map(|a| a.n).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(d.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), [500, 503, 204]);
    // Nothing went through the retry set.
    let mut conn = stack.redis().await;
    let p = partition_of(&ep, stack.config.partitions);
    let waiting: usize = redis::cmd("ZCARD").arg(stack.keys.retry_set(p)).query_async(&mut conn).await.unwrap();
    assert_eq!(waiting, 0);
    assert_eq!(receiver.count(), 12, "no duplicates");
    stack.stop().await;
}

#[tokio::test]
async fn a_hanging_endpoint_does_not_slow_a_fast_one() {
    let (stack, mut c) = start(|_| {}).await;
    let (hanging, fast) = (Receiver::start().await, Receiver::start().await);
    // Far beyond HERALD_DELIVERY_TIMEOUT_MS (2 s in tests).
    hanging.respond_with_reply(Reply::status(200).delay(Duration::from_secs(30)));
    endpoint(&mut c, spec(&hanging.url())).await;
    endpoint(&mut c, spec(&fast.url())).await;
    let started = Instant::now();
    let published = publish_many(&mut c, 100).await;

    let got = fast.wait_for(100, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the fast endpoint took {took:?}");
    assert_eq!(ids(&got).into_iter().collect::<HashSet<_>>(), published.into_iter().collect::<HashSet<_>>());
    assert!(hanging.count() >= 1, "the hanging endpoint was tried");
    assert!(hanging.max_in_flight() >= 1, "and is still hanging");
    stack.stop().await;
}

#[tokio::test]
async fn an_endpoint_that_keeps_failing_is_held_back() {
    let (stack, mut c) = start(|env| {
        env.set("HERALD_CIRCUIT_FAILURES", "3");
        env.set("HERALD_CIRCUIT_FAILING_FOR", "0s");
        env.set("HERALD_CIRCUIT_COOL_DOWN", "1500ms");
        env.set("HERALD_RETRY_SCHEDULE", ["100ms"; 40].join(","));
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let ep = endpoint(&mut c, spec(&receiver.url())).await;
    publish(&mut c, 1).await;

    let first = receiver.wait_for(1, WAIT).await[0].at;
    let h = wait_health(&mut c, &ep, |h| h.circuit == "open").await;
    assert!(h.consecutive_failures >= 3, "{h:?}");
    // Without the breaker the schedule allows an attempt every ~100 ms,
    // some 30 in 3 s; with it: 3, a cool-down of 1.5 s, one probe, 3 s more.
    let observe_until = first + Duration::from_secs(3);
    tokio::time::sleep_until(observe_until.into()).await;
    let attempts: Vec<Instant> = receiver.received().iter().map(|r| r.at).filter(|at| *at <= observe_until).collect();
    assert!(attempts.len() <= 5, "{} attempts in 3 s: the circuit did not hold them back", attempts.len());
    assert!(attempts.len() >= 4, "the probe after the cool-down went out: {}", attempts.len());
    let held = attempts[3] - attempts[2];
    assert!(held >= Duration::from_millis(1400), "the probe came after only {held:?}");
    stack.stop().await;
}

// ------------------------------------------------- across dispatcher changes

#[tokio::test]
async fn breaker_state_outlives_the_actor_and_auto_disable_counts_from_the_first_failure() {
    let (stack, mut c) = start_without_dispatch(|env| {
        env.set("HERALD_DISABLE_AFTER", "2s");
        env.set("HERALD_RETRY_SCHEDULE", ["200ms"; 40].join(","));
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let ep = endpoint(&mut c, spec(&receiver.url())).await;

    let first = Dispatcher::start(&stack).await;
    publish(&mut c, 1).await;
    receiver.wait_for(2, WAIT).await;
    first.stop().await;
    let (failures, since) = stored_failures(&stack, &ep).await;
    assert!(failures >= 2, "{failures}");
    let since = since.expect("failingSince is stored");
    let before = receiver.count();

    // Until the endpoint has failed for longer than HERALD_DISABLE_AFTER in
    // all: an actor that forgot would need another 2 s of failures.
    let wait = (since + 2_100 - now_millis()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let second = Dispatcher::start(&stack).await;
    assert_eq!(wait_disabled(&mut c, &ep).await, "failing");
    let (after, since_after) = stored_failures(&stack, &ep).await;
    assert_eq!(since_after, Some(since), "failing since the first failure, not since the restart");
    assert_eq!(after, failures + 1, "the count carried on");
    assert_eq!(receiver.count(), before + 1, "disabled at the first failure of the new actor");
    second.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn breaker_state_stored_in_the_first_layout_carries_on() {
    let (stack, mut c) = start_without_dispatch(|_| {}).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let ep = endpoint(&mut c, spec(&receiver.url())).await;

    // Health an earlier version stored as a hash, for the endpoint's current
    // epoch, in an installation that stored health packed only later.
    let mut conn = stack.redis().await;
    let raw: Vec<u8> = conn.get(stack.keys.endpoint(&ep)).await.unwrap();
    let record: EndpointRecord = serde_json::from_slice(&raw).unwrap();
    let failing_since = now_millis() - 1_000;
    let hash = [
        ("circuit", "closed".to_owned()),
        ("consecutiveFailures", "5".to_owned()),
        ("failingSince", failing_since.to_string()),
        ("epoch", herald_dispatch::lifecycle::health_epoch(&record)),
    ];
    let () = conn.hset_multiple(stack.keys.first_layout_health(&ep), &hash).await.unwrap();
    let () = conn.set(stack.keys.packed_health_since(), now_millis() + 60_000).await.unwrap();

    let dispatcher = Dispatcher::start(&stack).await;
    c.dispatch = dispatcher.client().await;
    let shown = health(&mut c, &ep).await;
    assert_eq!(shown.consecutive_failures, 5, "{shown:?}");
    assert_eq!(shown.failing_since.map(|t| t.seconds), Some(failing_since / 1000));

    publish(&mut c, 1).await;
    receiver.wait_for(1, WAIT).await;
    let deadline = Instant::now() + WAIT;
    while stored_failures(&stack, &ep).await != (6, Some(failing_since)) {
        assert!(Instant::now() < deadline, "the count never carried on: {:?}", stored_failures(&stack, &ep).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    dispatcher.stop().await;
    stack.stop().await;
}

#[tokio::test]
async fn fifo_jobs_held_back_survive_a_change_of_dispatcher_in_order() {
    let (stack, mut c) = start_without_dispatch(|env| {
        env.set("HERALD_RETRY_SCHEDULE", ["200ms"; 40].join(","));
    })
    .await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(204)]);
    receiver.respond_with(500);
    let ep = endpoint(&mut c, EndpointSpec { ordering: EndpointOrdering::Fifo as i32, ..spec(&receiver.url()) }).await;

    let first = Dispatcher::start(&stack).await;
    let mut events = Vec::new();
    for n in 1..=5 {
        events.push(publish(&mut c, n).await);
    }
    receiver.wait_for(3, WAIT).await;
    // The failing e2 and the jobs behind it are pending in the stream, not
    // acknowledged and not in the retry set.
    let mut conn = stack.redis().await;
    let p = partition_of(&ep, stack.config.partitions);
    let waiting: usize = redis::cmd("ZCARD").arg(stack.keys.retry_set(p)).query_async(&mut conn).await.unwrap();
    assert_eq!(waiting, 0);
    let pending: redis::Value = redis::cmd("XPENDING")
        .arg(stack.keys.partition_stream(p))
        .arg(herald_common::keys::CONSUMER_GROUP)
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis::Value::Array(summary) = pending else { panic!("{pending:?}") };
    assert!(matches!(summary.first(), Some(redis::Value::Int(n)) if *n >= 4), "{summary:?}");
    first.stop().await;
    let attempts_before = receiver.received().iter().filter(|r| r.header("webhook-id") == Some(&events[1])).count();

    receiver.respond_with(204);
    let second = Dispatcher::start(&stack).await;
    // A new event, read at once by the new owner, must not overtake the old
    // ones: those are claimed only once they have been idle for longer than
    // the delivery timeout (2 s) + 5 s, and fifo waits for that claim.
    events.push(publish(&mut c, 6).await);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ids(&receiver.received()).contains(&events[5]) {
        assert!(Instant::now() < deadline, "the held jobs never arrived: {:?}", ids(&receiver.received()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = ids(&receiver.received());
    // First arrivals of each event: in publish order.
    let mut firsts = Vec::new();
    for id in &got {
        if !firsts.contains(id) {
            firsts.push(id.clone());
        }
    }
    assert_eq!(firsts, events, "first arrivals out of order");
    // After the change: e2 first (its last arrival before e3), then e3..e6 once each.
    let tail = &got[got.len() - 5..];
    assert_eq!(tail, &events[1..], "{got:?}");
    // e2's attempts carried on across the change: 1, 2, ... with no restart.
    c.dispatch = second.client().await;
    let e2 = wait_delivery(&mut c, &events[1], |d| d.attempts.len() == attempts_before + 1).await;
    let numbers: Vec<u32> = e2.attempts.iter().map(|a| a.n).collect();
    assert_eq!(numbers, (1..=numbers.len() as u32).collect::<Vec<_>>(), "{attempts_before} before the change");
    second.stop().await;
    stack.stop().await;
}
