//! OAuth 2.0 client-credentials tokens for endpoints that want
//! `Authorization: Bearer <access token>` (RFC 6749 §4.4).
//!
//! Each endpoint's actor owns one [`TokenCache`]. A token is reused until
//! shortly before its `expires_in` runs out (the refresh margin is 10 % of the
//! lifetime, at most 30 s). However many deliveries need a token at once,
//! at most one token request is in flight: callers queue on an async mutex and
//! re-check after acquiring it, and callers that waited through a failed
//! request share its error instead of repeating it. A `401` from the endpoint
//! calls [`TokenCache::invalidate`] with the token it used, which drops the
//! cached token only if it is still that one, so a stale `401` cannot throw
//! away a newer token.
//!
//! The token request is a form `POST` of `grant_type=client_credentials`
//! (with `scope` and `audience` when set). The client authenticates with
//! HTTP Basic over the form-urlencoded id and secret (RFC 6749 §2.3.1,
//! `client_secret_basic`) or with `client_id`/`client_secret` in the body
//! (`client_secret_post`). The client secret never appears in an error, a log
//! line or a `Debug` output.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use herald_common::model::ClientAuth;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;
use url::{Url, form_urlencoded};

use crate::http_client::{describe, read_prefix};

/// Lifetime assumed when the token answer has no `expires_in`.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest lifetime believed, whatever the answer says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
/// Token answers are small; anything bigger is cut off.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// What a token request needs, with the client secret already decrypted.
#[derive(Clone)]
pub struct OAuthConfig {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: String,
    pub scope: Option<String>,
    pub audience: Option<String>,
    pub client_auth: ClientAuth,
}

impl std::fmt::Debug for OAuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthConfig")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

/// Why no token could be had, e.g. `token endpoint: invalid_client (401)`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("token endpoint: {reason}")]
pub struct TokenError {
    code: Option<String>,
    status: Option<u16>,
    reason: String,
}

impl TokenError {
    /// The OAuth `error` code the token endpoint answered, such as `invalid_client`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The HTTP status of the token endpoint's answer, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    fn answered(status: StatusCode, code: Option<String>) -> Self {
        let status = status.as_u16();
        let reason = match &code {
            Some(code) => format!("{code} ({status})"),
            None => format!("status {status}"),
        };
        TokenError { code, status: Some(status), reason }
    }

    fn transport(err: &reqwest::Error) -> Self {
        TokenError { code: None, status: None, reason: describe(err) }
    }

    fn invalid(status: StatusCode, why: &str) -> Self {
        TokenError { code: None, status: Some(status.as_u16()), reason: format!("unusable token answer: {why}") }
    }

    fn config(why: &str) -> Self {
        TokenError { code: None, status: None, reason: why.to_owned() }
    }
}

struct Cached {
    token: Arc<str>,
    refresh_at: Instant,
}

#[derive(Default)]
struct State {
    current: Option<Cached>,
    /// Counts finished token requests, so a caller that waited through one
    /// can tell that it happened.
    fetches: u64,
    last_error: Option<TokenError>,
}

impl State {
    fn fresh(&self, now: Instant) -> Option<Arc<str>> {
        self.current.as_ref().filter(|c| now < c.refresh_at).map(|c| c.token.clone())
    }
}

/// One endpoint's access token, refreshed on demand.
#[derive(Default)]
pub struct TokenCache {
    state: Mutex<State>,
    /// Held for the duration of a token request: the single flight.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("TokenCache")
            .field("cached", &state.current.is_some())
            .field("last_error", &state.last_error)
            .finish()
    }
}

impl TokenCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few plain fields that are never left half-written,
        // so a panic elsewhere does not make it unusable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A token that is good for a while yet, fetched if need be.
    pub async fn token(&self, client: &reqwest::Client, cfg: &OAuthConfig) -> Result<Arc<str>, TokenError> {
        let seen = {
            let state = self.lock();
            if let Some(token) = state.fresh(Instant::now()) {
                return Ok(token);
            }
            state.fetches
        };
        let _flight = self.refresh.lock().await;
        {
            let state = self.lock();
            if let Some(token) = state.fresh(Instant::now()) {
                return Ok(token);
            }
            if state.fetches != seen
                && let Some(err) = &state.last_error
            {
                return Err(err.clone());
            }
        }
        let started = Instant::now();
        let result = fetch(client, cfg).await;
        crate::observe::token_request(result.is_ok());
        let mut state = self.lock();
        state.fetches += 1;
        match result {
            Ok((token, lifetime)) => {
                let margin = (lifetime / 10).min(MAX_REFRESH_MARGIN);
                state.current = Some(Cached { token: token.clone(), refresh_at: started + (lifetime - margin) });
                state.last_error = None;
                Ok(token)
            }
            Err(err) => {
                tracing::warn!(token_host = cfg.token_url.host_str(), error = %err, "oauth token request failed");
                state.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    /// Forgets `token` if it is still the cached one (the endpoint refused it).
    pub fn invalidate(&self, token: &str) {
        let mut state = self.lock();
        if state.current.as_ref().is_some_and(|c| &*c.token == token) {
            state.current = None;
        }
    }

    /// Why the last token request failed; cleared by the next success.
    pub fn last_error(&self) -> Option<TokenError> {
        self.lock().last_error.clone()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<Value>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

async fn fetch(client: &reqwest::Client, cfg: &OAuthConfig) -> Result<(Arc<str>, Duration), TokenError> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &cfg.scope {
        form.push(("scope", scope));
    }
    if let Some(audience) = &cfg.audience {
        form.push(("audience", audience));
    }
    let mut request = client.post(cfg.token_url.clone()).header(ACCEPT, "application/json");
    match cfg.client_auth {
        ClientAuth::Basic => request = request.header(AUTHORIZATION, client_basic_auth(cfg)?),
        ClientAuth::Post => {
            form.push(("client_id", &cfg.client_id));
            form.push(("client_secret", &cfg.client_secret));
        }
    }
    let response = request.form(&form).send().await.map_err(|e| TokenError::transport(&e))?;
    let status = response.status();
    let body = read_prefix(response, MAX_ANSWER_BYTES).await.map_err(|e| TokenError::transport(&e))?;
    if !status.is_success() {
        let code = serde_json::from_slice::<ErrorAnswer>(&body).ok().map(|a| a.error).filter(|c| is_error_code(c));
        return Err(TokenError::answered(status, code));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|_| TokenError::invalid(status, "not a JSON object with access_token"))?;
    if answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer")) {
        return Err(TokenError::invalid(status, "token_type is not bearer"));
    }
    // The token goes into a header as is (RFC 6750 b64token and then some).
    if answer.access_token.is_empty() || !answer.access_token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(TokenError::invalid(status, "access_token is empty or not printable ascii"));
    }
    let lifetime = answer.expires_in.as_ref().and_then(lifetime_of).unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME);
    Ok((Arc::from(answer.access_token), lifetime))
}

/// `expires_in` as a number or, from lenient servers, a numeric string.
fn lifetime_of(value: &Value) -> Option<Duration> {
    let secs = match value {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))?,
        Value::String(s) => s.trim().parse::<u64>().ok()?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// RFC 6749 §5.2 limits `error` to printable ASCII without `"` and `\`; a
/// value outside that (or absurdly long) is not echoed into status views.
fn is_error_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

/// `client_secret_basic`: both parts form-urlencoded before base64 (RFC 6749 §2.3.1).
fn client_basic_auth(cfg: &OAuthConfig) -> Result<HeaderValue, TokenError> {
    let mut pair = String::with_capacity(cfg.client_id.len() + cfg.client_secret.len() + 1);
    pair.extend(form_urlencoded::byte_serialize(cfg.client_id.as_bytes()));
    pair.push(':');
    pair.extend(form_urlencoded::byte_serialize(cfg.client_secret.as_bytes()));
    let mut value = HeaderValue::try_from(format!("Basic {}", B64.encode(pair)))
        .map_err(|_| TokenError::config("client credentials cannot be encoded"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
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
        Ok { expires_in: Option<u64> },
        StringExpiry,
        InvalidClient,
        NotBearer,
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
        server.seen.lock().unwrap().push((auth, form));
        // Long enough that concurrent callers really overlap with the request.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mode = *server.mode.lock().unwrap();
        match mode {
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
        crate::http_client::build(policy, Duration::from_secs(5)).unwrap()
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
        assert_eq!(server.requests.load(Ordering::SeqCst), 1, "waiters share the failed request");
        let last = cache.last_error().unwrap();
        assert_eq!(last.code(), Some("invalid_client"));
        assert!(!format!("{last} {last:?} {cfg:?}").contains("s3cr"));

        *server.mode.lock().unwrap() = Mode::Ok { expires_in: None };
        assert_eq!(&*cache.token(&client, &cfg).await.unwrap(), "tok-2");
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
}
