//! Every Redis command the registry sends.
//!
//! Records are JSON strings under the keys of [`herald_common::keys::Keys`];
//! lists are sorted sets whose members all have score 0, so `ZRANGEBYLEX`
//! reads them in id order and "after the last id of the previous page" is a
//! cursor that neither skips nor repeats while records come and go.
//!
//! Writes that must be all-or-nothing are either `MULTI`/`EXEC` pipelines or
//! short Lua scripts (when a write depends on what is stored: create only if
//! absent, update only if unchanged since read). Every endpoint write also
//! appends to the `changes` stream, which dispatchers follow to reload or
//! stop an endpoint's actor, and bumps the tenant's routing generation,
//! which tells publishers their cached routing table is stale.

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use herald_common::keys::Keys;
use herald_common::model::{ApiKeyRecord, CHANGE_ENDPOINT, EndpointRecord, SubscriptionRecord, TenantRecord};
use herald_common::redis_conn::RedisConn;
use redis::{Pipeline, Script};
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::validate::{Page, split_page};

mod event_log;
mod event_types;
pub use event_log::LogOrder;
mod partition_steps;
mod portal_sessions;
mod publishing;
mod subscription_update;

pub use publishing::{Enqueue, Enqueued, Lookup};

/// Approximate length the changes stream is trimmed to; dispatchers read it
/// live, so only a short history is needed for a restarting follower.
const CHANGES_MAXLEN: u32 = 10_000;

/// Field names of a `changes` stream entry.
pub const CHANGE_KIND: &str = "kind";
pub const CHANGE_ID: &str = "id";
pub const CHANGE_TENANT: &str = "tenant";
pub const CHANGE_OP: &str = "op";
pub const OP_UPSERT: &str = "upsert";
pub const OP_DELETE: &str = "delete";

/// Create a record only if absent, and index it; optionally only while a
/// parent record (the tenant) exists. Answers 1 created, 0 exists, 2 no parent.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then return 2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
return 1
",
    )
});

/// Stores an API key under its hash while its tenant exists. 1 stored, 0 no tenant.
static CREATE_API_KEY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[3]) == 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
",
    )
});

fn change_entry_lua(op: &str) -> String {
    format!(
        "redis.call('XADD', KEYS[3], 'MAXLEN', '~', '{CHANGES_MAXLEN}', '*', '{CHANGE_KIND}', '{CHANGE_ENDPOINT}', \
         '{CHANGE_ID}', ARGV[2], '{CHANGE_TENANT}', ARGV[3], '{CHANGE_OP}', '{op}')\nredis.call('INCR', KEYS[4])"
    )
}

/// Creates an endpoint while its tenant exists and has fewer than its quota,
/// and announces it. The count is taken in the same step, so creations
/// racing each other cannot pass the quota together.
/// KEYS: endpoint, tenant endpoints, changes, routing generation, tenant.
/// ARGV: json, id, tenant, quota. Answers 1 created, 0 id taken, 2 no
/// tenant, 3 quota reached.
static CREATE_ENDPOINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
if redis.call('EXISTS', KEYS[5]) == 0 then return 2 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 3 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
{}
return 1
",
        change_entry_lua(OP_UPSERT)
    ))
});

/// Replaces an endpoint only if it is unchanged since it was read, and announces it.
/// KEYS: endpoint, (unused), changes, routing generation. ARGV: new json, id, tenant, expected json.
/// Answers 1 written, 0 changed or gone.
static SWAP_ENDPOINT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
{}
return 1
",
        change_entry_lua(OP_UPSERT)
    ))
});

/// Creates a subscription while its endpoint exists and its tenant has fewer
/// than its quota, and indexes it.
/// KEYS: subscription, tenant subscriptions, endpoint subscriptions, endpoint,
/// routing generation, then one route index per event type.
/// ARGV: json, id, quota. Answers 1 created, 0 no endpoint, 2 quota reached.
static CREATE_SUBSCRIPTION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], 0, ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[2])
for i = 6, #KEYS do redis.call('SADD', KEYS[i], ARGV[2]) end
redis.call('INCR', KEYS[5])
return 1
",
    )
});

pub enum Created {
    Yes,
    Exists,
    NoParent,
    /// The tenant has as many as its quota allows.
    OverQuota,
}

pub enum EventTypeWrite {
    Written,
    Exists,
    CodeTaken,
    Missing,
    Changed,
}

#[derive(Clone)]
pub struct Store {
    conn: RedisConn,
    keys: Keys,
}

fn parse<T: DeserializeOwned>(raw: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(raw)?)
}

fn xadd_change(pipe: &mut Pipeline, keys: &Keys, id: &str, tenant: &str, op: &str) {
    pipe.cmd("XADD")
        .arg(keys.changes())
        .arg("MAXLEN")
        .arg("~")
        .arg(CHANGES_MAXLEN)
        .arg("*")
        .arg(CHANGE_KIND)
        .arg(CHANGE_ENDPOINT)
        .arg(CHANGE_ID)
        .arg(id)
        .arg(CHANGE_TENANT)
        .arg(tenant)
        .arg(CHANGE_OP)
        .arg(op)
        .ignore();
}

impl Store {
    pub fn new(conn: RedisConn, keys: Keys) -> Self {
        Store { conn, keys }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub async fn ping(&self) -> Result<(), String> {
        let mut conn = self.conn.clone();
        herald_common::redis_conn::ping(&mut conn).await
    }

    async fn get_raw(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GET").arg(key).query_async(&mut conn).await?)
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.get_raw(key).await?.map(|raw| parse(&raw)).transpose()
    }

    /// A record and the exact JSON it was read from, for a compare-and-swap
    /// write that must find it unchanged.
    async fn get_json_with_raw<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, String)>> {
        let Some(raw) = self.get_raw(key).await? else { return Ok(None) };
        let record = parse(&raw)?;
        // It parsed as JSON, so it is UTF-8.
        Ok(Some((record, String::from_utf8(raw).unwrap_or_default())))
    }

    /// The records stored under `keys`, skipping any that vanished since
    /// their index was read.
    async fn mget_json<T: DeserializeOwned>(&self, keys: &[String]) -> Result<Vec<T>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let raws: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query_async(&mut conn).await?;
        raws.into_iter().flatten().map(|raw| parse(&raw)).collect()
    }

    /// One page of ids of a score-0 sorted set, and the cursor of the next.
    async fn page_ids(&self, zset: &str, page: &Page) -> Result<(Vec<String>, Option<String>)> {
        let min = page.after.as_ref().map(|a| format!("({a}")).unwrap_or_else(|| "-".to_owned());
        let mut conn = self.conn.clone();
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(zset)
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(page.limit + 1)
            .query_async(&mut conn)
            .await?;
        Ok(split_page(ids, page.limit))
    }

    async fn page_records<T: DeserializeOwned>(
        &self,
        zset: &str,
        page: &Page,
        key: impl Fn(&str) -> String,
    ) -> Result<(Vec<T>, Option<String>)> {
        let (ids, next) = self.page_ids(zset, page).await?;
        let keys: Vec<String> = ids.iter().map(|id| key(id)).collect();
        Ok((self.mget_json(&keys).await?, next))
    }

    async fn all_members(&self, zset: &str) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("ZRANGE").arg(zset).arg(0).arg(-1).query_async(&mut conn).await?)
    }

    async fn run_atomic(&self, pipe: &Pipeline) -> Result<()> {
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    // ------------------------------------------------------------ tenants

    pub async fn create_tenant(&self, tenant: &TenantRecord) -> Result<bool> {
        let mut conn = self.conn.clone();
        let created: i64 = CREATE
            .key(self.keys.tenant(&tenant.id))
            .key(self.keys.tenants())
            .arg(serde_json::to_string(tenant)?)
            .arg(&tenant.id)
            .invoke_async(&mut conn)
            .await?;
        Ok(created == 1)
    }

    pub async fn tenant(&self, id: &str) -> Result<Option<TenantRecord>> {
        self.get_json(&self.keys.tenant(id)).await
    }

    pub async fn tenant_exists(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("EXISTS").arg(self.keys.tenant(id)).query_async(&mut conn).await?)
    }

    /// Replaces a tenant that exists; false when it does not.
    pub async fn replace_tenant(&self, tenant: &TenantRecord) -> Result<bool> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.tenant(&tenant.id))
            .arg(serde_json::to_string(tenant)?)
            .arg("XX")
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    pub async fn list_tenants(&self, page: &Page) -> Result<(Vec<TenantRecord>, Option<String>)> {
        self.page_records(&self.keys.tenants(), page, |id| self.keys.tenant(id)).await
    }

    /// Removes a tenant with its keys, endpoints and subscriptions; endpoint
    /// deletions are announced. The routing generation is bumped, never
    /// deleted, so no replica can mistake a recreated tenant's routes for
    /// the old ones.
    pub async fn delete_tenant(&self, id: &str) -> Result<bool> {
        let keys = &self.keys;
        if !self.tenant_exists(id).await? {
            return Ok(false);
        }
        let mut conn = self.conn.clone();
        let key_hashes: Vec<String> = redis::cmd("HVALS").arg(keys.tenant_api_keys(id)).query_async(&mut conn).await?;
        let endpoints = self.all_members(&keys.tenant_endpoints(id)).await?;
        let sub_ids = self.all_members(&keys.tenant_subscriptions(id)).await?;
        let subs: Vec<SubscriptionRecord> =
            self.mget_json(&sub_ids.iter().map(|s| keys.subscription(s)).collect::<Vec<_>>()).await?;
        let route_types: BTreeSet<&str> = subs.iter().flat_map(|s| s.event_types.iter().map(String::as_str)).collect();

        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.del(keys.tenant(id)).ignore().zrem(keys.tenants(), id).ignore();
        for hash in &key_hashes {
            pipe.del(keys.api_key(hash)).ignore();
        }
        pipe.del(keys.tenant_api_keys(id)).ignore();
        for ep in &endpoints {
            pipe.del(keys.endpoint(ep)).ignore().del(keys.endpoint_subscriptions(ep)).ignore();
            xadd_change(&mut pipe, keys, ep, id, OP_DELETE);
        }
        for sub in &sub_ids {
            pipe.del(keys.subscription(sub)).ignore();
        }
        for event_type in route_types {
            pipe.del(keys.subscription_index(id, event_type)).ignore();
        }
        pipe.del(keys.tenant_endpoints(id)).ignore().del(keys.tenant_subscriptions(id)).ignore();
        // Its events expire with the retention; their log goes with the tenant.
        pipe.del(keys.tenant_events(id)).ignore();
        pipe.incr(keys.routing_generation(id), 1).ignore();
        self.run_atomic(&pipe).await?;
        Ok(true)
    }

    // ------------------------------------------------------------ api keys

    pub async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<bool> {
        let mut conn = self.conn.clone();
        let stored: i64 = CREATE_API_KEY
            .key(self.keys.api_key(&key.key_hash))
            .key(self.keys.tenant_api_keys(&key.tenant))
            .key(self.keys.tenant(&key.tenant))
            .arg(serde_json::to_string(key)?)
            .arg(&key.id)
            .arg(&key.key_hash)
            .invoke_async(&mut conn)
            .await?;
        Ok(stored == 1)
    }

    pub async fn api_key(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.get_json(&self.keys.api_key(key_hash)).await
    }

    /// A tenant has few keys, so they are read whole and paged in memory.
    pub async fn list_api_keys(&self, tenant: &str, page: &Page) -> Result<(Vec<ApiKeyRecord>, Option<String>)> {
        let mut conn = self.conn.clone();
        let all: HashMap<String, String> =
            redis::cmd("HGETALL").arg(self.keys.tenant_api_keys(tenant)).query_async(&mut conn).await?;
        let mut ids: Vec<&String> =
            all.keys().filter(|id| page.after.as_ref().is_none_or(|after| *id > after)).collect();
        ids.sort();
        ids.truncate(page.limit + 1);
        let (ids, next) = split_page(ids.into_iter().cloned().collect(), page.limit);
        let keys: Vec<String> = ids.iter().filter_map(|id| all.get(id)).map(|h| self.keys.api_key(h)).collect();
        Ok((self.mget_json(&keys).await?, next))
    }

    pub async fn revoke_api_key(&self, tenant: &str, key_id: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let hash: Option<String> =
            redis::cmd("HGET").arg(self.keys.tenant_api_keys(tenant)).arg(key_id).query_async(&mut conn).await?;
        let Some(hash) = hash else { return Ok(false) };
        let mut pipe = redis::pipe();
        pipe.atomic().del(self.keys.api_key(&hash)).ignore().hdel(self.keys.tenant_api_keys(tenant), key_id).ignore();
        self.run_atomic(&pipe).await?;
        Ok(true)
    }

    // ------------------------------------------------------------ endpoints

    pub async fn create_endpoint(&self, endpoint: &EndpointRecord, quota: u64) -> Result<Created> {
        let mut conn = self.conn.clone();
        let answer: i64 = CREATE_ENDPOINT
            .key(self.keys.endpoint(&endpoint.id))
            .key(self.keys.tenant_endpoints(&endpoint.tenant))
            .key(self.keys.changes())
            .key(self.keys.routing_generation(&endpoint.tenant))
            .key(self.keys.tenant(&endpoint.tenant))
            .arg(serde_json::to_string(endpoint)?)
            .arg(&endpoint.id)
            .arg(&endpoint.tenant)
            .arg(quota)
            .invoke_async(&mut conn)
            .await?;
        Ok(match answer {
            1 => Created::Yes,
            0 => Created::Exists,
            3 => Created::OverQuota,
            _ => Created::NoParent,
        })
    }

    /// The endpoint and the exact JSON it was read from (for [`Self::swap_endpoint`]).
    pub async fn endpoint(&self, id: &str) -> Result<Option<(EndpointRecord, String)>> {
        self.get_json_with_raw(&self.keys.endpoint(id)).await
    }

    /// Writes `endpoint` if the stored JSON is still `expected`; false otherwise.
    pub async fn swap_endpoint(&self, endpoint: &EndpointRecord, expected: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let answer: i64 = SWAP_ENDPOINT
            .key(self.keys.endpoint(&endpoint.id))
            .key(self.keys.tenant_endpoints(&endpoint.tenant))
            .key(self.keys.changes())
            .key(self.keys.routing_generation(&endpoint.tenant))
            .arg(serde_json::to_string(endpoint)?)
            .arg(&endpoint.id)
            .arg(&endpoint.tenant)
            .arg(expected)
            .invoke_async(&mut conn)
            .await?;
        Ok(answer == 1)
    }

    pub async fn list_endpoints(&self, tenant: &str, page: &Page) -> Result<(Vec<EndpointRecord>, Option<String>)> {
        self.page_records(&self.keys.tenant_endpoints(tenant), page, |id| self.keys.endpoint(id)).await
    }

    /// Removes an endpoint and its subscriptions, and announces it.
    pub async fn delete_endpoint(&self, endpoint: &EndpointRecord) -> Result<()> {
        let keys = &self.keys;
        let (id, tenant) = (endpoint.id.as_str(), endpoint.tenant.as_str());
        let sub_ids = self.all_members(&keys.endpoint_subscriptions(id)).await?;
        let subs: Vec<SubscriptionRecord> =
            self.mget_json(&sub_ids.iter().map(|s| keys.subscription(s)).collect::<Vec<_>>()).await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.del(keys.endpoint(id)).ignore().zrem(keys.tenant_endpoints(tenant), id).ignore();
        pipe.del(keys.endpoint_subscriptions(id)).ignore();
        for sub_id in &sub_ids {
            pipe.del(keys.subscription(sub_id)).ignore().zrem(keys.tenant_subscriptions(tenant), sub_id).ignore();
        }
        for sub in &subs {
            for event_type in &sub.event_types {
                pipe.srem(keys.subscription_index(tenant, event_type), &sub.id).ignore();
            }
        }
        xadd_change(&mut pipe, keys, id, tenant, OP_DELETE);
        pipe.incr(keys.routing_generation(tenant), 1).ignore();
        self.run_atomic(&pipe).await
    }

    // ------------------------------------------------------------ subscriptions

    /// [`Created::NoParent`] when the endpoint is gone.
    pub async fn create_subscription(&self, sub: &SubscriptionRecord, quota: u64) -> Result<Created> {
        let keys = &self.keys;
        let mut invocation = CREATE_SUBSCRIPTION.prepare_invoke();
        invocation
            .key(keys.subscription(&sub.id))
            .key(keys.tenant_subscriptions(&sub.tenant))
            .key(keys.endpoint_subscriptions(&sub.endpoint_id))
            .key(keys.endpoint(&sub.endpoint_id))
            .key(keys.routing_generation(&sub.tenant));
        for event_type in &sub.event_types {
            invocation.key(keys.subscription_index(&sub.tenant, event_type));
        }
        invocation.arg(serde_json::to_string(sub)?).arg(&sub.id).arg(quota);
        let mut conn = self.conn.clone();
        let answer: i64 = invocation.invoke_async(&mut conn).await?;
        Ok(match answer {
            1 => Created::Yes,
            2 => Created::OverQuota,
            _ => Created::NoParent,
        })
    }

    pub async fn subscription(&self, id: &str) -> Result<Option<SubscriptionRecord>> {
        self.get_json(&self.keys.subscription(id)).await
    }

    pub async fn list_subscriptions(
        &self,
        tenant: &str,
        endpoint: Option<&str>,
        page: &Page,
    ) -> Result<(Vec<SubscriptionRecord>, Option<String>)> {
        let zset = match endpoint {
            Some(ep) => self.keys.endpoint_subscriptions(ep),
            None => self.keys.tenant_subscriptions(tenant),
        };
        self.page_records(&zset, page, |id| self.keys.subscription(id)).await
    }

    pub async fn delete_subscription(&self, sub: &SubscriptionRecord) -> Result<()> {
        let keys = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic()
            .del(keys.subscription(&sub.id))
            .ignore()
            .zrem(keys.tenant_subscriptions(&sub.tenant), &sub.id)
            .ignore()
            .zrem(keys.endpoint_subscriptions(&sub.endpoint_id), &sub.id)
            .ignore();
        for event_type in &sub.event_types {
            pipe.srem(keys.subscription_index(&sub.tenant, event_type), &sub.id).ignore();
        }
        pipe.incr(keys.routing_generation(&sub.tenant), 1).ignore();
        self.run_atomic(&pipe).await
    }
}
