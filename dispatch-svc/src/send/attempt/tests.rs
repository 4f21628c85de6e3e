//! Attempts against local receivers: answers, OAuth resends,
//! the handshake and header rules.

use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap as AxHeaders;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use herald_common::crypto::SecretBox;
use herald_common::endpoint_secrets as sealing;
use herald_common::model::{
    ClientAuth, EndpointRecord, EndpointStatus, Format, Ordering, Sealed, SigningSecret, StoredAuth,
};
use herald_common::url_policy::UrlPolicy;
use serde_json::json;

use super::*;
use crate::error::DispatchError;

const ORIGIN: &str = "hooks.herald.test";

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn record(url: &str, auth: StoredAuth, secrets: &SecretBox) -> EndpointRecord {
    EndpointRecord {
        id: "ep_1".into(),
        tenant: "acme".into(),
        url: url.into(),
        description: String::new(),
        auth,
        format: Format::Json,
        template: None,
        headers: sealing::seal_headers(
            secrets,
            "ep_1",
            [("X-Custom".to_owned(), "yes".to_owned()), ("Content-Type".to_owned(), "text/plain".to_owned())],
        ),
        rate_limit_per_second: None,
        max_in_flight: None,
        ordering: Ordering::None,
        metadata: Default::default(),
        max_batch_size: None,
        handshake: false,
        retry: None,
        status: EndpointStatus::Active,
        disabled_reason: None,
        signing_secrets: vec![SigningSecret {
            secret: secrets.seal(SECRET, sealing::binding("ep_1", sealing::SIGNING_SECRET)),
            expires_at: None,
        }],
        created_at: 0,
        updated_at: 0,
        generation: String::new(),
        activated_at: None,
    }
}

fn open_policy() -> UrlPolicy {
    UrlPolicy { allow_private_networks: true, allow_http: true, ..UrlPolicy::default() }
}

fn client() -> reqwest::Client {
    crate::send::http_client::build(open_policy(), Duration::from_secs(2)).unwrap()
}

fn event() -> Arc<LoadedEvent> {
    let raw =
        json!({"id": "evt_1", "type": "order.created", "timestamp": "2024-05-07T19:18:32.076Z", "data": {"n": 1}});
    Arc::new(LoadedEvent::parse("", Bytes::from(serde_json::to_vec(&raw).unwrap())).unwrap())
}

/// An endpoint that answers from a script and records what it got.
type Answer = (u16, Vec<(&'static str, &'static str)>, String);

#[derive(Default)]
struct Hook {
    answers: Mutex<Vec<Answer>>,
    seen: Mutex<Vec<(Method, AxHeaders, Bytes)>>,
}

async fn hook(State(hook): State<Arc<Hook>>, method: Method, headers: AxHeaders, body: Bytes) -> Response {
    hook.seen.lock().unwrap().push((method, headers, body));
    let mut answers = hook.answers.lock().unwrap();
    let (status, headers, body) = if answers.is_empty() { (204, vec![], String::new()) } else { answers.remove(0) };
    let mut response = (StatusCode::from_u16(status).unwrap(), body).into_response();
    for (k, v) in headers {
        response.headers_mut().insert(k, HeaderValue::from_static(v));
    }
    response
}

async fn token(State(count): State<Arc<Mutex<u32>>>) -> Json<Value> {
    let mut n = count.lock().unwrap();
    *n += 1;
    Json(json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": 3600}))
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn start_hook() -> (Arc<Hook>, String) {
    let hook_state = Arc::new(Hook::default());
    let app = Router::new().route("/hook", post(hook).options(hook)).with_state(hook_state.clone());
    let base = serve(app).await;
    (hook_state, format!("{base}/hook"))
}

#[tokio::test]
async fn delivers_with_every_header() {
    let secrets = SecretBox::ephemeral();
    let (hook, url) = start_hook().await;
    let auth = StoredAuth::Basic {
        username: "user".into(),
        password: secrets.seal("pa:ss", sealing::binding("ep_1", sealing::PASSWORD)),
    };
    let ep = PreparedEndpoint::prepare(&record(&url, auth, &secrets), &secrets, &open_policy(), ORIGIN).unwrap();
    let out = ep
        .attempt(
            &client(),
            &TokenCache::new(),
            &[event()],
            "msg_1",
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        )
        .await;
    assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
    assert_eq!(out.status_code, Some(204));
    assert_eq!(out.error, None);
    let seen = hook.seen.lock().unwrap();
    let (method, h, body) = &seen[0];
    assert_eq!(method, Method::POST);
    assert_eq!(body, &event().raw);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["user-agent"], herald_common::USER_AGENT);
    assert_eq!(h["webhook-id"], "msg_1");
    assert_eq!(h["x-custom"], "yes");
    assert_eq!(h["traceparent"], "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_eq!(h["authorization"], format!("Basic {}", B64.encode("user:pa:ss")));
    let ts = h["webhook-timestamp"].clone();
    let key = SigningKey::from_secret(SECRET).unwrap();
    assert_eq!(h["webhook-signature"], signature_header([&key], "msg_1", &ts, body).unwrap());
}

#[tokio::test]
async fn rotated_secrets_sign_until_they_expire() {
    let secrets = SecretBox::ephemeral();
    let (hook, url) = start_hook().await;
    let mut rec = record(&url, StoredAuth::None, &secrets);
    let far = time_fmt::now_millis() + 3_600_000;
    rec.signing_secrets.push(SigningSecret {
        secret: secrets.seal("whsec_b2xkLXNlY3JldA==", sealing::binding("ep_1", sealing::SIGNING_SECRET)),
        expires_at: Some(far),
    });
    rec.signing_secrets.push(SigningSecret {
        secret: secrets.seal("whsec_Z29uZQ==", sealing::binding("ep_1", sealing::SIGNING_SECRET)),
        expires_at: Some(1),
    });
    let ep = PreparedEndpoint::prepare(&rec, &secrets, &open_policy(), ORIGIN).unwrap();
    ep.attempt(&client(), &TokenCache::new(), &[event()], "msg_2", None).await;
    let seen = hook.seen.lock().unwrap();
    let sig = seen[0].1["webhook-signature"].to_str().unwrap().to_owned();
    assert_eq!(sig.split(' ').count(), 2, "{sig}");
}

#[tokio::test]
async fn classifies_answers_and_keeps_a_body_prefix() {
    let secrets = SecretBox::ephemeral();
    let (hook, url) = start_hook().await;
    *hook.answers.lock().unwrap() = vec![
        (410, vec![], "gone".into()),
        (429, vec![("retry-after", "17")], String::new()),
        (500, vec![], "é".repeat(600)),
        (415, vec![], String::new()),
    ];
    let ep =
        PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy(), ORIGIN).unwrap();
    let (client, tokens) = (client(), TokenCache::new());
    let out = ep.attempt(&client, &tokens, &[event()], "m", None).await;
    assert_eq!((out.verdict, out.response_body.as_str()), (Verdict::Gone, "gone"));
    let out = ep.attempt(&client, &tokens, &[event()], "m", None).await;
    assert_eq!(out.verdict, Verdict::RetryAfter(Duration::from_secs(17)));
    let out = ep.attempt(&client, &tokens, &[event()], "m", None).await;
    assert_eq!(out.verdict, Verdict::Retry);
    assert_eq!(out.error.as_deref(), Some("endpoint answered status 500"));
    assert_eq!(out.response_body, "é".repeat(512));
    let out = ep.attempt(&client, &tokens, &[event()], "m", None).await;
    assert_eq!(out.verdict, Verdict::Permanent);
}

#[tokio::test]
async fn transport_failures_and_refused_urls_are_retried() {
    let secrets = SecretBox::ephemeral();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let ep =
        PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy(), ORIGIN).unwrap();
    let out = ep.attempt(&client(), &TokenCache::new(), &[event()], "m", None).await;
    assert_eq!((out.verdict, out.status_code), (Verdict::Retry, None));
    assert!(out.error.unwrap().starts_with("connection failed"));

    let strict = UrlPolicy { allow_http: true, ..UrlPolicy::default() };
    let ep = PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &strict, ORIGIN).unwrap();
    let out = ep.attempt(&client(), &TokenCache::new(), &[event()], "m", None).await;
    assert_eq!(out.verdict, Verdict::Retry);
    assert_eq!(out.error.as_deref(), Some("endpoint url refused: host resolves to a non-public address (Loopback)"));
}

#[tokio::test]
async fn oauth_401_refreshes_the_token_once() {
    let secrets = SecretBox::ephemeral();
    let (hook, url) = start_hook().await;
    *hook.answers.lock().unwrap() = vec![(401, vec![], String::new()), (200, vec![], "ok".into())];
    let count = Arc::new(Mutex::new(0u32));
    let token_base = serve(Router::new().route("/token", post(token)).with_state(count.clone())).await;
    let auth = StoredAuth::Oauth2ClientCredentials {
        token_url: format!("{token_base}/token"),
        client_id: "id".into(),
        client_secret: secrets.seal("secret", sealing::binding("ep_1", sealing::CLIENT_SECRET)),
        scope: None,
        audience: None,
        client_auth: ClientAuth::Basic,
    };
    let ep = PreparedEndpoint::prepare(&record(&url, auth, &secrets), &secrets, &open_policy(), ORIGIN).unwrap();
    let tokens = TokenCache::new();
    let out = ep.attempt(&client(), &tokens, &[event()], "m", None).await;
    assert_eq!(out.verdict, Verdict::Delivered, "{out:?}");
    assert!(out.token_refreshed);
    assert_eq!(*count.lock().unwrap(), 2);
    {
        let seen = hook.seen.lock().unwrap();
        assert_eq!(seen[0].1["authorization"], "Bearer tok-1");
        assert_eq!(seen[1].1["authorization"], "Bearer tok-2");
    }

    // Two 401s in a row: one resend, then the attempt fails and is retried later.
    *hook.answers.lock().unwrap() = vec![(401, vec![], String::new()), (401, vec![], String::new())];
    let out = ep.attempt(&client(), &tokens, &[event()], "m", None).await;
    assert_eq!((out.verdict, out.status_code, out.token_refreshed), (Verdict::Retry, Some(401), true));
    assert_eq!(hook.seen.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn handshake_checks_the_allowed_origin() {
    let secrets = SecretBox::ephemeral();
    let (hook, url) = start_hook().await;
    *hook.answers.lock().unwrap() = vec![
        (200, vec![("webhook-allowed-origin", "Hooks.Herald.test")], String::new()),
        (200, vec![("webhook-allowed-origin", "*")], String::new()),
        (200, vec![("webhook-allowed-origin", "someone-else")], String::new()),
        (200, vec![], String::new()),
        (405, vec![], String::new()),
    ];
    let ep =
        PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy(), ORIGIN).unwrap();
    let (client, tokens) = (client(), TokenCache::new());
    assert_eq!(ep.handshake(&client, &tokens).await, Ok(()));
    assert_eq!(ep.handshake(&client, &tokens).await, Ok(()));
    assert!(ep.handshake(&client, &tokens).await.is_err());
    assert!(ep.handshake(&client, &tokens).await.is_err());
    assert_eq!(ep.handshake(&client, &tokens).await, Err("handshake answered status 405".into()));
    let seen = hook.seen.lock().unwrap();
    assert_eq!(seen[0].0, Method::OPTIONS);
    assert_eq!(seen[0].1["webhook-request-origin"], ORIGIN);
}

#[tokio::test]
async fn test_send_delivers_a_synthetic_event() {
    let secrets = SecretBox::ephemeral();
    let (hook, url) = start_hook().await;
    let ep =
        PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy(), ORIGIN).unwrap();
    let out = ep.test_send(&client(), &TokenCache::new(), "order.created", json!({"x": 1}), None).await;
    assert!(out.delivered(), "{out:?}");
    let seen = hook.seen.lock().unwrap();
    let body: Value = serde_json::from_slice(&seen[0].2).unwrap();
    assert_eq!(body["type"], "order.created");
    assert_eq!(body["data"], json!({"x": 1}));
    assert_eq!(seen[0].1["webhook-id"], body["id"].as_str().unwrap());
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let secrets = SecretBox::ephemeral();
    let mut rec = record(
        "https://example.com/hook",
        StoredAuth::Bearer { token: secrets.seal("t0ps3cret", sealing::binding("ep_1", sealing::TOKEN)) },
        &secrets,
    );
    rec.headers.insert("X-Api-Key".into(), secrets.seal("k3y-value", sealing::binding("ep_1", sealing::HEADER)));
    let ep = PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default(), ORIGIN).unwrap();
    assert_eq!(ep.headers[AUTHORIZATION], "Bearer t0ps3cret");
    assert!(ep.headers["x-api-key"].is_sensitive(), "header values stay out of the HTTP stack's logs");
    let debug = format!("{ep:?}");
    assert!(!debug.contains("t0ps3cret") && !debug.contains("k3y-value"), "{debug}");
    assert!(!debug.contains(SECRET.trim_start_matches("whsec_")), "{debug}");
}

#[test]
fn prepare_refuses_bad_headers_and_skips_reserved_ones() {
    let secrets = SecretBox::ephemeral();
    let mut rec = record("https://example.com/hook", StoredAuth::None, &secrets);
    let ep = PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default(), ORIGIN).unwrap();
    assert!(!ep.headers.contains_key(CONTENT_TYPE));
    assert_eq!(ep.headers["x-custom"], "yes");
    rec.headers.insert("bad header".into(), Sealed("x".into()));
    assert!(matches!(
        PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default(), ORIGIN),
        Err(DispatchError::Header { .. })
    ));
    let mut rec = record("https://example.com/hook", StoredAuth::None, &secrets);
    rec.signing_secrets[0].secret = Sealed("k00000000:garbage".into());
    assert!(PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default(), ORIGIN).is_err());
    let rec = record("not a url", StoredAuth::None, &secrets);
    assert!(PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default(), ORIGIN).is_err());
}
