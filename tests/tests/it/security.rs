//! Security defences, black box: the SSRF guard at registration and at
//! delivery time, URL rules, sealed secrets in Redis, secrets and payloads
//! kept out of logs, input limits answered with problem+json, the gRPC token,
//! per-key rate limits, tenant isolation, and a schemathesis run over the
//! OpenAPI document that must find no server error.
//!
//! Every address these tests send to is on loopback. URLs with private,
//! link-local or CGNAT hosts only ever go to a registration that must refuse
//! them, so nothing is sent there.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use herald_proto::v1::dispatch_client::DispatchClient;
use herald_proto::v1::registry_client::RegistryClient;
use herald_tests::{ADMIN_TOKEN, Receiver, Services, Stack, TokenServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);
const EVENT_TYPE: &str = "order.created";

// ---------------------------------------------------------------- helpers

/// Status, content type and JSON body of one answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    retry_after: Option<String>,
    body: Value,
    raw: String,
}

async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").unwrap_or_default();
    let retry_after = header("retry-after");
    let raw = response.text().await.unwrap();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Answer { status, content_type, retry_after, body, raw }
}

/// An RFC 9457 problem with this status and every required member.
#[track_caller]
fn assert_problem(a: &Answer, status: u16, context: &str) {
    assert_eq!(a.status, status, "{context}: expected {status}, got {} {}", a.status, a.raw);
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{context}: content-type {:?} is not application/problem+json ({})",
        a.content_type,
        a.raw
    );
    for member in ["type", "title", "detail"] {
        assert!(a.body[member].is_string(), "{context}: problem has no string {member:?}: {}", a.raw);
    }
    assert_eq!(a.body["status"].as_u64(), Some(u64::from(status)), "{context}: problem status member: {}", a.raw);
}

/// Does the problem name `field` (or a member of it, `field.x`, `field[0]`),
/// in `errors[].field` or in its detail?
fn names_field(a: &Answer, field: &str) -> bool {
    let member = |f: &str| {
        f == field || f.strip_prefix(field).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    let in_errors = a.body["errors"]
        .as_array()
        .is_some_and(|errors| errors.iter().any(|e| e["field"].as_str().is_some_and(member)));
    in_errors || a.body["detail"].as_str().is_some_and(|d| d.contains(field))
}

#[track_caller]
fn assert_invalid_field(a: &Answer, field: &str, context: &str) {
    assert_problem(a, 400, context);
    assert!(names_field(a, field), "{context}: the problem does not name {field:?}: {}", a.raw);
}

async fn create_event_type(stack: &Stack, name: &str) {
    let (status, body) = stack.admin_post("/v1/event-types", json!({"name": name, "description": "test events"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn create_endpoint(stack: &Stack, key: &str, body: Value) -> Answer {
    answer(stack.tenant(key, Method::POST, "/v1/endpoints").json(&body)).await
}

/// Creates an endpoint that must be accepted; answers its id and signing secret.
async fn endpoint_ok(stack: &Stack, key: &str, body: Value) -> (String, String) {
    let a = create_endpoint(stack, key, body).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let id = a.body["id"].as_str().unwrap().to_owned();
    let secret = a.body["secret"].as_str().or(a.body["signingSecret"].as_str()).unwrap_or_default().to_owned();
    (id, secret)
}

async fn subscribe_all(stack: &Stack, key: &str, endpoint_id: &str) {
    let a = answer(
        stack
            .tenant(key, Method::POST, "/v1/subscriptions")
            .json(&json!({"endpointId": endpoint_id, "eventTypes": ["*"]})),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.raw);
}

async fn publish(stack: &Stack, tenant: &str, data: Value) -> Answer {
    answer(stack.admin(Method::POST, "/v1/events").json(&json!({"tenant": tenant, "type": EVENT_TYPE, "data": data})))
        .await
}

/// The signing secret of an endpoint, from `GET /v1/endpoints/{id}/secret`.
async fn signing_secret(stack: &Stack, key: &str, id: &str) -> String {
    let a = answer(stack.tenant(key, Method::GET, &format!("/v1/endpoints/{id}/secret"))).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    let secret = a.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    secret
}

/// Every key under `prefix` with every byte its value holds (strings,
/// hashes, lists, sets, sorted sets and streams).
async fn redis_dump(conn: &mut herald_common::redis_conn::RedisConn, prefix: &str) -> Vec<(String, Vec<Vec<u8>>)> {
    let keys = herald_tests::scan_keys(conn, &format!("{prefix}:*")).await;
    let mut dump = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(conn).await.unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(conn).await.unwrap()],
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(conn).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(conn).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(conn).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(conn).await.unwrap(),
            "stream" => {
                let entries: redis::Value =
                    redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(conn).await.unwrap();
                let mut flat = Vec::new();
                flatten(&entries, &mut flat);
                flat
            }
            _ => Vec::new(),
        };
        dump.push((key, values));
    }
    dump
}

fn flatten(value: &redis::Value, out: &mut Vec<Vec<u8>>) {
    match value {
        redis::Value::BulkString(bytes) => out.push(bytes.clone()),
        redis::Value::SimpleString(s) => out.push(s.clone().into_bytes()),
        redis::Value::Array(items) | redis::Value::Set(items) => items.iter().for_each(|v| flatten(v, out)),
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        _ => {}
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The forms in which a leaked secret would show: itself, its base64, and
/// for a `whsec_` secret the key it encodes.
fn leak_forms(secret: &str) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut forms = vec![secret.as_bytes().to_vec(), b64.encode(secret).into_bytes()];
    if let Some(key) = secret.strip_prefix("whsec_") {
        forms.push(key.as_bytes().to_vec());
        if let Ok(raw) = b64.decode(key) {
            forms.push(raw);
        }
    }
    forms
}

// ---------------------------------------------------------------- SSRF at registration

/// With the guard on, loopback, private, link-local, CGNAT, unspecified,
/// multicast and IPv6-carried addresses are refused in every numeric
/// spelling, as are `localhost` names; an address on the operator's
/// allow-list passes; the OAuth token URL and URL updates are guarded too.
#[tokio::test]
async fn registration_refuses_non_public_urls() {
    let receiver = Receiver::start().await;
    let stack = Stack::start_with(|env| {
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
        env.set("HERALD_ENDPOINT_ALLOWED_CIDRS", "127.0.0.2/32");
    })
    .await;
    let key = stack.tenant_with_key("acme").await;
    create_event_type(&stack, EVENT_TYPE).await;
    let port = receiver.addr().port();
    let refused = [
        format!("http://127.0.0.1:{port}/hook"),
        format!("http://0x7f000001:{port}/hook"),
        format!("http://2130706433:{port}/hook"),
        format!("http://0177.0.0.1:{port}/hook"),
        format!("http://127.1:{port}/hook"),
        format!("http://%31%32%37.0.0.1:{port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{port}/hook"),
        format!("http://[::ffff:7f00:1]:{port}/hook"),
        format!("http://[::1]:{port}/hook"),
        format!("http://[2002:7f00:1::]:{port}/hook"),
        format!("http://localhost:{port}/hook"),
        format!("http://LOCALHOST.:{port}/hook"),
        format!("http://hooks.localhost:{port}/hook"),
        "https://0x7f000001/".to_owned(),
        "https://2130706433/".to_owned(),
        "https://[::ffff:127.0.0.1]/".to_owned(),
        "https://localhost/".to_owned(),
        "https://169.254.169.254/latest/meta-data/".to_owned(),
        "https://[::ffff:a9fe:a9fe]/latest/meta-data/".to_owned(),
        "https://0xa9fea9fe/".to_owned(),
        "https://100.64.0.1/".to_owned(),
        "https://100.127.255.254/".to_owned(),
        "https://10.0.0.1/".to_owned(),
        "https://012.0.0.1/".to_owned(),
        "https://172.16.0.1/".to_owned(),
        "https://172.31.255.254/".to_owned(),
        "https://192.168.1.1/".to_owned(),
        "https://0.0.0.0/".to_owned(),
        "https://0/".to_owned(),
        "https://224.0.0.1/".to_owned(),
        "https://255.255.255.255/".to_owned(),
        "https://[fd00::1]/".to_owned(),
        "https://[fe80::1]/".to_owned(),
        "https://[::]/".to_owned(),
    ];
    for url in &refused {
        let a = create_endpoint(&stack, &key, json!({"url": url})).await;
        assert_invalid_field(&a, "url", url);
    }

    // The allow-list opens exactly its own address, in any spelling.
    let (allowed, _) = endpoint_ok(&stack, &key, json!({"url": format!("http://127.0.0.2:{port}/hook")})).await;
    endpoint_ok(&stack, &key, json!({"url": format!("http://0x7f000002:{port}/hook")})).await;

    // The token URL of OAuth is a URL Herald sends to as well.
    let a = create_endpoint(
        &stack,
        &key,
        json!({
            "url": format!("http://127.0.0.2:{port}/hook"),
            "auth": {"type": "oauth2_client_credentials", "tokenUrl": "https://169.254.169.254/token",
                     "clientId": "c", "clientSecret": "s"},
        }),
    )
    .await;
    assert_invalid_field(&a, "auth.tokenUrl", "oauth token url on the metadata address");

    // Moving an accepted endpoint onto a forbidden address is refused and changes nothing.
    let a = answer(
        stack
            .tenant(&key, Method::PATCH, &format!("/v1/endpoints/{allowed}"))
            .json(&json!({"url": "https://169.254.169.254/"})),
    )
    .await;
    assert_invalid_field(&a, "url", "patch onto the metadata address");
    let a = answer(stack.tenant(&key, Method::GET, &format!("/v1/endpoints/{allowed}"))).await;
    assert_eq!(a.body["url"], json!(format!("http://127.0.0.2:{port}/hook")), "{}", a.raw);

    // Only the two allowed endpoints exist, and nothing was sent anywhere.
    let a = answer(stack.tenant(&key, Method::GET, "/v1/endpoints?limit=1000")).await;
    assert_eq!(a.body["data"].as_array().map(Vec::len), Some(2), "{}", a.raw);
    let a = publish(&stack, "acme", json!({"n": 1})).await;
    assert_eq!(a.status, 202, "{}", a.raw);
    assert_eq!(receiver.count(), 0);
    stack.stop().await;
}

/// The compatibility profiles register endpoints through their own paths
/// and field names; the same guard refuses forbidden URLs there, including
/// the seed 002 OAuth `tokenURL`. Seed error bodies are the seeds' own, so
/// only the status is checked.
#[tokio::test]
async fn compatibility_profiles_apply_the_url_guard() {
    let stack = Stack::start_with(|env| {
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
        env.set("HERALD_ENDPOINT_ALLOWED_CIDRS", "127.0.0.2/32");
    })
    .await;
    let key = stack.tenant_with_key("acme").await;
    let (status, body) = stack
        .admin_post("/v1/event-types", json!({"name": "CheckNotification", "description": "d", "code": 9001}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let allowed = "http://127.0.0.2:9/hook";

    let a =
        answer(stack.tenant(&key, Method::POST, "/api/v1/notifications/registration").json(&json!({"name": "acme"})))
            .await;
    assert!((200..300).contains(&a.status), "seed 000 registration: {}", a.raw);
    let refused = [
        (
            Method::POST,
            "/api/v1/notifications/subscriptions".to_owned(),
            json!({"callbackUri": "https://100.64.0.1/", "messageType": {"id": "CheckNotification"},
                   "orgShortName": "tfoinc"}),
        ),
        (
            Method::POST,
            "/api/notifications/v1/webhooks".to_owned(),
            json!({"targetURL": "https://169.254.169.254/latest/meta-data/", "auth": {"type": "noauth"}}),
        ),
        (
            Method::POST,
            "/api/notifications/v1/webhooks".to_owned(),
            json!({"targetURL": allowed, "auth": {"type": "client_credential", "clientID": "c",
                   "clientSecret": "s", "tokenURL": "https://10.0.0.1/token"}}),
        ),
        (
            Method::PUT,
            "/partners/acme/callbacks/9001".to_owned(),
            json!({"callbackUrl": "https://[::ffff:127.0.0.1]/"}),
        ),
        (
            Method::POST,
            "/company/webhook".to_owned(),
            json!({"companyAccessCode": "acme", "webhookURL": "https://0x7f000001/"}),
        ),
    ];
    for (method, path, body) in refused {
        let a = answer(stack.tenant(&key, method.clone(), &path).json(&body)).await;
        assert_eq!(a.status, 400, "{method} {path} with {body}: {}", a.raw);
    }
    let a = answer(stack.tenant(&key, Method::GET, "/v1/endpoints")).await;
    assert_eq!(a.body["data"], json!([]), "an endpoint was registered: {}", a.raw);
    // Controls: the same routes accept an allowed address.
    let a = answer(
        stack
            .tenant(&key, Method::POST, "/company/webhook")
            .json(&json!({"companyAccessCode": "acme", "webhookURL": allowed})),
    )
    .await;
    assert!((200..300).contains(&a.status), "seed 004 with an allowed url: {}", a.raw);
    let a = answer(
        stack
            .tenant(&key, Method::POST, "/api/notifications/v1/webhooks")
            .json(&json!({"targetURL": allowed, "auth": {"type": "noauth"}})),
    )
    .await;
    assert!((200..300).contains(&a.status), "seed 002 with an allowed url: {}", a.raw);
    stack.stop().await;
}

/// Scheme, userinfo, port and TLD rules. Hosts are IP literals or names
/// refused before any lookup, so nothing is resolved or sent.
#[tokio::test]
async fn registration_enforces_scheme_userinfo_port_and_tld() {
    let stack = Stack::start_with(|env| {
        env.set("HERALD_ALLOW_HTTP", "false");
        env.set("HERALD_ENDPOINT_ALLOWED_PORTS", "443");
        env.set("HERALD_ENDPOINT_ALLOWED_TLDS", "com,io");
    })
    .await;
    let key = stack.tenant_with_key("acme").await;
    for url in [
        "http://127.0.0.1/hook",
        "HTTP://127.0.0.1/hook",
        "ftp://127.0.0.1/",
        "gopher://127.0.0.1:70/",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "ws://127.0.0.1/",
        "not a url",
        "/relative/path",
        "https://",
        "https://user:pw@127.0.0.1/hook",
        "https://user@127.0.0.1/hook",
        "https://:pw@127.0.0.1/hook",
        "https://127.0.0.1:8443/hook",
        "https://127.0.0.1:80/hook",
        "https://hooks.example.xyz/hook",
        "https://hooks.example.com:8443/hook",
        "https://intranet/hook",
        "https://user:pw@hooks.example.com/hook",
    ] {
        let a = create_endpoint(&stack, &key, json!({"url": url})).await;
        assert_invalid_field(&a, "url", url);
    }
    // Controls: the same rules let these through.
    endpoint_ok(&stack, &key, json!({"url": "https://127.0.0.1/hook"})).await;
    endpoint_ok(&stack, &key, json!({"url": "https://127.0.0.1:443/hook"})).await;
    stack.stop().await;
}

// ---------------------------------------------------------------- SSRF at delivery time

/// Endpoints registered while private networks were allowed are not sent to
/// by a dispatcher whose policy forbids them: neither the IP literal nor
/// the name that resolves to loopback reaches the receiver.
#[tokio::test]
async fn dispatcher_refuses_non_public_addresses_at_delivery_time() {
    let receiver = Receiver::start().await;
    let prefix = herald_tests::unique_prefix();
    // Three stacks over one key prefix: a registry that allows private
    // networks, a dispatcher that refuses them, and a gateway in front.
    let registry = Stack::start_services_with(Services::REGISTRY, |env| {
        env.set("HERALD_REDIS_PREFIX", prefix.clone());
    })
    .await;
    let registry_url = registry.registry_url.clone();
    let only_dispatch = Services { registry: false, dispatch: true, gateway: false };
    let dispatch = Stack::start_services_with(only_dispatch, |env| {
        env.set("HERALD_REDIS_PREFIX", prefix.clone());
        env.set("HERALD_REGISTRY_URL", registry_url.clone());
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
        env.set("HERALD_RETRY_SCHEDULE", "100ms");
    })
    .await;
    let dispatch_url = dispatch.dispatch_url.clone();
    let only_gateway = Services { registry: false, dispatch: false, gateway: true };
    let stack = Stack::start_services_with(only_gateway, |env| {
        env.set("HERALD_REDIS_PREFIX", prefix.clone());
        env.set("HERALD_REGISTRY_URL", registry_url);
        env.set("HERALD_DISPATCH_URL", dispatch_url);
    })
    .await;
    let key = stack.tenant_with_key("acme").await;
    create_event_type(&stack, EVENT_TYPE).await;
    let port = receiver.addr().port();
    let (literal, _) = endpoint_ok(&stack, &key, json!({"url": receiver.url()})).await;
    let (named, _) = endpoint_ok(&stack, &key, json!({"url": format!("http://localhost:{port}/hook")})).await;
    subscribe_all(&stack, &key, &literal).await;
    subscribe_all(&stack, &key, &named).await;
    let a = publish(&stack, "acme", json!({"n": 1})).await;
    assert_eq!(a.status, 202, "{}", a.raw);
    assert_eq!(a.body["deliveries"], json!(2), "{}", a.raw);

    // Both deliveries run out of attempts with an error and nothing arrives.
    let deadline = Instant::now() + WAIT;
    let mut failed = HashSet::new();
    while failed.len() < 2 {
        assert!(Instant::now() < deadline, "deliveries did not fail in time; failed: {failed:?}");
        let a = answer(stack.tenant(&key, Method::GET, "/v1/deliveries?status=failed")).await;
        assert_eq!(a.status, 200, "{}", a.raw);
        for d in a.body["data"].as_array().into_iter().flatten() {
            failed.insert(d["id"].as_str().unwrap().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &failed {
        let a = answer(stack.tenant(&key, Method::GET, &format!("/v1/deliveries/{id}"))).await;
        let attempts = a.body["attempts"].as_array().cloned().unwrap_or_default();
        assert!(!attempts.is_empty(), "{}", a.raw);
        for attempt in &attempts {
            assert!(attempt["statusCode"].is_null() || attempt["statusCode"] == json!(0), "{}", a.raw);
            assert!(attempt["error"].as_str().is_some_and(|e| !e.is_empty()), "{}", a.raw);
        }
    }

    // A test send is refused the same way.
    let a = answer(
        stack
            .tenant(&key, Method::POST, &format!("/v1/endpoints/{named}/test"))
            .json(&json!({"eventType": EVENT_TYPE, "data": {"n": 2}})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["delivered"], json!(false), "{}", a.raw);
    assert_eq!(receiver.count(), 0, "the dispatcher sent to loopback although its policy forbids it");
    stack.stop().await;
    dispatch.stop().await;
    registry.stop().await;
}

// ---------------------------------------------------------------- secrets

struct Secrets {
    values: Vec<(&'static str, String)>,
    payload_marker: String,
}

/// Creates endpoints holding every kind of secret, subscribes them, and
/// publishes one event that each delivers (so the sealed secrets were
/// actually stored and used).
async fn exercise_secrets(stack: &Stack) -> Secrets {
    let unique = herald_common::ids::new_id("x");
    let password = format!("basic-pw-{unique}");
    let token = format!("bearer-tok-{unique}");
    let client_secret = format!("oauth-cs-{unique}");
    let failing_secret = format!("oauth-cs-fail-{unique}");
    let payload_marker = format!("payload-marker-{unique}");
    let header_value = format!("header-api-key-{unique}");
    let receiver = Receiver::start().await;
    let tokens = TokenServer::start().await;
    let refusing_tokens = TokenServer::start().await;
    refusing_tokens.fail_with(401, "invalid_client");

    let key = stack.tenant_with_key("acme").await;
    create_event_type(stack, EVENT_TYPE).await;
    let auths = [
        json!({"type": "basic", "username": "herald", "password": password}),
        json!({"type": "bearer", "token": token}),
        json!({"type": "oauth2_client_credentials", "tokenUrl": tokens.url(), "clientId": "cid",
               "clientSecret": client_secret}),
        json!({"type": "oauth2_client_credentials", "tokenUrl": refusing_tokens.url(), "clientId": "cid",
               "clientSecret": failing_secret, "clientAuth": "post"}),
    ];
    let mut values = vec![
        ("basic password", password.clone()),
        ("bearer token", token.clone()),
        ("oauth client secret", client_secret.clone()),
        ("oauth client secret (failing)", failing_secret.clone()),
        ("api key", key.clone()),
        ("custom header value", header_value.clone()),
    ];
    let mut ids = Vec::new();
    for auth in auths {
        let headers = json!({"X-Api-Key": header_value});
        let a = create_endpoint(stack, &key, json!({"url": receiver.url(), "auth": auth, "headers": headers})).await;
        assert_eq!(a.status, 201, "{}", a.raw);
        for needle in [&password, &token, &client_secret, &failing_secret] {
            assert!(!a.raw.contains(needle.as_str()), "the 201 answer carries an auth secret: {}", a.raw);
        }
        let id = a.body["id"].as_str().unwrap().to_owned();
        let secret = signing_secret(stack, &key, &id).await;
        values.push(("signing secret", secret));
        subscribe_all(stack, &key, &id).await;
        ids.push(id);
    }
    // A rotation leaves two signing secrets stored.
    let a = answer(stack.tenant(&key, Method::POST, &format!("/v1/endpoints/{}/secret/rotate", ids[0]))).await;
    assert!(a.status == 200 || a.status == 201, "{}", a.raw);
    values.push(("rotated signing secret", signing_secret(stack, &key, &ids[0]).await));

    let a = publish(stack, "acme", json!({"marker": payload_marker})).await;
    assert_eq!(a.status, 202, "{}", a.raw);
    let got = receiver.wait_for(3, WAIT).await;
    let authorizations: HashSet<_> = got.iter().filter_map(|r| r.header("authorization")).map(str::to_owned).collect();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("herald:{password}"));
    assert!(authorizations.contains(&format!("Basic {basic}")), "{authorizations:?}");
    assert!(authorizations.contains(&format!("Bearer {token}")), "{authorizations:?}");
    assert!(authorizations.iter().any(|a| a.starts_with("Bearer tok-")), "{authorizations:?}");
    assert!(got.iter().all(|r| r.header("x-api-key") == Some(header_value.as_str())), "{got:?}");
    // The refusing token endpoint was asked (and the delivery failed), so its secret was used too.
    let deadline = Instant::now() + WAIT;
    while refusing_tokens.requests() == 0 {
        assert!(Instant::now() < deadline, "the failing oauth endpoint was never asked for a token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // No answer carries an auth secret.
    let mut reads = vec!["/v1/endpoints?limit=1000".to_owned()];
    reads.extend(ids.iter().map(|id| format!("/v1/endpoints/{id}")));
    for path in reads {
        let a = answer(stack.tenant(&key, Method::GET, &path)).await;
        assert_eq!(a.status, 200, "{path}: {}", a.raw);
        for (what, value) in &values[..4] {
            assert!(!a.raw.contains(value.as_str()), "{path} answers the {what}: {}", a.raw);
        }
        // Header values are sealed in Redis but answered as the API always did.
        assert!(a.raw.contains(&header_value), "{path} does not answer the header value: {}", a.raw);
    }
    Secrets { values, payload_marker }
}

/// A Redis dump holds no auth password, bearer token, client secret,
/// signing secret or API key, in any key or value.
#[tokio::test]
async fn secrets_are_sealed_at_rest() {
    let stack = Stack::start().await;
    let secrets = exercise_secrets(&stack).await;
    let mut conn = stack.redis().await;
    let dump = redis_dump(&mut conn, &stack.prefix).await;
    assert!(dump.len() > 5, "the scan found almost nothing under {}: {dump:?}", stack.prefix);
    let mut leaks = Vec::new();
    for (what, secret) in &secrets.values {
        for form in leak_forms(secret) {
            for (key, values) in &dump {
                if contains(key.as_bytes(), &form) || values.iter().any(|v| contains(v, &form)) {
                    leaks.push(format!("{what} in {key}"));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "plaintext secrets in Redis: {leaks:?}");
    stack.stop().await;
}

/// A real service process killed on drop.
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn terminate(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The three services as real processes logging at `debug`: what they log
/// while holding, using and failing with secrets carries none of them, nor
/// the event payload. (In-process services share the test's one global
/// subscriber, whose output cannot be captured per test; processes can.)
#[tokio::test]
async fn logs_carry_no_secrets_or_payloads() {
    let dir = std::env::temp_dir().join(format!("herald-log-test-{}", herald_tests::unique_prefix()));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..5).map(|_| herald_tests::free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut env = vec![
        ("HERALD_REDIS_URL", herald_tests::redis_url()),
        ("HERALD_REDIS_PREFIX", herald_tests::unique_prefix()),
        ("HERALD_SECRET_KEY", herald_tests::SECRET_KEY.to_owned()),
        ("HERALD_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("HERALD_ALLOW_PRIVATE_NETWORKS", "true".to_owned()),
        ("HERALD_ALLOW_HTTP", "true".to_owned()),
        ("HERALD_PARTITIONS", "4".to_owned()),
        ("HERALD_DELIVERY_TIMEOUT_MS", "2000".to_owned()),
        ("HERALD_RETRY_SCHEDULE", "100ms,200ms".to_owned()),
        ("HERALD_REGISTRY_LISTEN", addr(0)),
        ("HERALD_REGISTRY_ADMIN_LISTEN", addr(1)),
        ("HERALD_DISPATCH_LISTEN", addr(2)),
        ("HERALD_DISPATCH_ADMIN_LISTEN", addr(3)),
        ("HERALD_GATEWAY_LISTEN", addr(4)),
        ("HERALD_REGISTRY_URL", format!("http://{}", addr(0))),
        ("HERALD_DISPATCH_URL", format!("http://{}", addr(2))),
        ("RUST_LOG", "debug".to_owned()),
    ];
    env.push(("HERALD_GRPC_TOKEN", "grpc-token-for-log-test".to_owned()));
    let mut processes = Vec::new();
    let mut logs = Vec::new();
    for name in ["herald-registry", "herald-dispatch", "herald-gateway"] {
        let log: PathBuf = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(herald_tests::binary(name))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        processes.push(Process { name, child });
        logs.push((name, log));
    }
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    for url in [
        format!("http://{}/readyz", addr(1)),
        format!("http://{}/readyz", addr(3)),
        format!("http://{}/readyz", addr(4)),
    ] {
        loop {
            for p in &mut processes {
                if let Ok(Some(status)) = p.child.try_wait() {
                    panic!("{} exited during start-up with {status}", p.name);
                }
            }
            match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(r) if r.status().is_success() => break,
                _ => {
                    assert!(Instant::now() < deadline, "{url} never became ready");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    let stack = ProcessStack { http: http.clone(), gateway_url: format!("http://{}", addr(4)) };
    let secrets = exercise_secrets_over(&stack).await;
    // A bad admin token and a bad API key are secrets too, as callers typed them.
    let wrong_key = "hk_this-key-does-not-exist-0123456789";
    let a = answer(http.get(format!("{}/v1/endpoints", stack.gateway_url)).bearer_auth(wrong_key)).await;
    assert_eq!(a.status, 401, "{}", a.raw);
    for p in &mut processes {
        p.terminate();
    }

    let mut text = String::new();
    for (name, log) in &logs {
        let content = std::fs::read_to_string(log).unwrap();
        assert!(!content.trim().is_empty(), "{name} logged nothing at debug level");
        text.push_str(&content);
    }
    let mut leaks = Vec::new();
    let mut needles = secrets.values.clone();
    needles.push(("admin token", ADMIN_TOKEN.to_owned()));
    needles.push(("grpc token", "grpc-token-for-log-test".to_owned()));
    needles.push(("unknown api key", wrong_key.to_owned()));
    needles.push(("event payload", secrets.payload_marker.clone()));
    for (what, secret) in &needles {
        for form in leak_forms(secret) {
            if let Some(line) = text.lines().find(|l| contains(l.as_bytes(), &form)) {
                leaks.push(format!("{what}: {line}"));
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(leaks.is_empty(), "secrets or payloads in the logs:\n{}", leaks.join("\n"));
}

/// The gateway of a stack of processes, for [`exercise_secrets_over`].
struct ProcessStack {
    http: reqwest::Client,
    gateway_url: String,
}

/// [`exercise_secrets`] against any gateway, through plain HTTP.
async fn exercise_secrets_over(stack: &ProcessStack) -> Secrets {
    let admin = |method: Method, path: &str| {
        stack.http.request(method, format!("{}{path}", stack.gateway_url)).bearer_auth(ADMIN_TOKEN)
    };
    let unique = herald_common::ids::new_id("x");
    let tenant = format!("logs-{}", unique.to_ascii_lowercase());
    let a = answer(admin(Method::POST, "/v1/tenants").json(&json!({"id": tenant, "name": "logs"}))).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let a = answer(admin(Method::POST, &format!("/v1/tenants/{tenant}/api-keys")).json(&json!({"name": "k"}))).await;
    assert_eq!(a.status, 201, "{}", a.raw);
    let key = a.body["key"].as_str().unwrap().to_owned();
    let a = answer(admin(Method::POST, "/v1/event-types").json(&json!({"name": EVENT_TYPE, "description": "d"}))).await;
    assert!(a.status == 201 || a.status == 409, "{}", a.raw);
    let tenant_req = |method: Method, path: &str| {
        stack.http.request(method, format!("{}{path}", stack.gateway_url)).bearer_auth(&key)
    };

    let password = format!("basic-pw-{unique}");
    let token = format!("bearer-tok-{unique}");
    let client_secret = format!("oauth-cs-{unique}");
    let failing_secret = format!("oauth-cs-fail-{unique}");
    let payload_marker = format!("payload-marker-{unique}");
    let header_value = format!("header-api-key-{unique}");
    let receiver = Receiver::start().await;
    let rejecting = Receiver::start().await;
    rejecting.respond_with(401);
    let tokens = TokenServer::start().await;
    let refusing_tokens = TokenServer::start().await;
    refusing_tokens.fail_with(401, "invalid_client");
    let endpoints = [
        (receiver.url(), json!({"type": "basic", "username": "herald", "password": password})),
        (receiver.url(), json!({"type": "bearer", "token": token})),
        (
            rejecting.url(),
            json!({"type": "oauth2_client_credentials", "tokenUrl": tokens.url(), "clientId": "cid",
                   "clientSecret": client_secret}),
        ),
        (
            receiver.url(),
            json!({"type": "oauth2_client_credentials", "tokenUrl": refusing_tokens.url(), "clientId": "cid",
                   "clientSecret": failing_secret, "clientAuth": "post"}),
        ),
    ];
    let mut values = vec![
        ("basic password", password),
        ("bearer token", token),
        ("oauth client secret", client_secret),
        ("oauth client secret (failing)", failing_secret),
        ("api key", key.clone()),
        ("custom header value", header_value.clone()),
    ];
    for (url, auth) in endpoints {
        let body = json!({"url": url, "auth": auth, "headers": {"X-Api-Key": header_value}});
        let a = answer(tenant_req(Method::POST, "/v1/endpoints").json(&body)).await;
        assert_eq!(a.status, 201, "{}", a.raw);
        let id = a.body["id"].as_str().unwrap().to_owned();
        let s = answer(tenant_req(Method::GET, &format!("/v1/endpoints/{id}/secret"))).await;
        values.push(("signing secret", s.body["secret"].as_str().unwrap_or_default().to_owned()));
        let a =
            answer(tenant_req(Method::POST, "/v1/subscriptions").json(&json!({"endpointId": id, "eventTypes": ["*"]})))
                .await;
        assert_eq!(a.status, 201, "{}", a.raw);
    }
    let a = answer(
        admin(Method::POST, "/v1/events")
            .json(&json!({"tenant": tenant, "type": EVENT_TYPE, "data": {"marker": payload_marker}})),
    )
    .await;
    assert_eq!(a.status, 202, "{}", a.raw);
    receiver.wait_for(2, WAIT).await;
    // The 401 answer drops the OAuth token and retries with a fresh one.
    rejecting.wait_for(2, WAIT).await;
    let deadline = Instant::now() + WAIT;
    while refusing_tokens.requests() == 0 {
        assert!(Instant::now() < deadline, "the failing oauth endpoint was never asked for a token");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the retries of the failing deliveries run (and log) too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    Secrets { values, payload_marker }
}

// ---------------------------------------------------------------- input limits

/// Every malformed or oversized request is a problem+json 4xx, never a 500.
#[tokio::test]
async fn bad_input_is_answered_with_problem_json() {
    // Every body is bounded by HERALD_MAX_EVENT_BYTES; 8 KiB leaves room for the other cases.
    let stack = Stack::start_with(|env| env.set("HERALD_MAX_EVENT_BYTES", "8192")).await;
    let key = stack.tenant_with_key("acme").await;
    create_event_type(&stack, EVENT_TYPE).await;
    let url = "http://127.0.0.1:9/hook";

    // Event bodies over HERALD_MAX_EVENT_BYTES.
    let big = json!({"tenant": "acme", "type": EVENT_TYPE, "data": {"blob": "x".repeat(9000)}});
    let a = answer(stack.admin(Method::POST, "/v1/events").json(&big)).await;
    assert_problem(&a, 413, "event over HERALD_MAX_EVENT_BYTES");
    let huge = json!({"tenant": "acme", "type": EVENT_TYPE, "data": {"blob": "x".repeat(4 << 20)}});
    let a = answer(stack.admin(Method::POST, "/v1/events").json(&huge)).await;
    assert_problem(&a, 413, "4 MiB event");
    let small = json!({"tenant": "acme", "type": EVENT_TYPE, "data": {"blob": "x".repeat(7000)}});
    let a = answer(stack.admin(Method::POST, "/v1/events").json(&small)).await;
    assert_eq!(a.status, 202, "an event under the limit: {}", a.raw);

    // Bodies that are not JSON.
    for (path, body, caller) in [
        ("/v1/events", small.to_string(), ADMIN_TOKEN),
        ("/v1/endpoints", json!({"url": url}).to_string(), key.as_str()),
        ("/v1/subscriptions", json!({"endpointId": "ep_x", "eventTypes": ["*"]}).to_string(), key.as_str()),
    ] {
        let a =
            answer(stack.tenant(caller, Method::POST, path).header("content-type", "text/plain").body(body.clone()))
                .await;
        assert_problem(&a, 415, &format!("text/plain to {path}"));
        let a = answer(stack.tenant(caller, Method::POST, path).body(body)).await;
        assert_problem(&a, 415, &format!("no content-type to {path}"));
    }

    // Malformed JSON and wrong shapes.
    for (path, raw) in [
        ("/v1/endpoints", "{\"url\":"),
        ("/v1/endpoints", "{\"url\": \"http://127.0.0.1:9/\",}"),
        ("/v1/endpoints", "[]"),
        ("/v1/endpoints", "null"),
        ("/v1/endpoints", "\"string\""),
        ("/v1/endpoints", "{\"url\": \"\u{0}\"}"),
        ("/v1/endpoints", "\u{feff}{}"),
        ("/v1/events", "{\"tenant\": \"acme\", \"type\": "),
        ("/v1/subscriptions", "{{{{"),
        ("/v1/tenants", "{\"id\": 1}"),
    ] {
        let request = if path == "/v1/endpoints" || path == "/v1/subscriptions" {
            stack.tenant(&key, Method::POST, path)
        } else {
            stack.admin(Method::POST, path)
        };
        let a = answer(request.header("content-type", "application/json").body(raw)).await;
        assert_problem(&a, 400, &format!("{path} with {raw:?}"));
    }

    let headers_33: serde_json::Map<String, Value> = (0..33).map(|i| (format!("X-Custom-{i}"), json!("v"))).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({"url": 5}), "url"),
        (json!({"url": ["http://127.0.0.1:9/"]}), "url"),
        (json!({}), "url"),
        (json!({"url": format!("http://127.0.0.1:9/{}", "a".repeat(2040))}), "url"),
        (json!({"url": url, "description": "d".repeat(1025)}), "description"),
        (json!({"url": url, "description": 7}), "description"),
        (json!({"url": url, "headers": headers_33}), "headers"),
        (json!({"url": url, "headers": {"X-Ok": 5}}), "headers"),
        (json!({"url": url, "headers": "x"}), "headers"),
        (json!({"url": url, "format": "xml"}), "format"),
        (json!({"url": url, "ordering": "random"}), "ordering"),
        (json!({"url": url, "auth": {"type": "digest"}}), "auth"),
        (json!({"url": url, "auth": {"type": "basic"}}), "auth"),
        (json!({"url": url, "auth": "basic"}), "auth"),
        (json!({"url": url, "rateLimitPerSecond": -1}), "rateLimitPerSecond"),
        (json!({"url": url, "rateLimitPerSecond": "fast"}), "rateLimitPerSecond"),
        (json!({"url": url, "maxInFlight": 1e12}), "maxInFlight"),
        (json!({"url": url, "metadata": {"k": {"nested": true}}}), "metadata"),
    ];
    for (body, field) in &cases {
        let a = create_endpoint(&stack, &key, body.clone()).await;
        assert_invalid_field(&a, field, &format!("endpoint {}", truncate(&body.to_string())));
    }
    for name in
        ["webhook-id", "Webhook-Signature", "authorization", "Content-Type", "host", "user-agent", "traceparent"]
    {
        let a = create_endpoint(&stack, &key, json!({"url": url, "headers": {name: "x"}})).await;
        assert_invalid_field(&a, "headers", &format!("reserved header {name}"));
    }
    for name in ["bad header", "x\u{e9}", "a:b", ""] {
        let a = create_endpoint(&stack, &key, json!({"url": url, "headers": {name: "x"}})).await;
        assert_problem(&a, 400, &format!("header name {name:?}"));
    }
    let a = create_endpoint(&stack, &key, json!({"url": url, "headers": {"X-Ok": "line\r\nInjected: 1"}})).await;
    assert_problem(&a, 400, "header value with CRLF");
    let ok_headers: serde_json::Map<String, Value> = (0..32).map(|i| (format!("X-Custom-{i}"), json!("v"))).collect();
    endpoint_ok(&stack, &key, json!({"url": url, "headers": ok_headers, "description": "d".repeat(1024)})).await;

    // Lists, ids and events.
    for path in
        ["/v1/endpoints?limit=0", "/v1/endpoints?limit=1001", "/v1/endpoints?limit=abc", "/v1/endpoints?limit=-1"]
    {
        let a = answer(stack.tenant(&key, Method::GET, path)).await;
        assert_invalid_field(&a, "limit", path);
    }
    for path in ["/v1/endpoints/ep_does-not-exist", "/v1/deliveries/dlv_nope", "/v1/subscriptions/x"] {
        let a = answer(stack.tenant(&key, Method::GET, path)).await;
        assert_problem(&a, 404, path);
    }
    for path in ["/v1/endpoints/%00", "/v1/endpoints/%ff%fe", &format!("/v1/endpoints/{}", "e".repeat(5000))] {
        let a = answer(stack.tenant(&key, Method::GET, path)).await;
        assert!(a.status == 400 || a.status == 404, "{}: {} {}", truncate(path), a.status, a.raw);
        assert_problem(&a, a.status, &truncate(path));
    }
    let long_id = "e".repeat(300);
    for (body, field) in [
        (json!({"tenant": "acme", "type": "no.such.type", "data": {}}), "type"),
        (json!({"tenant": "acme", "type": EVENT_TYPE, "data": "text"}), "data"),
        (json!({"tenant": "acme", "type": EVENT_TYPE, "data": [1, 2]}), "data"),
        (json!({"tenant": "acme", "type": EVENT_TYPE}), "data"),
        (json!({"tenant": "acme", "type": EVENT_TYPE, "data": {}, "id": long_id}), "id"),
        (json!({"tenant": "acme", "type": EVENT_TYPE, "data": {}, "time": "yesterday"}), "time"),
        (json!({"tenant": "acme", "type": EVENT_TYPE, "data": {}, "resource": 5}), "resource"),
        (json!({"tenant": 5, "type": EVENT_TYPE, "data": {}}), "tenant"),
    ] {
        let a = answer(stack.admin(Method::POST, "/v1/events").json(&body)).await;
        assert_invalid_field(&a, field, &format!("event {body}"));
    }
    let deep = format!("{}1{}", "[".repeat(3_000), "]".repeat(3_000));
    let a = answer(
        stack
            .admin(Method::POST, "/v1/events")
            .header("content-type", "application/json")
            .body(format!("{{\"tenant\":\"acme\",\"type\":\"{EVENT_TYPE}\",\"data\":{{\"d\":{deep}}}}}")),
    )
    .await;
    assert_problem(&a, 400, "deeply nested JSON");
    stack.stop().await;
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Missing or wrong credentials are `401`, the wrong role `403`, and one
/// tenant's resources are `404` to another, exactly like missing ones.
#[tokio::test]
async fn callers_are_authenticated_and_tenants_isolated() {
    let stack = Stack::start().await;
    let key_a = stack.tenant_with_key("tenant-a").await;
    let key_b = stack.tenant_with_key("tenant-b").await;
    create_event_type(&stack, EVENT_TYPE).await;
    let (ep, _) = endpoint_ok(&stack, &key_a, json!({"url": "http://127.0.0.1:9/hook"})).await;

    let url = stack.url("/v1/endpoints");
    for request in [
        stack.http.get(&url),
        stack.http.get(&url).bearer_auth("hk_not-a-real-key"),
        stack.http.get(&url).bearer_auth(""),
        stack.http.get(&url).header("authorization", "Basic dXNlcjpwYXNz"),
        stack.http.get(&url).header("authorization", format!("Bearer {key_a}x")),
        stack.http.get(stack.url("/v1/tenants/tenant-a")).bearer_auth("test-admin-tokeN"),
    ] {
        let a = answer(request).await;
        assert_problem(&a, 401, "bad credentials");
    }
    let a = answer(stack.tenant(&key_a, Method::POST, "/v1/tenants").json(&json!({"id": "evil", "name": "e"}))).await;
    assert_problem(&a, 403, "tenant key creating a tenant");
    let a = answer(
        stack
            .tenant(&key_a, Method::POST, "/v1/events")
            .json(&json!({"tenant": "tenant-b", "type": EVENT_TYPE, "data": {}})),
    )
    .await;
    assert!(a.status == 403 || a.status == 404, "tenant key publishing for another tenant: {}", a.raw);
    assert_problem(&a, a.status, "tenant key publishing for another tenant");

    let missing = "ep_01HZZZZZZZZZZZZZZZZZZZZZZZ";
    for path in
        [format!("/v1/endpoints/{ep}"), format!("/v1/endpoints/{ep}/secret"), format!("/v1/endpoints/{missing}")]
    {
        let a = answer(stack.tenant(&key_b, Method::GET, &path)).await;
        assert_problem(&a, 404, &format!("tenant b reading {path}"));
    }
    for (method, path, body) in [
        (Method::PATCH, format!("/v1/endpoints/{ep}"), json!({"description": "mine"})),
        (Method::DELETE, format!("/v1/endpoints/{ep}"), Value::Null),
        (Method::POST, format!("/v1/endpoints/{ep}/secret/rotate"), Value::Null),
        (Method::POST, format!("/v1/endpoints/{ep}/deactivate"), Value::Null),
        (Method::POST, "/v1/subscriptions".to_owned(), json!({"endpointId": ep, "eventTypes": ["*"]})),
    ] {
        let mut request = stack.tenant(&key_b, method.clone(), &path);
        if !body.is_null() {
            request = request.json(&body);
        }
        let a = answer(request).await;
        assert!(a.status == 404 || (a.status == 400 && names_field(&a, "endpointId")), "{method} {path}: {}", a.raw);
    }
    let a = answer(stack.tenant(&key_b, Method::GET, "/v1/endpoints")).await;
    assert_eq!(a.body["data"], json!([]), "{}", a.raw);
    // The endpoint is untouched for its owner.
    let a = answer(stack.tenant(&key_a, Method::GET, &format!("/v1/endpoints/{ep}"))).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["status"], json!("active"), "{}", a.raw);

    // A revoked key stops working.
    let (status, body) = stack.admin_post("/v1/tenants/tenant-b/api-keys", json!({"name": "second"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (second, second_id) = (body["key"].as_str().unwrap().to_owned(), body["id"].as_str().unwrap().to_owned());
    assert_eq!(answer(stack.tenant(&second, Method::GET, "/v1/endpoints")).await.status, 200);
    let a = answer(stack.admin(Method::DELETE, &format!("/v1/tenants/tenant-b/api-keys/{second_id}"))).await;
    assert!(a.status == 200 || a.status == 204, "{}", a.raw);
    let a = answer(stack.tenant(&second, Method::GET, "/v1/endpoints")).await;
    assert_problem(&a, 401, "revoked key");
    stack.stop().await;
}

// ---------------------------------------------------------------- gRPC

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// With HERALD_GRPC_TOKEN set, calls without it are UNAUTHENTICATED on both
/// services, calls with it succeed, the gateway still works, and invalid
/// Publish input is INVALID_ARGUMENT.
#[tokio::test]
async fn grpc_requires_its_token_and_validates_publish() {
    use herald_proto::v1::{ListDeliveriesRequest, ListTenantsRequest, PublishRequest};
    const TOKEN: &str = "grpc-token-0123456789";
    let stack = Stack::start_with(|env| env.set("HERALD_GRPC_TOKEN", TOKEN)).await;
    // The gateway sends the token on its own calls.
    let key = stack.tenant_with_key("acme").await;
    create_event_type(&stack, EVENT_TYPE).await;
    assert_eq!(answer(stack.tenant(&key, Method::GET, "/v1/endpoints")).await.status, 200);
    assert_eq!(answer(stack.tenant(&key, Method::GET, "/v1/deliveries")).await.status, 200);

    let mut registry = RegistryClient::new(stack.registry_channel().await);
    let mut dispatch = DispatchClient::new(stack.dispatch_channel().await);
    for token in [None, Some("wrong"), Some("grpc-token-012345678")] {
        let request = match token {
            None => tonic::Request::new(ListTenantsRequest::default()),
            Some(t) => with_token(ListTenantsRequest::default(), t),
        };
        let status = registry.list_tenants(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "registry with {token:?}: {status:?}");
        let list = ListDeliveriesRequest { tenant: "acme".into(), ..Default::default() };
        let request = match token {
            None => tonic::Request::new(list),
            Some(t) => with_token(list, t),
        };
        let status = dispatch.list_deliveries(request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "dispatch with {token:?}: {status:?}");
    }
    let tenants = registry.list_tenants(with_token(ListTenantsRequest::default(), TOKEN)).await.unwrap();
    assert!(tenants.get_ref().tenants.iter().any(|t| t.id == "acme"));
    let list = ListDeliveriesRequest { tenant: "acme".into(), ..Default::default() };
    dispatch.list_deliveries(with_token(list, TOKEN)).await.unwrap();

    let valid = PublishRequest {
        tenant: "acme".into(),
        r#type: EVENT_TYPE.into(),
        data: br#"{"n": 1}"#.to_vec(),
        ..Default::default()
    };
    let status = registry.publish(tonic::Request::new(valid.clone())).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    registry.publish(with_token(valid.clone(), TOKEN)).await.unwrap();
    let invalid = [
        ("data not json", PublishRequest { data: b"not json".to_vec(), ..valid.clone() }),
        ("data an array", PublishRequest { data: b"[1,2]".to_vec(), ..valid.clone() }),
        ("data invalid utf-8", PublishRequest { data: vec![b'"', 0xff, 0xfe, b'"'], ..valid.clone() }),
        ("resource not an object", PublishRequest { resource: b"5".to_vec(), ..valid.clone() }),
        ("resource not json", PublishRequest { resource: b"{".to_vec(), ..valid.clone() }),
        ("empty type", PublishRequest { r#type: String::new(), ..valid.clone() }),
        ("empty tenant", PublishRequest { tenant: String::new(), ..valid.clone() }),
        ("id too long", PublishRequest { id: "i".repeat(300), ..valid.clone() }),
        ("unknown type", PublishRequest { r#type: "no.such.type".into(), ..valid.clone() }),
    ];
    for (what, request) in invalid {
        let status = registry.publish(with_token(request, TOKEN)).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}: no message");
    }
    stack.stop().await;
}

// ---------------------------------------------------------------- rate limit

/// With HERALD_API_RATE_LIMIT=5, a burst from one key gets `429` with
/// `Retry-After`; another key is not held back by it.
#[tokio::test]
async fn api_keys_are_rate_limited() {
    let stack = Stack::start_with(|env| env.set("HERALD_API_RATE_LIMIT", "5")).await;
    let noisy = stack.tenant_with_key("noisy").await;
    let quiet = stack.tenant_with_key("quiet").await;
    let burst =
        futures::future::join_all((0..40).map(|_| answer(stack.tenant(&noisy, Method::GET, "/v1/endpoints")))).await;
    let limited: Vec<&Answer> = burst.iter().filter(|a| a.status == 429).collect();
    let ok = burst.iter().filter(|a| a.status == 200).count();
    assert!(!limited.is_empty(), "no 429 in a burst of 40 at 5/s");
    assert!(ok >= 1, "the burst was refused entirely");
    assert_eq!(ok + limited.len(), burst.len(), "{:?}", burst.iter().map(|a| a.status).collect::<Vec<_>>());
    for a in &limited {
        assert_problem(a, 429, "rate limited");
        let retry_after: u64 = a
            .retry_after
            .as_deref()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("429 without a Retry-After in seconds: {a:?}"));
        assert!((1..=60).contains(&retry_after), "{retry_after}");
    }
    let a = answer(stack.tenant(&quiet, Method::GET, "/v1/endpoints")).await;
    assert_eq!(a.status, 200, "another key is held back by the noisy one: {}", a.raw);
    // After waiting as told, the key works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let a = answer(stack.tenant(&noisy, Method::GET, "/v1/endpoints")).await;
    assert_eq!(a.status, 200, "{}", a.raw);
    stack.stop().await;
}

// ---------------------------------------------------------------- schemathesis

fn schemathesis() -> PathBuf {
    let python = herald_tests::python();
    let bin = python.parent().unwrap().join("schemathesis");
    assert!(bin.exists(), "{} is missing: install tests/requirements.txt into the venv", bin.display());
    bin
}

/// Runs schemathesis with `auth`; answers (exit success, output).
async fn run_schemathesis(stack: &Stack, auth: &str, label: &str) -> (bool, String) {
    let examples = std::env::var("HERALD_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "30".to_owned());
    let seed = std::env::var("HERALD_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20240611".to_owned());
    let report = std::env::temp_dir().join(format!("herald-schemathesis-{}-{label}", stack.prefix));
    let args: Vec<String> = vec![
        "run".into(),
        format!("{}/openapi.json", stack.gateway_url),
        "--url".into(),
        stack.gateway_url.clone(),
        "--checks".into(),
        "not_a_server_error".into(),
        "-H".into(),
        format!("Authorization: Bearer {auth}"),
        "--max-examples".into(),
        examples,
        "--seed".into(),
        seed,
        // One worker: hypothesis describes lambdas with `ast.parse`, which is
        // not thread-safe on some Python versions and then aborts a phase.
        "--workers".into(),
        "1".into(),
        "--request-timeout".into(),
        "10".into(),
        "--generation-database".into(),
        "none".into(),
        "--no-color".into(),
        "--report-dir".into(),
        report.display().to_string(),
        // Only the canonical API, and never an operation that registers or
        // moves an endpoint: fuzzed URLs must not become delivery targets.
        "--include-path-regex".into(),
        "^/v1/".into(),
        "--exclude-name-regex".into(),
        "^(POST /v1/endpoints|PATCH /v1/endpoints/\\{[^}/]+\\})$".into(),
    ];
    let bin = schemathesis();
    // Run inside the report directory: schemathesis and hypothesis keep
    // caches in the working directory, which must not be the source tree.
    std::fs::create_dir_all(&report).unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new(bin)
            .args(&args)
            .current_dir(&report)
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("schemathesis ({label}) ran over 240 s"))
    .unwrap();
    let _ = std::fs::remove_dir_all(&report);
    let text = format!("{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// The summary lines of a schemathesis run (operations and test cases).
fn summary(output: &str) -> String {
    output
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            ["generated", "selected:", "tested:", "failures", "passed"].iter().any(|word| l.contains(word))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Fuzzes every canonical operation from `/openapi.json`, as the admin and
/// as a tenant, and finds no server error. Endpoints can only point at a
/// loopback receiver: the stack allows only 127.0.0.0/8 on the receiver's
/// port, and registering or moving endpoints is not fuzzed.
#[tokio::test]
async fn schemathesis_finds_no_server_error() {
    let receiver = Receiver::start().await;
    let port = receiver.addr().port();
    let stack = Stack::start_with(|env| {
        env.set("HERALD_ALLOW_PRIVATE_NETWORKS", "false");
        env.set("HERALD_ENDPOINT_ALLOWED_CIDRS", "127.0.0.0/8,::1/128");
        env.set("HERALD_ENDPOINT_ALLOWED_PORTS", port.to_string());
        // No domain name can pass ('%' is never in a host), so nothing is resolved.
        env.set("HERALD_ENDPOINT_ALLOWED_TLDS", "%");
    })
    .await;
    let key = stack.tenant_with_key("fuzz").await;
    create_event_type(&stack, EVENT_TYPE).await;
    let (ep, _) = endpoint_ok(&stack, &key, json!({"url": receiver.url()})).await;
    subscribe_all(&stack, &key, &ep).await;
    assert_eq!(publish(&stack, "fuzz", json!({"n": 1})).await.status, 202);
    receiver.wait_for(1, WAIT).await;

    let started = Instant::now();
    let mut failures = Vec::new();
    for (label, auth) in [("admin", ADMIN_TOKEN.to_owned()), ("tenant", key.clone())] {
        let (ok, output) = run_schemathesis(&stack, &auth, label).await;
        println!("schemathesis as {label}:\n{}", summary(&output));
        if !ok {
            failures.push(format!("--- schemathesis as {label} ---\n{output}"));
        }
    }
    println!("schemathesis took {:?}", started.elapsed());
    assert!(failures.is_empty(), "schemathesis found problems:\n{}", failures.join("\n"));
    stack.stop().await;
}
