//! The compatibility profiles, black box: each seed's own example requests
//! and payloads against its path family, the exact answer fields, what a
//! real receiver gets in the seed's body shape, and the seed's error cases.
//! Seed 001 has no path family of its own: its subscriber is a `/v1`
//! endpoint with OAuth 2.0 client credentials and structured CloudEvents,
//! checked here end to end with the CloudEvents SDK as the judge.
//!
//! Every stack loads the shipped catalogue (`deploy/catalog`), as a fresh
//! install does.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use herald_tests::{ADMIN_TOKEN, Received, Receiver, Reply, Stack, TokenServer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Answer, call, expect};

const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- helpers

/// A `400` problem naming `field` (or a member of it) in `errors`.
#[track_caller]
fn expect_invalid(a: &Answer, field: &str, context: &str) {
    expect(a, 400, context);
    let named = a.body["errors"].as_array().is_some_and(|errors| {
        errors.iter().any(|e| {
            e["field"].as_str().is_some_and(|f| f == field || f.starts_with(&format!("{field}.")))
                && e["message"].is_string()
        })
    });
    assert!(named, "{context}: the problem does not name {field}: {}", a.raw);
}

/// A stack with the shipped catalogue and one tenant; answers the tenant's key.
async fn start(tenant: &str) -> (Stack, String) {
    let catalog = herald_tests::workspace_root().join("deploy/catalog");
    let stack = Stack::start_with(|env| env.set("HERALD_CATALOG_DIR", catalog.display().to_string())).await;
    let key = stack.tenant_with_key(tenant).await;
    (stack, key)
}

/// Publishes through `POST /v1/events`; answers `(event id, deliveries)`.
async fn publish(stack: &Stack, tenant: &str, kind: &str, resource: Option<Value>, data: Value) -> (String, u64) {
    let mut body = json!({"tenant": tenant, "type": kind, "data": data});
    if let Some(resource) = resource {
        body["resource"] = resource;
    }
    let a = call(stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body)).await;
    expect(&a, 202, &format!("publish {kind}"));
    (a.body["id"].as_str().unwrap().to_owned(), a.body["deliveries"].as_u64().unwrap())
}

fn is_uuid(v: &Value) -> bool {
    v.as_str().is_some_and(|s| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
            && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
    })
}

fn is_rfc3339(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.ends_with('Z') && s.len() >= 20 && s.as_bytes()[10] == b'T')
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default()
}

/// The tenant's canonical endpoints (the profiles keep no other store).
async fn endpoints(stack: &Stack, key: &str) -> Vec<Value> {
    let a = call(stack, key, Method::GET, "/v1/endpoints", None).await;
    expect(&a, 200, "list endpoints");
    a.body["data"].as_array().unwrap().clone()
}

/// Runs the outside judge (`tests/judges/judge.py`) over captured requests.
async fn judge(requests: &[Value]) -> Value {
    let python = herald_tests::python();
    assert!(python.exists(), "{} is missing: run deploy/test.sh (it installs the judges)", python.display());
    let dir = std::env::temp_dir().join(format!("herald-judge-profiles-{}", herald_common::ids::new_id("")));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("requests.json");
    std::fs::write(&input, serde_json::to_vec(requests).unwrap()).unwrap();
    let script = herald_tests::workspace_root().join("tests/judges/judge.py");
    let out = tokio::process::Command::new(&python).arg(&script).arg(&input).output().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "judge refused the requests:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap()
}

fn judged(r: &Received, mode: &str, secret: &str, expect: Value) -> Value {
    json!({
        "headers": r.headers,
        "body": String::from_utf8(r.body.to_vec()).unwrap(),
        "secret": secret,
        "mode": mode,
        "expect": expect,
    })
}

// ---------------------------------------------------------------- seed 000

const N: &str = "/api/v1/notifications";

/// The seed's example CheckNotification resource and data.
fn check_resource(org: &str) -> Value {
    json!({"orgShortName": org, "locRef": "fdmnh144", "rvcRef": "42",
           "checkRef": "929aacee2c6d42c78ae877e824c28eed00000431"})
}

fn check_data() -> Value {
    json!({"status": "Submitted", "timeStampUtc": "2021-08-13T15:40:44.501Z"})
}

#[tokio::test]
async fn seed_000_subscriber_subscriptions_and_envelope_deliveries() {
    let (stack, key) = start("tfo").await;
    let receiver = Receiver::start().await;

    // Discovery: the seed's four message types (`profile_rules` checks there are no others).
    let a = call(&stack, &key, Method::GET, &format!("{N}/discovery"), None).await;
    expect(&a, 200, "discovery");
    let types = a.body["messageTypes"].as_array().unwrap();
    for id in ["OrganizationsNotification", "ConfigurationNotification", "CheckNotification", "EmployeesNotification"] {
        let t = types.iter().find(|t| t["id"] == id).unwrap_or_else(|| panic!("{id} missing: {}", a.raw));
        assert!(t["description"].as_str().is_some_and(|d| !d.is_empty()), "{t}");
    }

    let subscription = json!({
        "callbackUri": receiver.url(),
        "messageType": {"id": "CheckNotification"},
        "orgShortName": "tfoinc",
        "locRef": "fdmnh144",
        "rvcRef": "42",
        "postOfficeOptions": {"PostOfficeType": "PushOnePostOffice"}
    });
    // A subscription needs a registered subscriber.
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(subscription.clone())).await;
    expect(&a, 409, "subscription before registration");

    // Registration: POST once, then PUT updates (same subscriberId).
    let a = call(
        &stack,
        &key,
        Method::POST,
        &format!("{N}/registration"),
        Some(json!({"name": "TFO integrator", "contactEmail": "ops@tfoinc.com"})),
    )
    .await;
    expect(&a, 200, "register");
    assert!(is_uuid(&a.body["subscriberId"]), "{}", a.raw);
    assert_eq!(
        (a.body["name"].as_str(), a.body["contactEmail"].as_str()),
        (Some("TFO integrator"), Some("ops@tfoinc.com"))
    );
    let subscriber_id = a.body["subscriberId"].clone();
    let a = call(&stack, &key, Method::POST, &format!("{N}/registration"), Some(json!({"name": "again"}))).await;
    expect(&a, 409, "second POST registration");
    let a = call(&stack, &key, Method::PUT, &format!("{N}/registration"), Some(json!({"name": "TFO"}))).await;
    expect(&a, 200, "PUT registration");
    assert_eq!(a.body, json!({"subscriberId": subscriber_id, "name": "TFO"}));
    let a =
        call(&stack, &key, Method::PUT, &format!("{N}/registration"), Some(json!({"contactEmail": "x@y.com"}))).await;
    expect_invalid(&a, "name", "registration without name");

    // Subscribe: the answer is the request with subscriptionId and subscriberId added.
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(subscription.clone())).await;
    expect(&a, 200, "create subscription");
    let mut want = subscription.clone();
    want["subscriptionId"] = a.body["subscriptionId"].clone();
    want["subscriberId"] = subscriber_id.clone();
    assert_eq!(a.body, want);
    let subscription_id = a.body["subscriptionId"].as_str().unwrap().to_owned();
    let a = call(&stack, &key, Method::GET, &format!("{N}/subscriptions/{subscription_id}"), None).await;
    expect(&a, 200, "get subscription");
    assert_eq!(a.body, want);
    let a = call(&stack, &key, Method::GET, &format!("{N}/subscriptions"), None).await;
    expect(&a, 200, "list subscriptions");
    assert_eq!(a.body, json!([want.clone()]));

    // Its canonical shape: one envelope endpoint at the callback, filtered by the scope.
    let eps = endpoints(&stack, &key).await;
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!((eps[0]["format"].as_str(), eps[0]["url"].as_str()), (Some("envelope"), Some(receiver.url().as_str())));
    assert_eq!(eps[0]["metadata"]["profile"], "seed000");

    // Seed errors: unknown message type, missing callbackUri, missing org.
    let mut bad = subscription.clone();
    bad["messageType"]["id"] = json!("NoSuchNotification");
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(bad)).await;
    expect_invalid(&a, "messageType.id", "unknown message type");
    let mut bad = subscription.clone();
    bad.as_object_mut().unwrap().remove("callbackUri");
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(bad)).await;
    expect_invalid(&a, "callbackUri", "missing callbackUri");
    let mut bad = subscription.clone();
    bad["orgShortName"] = json!("");
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(bad)).await;
    expect_invalid(&a, "orgShortName", "empty orgShortName");
    assert_eq!(endpoints(&stack, &key).await.len(), 1, "a refused subscription left an endpoint behind");

    // Another organization's check is not delivered; the seed's example is, in the seed's envelope.
    let (_, deliveries) =
        publish(&stack, "tfo", "CheckNotification", Some(check_resource("otherorg")), check_data()).await;
    assert_eq!(deliveries, 0, "another organization's event matched the subscription");
    let mut other_rvc = check_resource("tfoinc");
    other_rvc["rvcRef"] = json!("7");
    let (_, deliveries) = publish(&stack, "tfo", "CheckNotification", Some(other_rvc), check_data()).await;
    assert_eq!(deliveries, 0, "another revenue center's event matched the subscription");
    let (event_id, deliveries) =
        publish(&stack, "tfo", "CheckNotification", Some(check_resource("tfoinc")), check_data()).await;
    assert_eq!(deliveries, 1);
    let got = receiver.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(keys(&body), BTreeSet::from(["messages"]), "{body}");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{body}");
    let m = &messages[0];
    assert_eq!(keys(m), BTreeSet::from(["id", "creationDate", "messageType", "resource", "data"]), "{m}");
    assert_eq!(m["id"], event_id.as_str());
    assert!(is_rfc3339(&m["creationDate"]), "{m}");
    assert_eq!(m["messageType"], json!({"id": "CheckNotification"}));
    assert_eq!(m["resource"], check_resource("tfoinc"));
    assert_eq!(m["data"], check_data());
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("webhook-id"), Some(event_id.as_str()));

    // Another tenant sees none of it.
    let other = stack.tenant_with_key("globex").await;
    let a = call(&stack, &other, Method::GET, &format!("{N}/subscriptions/{subscription_id}"), None).await;
    expect(&a, 404, "another tenant's subscription");
    let a = call(&stack, &other, Method::GET, &format!("{N}/subscriptions"), None).await;
    assert_eq!(a.body, json!([]));
    let a = call(&stack, &other, Method::DELETE, &format!("{N}/registration"), None).await;
    expect(&a, 404, "another tenant has no subscriber");

    // Delete one subscription: its endpoint goes with it.
    let a = call(&stack, &key, Method::DELETE, &format!("{N}/subscriptions/{subscription_id}"), None).await;
    expect(&a, 204, "delete subscription");
    let a = call(&stack, &key, Method::GET, &format!("{N}/subscriptions/{subscription_id}"), None).await;
    expect(&a, 404, "deleted subscription");
    let a = call(&stack, &key, Method::DELETE, &format!("{N}/subscriptions/{subscription_id}"), None).await;
    expect(&a, 404, "deleted twice");
    assert!(endpoints(&stack, &key).await.is_empty());

    // Delete them all.
    for org in ["tfoinc", "tfoinc2"] {
        let mut s = subscription.clone();
        s["orgShortName"] = json!(org);
        let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(s)).await;
        expect(&a, 200, "subscribe again");
    }
    let a = call(&stack, &key, Method::DELETE, &format!("{N}/subscriptions"), None).await;
    expect(&a, 204, "delete all subscriptions");
    let a = call(&stack, &key, Method::GET, &format!("{N}/subscriptions"), None).await;
    assert_eq!(a.body, json!([]));
    assert!(endpoints(&stack, &key).await.is_empty());

    // Deleting the subscriber removes its subscriptions (and their endpoints) with it.
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(subscription.clone())).await;
    expect(&a, 200, "subscribe before unregistering");
    let a = call(&stack, &key, Method::DELETE, &format!("{N}/registration"), None).await;
    expect(&a, 204, "delete registration");
    let a = call(&stack, &key, Method::GET, &format!("{N}/subscriptions"), None).await;
    assert_eq!(a.body, json!([]));
    assert!(endpoints(&stack, &key).await.is_empty());
    let a = call(&stack, &key, Method::DELETE, &format!("{N}/registration"), None).await;
    expect(&a, 404, "delete registration twice");
    let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(subscription)).await;
    expect(&a, 409, "subscription after unregistering");
    let (_, deliveries) =
        publish(&stack, "tfo", "CheckNotification", Some(check_resource("tfoinc")), check_data()).await;
    assert_eq!(deliveries, 0);
    stack.stop().await;
}

/// With private networks refused (production), seed 000 callbacks must also
/// be https on port 443 under one of the seed's top-level domains. Every URL
/// here is refused before any lookup.
#[tokio::test]
async fn seed_000_callbacks_follow_the_seed_rule_when_strict() {
    let catalog = herald_tests::workspace_root().join("deploy/catalog");
    let stack = Stack::start_with(|env| {
        env.set("HERALD_CATALOG_DIR", catalog.display().to_string());
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
    })
    .await;
    let key = stack.tenant_with_key("tfo").await;
    let a = call(&stack, &key, Method::PUT, &format!("{N}/registration"), Some(json!({"name": "TFO"}))).await;
    expect(&a, 200, "register");
    for url in [
        "https://hooks.tfoinc.xyz/cb",
        "https://hooks.tfoinc.com:8443/cb",
        "http://hooks.tfoinc.com/cb",
        "https://93.184.215.14/cb",
        "https://127.0.0.1/cb",
    ] {
        let body = json!({"callbackUri": url, "messageType": {"id": "CheckNotification"}, "orgShortName": "tfoinc"});
        let a = call(&stack, &key, Method::POST, &format!("{N}/subscriptions"), Some(body)).await;
        expect_invalid(&a, "callbackUri", url);
    }
    assert!(endpoints(&stack, &key).await.is_empty());
    stack.stop().await;
}

// ---------------------------------------------------------------- seed 002

const W: &str = "/api/notifications/v1/webhooks";

#[tokio::test]
async fn seed_002_webhook_registrations_and_deliveries() {
    let (stack, key) = start("acme").await;
    let (basic, oauth) = (Receiver::start().await, Receiver::start().await);
    let tokens = TokenServer::start().await;

    // The seed's curl example, with the receiver as the target.
    let a = {
        let response = stack
            .http
            .post(stack.url(W))
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, application/problem+json")
            .header("Authorization", format!("Bearer {key}"))
            .body(format!(
                r#"{{
  "targetURL": "{}",
  "auth": {{
    "type": "basic",
    "username": "USERNAME",
    "password": "PASSWORD"
  }}
}}"#,
                basic.url()
            ))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        let raw = response.text().await.unwrap();
        Answer { status, content_type, body: serde_json::from_str(&raw).unwrap(), raw }
    };
    expect(&a, 200, "register the seed's example");
    assert_eq!(keys(&a.body), BTreeSet::from(["id", "createdAt", "updatedAt", "targetURL", "auth", "status"]));
    assert!(is_uuid(&a.body["id"]), "{}", a.raw);
    assert!(is_rfc3339(&a.body["createdAt"]) && is_rfc3339(&a.body["updatedAt"]), "{}", a.raw);
    assert_eq!(a.body["targetURL"], basic.url());
    assert_eq!(a.body["auth"], json!({"type": "basic", "username": "USERNAME"}));
    assert_eq!(a.body["status"], "active");
    assert!(!a.raw.contains("PASSWORD"), "the password was answered: {}", a.raw);
    let basic_record = a.body.clone();
    let basic_id = basic_record["id"].as_str().unwrap().to_owned();

    let a = call(
        &stack,
        &key,
        Method::POST,
        W,
        Some(json!({"targetURL": oauth.url(),
                    "auth": {"type": "client_credential", "clientID": "herald", "clientSecret": "s3cret",
                             "tokenURL": tokens.url()}})),
    )
    .await;
    expect(&a, 200, "register with client_credential");
    assert_eq!(a.body["auth"], json!({"type": "client_credential", "clientID": "herald", "tokenURL": tokens.url()}));
    assert!(!a.raw.contains("s3cret"), "{}", a.raw);
    let oauth_id = a.body["id"].as_str().unwrap().to_owned();
    let a =
        call(&stack, &key, Method::POST, W, Some(json!({"targetURL": basic.url(), "auth": {"type": "noauth"}}))).await;
    expect(&a, 200, "register with noauth");
    assert_eq!(a.body["auth"], json!({"type": "noauth"}));
    let noauth_id = a.body["id"].as_str().unwrap().to_owned();
    let a = call(&stack, &key, Method::DELETE, &format!("{W}/{noauth_id}"), None).await;
    expect(&a, 204, "delete");
    let a = call(&stack, &key, Method::GET, &format!("{W}/{noauth_id}"), None).await;
    expect(&a, 404, "deleted webhook");

    // List (registration order) and get.
    let a = call(&stack, &key, Method::GET, W, None).await;
    expect(&a, 200, "list");
    let ids: Vec<&str> = a.body.as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![basic_id.as_str(), oauth_id.as_str()]);
    let a = call(&stack, &key, Method::GET, &format!("{W}/{basic_id}"), None).await;
    expect(&a, 200, "get");
    assert_eq!(a.body, basic_record);

    // Purchase delivery completed: both webhooks are notified, each authenticated its way.
    let data = json!({"purchaseId": "p-1", "status": "COMPLETED", "completedAt": "2024-05-07T19:18:32Z"});
    let (event_id, deliveries) = publish(&stack, "acme", "purchase.delivery.completed", None, data.clone()).await;
    assert_eq!(deliveries, 2);
    let got = basic.wait_for(1, WAIT).await;
    let expected_basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("USERNAME:PASSWORD"));
    assert_eq!(got[0].header("authorization"), Some(expected_basic.as_str()));
    let body = got[0].json();
    assert_eq!(
        (body["id"].as_str(), body["type"].as_str()),
        (Some(event_id.as_str()), Some("purchase.delivery.completed"))
    );
    assert_eq!(body["data"], data);
    let got = oauth.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(tokens.requests(), 1);

    // Deactivation answers the record; a deactivated webhook gets nothing.
    let a = call(
        &stack,
        &key,
        Method::PATCH,
        &format!("{W}/{oauth_id}/deactivation"),
        Some(json!({"status": "deactivated"})),
    )
    .await;
    expect(&a, 200, "deactivate");
    assert_eq!((a.body["id"].as_str(), a.body["status"].as_str()), (Some(oauth_id.as_str()), Some("deactivated")));
    let a =
        call(&stack, &key, Method::PATCH, &format!("{W}/{oauth_id}/deactivation"), Some(json!({"status": "on"}))).await;
    expect_invalid(&a, "status", "deactivation with another status");
    let (_, deliveries) = publish(&stack, "acme", "purchase.delivery.completed", None, data).await;
    assert_eq!(deliveries, 1, "only the active webhook is notified");
    basic.wait_for(2, WAIT).await;

    // Errors, as problems with the seed's field names.
    let a = call(&stack, &key, Method::POST, W, Some(json!({"auth": {"type": "noauth"}}))).await;
    expect_invalid(&a, "targetURL", "missing targetURL");
    let a = call(&stack, &key, Method::POST, W, Some(json!({"targetURL": "ftp://example.com/x"}))).await;
    expect_invalid(&a, "targetURL", "ftp targetURL");
    let a =
        call(&stack, &key, Method::POST, W, Some(json!({"targetURL": basic.url(), "auth": {"type": "digest"}}))).await;
    expect_invalid(&a, "auth.type", "unknown auth type");
    let a = call(
        &stack,
        &key,
        Method::POST,
        W,
        Some(json!({"targetURL": basic.url(), "auth": {"type": "client_credential", "clientID": "c",
                    "clientSecret": "s", "tokenURL": "not a url"}})),
    )
    .await;
    expect_invalid(&a, "auth.tokenURL", "bad tokenURL");
    let a = call(
        &stack,
        &key,
        Method::POST,
        W,
        Some(json!({"targetURL": basic.url(), "auth": {"type": "basic", "username": "u"}})),
    )
    .await;
    expect_invalid(&a, "auth.password", "basic without password");

    // Another tenant, and ids that are not this profile's, are 404.
    let other = stack.tenant_with_key("globex").await;
    let a = call(&stack, &other, Method::GET, &format!("{W}/{basic_id}"), None).await;
    expect(&a, 404, "another tenant's webhook");
    let a = call(&stack, &other, Method::DELETE, &format!("{W}/{basic_id}"), None).await;
    expect(&a, 404, "another tenant deletes");
    let a = call(&stack, &other, Method::GET, W, None).await;
    assert_eq!(a.body, json!([]));
    let canonical = call(&stack, &key, Method::POST, "/v1/endpoints", Some(json!({"url": basic.url()}))).await;
    expect(&canonical, 201, "a /v1 endpoint");
    let a = call(&stack, &key, Method::GET, &format!("{W}/{}", canonical.body["id"].as_str().unwrap()), None).await;
    expect(&a, 404, "a /v1 endpoint is not a seed 002 webhook");
    let a = call(&stack, &key, Method::GET, W, None).await;
    assert_eq!(a.body.as_array().unwrap().len(), 2, "{}", a.raw);
    stack.stop().await;
}

// ---------------------------------------------------------------- seed 003

/// Seed 003 names partners by GUID; the partner is the tenant.
const PARTNER: &str = "5f0c7a4e-2b1d-4c39-9a8e-0d6f1b2c3a4d";

#[tokio::test]
async fn seed_003_partner_callbacks_and_echo() {
    let (stack, key) = start(PARTNER).await;
    let (first, second) = (Receiver::start().await, Receiver::start().await);
    let base = format!("/partners/{PARTNER}/callbacks");

    // PUT creates, PUT again replaces: still one callback for the type.
    let a = call(&stack, &key, Method::PUT, &format!("{base}/1"), Some(json!({"callbackUrl": first.url()}))).await;
    expect(&a, 200, "create callback");
    assert_eq!(a.body["partnerUniqueID"], PARTNER);
    assert_eq!(a.body["notificationType"], 1);
    assert_eq!(a.body["eventType"], "WorkflowStateChange");
    assert_eq!(a.body["callbackUrl"], first.url());
    assert_eq!(a.body["status"], "active");
    assert!(a.body.get("auth").is_none(), "{}", a.raw);
    let a = call(&stack, &key, Method::PUT, &format!("{base}/1"), Some(json!({"callbackUrl": second.url()}))).await;
    expect(&a, 200, "replace callback");
    assert_eq!(a.body["callbackUrl"], second.url());
    let a = call(
        &stack,
        &key,
        Method::PUT,
        &format!("{base}/2"),
        Some(json!({"callbackUrl": first.url(), "auth": {"type": "bearer", "token": "partner-token"}})),
    )
    .await;
    expect(&a, 200, "callback with auth");
    assert_eq!(a.body["auth"], json!({"type": "bearer"}));
    assert!(!a.raw.contains("partner-token"), "{}", a.raw);
    assert_eq!(endpoints(&stack, &key).await.len(), 2);

    // List with offset and limit.
    let a = call(&stack, &key, Method::GET, &base, None).await;
    expect(&a, 200, "list");
    let codes: Vec<u64> = a.body.as_array().unwrap().iter().map(|c| c["notificationType"].as_u64().unwrap()).collect();
    assert_eq!(codes, vec![1, 2]);
    let a = call(&stack, &key, Method::GET, &format!("{base}?offset=1&limit=1"), None).await;
    expect(&a, 200, "list page");
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    assert_eq!(a.body[0]["notificationType"], 2);
    let a = call(&stack, &key, Method::GET, &format!("{base}?offset=0&limit=1"), None).await;
    assert_eq!(a.body[0]["notificationType"], 1);
    let a = call(&stack, &key, Method::GET, &format!("{base}?limit=0"), None).await;
    expect_invalid(&a, "limit", "limit 0");

    // Echo: exactly one of processUniqueId and simulationUniqueId.
    let echo = format!("{base}/1/echo");
    let both = json!({"rawBody": {"processUniqueId": "p-1", "simulationUniqueId": "s-1", "state": "Approved"}});
    let a = call(&stack, &key, Method::POST, &echo, Some(both)).await;
    expect_invalid(&a, "rawBody", "both ids");
    let neither = json!({"rawBody": {"state": "Approved"}});
    let a = call(&stack, &key, Method::POST, &echo, Some(neither)).await;
    expect_invalid(&a, "rawBody", "neither id");
    let a = call(&stack, &key, Method::POST, &echo, Some(json!({"rawBody": [1]}))).await;
    expect_invalid(&a, "rawBody", "rawBody not an object");
    let raw_body = json!({"processUniqueId": "p-1", "state": "Approved", "previousState": "Submitted",
                          "changedAt": "2024-05-07T19:18:32Z"});
    let a = call(&stack, &key, Method::POST, &echo, Some(json!({"rawBody": raw_body}))).await;
    expect(&a, 200, "echo");
    assert_eq!(a.body["deliveries"], 1, "{}", a.raw);
    let event_id = a.body["id"].as_str().unwrap().to_owned();
    let got = second.wait_for(1, WAIT).await;
    let body = got[0].json();
    assert_eq!(body["id"], event_id.as_str());
    assert_eq!(body["type"], "WorkflowStateChange");
    assert_eq!(body["data"], raw_body);
    assert_eq!(got[0].header("webhook-id"), Some(event_id.as_str()));
    assert_eq!(first.count(), 0, "the replaced URL got the echo");
    // The type-2 callback authenticates with its bearer token.
    let a = call(
        &stack,
        &key,
        Method::POST,
        &format!("{base}/2/echo"),
        Some(json!({"rawBody": {"simulationUniqueId": "s-9", "noteId": "n-1"}})),
    )
    .await;
    expect(&a, 200, "echo notes");
    let got = first.wait_for(1, WAIT).await;
    assert_eq!(got[0].header("authorization"), Some("Bearer partner-token"));
    assert_eq!(got[0].json()["data"]["simulationUniqueId"], "s-9");

    // Missing and unknown things.
    let a =
        call(&stack, &key, Method::POST, &format!("{base}/3/echo"), Some(json!({"rawBody": {"processUniqueId": "p"}})))
            .await;
    expect(&a, 404, "echo without a callback");
    let a = call(&stack, &key, Method::PUT, &format!("{base}/99"), Some(json!({"callbackUrl": first.url()}))).await;
    expect(&a, 404, "unknown notification type");
    let a = call(&stack, &key, Method::PUT, &format!("{base}/Notes"), Some(json!({"callbackUrl": first.url()}))).await;
    expect_invalid(&a, "notificationType", "non-integer notification type");
    let a = call(&stack, &key, Method::PUT, &format!("{base}/3"), Some(json!({"callbackUrl": "ftp://x.example.com/"})))
        .await;
    expect_invalid(&a, "callbackUrl", "bad callbackUrl");
    let a = call(&stack, &key, Method::PUT, &format!("{base}/3"), Some(json!({}))).await;
    expect_invalid(&a, "callbackUrl", "missing callbackUrl");

    // Another partner is not found, for a key; the admin may act for any partner.
    let other = stack.tenant_with_key("globex").await;
    let a = call(&stack, &other, Method::GET, &base, None).await;
    expect(&a, 404, "another partner's list");
    let a = call(&stack, &other, Method::DELETE, &format!("{base}/1"), None).await;
    expect(&a, 404, "another partner's callback");
    let a = call(&stack, ADMIN_TOKEN, Method::GET, &base, None).await;
    expect(&a, 200, "admin list");
    assert_eq!(a.body.as_array().unwrap().len(), 2);

    // DELETE, then DELETE of a missing callback is 404.
    let a = call(&stack, &key, Method::DELETE, &format!("{base}/1"), None).await;
    expect(&a, 204, "delete callback");
    let a = call(&stack, &key, Method::DELETE, &format!("{base}/1"), None).await;
    expect(&a, 404, "delete a missing callback");
    let a = call(&stack, &key, Method::GET, &base, None).await;
    assert_eq!(a.body.as_array().unwrap().len(), 1);
    stack.stop().await;
}

// ---------------------------------------------------------------- seed 004

#[tokio::test]
async fn seed_004_company_webhook_in_the_seed_body() {
    let (stack, key) = start("acme-co").await;
    let (first, second) = (Receiver::start().await, Receiver::start().await);

    let a = call(
        &stack,
        &key,
        Method::POST,
        "/company/webhook",
        Some(json!({"companyAccessCode": "acme-co", "webhookURL": first.url()})),
    )
    .await;
    expect(&a, 200, "set the webhook");
    assert_eq!(a.body["companyAccessCode"], "acme-co");
    assert_eq!(a.body["webhookURL"], first.url());
    let events: BTreeSet<&str> = a.body["events"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
    assert_eq!(
        events,
        BTreeSet::from([
            "USER_PII_UPDATE",
            "SELF_VERIFICATION_TRY_STATUS",
            "CRIMINAL_REQUEST_STATUS_UPDATE",
            "ALL_CRIMINAL_REQUESTS_COMPLETE",
            "UPLOAD_ID_ENHANCED_REVIEW_STATUS",
            "UPLOAD_PASSPORT_ENHANCED_REVIEW_STATUS",
            "USER_PDF_REPORT_GENERATION",
            "SEX_OFFENDER_CHECK_STATUS_UPDATE",
        ])
    );

    // Another company is forbidden; the seed's fields are required.
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/company/webhook",
        Some(json!({"companyAccessCode": "globex", "webhookURL": first.url()})),
    )
    .await;
    expect(&a, 403, "another company");
    let a = call(&stack, &key, Method::POST, "/company/webhook", Some(json!({"companyAccessCode": "acme-co"}))).await;
    expect_invalid(&a, "webhookURL", "missing webhookURL");
    let a = call(&stack, &key, Method::POST, "/company/webhook", Some(json!({"webhookURL": first.url()}))).await;
    expect_invalid(&a, "companyAccessCode", "missing companyAccessCode");
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/company/webhook",
        Some(json!({"companyAccessCode": "acme-co", "webhookURL": "ftp://hooks.example.com/"})),
    )
    .await;
    expect_invalid(&a, "webhookURL", "bad webhookURL");

    // The seed's payloads arrive as {"id","event","eventDate","order"}.
    let time = "2020-12-07T19:18:32.076Z";
    let payloads = [
        ("USER_PII_UPDATE", json!({"userAccessCode": "u-1"})),
        (
            "CRIMINAL_REQUEST_STATUS_UPDATE",
            json!({"userAccessCode": "u-1", "orderDetails": {"unique_identifier": "r-9", "search_type": "COUNTY CRIMINAL",
                   "search_status": "COMPLETED", "search_sub_status": "CLEAR"}}),
        ),
    ];
    let mut ids = Vec::new();
    for (event, order) in &payloads {
        let body = json!({"tenant": "acme-co", "type": event, "data": order, "time": time});
        let a = call(&stack, ADMIN_TOKEN, Method::POST, "/v1/events", Some(body)).await;
        expect(&a, 202, "publish");
        assert_eq!(a.body["deliveries"], 1);
        ids.push(a.body["id"].as_str().unwrap().to_owned());
    }
    let got = first.wait_for(2, WAIT).await;
    for ((event, order), id) in payloads.iter().zip(&ids) {
        let r = got.iter().find(|r| r.json()["id"] == id.as_str()).unwrap_or_else(|| panic!("{id} not received"));
        assert_eq!(r.json(), json!({"id": id, "event": event, "eventDate": time, "order": order}));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }

    // Setting it again replaces it: one endpoint, the new URL gets what follows.
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/company/webhook",
        Some(json!({"companyAccessCode": "acme-co", "webhookURL": second.url()})),
    )
    .await;
    expect(&a, 200, "replace the webhook");
    assert_eq!(a.body["webhookURL"], second.url());
    let eps = endpoints(&stack, &key).await;
    assert_eq!(eps.len(), 1, "{eps:?}");
    assert_eq!((eps[0]["format"].as_str(), eps[0]["url"].as_str()), (Some("template"), Some(second.url().as_str())));
    let a = call(&stack, &key, Method::GET, "/v1/subscriptions", None).await;
    assert_eq!(a.body["data"].as_array().unwrap().len(), 1, "{}", a.raw);
    let (id, deliveries) =
        publish(&stack, "acme-co", "ALL_CRIMINAL_REQUESTS_COMPLETE", None, json!({"userAccessCode": "u-1"})).await;
    assert_eq!(deliveries, 1);
    let got = second.wait_for(1, WAIT).await;
    assert_eq!(got[0].json()["id"], id.as_str());
    assert_eq!(got[0].json()["event"], "ALL_CRIMINAL_REQUESTS_COMPLETE");
    assert_eq!(first.count(), 2, "the replaced URL still got events");

    // A webhook deactivated through /v1 is active again once set again.
    let ep = eps[0]["id"].as_str().unwrap();
    let a = call(&stack, &key, Method::POST, &format!("/v1/endpoints/{ep}/deactivate"), None).await;
    expect(&a, 200, "deactivate");
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/company/webhook",
        Some(json!({"companyAccessCode": "acme-co", "webhookURL": second.url()})),
    )
    .await;
    expect(&a, 200, "set again");
    let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{ep}"), None).await;
    assert_eq!(a.body["status"], "active");

    // The admin sets any company's webhook.
    stack.tenant_with_key("globex").await;
    let a = call(
        &stack,
        ADMIN_TOKEN,
        Method::POST,
        "/company/webhook",
        Some(json!({"companyAccessCode": "globex", "webhookURL": first.url()})),
    )
    .await;
    expect(&a, 200, "admin sets another company's webhook");
    stack.stop().await;
}

// ---------------------------------------------------------------- seed 001

/// Seed 001's subscriber: a `/v1` endpoint with OAuth 2.0 client credentials
/// and structured CloudEvents. The receiver gets a CloudEvent (judged by the
/// CloudEvents SDK) with a bearer token from the token service, and its
/// answers follow the CloudEvents webhook spec: `429` with `Retry-After` is
/// waited out, `410` disables the endpoint.
#[tokio::test]
async fn seed_001_cloudevents_with_client_credentials() {
    let (stack, key) = start("servicepower").await;
    let receiver = Receiver::start().await;
    let tokens = TokenServer::start().await;

    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/endpoints",
        Some(json!({"url": receiver.url(), "format": "cloudevents",
                    "auth": {"type": "oauth2_client_credentials", "tokenUrl": tokens.url(),
                             "clientId": "event-notification-service", "clientSecret": "registered-secret"}})),
    )
    .await;
    expect(&a, 201, "register the subscriber webhook");
    let (ep, secret) = (a.body["id"].as_str().unwrap().to_owned(), a.body["secret"].as_str().unwrap().to_owned());
    let a = call(
        &stack,
        &key,
        Method::POST,
        "/v1/subscriptions",
        Some(json!({"endpointId": ep, "eventTypes": ["servicepower.event"]})),
    )
    .await;
    expect(&a, 201, "subscribe");

    let data = json!({"serviceOrder": "SO-1", "status": "Scheduled"});
    let (event_id, deliveries) = publish(&stack, "servicepower", "servicepower.event", None, data.clone()).await;
    assert_eq!(deliveries, 1);
    let got = receiver.wait_for(1, WAIT).await;
    let r = &got[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("authorization"), Some("Bearer tok-1"));
    assert!(r.header("content-type").is_some_and(|c| c.starts_with("application/cloudevents+json")), "{r:?}");
    let ce = r.json();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], event_id.as_str());
    assert_eq!(ce["type"], "servicepower.event");
    assert_eq!(ce["data"], data);
    let verdict =
        judge(&[judged(r, "cloudevents-structured", &secret, json!({"id": event_id, "type": "servicepower.event"}))])
            .await;
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["results"][0]["dataIsObject"], true, "{verdict}");
    let (headers, form) = tokens.seen().pop().unwrap();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    assert!(
        headers.get("authorization").is_some_and(|h| h.starts_with("Basic ")) || form.contains("client_id="),
        "the token request carried no client credentials: {headers:?} {form}"
    );

    // 429 with Retry-After: the next attempt waits at least that long (the schedule says 200ms).
    receiver.script([Reply::status(429).header("retry-after", "1")]);
    let (event_id, _) = publish(&stack, "servicepower", "servicepower.event", None, data.clone()).await;
    let got = receiver.wait_for(3, WAIT).await;
    let (first, second) = (&got[1], &got[2]);
    assert_eq!(
        (first.json()["id"].as_str(), second.json()["id"].as_str()),
        (Some(event_id.as_str()), Some(event_id.as_str()))
    );
    let waited = second.at - first.at;
    assert!(waited >= Duration::from_secs(1), "retried after only {waited:?}");
    assert_eq!(second.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(tokens.requests(), 1, "the cached token was not reused");

    // 410 Gone disables the endpoint; nothing more is sent to it.
    receiver.respond_with(410);
    publish(&stack, "servicepower", "servicepower.event", None, data.clone()).await;
    receiver.wait_for(4, WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let a = call(&stack, &key, Method::GET, &format!("/v1/endpoints/{ep}"), None).await;
        if a.body["status"] == "disabled" {
            assert_eq!(a.body["disabledReason"], "gone", "{}", a.raw);
            break;
        }
        assert!(Instant::now() < deadline, "the endpoint was not disabled: {}", a.raw);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, deliveries) = publish(&stack, "servicepower", "servicepower.event", None, data).await;
    assert_eq!(deliveries, 0, "a disabled endpoint gets nothing new");
    assert_eq!(receiver.count(), 4);
    stack.stop().await;
}

// ---------------------------------------------------------------- fuzzing

/// Fuzzes every profile operation from `/openapi.json` with schemathesis, as
/// the admin and as a tenant, and finds no server error. No URL can become a
/// delivery target: private networks are refused and no domain name passes
/// (`%` is never a top-level domain), so nothing is resolved or sent.
#[tokio::test]
async fn schemathesis_finds_no_server_error_in_the_profiles() {
    let catalog = herald_tests::workspace_root().join("deploy/catalog");
    let stack = Stack::start_with(|env| {
        env.set("HERALD_CATALOG_DIR", catalog.display().to_string());
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
        env.set("HERALD_ENDPOINT_ALLOWED_TLDS", "%");
    })
    .await;
    let key = stack.tenant_with_key("fuzz").await;
    let python = herald_tests::python();
    let bin = python.parent().unwrap().join("schemathesis");
    assert!(bin.exists(), "{} is missing: install tests/requirements.txt into the venv", bin.display());
    let examples = std::env::var("HERALD_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "30".to_owned());
    let mut failures = Vec::new();
    for (label, auth) in [("admin", ADMIN_TOKEN.to_owned()), ("tenant", key)] {
        let report = std::env::temp_dir().join(format!("herald-schemathesis-{}-profiles-{label}", stack.prefix));
        std::fs::create_dir_all(&report).unwrap();
        let args = [
            "run".to_owned(),
            format!("{}/openapi.json", stack.gateway_url),
            "--url".to_owned(),
            stack.gateway_url.clone(),
            "--checks".to_owned(),
            "not_a_server_error".to_owned(),
            "-H".to_owned(),
            format!("Authorization: Bearer {auth}"),
            "--max-examples".to_owned(),
            examples.clone(),
            "--seed".to_owned(),
            "20240611".to_owned(),
            "--workers".to_owned(),
            "1".to_owned(),
            "--request-timeout".to_owned(),
            "10".to_owned(),
            "--generation-database".to_owned(),
            "none".to_owned(),
            "--no-color".to_owned(),
            "--report-dir".to_owned(),
            report.display().to_string(),
            "--include-path-regex".to_owned(),
            "^/(api|partners|company)/".to_owned(),
        ];
        let output = tokio::time::timeout(
            Duration::from_secs(240),
            tokio::process::Command::new(&bin)
                .args(&args)
                .current_dir(&report)
                .kill_on_drop(true)
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("schemathesis ({label}) ran over 240 s"))
        .unwrap();
        let _ = std::fs::remove_dir_all(&report);
        let text = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let summary: Vec<&str> = text
            .lines()
            .filter(|l| {
                ["generated", "selected:", "tested:", "failures", "passed"]
                    .iter()
                    .any(|w| l.to_ascii_lowercase().contains(w))
            })
            .collect();
        println!("schemathesis over the profiles as {label}:\n{}", summary.join("\n"));
        if !output.status.success() {
            failures.push(format!("--- schemathesis as {label} ---\n{text}"));
        }
    }
    assert!(failures.is_empty(), "schemathesis found problems:\n{}", failures.join("\n"));
    stack.stop().await;
}
