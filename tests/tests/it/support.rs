//! Helpers the integration modules share: one gateway call and its answer
//! (an error checked as a whole problem+json body), the usual tenant with
//! one subscribed endpoint, and bounded polls.

use std::future::Future;
use std::time::{Duration, Instant};

use herald_tests::{ADMIN_TOKEN, Receiver, Stack};
use reqwest::Method;
use serde_json::{Value, json};

/// The longest any poll here waits.
pub const WAIT: Duration = Duration::from_secs(30);
pub const EVENT_TYPE: &str = "order.created";

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: Value,
    pub raw: String,
}

pub async fn call(stack: &Stack, token: &str, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = stack.http.request(method, stack.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.timeout(Duration::from_secs(20)).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let raw = response.text().await.unwrap();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer { status, content_type, body, raw }
}

/// The status, and for an error a whole problem+json body.
#[track_caller]
pub fn expect(a: &Answer, status: u16, context: &str) {
    assert_eq!(a.status, status, "{context}: {}", a.raw);
    if status >= 400 {
        assert!(a.content_type.starts_with("application/problem+json"), "{context}: {:?} {}", a.content_type, a.raw);
        assert_eq!(a.body["status"], status, "{context}: {}", a.raw);
        for member in ["type", "title", "detail"] {
            assert!(a.body[member].is_string(), "{context}: no {member}: {}", a.raw);
        }
    }
}

/// A request's status and JSON answer.
pub async fn send(request: reqwest::RequestBuilder) -> (reqwest::StatusCode, Value) {
    herald_tests::json_answer(request.send().await.unwrap()).await
}

/// Tenant `id` with a key (answered), and [`EVENT_TYPE`] in the catalogue.
pub async fn tenant_with_event_type(stack: &Stack, id: &str) -> String {
    let key = stack.tenant_with_key(id).await;
    let (status, body) = stack.admin_post("/v1/event-types", json!({"name": EVENT_TYPE, "description": "d"})).await;
    assert!(status == reqwest::StatusCode::CREATED || status == reqwest::StatusCode::CONFLICT, "{body}");
    key
}

/// An endpoint of `key`'s tenant made from `spec` and subscribed to
/// `types`; answers its id.
pub async fn subscribed_endpoint(stack: &Stack, key: &str, spec: Value, types: &[&str]) -> String {
    let (status, body) = send(stack.tenant(key, Method::POST, "/v1/endpoints").json(&spec)).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let sub = json!({"endpointId": id, "eventTypes": types});
    let (status, body) = send(stack.tenant(key, Method::POST, "/v1/subscriptions").json(&sub)).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    id
}

/// Tenant `acme` with a key, the event type, and an endpoint at `receiver`
/// subscribed to everything; answers the key and the endpoint id.
pub async fn set_up(stack: &Stack, receiver: &Receiver) -> (String, String) {
    let key = stack.tenant_with_key("acme").await;
    let a = call(
        stack,
        ADMIN_TOKEN,
        Method::POST,
        "/v1/event-types",
        Some(json!({"name": EVENT_TYPE, "description": "d"})),
    )
    .await;
    expect(&a, 201, "event type");
    let a = call(stack, &key, Method::POST, "/v1/endpoints", Some(json!({"url": receiver.url()}))).await;
    expect(&a, 201, "endpoint");
    let endpoint = a.body["id"].as_str().unwrap().to_owned();
    let subscription = json!({"endpointId": endpoint, "eventTypes": ["*"]});
    expect(&call(stack, &key, Method::POST, "/v1/subscriptions", Some(subscription)).await, 201, "subscription");
    (key, endpoint)
}

/// Publishes event `id` of tenant `acme` with `data`.
pub async fn publish(stack: &Stack, id: &str, data: Value) -> Answer {
    let body = json!({"tenant": "acme", "id": id, "type": EVENT_TYPE, "data": data});
    call(stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body)).await
}

/// Polls `check` until it answers something, for at most [`WAIT`].
pub async fn wait_until<T, F: Future<Output = Option<T>>>(what: &str, mut check: impl FnMut() -> F) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The one delivery of event `event`, once its status is `status`.
pub async fn delivery_in(stack: &Stack, key: &str, event: &str, status: &str) -> Value {
    wait_until(&format!("delivery of {event} {status}"), || async {
        let a = call(stack, key, Method::GET, &format!("/v1/deliveries?eventId={event}"), None).await;
        let found = a.body["data"].as_array().and_then(|list| list.first()).cloned()?;
        let id = found["id"].as_str()?;
        let a = call(stack, key, Method::GET, &format!("/v1/deliveries/{id}"), None).await;
        (a.body["status"] == status).then_some(a.body)
    })
    .await
}
