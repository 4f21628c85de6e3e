//! The dispatcher end to end over real gRPC and real HTTP: delivery and its
//! records, retries with a stable `webhook-id`, exhaustion and manual retry,
//! recovery, fan-out, filters, `410`, `Retry-After`, tenant isolation,
//! trace propagation, and (with real processes) no loss when a dispatcher is
//! killed while another takes over its partitions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_proto::v1::dispatch_client::DispatchClient;
use herald_proto::v1::registry_client::RegistryClient;
use herald_proto::v1::{
    CreateEndpointRequest, CreateSubscriptionRequest, CreateTenantRequest, Delivery, DeliveryRef, DeliveryStatus,
    EndpointHealthRequest, EndpointRef, EndpointSpec, EndpointStatus, EventType, ListDeliveriesRequest, PageRequest,
    PublishBatchRequest, PublishRequest, RecoverEndpointRequest, TestEndpointRequest,
};
use herald_tests::{Receiver, Reply, Services, Stack};
use tonic::Code;
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(20);

struct Clients {
    registry: RegistryClient<Channel>,
    dispatch: DispatchClient<Channel>,
}

async fn start() -> (Stack, Clients) {
    let stack = Stack::start_services(Services { registry: true, dispatch: true, gateway: false }).await;
    let clients = Clients {
        registry: RegistryClient::new(stack.registry_channel().await),
        dispatch: DispatchClient::new(stack.dispatch_channel().await),
    };
    (stack, clients)
}

async fn setup_tenant(c: &mut Clients, tenant: &str) {
    c.registry.create_tenant(CreateTenantRequest { id: tenant.into(), name: tenant.into() }).await.unwrap();
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

async fn endpoint_with(c: &mut Clients, tenant: &str, spec: EndpointSpec, filter: Option<serde_json::Value>) -> String {
    let created = c
        .registry
        .create_endpoint(CreateEndpointRequest { tenant: tenant.into(), spec: Some(spec), id: String::new() })
        .await
        .unwrap()
        .into_inner();
    let id = created.endpoint.unwrap().id;
    c.registry
        .create_subscription(CreateSubscriptionRequest {
            tenant: tenant.into(),
            endpoint_id: id.clone(),
            event_types: vec!["order.created".into()],
            filter: filter.map(|f| f.to_string().into_bytes()).unwrap_or_default(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    id
}

async fn endpoint(c: &mut Clients, tenant: &str, url: &str) -> String {
    endpoint_with(c, tenant, EndpointSpec { url: url.into(), ..Default::default() }, None).await
}

fn event(tenant: &str, resource: Option<serde_json::Value>) -> PublishRequest {
    PublishRequest {
        tenant: tenant.into(),
        id: String::new(),
        r#type: "order.created".into(),
        resource: resource.map(|r| r.to_string().into_bytes()).unwrap_or_default(),
        data: br#"{"orderId":"o-1"}"#.to_vec(),
        time: None,
        ..Default::default()
    }
}

/// Publishes one event; answers its id and the number of deliveries.
async fn publish(c: &mut Clients, request: PublishRequest) -> (String, u32) {
    let answer = c.registry.publish(request).await.unwrap().into_inner();
    (answer.id, answer.deliveries)
}

async fn deliveries_of_event(c: &mut Clients, tenant: &str, event_id: &str) -> Vec<Delivery> {
    c.dispatch
        .list_deliveries(ListDeliveriesRequest {
            tenant: tenant.into(),
            event_id: event_id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .deliveries
}

/// Waits until the event's only delivery satisfies `done`; answers it with attempts.
/// One page of a tenant's deliveries and the cursor of the next (empty at the end).
async fn deliveries_page(c: &mut Clients, tenant: &str, limit: u32, cursor: &str) -> (Vec<Delivery>, String) {
    let page = c
        .dispatch
        .list_deliveries(ListDeliveriesRequest {
            tenant: tenant.into(),
            page: Some(PageRequest { limit, cursor: cursor.to_owned() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (page.deliveries, page.page.unwrap().next_cursor)
}

async fn wait_delivery(c: &mut Clients, tenant: &str, event_id: &str, done: impl Fn(&Delivery) -> bool) -> Delivery {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = deliveries_of_event(c, tenant, event_id).await;
        if let Some(d) = found.first() {
            let full = c
                .dispatch
                .get_delivery(DeliveryRef { tenant: tenant.into(), id: d.id.clone() })
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

fn status(d: &Delivery) -> DeliveryStatus {
    DeliveryStatus::try_from(d.status).unwrap()
}

#[tokio::test]
async fn delivers_signed_traced_and_recorded() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    let ep = endpoint(&mut c, "acme", &receiver.url()).await;
    let (event_id, deliveries) = publish(&mut c, event("acme", None)).await;
    assert_eq!(deliveries, 1);

    let got = receiver.wait_for(1, WAIT).await;
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.header("webhook-id"), Some(event_id.as_str()));
    assert!(request.header("webhook-signature").unwrap().starts_with("v1,"));
    let body = request.json();
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(body["data"]["orderId"], "o-1");
    let traceparent = request.header("traceparent").expect("traceparent header");
    assert_eq!(traceparent.split('-').count(), 4, "{traceparent}");

    let d = wait_delivery(&mut c, "acme", &event_id, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d.endpoint_id, ep);
    assert_eq!(d.event_type, "order.created");
    assert_eq!(d.attempt_count, 1);
    assert_eq!(d.attempts.len(), 1);
    assert_eq!(d.attempts[0].status_code, 204);
    assert!(d.created_at.is_some() && d.updated_at.is_some());

    // Lists: by endpoint, by status, and tenant isolation.
    let by_endpoint = c
        .dispatch
        .list_deliveries(ListDeliveriesRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            status: DeliveryStatus::Delivered as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_endpoint.deliveries.len(), 1);
    assert!(by_endpoint.deliveries[0].attempts.is_empty(), "attempts only on GetDelivery");
    let failed = c
        .dispatch
        .list_deliveries(ListDeliveriesRequest {
            tenant: "acme".into(),
            status: DeliveryStatus::Failed as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(failed.deliveries.is_empty());
    let other = c.dispatch.get_delivery(DeliveryRef { tenant: "other".into(), id: d.id.clone() }).await.unwrap_err();
    assert_eq!(other.code(), Code::NotFound);
    assert!(deliveries_of_event(&mut c, "other", &event_id).await.is_empty());
    let health = c
        .dispatch
        .get_endpoint_health(EndpointHealthRequest { tenant: "acme".into(), endpoint_id: ep.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(health.circuit, "closed");
    assert!(health.last_success_at.is_some());
    let hidden = c
        .dispatch
        .get_endpoint_health(EndpointHealthRequest { tenant: "other".into(), endpoint_id: ep })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn retries_keep_the_webhook_id_until_delivered() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(500).body("boom"), Reply::status(503)]);
    endpoint(&mut c, "acme", &receiver.url()).await;
    let (event_id, _) = publish(&mut c, event("acme", None)).await;

    let got = receiver.wait_for(3, WAIT).await;
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert_eq!(ids, HashSet::from([event_id.as_str()]));
    // 200 ms then 400 ms (±20 %) between attempts.
    assert!(got[1].at - got[0].at >= Duration::from_millis(150), "{:?}", got[1].at - got[0].at);
    let d = wait_delivery(&mut c, "acme", &event_id, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d.attempt_count, 3);
    let codes: Vec<u32> = d.attempts.iter().map(|a| a.status_code).collect();
    assert_eq!(codes, [500, 503, 204]);
    assert_eq!(d.attempts[0].response_body, "boom");
    assert_eq!(d.attempts[0].error, "endpoint answered status 500");
    assert_eq!(d.attempts.iter().map(|a| a.n).collect::<Vec<_>>(), [1, 2, 3]);
    stack.stop().await;
}

#[tokio::test]
async fn exhausted_deliveries_fail_then_retry_and_recover_by_hand() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let ep = endpoint(&mut c, "acme", &receiver.url()).await;
    let (first, _) = publish(&mut c, event("acme", None)).await;
    let (second, _) = publish(&mut c, event("acme", None)).await;

    // A schedule of three delays: four attempts, then failed.
    let d = wait_delivery(&mut c, "acme", &first, |d| status(d) == DeliveryStatus::Failed).await;
    assert_eq!(d.attempt_count, 4);
    assert_eq!(d.attempts.len(), 4);
    assert!(d.next_attempt_at.is_none());
    wait_delivery(&mut c, "acme", &second, |d| status(d) == DeliveryStatus::Failed).await;
    assert_eq!(receiver.count(), 8);

    receiver.respond_with(200);
    let retried = c.dispatch.retry_delivery(DeliveryRef { tenant: "acme".into(), id: d.id.clone() }).await.unwrap();
    assert_eq!(status(&retried.into_inner()), DeliveryStatus::Pending);
    let d = wait_delivery(&mut c, "acme", &first, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d.attempt_count, 5);
    assert_eq!(d.attempts.last().unwrap().status_code, 200);
    let retry_other =
        c.dispatch.retry_delivery(DeliveryRef { tenant: "other".into(), id: d.id.clone() }).await.unwrap_err();
    assert_eq!(retry_other.code(), Code::NotFound);

    // Recovery sends every failed delivery of the endpoint again: only the second.
    let recovered = c
        .dispatch
        .recover_endpoint(RecoverEndpointRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            since: herald_proto::convert::timestamp(0),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recovered.recovered, 1);
    let d2 = wait_delivery(&mut c, "acme", &second, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d2.attempt_count, 5);
    let got = receiver.wait_for(10, WAIT).await;
    assert!(got.iter().all(|r| {
        let id = r.header("webhook-id").unwrap();
        id == first || id == second
    }));
    let hidden = c
        .dispatch
        .recover_endpoint(RecoverEndpointRequest { tenant: "other".into(), endpoint_id: ep, since: None })
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    stack.stop().await;
}

#[tokio::test]
async fn one_event_fans_out_to_fifty_endpoints() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    for i in 0..50 {
        endpoint(&mut c, "acme", &format!("{}?n={i}", receiver.url())).await;
    }
    let (event_id, deliveries) = publish(&mut c, event("acme", None)).await;
    assert_eq!(deliveries, 50);
    let got = receiver.wait_for(50, WAIT).await;
    let paths: HashSet<&str> = got.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths.len(), 50);
    assert!(got.iter().all(|r| r.header("webhook-id") == Some(event_id.as_str())));
    let deadline = Instant::now() + WAIT;
    loop {
        let all = deliveries_of_event(&mut c, "acme", &event_id).await;
        if all.len() == 50 && all.iter().all(|d| status(d) == DeliveryStatus::Delivered) {
            break;
        }
        assert!(Instant::now() < deadline, "only {} of 50 delivered", all.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Pages of 20, newest first, neither losing nor repeating.
    let mut seen = HashSet::new();
    let mut cursor = String::new();
    loop {
        let (deliveries, next) = deliveries_page(&mut c, "acme", 20, &cursor).await;
        for d in &deliveries {
            assert!(seen.insert(d.id.clone()), "repeated {}", d.id);
        }
        cursor = next;
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen.len(), 50);
    // Pages of 25: the second page is the last and says so.
    let mut cursor = String::new();
    for (n, expect_more) in [(25, true), (25, false)] {
        let (deliveries, next) = deliveries_page(&mut c, "acme", 25, &cursor).await;
        assert_eq!(deliveries.len(), n);
        cursor = next;
        assert_eq!(!cursor.is_empty(), expect_more, "cursor {cursor:?}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn filters_choose_the_endpoints() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    let spec = |url: String| EndpointSpec { url, ..Default::default() };
    endpoint_with(&mut c, "acme", spec(a.url()), Some(serde_json::json!({"resource.org": "a"}))).await;
    endpoint_with(&mut c, "acme", spec(b.url()), Some(serde_json::json!({"resource.org": "b"}))).await;
    let (_, deliveries) = publish(&mut c, event("acme", Some(serde_json::json!({"org": "a"})))).await;
    assert_eq!(deliveries, 1);
    a.wait_for(1, WAIT).await;
    let (_, deliveries) = publish(&mut c, event("acme", Some(serde_json::json!({"org": "b"})))).await;
    assert_eq!(deliveries, 1);
    b.wait_for(1, WAIT).await;
    assert_eq!((a.count(), b.count()), (1, 1));
    stack.stop().await;
}

/// A delivery that waits (here behind a rate limit of one a second) is
/// listed as `pending`, with no attempt, before it is tried; then it settles
/// as usual and never turns back to pending.
#[tokio::test]
async fn held_back_deliveries_are_listed_as_pending() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    let spec = EndpointSpec { url: receiver.url(), rate_limit_per_second: Some(1), ..Default::default() };
    endpoint_with(&mut c, "acme", spec, None).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(publish(&mut c, event("acme", None)).await.0);
    }
    // The third may start no sooner than two seconds after the first.
    let pending = wait_delivery(&mut c, "acme", &events[2], |d| status(d) == DeliveryStatus::Pending).await;
    assert_eq!(pending.attempt_count, 0, "{pending:?}");
    assert!(pending.attempts.is_empty(), "{pending:?}");
    assert_eq!(pending.event_type, "order.created");
    assert!(pending.created_at.is_some() && pending.updated_at.is_some(), "{pending:?}");
    // Its attempt is queued: a manual retry now would send it twice.
    let refused =
        c.dispatch.retry_delivery(DeliveryRef { tenant: "acme".into(), id: pending.id.clone() }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    for event_id in &events {
        let d = wait_delivery(&mut c, "acme", event_id, |d| status(d) == DeliveryStatus::Delivered).await;
        assert_eq!(d.attempt_count, 1, "{d:?}");
    }
    receiver.wait_for(3, WAIT).await;
    // Settled records stay settled, and nothing was sent twice.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 3);
    for event_id in &events {
        let found = deliveries_of_event(&mut c, "acme", event_id).await;
        assert_eq!(found.len(), 1);
        assert_eq!(status(&found[0]), DeliveryStatus::Delivered, "{found:?}");
    }
    stack.stop().await;
}

#[tokio::test]
async fn gone_disables_the_endpoint_and_stops_retries() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    receiver.respond_with(410);
    let ep = endpoint(&mut c, "acme", &receiver.url()).await;
    let (event_id, _) = publish(&mut c, event("acme", None)).await;
    let d = wait_delivery(&mut c, "acme", &event_id, |d| status(d) == DeliveryStatus::Failed).await;
    assert_eq!(d.attempt_count, 1);
    let deadline = Instant::now() + WAIT;
    loop {
        let got =
            c.registry.get_endpoint(EndpointRef { tenant: "acme".into(), id: ep.clone() }).await.unwrap().into_inner();
        if got.status == EndpointStatus::Disabled as i32 {
            assert_eq!(got.disabled_reason, "gone");
            break;
        }
        assert!(Instant::now() < deadline, "endpoint never disabled: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, deliveries) = publish(&mut c, event("acme", None)).await;
    assert_eq!(deliveries, 0, "a disabled endpoint gets nothing new");
    assert_eq!(receiver.count(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn retry_after_is_respected() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429).header("retry-after", "2")]);
    endpoint(&mut c, "acme", &receiver.url()).await;
    let (event_id, _) = publish(&mut c, event("acme", None)).await;
    let got = receiver.wait_for(2, WAIT).await;
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_secs(2), "waited only {waited:?}");
    let d = wait_delivery(&mut c, "acme", &event_id, |d| status(d) == DeliveryStatus::Delivered).await;
    assert_eq!(d.attempts[0].status_code, 429);
    stack.stop().await;
}

#[tokio::test]
async fn test_sends_answer_the_attempt() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let receiver = Receiver::start().await;
    let ep = endpoint(&mut c, "acme", &receiver.url()).await;
    let answer = c
        .dispatch
        .test_endpoint(TestEndpointRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            event_type: "order.created".into(),
            data: br#"{"hello":"world"}"#.to_vec(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.delivered, "{answer:?}");
    assert_eq!(answer.status_code, 204);
    assert_eq!(receiver.received()[0].json()["data"]["hello"], "world");
    receiver.respond_with(500);
    let answer = c
        .dispatch
        .test_endpoint(TestEndpointRequest {
            tenant: "acme".into(),
            endpoint_id: ep.clone(),
            event_type: "order.created".into(),
            data: Vec::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.delivered);
    assert_eq!((answer.status_code, answer.error.as_str()), (500, "endpoint answered status 500"));
    let bad = c
        .dispatch
        .test_endpoint(TestEndpointRequest {
            tenant: "acme".into(),
            endpoint_id: ep,
            event_type: "order.created".into(),
            data: b"{nope".to_vec(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    stack.stop().await;
}

#[tokio::test]
async fn a_slow_endpoint_does_not_hold_up_another() {
    let (stack, mut c) = start().await;
    setup_tenant(&mut c, "acme").await;
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    slow.respond_with_reply(Reply::status(200).delay(Duration::from_millis(1500)));
    let spec = |url: String, max_in_flight| EndpointSpec { url, max_in_flight, ..Default::default() };
    endpoint_with(&mut c, "acme", spec(slow.url(), Some(2)), None).await;
    let started = Instant::now();
    for _ in 0..6 {
        publish(&mut c, event("acme", None)).await;
    }
    endpoint_with(&mut c, "acme", spec(fast.url(), None), None).await;
    publish(&mut c, event("acme", None)).await;
    fast.wait_for(1, WAIT).await;
    assert!(started.elapsed() < Duration::from_millis(1400), "the fast endpoint waited {:?}", started.elapsed());
    slow.wait_for(7, WAIT).await;
    assert!(slow.max_in_flight() <= 2, "maxInFlight exceeded: {}", slow.max_in_flight());
    assert_eq!(slow.max_in_flight(), 2, "attempts run concurrently up to maxInFlight");
    stack.stop().await;
}

// ------------------------------------------------------------ real processes

/// A `herald-dispatch` process of this stack, killed when dropped.
struct DispatchProcess {
    child: Child,
}

impl DispatchProcess {
    fn spawn(stack: &Stack) -> DispatchProcess {
        let mut env = herald_tests::base_env(&stack.prefix);
        env.set("HERALD_REGISTRY_URL", stack.registry_url.clone());
        let pairs = [
            "HERALD_REDIS_URL",
            "HERALD_REDIS_PREFIX",
            "HERALD_SECRET_KEY",
            "HERALD_ADMIN_TOKEN",
            "HERALD_ALLOW_PRIVATE_NETWORKS",
            "HERALD_ALLOW_HTTP",
            "HERALD_PARTITIONS",
            "HERALD_DELIVERY_TIMEOUT_MS",
            "HERALD_RETRY_SCHEDULE",
            "HERALD_REGISTRY_URL",
        ];
        let mut command = Command::new(herald_tests::binary("herald-dispatch"));
        command.env_clear();
        for key in pairs {
            command.env(key, env.get(key).unwrap_or_default());
        }
        command
            .env("HERALD_DISPATCH_LISTEN", format!("127.0.0.1:{}", herald_tests::free_port()))
            .env("HERALD_DISPATCH_ADMIN_LISTEN", format!("127.0.0.1:{}", herald_tests::free_port()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        DispatchProcess { child: command.spawn().unwrap() }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DispatchProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Publishes `n` events to one endpoint each of `endpoints`, in batches.
async fn publish_many(c: &mut Clients, n: usize) -> HashSet<String> {
    let mut ids = HashSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(50) {
        let events = chunk.iter().map(|_| event("acme", None)).collect();
        let answer = c.registry.publish_batch(PublishBatchRequest { events }).await.unwrap().into_inner();
        for r in answer.results {
            ids.insert(r.id);
        }
    }
    ids
}

/// Waits until every id in `expected` reached every receiver.
async fn wait_all(receivers: &[Receiver], expected: &HashSet<String>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let missing: usize = receivers
            .iter()
            .map(|r| {
                let seen: HashSet<String> =
                    r.received().iter().filter_map(|x| x.header("webhook-id").map(str::to_owned)).collect();
                expected.difference(&seen).count()
            })
            .sum();
        if missing == 0 {
            return;
        }
        let total = expected.len() * receivers.len();
        assert!(Instant::now() < deadline, "{missing} of {total} deliveries never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn killing_a_dispatcher_loses_nothing_and_a_survivor_takes_over() {
    let stack = Stack::start_services(Services::REGISTRY).await;
    let mut c = Clients {
        registry: RegistryClient::new(stack.registry_channel().await),
        dispatch: DispatchClient::new(stack.registry_channel().await),
    };
    setup_tenant(&mut c, "acme").await;
    // Endpoints spread over the partitions; slow answers keep work in flight.
    let mut receivers = Vec::new();
    for _ in 0..4 {
        let r = Receiver::start().await;
        r.respond_with_reply(Reply::status(200).delay(Duration::from_millis(20)));
        endpoint(&mut c, "acme", &r.url()).await;
        receivers.push(r);
    }
    let mut first = DispatchProcess::spawn(&stack);
    let _second = DispatchProcess::spawn(&stack);
    // The two share the partitions.
    let mut conn = stack.redis().await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    loop {
        let mut owners = HashSet::new();
        for p in 0..stack.config.partitions {
            let owner: Option<String> =
                redis::cmd("GET").arg(stack.keys.partition_lease(p)).query_async(&mut conn).await.unwrap();
            owners.extend(owner);
        }
        if owners.len() == 2 {
            eprintln!("partitions shared after {:?}", started.elapsed());
            break;
        }
        assert!(Instant::now() < deadline, "partitions never shared: {owners:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let expected = publish_many(&mut c, 75).await;
    assert_eq!(expected.len(), 75);
    // Kill one dispatcher mid-way: some deliveries made, many not.
    let deadline = Instant::now() + WAIT;
    while receivers.iter().map(Receiver::count).sum::<usize>() < 40 {
        assert!(Instant::now() < deadline, "dispatchers never started delivering");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill();
    // 300 deliveries in all (75 events x 4 endpoints) must arrive, the dead
    // dispatcher's share through the survivor once its leases run out.
    let all: HashSet<String> = expected.clone();
    wait_all(&receivers, &all, Duration::from_secs(60)).await;
    let total: usize = receivers
        .iter()
        .map(|r| {
            let ids: HashSet<String> =
                r.received().iter().filter_map(|x| x.header("webhook-id").map(str::to_owned)).collect();
            assert_eq!(ids.len(), 75, "every event reached every endpoint");
            ids.len()
        })
        .sum();
    assert_eq!(total, 300);
    stack.stop().await;
}
