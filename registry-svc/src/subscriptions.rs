//! Subscriptions: which events of a tenant reach which endpoint.
//!
//! A subscription names event types (or exactly `["*"]`) and an optional
//! filter. It is indexed in one set per (tenant, event type) — `*` is a set
//! of its own — which is all publishing reads to route an event.

use std::collections::{BTreeMap, HashMap};

use herald_common::ids;
use herald_common::model::SubscriptionRecord;
use herald_common::time_fmt::now_millis;

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::store::Created;
use crate::validate::{self, Page, Violations};

pub const WILDCARD: &str = "*";
/// Compare-and-set rounds an update tries before giving up.
const UPDATE_ATTEMPTS: usize = 3;

impl Registry {
    pub async fn create_subscription(
        &self,
        tenant: &str,
        endpoint_id: String,
        event_types: Vec<String>,
        filter: &[u8],
        metadata: HashMap<String, String>,
    ) -> Result<SubscriptionRecord> {
        validate::existing_tenant(tenant)?;
        let mut v = Violations::new();
        let filter = v.take(validate::filter(filter)).flatten();
        validate::metadata(&mut v, "metadata", &metadata, validate::MAX_METADATA);
        let types = self.event_types_of(&mut v, event_types).await?;
        if endpoint_id.is_empty() {
            v.add("endpointId", "is required");
        } else {
            let owned = ids::is_valid_external_id(&endpoint_id, 128)
                && self.store.endpoint(&endpoint_id).await?.is_some_and(|(e, _)| e.tenant == tenant);
            v.check(owned, "endpointId", format!("endpoint {endpoint_id} not found"));
        }
        v.finish()?;
        let record = SubscriptionRecord {
            id: ids::new_id(ids::SUBSCRIPTION),
            tenant: tenant.to_owned(),
            endpoint_id,
            event_types: types,
            filter,
            metadata: metadata.into_iter().collect::<BTreeMap<_, _>>(),
            created_at: now_millis(),
        };
        let quota = self.config.max_subscriptions_per_tenant;
        match self.store.create_subscription(&record, quota).await? {
            Created::Yes => {}
            Created::OverQuota => {
                return Err(RegistryError::quota(
                    tenant,
                    quota,
                    "subscriptions",
                    "HERALD_MAX_SUBSCRIPTIONS_PER_TENANT",
                ));
            }
            // The endpoint was deleted between the check and the write.
            Created::NoParent | Created::Exists => {
                return Err(RegistryError::invalid("endpointId", format!("endpoint {} not found", record.endpoint_id)));
            }
        }
        tracing::info!(tenant = %tenant, subscription = %record.id, endpoint = %record.endpoint_id, "subscription created");
        Ok(record)
    }

    /// Deduplicated event type names, each known (or exactly `["*"]`).
    async fn event_types_of(&self, v: &mut Violations, event_types: Vec<String>) -> Result<Vec<String>> {
        let mut types: Vec<String> = Vec::with_capacity(event_types.len());
        for t in event_types {
            if !types.contains(&t) {
                types.push(t);
            }
        }
        if types.is_empty() {
            v.add("eventTypes", "name at least one event type, or \"*\"");
        } else if types.iter().any(|t| t == WILDCARD) {
            v.check(types.len() == 1, "eventTypes", "\"*\" must be the only entry");
        } else if types.len() > validate::MAX_SUBSCRIPTION_TYPES {
            v.add("eventTypes", format!("at most {} event types", validate::MAX_SUBSCRIPTION_TYPES));
        } else if let Some(bad) = types.iter().find(|t| !validate::is_event_type_name(t)) {
            v.add("eventTypes", format!("unknown event type {bad}"));
        } else {
            let exists = self.store.event_types_exist(&types).await?;
            for (name, known) in types.iter().zip(exists) {
                v.check(known, "eventTypes", format!("unknown event type {name}"));
            }
        }
        Ok(types)
    }

    /// Replaces the named fields (`event_types`, `filter`; camelCase
    /// accepted) of a subscription. The write is compare-and-set against the
    /// record read and bumps the routing generation, so publishers route by
    /// the new fields from their next event on.
    pub async fn update_subscription(
        &self,
        tenant: &str,
        id: &str,
        event_types: Vec<String>,
        filter: &[u8],
        fields: &[String],
    ) -> Result<SubscriptionRecord> {
        self.subscription(tenant, id).await?;
        let mut v = Violations::new();
        let (mut types_named, mut filter_named) = (false, false);
        for field in fields {
            match field.as_str() {
                "event_types" | "eventTypes" => types_named = true,
                "filter" => filter_named = true,
                other => v.add("fields", format!("{other} cannot be updated (event_types, filter)")),
            }
        }
        let filter = if filter_named { v.take(validate::filter(filter)) } else { None };
        let types = if types_named { Some(self.event_types_of(&mut v, event_types).await?) } else { None };
        v.finish()?;
        for _ in 0..UPDATE_ATTEMPTS {
            let Some((current, raw)) = self.store.subscription_raw(id).await?.filter(|(s, _)| s.tenant == tenant)
            else {
                return Err(RegistryError::not_found("subscription", id));
            };
            let mut next = current.clone();
            if let Some(types) = &types {
                next.event_types.clone_from(types);
            }
            if let Some(filter) = &filter {
                next.filter.clone_from(filter);
            }
            if self.store.swap_subscription(&current, &next, &raw).await? {
                tracing::info!(tenant = %tenant, subscription = %id, "subscription updated");
                return Ok(next);
            }
        }
        Err(RegistryError::Conflict(format!("subscription {id} changed while it was updated; try again")))
    }

    pub async fn subscription(&self, tenant: &str, id: &str) -> Result<SubscriptionRecord> {
        validate::existing_tenant(tenant)?;
        validate::resource_id("subscription", id)?;
        match self.store.subscription(id).await? {
            Some(sub) if sub.tenant == tenant => Ok(sub),
            _ => Err(RegistryError::not_found("subscription", id)),
        }
    }

    /// Lists a tenant's subscriptions, or one endpoint's.
    pub async fn list_subscriptions(
        &self,
        tenant: &str,
        endpoint_id: &str,
        page: &Page,
    ) -> Result<(Vec<SubscriptionRecord>, Option<String>)> {
        if endpoint_id.is_empty() {
            self.require_tenant(tenant).await?;
            self.store.list_subscriptions(tenant, None, page).await
        } else {
            // Also proves the endpoint is this tenant's.
            self.endpoint(tenant, endpoint_id).await?;
            self.store.list_subscriptions(tenant, Some(endpoint_id), page).await
        }
    }

    pub async fn delete_subscription(&self, tenant: &str, id: &str) -> Result<()> {
        let sub = self.subscription(tenant, id).await?;
        self.store.delete_subscription(&sub).await?;
        tracing::info!(tenant = %tenant, subscription = %id, "subscription deleted");
        Ok(())
    }
}
