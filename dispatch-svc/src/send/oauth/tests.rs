//! The token cache against a real token endpoint on loopback: the single
//! flight, both client authentication styles, refresh, invalidation and
//! refusals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::State as AxState;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Form, Json, Router};
use herald_common::url_policy::UrlPolicy;
use serde_json::json;

use super::*;

#[derive(Clone, Copy)]
enum Mode {
    Ok {
        expires_in: Option<u64>,
    },
    StringExpiry,
    InvalidClient,
    NotBearer,
    /// Only `client_secret_post`: a Basic header is refused as `invalid_client`.
    PostOnly {
        status: u16,
    },
}

/// The Authorization header and form of one token request.
type Seen = (Option<String>, HashMap<String, String>);

struct Server {
    requests: AtomicUsize,
    mode: Mutex<Mode>,
    seen: Mutex<Vec<Seen>>,
}

async fn token_endpoint(
    AxState(server): AxState<Arc<Server>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let n = server.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned());
    let posted = auth.is_none() && form.contains_key("client_id") && form.contains_key("client_secret");
    server.seen.lock().unwrap().push((auth, form));
    // Long enough that concurrent callers really overlap with the request.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mode = *server.mode.lock().unwrap();
    match mode {
        Mode::PostOnly { status } if !posted => {
            (StatusCode::from_u16(status).unwrap(), Json(json!({"error": "invalid_client"}))).into_response()
        }
        Mode::PostOnly { .. } => {
            Json(json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"})).into_response()
        }
        Mode::Ok { expires_in } => {
            let mut body = json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"});
            if let Some(e) = expires_in {
                body["expires_in"] = json!(e);
            }
            Json(body).into_response()
        }
        Mode::StringExpiry => {
            Json(json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": "3600"}))
                .into_response()
        }
        Mode::InvalidClient => {
            (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client", "error_description": "bad secret"})))
                .into_response()
        }
        Mode::NotBearer => Json(json!({"access_token": "t", "token_type": "mac"})).into_response(),
    }
}

async fn start(mode: Mode) -> (Arc<Server>, Url) {
    let server =
        Arc::new(Server { requests: AtomicUsize::new(0), mode: Mutex::new(mode), seen: Mutex::new(Vec::new()) });
    let app = Router::new().route("/token", axum::routing::post(token_endpoint)).with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (server, format!("http://{addr}/token").parse().unwrap())
}

fn config(token_url: Url, client_auth: ClientAuth) -> OAuthConfig {
    OAuthConfig {
        token_url,
        client_id: "herald client".into(),
        client_secret: "s3cr:et&=".into(),
        scope: Some("events.write".into()),
        audience: None,
        client_auth,
    }
}

fn client() -> reqwest::Client {
    let policy = UrlPolicy { allow_private_networks: true, allow_http: true, ..UrlPolicy::default() };
    crate::send::http_client::build(policy, Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn concurrent_callers_share_one_token_request() {
    let (server, url) = start(Mode::Ok { expires_in: Some(3600) }).await;
    let cfg = config(url, ClientAuth::Basic);
    let cache = Arc::new(TokenCache::new());
    let client = client();
    let calls = (0..100).map(|_| {
        let (cache, client, cfg) = (cache.clone(), client.clone(), cfg.clone());
        tokio::spawn(async move { cache.token(&client, &cfg).await })
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(&*result.unwrap().unwrap(), "tok-1");
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
    assert_eq!(&*cache.token(&client, &cfg).await.unwrap(), "tok-1");
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn basic_client_auth_is_form_urlencoded() {
    let (server, url) = start(Mode::Ok { expires_in: None }).await;
    TokenCache::new().token(&client(), &config(url, ClientAuth::Basic)).await.unwrap();
    let seen = server.seen.lock().unwrap();
    let (auth, form) = &seen[0];
    let expected = format!("Basic {}", B64.encode("herald+client:s3cr%3Aet%26%3D"));
    assert_eq!(auth.as_deref(), Some(expected.as_str()));
    assert_eq!(form.get("grant_type").map(String::as_str), Some("client_credentials"));
    assert_eq!(form.get("scope").map(String::as_str), Some("events.write"));
    assert!(!form.contains_key("client_secret") && !form.contains_key("audience"));
}

#[tokio::test]
async fn post_client_auth_puts_credentials_in_the_body() {
    let (server, url) = start(Mode::StringExpiry).await;
    let cfg = OAuthConfig { audience: Some("https://api.example.com".into()), ..config(url, ClientAuth::Post) };
    let cache = TokenCache::new();
    assert_eq!(&*cache.token(&client(), &cfg).await.unwrap(), "tok-1");
    let seen = server.seen.lock().unwrap();
    let (auth, form) = &seen[0];
    assert_eq!(auth, &None);
    assert_eq!(form.get("client_id").map(String::as_str), Some("herald client"));
    assert_eq!(form.get("client_secret").map(String::as_str), Some("s3cr:et&="));
    assert_eq!(form.get("audience").map(String::as_str), Some("https://api.example.com"));
}

#[tokio::test]
async fn an_expiring_token_is_refreshed() {
    let (server, url) = start(Mode::Ok { expires_in: Some(1) }).await;
    let cfg = config(url, ClientAuth::Basic);
    let (cache, client) = (TokenCache::new(), client());
    assert_eq!(&*cache.token(&client, &cfg).await.unwrap(), "tok-1");
    // A one-second token is refreshed 100 ms before it runs out.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let token = cache.token(&client, &cfg).await.unwrap();
        if &*token == "tok-2" {
            break;
        }
        assert_eq!(&*token, "tok-1");
        assert!(Instant::now() < deadline, "token was never refreshed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalidate_drops_only_the_matching_token() {
    let (server, url) = start(Mode::Ok { expires_in: Some(3600) }).await;
    let cfg = config(url, ClientAuth::Basic);
    let (cache, client) = (TokenCache::new(), client());
    let first = cache.token(&client, &cfg).await.unwrap();
    cache.invalidate("some-older-token");
    assert_eq!(cache.token(&client, &cfg).await.unwrap(), first);
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    cache.invalidate(&first);
    let second = cache.token(&client, &cfg).await.unwrap();
    assert_eq!(&*second, "tok-2");
    // A late 401 for the first token must not throw away the second.
    cache.invalidate(&first);
    assert_eq!(cache.token(&client, &cfg).await.unwrap(), second);
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalid_client_surfaces_without_the_secret() {
    let (server, url) = start(Mode::InvalidClient).await;
    let cfg = config(url, ClientAuth::Basic);
    let cache = Arc::new(TokenCache::new());
    let client = client();
    let calls = (0..20).map(|_| {
        let (cache, client, cfg) = (cache.clone(), client.clone(), cfg.clone());
        tokio::spawn(async move { cache.token(&client, &cfg).await })
    });
    for result in futures::future::join_all(calls).await {
        let err = result.unwrap().unwrap_err();
        assert_eq!(err.code(), Some("invalid_client"));
        assert_eq!(err.status(), Some(401));
        assert_eq!(err.to_string(), "token endpoint: invalid_client (401)");
    }
    // One basic request, one post request, shared by every waiter.
    assert_eq!(server.requests.load(Ordering::SeqCst), 2, "waiters share the failed requests");
    let last = cache.last_error().unwrap();
    assert_eq!(last.code(), Some("invalid_client"));
    assert!(!format!("{last} {last:?} {cfg:?}").contains("s3cr"));

    *server.mode.lock().unwrap() = Mode::Ok { expires_in: None };
    assert_eq!(&*cache.token(&client, &cfg).await.unwrap(), "tok-3");
    assert!(cache.last_error().is_none());
}

#[tokio::test]
async fn non_bearer_tokens_and_dead_endpoints_are_errors() {
    let (_server, url) = start(Mode::NotBearer).await;
    let err = TokenCache::new().token(&client(), &config(url, ClientAuth::Post)).await.unwrap_err();
    assert_eq!(err.to_string(), "token endpoint: unusable token answer: token_type is not bearer");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead: Url = format!("http://{}/token", listener.local_addr().unwrap()).parse().unwrap();
    drop(listener);
    let err = TokenCache::new().token(&client(), &config(dead, ClientAuth::Basic)).await.unwrap_err();
    assert!(err.to_string().starts_with("token endpoint: connection failed"), "{err}");
    assert_eq!(err.code(), None);
}

#[test]
fn expires_in_accepts_numbers_and_numeric_strings() {
    assert_eq!(lifetime_of(&json!(3600)), Some(Duration::from_secs(3600)));
    assert_eq!(lifetime_of(&json!("120")), Some(Duration::from_secs(120)));
    assert_eq!(lifetime_of(&json!(59.9)), Some(Duration::from_secs(59)));
    assert_eq!(lifetime_of(&json!("soon")), None);
    assert_eq!(lifetime_of(&json!(-5)), None);
    assert_eq!(lifetime_of(&json!(null)), None);
}

#[tokio::test]
async fn a_refused_basic_client_tries_post_once_and_keeps_to_it() {
    for status in [400, 401] {
        let (server, url) = start(Mode::PostOnly { status }).await;
        let cfg = config(url, ClientAuth::Basic);
        let (cache, client) = (TokenCache::new(), client());
        assert_eq!(&*cache.token(&client, &cfg).await.unwrap(), "tok-2", "status {status}");
        assert!(cache.last_error().is_none());
        cache.invalidate("tok-2");
        assert_eq!(&*cache.token(&client, &cfg).await.unwrap(), "tok-3");
        let seen = server.seen.lock().unwrap();
        let styles: Vec<bool> = seen.iter().map(|(auth, _)| auth.is_some()).collect();
        assert_eq!(styles, [true, false, false], "basic, then post, then post alone");
        let (_, form) = &seen[1];
        assert_eq!(form.get("client_id").map(String::as_str), Some("herald client"));
        assert_eq!(form.get("client_secret").map(String::as_str), Some("s3cr:et&="));
    }
}

#[tokio::test]
async fn only_an_unknown_basic_client_is_tried_both_ways() {
    // A post client is never sent as basic.
    let (server, url) = start(Mode::InvalidClient).await;
    let err = TokenCache::new().token(&client(), &config(url, ClientAuth::Post)).await.unwrap_err();
    assert_eq!(err.code(), Some("invalid_client"));
    assert_eq!(server.requests.load(Ordering::SeqCst), 1);

    // Once basic got a token, a later refusal is not tried as post.
    let (server, url) = start(Mode::Ok { expires_in: None }).await;
    let cfg = config(url, ClientAuth::Basic);
    let (cache, client) = (TokenCache::new(), client());
    let token = cache.token(&client, &cfg).await.unwrap();
    *server.mode.lock().unwrap() = Mode::InvalidClient;
    cache.invalidate(&token);
    assert_eq!(cache.token(&client, &cfg).await.unwrap_err().code(), Some("invalid_client"));
    assert_eq!(server.requests.load(Ordering::SeqCst), 2);
}
