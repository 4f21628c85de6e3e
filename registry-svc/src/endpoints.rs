//! Endpoints: where a tenant's events are delivered, and how.
//!
//! Every secret an endpoint holds (auth password, bearer token, OAuth client
//! secret, signing secrets) is sealed with `HERALD_SECRET_KEY` before it is
//! stored; answers carry none of them except the signing secret, in the
//! create answer and the dedicated secret calls. A rotated-out signing
//! secret keeps signing (alongside the new one) for 24 hours so receivers
//! can switch over; expired ones are dropped whenever the endpoint is written.
//!
//! Writes are compare-and-set against the JSON that was read, so an update
//! racing the dispatcher's `DisableEndpoint` cannot silently undo it.

use std::collections::BTreeMap;

use herald_common::crypto::{Binding, random_secret};
use herald_common::endpoint_secrets as sealing;
use herald_common::ids;
use herald_common::model::{ClientAuth, EndpointRecord, EndpointStatus, Millis, Sealed, SigningSecret, StoredAuth};
use herald_common::time_fmt::now_millis;
use herald_proto::convert::{format_from_wire, ordering_from_wire};
use herald_proto::v1::endpoint_auth::Kind;
use herald_proto::v1::{self, EndpointAuth, EndpointSpec};

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::store::Created;
use crate::validate::{self, Page, Violations};

mod signing;

pub const SIGNING_SECRET_PREFIX: &str = "whsec_";
/// How long a rotated-out signing secret keeps signing.
pub const ROTATION_OVERLAP_MS: Millis = 24 * 3_600_000;
/// Most signing secrets kept at once (the current one and recent rotations).
const MAX_SIGNING_SECRETS: usize = 5;
const MAX_SECRET_LEN: usize = 4096;
const MAX_REASON: usize = 256;
const WRITE_ATTEMPTS: usize = 3;
pub const MAX_IN_FLIGHT: u32 = 1000;
pub const MAX_BATCH_SIZE: u32 = 1000;

/// The `EndpointSpec` fields `UpdateEndpoint` can name, in snake_case.
const SPEC_FIELDS: &[&str] = &[
    "url",
    "description",
    "auth",
    "format",
    "template",
    "headers",
    "rate_limit_per_second",
    "max_in_flight",
    "ordering",
    "metadata",
    "max_batch_size",
    "handshake",
    "retry",
];

/// Accepts snake_case (the proto's) and camelCase (the REST API's) names.
fn spec_field(name: &str) -> Option<&'static str> {
    let snake: String = name
        .chars()
        .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
        .collect();
    SPEC_FIELDS.iter().copied().find(|f| *f == snake)
}

/// The camelCase name a field error is reported under.
fn camel(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Drops expired secrets, keeps the current one first, bounds the list.
fn prune_secrets(secrets: &mut Vec<SigningSecret>, now: Millis) {
    secrets.retain(|s| s.expires_at.is_none_or(|at| at > now));
    secrets.truncate(MAX_SIGNING_SECRETS);
}

fn new_signing_secret(registry: &Registry, id: &str) -> (String, SigningSecret) {
    let secret = random_secret(SIGNING_SECRET_PREFIX);
    let sealed = registry.config.secrets.seal(&secret, sealing::binding(id, sealing::SIGNING_SECRET));
    (secret, SigningSecret { secret: sealed, expires_at: None })
}

impl Registry {
    /// Validates a URL against the endpoint URL policy (with DNS).
    async fn check_url(&self, v: &mut Violations, field: &str, url: &str) {
        if url.trim().is_empty() {
            v.add(field, "is required");
        } else if let Err(rejection) = self.config.url_policy.check_and_resolve(url.trim()).await {
            v.add(field, rejection.to_string());
        }
    }

    fn seal_secret(&self, v: &mut Violations, at: Binding<'_>, plain: &str, keep: Option<&Sealed>) -> Option<Sealed> {
        // The slot is the field's name in the API.
        let field = at.slot;
        if plain.is_empty() {
            if keep.is_none() {
                v.add(field, "is required");
            }
            keep.cloned()
        } else if plain.len() > MAX_SECRET_LEN {
            v.add(field, format!("must be at most {MAX_SECRET_LEN} characters"));
            None
        } else {
            Some(self.config.secrets.seal(plain, at))
        }
    }

    /// Turns wire auth into stored auth, sealing secrets. An empty secret in
    /// an update of the same auth type keeps the stored one, because answers
    /// never show secrets and a client echoing an answer back sends them empty.
    async fn stored_auth(
        &self,
        v: &mut Violations,
        id: &str,
        wire: Option<EndpointAuth>,
        existing: &StoredAuth,
    ) -> StoredAuth {
        let Some(kind) = wire.and_then(|a| a.kind) else { return StoredAuth::None };
        match kind {
            Kind::Basic(basic) => {
                let keep = match existing {
                    StoredAuth::Basic { password, .. } => Some(password),
                    _ => None,
                };
                v.check(!basic.username.is_empty(), "auth.username", "is required");
                validate::text(v, "auth.username", &basic.username, validate::MAX_NAME);
                v.check(!basic.username.contains(':'), "auth.username", "may not contain ':'");
                let password = self.seal_secret(v, sealing::binding(id, sealing::PASSWORD), &basic.password, keep);
                StoredAuth::Basic { username: basic.username, password: password.unwrap_or(Sealed(String::new())) }
            }
            Kind::Bearer(bearer) => {
                let keep = match existing {
                    StoredAuth::Bearer { token } => Some(token),
                    _ => None,
                };
                let token = self.seal_secret(v, sealing::binding(id, sealing::TOKEN), &bearer.token, keep);
                StoredAuth::Bearer { token: token.unwrap_or(Sealed(String::new())) }
            }
            Kind::Oauth2ClientCredentials(oauth) => {
                let keep = match existing {
                    StoredAuth::Oauth2ClientCredentials { client_secret, .. } => Some(client_secret),
                    _ => None,
                };
                self.check_url(v, "auth.tokenUrl", &oauth.token_url).await;
                v.check(!oauth.client_id.is_empty(), "auth.clientId", "is required");
                validate::text(v, "auth.clientId", &oauth.client_id, validate::MAX_NAME);
                validate::text(v, "auth.scope", &oauth.scope, validate::MAX_DESCRIPTION);
                validate::text(v, "auth.audience", &oauth.audience, validate::MAX_DESCRIPTION);
                let client_secret =
                    self.seal_secret(v, sealing::binding(id, sealing::CLIENT_SECRET), &oauth.client_secret, keep);
                let client_auth = match oauth.client_auth.as_str() {
                    "" | "basic" => ClientAuth::Basic,
                    "post" => ClientAuth::Post,
                    _ => {
                        v.add("auth.clientAuth", "must be basic or post");
                        ClientAuth::Basic
                    }
                };
                StoredAuth::Oauth2ClientCredentials {
                    token_url: oauth.token_url.trim().to_owned(),
                    client_id: oauth.client_id,
                    client_secret: client_secret.unwrap_or(Sealed(String::new())),
                    scope: (!oauth.scope.is_empty()).then_some(oauth.scope),
                    audience: (!oauth.audience.is_empty()).then_some(oauth.audience),
                    client_auth,
                }
            }
        }
    }

    /// Validates the named fields of `spec` and writes them into `record`,
    /// then checks the rules that span fields.
    async fn apply_spec(&self, record: &mut EndpointRecord, spec: EndpointSpec, fields: &[&'static str]) -> Result<()> {
        let mut v = Violations::new();
        let EndpointSpec {
            url,
            description,
            auth,
            format,
            template,
            headers,
            rate_limit_per_second,
            max_in_flight,
            ordering,
            metadata,
            max_batch_size,
            handshake,
            retry,
        } = spec;
        let named = |f: &str| fields.contains(&f);
        if named("url") {
            self.check_url(&mut v, "url", &url).await;
            record.url = url.trim().to_owned();
        }
        if named("description") {
            validate::text(&mut v, "description", &description, validate::MAX_DESCRIPTION);
            record.description = description;
        }
        if named("auth") {
            record.auth = self.stored_auth(&mut v, &record.id, auth, &record.auth).await;
        }
        if named("format") {
            match v1::EndpointFormat::try_from(format) {
                Ok(f) => record.format = format_from_wire(f),
                Err(_) => v.add("format", "is not a known format"),
            }
        }
        if named("template") {
            record.template = v.take(validate::json_object("template", &template)).flatten().map(Into::into);
        }
        if named("headers") {
            validate::headers(&mut v, &headers);
            record.headers = sealing::seal_headers(&self.config.secrets, &record.id, headers);
        }
        if named("rate_limit_per_second") {
            v.check(rate_limit_per_second != Some(0), "rateLimitPerSecond", "must be at least 1");
            record.rate_limit_per_second = rate_limit_per_second;
        }
        if named("max_in_flight") {
            v.check(
                max_in_flight.is_none_or(|n| (1..=MAX_IN_FLIGHT).contains(&n)),
                "maxInFlight",
                format!("must be between 1 and {MAX_IN_FLIGHT}"),
            );
            record.max_in_flight = max_in_flight;
        }
        if named("ordering") {
            match v1::EndpointOrdering::try_from(ordering) {
                Ok(o) => record.ordering = ordering_from_wire(o),
                Err(_) => v.add("ordering", "must be none or fifo"),
            }
        }
        if named("metadata") {
            validate::metadata(&mut v, "metadata", &metadata, validate::MAX_METADATA);
            record.metadata = metadata.into_iter().collect();
        }
        if named("max_batch_size") {
            v.check(
                max_batch_size.is_none_or(|n| (1..=MAX_BATCH_SIZE).contains(&n)),
                "maxBatchSize",
                format!("must be between 1 and {MAX_BATCH_SIZE}"),
            );
            record.max_batch_size = max_batch_size;
        }
        if named("handshake") {
            record.handshake = handshake;
        }
        if named("retry") {
            record.retry = crate::retry_policy::check(&mut v, retry);
            if let Some(policy) = &record.retry {
                let c = &self.config;
                crate::retry_policy::check_horizon(
                    &mut v,
                    policy,
                    &c.retry_schedule,
                    c.event_retention,
                    c.retry_after_max,
                );
            }
        }
        if record.format == herald_common::model::Format::Template && record.template.is_none() {
            v.add("template", "is required when format is template (a JSON object)");
        }
        v.finish()
    }

    /// Loads an endpoint of `tenant`; another tenant's is answered NOT_FOUND.
    pub(crate) async fn owned_endpoint(&self, tenant: &str, id: &str) -> Result<(EndpointRecord, String)> {
        validate::existing_tenant(tenant)?;
        validate::resource_id("endpoint", id)?;
        match self.store.endpoint(id).await? {
            Some((record, raw)) if record.tenant == tenant => Ok((record, raw)),
            _ => Err(RegistryError::not_found("endpoint", id)),
        }
    }

    pub async fn create_endpoint(
        &self,
        tenant: &str,
        id: String,
        spec: Option<EndpointSpec>,
    ) -> Result<(EndpointRecord, String)> {
        validate::existing_tenant(tenant)?;
        let id = if id.is_empty() {
            ids::new_id(ids::ENDPOINT)
        } else if ids::is_valid_external_id(&id, 128) {
            id
        } else {
            return Err(RegistryError::invalid("id", "must be 1 to 128 letters, digits, '-', '_', '.' or '~'"));
        };
        let spec = spec.ok_or_else(|| RegistryError::invalid("url", "is required"))?;
        let now = now_millis();
        let (secret, signing) = new_signing_secret(self, &id);
        let mut record = EndpointRecord {
            id,
            tenant: tenant.to_owned(),
            url: String::new(),
            description: String::new(),
            auth: StoredAuth::None,
            format: Default::default(),
            template: None,
            headers: BTreeMap::new(),
            rate_limit_per_second: None,
            max_in_flight: None,
            ordering: Default::default(),
            metadata: BTreeMap::new(),
            max_batch_size: None,
            handshake: false,
            retry: None,
            status: EndpointStatus::Active,
            disabled_reason: None,
            signing_secrets: vec![signing],
            created_at: now,
            updated_at: now,
            generation: ids::new_id(ids::GENERATION),
            activated_at: None,
        };
        self.apply_spec(&mut record, spec, SPEC_FIELDS).await?;
        let quota = self.config.max_endpoints_per_tenant;
        match self.store.create_endpoint(&record, quota).await? {
            Created::Yes => {
                tracing::info!(tenant = %tenant, endpoint = %record.id, "endpoint created");
                Ok((record, secret))
            }
            Created::Exists => Err(RegistryError::AlreadyExists(format!("endpoint {}", record.id))),
            Created::NoParent => Err(RegistryError::not_found("tenant", tenant)),
            Created::OverQuota => {
                Err(RegistryError::quota(tenant, quota, "endpoints", "HERALD_MAX_ENDPOINTS_PER_TENANT"))
            }
        }
    }

    /// The wire form of an endpoint, its header values opened.
    pub fn endpoint_answer(&self, record: &EndpointRecord) -> Result<v1::Endpoint> {
        let headers = sealing::open_headers(&self.config.secrets, record)?;
        Ok(herald_proto::convert::endpoint_to_wire(record, headers))
    }

    pub async fn endpoint(&self, tenant: &str, id: &str) -> Result<EndpointRecord> {
        Ok(self.owned_endpoint(tenant, id).await?.0)
    }

    pub async fn list_endpoints(&self, tenant: &str, page: &Page) -> Result<(Vec<EndpointRecord>, Option<String>)> {
        self.require_tenant(tenant).await?;
        self.store.list_endpoints(tenant, page).await
    }

    /// Replaces the `fields` of the endpoint's spec that are named.
    pub async fn update_endpoint(
        &self,
        tenant: &str,
        id: &str,
        spec: Option<EndpointSpec>,
        fields: Vec<String>,
    ) -> Result<EndpointRecord> {
        let mut named = Vec::with_capacity(fields.len());
        let mut v = Violations::new();
        for field in &fields {
            match spec_field(field) {
                Some(f) => named.push(f),
                None => v.add("fields", format!("{field} is not an endpoint field")),
            }
        }
        v.finish()?;
        let spec = spec.unwrap_or_default();
        for _ in 0..WRITE_ATTEMPTS {
            let (mut record, raw) = self.owned_endpoint(tenant, id).await?;
            self.apply_spec(&mut record, spec.clone(), &named).await?;
            let now = now_millis();
            record.updated_at = now.max(record.updated_at);
            prune_secrets(&mut record.signing_secrets, now);
            sealing::reseal(&self.config.secrets, &mut record);
            if self.store.swap_endpoint(&record, &raw).await? {
                tracing::info!(tenant = %tenant, endpoint = %id, fields = ?named.iter().map(|f| camel(f)).collect::<Vec<_>>(), "endpoint updated");
                return Ok(record);
            }
        }
        Err(RegistryError::Conflict(format!("endpoint {id}")))
    }

    /// Reads, changes and writes back an endpoint, retrying when another
    /// writer changed it in between.
    async fn modify_endpoint<T>(
        &self,
        tenant: &str,
        id: &str,
        change: impl Fn(&mut EndpointRecord, Millis) -> T,
    ) -> Result<(EndpointRecord, T)> {
        for _ in 0..WRITE_ATTEMPTS {
            let (mut record, raw) = self.owned_endpoint(tenant, id).await?;
            let now = now_millis();
            let out = change(&mut record, now);
            record.updated_at = now.max(record.updated_at);
            prune_secrets(&mut record.signing_secrets, now);
            sealing::reseal(&self.config.secrets, &mut record);
            if self.store.swap_endpoint(&record, &raw).await? {
                return Ok((record, out));
            }
        }
        Err(RegistryError::Conflict(format!("endpoint {id}")))
    }

    pub async fn set_endpoint_status(
        &self,
        tenant: &str,
        id: &str,
        status: EndpointStatus,
        reason: Option<String>,
    ) -> Result<EndpointRecord> {
        if let Some(reason) = &reason {
            let mut v = Violations::new();
            validate::text(&mut v, "reason", reason, MAX_REASON);
            v.finish()?;
        }
        let (record, ()) = self
            .modify_endpoint(tenant, id, |record, now| {
                if status == EndpointStatus::Active && record.status != EndpointStatus::Active {
                    record.activated_at = Some(now);
                }
                record.status = status;
                record.disabled_reason = match status {
                    EndpointStatus::Disabled => {
                        Some(reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| "disabled".to_owned()))
                    }
                    EndpointStatus::Active | EndpointStatus::Deactivated => None,
                };
            })
            .await?;
        tracing::info!(tenant = %tenant, endpoint = %id, status = ?status, reason = ?record.disabled_reason, "endpoint status changed");
        Ok(record)
    }

    pub async fn delete_endpoint(&self, tenant: &str, id: &str) -> Result<()> {
        let (record, _) = self.owned_endpoint(tenant, id).await?;
        self.store.delete_endpoint(&record).await?;
        tracing::info!(tenant = %tenant, endpoint = %id, "endpoint deleted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_field_names_accept_both_spellings() {
        assert_eq!(spec_field("rate_limit_per_second"), Some("rate_limit_per_second"));
        assert_eq!(spec_field("rateLimitPerSecond"), Some("rate_limit_per_second"));
        assert_eq!(spec_field("url"), Some("url"));
        assert_eq!(spec_field("secret"), None);
        assert_eq!(camel("max_in_flight"), "maxInFlight");
    }

    #[test]
    fn pruning_drops_expired_and_bounds() {
        let s = |e: Option<Millis>| SigningSecret { secret: Sealed("k:x".into()), expires_at: e };
        let mut secrets = vec![s(None), s(Some(50)), s(Some(200))];
        prune_secrets(&mut secrets, 100);
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[1].expires_at, Some(200));
        let mut many = vec![s(None); 9];
        prune_secrets(&mut many, 0);
        assert_eq!(many.len(), MAX_SIGNING_SECRETS);
    }
}
