//! Who is calling: the admin, or a tenant by its API key (PRODUCT §2).
//!
//! `Authorization: Bearer <HERALD_ADMIN_TOKEN>` is the admin (compared in
//! constant time; admin calls are refused when no token is configured).
//! `Bearer hk_…` is a tenant API key, resolved by the registry's
//! `AuthenticateApiKey` and remembered for [`KEY_CACHE_TTL`] so a busy
//! integrator costs one registry call every couple of seconds, not one per
//! request. Revoking a key through this gateway forgets it at once; a key
//! revoked elsewhere stops working within the TTL.
//!
//! A portal session token (`hk_ps_…`) is a tenant key that expires and may
//! be read-only: a read-only session is refused (`403`) any method but
//! `GET`/`HEAD`, and no session may manage keys or open other sessions.
//!
//! The extractors encode the roles: [`Admin`] for admin-only routes (a tenant
//! key is `403`), [`Scope`] for tenant-scoped routes (the key's tenant, or the
//! admin's `?tenant=`), [`Caller`] for routes open to both.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{Method, header};
use herald_common::crypto::{constant_time_eq, hash_api_key};
use herald_proto::v1::AuthenticateApiKeyRequest;
use serde::Deserialize;

use crate::AppState;
use crate::error::GatewayError;
use crate::ratelimit::RateLimiter;
use crate::upstream::Upstream;

/// How long a resolved API key is trusted without asking the registry again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(2);
/// Past this many cached keys, expired entries are swept (and, if that is not enough, all).
const KEY_CACHE_MAX: usize = 10_000;
/// Tenant API keys start with this.
pub const API_KEY_PREFIX: &str = "hk_";

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Tenant { tenant: String, key_id: String, access: Access },
}

/// What a tenant credential may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// An API key: everything in its tenant.
    Key,
    /// A portal session: everything but managing keys and sessions, or
    /// reads only (and ending itself) when read-only.
    Session(Session),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub read_only: bool,
    /// Unix milliseconds.
    pub expires_at: i64,
}

impl Caller {
    /// A tenant API key for `tenant` (tests and profiles build callers).
    pub fn tenant_key(tenant: &str, key_id: &str) -> Caller {
        Caller::Tenant { tenant: tenant.to_owned(), key_id: key_id.to_owned(), access: Access::Key }
    }

    /// Refuses portal sessions: keys and sessions are managed with API keys or the admin token.
    pub fn require_key_or_admin(&self) -> Result<(), GatewayError> {
        match self {
            Caller::Tenant { access: Access::Session(_), .. } => {
                Err(GatewayError::Forbidden("a portal session cannot manage API keys or sessions".to_owned()))
            }
            _ => Ok(()),
        }
    }
}

/// A resolved key: its tenant, id and access.
#[derive(Clone, Debug)]
struct Grant {
    tenant: String,
    key_id: String,
    access: Access,
}

/// A resolved key, or the registry's verdict that it is not one.
#[derive(Clone)]
struct Cached {
    key: Option<Grant>,
    until: Instant,
}

/// Checks credentials; shared by every request.
pub struct Authenticator {
    admin_token: Option<String>,
    upstream: Upstream,
    keys: Mutex<HashMap<String, Cached>>,
    limiter: Option<RateLimiter>,
}

impl Authenticator {
    pub fn new(admin_token: Option<String>, upstream: Upstream, api_rate_limit: u32) -> Self {
        Authenticator {
            admin_token,
            upstream,
            keys: Mutex::new(HashMap::new()),
            limiter: (api_rate_limit > 0).then(|| RateLimiter::new(api_rate_limit)),
        }
    }

    /// Resolves an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, GatewayError> {
        let unauthorized = || GatewayError::Unauthorized("a bearer token is required".to_owned());
        let value = authorization.ok_or_else(unauthorized)?.trim();
        let (scheme, token) = value.split_once(' ').ok_or_else(unauthorized)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(unauthorized());
        }
        let token = token.trim();
        if token.starts_with(API_KEY_PREFIX) {
            let Grant { tenant, key_id, access } = self.api_key(token).await?;
            if let Some(limiter) = &self.limiter {
                limiter.check(&key_id).map_err(|retry_after| GatewayError::RateLimited { retry_after })?;
            }
            return Ok(Caller::Tenant { tenant, key_id, access });
        }
        match &self.admin_token {
            Some(admin) if constant_time_eq(token, admin) => Ok(Caller::Admin),
            _ => Err(GatewayError::Unauthorized("invalid bearer token".to_owned())),
        }
    }

    async fn api_key(&self, secret: &str) -> Result<Grant, GatewayError> {
        let invalid = || GatewayError::Unauthorized("invalid or revoked api key".to_owned());
        // Keyed by hash so plaintext keys do not linger in memory.
        let hash = hash_api_key(secret);
        let now = Instant::now();
        if let Some(cached) = self.lock().get(&hash).filter(|c| c.until > now).cloned() {
            return cached.key.ok_or_else(invalid);
        }
        let answer = self
            .upstream
            .registry()
            .authenticate_api_key(AuthenticateApiKeyRequest { secret: secret.to_owned() })
            .await;
        let mut until = now + KEY_CACHE_TTL;
        let key = match answer {
            Ok(response) => {
                let key = response.into_inner();
                // A session is not trusted from the cache past its expiry.
                if let Some(left) = key.expires_at.as_ref().map(|at| {
                    let ms = herald_proto::convert::millis(at) - herald_common::time_fmt::now_millis();
                    Duration::from_millis(ms.max(0) as u64)
                }) {
                    until = until.min(now + left);
                }
                let access = match &key.expires_at {
                    None => Access::Key,
                    Some(at) => Access::Session(Session {
                        read_only: key.read_only,
                        expires_at: herald_proto::convert::millis(at),
                    }),
                };
                Some(Grant { tenant: key.tenant, key_id: key.id, access })
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => None,
            Err(status) => return Err(status.into()),
        };
        self.remember(hash, Cached { key: key.clone(), until });
        key.ok_or_else(invalid)
    }

    fn remember(&self, hash: String, entry: Cached) {
        let mut keys = self.lock();
        if keys.len() >= KEY_CACHE_MAX {
            let now = Instant::now();
            keys.retain(|_, c| c.until > now);
            if keys.len() >= KEY_CACHE_MAX {
                keys.clear();
            }
        }
        keys.insert(hash, entry);
    }

    /// Forgets a revoked key at once.
    pub fn forget_key(&self, key_id: &str) {
        self.lock().retain(|_, c| !matches!(&c.key, Some(grant) if grant.key_id == key_id));
        if let Some(limiter) = &self.limiter {
            limiter.forget(key_id);
        }
    }

    /// Forgets every key of a deleted tenant.
    pub fn forget_tenant(&self, tenant: &str) {
        self.lock().retain(|_, c| !matches!(&c.key, Some(grant) if grant.tenant == tenant));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        // A panic while holding this lock cannot leave the map inconsistent: every update is a single insert or retain.
        self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let state = AppState::from_ref(state);
        let authorization = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = state.auth.authenticate(authorization).await?;
        if let Caller::Tenant { key_id, access: Access::Session(Session { read_only: true, .. }), .. } = &caller
            && !matches!(parts.method, Method::GET | Method::HEAD)
            && !ends_itself(&parts.method, parts.uri.path(), key_id)
        {
            return Err(GatewayError::Forbidden("this portal session is read-only".to_owned()));
        }
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Signing out: a read-only session may still revoke itself.
fn ends_itself(method: &Method, path: &str, session_id: &str) -> bool {
    method == Method::DELETE && path.strip_prefix("/v1/portal/sessions/") == Some(session_id)
}

/// The admin; a tenant key is refused with `403`.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin => Ok(Admin),
            Caller::Tenant { .. } => Err(GatewayError::Forbidden("this call needs the admin token".to_owned())),
        }
    }
}

/// The tenant a tenant-scoped call acts for.
#[derive(Clone, Debug)]
pub struct Scope {
    pub tenant: String,
    pub caller: Caller,
}

#[derive(Deserialize)]
struct TenantParam {
    tenant: Option<String>,
}

impl<S> FromRequestParts<S> for Scope
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let requested = Query::<TenantParam>::try_from_uri(&parts.uri)
            .map_err(|_| GatewayError::bad_request("the query string is malformed"))?
            .0
            .tenant
            .filter(|t| !t.is_empty());
        match (&caller, requested) {
            (Caller::Admin, Some(tenant)) => {
                crate::extract::resource_id("tenant", &tenant)?;
                Ok(Scope { tenant, caller })
            }
            (Caller::Admin, None) => {
                Err(GatewayError::invalid("tenant", "the admin must name the tenant with ?tenant=<id>"))
            }
            (Caller::Tenant { tenant, .. }, requested) => match requested {
                // A key sees only its own tenant; naming another must not reveal that it exists.
                Some(other) if &other != tenant => Err(GatewayError::not_found(format!("tenant {other}"))),
                _ => Ok(Scope { tenant: tenant.clone(), caller }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_common::config::{Env, HeraldConfig};

    use super::*;

    fn authenticator() -> Authenticator {
        let env = Env::from_pairs([
            ("HERALD_REGISTRY_URL", "http://127.0.0.1:1"),
            ("HERALD_DISPATCH_URL", "http://127.0.0.1:1"),
        ]);
        let config = HeraldConfig::from_env(&env, true).unwrap();
        Authenticator::new(Some("s3cret".into()), Upstream::new(&config).unwrap(), 0)
    }

    #[tokio::test]
    async fn admin_token_is_checked() {
        let auth = authenticator();
        assert_eq!(auth.authenticate(Some("Bearer s3cret")).await.unwrap(), Caller::Admin);
        assert_eq!(auth.authenticate(Some("bearer  s3cret ")).await.unwrap(), Caller::Admin);
        for bad in [None, Some("Bearer wrong"), Some("Basic s3cret"), Some("s3cret"), Some("Bearer ")] {
            let err = auth.authenticate(bad).await.unwrap_err();
            assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn admin_is_disabled_without_a_token() {
        let mut auth = authenticator();
        auth.admin_token = None;
        let err = auth.authenticate(Some("Bearer s3cret")).await.unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_503_for_api_keys() {
        let auth = authenticator();
        let started = Instant::now();
        let err = auth.authenticate(Some("Bearer hk_whatever")).await.unwrap_err();
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn a_read_only_session_may_only_end_itself() {
        assert!(ends_itself(&Method::DELETE, "/v1/portal/sessions/ps_1", "ps_1"));
        assert!(!ends_itself(&Method::DELETE, "/v1/portal/sessions/ps_2", "ps_1"));
        assert!(!ends_itself(&Method::POST, "/v1/portal/sessions/ps_1", "ps_1"));
        assert!(!ends_itself(&Method::DELETE, "/v1/portal/sessions/ps_1/x", "ps_1"));
    }

    #[tokio::test]
    async fn revoked_keys_are_forgotten() {
        let auth = authenticator();
        let until = Instant::now() + KEY_CACHE_TTL;
        let grant = |key_id: &str| Grant { tenant: "acme".into(), key_id: key_id.into(), access: Access::Key };
        auth.remember("h1".into(), Cached { key: Some(grant("key_1")), until });
        auth.remember("h2".into(), Cached { key: Some(grant("key_2")), until });
        auth.remember("h3".into(), Cached { key: None, until });
        auth.forget_key("key_1");
        assert!(!auth.lock().contains_key("h1"));
        assert!(auth.lock().contains_key("h2"));
        auth.forget_tenant("acme");
        assert_eq!(auth.lock().len(), 1);
    }
}
