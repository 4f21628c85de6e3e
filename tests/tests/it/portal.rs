//! The integrator portal in a real browser: each test starts the stack,
//! prepares what the scenario needs through the API, and runs one scenario
//! of `tests/browser/portal_scenarios.py` (Selenium and Debian's headless
//! Chromium) against it. Only 127.0.0.1 is ever contacted.

use std::time::{Duration, Instant};

use herald_tests::{Receiver, Reply, Stack};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TENANT: &str = "acme";
const EVENT_TYPE: &str = "order.created";
const IMG_XSS: &str = r#"<img src=x onerror="window.__xss=1">"#;
const SCRIPT_XSS: &str = "<script>window.__xss=1</script>";

/// One browser at a time: the machine the suite runs on may be small.
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The stack, a tenant with an API key (the portal token) and the event type.
async fn setup(description: &str) -> (Stack, String) {
    let stack = Stack::start().await;
    let key = stack.tenant_with_key(TENANT).await;
    let schema = json!({
        "type": "object",
        "required": ["orderId", "amount"],
        "properties": {
            "orderId": {"type": "string", "examples": ["ord_1042"]},
            "amount": {"type": "integer", "minimum": 1},
            "currency": {"enum": ["EUR", "USD"]},
            "placedAt": {"type": "string", "format": "date-time"},
            "note": {"type": "string"},
            "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}}}
        }
    });
    let (status, body) = stack
        .admin_post("/v1/event-types", json!({"name": EVENT_TYPE, "description": description, "schema": schema}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (stack, key)
}

async fn tenant_call(stack: &Stack, key: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = stack.tenant(key, method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    herald_tests::json_answer(request.send().await.unwrap()).await
}

/// An endpoint subscribed to the event type; answers its id.
async fn endpoint(stack: &Stack, key: &str, body: Value, filter: Option<Value>) -> String {
    let (status, created) = tenant_call(stack, key, Method::POST, "/v1/endpoints", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut subscription = json!({"endpointId": id, "eventTypes": [EVENT_TYPE]});
    if let Some(filter) = filter {
        subscription["filter"] = filter;
    }
    let (status, body) = tenant_call(stack, key, Method::POST, "/v1/subscriptions", Some(subscription)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    id
}

async fn publish(stack: &Stack, data: Value) -> String {
    let (status, body) =
        stack.admin_post("/v1/events", json!({"tenant": TENANT, "type": EVENT_TYPE, "data": data})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

/// Waits until the event's delivery has `status`; answers the delivery id.
async fn delivery_of(stack: &Stack, key: &str, event_id: &str, status: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) =
            tenant_call(stack, key, Method::GET, &format!("/v1/deliveries?eventId={event_id}"), None).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        if let Some(d) = body["data"].as_array().and_then(|d| d.iter().find(|d| d["status"] == status)) {
            return d["id"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "the delivery of {event_id} never became {status}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one browser scenario; panics with its output unless it passed.
async fn scenario(name: &str, stack: &Stack, token: &str, extra: Value) {
    let python = herald_tests::python();
    assert!(
        python.exists(),
        "{} is missing: run deploy/test.sh (it installs the browser tests' tools)",
        python.display()
    );
    let mut params = json!({
        "gateway": stack.gateway_url,
        "token": token,
        "admin_token": herald_tests::ADMIN_TOKEN,
        "tenant": TENANT,
        "event_type": EVENT_TYPE,
    });
    params.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let script = herald_tests::workspace_root().join("tests/browser/portal_scenarios.py");
    let _one_at_a_time = BROWSER.lock().await;
    let run = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(name)
        .arg(params.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("SE_OFFLINE", "true")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("browser scenario {name} ran over 5 minutes"))
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "browser scenario {name} failed ({}):\n{stdout}\n{stderr}", out.status);
    println!("{stdout}");
}

/// (a) An endpoint and a subscription made through the forms receive a
/// published event, and its delivery shows up in the list.
#[tokio::test]
async fn an_endpoint_made_in_the_portal_receives_and_lists_deliveries() {
    let (stack, key) = setup("An order was placed.").await;
    let receiver = Receiver::start().await;
    scenario("create_and_deliver", &stack, &key, json!({"receiver": receiver.url()})).await;
    let received = receiver.received();
    assert!(
        received.iter().any(|r| r.header("x-warehouse") == Some("north")),
        "the header set in the form was not sent"
    );
    assert!(
        received.iter().any(|r| r.header("authorization") == Some("Bearer s3cret-token")),
        "the bearer token set in the form was not sent"
    );
}

/// (b) A failing delivery shows its attempts with request and response, and
/// a retry from the portal adds an attempt.
#[tokio::test]
async fn a_failing_delivery_shows_attempts_and_can_be_retried() {
    let (stack, key) = setup("An order was placed.").await;
    let receiver = Receiver::start().await;
    receiver.respond_with_reply(Reply::status(500).body(r#"{"error":"upstream exploded"}"#));
    let body =
        json!({"url": receiver.url(), "description": "Flaky", "retry": {"schedule": ["200ms"], "maxAttempts": 2}});
    endpoint(&stack, &key, body, None).await;
    let event_id = publish(&stack, json!({"orderId": "o-1", "amount": 5})).await;
    let delivery_id = delivery_of(&stack, &key, &event_id, "failed").await;
    scenario("failing_delivery", &stack, &key, json!({"delivery_id": delivery_id, "receiver": receiver.url()})).await;
}

/// (c) Descriptions, filters, event data and response bodies holding markup
/// are shown as text and never run.
#[tokio::test]
async fn markup_from_the_api_is_shown_as_text() {
    let (stack, key) = setup(&format!("Placed {IMG_XSS} {SCRIPT_XSS}")).await;
    let receiver = Receiver::start().await;
    receiver.respond_with_reply(Reply::status(200).header("content-type", "text/html").body(&format!("ok {IMG_XSS}")));
    let body = json!({"url": receiver.url(), "description": format!("{IMG_XSS}{SCRIPT_XSS}"),
        "headers": {"X-Note": SCRIPT_XSS}});
    let endpoint_id = endpoint(&stack, &key, body, Some(json!({"data.note": {"$ne": IMG_XSS}}))).await;
    let event_id =
        publish(&stack, json!({"orderId": "o-1", "amount": 5, "note": format!("{IMG_XSS}{SCRIPT_XSS}")})).await;
    let delivery_id = delivery_of(&stack, &key, &event_id, "delivered").await;
    let extra = json!({"endpoint_id": endpoint_id, "delivery_id": delivery_id, "event_id": event_id});
    scenario("xss", &stack, &key, extra).await;
}

/// (d) A read-only session sees no control that changes anything (sessions
/// come from `POST /v1/portal/sessions`, admin); signing out forgets the
/// token, and revokes a full session on the server.
#[tokio::test]
async fn a_read_only_session_has_no_controls_that_change_anything() {
    let (stack, key) = setup("An order was placed.").await;
    let receiver = Receiver::start().await;
    let endpoint_id = endpoint(&stack, &key, json!({"url": receiver.url(), "description": "Warehouse"}), None).await;
    let event_id = publish(&stack, json!({"orderId": "o-1", "amount": 5})).await;
    let delivery_id = delivery_of(&stack, &key, &event_id, "delivered").await;
    let (status, session) = stack.admin_post("/v1/portal/sessions", json!({"tenant": TENANT, "readOnly": true})).await;
    assert_eq!(status, StatusCode::CREATED, "read-only portal sessions are not served: {session}");
    assert_eq!(session["readOnly"], true, "{session}");
    let token = session["token"].as_str().unwrap();
    let (status, full) = stack.admin_post("/v1/portal/sessions", json!({"tenant": TENANT})).await;
    assert_eq!(status, StatusCode::CREATED, "{full}");
    let extra = json!({"readonly_token": token, "session_token": full["token"], "endpoint_id": endpoint_id,
        "delivery_id": delivery_id});
    scenario("read_only", &stack, &key, extra).await;
}

/// (e) Every portal answer carries the policy, no page breaks it, and every
/// view fits 1280 px and 390 px; (f) with `HERALD_SCREENSHOT_DIR` set, the
/// main views are saved as PNGs there.
#[tokio::test]
async fn the_portal_keeps_its_content_security_policy_at_every_width() {
    let (stack, key) = setup("An order was placed and paid for; its lines and amount are final.").await;
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    bad.respond_with_reply(Reply::status(503).body("maintenance until 12:00"));
    let body = json!({"url": good.url(), "description": "Warehouse orders", "headers": {"X-Warehouse": "north"},
        "retry": {"schedule": ["5s", "1m", "10m"], "maxAttempts": 4}, "rateLimitPerSecond": 20});
    let endpoint_id = endpoint(&stack, &key, body, Some(json!({"data.amount": {"$gte": 1}}))).await;
    let body = json!({"url": bad.url(), "description": "Billing", "retry": {"schedule": ["200ms"], "maxAttempts": 2}});
    endpoint(&stack, &key, body, None).await;
    let mut last = String::new();
    for n in 1..=3 {
        last = publish(&stack, json!({"orderId": format!("ord_{n}"), "amount": 10 * n})).await;
        delivery_of(&stack, &key, &last, "delivered").await;
    }
    let delivery_id = delivery_of(&stack, &key, &last, "failed").await;
    scenario("csp_and_screens", &stack, &key, json!({"endpoint_id": endpoint_id, "delivery_id": delivery_id})).await;
}
