//! Tenants and their API keys.
//!
//! An API key is `hk_` followed by 24 random bytes (base64). It is shown
//! once, when created; Redis holds only its SHA-256, under which the key
//! record is found when a caller presents it. Revoking deletes that record.
//! A portal session is the same kind of record with an expiry and a
//! read-only flag, under an `hk_ps_` token.

use std::collections::{BTreeMap, HashMap};

use herald_common::crypto::{constant_time_eq, hash_api_key, random_secret};
use herald_common::ids;
use herald_common::model::Millis;
use herald_common::model::{ApiKeyRecord, TenantRecord};
use herald_common::time_fmt::now_millis;

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::validate::{self, Page, Violations};

pub const API_KEY_PREFIX: &str = "hk_";
/// Portal session tokens are API keys to the gateway, told apart by this.
pub const PORTAL_TOKEN_PREFIX: &str = "hk_ps_";
pub const PORTAL_SESSION_DEFAULT_TTL: u32 = 3600;
pub const PORTAL_SESSION_MIN_TTL: u32 = 60;
pub const PORTAL_SESSION_MAX_TTL: u32 = 7 * 24 * 3600;
/// Tenant metadata holds compatibility-profile subscriber records, so it may
/// be a little larger than an endpoint's.
const MAX_TENANT_METADATA: usize = 64;

impl Registry {
    pub async fn create_tenant(&self, id: String, name: String) -> Result<TenantRecord> {
        let mut v = Violations::new();
        v.take(validate::tenant_id("id", &id));
        validate::text(&mut v, "name", &name, validate::MAX_NAME);
        v.finish()?;
        let tenant = TenantRecord {
            name: if name.trim().is_empty() { id.clone() } else { name },
            id,
            created_at: now_millis(),
            metadata: BTreeMap::new(),
        };
        if !self.store.create_tenant(&tenant).await? {
            return Err(RegistryError::AlreadyExists(format!("tenant {}", tenant.id)));
        }
        tracing::info!(tenant = %tenant.id, "tenant created");
        Ok(tenant)
    }

    pub async fn tenant(&self, id: &str) -> Result<TenantRecord> {
        validate::existing_tenant(id)?;
        self.store.tenant(id).await?.ok_or_else(|| RegistryError::not_found("tenant", id))
    }

    /// Fails with NOT_FOUND unless the tenant exists.
    pub(crate) async fn require_tenant(&self, id: &str) -> Result<()> {
        validate::existing_tenant(id)?;
        if self.store.tenant_exists(id).await? { Ok(()) } else { Err(RegistryError::not_found("tenant", id)) }
    }

    pub async fn update_tenant(
        &self,
        id: &str,
        name: String,
        metadata: HashMap<String, String>,
        replace_metadata: bool,
    ) -> Result<TenantRecord> {
        let mut v = Violations::new();
        validate::text(&mut v, "name", &name, validate::MAX_NAME);
        if replace_metadata {
            validate::metadata(&mut v, "metadata", &metadata, MAX_TENANT_METADATA);
        }
        v.finish()?;
        let mut tenant = self.tenant(id).await?;
        if !name.trim().is_empty() {
            tenant.name = name;
        }
        if replace_metadata {
            tenant.metadata = metadata.into_iter().collect();
        }
        if !self.store.replace_tenant(&tenant).await? {
            return Err(RegistryError::not_found("tenant", id));
        }
        Ok(tenant)
    }

    pub async fn list_tenants(&self, page: &Page) -> Result<(Vec<TenantRecord>, Option<String>)> {
        self.store.list_tenants(page).await
    }

    pub async fn delete_tenant(&self, id: &str) -> Result<()> {
        validate::existing_tenant(id)?;
        if !self.store.delete_tenant(id).await? {
            return Err(RegistryError::not_found("tenant", id));
        }
        tracing::info!(tenant = %id, "tenant deleted");
        Ok(())
    }

    /// Creates a key and answers it with its secret, which is not kept.
    pub async fn create_api_key(&self, tenant: &str, name: String) -> Result<(ApiKeyRecord, String)> {
        validate::existing_tenant(tenant)?;
        let mut v = Violations::new();
        validate::text(&mut v, "name", &name, validate::MAX_NAME);
        v.finish()?;
        let secret = random_secret(API_KEY_PREFIX);
        let record = ApiKeyRecord {
            id: ids::new_id(ids::API_KEY),
            tenant: tenant.to_owned(),
            name,
            key_hash: hash_api_key(&secret),
            created_at: now_millis(),
            expires_at: None,
            read_only: false,
        };
        if !self.store.create_api_key(&record).await? {
            return Err(RegistryError::not_found("tenant", tenant));
        }
        tracing::info!(tenant = %tenant, key = %record.id, "api key created");
        Ok((record, secret))
    }

    pub async fn list_api_keys(&self, tenant: &str, page: &Page) -> Result<(Vec<ApiKeyRecord>, Option<String>)> {
        self.require_tenant(tenant).await?;
        self.store.list_api_keys(tenant, page).await
    }

    pub async fn revoke_api_key(&self, tenant: &str, key_id: &str) -> Result<()> {
        validate::existing_tenant(tenant)?;
        validate::resource_id("api key", key_id)?;
        if !self.store.revoke_api_key(tenant, key_id).await? {
            return Err(RegistryError::not_found("api key", key_id));
        }
        tracing::info!(tenant = %tenant, key = %key_id, "api key revoked");
        Ok(())
    }

    /// Opens a portal session: a tenant key that expires after `ttl_seconds`
    /// (0 = [`PORTAL_SESSION_DEFAULT_TTL`]) and is answered with its token once.
    pub async fn create_portal_session(
        &self,
        tenant: &str,
        ttl_seconds: u32,
        read_only: bool,
    ) -> Result<(ApiKeyRecord, String)> {
        validate::existing_tenant(tenant)?;
        let ttl = match ttl_seconds {
            0 => PORTAL_SESSION_DEFAULT_TTL,
            s if (PORTAL_SESSION_MIN_TTL..=PORTAL_SESSION_MAX_TTL).contains(&s) => s,
            _ => {
                return Err(RegistryError::invalid(
                    "ttlSeconds",
                    format!("must be between {PORTAL_SESSION_MIN_TTL} and {PORTAL_SESSION_MAX_TTL}"),
                ));
            }
        };
        let token = random_secret(PORTAL_TOKEN_PREFIX);
        let now = now_millis();
        let ttl_ms = u64::from(ttl) * 1000;
        let record = ApiKeyRecord {
            id: ids::new_id(ids::PORTAL_SESSION),
            tenant: tenant.to_owned(),
            name: if read_only { "portal session (read-only)" } else { "portal session" }.to_owned(),
            key_hash: hash_api_key(&token),
            created_at: now,
            expires_at: Some(now + ttl_ms as Millis),
            read_only,
        };
        if !self.store.create_portal_session(&record, ttl_ms).await? {
            return Err(RegistryError::not_found("tenant", tenant));
        }
        tracing::info!(tenant = %tenant, session = %record.id, read_only, ttl, "portal session opened");
        Ok((record, token))
    }

    pub async fn revoke_portal_session(&self, tenant: &str, id: &str) -> Result<()> {
        validate::existing_tenant(tenant)?;
        validate::resource_id("portal session", id)?;
        match self.store.portal_session(id).await? {
            Some(session) if session.tenant == tenant => self.store.revoke_portal_session(&session).await?,
            _ => return Err(RegistryError::not_found("portal session", id)),
        }
        tracing::info!(tenant = %tenant, session = %id, "portal session revoked");
        Ok(())
    }

    /// Resolves a presented key. Unknown, malformed and revoked keys are
    /// answered alike, so a caller learns nothing about which it was.
    pub async fn authenticate_api_key(&self, secret: &str) -> Result<ApiKeyRecord> {
        const REFUSED: RegistryError = RegistryError::Unauthenticated("invalid api key");
        if !secret.starts_with(API_KEY_PREFIX) || secret.len() > 256 {
            return Err(REFUSED);
        }
        let hash = hash_api_key(secret);
        match self.store.api_key(&hash).await? {
            Some(record) if constant_time_eq(&record.key_hash, &hash) => {
                // A session outlives neither its expiry (Redis expires it too,
                // this covers clock skew) nor its tenant.
                if record.expires_at.is_some_and(|at| at <= now_millis())
                    || (record.expires_at.is_some() && self.store.tenant(&record.tenant).await?.is_none())
                {
                    return Err(REFUSED);
                }
                Ok(record)
            }
            _ => Err(REFUSED),
        }
    }
}
