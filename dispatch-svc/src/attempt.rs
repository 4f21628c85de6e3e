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
//! least that long, `415` the format is refused (no retry), anything else,
//! including transport and token failures, is retried on the schedule. A
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
use herald_common::model::{EndpointRecord, Millis, StoredAuth, StoredEvent};
use herald_common::url_policy::{UrlPolicy, UrlRejection};
use herald_common::{crypto::SecretBox, ids, time_fmt};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::error::DispatchError;
use crate::http_client::{describe, read_prefix};
use crate::oauth::{OAuthConfig, TokenCache};
use crate::render::{LoadedEvent, RenderPlan};
use crate::signing::{SigningKey, signature_header};

pub const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
pub const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
pub const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const WEBHOOK_REQUEST_ORIGIN: HeaderName = HeaderName::from_static("webhook-request-origin");
pub const WEBHOOK_ALLOWED_ORIGIN: HeaderName = HeaderName::from_static("webhook-allowed-origin");

/// The origin Herald announces in the CloudEvents webhook handshake.
pub const HANDSHAKE_ORIGIN: &str = "herald";
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
}

impl AttemptOutcome {
    fn failed(verdict: Verdict, error: String) -> Self {
        AttemptOutcome {
            verdict,
            status_code: None,
            latency: Duration::ZERO,
            error: Some(error),
            response_body: String::new(),
            token_refreshed: false,
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
            .finish()
    }
}

impl PreparedEndpoint {
    pub fn prepare(record: &EndpointRecord, secrets: &SecretBox, policy: &UrlPolicy) -> Result<Self, DispatchError> {
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
        })
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
        headers.insert(WEBHOOK_REQUEST_ORIGIN, HeaderValue::from_static(HANDSHAKE_ORIGIN));
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
        let allowed =
            response.headers().get_all(WEBHOOK_ALLOWED_ORIGIN).iter().any(|v| {
                v.to_str().is_ok_and(|v| v.split(',').map(str::trim).any(|o| o == "*" || o == HANDSHAKE_ORIGIN))
            });
        if allowed { Ok(()) } else { Err(format!("handshake answer does not allow origin {HANDSHAKE_ORIGIN}")) }
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
        let started = Instant::now();
        let response = match client.post(self.url.clone()).headers(headers).body(body).send().await {
            Ok(response) => response,
            Err(err) => {
                let mut outcome = AttemptOutcome::failed(Verdict::Retry, describe(&err));
                outcome.latency = started.elapsed();
                return outcome;
            }
        };
        let latency = started.elapsed();
        let status = response.status();
        let verdict = classify(status, response.headers().get(RETRY_AFTER), SystemTime::now());
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
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::HeaderMap as AxHeaders;
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use axum::{Json, Router};
    use herald_common::model::{ClientAuth, EndpointStatus, Format, Ordering, Sealed, SigningSecret};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), None);
        // Huge values parse without overflow; the retry schedule bounds them (HERALD_RETRY_AFTER_MAX).
        assert_eq!(parse_retry_after("18446744073709551615", now), Some(Duration::from_secs(u64::MAX)));
        assert!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some_and(|d| d > Duration::from_secs(1 << 37))
        );
        assert_eq!(parse_retry_after("18446744073709551616", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn classification() {
        let now = at(1_445_412_480);
        let ra = |v: &'static str| Some(HeaderValue::from_static(v));
        let c = |code: u16, retry_after: Option<HeaderValue>| {
            classify(StatusCode::from_u16(code).unwrap(), retry_after.as_ref(), now)
        };
        assert_eq!(c(200, None), Verdict::Delivered);
        assert_eq!(c(204, None), Verdict::Delivered);
        assert_eq!(c(410, None), Verdict::Gone);
        assert_eq!(c(415, None), Verdict::Permanent);
        assert_eq!(c(429, ra("30")), Verdict::RetryAfter(Duration::from_secs(30)));
        assert_eq!(c(503, ra("Wed, 21 Oct 2015 07:28:10 GMT")), Verdict::RetryAfter(Duration::from_secs(10)));
        assert_eq!(c(429, None), Verdict::Retry);
        assert_eq!(c(429, ra("0")), Verdict::Retry);
        assert_eq!(c(503, ra("garbage")), Verdict::Retry);
        assert_eq!(c(500, ra("30")), Verdict::Retry, "Retry-After only counts on 429 and 503");
        for code in [301, 302, 400, 401, 403, 404, 408, 500, 502, 504] {
            assert_eq!(c(code, None), Verdict::Retry, "{code}");
        }
    }

    #[test]
    fn body_prefix_drops_a_split_character() {
        assert_eq!(utf8_prefix("héllo".as_bytes().to_vec()), "héllo");
        let mut cut = "aé".as_bytes().to_vec();
        cut.pop();
        assert_eq!(utf8_prefix(cut), "a");
        assert_eq!(utf8_prefix(vec![b'a', 0xff, b'b']), "a\u{fffd}b");
    }

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
        crate::http_client::build(open_policy(), Duration::from_secs(2)).unwrap()
    }

    fn event() -> Arc<LoadedEvent> {
        let raw =
            json!({"id": "evt_1", "type": "order.created", "timestamp": "2024-05-07T19:18:32.076Z", "data": {"n": 1}});
        Arc::new(LoadedEvent::parse(Bytes::from(serde_json::to_vec(&raw).unwrap())).unwrap())
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
        let ep = PreparedEndpoint::prepare(&record(&url, auth, &secrets), &secrets, &open_policy()).unwrap();
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
        let ep = PreparedEndpoint::prepare(&rec, &secrets, &open_policy()).unwrap();
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
            PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy()).unwrap();
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
            PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy()).unwrap();
        let out = ep.attempt(&client(), &TokenCache::new(), &[event()], "m", None).await;
        assert_eq!((out.verdict, out.status_code), (Verdict::Retry, None));
        assert!(out.error.unwrap().starts_with("connection failed"));

        let strict = UrlPolicy { allow_http: true, ..UrlPolicy::default() };
        let ep = PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &strict).unwrap();
        let out = ep.attempt(&client(), &TokenCache::new(), &[event()], "m", None).await;
        assert_eq!(out.verdict, Verdict::Retry);
        assert_eq!(
            out.error.as_deref(),
            Some("endpoint url refused: host resolves to a non-public address (Loopback)")
        );
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
        let ep = PreparedEndpoint::prepare(&record(&url, auth, &secrets), &secrets, &open_policy()).unwrap();
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
            (200, vec![("webhook-allowed-origin", "herald")], String::new()),
            (200, vec![("webhook-allowed-origin", "*")], String::new()),
            (200, vec![("webhook-allowed-origin", "someone-else")], String::new()),
            (200, vec![], String::new()),
            (405, vec![], String::new()),
        ];
        let ep =
            PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy()).unwrap();
        let (client, tokens) = (client(), TokenCache::new());
        assert_eq!(ep.handshake(&client, &tokens).await, Ok(()));
        assert_eq!(ep.handshake(&client, &tokens).await, Ok(()));
        assert!(ep.handshake(&client, &tokens).await.is_err());
        assert!(ep.handshake(&client, &tokens).await.is_err());
        assert_eq!(ep.handshake(&client, &tokens).await, Err("handshake answered status 405".into()));
        let seen = hook.seen.lock().unwrap();
        assert_eq!(seen[0].0, Method::OPTIONS);
        assert_eq!(seen[0].1["webhook-request-origin"], "herald");
    }

    #[tokio::test]
    async fn test_send_delivers_a_synthetic_event() {
        let secrets = SecretBox::ephemeral();
        let (hook, url) = start_hook().await;
        let ep =
            PreparedEndpoint::prepare(&record(&url, StoredAuth::None, &secrets), &secrets, &open_policy()).unwrap();
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
        let ep = PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default()).unwrap();
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
        let ep = PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default()).unwrap();
        assert!(!ep.headers.contains_key(CONTENT_TYPE));
        assert_eq!(ep.headers["x-custom"], "yes");
        rec.headers.insert("bad header".into(), Sealed("x".into()));
        assert!(matches!(
            PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default()),
            Err(DispatchError::Header { .. })
        ));
        let mut rec = record("https://example.com/hook", StoredAuth::None, &secrets);
        rec.signing_secrets[0].secret = Sealed("k00000000:garbage".into());
        assert!(PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default()).is_err());
        let rec = record("not a url", StoredAuth::None, &secrets);
        assert!(PreparedEndpoint::prepare(&rec, &secrets, &UrlPolicy::default()).is_err());
    }
}
