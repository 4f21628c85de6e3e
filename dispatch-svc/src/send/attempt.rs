//! One delivery attempt: render, sign, authenticate, `POST`, classify.
//!
//! [`PreparedEndpoint`] is built once each time an endpoint's actor loads its
//! record (`attempt/prepare.rs`): everything that does not change between
//! deliveries is worked out there. An attempt then only renders, signs, adds
//! the per-request headers, sends and reads the answer, which
//! [`crate::send::outcome`] classifies. A `429`/`503` with `Retry-After`
//! also pauses the whole endpoint, through the [`Pause`] its actor handed
//! over. A `401` from an OAuth endpoint drops the token it refused and the
//! request is sent once more, at once, with a fresh token.
//!
//! An attempt never returns an error: what went wrong is part of the
//! [`AttemptOutcome`] so it can be stored with the delivery.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use herald_common::model::{Millis, StoredEvent};
use herald_common::url_policy::UrlRejection;
use herald_common::{ids, time_fmt};
use http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::Value;
use url::Url;

use crate::health::Pause;
use crate::observe::DeliveryMetrics;
use crate::send::host_limit::HostSlots;
use crate::send::http_client::{describe, read_prefix};
use crate::send::oauth::{OAuthConfig, TokenCache};
use crate::send::outcome::{AttemptOutcome, Verdict, classify, utf8_prefix};
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
            Some(slots) => match slots.try_acquire() {
                Ok(slot) => Some(slot),
                Err(_) => {
                    DeliveryMetrics::get().host_waits.increment(1);
                    slots.acquire().await.ok()
                }
            },
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

fn bearer(token: &str) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| "token endpoint: access token is not a valid header value".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

mod prepare;
#[cfg(test)]
mod tests;
