//! A real OAuth 2.0 client-credentials token endpoint for the tests.
//!
//! By default it issues a token to any client. [`TokenServer::accept_only_post`]
//! makes it one of the token endpoints that accept only
//! `client_secret_post`: a client must send exactly the given id and secret
//! in the form body, and any other request, one with HTTP Basic client
//! authentication included, is refused `401 invalid_client` (RFC 6749 §5.2).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

#[derive(Default)]
struct TokenState {
    requests: AtomicUsize,
    issued: AtomicUsize,
    expires_in: Mutex<Option<u64>>,
    fail_with: Mutex<Option<(u16, String)>>,
    delay: Mutex<Duration>,
    seen: Mutex<Vec<(HashMap<String, String>, String)>>,
    /// `client_secret_post` only, for this client id and secret.
    post_only: Mutex<Option<(String, String)>>,
}

/// Does this request authenticate `client` by `client_secret_post` alone?
fn posts_client(headers: &HeaderMap, body: &str, (id, secret): &(String, String)) -> bool {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    !headers.contains_key("authorization")
        && form.get("client_id") == Some(id)
        && form.get("client_secret") == Some(secret)
}

/// A real OAuth 2.0 client-credentials token endpoint (RFC 6749 §4.4) on
/// 127.0.0.1:0. Tokens are `tok-1`, `tok-2`, … in issue order.
pub struct TokenServer {
    addr: SocketAddr,
    state: Arc<TokenState>,
    _server: JoinHandle<()>,
}

async fn issue_token(State(state): State<Arc<TokenState>>, headers: HeaderMap, body: String) -> Response {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let flat = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let refused = state.post_only.lock().unwrap().as_ref().is_some_and(|client| !posts_client(&headers, &body, client));
    state.seen.lock().unwrap().push((flat, body));
    let delay = *state.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let failure =
        if refused { Some((401, "invalid_client".to_owned())) } else { state.fail_with.lock().unwrap().clone() };
    if let Some((status, error)) = failure {
        return (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/json")],
            serde_json::json!({"error": error}).to_string(),
        )
            .into_response();
    }
    let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
    let mut answer = serde_json::json!({"access_token": format!("tok-{n}"), "token_type": "Bearer"});
    if let Some(expires_in) = *state.expires_in.lock().unwrap() {
        answer["expires_in"] = expires_in.into();
    }
    ([("content-type", "application/json")], answer.to_string()).into_response()
}

impl TokenServer {
    pub async fn start() -> TokenServer {
        let state = Arc::new(TokenState { expires_in: Mutex::new(Some(3600)), ..TokenState::default() });
        let app = axum::Router::new().route("/token", axum::routing::post(issue_token)).with_state(state.clone());
        let (listener, addr) = crate::bind().await;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer { addr, state, _server: server }
    }

    pub fn url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// Token requests received so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// `expires_in` of the tokens issued from now on (`None` omits it).
    pub fn set_expires_in(&self, seconds: Option<u64>) {
        *self.state.expires_in.lock().unwrap() = seconds;
    }

    /// Answer every request with this status and OAuth `error` code.
    pub fn fail_with(&self, status: u16, error: &str) {
        *self.state.fail_with.lock().unwrap() = Some((status, error.to_owned()));
    }

    /// Issue tokens only to `client_id` with `client_secret` sent in the
    /// form body (`client_secret_post`); refuse everything else.
    pub fn accept_only_post(&self, client_id: &str, client_secret: &str) {
        *self.state.post_only.lock().unwrap() = Some((client_id.to_owned(), client_secret.to_owned()));
    }

    pub fn recover(&self) {
        *self.state.fail_with.lock().unwrap() = None;
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Headers and form bodies of every token request.
    pub fn seen(&self) -> Vec<(HashMap<String, String>, String)> {
        self.state.seen.lock().unwrap().clone()
    }
}
