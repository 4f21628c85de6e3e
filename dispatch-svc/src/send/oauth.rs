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
//!
//! **Finding the style a token endpoint accepts.** `basic` is the default
//! (RFC 6749 §2.3.1 says servers must support it), but some token endpoints
//! accept only `client_secret_post`, and an integrator (seed 002's
//! `client_credential` among them) cannot say which. So a `basic` client
//! that the token endpoint refuses as `invalid_client` (`400` or `401`,
//! §5.2) asks once more, at once, with `client_secret_post`; the style that
//! got a token is remembered by the cache and used alone from then on. The
//! cache is made again when the endpoint's `auth` changes, so a new secret
//! or token URL is tried both ways again. When both are refused, the error
//! kept and shown is the `basic` refusal. A `post` client is never tried
//! with `basic`: it was chosen on purpose.

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

use crate::send::http_client::{describe, read_prefix};

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

    /// The token endpoint refused the client's credentials as presented
    /// (RFC 6749 §5.2 `invalid_client`, answered `400` or `401`).
    fn refuses_client(&self) -> bool {
        self.code.as_deref() == Some("invalid_client") && matches!(self.status, Some(400 | 401))
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
    /// The client authentication the token endpoint gave a token for.
    accepted: Option<ClientAuth>,
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
            .field("accepted", &state.accepted)
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
        let accepted = {
            let state = self.lock();
            if let Some(token) = state.fresh(Instant::now()) {
                return Ok(token);
            }
            if state.fetches != seen
                && let Some(err) = &state.last_error
            {
                return Err(err.clone());
            }
            state.accepted
        };
        let started = Instant::now();
        let result = fetch_either_way(client, cfg, accepted).await;
        let mut state = self.lock();
        state.fetches += 1;
        match result {
            Ok((token, lifetime, style)) => {
                let margin = (lifetime / 10).min(MAX_REFRESH_MARGIN);
                state.current = Some(Cached { token: token.clone(), refresh_at: started + (lifetime - margin) });
                state.last_error = None;
                state.accepted = Some(style);
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

/// A token and its lifetime, and the client authentication that got it:
/// the one that worked before, else the configured one and, for a refused
/// `basic` client, `post` once more.
async fn fetch_either_way(
    client: &reqwest::Client,
    cfg: &OAuthConfig,
    accepted: Option<ClientAuth>,
) -> Result<(Arc<str>, Duration, ClientAuth), TokenError> {
    let style = accepted.unwrap_or(cfg.client_auth);
    let refused = match fetch(client, cfg, style).await {
        Ok((token, lifetime)) => return Ok((token, lifetime, style)),
        Err(err) if accepted.is_none() && style == ClientAuth::Basic && err.refuses_client() => err,
        Err(err) => return Err(err),
    };
    tracing::info!(
        token_host = cfg.token_url.host_str(),
        "token endpoint refused client_secret_basic; trying client_secret_post"
    );
    match fetch(client, cfg, ClientAuth::Post).await {
        Ok((token, lifetime)) => Ok((token, lifetime, ClientAuth::Post)),
        Err(_) => Err(refused),
    }
}

/// One token request authenticating the client as `style`.
async fn fetch(
    client: &reqwest::Client,
    cfg: &OAuthConfig,
    style: ClientAuth,
) -> Result<(Arc<str>, Duration), TokenError> {
    let result = request_token(client, cfg, style).await;
    crate::observe::token_request(result.is_ok());
    result
}

async fn request_token(
    client: &reqwest::Client,
    cfg: &OAuthConfig,
    style: ClientAuth,
) -> Result<(Arc<str>, Duration), TokenError> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    if let Some(scope) = &cfg.scope {
        form.push(("scope", scope));
    }
    if let Some(audience) = &cfg.audience {
        form.push(("audience", audience));
    }
    let mut request = client.post(cfg.token_url.clone()).header(ACCEPT, "application/json");
    match style {
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
mod tests;
