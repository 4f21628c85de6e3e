//! The REST gateway, black box over real HTTP: every canonical `/v1` route's
//! success and failure answers, roles and tenant isolation, pagination,
//! problem+json, the OpenAPI document, rate limits, metrics and what happens
//! when an upstream service is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::{Duration, Instant};

use herald_tests::{ADMIN_TOKEN, Receiver, Services, Stack};
use reqwest::Method;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

/// One answer: status, content type, selected headers and the JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    body: Value,
    raw: String,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned).unwrap_or_default();
    let raw = response.text().await.unwrap();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer { status, content_type, headers, body, raw }
}

/// `method path` as `token` with an optional JSON body.
async fn call(stack: &Stack, token: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = stack.http.request(method, stack.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    send(request).await
}

#[track_caller]
fn expect(a: &Answer, status: u16, context: &str) {
    assert_eq!(a.status, status, "{context}: {}", a.raw);
    if status >= 400 {
        assert!(
            a.content_type.starts_with("application/problem+json"),
            "{context}: content-type {:?}: {}",
            a.content_type,
            a.raw
        );
        assert_eq!(a.body["status"], status, "{context}: {}", a.raw);
        for member in ["type", "title", "detail"] {
            assert!(a.body[member].is_string(), "{context}: no {member}: {}", a.raw);
        }
    }
}

/// A `400` naming `field` in `errors`.
#[track_caller]
fn expect_invalid(a: &Answer, field: &str, context: &str) {
    expect(a, 400, context);
    let errors = a.body["errors"].as_array().unwrap_or_else(|| panic!("{context}: no errors: {}", a.raw));
    assert!(
        errors.iter().any(|e| e["field"].as_str().is_some_and(|f| f == field || f.starts_with(&format!("{field}.")))
            && e["message"].is_string()),
        "{context}: no error for {field}: {}",
        a.raw
    );
}

async fn event_type(stack: &Stack, name: &str, schema: Option<Value>) {
    let mut body = json!({"name": name, "description": format!("{name} happened")});
    if let Some(schema) = schema {
        body["schema"] = schema;
    }
    let a = call(stack, ADMIN_TOKEN, Method::POST, "/v1/event-types", Some(body)).await;
    expect(&a, 201, "create event type");
}

async fn endpoint(stack: &Stack, key: &str, url: &str) -> String {
    let a = call(stack, key, Method::POST, "/v1/endpoints", Some(json!({"url": url}))).await;
    expect(&a, 201, "create endpoint");
    a.body["id"].as_str().unwrap().to_owned()
}

/// Waits until the delivery list of `endpoint` has an entry in `status`.
async fn wait_for_delivery(stack: &Stack, key: &str, endpoint: &str, status: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let a =
            call(stack, key, Method::GET, &format!("/v1/deliveries?endpointId={endpoint}&status={status}"), None).await;
        expect(&a, 200, "list deliveries");
        if let Some(first) = a.body["data"].as_array().and_then(|d| d.first()) {
            return first.clone();
        }
        assert!(Instant::now() < deadline, "no {status} delivery for {endpoint}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.ends_with('Z') && s.len() >= 20 && s.as_bytes()[10] == b'T')
}

// ---------------------------------------------------------------- walk-through

/// The README sequence: tenant, key, event type, endpoint, subscription,
/// publish; the receiver gets the event and the delivery history shows it.
#[tokio::test]
async fn readme_walkthrough() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;

    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/tenants", Some(json!({"id": "acme", "name": "Acme"}))).await;
    expect(&a, 201, "create tenant");
    assert_eq!(a.body["id"], "acme");
    assert_eq!(a.body["name"], "Acme");
    assert!(is_rfc3339(&a.body["createdAt"]), "{}", a.raw);

    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/tenants/acme/api-keys", Some(json!({"name": "ci"}))).await;
    expect(&a, 201, "create api key");
    let key = a.body["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("hk_"), "{}", a.raw);
    assert!(a.body["id"].as_str().unwrap().starts_with("key_"), "{}", a.raw);
    assert!(is_rfc3339(&a.body["createdAt"]));

    let schema = json!({"type": "object", "required": ["orderId"], "properties": {"orderId": {"type": "string"}}});
    event_type(&stack, "order.shipped", Some(schema.clone())).await;

    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/endpoints",
        Some(json!({"url": receiver.url(), "description": "orders"})),
    )
    .await;
    expect(&a, 201, "create endpoint");
    let ep = a.body["id"].as_str().unwrap().to_owned();
    assert!(ep.starts_with("ep_"));
    assert!(a.body["secret"].as_str().unwrap().starts_with("whsec_"), "{}", a.raw);
    assert_eq!(a.headers["location"], format!("/v1/endpoints/{ep}").as_str());

    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/subscriptions",
        Some(json!({"endpointId": ep, "eventTypes": ["order.shipped"]})),
    )
    .await;
    expect(&a, 201, "create subscription");
    assert!(a.body["id"].as_str().unwrap().starts_with("sub_"));

    let a = call(
        &stack,
        ADMIN_TOKEN,
        Method::POST,
        "/v1/events",
        Some(json!({"tenant": "acme", "type": "order.shipped", "data": {"orderId": "o-1"}})),
    )
    .await;
    expect(&a, 202, "publish");
    assert_eq!(a.body["deliveries"], 1, "{}", a.raw);
    let event_id = a.body["id"].as_str().unwrap().to_owned();

    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["type"], "order.shipped");
    assert_eq!(body["data"]["orderId"], "o-1");

    let delivery = wait_for_delivery(&stack, &key, &ep, "delivered").await;
    assert_eq!(delivery["eventId"], event_id.as_str());
    assert_eq!(delivery["endpointId"], ep.as_str());
    assert_eq!(delivery["eventType"], "order.shipped");
    let a =
        call(&stack, &key, Method::GET, &format!("/v1/deliveries/{}", delivery["id"].as_str().unwrap()), None).await;
    expect(&a, 200, "get delivery");
    let attempt = &a.body["attempts"][0];
    assert_eq!(attempt["n"], 1, "{}", a.raw);
    assert_eq!(attempt["statusCode"], 204, "{}", a.raw);
    assert!(attempt["latencyMs"].is_u64() && is_rfc3339(&attempt["at"]), "{}", a.raw);

    // The catalogue is visible to the tenant, schema included.
    let a = call(&stack, &key, Method::GET, "/v1/event-types", None).await;
    expect(&a, 200, "catalogue");
    let shipped = a.body["data"].as_array().unwrap().iter().find(|t| t["name"] == "order.shipped").cloned();
    assert_eq!(shipped.unwrap_or_default()["schema"], schema);
    stack.stop().await;
}

// ---------------------------------------------------------------- tenants and keys

#[tokio::test]
async fn tenants_and_api_keys() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let admin = ADMIN_TOKEN;
    let a = call(&stack, admin, Method::POST, "/v1/tenants", Some(json!({"id": "t1", "name": "One"}))).await;
    expect(&a, 201, "create");
    let a = call(&stack, admin, Method::POST, "/v1/tenants", Some(json!({"id": "t1", "name": "Again"}))).await;
    expect(&a, 409, "duplicate tenant");
    let a = call(&stack, admin, Method::POST, "/v1/tenants", Some(json!({"id": "bad id!", "name": "x"}))).await;
    expect_invalid(&a, "id", "invalid tenant id");
    let a = call(&stack, admin, Method::POST, "/v1/tenants", Some(json!({"name": "x"}))).await;
    expect_invalid(&a, "id", "missing id");
    let a = call(&stack, admin, Method::POST, "/v1/tenants", Some(json!({"id": "t9", "name": "x", "extra": 1}))).await;
    expect_invalid(&a, "extra", "unknown field");

    let a = call(&stack, admin, Method::GET, "/v1/tenants/t1", None).await;
    expect(&a, 200, "get");
    assert_eq!(a.body["name"], "One");
    expect(&call(&stack, admin, Method::GET, "/v1/tenants/nope", None).await, 404, "missing tenant");

    // Keys: created, used, revoked; revocation through the gateway is immediate.
    let a = call(&stack, admin, Method::POST, "/v1/tenants/t1/api-keys", Some(json!({"name": "k"}))).await;
    expect(&a, 201, "create key");
    let (key, key_id) = (a.body["key"].as_str().unwrap().to_owned(), a.body["id"].as_str().unwrap().to_owned());
    expect(&call(&stack, &key, Method::GET, "/v1/endpoints", None).await, 200, "key works");
    expect(
        &call(&stack, admin, Method::POST, "/v1/tenants/nope/api-keys", Some(json!({"name": "k"}))).await,
        404,
        "key of missing tenant",
    );
    let a = call(&stack, admin, Method::DELETE, &format!("/v1/tenants/t1/api-keys/{key_id}"), None).await;
    expect(&a, 204, "revoke");
    assert!(a.raw.is_empty());
    expect(&call(&stack, &key, Method::GET, "/v1/endpoints", None).await, 401, "revoked key");
    expect(&call(&stack, admin, Method::DELETE, "/v1/tenants/t1/api-keys/key_nope", None).await, 404, "revoke missing");

    // Tenant keys are not admins.
    let key = stack.tenant_with_key("t2").await;
    let a = call(&stack, &key, Method::POST, "/v1/tenants", Some(json!({"id": "t3", "name": "x"}))).await;
    expect(&a, 403, "tenant key creating a tenant");
    expect(&call(&stack, &key, Method::GET, "/v1/tenants/t2", None).await, 403, "tenant key reading a tenant");
    expect(
        &call(&stack, &key, Method::POST, "/v1/tenants/t2/api-keys", Some(json!({}))).await,
        403,
        "tenant key making keys",
    );

    let a = call(&stack, admin, Method::DELETE, "/v1/tenants/t2", None).await;
    expect(&a, 204, "delete tenant");
    expect(&call(&stack, admin, Method::GET, "/v1/tenants/t2", None).await, 404, "deleted tenant");
    expect(&call(&stack, &key, Method::GET, "/v1/endpoints", None).await, 401, "key of a deleted tenant");
    stack.stop().await;
}

#[tokio::test]
async fn credentials_are_required_and_checked() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let url = stack.url("/v1/event-types");
    for (what, request) in [
        ("none", stack.http.get(&url)),
        ("wrong admin token", stack.http.get(&url).bearer_auth("nope")),
        ("unknown key", stack.http.get(&url).bearer_auth("hk_unknown")),
        ("basic", stack.http.get(&url).basic_auth("admin", Some(ADMIN_TOKEN))),
        ("empty bearer", stack.http.get(&url).header("authorization", "Bearer ")),
    ] {
        expect(&send(request).await, 401, what);
    }
    stack.stop().await;

    // Without HERALD_ADMIN_TOKEN the admin API is off.
    let stack =
        Stack::start_services_with(Services::REGISTRY_AND_GATEWAY, |env| env.set("HERALD_ADMIN_TOKEN", "")).await;
    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/tenants", Some(json!({"id": "a", "name": "a"}))).await;
    expect(&a, 401, "admin disabled");
    stack.stop().await;
}

// ---------------------------------------------------------------- event types and events

#[tokio::test]
async fn event_types_catalogue() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let key = stack.tenant_with_key("acme").await;
    let body = json!({"name": "user.signup", "description": "a user signed up", "code": 7,
        "schema": {"type": "object", "properties": {"email": {"type": "string"}}}});
    let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/event-types", Some(body.clone())).await;
    expect(&a, 201, "create");
    assert_eq!(a.body["name"], "user.signup");
    assert_eq!(a.body["code"], 7);
    assert!(is_rfc3339(&a.body["createdAt"]) && is_rfc3339(&a.body["updatedAt"]), "{}", a.raw);
    expect(&call(&stack, ADMIN_TOKEN, Method::POST, "/v1/event-types", Some(body)).await, 409, "duplicate");
    let a =
        call(&stack, ADMIN_TOKEN, Method::POST, "/v1/event-types", Some(json!({"name": "x", "schema": {"type": 5}})))
            .await;
    expect_invalid(&a, "schema", "invalid schema");
    let a = call(&stack, &key, Method::POST, "/v1/event-types", Some(json!({"name": "mine"}))).await;
    expect(&a, 403, "tenant key writing the catalogue");

    for token in [key.as_str(), ADMIN_TOKEN] {
        let a = call(&stack, token, Method::GET, "/v1/event-types", None).await;
        expect(&a, 200, "list");
        // Beside the operational types every installation has.
        let names: Vec<&str> = a.body["data"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(
            names,
            ["herald.delivery.failed", "herald.endpoint.disabled", "herald.endpoint.token_failed", "user.signup"]
        );
        assert!(a.body["nextCursor"].is_null());
        let a = call(&stack, token, Method::GET, "/v1/event-types/user.signup", None).await;
        expect(&a, 200, "get");
        assert_eq!(a.body["schema"]["properties"]["email"]["type"], "string");
    }
    expect(&call(&stack, &key, Method::GET, "/v1/event-types/nope", None).await, 404, "missing");

    let a = call(&stack, ADMIN_TOKEN, Method::PUT, "/v1/event-types/user.signup", Some(json!({"description": "new"})))
        .await;
    expect(&a, 200, "update");
    assert_eq!(a.body["description"], "new");
    let a = call(&stack, ADMIN_TOKEN, Method::PUT, "/v1/event-types/user.signup", Some(json!({"name": "other"}))).await;
    expect_invalid(&a, "name", "rename");
    expect(
        &call(&stack, ADMIN_TOKEN, Method::PUT, "/v1/event-types/nope", Some(json!({}))).await,
        404,
        "update missing",
    );
    expect(&call(&stack, &key, Method::DELETE, "/v1/event-types/user.signup", None).await, 403, "tenant delete");
    expect(&call(&stack, ADMIN_TOKEN, Method::DELETE, "/v1/event-types/user.signup", None).await, 204, "delete");
    expect(&call(&stack, ADMIN_TOKEN, Method::GET, "/v1/event-types/user.signup", None).await, 404, "deleted");
    stack.stop().await;
}

#[tokio::test]
async fn publishing_events() {
    let stack = Stack::start_with(|env| env.set("HERALD_MAX_EVENT_BYTES", "2048")).await;
    let key = stack.tenant_with_key("acme").await;
    let schema = json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}});
    event_type(&stack, "tick", Some(schema)).await;

    let publish = |body: Value| call(&stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body));
    let a = publish(json!({"tenant": "acme", "id": "evt-1", "type": "tick", "data": {"n": 1},
        "resource": {"org": "x"}, "time": "2024-05-07T19:18:32Z"}))
    .await;
    expect(&a, 202, "publish");
    assert_eq!(a.body["id"], "evt-1");
    assert_eq!(a.body["deliveries"], 0, "no subscriptions yet: {}", a.raw);
    let a = publish(json!({"tenant": "acme", "id": "evt-1", "type": "tick", "data": {"n": 1}})).await;
    expect(&a, 202, "duplicate publish");
    assert_eq!(a.body["duplicate"], true, "{}", a.raw);

    expect_invalid(&publish(json!({"tenant": "acme", "type": "tick", "data": {"n": "one"}})).await, "data", "schema");
    expect_invalid(&publish(json!({"tenant": "acme", "type": "tick"})).await, "data", "no data");
    expect_invalid(
        &publish(json!({"tenant": "acme", "type": "tick", "data": {"n": 1}, "time": "soon"})).await,
        "time",
        "time",
    );
    let a = publish(json!({"tenant": "acme", "type": "nope", "data": {}})).await;
    assert!(a.status == 400 || a.status == 404, "unknown type: {}", a.raw);
    expect(&a, a.status, "unknown type");
    let a = publish(json!({"tenant": "acme", "type": "tick", "data": {"pad": "x".repeat(4096)}})).await;
    expect(&a, 413, "oversize event");
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/events",
        Some(json!({"tenant": "acme", "type": "tick", "data": {"n": 1}})),
    )
    .await;
    expect(&a, 403, "tenant key publishing");
    stack.stop().await;
}

// ---------------------------------------------------------------- endpoints

#[tokio::test]
async fn endpoint_lifecycle() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let key = stack.tenant_with_key("acme").await;
    let body = json!({
        "url": "http://127.0.0.1:9/hook",
        "description": "d",
        "auth": {"type": "oauth2_client_credentials", "tokenUrl": "http://127.0.0.1:9/token", "clientId": "cid",
                 "clientSecret": "very-secret", "scope": "events", "clientAuth": "post"},
        "format": "cloudevents",
        "headers": {"x-team": "payments"},
        "rateLimitPerSecond": 10,
        "maxInFlight": 2,
        "ordering": "fifo",
        "metadata": {"k": "v"}
    });
    let a = call(&stack, &key, Method::POST, "/v1/endpoints", Some(body)).await;
    expect(&a, 201, "create");
    let id = a.body["id"].as_str().unwrap().to_owned();
    let secret = a.body["secret"].as_str().unwrap().to_owned();
    assert!(!a.raw.contains("very-secret"), "{}", a.raw);
    assert_eq!(
        a.body["auth"],
        json!({"type": "oauth2_client_credentials", "tokenUrl": "http://127.0.0.1:9/token", "clientId": "cid",
               "scope": "events", "clientAuth": "post"})
    );
    for (field, value) in [
        ("url", json!("http://127.0.0.1:9/hook")),
        ("format", json!("cloudevents")),
        ("ordering", json!("fifo")),
        ("rateLimitPerSecond", json!(10)),
        ("maxInFlight", json!(2)),
        ("headers", json!({"x-team": "payments"})),
        ("metadata", json!({"k": "v"})),
        ("status", json!("active")),
    ] {
        assert_eq!(a.body[field], value, "{field}: {}", a.raw);
    }

    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{id}"), None).await;
    expect(&a, 200, "get");
    assert!(a.body.get("secret").is_none() && !a.raw.contains("very-secret"), "{}", a.raw);
    assert!(is_rfc3339(&a.body["createdAt"]) && is_rfc3339(&a.body["updatedAt"]));

    let a = call(
        &stack,
        &key,
        Method::PATCH,
        &format!("/v1/endpoints/{id}"),
        Some(json!({"description": "changed", "auth": {"type": "basic", "username": "u", "password": "p"},
                    "rateLimitPerSecond": null})),
    )
    .await;
    expect(&a, 200, "patch");
    assert_eq!(a.body["description"], "changed");
    assert_eq!(a.body["auth"], json!({"type": "basic", "username": "u"}));
    assert!(a.body.get("rateLimitPerSecond").is_none(), "{}", a.raw);
    assert_eq!(a.body["format"], "cloudevents", "untouched fields stay: {}", a.raw);
    let a = call(&stack, &key, Method::PATCH, &format!("/v1/endpoints/{id}"), Some(json!({"format": "xml"}))).await;
    expect_invalid(&a, "format", "unknown format");
    let a = call(&stack, &key, Method::PATCH, &format!("/v1/endpoints/{id}"), Some(json!({"url": "ftp://x"}))).await;
    expect_invalid(&a, "url", "bad url");

    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/{id}/deactivate"), None).await;
    expect(&a, 200, "deactivate");
    assert_eq!(a.body["status"], "deactivated");
    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/{id}/activate"), None).await;
    expect(&a, 200, "activate");
    assert_eq!(a.body["status"], "active");

    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{id}/secret"), None).await;
    expect(&a, 200, "secret");
    assert_eq!(a.body, json!({"secret": secret}));
    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/{id}/secret/rotate"), None).await;
    expect(&a, 200, "rotate");
    let rotated = a.body["secret"].as_str().unwrap();
    assert!(rotated.starts_with("whsec_") && rotated != secret);

    // Admins act for a tenant with ?tenant=, and must name one.
    expect(
        &call(&stack, ADMIN_TOKEN, Method::GET, &format!("/v1/endpoints/{id}?tenant=acme"), None).await,
        200,
        "admin",
    );
    let a = call(&stack, ADMIN_TOKEN, Method::GET, &format!("/v1/endpoints/{id}"), None).await;
    expect_invalid(&a, "tenant", "admin without tenant");

    let a = call(&stack, &key, Method::DELETE, &format!("/v1/endpoints/{id}"), None).await;
    expect(&a, 204, "delete");
    for (method, path) in [
        (Method::GET, format!("/v1/endpoints/{id}")),
        (Method::DELETE, format!("/v1/endpoints/{id}")),
        (Method::POST, format!("/v1/endpoints/{id}/activate")),
        (Method::GET, format!("/v1/endpoints/{id}/secret")),
    ] {
        expect(&call(&stack, &key, method.clone(), &path, None).await, 404, &format!("{method} {path} after delete"));
    }

    // Invalid bodies name their fields.
    for (body, field) in [
        (json!({}), "url"),
        (json!({"url": "http://127.0.0.1:9/", "format": "xml"}), "format"),
        (json!({"url": "http://127.0.0.1:9/", "ordering": "random"}), "ordering"),
        (json!({"url": "http://127.0.0.1:9/", "auth": {"type": "magic"}}), "auth"),
        (json!({"url": "http://127.0.0.1:9/", "auth": {"type": "basic", "username": "u"}}), "auth"),
        (json!({"url": "http://127.0.0.1:9/", "rateLimitPerSecond": "fast"}), "rateLimitPerSecond"),
        (json!({"url": "http://127.0.0.1:9/", "headers": {"x": 1}}), "headers"),
        (json!({"url": "http://127.0.0.1:9/", "colour": "red"}), "colour"),
        (json!({"url": "not a url"}), "url"),
    ] {
        let a = call(&stack, &key, Method::POST, "/v1/endpoints", Some(body.clone())).await;
        expect_invalid(&a, field, &format!("{body}"));
    }
    stack.stop().await;
}

#[tokio::test]
async fn test_send_and_recover() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let key = stack.tenant_with_key("acme").await;
    event_type(&stack, "ping", None).await;
    let id = endpoint(&stack, &key, &receiver.url()).await;

    let a = call(
        &stack,
        &key,
        Method::POST,
        &format!("/v1/endpoints/{id}/test"),
        Some(json!({"eventType": "ping", "data": {"hello": "world"}})),
    )
    .await;
    expect(&a, 200, "test send");
    assert_eq!(a.body["delivered"], true, "{}", a.raw);
    assert_eq!(a.body["statusCode"], 204, "{}", a.raw);
    assert!(a.body["latencyMs"].is_u64(), "{}", a.raw);
    assert!(a.body["error"].is_null(), "{}", a.raw);
    let got = receiver.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["data"]["hello"], "world");

    receiver.respond_with(500);
    let a = call(
        &stack,
        &key,
        Method::POST,
        &format!("/v1/endpoints/{id}/test"),
        Some(json!({"eventType": "ping", "data": {}})),
    )
    .await;
    expect(&a, 200, "failing test send");
    assert_eq!(a.body["delivered"], false, "{}", a.raw);
    assert_eq!(a.body["statusCode"], 500, "{}", a.raw);

    let a = call(&stack, &key, Method::POST, "/v1/endpoints/ep_nope/test", Some(json!({"eventType": "ping"}))).await;
    expect(&a, 404, "test of a missing endpoint");
    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/{id}/test"), Some(json!({"data": {}}))).await;
    expect_invalid(&a, "eventType", "test without event type");

    let a = call(
        &stack,
        &key,
        Method::POST,
        &format!("/v1/endpoints/{id}/recover"),
        Some(json!({"since": "2024-01-01T00:00:00Z"})),
    )
    .await;
    expect(&a, 202, "recover");
    assert!(a.body["recovered"].is_u64(), "{}", a.raw);
    let a =
        call(&stack, &key, Method::POST, &format!("/v1/endpoints/{id}/recover"), Some(json!({"since": "last week"})))
            .await;
    expect_invalid(&a, "since", "recover with a bad time");
    stack.stop().await;
}

// ---------------------------------------------------------------- subscriptions

#[tokio::test]
async fn subscriptions() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let key = stack.tenant_with_key("acme").await;
    event_type(&stack, "a.b", None).await;
    let ep1 = endpoint(&stack, &key, "http://127.0.0.1:9/one").await;
    let ep2 = endpoint(&stack, &key, "http://127.0.0.1:9/two").await;

    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/subscriptions",
        Some(json!({"endpointId": ep1, "eventTypes": ["a.b"], "filter": {"resource.orgShortName": "tfoinc"}})),
    )
    .await;
    expect(&a, 201, "create");
    let sub = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(a.body["endpointId"], ep1.as_str());
    assert_eq!(a.body["eventTypes"], json!(["a.b"]));
    assert_eq!(a.body["filter"], json!({"resource.orgShortName": "tfoinc"}));
    assert!(is_rfc3339(&a.body["createdAt"]));
    let a =
        call(&stack, &key, Method::POST, "/v1/subscriptions", Some(json!({"endpointId": ep2, "eventTypes": ["*"]})))
            .await;
    expect(&a, 201, "wildcard");

    let a =
        call(&stack, &key, Method::POST, "/v1/subscriptions", Some(json!({"endpointId": ep1, "eventTypes": ["nope"]})))
            .await;
    expect_invalid(&a, "eventTypes", "unknown event type");
    let a = call(&stack, &key, Method::POST, "/v1/subscriptions", Some(json!({"endpointId": ep1}))).await;
    expect_invalid(&a, "eventTypes", "missing event types");
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/subscriptions",
        Some(json!({"endpointId": "ep_nope", "eventTypes": ["*"]})),
    )
    .await;
    assert!(a.status == 400 || a.status == 404, "missing endpoint: {}", a.raw);
    expect(&a, a.status, "missing endpoint");

    let a = call(&stack, &key, Method::GET, "/v1/subscriptions", None).await;
    expect(&a, 200, "list");
    assert_eq!(a.body["data"].as_array().unwrap().len(), 2);
    let a = call(&stack, &key, Method::GET, &format!("/v1/subscriptions?endpointId={ep1}"), None).await;
    expect(&a, 200, "list by endpoint");
    assert_eq!(a.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["data"][0]["id"], sub.as_str());

    expect(&call(&stack, &key, Method::GET, &format!("/v1/subscriptions/{sub}"), None).await, 200, "get");
    expect(&call(&stack, &key, Method::DELETE, &format!("/v1/subscriptions/{sub}"), None).await, 204, "delete");
    expect(&call(&stack, &key, Method::GET, &format!("/v1/subscriptions/{sub}"), None).await, 404, "deleted");
    expect(&call(&stack, &key, Method::DELETE, &format!("/v1/subscriptions/{sub}"), None).await, 404, "deleted twice");
    stack.stop().await;
}

// ---------------------------------------------------------------- deliveries

#[tokio::test]
async fn deliveries_list_get_and_retry() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500);
    let key = stack.tenant_with_key("acme").await;
    event_type(&stack, "job.done", None).await;
    let ep = endpoint(&stack, &key, &receiver.url()).await;
    let a = call(&stack, &key, Method::POST, "/v1/subscriptions", Some(json!({"endpointId": ep, "eventTypes": ["*"]})))
        .await;
    expect(&a, 201, "subscribe");
    let a = call(
        &stack,
        ADMIN_TOKEN,
        Method::POST,
        "/v1/events",
        Some(json!({"tenant": "acme", "type": "job.done", "data": {}})),
    )
    .await;
    expect(&a, 202, "publish");
    let event = a.body["id"].as_str().unwrap().to_owned();

    // Four attempts on the 200ms,400ms,800ms schedule, then failed.
    let failed = wait_for_delivery(&stack, &key, &ep, "failed").await;
    let id = failed["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dlv_"));
    let a = call(&stack, &key, Method::GET, &format!("/v1/deliveries/{id}"), None).await;
    expect(&a, 200, "get");
    let attempts = a.body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "{}", a.raw);
    for (i, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["n"], i as u64 + 1);
        assert_eq!(attempt["statusCode"], 500);
        for field in ["at", "latencyMs", "error", "responseBody"] {
            assert!(attempt.get(field).is_some(), "attempt without {field}: {attempt}");
        }
    }
    let a = call(&stack, &key, Method::GET, &format!("/v1/deliveries?eventId={event}"), None).await;
    expect(&a, 200, "by event");
    assert_eq!(a.body["data"].as_array().unwrap().len(), 1);
    let a = call(&stack, &key, Method::GET, "/v1/deliveries?status=delivered", None).await;
    expect(&a, 200, "by status");
    assert!(a.body["data"].as_array().unwrap().is_empty());
    expect_invalid(&call(&stack, &key, Method::GET, "/v1/deliveries?status=lost", None).await, "status", "bad status");

    receiver.respond_with(200);
    let a = call(&stack, &key, Method::POST, &format!("/v1/deliveries/{id}/retry"), None).await;
    expect(&a, 202, "retry");
    wait_for_delivery(&stack, &key, &ep, "delivered").await;
    expect(&call(&stack, &key, Method::GET, "/v1/deliveries/dlv_nope", None).await, 404, "missing delivery");
    // A well-formed id of nothing, a cursor that is no id, an unknown event.
    let unknown = "/v1/deliveries/dlv_01m8qtqavf0005ds2zxqq8hqx9";
    expect(&call(&stack, &key, Method::GET, unknown, None).await, 404, "unknown delivery");
    let a = call(&stack, &key, Method::GET, "/v1/deliveries?cursor=%E2%9C%93zz", None).await;
    expect(&a, 400, "a cursor that is no id");
    let a = call(&stack, &key, Method::GET, "/v1/deliveries?eventId=never-published", None).await;
    expect(&a, 200, "an unknown event");
    assert_eq!(a.body["data"], json!([]), "{}", a.raw);
    expect(&call(&stack, &key, Method::POST, "/v1/deliveries/dlv_nope/retry", None).await, 404, "retry missing");
    stack.stop().await;
}

// ---------------------------------------------------------------- lists

/// 120 endpoints in pages of 50: three pages, every endpoint exactly once.
#[tokio::test]
async fn pagination_neither_loses_nor_repeats() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let key = stack.tenant_with_key("acme").await;
    let mut created = HashSet::new();
    for i in 0..120 {
        created.insert(endpoint(&stack, &key, &format!("http://127.0.0.1:9/{i}")).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/endpoints?limit=50&cursor={c}"),
            None => "/v1/endpoints?limit=50".to_owned(),
        };
        let a = call(&stack, &key, Method::GET, &path, None).await;
        expect(&a, 200, "page");
        pages += 1;
        let data = a.body["data"].as_array().unwrap();
        assert!(data.len() <= 50);
        seen.extend(data.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match a.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(a.body.get("nextCursor").is_some(), "nextCursor must be present (null): {}", a.raw);
                break;
            }
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120, "an endpoint was repeated or lost");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), created);

    let a = call(&stack, &key, Method::GET, "/v1/endpoints", None).await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 50, "default limit");
    for bad in ["0", "1001", "-1", "x"] {
        expect_invalid(
            &call(&stack, &key, Method::GET, &format!("/v1/endpoints?limit={bad}"), None).await,
            "limit",
            bad,
        );
    }
    stack.stop().await;
}

// ---------------------------------------------------------------- isolation

#[tokio::test]
async fn tenants_are_isolated() {
    let stack = Stack::start().await;
    let key_a = stack.tenant_with_key("tenant-a").await;
    let key_b = stack.tenant_with_key("tenant-b").await;
    event_type(&stack, "e", None).await;
    let ep = endpoint(&stack, &key_a, "http://127.0.0.1:9/a").await;
    let a =
        call(&stack, &key_a, Method::POST, "/v1/subscriptions", Some(json!({"endpointId": ep, "eventTypes": ["e"]})))
            .await;
    let sub = a.body["id"].as_str().unwrap().to_owned();

    for (method, path, body) in [
        (Method::GET, format!("/v1/endpoints/{ep}"), None),
        (Method::PATCH, format!("/v1/endpoints/{ep}"), Some(json!({"description": "mine now"}))),
        (Method::POST, format!("/v1/endpoints/{ep}/deactivate"), None),
        (Method::GET, format!("/v1/endpoints/{ep}/secret"), None),
        (Method::POST, format!("/v1/endpoints/{ep}/secret/rotate"), None),
        (Method::POST, format!("/v1/endpoints/{ep}/test"), Some(json!({"eventType": "e"}))),
        (Method::DELETE, format!("/v1/endpoints/{ep}"), None),
        (Method::GET, format!("/v1/subscriptions/{sub}"), None),
        (Method::DELETE, format!("/v1/subscriptions/{sub}"), None),
        (Method::POST, "/v1/subscriptions".to_owned(), Some(json!({"endpointId": ep, "eventTypes": ["e"]}))),
        (Method::GET, "/v1/endpoints?tenant=tenant-a".to_owned(), None),
    ] {
        let a = call(&stack, &key_b, method.clone(), &path, body).await;
        let context = format!("tenant b: {method} {path}");
        if path.starts_with("/v1/subscriptions") && method == Method::POST {
            assert!(a.status == 404 || a.status == 400, "{context}: {}", a.raw);
        } else {
            expect(&a, 404, &context);
        }
    }
    let a = call(&stack, &key_b, Method::GET, "/v1/endpoints", None).await;
    expect(&a, 200, "b's list");
    assert!(a.body["data"].as_array().unwrap().is_empty(), "{}", a.raw);
    let a = call(&stack, &key_a, Method::GET, &format!("/v1/endpoints/{ep}"), None).await;
    expect(&a, 200, "a still has its endpoint");
    assert_eq!(a.body["status"], "active");
    assert_eq!(a.body["description"], "");
    stack.stop().await;
}

// ---------------------------------------------------------------- protocol

#[tokio::test]
async fn bodies_content_types_and_routes_answer_problems() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let key = stack.tenant_with_key("acme").await;
    let url = stack.url("/v1/endpoints");
    let a = send(stack.http.post(&url).bearer_auth(&key).header("content-type", "text/plain").body("{}")).await;
    expect(&a, 415, "text/plain");
    let a = send(stack.http.post(&url).bearer_auth(&key).body(r#"{"url":"http://127.0.0.1:9/"}"#)).await;
    expect(&a, 415, "no content type");
    for raw in ["{", "[]", "null", "{\"url\": 1,}", ""] {
        let a =
            send(stack.http.post(&url).bearer_auth(&key).header("content-type", "application/json").body(raw)).await;
        expect(&a, 400, raw);
    }
    let big = json!({"url": "http://127.0.0.1:9/", "description": "x".repeat(300_000)});
    expect(&call(&stack, &key, Method::POST, "/v1/endpoints", Some(big)).await, 413, "oversize body");

    expect(&call(&stack, &key, Method::GET, "/v1/nowhere", None).await, 404, "unknown path");
    expect(&send(stack.http.get(stack.url("/nowhere"))).await, 404, "unknown path without auth");
    let a = call(&stack, &key, Method::PUT, "/v1/endpoints", None).await;
    expect(&a, 405, "wrong method");
    assert!(a.headers.get("allow").is_some());
    for path in ["/v1/endpoints/%00", "/v1/endpoints/%ff%fe", &format!("/v1/endpoints/{}", "e".repeat(5000))] {
        let a = call(&stack, &key, Method::GET, path, None).await;
        assert!(a.status == 400 || a.status == 404, "{path}: {}", a.raw);
        expect(&a, a.status, path);
    }
    let a = call(&stack, &key, Method::GET, "/v1/endpoints?limit=5&limit=6", None).await;
    assert!(a.status == 400 || a.status == 200, "repeated query parameter: {}", a.raw);
    stack.stop().await;
}

#[tokio::test]
async fn openapi_document_lists_every_route() {
    let stack = Stack::start_services(Services::REGISTRY_AND_GATEWAY).await;
    let a = send(stack.http.get(stack.url("/openapi.json"))).await;
    expect(&a, 200, "openapi.json");
    assert!(a.content_type.starts_with("application/json"));
    assert!(a.body["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = a.body["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/tenants", "post"),
        ("/v1/tenants/{id}", "get"),
        ("/v1/tenants/{id}", "delete"),
        ("/v1/tenants/{id}/api-keys", "post"),
        ("/v1/tenants/{id}/api-keys/{keyId}", "delete"),
        ("/v1/event-types", "post"),
        ("/v1/event-types", "get"),
        ("/v1/event-types/{name}", "put"),
        ("/v1/event-types/{name}", "delete"),
        ("/v1/events", "post"),
        ("/v1/endpoints", "post"),
        ("/v1/endpoints", "get"),
        ("/v1/endpoints/{id}", "get"),
        ("/v1/endpoints/{id}", "patch"),
        ("/v1/endpoints/{id}", "delete"),
        ("/v1/endpoints/{id}/deactivate", "post"),
        ("/v1/endpoints/{id}/activate", "post"),
        ("/v1/endpoints/{id}/secret", "get"),
        ("/v1/endpoints/{id}/secret/rotate", "post"),
        ("/v1/endpoints/{id}/test", "post"),
        ("/v1/endpoints/{id}/recover", "post"),
        ("/v1/subscriptions", "post"),
        ("/v1/subscriptions", "get"),
        ("/v1/subscriptions/{id}", "get"),
        ("/v1/subscriptions/{id}", "delete"),
        ("/v1/deliveries", "get"),
        ("/v1/deliveries/{id}", "get"),
        ("/v1/deliveries/{id}/retry", "post"),
        ("/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from openapi.json");
    }
    // Every documented operation is served (no 404 "no such route", no 405).
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace('{', "x").replace('}', "");
            let a = send(
                stack.http.request(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), stack.url(&concrete)),
            )
            .await;
            assert!(a.status != 405 && a.body["detail"] != "no such route", "{method} {path}: {}", a.raw);
        }
    }
    stack.stop().await;
}

#[tokio::test]
async fn health_readiness_metrics_and_http2() {
    let stack = Stack::start().await;
    expect(&send(stack.http.get(stack.url("/healthz"))).await, 200, "healthz");
    expect(&send(stack.http.get(stack.url("/readyz"))).await, 200, "readyz");
    expect(&call(&stack, ADMIN_TOKEN, Method::GET, "/v1/event-types", None).await, 200, "a request");
    let a = send(stack.http.get(stack.url("/metrics"))).await;
    expect(&a, 200, "metrics");
    assert!(
        a.raw.lines().any(|l| l.starts_with("herald_http_requests_total")
            && l.contains("route=\"/v1/event-types\"")
            && l.contains("status=\"200\"")),
        "{}",
        a.raw
    );
    assert!(a.raw.contains("herald_http_request_duration_seconds"), "{}", a.raw);

    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2.get(stack.url("/v1/event-types")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    stack.stop().await;
}

#[tokio::test]
async fn api_keys_are_rate_limited() {
    let stack =
        Stack::start_services_with(Services::REGISTRY_AND_GATEWAY, |env| env.set("HERALD_API_RATE_LIMIT", "3")).await;
    let key = stack.tenant_with_key("acme").await;
    let other = stack.tenant_with_key("other").await;
    let mut limited = None;
    for _ in 0..10 {
        let a = call(&stack, &key, Method::GET, "/v1/endpoints", None).await;
        if a.status == 429 {
            limited = Some(a);
            break;
        }
        expect(&a, 200, "under the limit");
    }
    let a = limited.expect("ten requests at once were never limited at 3 per second");
    expect(&a, 429, "over the limit");
    let retry_after: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    // Another key has its own budget; the admin is not limited.
    expect(&call(&stack, &other, Method::GET, "/v1/endpoints", None).await, 200, "another key");
    for _ in 0..10 {
        expect(&call(&stack, ADMIN_TOKEN, Method::GET, "/v1/endpoints?tenant=acme", None).await, 200, "admin");
    }
    stack.stop().await;
}

/// With the registry's address closed the gateway answers 503 at once and is not ready.
#[tokio::test]
async fn a_stopped_registry_is_503() {
    let closed = format!("http://127.0.0.1:{}", herald_tests::free_port());
    let only_gateway = Services { registry: false, dispatch: false, gateway: true };
    let stack = Stack::start_services_with(only_gateway, |env| {
        env.set("HERALD_REGISTRY_URL", closed.clone());
        env.set("HERALD_DISPATCH_URL", closed);
    })
    .await;
    let started = Instant::now();
    for (token, method, path) in [
        (ADMIN_TOKEN, Method::GET, "/v1/tenants/acme"),
        (ADMIN_TOKEN, Method::GET, "/v1/endpoints?tenant=acme"),
        ("hk_anything", Method::GET, "/v1/endpoints"),
        (ADMIN_TOKEN, Method::GET, "/v1/deliveries?tenant=acme"),
    ] {
        expect(&call(&stack, token, method, path, None).await, 503, path);
    }
    let a = send(stack.http.get(stack.url("/readyz"))).await;
    assert_eq!(a.status, 503, "{}", a.raw);
    expect(&send(stack.http.get(stack.url("/healthz"))).await, 200, "alive");
    assert!(started.elapsed() < Duration::from_secs(5), "503s took {:?}", started.elapsed());
    stack.stop().await;
}

/// A caller's W3C `traceparent` travels through the gateway and the
/// services to the webhook: the delivery belongs to the caller's trace.
#[tokio::test]
async fn the_callers_trace_reaches_the_webhook() {
    let stack = Stack::start().await;
    let receiver = Receiver::start().await;
    let key = stack.tenant_with_key("acme").await;
    event_type(&stack, "traced", None).await;
    let ep = endpoint(&stack, &key, &receiver.url()).await;
    let a = call(&stack, &key, Method::POST, "/v1/subscriptions", Some(json!({"endpointId": ep, "eventTypes": ["*"]})))
        .await;
    expect(&a, 201, "subscribe");
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let a = send(
        stack
            .admin(Method::POST, "/v1/events")
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .json(&json!({"tenant": "acme", "type": "traced", "data": {}})),
    )
    .await;
    expect(&a, 202, "publish");
    let got = receiver.wait_for(1, WAIT).await;
    let traceparent = got[0].header("traceparent").unwrap_or_default();
    assert!(traceparent.contains(trace_id), "webhook traceparent {traceparent:?} is not in the caller's trace");

    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{ep}/health"), None).await;
    expect(&a, 200, "endpoint health");
    assert_eq!(a.body["endpointId"], ep.as_str());
    assert!(a.body["circuit"].is_string(), "{}", a.raw);
    stack.stop().await;
}
