//! Every Redis key Herald uses, spelled in one place.
//!
//! All keys start with the configured prefix (`HERALD_REDIS_PREFIX`, default
//! `herald`), which lets several installations or tests share one Redis.
//! On a Redis Cluster the prefix is given as a hash tag (`{herald}`, by
//! [`crate::config::HeraldConfig::keys`]), so every key of an installation
//! shares one slot and multi-key atomic steps never cross slots. Partition
//! keys also carry a `{p<n>}` tag, which a Redis uses only when the prefix
//! is not a tag: it keeps a partition's stream, retry set and lease together
//! for a layout that spreads partitions over slots.
//!
//! Ownership: the registry writes the registry families (tenant, key, event
//! type, endpoint, subscription, event payload, idempotency, partition
//! streams on publish, changes); the dispatcher writes the delivery families
//! (delivery, attempts, retry sets, leases, endpoint health) and acknowledges
//! stream entries.

/// The consumer group every dispatcher reads partition streams through.
pub const CONSUMER_GROUP: &str = "dispatch";

#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Keys { prefix: prefix.into() }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = String::with_capacity(self.prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
        key.push_str(&self.prefix);
        for part in parts {
            key.push(':');
            key.push_str(part);
        }
        key
    }

    // --- registry families ---

    pub fn tenant(&self, id: &str) -> String {
        self.key(&["tenant", id])
    }
    /// Sorted set of tenant ids (score 0, read lexicographically).
    pub fn tenants(&self) -> String {
        self.key(&["tenants"])
    }
    /// API key record by SHA-256 hex of the key.
    pub fn api_key(&self, key_hash: &str) -> String {
        self.key(&["apikey", key_hash])
    }
    /// Hash of key id -> key hash, for listing and revoking a tenant's keys.
    pub fn tenant_api_keys(&self, tenant: &str) -> String {
        self.key(&["tenant", tenant, "apikeys"])
    }
    pub fn event_type(&self, name: &str) -> String {
        self.key(&["etype", name])
    }
    pub fn event_types(&self) -> String {
        self.key(&["etypes"])
    }
    /// Integer code -> event type name.
    pub fn event_type_code(&self, code: i64) -> String {
        self.key(&["etype-code", &code.to_string()])
    }
    pub fn endpoint(&self, id: &str) -> String {
        self.key(&["ep", id])
    }
    pub fn tenant_endpoints(&self, tenant: &str) -> String {
        self.key(&["tenant", tenant, "eps"])
    }
    pub fn subscription(&self, id: &str) -> String {
        self.key(&["sub", id])
    }
    pub fn tenant_subscriptions(&self, tenant: &str) -> String {
        self.key(&["tenant", tenant, "subs"])
    }
    pub fn endpoint_subscriptions(&self, endpoint_id: &str) -> String {
        self.key(&["ep", endpoint_id, "subs"])
    }
    /// Set of subscription ids of a tenant that name `event_type` (or `*`).
    pub fn subscription_index(&self, tenant: &str, event_type: &str) -> String {
        self.key(&["tenant", tenant, "route", event_type])
    }
    /// Bumped on every subscription or endpoint change of a tenant, so
    /// publishers can cache routing tables and revalidate with one GET.
    pub fn routing_generation(&self, tenant: &str) -> String {
        self.key(&["tenant", tenant, "routing-gen"])
    }
    pub fn event(&self, tenant: &str, event_id: &str) -> String {
        self.key(&["evt", tenant, event_id])
    }
    /// Stream of registry changes that dispatchers follow.
    pub fn changes(&self) -> String {
        self.key(&["changes"])
    }

    // --- partition families ---

    pub fn partition_stream(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:jobs", self.prefix)
    }
    /// Sorted set of jobs waiting for a retry, scored by due time in ms.
    pub fn retry_set(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:retry", self.prefix)
    }
    /// Holds the id of the dispatcher that owns the partition, with a TTL.
    pub fn partition_lease(&self, partition: u32) -> String {
        format!("{}:{{p{partition}}}:lease", self.prefix)
    }

    // --- delivery families (dispatcher only) ---

    /// Hash of the deliveries created in hour `hour` (ms since the epoch /
    /// 3,600,000): field `<delivery id>` holds its state, `<id>.<n>` an
    /// earlier attempt. One key per hour rather than per delivery, so a
    /// retained delivery costs its values, not a key, a TTL and a
    /// hash of its own.
    pub fn delivery_bucket(&self, hour: i64) -> String {
        self.key(&["dlv", &hour.to_string()])
    }
    /// The one listing index of deliveries: a tenant's delivery ids, all
    /// with score 0, read lexicographically (ULIDs sort by creation).
    pub fn tenant_deliveries(&self, tenant: &str) -> String {
        self.key(&["tenant", tenant, "dlvs"])
    }
    /// Sorted set of live dispatcher ids scored by their last heartbeat in ms,
    /// from which each dispatcher works out its fair share of partitions.
    pub fn dispatchers(&self) -> String {
        self.key(&["dispatchers"])
    }
    /// Live delivery health of an endpoint (circuit, failures, token error).
    pub fn endpoint_health(&self, endpoint_id: &str) -> String {
        self.key(&["ep", endpoint_id, "health"])
    }
}

/// Stable partition of an endpoint: FNV-1a of its id, modulo the partition
/// count. Stable across versions and processes, which leases depend on.
pub fn partition_of(endpoint_id: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in endpoint_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_keys_share_a_hash_tag() {
        let keys = Keys::new("t1");
        assert_eq!(keys.partition_stream(3), "t1:{p3}:jobs");
        assert_eq!(keys.retry_set(3), "t1:{p3}:retry");
        assert_eq!(keys.partition_lease(3), "t1:{p3}:lease");
        assert_eq!(keys.endpoint("ep_1"), "t1:ep:ep_1");
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_of("ep_abc", 16), partition_of("ep_abc", 16));
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[partition_of(&format!("ep_{i}"), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
