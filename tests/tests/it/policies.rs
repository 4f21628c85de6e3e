//! What an integrator controls per subscription and per endpoint, over
//! REST end to end: filter operators, subscription updates, retry
//! policies, the endpoint-wide pause a receiver's `Retry-After` asks for,
//! and seed 003's list of active callbacks; each also in `/openapi.json`.

use std::time::{Duration, Instant};

use herald_tests::{ADMIN_TOKEN, Receiver, Reply, Stack};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Answer, call, expect};

const WAIT: Duration = Duration::from_secs(15);

/// A `400` problem whose `errors` name exactly `field`.
#[track_caller]
fn expect_invalid(a: &Answer, field: &str, context: &str) {
    expect(a, 400, context);
    let named = a.body["errors"].as_array().is_some_and(|errors| errors.iter().any(|e| e["field"] == field));
    assert!(named, "{context}: no error for {field}: {}", a.raw);
}

async fn setup(types: &[&str]) -> (Stack, String) {
    let stack = Stack::start().await;
    let key = stack.tenant_with_key("acme").await;
    for name in types {
        let a = call(
            &stack,
            ADMIN_TOKEN,
            Method::POST,
            "/v1/event-types",
            Some(json!({"name": name, "description": name})),
        )
        .await;
        expect(&a, 201, "event type");
    }
    (stack, key)
}

async fn endpoint(stack: &Stack, key: &str, body: Value) -> String {
    let a = call(stack, key, Method::POST, "/v1/endpoints", Some(body)).await;
    expect(&a, 201, "endpoint");
    a.body["id"].as_str().unwrap().to_owned()
}

async fn subscribe(stack: &Stack, key: &str, body: Value) -> String {
    let a = call(stack, key, Method::POST, "/v1/subscriptions", Some(body)).await;
    expect(&a, 201, "subscription");
    a.body["id"].as_str().unwrap().to_owned()
}

/// Publishes; answers the number of deliveries the event made.
async fn publish(stack: &Stack, kind: &str, data: Value) -> u64 {
    let body = json!({"tenant": "acme", "type": kind, "data": data});
    let a = call(stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body)).await;
    expect(&a, 202, "publish");
    a.body["deliveries"].as_u64().unwrap()
}

/// The first delivery of `endpoint` in `status`, with its attempts.
async fn settled(stack: &Stack, key: &str, endpoint: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let a =
            call(stack, key, Method::GET, &format!("/v1/deliveries?endpointId={endpoint}&status={status}"), None).await;
        if let Some(id) = a.body["data"].as_array().and_then(|d| d.first()).and_then(|d| d["id"].as_str()) {
            return call(stack, key, Method::GET, &format!("/v1/deliveries/{id}"), None).await.body;
        }
        assert!(Instant::now() < deadline, "no {status} delivery for {endpoint}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn filter_operators_choose_the_events_they_describe() {
    let (stack, key) = setup(&["order.paid"]).await;
    let receiver = Receiver::start().await;
    let ep = endpoint(&stack, &key, json!({"url": receiver.url()})).await;
    let filter = json!({
        "data.amount": {"$gte": 100, "$lt": 1000},
        "data.paidAt": {"$gt": "2026-01-01T00:00:00Z"},
        "$or": [{"data.region": {"$in": ["eu", "uk"]}}, {"data.sku": {"$prefix": "VIP-"}}],
        "data.refund": {"$exists": false},
    });
    subscribe(&stack, &key, json!({"endpointId": ep, "eventTypes": ["order.paid"], "filter": filter})).await;

    let at = "2026-03-01T10:00:00+01:00";
    let cases = [
        (json!({"n": 1, "amount": 250, "paidAt": at, "region": "eu"}), 1),
        (json!({"n": 2, "amount": 99.5, "paidAt": at, "region": "eu"}), 0),
        (json!({"n": 3, "amount": 250, "paidAt": "2025-12-31T23:00:00Z", "region": "uk"}), 0),
        (json!({"n": 4, "amount": 250, "paidAt": at, "region": "us", "sku": "VIP-7"}), 1),
        (json!({"n": 5, "amount": 250, "paidAt": at, "region": "us", "sku": "STD-7"}), 0),
        (json!({"n": 6, "amount": 250, "paidAt": at, "region": "eu", "refund": true}), 0),
        (json!({"n": 7, "amount": "250", "paidAt": at, "region": "eu"}), 0),
    ];
    for (data, want) in &cases {
        assert_eq!(publish(&stack, "order.paid", data.clone()).await, *want, "{data}");
    }
    let got = receiver.wait_for(2, WAIT).await;
    let mut numbers: Vec<u64> = got.iter().map(|r| r.json()["data"]["n"].as_u64().unwrap()).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, [1, 4]);

    // Wrong operators and operands are 400s naming the operator's path.
    let refused = [
        (json!({"data.amount": {"$gt": "soon"}}), "filter.data.amount.$gt"),
        (json!({"data.amount": {"$between": [1, 2]}}), "filter.data.amount.$between"),
        (json!({"data.region": {"$in": "eu"}}), "filter.data.region.$in"),
        (json!({"$or": [{"type": "a"}, {"data.x": {"$exists": "yes"}}]}), "filter.$or[1].data.x.$exists"),
        (json!({"$or": {"type": "a"}}), "filter.$or"),
    ];
    for (filter, field) in refused {
        let body = json!({"endpointId": ep, "eventTypes": ["order.paid"], "filter": filter});
        expect_invalid(&call(&stack, &key, Method::POST, "/v1/subscriptions", Some(body)).await, field, field);
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_patched_subscription_routes_by_its_new_types_and_filter() {
    let (stack, key) = setup(&["order.created", "order.shipped"]).await;
    let receiver = Receiver::start().await;
    let ep = endpoint(&stack, &key, json!({"url": receiver.url()})).await;
    let sub = subscribe(&stack, &key, json!({"endpointId": ep, "eventTypes": ["order.created"]})).await;
    assert_eq!(publish(&stack, "order.created", json!({"n": 1})).await, 1);
    receiver.wait_for(1, WAIT).await;

    let path = format!("/v1/subscriptions/{sub}");
    let patch = json!({"eventTypes": ["order.shipped"], "filter": {"data.carrier": {"$in": ["ups", "dhl"]}}});
    let a = call(&stack, &key, Method::PATCH, &path, Some(patch)).await;
    expect(&a, 200, "patch");
    assert_eq!(a.body["eventTypes"], json!(["order.shipped"]));
    assert_eq!(a.body["filter"], json!({"data.carrier": {"$in": ["ups", "dhl"]}}));
    assert_eq!(a.body["endpointId"], ep.as_str());

    // The next events already follow the change: the old type reaches nobody.
    assert_eq!(publish(&stack, "order.created", json!({"n": 2})).await, 0);
    assert_eq!(publish(&stack, "order.shipped", json!({"n": 3, "carrier": "fedex"})).await, 0);
    assert_eq!(publish(&stack, "order.shipped", json!({"n": 4, "carrier": "ups"})).await, 1);
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["data"]["n"], 4);

    // Absent fields are kept; a null filter removes it.
    let a = call(&stack, &key, Method::PATCH, &path, Some(json!({"filter": null}))).await;
    expect(&a, 200, "drop the filter");
    assert_eq!(a.body["eventTypes"], json!(["order.shipped"]));
    assert!(a.body.get("filter").is_none(), "{}", a.raw);
    assert_eq!(publish(&stack, "order.shipped", json!({"n": 5, "carrier": "fedex"})).await, 1);
    let a = call(&stack, &key, Method::GET, &path, None).await;
    assert_eq!(a.body["eventTypes"], json!(["order.shipped"]));

    // Validated like a create.
    for (patch, field) in [
        (json!({"eventTypes": []}), "eventTypes"),
        (json!({"eventTypes": ["no.such.type"]}), "eventTypes"),
        (json!({"filter": {"data.n": {"$gte": []}}}), "filter.data.n.$gte"),
    ] {
        expect_invalid(&call(&stack, &key, Method::PATCH, &path, Some(patch)).await, field, field);
    }
    expect(&call(&stack, &key, Method::PATCH, &path, Some(json!({"endpointId": "ep_x"}))).await, 400, "read-only");
    let missing = call(&stack, &key, Method::PATCH, "/v1/subscriptions/sub_nope", Some(json!({}))).await;
    expect(&missing, 404, "missing");
    let other = stack.tenant_with_key("globex").await;
    expect(&call(&stack, &other, Method::PATCH, &path, Some(json!({}))).await, 404, "another tenant's");
    stack.stop().await;
}

#[tokio::test]
async fn endpoint_retry_policies_replace_the_schedule() {
    let (stack, key) = setup(&["job.done"]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let once = endpoint(&stack, &key, json!({"url": receiver.url(), "retry": {"maxAttempts": 1}})).await;
    let body = json!({"url": receiver.url(), "retry": {"schedule": ["100ms", "150ms"]}});
    let a = call(&stack, &key, Method::POST, "/v1/endpoints", Some(body)).await;
    expect(&a, 201, "endpoint with a schedule");
    assert_eq!(a.body["retry"], json!({"schedule": ["100ms", "150ms"]}));
    let two_steps = a.body["id"].as_str().unwrap().to_owned();
    for ep in [&once, &two_steps] {
        subscribe(&stack, &key, json!({"endpointId": ep, "eventTypes": ["job.done"]})).await;
    }
    assert_eq!(publish(&stack, "job.done", json!({})).await, 2);

    // The installation's schedule (200ms,400ms,800ms) would make 4 attempts.
    let failed = settled(&stack, &key, &once, "failed").await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 1, "{failed}");
    let failed = settled(&stack, &key, &two_steps, "failed").await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 3, "{failed}");
    assert_eq!(receiver.count(), 4);

    // Shown, changed and cleared by PATCH; bad policies name their field.
    let path = format!("/v1/endpoints/{once}");
    assert_eq!(call(&stack, &key, Method::GET, &path, None).await.body["retry"], json!({"maxAttempts": 1}));
    let a =
        call(&stack, &key, Method::PATCH, &path, Some(json!({"retry": {"schedule": ["1s"], "maxAttempts": 3}}))).await;
    expect(&a, 200, "patch retry");
    assert_eq!(a.body["retry"], json!({"schedule": ["1s"], "maxAttempts": 3}));
    let a = call(&stack, &key, Method::PATCH, &path, Some(json!({"description": "kept"}))).await;
    assert_eq!(a.body["retry"]["maxAttempts"], 3, "{}", a.raw);
    let a = call(&stack, &key, Method::PATCH, &path, Some(json!({"retry": null}))).await;
    expect(&a, 200, "clear retry");
    assert!(a.body.get("retry").is_none(), "{}", a.raw);
    for (retry, field) in [
        (json!({"schedule": ["5s", "1m", "soon"]}), "retry.schedule[2]"),
        (json!({"schedule": ["1ms"]}), "retry.schedule[0]"),
        (json!({"schedule": ["30d"]}), "retry.schedule[0]"),
        (json!({"maxAttempts": 0}), "retry.maxAttempts"),
        (json!({"schedule": vec!["1s"; 33]}), "retry.schedule"),
    ] {
        let a = call(&stack, &key, Method::PATCH, &path, Some(json!({"retry": retry}))).await;
        expect_invalid(&a, field, field);
        let a = call(&stack, &key, Method::POST, "/v1/endpoints", Some(json!({"url": receiver.url(), "retry": retry})))
            .await;
        expect_invalid(&a, field, field);
    }
    stack.stop().await;
}

/// Publishes event `id` of `kind` to tenant `acme`; answers its deliveries.
async fn publish_id(stack: &Stack, kind: &str, id: &str) -> u64 {
    let body = json!({"tenant": "acme", "id": id, "type": kind, "data": {}});
    let a = call(stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body)).await;
    expect(&a, 202, "publish");
    a.body["deliveries"].as_u64().unwrap()
}

/// Once `n` deliveries of `endpoint` are delivered: each one's event id
/// and the status codes of its attempts, by event id.
async fn delivered(stack: &Stack, key: &str, endpoint: &str, n: usize) -> Vec<(String, Vec<u64>)> {
    let deadline = Instant::now() + WAIT;
    let path = format!("/v1/deliveries?endpointId={endpoint}&status=delivered");
    let ids = loop {
        let a = call(stack, key, Method::GET, &path, None).await;
        let ids: Vec<String> =
            a.body["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap().to_owned()).collect();
        if ids.len() >= n {
            break ids;
        }
        assert!(Instant::now() < deadline, "{} of {n} deliveries of {endpoint} delivered", ids.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut all = Vec::new();
    for id in ids {
        let d = call(stack, key, Method::GET, &format!("/v1/deliveries/{id}"), None).await.body;
        let codes = d["attempts"].as_array().unwrap().iter().map(|a| a["statusCode"].as_u64().unwrap()).collect();
        all.push((d["eventId"].as_str().unwrap().to_owned(), codes));
    }
    all.sort();
    all
}

/// A `429` with `Retry-After: 2` pauses the whole endpoint, not only the
/// delivery that got it: the jobs queued behind it and a job published
/// during the pause wait in the endpoint's actor without an attempt, and
/// everything goes out once the pause is over.
#[tokio::test]
async fn retry_after_pauses_the_whole_endpoint() {
    let (stack, key) = setup(&["job.done"]).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(429).header("retry-after", "2")]);
    // One attempt at a time, so the 429 is back before the next one could start.
    let ep = endpoint(&stack, &key, json!({"url": receiver.url(), "maxInFlight": 1})).await;
    subscribe(&stack, &key, json!({"endpointId": ep, "eventTypes": ["job.done"]})).await;
    for id in ["job-1", "job-2", "job-3"] {
        assert_eq!(publish_id(&stack, "job.done", id).await, 1);
    }
    settled(&stack, &key, &ep, "retrying").await;
    assert_eq!(publish_id(&stack, "job.done", "job-4").await, 1);

    let got = receiver.wait_for(5, WAIT).await;
    let paused_at = got[0].at;
    for r in &got[1..] {
        let after = r.at - paused_at;
        assert!(after >= Duration::from_millis(1500), "{} was sent {after:?} after the 429", r.json()["id"]);
    }
    // The delivery that got the 429 was tried again; the others only once.
    let first = got[0].json()["id"].as_str().unwrap().to_owned();
    let attempts = delivered(&stack, &key, &ep, 4).await;
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    for (event, codes) in attempts {
        let want: &[u64] = if event == first { &[429, 204] } else { &[204] };
        assert_eq!(codes, want, "attempts of {event}");
    }
    assert_eq!(receiver.count(), 5);
    stack.stop().await;
}

/// The pause is cut to `HERALD_RETRY_AFTER_MAX` like the retry it comes
/// with: an hour asked for is a second here, then everything goes out.
#[tokio::test]
async fn a_retry_after_pause_ends_at_the_cap() {
    let stack = Stack::start_with(|env| env.set("HERALD_RETRY_AFTER_MAX", "1s")).await;
    let key = stack.tenant_with_key("acme").await;
    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/event-types", Some(json!({"name": "job.done"}))).await;
    expect(&a, 201, "event type");
    let receiver = Receiver::start().await;
    receiver.script([Reply::status(503).header("retry-after", "3600")]);
    let ep = endpoint(&stack, &key, json!({"url": receiver.url(), "maxInFlight": 1})).await;
    subscribe(&stack, &key, json!({"endpointId": ep, "eventTypes": ["job.done"]})).await;
    for id in ["job-1", "job-2"] {
        assert_eq!(publish_id(&stack, "job.done", id).await, 1);
    }
    let got = receiver.wait_for(3, WAIT).await;
    let after = got[1].at - got[0].at;
    assert!(after >= Duration::from_millis(900) && after < Duration::from_secs(5), "sent {after:?} after the 503");
    assert_eq!(delivered(&stack, &key, &ep, 2).await.len(), 2);
    stack.stop().await;
}

#[tokio::test]
async fn seed_003_lists_only_active_callbacks() {
    let catalog = herald_tests::workspace_root().join("deploy/catalog");
    let stack = Stack::start_with(|env| env.set("HERALD_CATALOG_DIR", catalog.display().to_string())).await;
    let partner = "p-1";
    let key = stack.tenant_with_key(partner).await;
    let receiver = Receiver::start().await;
    let base = format!("/partners/{partner}/callbacks");
    for code in [1, 2, 3] {
        let a =
            call(&stack, &key, Method::PUT, &format!("{base}/{code}"), Some(json!({"callbackUrl": receiver.url()})))
                .await;
        expect(&a, 200, "callback");
    }
    let codes = |a: &Answer| -> Vec<u64> {
        a.body.as_array().unwrap().iter().map(|c| c["notificationType"].as_u64().unwrap()).collect()
    };
    assert_eq!(codes(&call(&stack, &key, Method::GET, &base, None).await), [1, 2, 3]);

    // The callbacks are /v1 endpoints (`s003.{code}.{partner}`): deactivate one there.
    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/s003.2.{partner}/deactivate"), None).await;
    expect(&a, 200, "deactivate");
    let a = call(&stack, &key, Method::GET, &base, None).await;
    expect(&a, 200, "list");
    assert_eq!(codes(&a), [1, 3]);
    assert!(a.body.as_array().unwrap().iter().all(|c| c["status"] == "active"), "{}", a.raw);
    assert_eq!(codes(&call(&stack, &key, Method::GET, &format!("{base}?offset=1&limit=5"), None).await), [3]);
    // A PUT makes it active again.
    let a = call(&stack, &key, Method::PUT, &format!("{base}/2"), Some(json!({"callbackUrl": receiver.url()}))).await;
    expect(&a, 200, "put again");
    assert_eq!(codes(&call(&stack, &key, Method::GET, &base, None).await), [1, 2, 3]);
    stack.stop().await;
}

#[tokio::test]
async fn openapi_documents_the_new_fields_and_routes() {
    let stack = Stack::start().await;
    let a = call(&stack, ADMIN_TOKEN, Method::GET, "/openapi.json", None).await;
    expect(&a, 200, "openapi");
    let doc = &a.body;
    assert!(doc["paths"]["/v1/subscriptions/{id}"]["patch"].is_object(), "PATCH /v1/subscriptions/{{id}}");
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["SubscriptionPatch"]["properties"]["eventTypes"].is_object());
    assert!(schemas["SubscriptionPatch"]["properties"]["filter"].is_object());
    assert!(schemas["RetryPolicy"]["properties"]["schedule"].is_object());
    assert!(schemas["RetryPolicy"]["properties"]["maxAttempts"].is_object());
    for schema in ["EndpointInput", "EndpointPatch", "Endpoint"] {
        assert!(schemas[schema]["properties"]["retry"].is_object(), "{schema}.retry");
    }
    let filter_doc = schemas["SubscriptionInput"]["properties"]["filter"].to_string();
    assert!(filter_doc.contains("$gte") && filter_doc.contains("$or"), "{filter_doc}");
    let list = doc["paths"]["/partners/{partnerUniqueID}/callbacks"]["get"].to_string();
    assert!(list.contains("active callbacks"), "{list}");
    stack.stop().await;
}
