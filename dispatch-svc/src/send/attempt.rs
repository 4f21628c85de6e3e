//! One delivery attempt: render, sign, authenticate, `POST`, classify.
//!
//! [`PreparedEndpoint`] is built once each time an endpoint's actor loads its
//! record. Everything that does not change between deliveries is worked out
//! there: secrets are decrypted once, signing keys decoded into HMAC states,
//! the static headers (user agent, the endpoint's own headers, Basic or
//! Bearer authorization) assembled, the URL parsed and judged against the URL
//! policy. An attempt then only renders, signs, adds the per-request headers,
//! sends and reads the answer.
//!
//! Classification follows the delivery contract: `2xx` delivered, `410`
//! gone (the endpoint is disabled), `429`/`503` with `Retry-After` wait at
//! least that long (and pause the whole endpoint, through the [`Pause`] its
//! actor handed over), `415` the format is refused (no retry), anything
//! else, including transport and token failures, is retried on the
//! schedule. A
//! `401` from an OAuth endpoint drops the token it refused and the request is
//! sent once more, at once, with a fresh token.
//!
//! An attempt never returns an error: what went wrong is part of the
//! [`AttemptOutcome`] so it can be stored with the delivery.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use herald_common::endpoint_secrets as sealing;
use herald_common::model::{EndpointRecord, Format, Millis, StoredAuth, StoredEvent};
use herald_common::url_policy::{UrlPolicy, UrlRejection};
use herald_common::{crypto::SecretBox, ids, time_fmt};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::error::DispatchError;
use crate::health::Pause;
use crate::records::SentRequest;
use crate::send::host_limit::HostSlots;
use crate::send::http_client::{describe, read_prefix};
use crate::send::oauth::{OAuthConfig, TokenCache};
use crate::send::recorded::ShapeCache;
use crate::send::render::{LoadedEvent, RenderPlan};
use crate::send::signing::{SigningKey, signature_header};

pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const WEBHOOK_REQUEST_ORIGIN: HeaderName = HeaderName::from_static("webhook-request-origin");
pub const WEBHOOK_ALLOWED_ORIGIN: HeaderName = HeaderName::from_static("webhook-allowed-origin");

/// How much of an answer body is kept with the attempt.
pub const RESPONSE_BODY_LIMIT: usize = 1024;
/// Envelope batch size when the endpoint does not set `maxBatchSize`.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 1;

/// Headers an endpoint may not set itself: framing, and what Herald signs
/// or derives from the format.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "traceparent",
];

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `2xx`.
    Delivered,
    /// `410 Gone`: disable the endpoint and stop its retries.
    Gone,
    /// `429`/`503` with a usable `Retry-After`: wait at least this long.
    RetryAfter(Duration),
    /// Any other failure: status, timeout, connection, TLS, token endpoint.
    Retry,
    /// `415`, or a body that cannot be rendered: retrying cannot help.
    Permanent,
}

/// The result of one attempt, as stored with the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub verdict: Verdict,
    /// `None` when no HTTP answer was received.
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    /// The first 1 KiB of the answer body.
    pub response_body: String,
    /// The endpoint refused the cached OAuth token and the request was sent
    /// again with a fresh one.
    pub token_refreshed: bool,
    /// The request sent (the last one, after a token refresh).
    pub sent: Option<SentRequest>,
}

/// What an attempt record keeps of an outcome: error, answer body, request.
pub type AttemptDetail = (Option<String>, String, Option<SentRequest>);

impl AttemptOutcome {
    /// A copy of the detail, for each job of a batch but the last.
    pub fn detail(&self) -> AttemptDetail {
        (self.error.clone(), self.response_body.clone(), self.sent.clone())
    }

    /// The detail moved out, for the last job of a batch (a single job's
    /// record costs no copy).
    pub fn take_detail(&mut self) -> AttemptDetail {
        (self.error.take(), std::mem::take(&mut self.response_body), self.sent.take())
    }

    /// No answer: the attempt failed before or while sending.
    pub fn failed(verdict: Verdict, error: String) -> Self {
        AttemptOutcome {
            verdict,
            status_code: None,
            latency: Duration::ZERO,
            error: Some(error),
            response_body: String::new(),
            token_refreshed: false,
            sent: None,
        }
    }

    pub fn delivered(&self) -> bool {
        self.verdict == Verdict::Delivered
    }

    pub fn latency_ms(&self) -> u64 {
        u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A signing key and, for a rotated-out secret, when it stops signing.
#[derive(Clone, Debug)]
struct ActiveKey {
    key: SigningKey,
    expires_at: Option<Millis>,
}

impl ActiveKey {
    fn signs_at(&self, now_ms: Millis) -> bool {
        match self.expires_at {
            Some(at) => at > now_ms,
            None => true,
        }
    }
}

/// An endpoint ready to deliver to.
#[derive(Clone)]
pub struct PreparedEndpoint {
    id: String,
    tenant: String,
    url: Url,
    /// The static URL policy verdict; names are checked again on every
    /// connection by the client's resolver.
    url_refused: Option<UrlRejection>,
    plan: RenderPlan,
    keys: Vec<ActiveKey>,
    /// User agent, the endpoint's own headers, and Basic or Bearer authorization.
    headers: HeaderMap,
    oauth: Option<OAuthConfig>,
    token_url_refused: Option<UrlRejection>,
    max_batch_size: usize,
    /// `WebHook-Request-Origin`: sent on the handshake and, for CloudEvents
    /// formats, on every delivery (it is among the static headers then).
    origin: HeaderValue,
    /// The endpoint's `Retry-After` pause, when an actor delivers through it.
    pause: Option<Arc<Pause>>,
    /// Its host's slots on its actor thread, when hosts are bounded.
    host_slots: Option<HostSlots>,
    /// The shape of its latest request and its key, reused while unchanged.
    shape: ShapeCache,
}

/// Header values may carry credentials, so only their names are shown.
impl std::fmt::Debug for PreparedEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedEndpoint")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("url", &self.url.as_str())
            .field("url_refused", &self.url_refused)
            .field("plan", &self.plan)
            .field("keys", &self.keys.len())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("oauth", &self.oauth)
            .field("token_url_refused", &self.token_url_refused)
            .field("max_batch_size", &self.max_batch_size)
            .field("origin", &self.origin)
            .field("pause", &self.pause)
            .field("host_slots", &self.host_slots.as_ref().map(|slots| slots.available_permits()))
            .finish()
    }
}

impl PreparedEndpoint {
    /// `origin` is the DNS name announced as `WebHook-Request-Origin`.
    pub fn prepare(
        record: &EndpointRecord,
        secrets: &SecretBox,
        policy: &UrlPolicy,
        origin: &str,
    ) -> Result<Self, DispatchError> {
        let (url, url_refused) = judge_url(policy, &record.url)?;
        let plan = RenderPlan::new(record)?;
        let bound = |slot| sealing::binding(&record.id, slot);

        let now = time_fmt::now_millis();
        let mut keys = Vec::with_capacity(record.signing_secrets.len());
        for secret in &record.signing_secrets {
            if secret.expires_at.is_some_and(|at| at <= now) {
                continue;
            }
            let key = SigningKey::from_secret(&secrets.open(&secret.secret, bound(sealing::SIGNING_SECRET))?)?;
            keys.push(ActiveKey { key, expires_at: secret.expires_at });
        }

        let mut headers = HeaderMap::with_capacity(record.headers.len() + 2);
        headers.insert(USER_AGENT, HeaderValue::from_static(herald_common::USER_AGENT));
        for (name, value) in &sealing::open_headers(secrets, record)? {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| DispatchError::Header { name: name.clone(), reason: "not a valid header name".into() })?;
            if RESERVED_HEADERS.contains(&header_name.as_str()) {
                tracing::warn!(endpoint = %record.id, header = %header_name, "endpoint header is reserved, not sent");
                continue;
            }
            let mut header_value = HeaderValue::from_str(value)
                .map_err(|_| DispatchError::Header { name: name.clone(), reason: "not a valid header value".into() })?;
            // Header values often carry API keys: never printed by the HTTP stack.
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }

        let origin = HeaderValue::from_str(origin).map_err(|_| DispatchError::Header {
            name: WEBHOOK_REQUEST_ORIGIN.to_string(),
            reason: "the configured origin is not a valid header value".into(),
        })?;
        if matches!(record.format, Format::Cloudevents | Format::CloudeventsBinary) {
            headers.insert(WEBHOOK_REQUEST_ORIGIN, origin.clone());
        }

        let mut oauth = None;
        let mut token_url_refused = None;
        match &record.auth {
            StoredAuth::None => {}
            StoredAuth::Basic { username, password } => {
                let pair = format!("{username}:{}", secrets.open(password, bound(sealing::PASSWORD))?);
                headers.insert(AUTHORIZATION, sensitive(format!("Basic {}", B64.encode(pair)), "basic credentials")?);
            }
            StoredAuth::Bearer { token } => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(format!("Bearer {}", secrets.open(token, bound(sealing::TOKEN))?), "bearer token")?,
                );
            }
            StoredAuth::Oauth2ClientCredentials {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
                client_auth,
            } => {
                let (token_url, refused) = judge_url(policy, token_url)?;
                token_url_refused = refused;
                oauth = Some(OAuthConfig {
                    token_url,
                    client_id: client_id.clone(),
                    client_secret: secrets.open(client_secret, bound(sealing::CLIENT_SECRET))?,
                    scope: scope.clone(),
                    audience: audience.clone(),
                    client_auth: *client_auth,
                });
            }
        }

        let max_batch_size = if plan.batches() {
            record.max_batch_size.map_or(DEFAULT_MAX_BATCH_SIZE, |n| n.max(1) as usize)
        } else {
            1
        };
        Ok(PreparedEndpoint {
            id: record.id.clone(),
            tenant: record.tenant.clone(),
            url,
            url_refused,
            plan,
            keys,
            headers,
            oauth,
            token_url_refused,
            max_batch_size,
            origin,
            pause: None,
            host_slots: None,
            shape: Default::default(),
        })
    }

    /// Attempts share `slots` with every endpoint of the same host on this
    /// actor thread (`None`: no bound).
    pub fn sharing_host(self, slots: Option<HostSlots>) -> Self {
        PreparedEndpoint { host_slots: slots, ..self }
    }

    /// Attempts that get `Retry-After` extend `pause`, which the endpoint's
    /// actor waits out before it starts any other attempt.
    pub fn pausing(self, pause: Arc<Pause>) -> Self {
        PreparedEndpoint { pause: Some(pause), ..self }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// How many events one request may carry (more than 1 only for `envelope`).
    pub fn max_batch_size(&self) -> usize {
        self.max_batch_size
    }

    pub fn uses_oauth(&self) -> bool {
        self.oauth.is_some()
    }

    /// Performs one delivery of `events` (one event, or a batch for
    /// `envelope`) with `msg_id` as `webhook-id`.
    pub async fn attempt(
        &self,
        client: &reqwest::Client,
        tokens: &TokenCache,
        events: &[Arc<LoadedEvent>],
        msg_id: &str,
        traceparent: Option<&str>,
    ) -> AttemptOutcome {
        if let Some(refused) = &self.url_refused {
            return AttemptOutcome::failed(Verdict::Retry, format!("endpoint url refused: {refused}"));
        }
        let rendered = match self.plan.render(events) {
            Ok(rendered) => rendered,
            Err(err) => return AttemptOutcome::failed(Verdict::Permanent, err.to_string()),
        };
        let mut headers = match self.request_headers(msg_id, traceparent, &rendered.body) {
            Ok(headers) => headers,
            Err(err) => return AttemptOutcome::failed(Verdict::Permanent, err),
        };
        headers.insert(CONTENT_TYPE, rendered.content_type);
        for (name, value) in rendered.headers {
            headers.insert(name, value);
        }

        let Some(oauth) = &self.oauth else {
            return self.send(client, headers, rendered.body).await;
        };
        let token = match self.token(client, tokens, oauth).await {
            Ok(token) => token,
            Err(err) => return AttemptOutcome::failed(Verdict::Retry, err),
        };
        let first = match bearer(&token) {
            Ok(value) => {
                let mut first_headers = headers.clone();
                first_headers.insert(AUTHORIZATION, value);
                self.send(client, first_headers, rendered.body.clone()).await
            }
            Err(err) => return AttemptOutcome::failed(Verdict::Retry, err),
        };
        if first.status_code != Some(StatusCode::UNAUTHORIZED.as_u16()) {
            return first;
        }
        tokens.invalidate(&token);
        let mut second = match self.token(client, tokens, oauth).await.and_then(|fresh| bearer(&fresh)) {
            Ok(value) => {
                headers.insert(AUTHORIZATION, value);
                self.send(client, headers, rendered.body).await
            }
            Err(err) => AttemptOutcome::failed(Verdict::Retry, err),
        };
        second.token_refreshed = true;
        second
    }

    /// Sends `data` as an event of `event_type` right now, outside any
    /// delivery: the endpoint test of the API. Nothing is stored.
    pub async fn test_send(
        &self,
        client: &reqwest::Client,
        tokens: &TokenCache,
        event_type: &str,
        data: Value,
        traceparent: Option<&str>,
    ) -> AttemptOutcome {
        let event = StoredEvent {
            id: ids::new_id(ids::EVENT),
            event_type: event_type.to_owned(),
            timestamp: time_fmt::rfc3339(time_fmt::now()),
            resource: None,
            data,
        };
        let msg_id = event.id.clone();
        match LoadedEvent::from_event(event) {
            Ok(loaded) => self.attempt(client, tokens, &[Arc::new(loaded)], &msg_id, traceparent).await,
            Err(err) => AttemptOutcome::failed(Verdict::Permanent, err.to_string()),
        }
    }

    /// The CloudEvents webhook abuse-protection handshake: an `OPTIONS`
    /// request with `WebHook-Request-Origin`, accepted when the endpoint
    /// answers `2xx` with `WebHook-Allowed-Origin` naming Herald or `*`.
    pub async fn handshake(&self, client: &reqwest::Client, tokens: &TokenCache) -> Result<(), String> {
        if let Some(refused) = &self.url_refused {
            return Err(format!("endpoint url refused: {refused}"));
        }
        let mut headers = self.headers.clone();
        headers.insert(WEBHOOK_REQUEST_ORIGIN, self.origin.clone());
        if let Some(oauth) = &self.oauth {
            let token = self.token(client, tokens, oauth).await?;
            headers.insert(AUTHORIZATION, bearer(&token)?);
        }
        let response = client
            .request(Method::OPTIONS, self.url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| format!("handshake {}", describe(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("handshake answered status {}", status.as_u16()));
        }
        let origin = self.origin.to_str().unwrap_or_default();
        let allowed = response.headers().get_all(WEBHOOK_ALLOWED_ORIGIN).iter().any(|v| {
            v.to_str().is_ok_and(|v| v.split(',').map(str::trim).any(|o| o == "*" || o.eq_ignore_ascii_case(origin)))
        });
        if allowed { Ok(()) } else { Err(format!("handshake answer does not allow origin {origin}")) }
    }

    async fn token(
        &self,
        client: &reqwest::Client,
        tokens: &TokenCache,
        oauth: &OAuthConfig,
    ) -> Result<Arc<str>, String> {
        if let Some(refused) = &self.token_url_refused {
            return Err(format!("token endpoint url refused: {refused}"));
        }
        tokens.token(client, oauth).await.map_err(|e| e.to_string())
    }

    /// The static headers plus what identifies and signs this request.
    fn request_headers(&self, msg_id: &str, traceparent: Option<&str>, body: &[u8]) -> Result<HeaderMap, String> {
        let mut headers = self.headers.clone();
        let id = HeaderValue::from_str(msg_id).map_err(|_| "message id is not a valid header value".to_owned())?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let timestamp = HeaderValue::from(now.as_secs());
        let now_ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX);
        let keys = self.keys.iter().filter(|k| k.signs_at(now_ms)).map(|k| &k.key);
        if let Some(signature) = signature_header(keys, msg_id, &timestamp, body) {
            headers.insert(WEBHOOK_SIGNATURE, signature);
        }
        headers.insert(WEBHOOK_ID, id);
        headers.insert(WEBHOOK_TIMESTAMP, timestamp);
        if let Some(tp) = traceparent.and_then(|tp| HeaderValue::from_str(tp).ok()) {
            headers.insert(TRACEPARENT, tp);
        }
        Ok(headers)
    }

    async fn send(&self, client: &reqwest::Client, headers: HeaderMap, body: Bytes) -> AttemptOutcome {
        let sent = Some(self.shape.record(&self.url, &headers, body.len()));
        // Held until the answer is read, as its connection is; the wait for
        // it is not part of the attempt's latency or timeout.
        let _slot = match &self.host_slots {
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        };
        let started = Instant::now();
        // Built whole and moved in: a request builder would insert the
        // headers one by one into a map of its own.
        let mut request = reqwest::Request::new(Method::POST, self.url.clone());
        *request.headers_mut() = headers;
        *request.body_mut() = Some(body.into());
        let response = match client.execute(request).await {
            Ok(response) => response,
            Err(err) => {
                let mut outcome = AttemptOutcome::failed(Verdict::Retry, describe(&err));
                outcome.latency = started.elapsed();
                outcome.sent = sent;
                return outcome;
            }
        };
        let latency = started.elapsed();
        let status = response.status();
        let verdict = classify(status, response.headers().get(RETRY_AFTER), SystemTime::now());
        if let (Verdict::RetryAfter(wait), Some(pause)) = (verdict, &self.pause) {
            // Told now, not when this attempt is settled, so attempts that
            // are about to start already wait.
            pause.extend(wait, tokio::time::Instant::now());
        }
        // A body that fails half-way still leaves the status to go by.
        let response_body = read_prefix(response, RESPONSE_BODY_LIMIT).await.map(utf8_prefix).unwrap_or_default();
        let error = match verdict {
            Verdict::Delivered => None,
            _ => Some(format!("endpoint answered status {}", status.as_u16())),
        };
        AttemptOutcome {
            verdict,
            status_code: Some(status.as_u16()),
            latency,
            error,
            response_body,
            token_refreshed: false,
            sent,
        }
    }
}

/// Parses `raw` for `policy`: a URL the policy refuses is kept, with the
/// refusal, so its deliveries fail visibly instead of the endpoint vanishing.
fn judge_url(policy: &UrlPolicy, raw: &str) -> Result<(Url, Option<UrlRejection>), DispatchError> {
    match policy.check(raw) {
        Ok(url) => Ok((url, None)),
        Err(refused) => {
            let url = Url::parse(raw).map_err(|_| DispatchError::Url(UrlRejection::Malformed))?;
            Ok((url, Some(refused)))
        }
    }
}

fn sensitive(value: String, what: &str) -> Result<HeaderValue, DispatchError> {
    let mut value = HeaderValue::try_from(value)
        .map_err(|_| DispatchError::Header { name: "authorization".into(), reason: format!("{what} are not valid") })?;
    value.set_sensitive(true);
    Ok(value)
}

fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "token endpoint: access token is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

/// Maps an answer to what happens next.
pub fn classify(status: StatusCode, retry_after: Option<&HeaderValue>, now: SystemTime) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        410 => Verdict::Gone,
        415 => Verdict::Permanent,
        429 | 503 => retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
            .filter(|d| !d.is_zero())
            .map_or(Verdict::Retry, Verdict::RetryAfter),
        _ => Verdict::Retry,
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (IMF-fixdate, the form
/// RFC 9110 requires senders to use). A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format).ok()?.assume_utc();
    Some(SystemTime::from(at).duration_since(now).unwrap_or(Duration::ZERO))
}

/// The body prefix as text; a character cut in half at the limit is dropped
/// rather than shown as a replacement character.
fn utf8_prefix(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let utf8 = err.utf8_error();
            if utf8.error_len().is_none() {
                let mut bytes = err.into_bytes();
                bytes.truncate(utf8.valid_up_to());
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                String::from_utf8_lossy(err.as_bytes()).into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests;
