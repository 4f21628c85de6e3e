//! Preparing an endpoint for delivery, once each time its actor loads its
//! record: secrets opened, signing keys decoded, the static headers
//! assembled and the URLs judged against the URL policy.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use herald_common::endpoint_secrets as sealing;
use herald_common::model::{EndpointRecord, Format, StoredAuth};
use herald_common::url_policy::{UrlPolicy, UrlRejection};
use herald_common::{crypto::SecretBox, time_fmt};
use http::header::{AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::{ActiveKey, DEFAULT_MAX_BATCH_SIZE, PreparedEndpoint, RESERVED_HEADERS, WEBHOOK_REQUEST_ORIGIN};
use crate::error::DispatchError;
use crate::send::oauth::OAuthConfig;
use crate::send::render::RenderPlan;
use crate::send::signing::SigningKey;

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
