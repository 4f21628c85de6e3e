//! Bounds that keep one receiver or one tenant from hurting everyone else:
//! a receiver's `Retry-After` is capped by `HERALD_RETRY_AFTER_MAX`, a
//! tenant's endpoints and subscriptions by the per-tenant quotas, an
//! `envelope` batch by `HERALD_MAX_BATCH_BYTES`, and listing deliveries by
//! another tenant's endpoint tells nothing about that tenant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use herald_common::time_fmt::{parse_rfc3339, to_millis};
use herald_tests::{Receiver, Reply, Stack};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{EVENT_TYPE, send, subscribed_endpoint, tenant_with_event_type as tenant};

const WAIT: Duration = Duration::from_secs(15);

/// An endpoint subscribed to every event type; answers its id.
async fn endpoint(stack: &Stack, key: &str, spec: Value) -> String {
    subscribed_endpoint(stack, key, spec, &["*"]).await
}

async fn publish(stack: &Stack, tenant: &str, data: Value) {
    let (status, body) =
        stack.admin_post("/v1/events", json!({"tenant": tenant, "type": EVENT_TYPE, "data": data})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

/// The endpoint's deliveries page, as its tenant lists it.
async fn deliveries(stack: &Stack, key: &str, endpoint_id: &str) -> Value {
    let (status, body) =
        send(stack.tenant(key, Method::GET, &format!("/v1/deliveries?endpointId={endpoint_id}"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Polls the endpoint's first delivery until `done` holds.
async fn wait_delivery(stack: &Stack, key: &str, endpoint_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = deliveries(stack, key, endpoint_id).await;
        if let Some(d) = page["data"].get(0).filter(|d| done(d)) {
            return d.clone();
        }
        assert!(Instant::now() < deadline, "delivery of {endpoint_id} never got there: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn millis(rfc3339: &Value) -> i64 {
    to_millis(parse_rfc3339(rfc3339.as_str().unwrap()).unwrap())
}

/// Every service still answers `/healthz`.
async fn all_alive(stack: &Stack) {
    for url in [&stack.registry_admin_url, &stack.dispatch_admin_url, &stack.gateway_url] {
        let response = stack.http.get(format!("{url}/healthz")).send().await.unwrap();
        assert!(response.status().is_success(), "{url}/healthz answered {}", response.status());
    }
}

/// A receiver answering `429` or `503` with a delay of 2^64 - 1 seconds or a
/// date in the year 9999, for a plain and a `fifo` endpoint: nothing panics,
/// the next attempt is due exactly `HERALD_RETRY_AFTER_MAX` after the
/// attempt, the endpoint is paused, and deliveries to other endpoints go on.
#[tokio::test]
async fn a_huge_retry_after_is_capped_and_harms_nothing() {
    let stack = Stack::start_with(|env| env.set("HERALD_RETRY_AFTER_MAX", "30s")).await;
    let key = tenant(&stack, "acme").await;
    let answers = [
        Reply::status(429).header("retry-after", "18446744073709551615"),
        Reply::status(503).header("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
    ];
    let mut cases = Vec::new();
    for reply in answers {
        for ordering in ["none", "fifo"] {
            let receiver = Receiver::start().await;
            receiver.respond_with_reply(reply.clone());
            let id = endpoint(&stack, &key, json!({"url": receiver.url(), "ordering": ordering})).await;
            cases.push((receiver, id, ordering, reply.status));
        }
    }
    publish(&stack, "acme", json!({"n": 1})).await;
    for (receiver, id, ordering, status) in &cases {
        receiver.wait_for(1, WAIT).await;
        let d = wait_delivery(&stack, &key, id, |d| d["status"] == "retrying" && d["nextAttemptAt"].is_string()).await;
        let path = format!("/v1/deliveries/{}", d["id"].as_str().unwrap());
        let (code, d) = send(stack.tenant(&key, Method::GET, &path)).await;
        assert_eq!(code, StatusCode::OK, "{d}");
        let attempted = millis(&d["attempts"][0]["at"]);
        let wait = millis(&d["nextAttemptAt"]) - attempted;
        assert!(
            (29_000..=30_000).contains(&wait),
            "{ordering} endpoint answered {status}: next attempt in {wait} ms: {d}"
        );
    }
    all_alive(&stack).await;
    let healthy = Receiver::start().await;
    endpoint(&stack, &key, json!({"url": healthy.url()})).await;
    publish(&stack, "acme", json!({"n": 2})).await;
    healthy.wait_for(1, WAIT).await;
    for (receiver, _, ordering, _) in &cases {
        // Each of them asked for a pause (cut to the 30 s cap) that holds
        // every delivery to it, fifo or not: the second event waits.
        assert_eq!(receiver.count(), 1, "a paused {ordering} endpoint was sent the second event");
    }
    all_alive(&stack).await;
    stack.stop().await;
}

/// An `envelope` endpoint whose queue holds more than one body may carry
/// under `HERALD_MAX_BATCH_BYTES`: every body stays within the bound except
/// one holding a single event bigger than it, batches still form, and every
/// event arrives once.
#[tokio::test]
async fn envelope_batches_stop_before_the_byte_bound() {
    const MAX_BYTES: usize = 2048;
    let stack = Stack::start_with(|env| env.set("HERALD_MAX_BATCH_BYTES", MAX_BYTES.to_string())).await;
    let key = tenant(&stack, "acme").await;
    let receiver = Receiver::start().await;
    let spec = json!({"url": receiver.url(), "format": "envelope", "maxBatchSize": 50, "maxInFlight": 1});
    let id = endpoint(&stack, &key, spec).await;

    // The first request is held, so everything published next queues behind it.
    receiver.hold();
    publish(&stack, "acme", json!({"n": 0})).await;
    receiver.wait_for(1, WAIT).await;
    let blob = "x".repeat(400);
    let mut expected = 1;
    for n in 1..=12 {
        publish(&stack, "acme", json!({"n": n, "blob": blob})).await;
        expected += 1;
        if n == 6 {
            publish(&stack, "acme", json!({"n": 100, "blob": "y".repeat(3 * MAX_BYTES)})).await;
            expected += 1;
        }
    }
    let deadline = Instant::now() + WAIT;
    while deliveries(&stack, &key, &id).await["data"].as_array().unwrap().len() < expected {
        assert!(Instant::now() < deadline, "the deliveries were never read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    receiver.release();

    let deadline = Instant::now() + WAIT;
    let bodies = loop {
        let bodies: Vec<Value> = receiver.received().iter().map(|r| r.json()).collect();
        let events: usize = bodies.iter().map(|b| b["messages"].as_array().unwrap().len()).sum();
        if events >= expected {
            break bodies;
        }
        assert!(Instant::now() < deadline, "{events} of {expected} events arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut seen = Vec::new();
    for (request, body) in receiver.received().iter().zip(&bodies) {
        let messages = body["messages"].as_array().unwrap();
        assert!(
            request.body.len() <= MAX_BYTES || messages.len() == 1,
            "{} bytes with {} events",
            request.body.len(),
            messages.len()
        );
        if messages.iter().any(|m| m["data"]["n"] == 100) {
            assert_eq!(messages.len(), 1, "the oversized event goes alone");
        }
        seen.extend(messages.iter().map(|m| m["data"]["n"].as_i64().unwrap()));
    }
    assert!(bodies.iter().any(|b| b["messages"].as_array().unwrap().len() > 1), "no batch formed: {bodies:?}");
    seen.sort_unstable();
    let mut want: Vec<i64> = (0..=12).chain([100]).collect();
    want.sort_unstable();
    assert_eq!(seen, want);
    stack.stop().await;
}

async fn create(stack: &Stack, key: &str, path: &str, body: Value) -> (StatusCode, Value, String) {
    let response = stack.tenant(key, Method::POST, path).json(&body).send().await.unwrap();
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = herald_tests::json_answer(response).await;
    (status, body, content_type.unwrap_or_default())
}

/// Past `HERALD_MAX_ENDPOINTS_PER_TENANT` or
/// `HERALD_MAX_SUBSCRIPTIONS_PER_TENANT` a creation is `409` problem+json
/// naming the limit; the count is per tenant, frees up on delete, and holds
/// when creations race.
#[tokio::test]
async fn tenant_quotas_bound_endpoints_and_subscriptions() {
    let stack = Stack::start_with(|env| {
        env.set("HERALD_MAX_ENDPOINTS_PER_TENANT", "2");
        env.set("HERALD_MAX_SUBSCRIPTIONS_PER_TENANT", "3");
    })
    .await;
    let key = tenant(&stack, "acme").await;
    let url = "http://127.0.0.1:9/hook";
    let first = endpoint(&stack, &key, json!({"url": url})).await;
    let (status, body, _) = create(&stack, &key, "/v1/endpoints", json!({"url": url})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let second = body["id"].as_str().unwrap().to_owned();
    let (status, body, content_type) = create(&stack, &key, "/v1/endpoints", json!({"url": url})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains("HERALD_MAX_ENDPOINTS_PER_TENANT"), "{body}");

    // Another tenant has its own count.
    let other = tenant(&stack, "globex").await;
    endpoint(&stack, &other, json!({"url": url})).await;

    // One subscription exists (on `first`); two more fit, a fourth does not.
    let sub = json!({"endpointId": second, "eventTypes": [EVENT_TYPE]});
    for _ in 0..2 {
        let (status, body, _) = create(&stack, &key, "/v1/subscriptions", sub.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body, content_type) = create(&stack, &key, "/v1/subscriptions", sub.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert!(body["detail"].as_str().unwrap().contains("HERALD_MAX_SUBSCRIPTIONS_PER_TENANT"), "{body}");

    // Deleting frees room (the endpoint's subscription goes with it).
    let (status, _) = herald_tests::json_answer(
        stack.tenant(&key, Method::DELETE, &format!("/v1/endpoints/{first}")).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body, _) = create(&stack, &key, "/v1/subscriptions", sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Racing creations cannot pass the quota together: one slot is left.
    let racers = (0..8).map(|_| create(&stack, &key, "/v1/endpoints", json!({"url": url})));
    let statuses: Vec<StatusCode> = futures::future::join_all(racers).await.into_iter().map(|(s, _, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{statuses:?}");
    stack.stop().await;
}

/// More deliveries of one endpoint than one listing call reads (25 chunks
/// of 200), all of tenant `acme`: another tenant listing by that
/// endpoint gets an empty page and no cursor, while the endpoint exists and
/// after it is deleted (its deliveries stay until retention ends), and `acme`
/// itself still pages through them.
#[tokio::test]
async fn listing_by_another_tenants_endpoint_reveals_nothing() {
    let stack = Stack::start().await;
    let acme = tenant(&stack, "acme").await;
    let globex = tenant(&stack, "globex").await;
    let receiver = Receiver::start().await;
    let id = endpoint(&stack, &acme, json!({"url": receiver.url()})).await;
    publish(&stack, "acme", json!({"n": 1})).await;
    let real = wait_delivery(&stack, &acme, &id, |d| d["status"] == "delivered").await;

    // A busy endpoint: copies of the real delivery record under 5,200 more
    // ids (same creation time, so the same hour bucket).
    let mut conn = stack.redis().await;
    let real_id = real["id"].as_str().unwrap();
    let shard = stack.keys.endpoint_shard(&id);
    let bucket = stack.keys.delivery_bucket(shard, herald_dispatch::records::bucket_of(real_id).unwrap());
    let state: Vec<u8> = redis::cmd("HGET").arg(&bucket).arg(real_id).query_async(&mut conn).await.unwrap();
    let copies: Vec<String> = (0..5_200).map(|n| format!("{}{n:05}", &real_id[..real_id.len() - 5])).collect();
    let mut pipe = redis::pipe();
    pipe.cmd("HSET")
        .arg(&bucket)
        .arg(copies.iter().flat_map(|c| [c.as_bytes(), state.as_slice()]).collect::<Vec<_>>())
        .ignore();
    // Listed with the real one: their ids follow it in the stored event.
    let listed: Vec<u8> =
        copies.iter().flat_map(|c| herald_common::stored_event::delivery_id_bytes(c).unwrap()).collect();
    pipe.cmd("APPEND").arg(stack.keys.event("acme", real["eventId"].as_str().unwrap())).arg(listed).ignore();
    let () = pipe.query_async(&mut conn).await.unwrap();

    let foreign = |status: &str| format!("/v1/deliveries?endpointId={id}&status={status}");
    for (when, path) in [("live", format!("/v1/deliveries?endpointId={id}")), ("live, filtered", foreign("failed"))] {
        let (status, body) = send(stack.tenant(&globex, Method::GET, &path)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"], json!([]), "{when}: {body}");
        assert!(body.get("nextCursor").is_none_or(Value::is_null), "{when}: a cursor from acme's endpoint: {body}");
    }

    let (status, page) =
        send(stack.tenant(&acme, Method::GET, &format!("/v1/deliveries?endpointId={id}&limit=10"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 10, "{page}");
    assert!(page["nextCursor"].is_string(), "acme pages through its own: {page}");

    let (status, _) = herald_tests::json_answer(
        stack.tenant(&acme, Method::DELETE, &format!("/v1/endpoints/{id}")).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (when, path) in
        [("deleted", format!("/v1/deliveries?endpointId={id}")), ("deleted, filtered", foreign("failed"))]
    {
        let (status, body) = send(stack.tenant(&globex, Method::GET, &path)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"], json!([]), "{when}: {body}");
        assert!(body.get("nextCursor").is_none_or(Value::is_null), "{when}: a cursor from acme's endpoint: {body}");
    }
    stack.stop().await;
}

/// Records of the first layout, as an earlier version stored them: events
/// with an `h1` header and no delivery ids, JSON states, and the tenant's
/// listing index. Two such events whose deliveries were made in the same
/// millisecond are each listed with their own delivery once, beside a
/// delivery of today's layout, by tenant, by event and by endpoint.
#[tokio::test]
async fn deliveries_stored_by_the_first_layout_are_still_listed() {
    let stack = Stack::start().await;
    let acme = tenant(&stack, "acme").await;
    let receiver = Receiver::start().await;
    let id = endpoint(&stack, &acme, json!({"url": receiver.url()})).await;
    publish(&stack, "acme", json!({"n": 1})).await;
    let current = wait_delivery(&stack, &acme, &id, |d| d["status"] == "delivered").await;

    let mut conn = stack.redis().await;
    let partition = herald_common::keys::partition_of(&id, stack.config.partitions);
    let shard = stack.keys.endpoint_shard(&id);
    let published = herald_common::time_fmt::now_millis() - 60_000;
    let mut pipe = redis::pipe();
    let mut old = Vec::new();
    for event in ["old-1", "old-2"] {
        let delivery = herald_common::ids::delivery_id_made_at(partition, published);
        let body = json!({"id": event, "type": EVENT_TYPE, "timestamp": "2026-01-01T00:00:00.000Z", "data": {}});
        pipe.set(stack.keys.event("acme", event), format!("h1 1 {published} 0\n{body}")).ignore();
        pipe.cmd("XADD").arg(stack.keys.tenant_events("acme")).arg("*").arg("t").arg(EVENT_TYPE).arg("i").arg(event);
        pipe.ignore();
        pipe.cmd("ZADD").arg(stack.keys.first_layout_deliveries(shard, "acme")).arg(0).arg(&delivery).ignore();
        let state = json!([
            1,
            1,
            1,
            published + 5,
            null,
            0,
            "acme",
            id,
            event,
            EVENT_TYPE,
            null,
            null,
            [1, null, 204, 5, null, "", null]
        ]);
        let bucket = stack.keys.delivery_bucket(shard, herald_dispatch::records::bucket_of(&delivery).unwrap());
        pipe.hset(bucket, &delivery, state.to_string()).ignore();
        old.push((event, delivery));
    }
    let () = pipe.query_async(&mut conn).await.unwrap();

    let listed = |page: &Value| -> Vec<(String, String)> {
        let data = page["data"].as_array().unwrap();
        data.iter().map(|d| (d["eventId"].as_str().unwrap().into(), d["id"].as_str().unwrap().into())).collect()
    };
    let (status, page) = send(stack.tenant(&acme, Method::GET, "/v1/deliveries")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut want: Vec<(String, String)> = old.iter().map(|(e, d)| ((*e).to_owned(), d.clone())).collect();
    want.insert(0, (current["eventId"].as_str().unwrap().into(), current["id"].as_str().unwrap().into()));
    let mut got = listed(&page);
    got.sort();
    want.sort();
    assert_eq!(got, want, "by tenant: {page}");
    assert_eq!(listed(&deliveries(&stack, &acme, &id).await).len(), 3, "by endpoint");
    let (status, page) = send(stack.tenant(&acme, Method::GET, "/v1/deliveries?eventId=old-2")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(listed(&page), vec![("old-2".to_owned(), old[1].1.clone())], "by event: {page}");
    let (status, one) = send(stack.tenant(&acme, Method::GET, &format!("/v1/deliveries/{}", old[0].1))).await;
    assert_eq!((status, &one["status"]), (StatusCode::OK, &json!("delivered")), "{one}");
    stack.stop().await;
}

/// With `HERALD_SUCCESS_RETENTION` shorter than the event retention, a
/// delivered delivery's state lives in its hour's delivered bucket, which
/// expires that much sooner, and leaves the main bucket; a retrying one
/// stays in the main bucket. Both read back whole, a delivered one can
/// still be sent again by hand, and a replay may not reach back past the
/// success retention (it would send what was delivered again).
#[tokio::test]
async fn delivered_records_keep_the_success_retention() {
    let stack = Stack::start_with(|env| env.set("HERALD_SUCCESS_RETENTION", "1h")).await;
    let key = tenant(&stack, "acme").await;
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.respond_with(500);
    let good_endpoint = endpoint(&stack, &key, json!({"url": good.url()})).await;
    let bad_endpoint = endpoint(&stack, &key, json!({"url": bad.url()})).await;
    publish(&stack, "acme", json!({"n": 1})).await;
    let delivered = wait_delivery(&stack, &key, &good_endpoint, |d| d["status"] == "delivered").await;
    let retrying = wait_delivery(&stack, &key, &bad_endpoint, |d| d["status"] == "retrying").await;
    let (delivered_id, retrying_id) = (delivered["id"].as_str().unwrap(), retrying["id"].as_str().unwrap());

    let mut conn = stack.redis().await;
    let hour = herald_dispatch::records::bucket_of(delivered_id).unwrap();
    let shard = stack.keys.endpoint_shard(&good_endpoint);
    let (main, kept) = (stack.keys.delivery_bucket(shard, hour), stack.keys.delivered_bucket(shard, hour));
    let holds = |key: &str, id: &str| redis::cmd("HEXISTS").arg(key).arg(id).to_owned();
    let in_kept: bool = holds(&kept, delivered_id).query_async(&mut conn).await.unwrap();
    let in_main: bool = holds(&main, delivered_id).query_async(&mut conn).await.unwrap();
    assert!(in_kept && !in_main, "a delivered state is in the delivered bucket only");
    let main_shard = stack.keys.endpoint_shard(&bad_endpoint);
    let retrying_bucket =
        stack.keys.delivery_bucket(main_shard, herald_dispatch::records::bucket_of(retrying_id).unwrap());
    let retrying_kept: bool = holds(&retrying_bucket, retrying_id).query_async(&mut conn).await.unwrap();
    assert!(retrying_kept, "a retrying state stays in the main bucket");
    let ttl = |key: &str| redis::cmd("PTTL").arg(key).to_owned();
    let kept_ms: i64 = ttl(&kept).query_async(&mut conn).await.unwrap();
    let main_ms: i64 = ttl(&retrying_bucket).query_async(&mut conn).await.unwrap();
    let hours = |h: i64| h * 3_600_000;
    assert!(kept_ms > hours(1) - 60_000 && kept_ms <= hours(2), "delivered: {kept_ms} ms left");
    assert!(main_ms > hours(72), "retrying: {main_ms} ms left");

    let (status, read) = send(stack.tenant(&key, Method::GET, &format!("/v1/deliveries/{delivered_id}"))).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!((read["status"].as_str(), read["attempts"].as_array().map(Vec::len)), (Some("delivered"), Some(1)));
    assert!(read["attempts"][0]["request"]["headers"].is_array(), "{read}");

    let (status, body) = send(stack.tenant(&key, Method::POST, &format!("/v1/deliveries/{delivered_id}/retry"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    good.wait_for(2, WAIT).await;
    let again =
        wait_delivery(&stack, &key, &good_endpoint, |d| d["attemptCount"] == 2 && d["status"] == "delivered").await;
    assert_eq!(again["id"], delivered["id"]);
    let in_kept: bool = holds(&kept, delivered_id).query_async(&mut conn).await.unwrap();
    let in_main: bool = holds(&main, delivered_id).query_async(&mut conn).await.unwrap();
    assert!(in_kept && !in_main, "delivered again, it is back in the delivered bucket only");

    // A replay reaches back no further than delivered records are kept.
    let replay = |minutes_ago: i64| {
        let since = herald_common::time_fmt::from_millis(herald_common::time_fmt::now_millis() - minutes_ago * 60_000);
        let body = json!({"since": herald_common::time_fmt::rfc3339(since)});
        stack.tenant(&key, Method::POST, &format!("/v1/endpoints/{good_endpoint}/replay")).json(&body)
    };
    let (status, body) = send(replay(120)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("HERALD_SUCCESS_RETENTION"), "{body}");
    let (status, body) = send(replay(30)).await;
    assert_eq!((status, &body["count"]), (StatusCode::ACCEPTED, &json!(0)), "it has the event already: {body}");
    stack.stop().await;
}
