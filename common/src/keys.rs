//! Every Redis key Herald uses, spelled in one place.
//!
//! All keys start with the configured prefix (`HERALD_REDIS_PREFIX`, default
//! `herald`), which lets several installations or tests share one Redis.
//!
//! Two layouts, chosen by how Redis runs ([`Keys::new`], [`Keys::sharded`]):
//! - **one Redis**: partition keys carry a `{p<n>}` tag (which a single
//!   Redis ignores), everything else sits under the plain prefix, and
//!   delivery records are one family for the whole
//!   installation (one *record shard*);
//! - **Redis Cluster**: registry keys sit under the prefix as a hash tag
//!   (`{herald}:…`, one slot, so the registry's scripts never cross slots),
//!   and everything a partition owns carries that partition's tag: its
//!   stream, retry set and lease, the delivery records of its deliveries (one record shard per partition), its endpoints'
//!   health, its publish markers. An event's payload carries the tag of its
//!   *home* partition (a hash of tenant and id). Partitions, and so the
//!   work, spread over every master.
//!
//! Ownership: the registry writes the registry families (tenant, key, event
//! type, endpoint, subscription, event payload, partition streams and
//! publish markers on publish, changes); the dispatcher writes the delivery
//! families (deliveries, retry sets, leases, endpoint
//! health) and acknowledges stream entries.

/// The consumer group every dispatcher reads partition streams through.
pub const CONSUMER_GROUP: &str = "dispatch";

#[derive(Clone, Debug)]
pub struct Keys {
    /// The plain prefix: partition families start with it.
    prefix: String,
    /// What registry families start with: the prefix, or on a cluster the
    /// prefix as a hash tag.
    registry: String,
    /// Records spread over one shard per partition (a cluster).
    sharded: bool,
    partitions: u32,
}

impl Keys {
    /// The layout for one Redis.
    pub fn new(prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        Keys { registry: prefix.clone(), prefix, sharded: false, partitions: 1 }
    }

    /// The layout for a Redis Cluster of `partitions` partitions.
    pub fn sharded(prefix: impl Into<String>, partitions: u32) -> Self {
        let prefix = prefix.into();
        Keys { registry: format!("{{{prefix}}}"), prefix, sharded: true, partitions: partitions.max(1) }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether records spread over one shard per partition.
    pub fn is_sharded(&self) -> bool {
        self.sharded
    }

    fn key(&self, parts: &[&str]) -> String {
        join(&self.registry, parts)
    }

    fn partition_key(&self, partition: u32, parts: &[&str]) -> String {
        use std::fmt::Write;
        let mut key = String::with_capacity(self.prefix.len() + 8 + parts.iter().map(|p| p.len() + 1).sum::<usize>());
        key.push_str(&self.prefix);
        // Writing to a String cannot fail.
        let _ = write!(key, ":{{p{partition}}}");
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
    /// A tenant's event log: a stream with one entry per published event
    /// ([`crate::event_index`]), trimmed to the event retention.
    pub fn tenant_events(&self, tenant: &str) -> String {
        self.key(&["tenant", tenant, "events"])
    }
    /// A portal session's key hash, by session id (expires with the session).
    pub fn portal_session(&self, id: &str) -> String {
        self.key(&["portal", id])
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
    /// A stored event (see `stored_event`). On a cluster it lives with its
    /// home partition.
    pub fn event(&self, tenant: &str, event_id: &str) -> String {
        if self.sharded {
            self.partition_key(self.event_home(tenant, event_id), &["evt", tenant, event_id])
        } else {
            self.key(&["evt", tenant, event_id])
        }
    }
    /// The partition whose slot holds a stored event on a cluster (`0` on
    /// one Redis): events of one home can be read with one `MGET`.
    pub fn event_home(&self, tenant: &str, event_id: &str) -> u32 {
        if self.sharded { partition_of_parts(&[tenant, "/", event_id], self.partitions) } else { 0 }
    }
    /// Marks that a publish call's partition step for `partition` ran, so
    /// the jobs it appended for each new event of the call are in that
    /// stream, for the idempotency window. On a cluster a publish is one
    /// step per partition, and a publish of the same id again (after a
    /// failure between steps) redoes only the missing ones: one mark per
    /// call and partition, not per event.
    pub fn publish_call_marker(&self, partition: u32, call: u64) -> String {
        self.partition_key(partition, &["call", &call.to_string()])
    }
    /// The events of a publish call whose jobs for `partition` a later
    /// publish of the same id appended before the call's own step ran
    /// (members `<tenant>/<event id>`); that step skips them.
    pub fn publish_call_takeovers(&self, partition: u32, call: u64) -> String {
        self.partition_key(partition, &["call", &call.to_string(), "took"])
    }
    /// Marks that the jobs of an event stored without a publish call (by an
    /// earlier version) are in partition `partition`'s stream, for the
    /// idempotency window.
    pub fn publish_marker(&self, partition: u32, tenant: &str, event_id: &str) -> String {
        self.partition_key(partition, &["pub", tenant, event_id])
    }
    /// Stream of registry changes that dispatchers follow.
    pub fn changes(&self) -> String {
        self.key(&["changes"])
    }

    // --- partition families ---

    pub fn partition_stream(&self, partition: u32) -> String {
        self.partition_key(partition, &["jobs"])
    }
    /// Sorted set of jobs waiting for a retry, scored by due time in ms.
    pub fn retry_set(&self, partition: u32) -> String {
        self.partition_key(partition, &["retry"])
    }
    /// Holds the id of the dispatcher that owns the partition, with a TTL.
    pub fn partition_lease(&self, partition: u32) -> String {
        self.partition_key(partition, &["lease"])
    }

    /// Jobs of endpoint `endpoint_id` parked while its actor's queue is
    /// full (a list of retry-set members), fed back as the queue drains.
    pub fn park_list(&self, partition: u32, endpoint_id: &str) -> String {
        self.partition_key(partition, &["park", endpoint_id])
    }
    /// The endpoints of partition `partition` with parked jobs.
    pub fn parked_endpoints(&self, partition: u32) -> String {
        self.partition_key(partition, &["parked"])
    }

    // --- delivery families (dispatcher only) ---

    /// How many record shards there are: one per partition on a cluster,
    /// else one.
    pub fn record_shards(&self) -> u32 {
        if self.sharded { self.partitions } else { 1 }
    }
    /// The record shard of a partition's deliveries.
    pub fn record_shard(&self, partition: u32) -> u32 {
        if self.sharded { partition } else { 0 }
    }
    /// The record shard of an endpoint's deliveries and health.
    pub fn endpoint_shard(&self, endpoint_id: &str) -> u32 {
        if self.sharded { partition_of(endpoint_id, self.partitions) } else { 0 }
    }
    fn shard_key(&self, shard: u32, parts: &[&str]) -> String {
        if self.sharded { self.partition_key(shard, parts) } else { self.key(parts) }
    }

    /// Hash of a record shard's deliveries created in hour `hour` (ms since
    /// the epoch / 3,600,000): field `<delivery id>` holds its state,
    /// `<id>.<n>` an earlier attempt. One key per hour rather than per
    /// delivery, so a retained delivery costs its values, not a key, a TTL
    /// and a hash of its own.
    pub fn delivery_bucket(&self, shard: u32, hour: i64) -> String {
        self.shard_key(shard, &["dlv", &hour.to_string()])
    }
    /// Hash of a record shard's *delivered* deliveries created in hour
    /// `hour`, when `HERALD_SUCCESS_RETENTION` is shorter than the event
    /// retention: field `<delivery id>` holds the state, which expires with
    /// this hash the success retention after the hour ends. Earlier
    /// attempts and request shapes stay in [`Keys::delivery_bucket`].
    pub fn delivered_bucket(&self, shard: u32, hour: i64) -> String {
        self.shard_key(shard, &["dlv", &hour.to_string(), "ok"])
    }
    /// The listing index of the first record layout, a tenant's delivery
    /// ids in a record shard (score 0, read lexicographically). Read for
    /// events stored before they kept their deliveries' ids, never written;
    /// it expires with the last of them.
    pub fn first_layout_deliveries(&self, shard: u32, tenant: &str) -> String {
        self.shard_key(shard, &["tenant", tenant, "dlvs"])
    }
    /// Sorted set of live dispatcher ids scored by their last heartbeat in ms,
    /// from which each dispatcher works out its fair share of partitions.
    pub fn dispatchers(&self) -> String {
        self.key(&["dispatchers"])
    }
    /// Live delivery health of an endpoint (circuit, failures, token error),
    /// packed in one value. On a cluster it lives with the endpoint's
    /// partition, where the outcomes that change it are stored.
    pub fn endpoint_health(&self, endpoint_id: &str) -> String {
        self.endpoint_health_in(endpoint_id, "hp")
    }
    /// The first layout of [`Keys::endpoint_health`], a hash: read for
    /// endpoints whose epoch began before [`Keys::packed_health_since`],
    /// never written; it expires on its own.
    pub fn first_layout_health(&self, endpoint_id: &str) -> String {
        self.endpoint_health_in(endpoint_id, "health")
    }
    fn endpoint_health_in(&self, endpoint_id: &str, name: &str) -> String {
        if self.sharded {
            self.partition_key(partition_of(endpoint_id, self.partitions), &["ep", endpoint_id, name])
        } else {
            self.key(&["ep", endpoint_id, name])
        }
    }
    /// When this installation's dispatchers first stored health packed (ms),
    /// set once by the first to start.
    pub fn packed_health_since(&self) -> String {
        self.key(&["layout", "packed-health-since"])
    }
}

fn join(head: &str, parts: &[&str]) -> String {
    let mut key = String::with_capacity(head.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>());
    key.push_str(head);
    for part in parts {
        key.push(':');
        key.push_str(part);
    }
    key
}

/// Stable partition of an endpoint: FNV-1a of its id, modulo the partition
/// count. Stable across versions and processes, which leases depend on.
pub fn partition_of(endpoint_id: &str, partitions: u32) -> u32 {
    partition_of_parts(&[endpoint_id], partitions)
}

/// [`partition_of`] the concatenation of `parts`.
fn partition_of_parts(parts: &[&str], partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.bytes()) {
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
        assert_eq!(keys.delivery_bucket(keys.record_shard(3), 7), "t1:dlv:7");
    }

    #[test]
    fn a_cluster_layout_keeps_what_a_partition_owns_in_its_slot() {
        let keys = Keys::sharded("t1", 16);
        assert_eq!(keys.endpoint("ep_1"), "{t1}:ep:ep_1");
        assert_eq!(keys.partition_stream(3), "t1:{p3}:jobs");
        assert_eq!(keys.delivery_bucket(keys.record_shard(3), 7), "t1:{p3}:dlv:7");
        assert_eq!(keys.delivered_bucket(keys.record_shard(3), 7), "t1:{p3}:dlv:7:ok");
        assert_eq!(keys.first_layout_deliveries(3, "acme"), "t1:{p3}:tenant:acme:dlvs");
        let p = partition_of("ep_1", 16);
        assert_eq!(keys.endpoint_health("ep_1"), format!("t1:{{p{p}}}:ep:ep_1:hp"));
        assert_eq!(keys.first_layout_health("ep_1"), format!("t1:{{p{p}}}:ep:ep_1:health"));
        assert!(keys.event("acme", "e-1").contains(":evt:acme:e-1"));
        assert!(keys.event("acme", "e-1").starts_with("t1:{p"));
        assert_eq!(keys.record_shards(), 16);
        assert_eq!(Keys::new("t1").record_shards(), 1);
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
