//! Routing tables: which endpoints an event of a (tenant, event type)
//! reaches, cached in memory and revalidated against the tenant's routing
//! generation, which every endpoint and subscription write bumps.
//!
//! A table is indexed so that choosing an event's endpoints costs one hash
//! lookup per filtered path rather than a filter check per subscription:
//! 10,000 subscriptions filtered on `data.customer` cost one lookup, not
//! 10,000 walks of the event. A subscription is indexed by the first
//! top-level entry of its filter that demands one scalar value; the rest
//! (no filter, or only operators and `$or`/`$and`) sit in a short list that
//! is checked in full.
//!
//! Publishes that miss the cache at once (a batch's concurrent calls after a
//! subscription change) load a table once: the others wait for it rather
//! than each reading every subscription of the type.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, RwLock};

use herald_common::model::{FilterMap, StoredEvent};

use crate::filter::{Filter, held_at};

/// The routing cache forgets everything past this many (tenant, type) tables.
const MAX_CACHED_ROUTES: usize = 50_000;
/// Locks that loads of a table take, by a hash of its (tenant, type):
/// loads of different tables rarely share one.
const LOAD_LOCKS: usize = 64;

/// One subscription's way to an endpoint.
#[derive(Clone, Debug)]
pub struct Route {
    pub endpoint_id: String,
    pub partition: u32,
    pub filter: Option<FilterMap>,
    /// The endpoint's incarnation, carried by every job to it.
    pub generation: String,
}

struct CachedRoutes {
    generation: u64,
    routes: Arc<RouteTable>,
}

/// Routing tables per tenant and event type.
pub struct RouteCache {
    tenants: RwLock<HashMap<String, HashMap<String, CachedRoutes>>>,
    loads: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
}

impl Default for RouteCache {
    fn default() -> Self {
        RouteCache {
            tenants: RwLock::default(),
            loads: (0..LOAD_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl RouteCache {
    /// The table of `generation`, from the cache or else from `load`, which
    /// runs once however many callers miss together.
    pub async fn get_or_load<E, Load>(
        &self,
        tenant: &str,
        event_type: &str,
        generation: u64,
        load: impl FnOnce() -> Load,
    ) -> Result<Arc<RouteTable>, E>
    where
        Load: Future<Output = Result<RouteTable, E>>,
    {
        if let Some(routes) = self.get(tenant, event_type, generation) {
            return Ok(routes);
        }
        let lock = (self.hasher.hash_one((tenant, event_type)) as usize) % self.loads.len().max(1);
        let _loading = self.loads[lock].lock().await;
        if let Some(routes) = self.get(tenant, event_type, generation) {
            return Ok(routes);
        }
        let routes = Arc::new(load().await?);
        self.put(tenant, event_type, generation, routes.clone());
        Ok(routes)
    }

    fn get(&self, tenant: &str, event_type: &str, generation: u64) -> Option<Arc<RouteTable>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let cached = tenants.get(tenant)?.get(event_type)?;
        (cached.generation == generation).then(|| cached.routes.clone())
    }

    fn put(&self, tenant: &str, event_type: &str, generation: u64, routes: Arc<RouteTable>) {
        let mut tenants = self.tenants.write().unwrap_or_else(|e| e.into_inner());
        if tenants.values().map(HashMap::len).sum::<usize>() >= MAX_CACHED_ROUTES {
            tenants.clear();
        }
        let per_tenant = tenants.entry(tenant.to_owned()).or_default();
        // Tables of older generations are stale for every type of this tenant.
        per_tenant.retain(|_, c| c.generation >= generation);
        per_tenant.insert(event_type.to_owned(), CachedRoutes { generation, routes });
    }
}

/// The routes of one (tenant, event type) with their parsed filters.
pub struct RouteTable {
    /// Sorted by endpoint id, so one endpoint's routes are adjacent.
    routes: Vec<Route>,
    /// Parsed filters, by route; `None` = no filter. A stored filter that
    /// no longer parses keeps its route out of the table.
    filters: Vec<Option<Filter>>,
    /// Routes with no scalar filter entry to index by: always checked.
    unindexed: Vec<usize>,
    /// Per filtered path, the routes indexed by that path, by the value
    /// (JSON text) their filter demands there.
    indexed: Vec<(String, HashMap<String, Vec<usize>>)>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut parsed: Vec<(Route, Option<Filter>)> = routes
            .into_iter()
            .filter_map(|route| match route.filter.as_ref().map(Filter::parse).transpose() {
                Ok(filter) => Some((route, filter)),
                Err(e) => {
                    tracing::warn!(endpoint = %route.endpoint_id, field = %e.field, "stored filter refused");
                    None
                }
            })
            .collect();
        parsed.sort_by(|a, b| a.0.endpoint_id.cmp(&b.0.endpoint_id));
        let (routes, filters): (Vec<Route>, Vec<Option<Filter>>) = parsed.into_iter().unzip();
        let mut unindexed = Vec::new();
        let mut indexed: Vec<(String, HashMap<String, Vec<usize>>)> = Vec::new();
        for (i, filter) in filters.iter().enumerate() {
            let Some((path, key)) = filter.as_ref().and_then(Filter::index_entry) else {
                unindexed.push(i);
                continue;
            };
            let at = match indexed.iter().position(|(p, _)| p == path) {
                Some(at) => at,
                None => {
                    indexed.push((path.to_owned(), HashMap::new()));
                    indexed.len() - 1
                }
            };
            indexed[at].1.entry(key).or_default().push(i);
        }
        RouteTable { routes, filters, unindexed, indexed }
    }

    /// The distinct endpoints (with partitions) that `event` reaches, in
    /// endpoint id order.
    pub fn select(&self, event: &StoredEvent) -> Vec<&Route> {
        let mut candidates = self.unindexed.clone();
        for (path, by_value) in &self.indexed {
            let key = held_at(event, path).and_then(|held| held.scalar_key());
            if let Some(hits) = key.and_then(|key| by_value.get(&key)) {
                candidates.extend_from_slice(hits);
            }
        }
        candidates.sort_unstable();
        let mut selected: Vec<&Route> = Vec::new();
        for i in candidates {
            let route = &self.routes[i];
            if selected.last().is_some_and(|last| last.endpoint_id == route.endpoint_id) {
                continue;
            }
            if self.filters[i].as_ref().is_none_or(|f| f.matches(event)) {
                selected.push(route);
            }
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use herald_common::keys::partition_of;
    use serde_json::{Value, json};

    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            id: "evt_1".into(),
            event_type: "order.created".into(),
            timestamp: "2024-05-07T19:18:32.076Z".into(),
            resource: Some(json!({"orgShortName": "tfoinc", "locRef": "l1"})),
            data: json!({"a": {"b": 2}, "amount": 7}),
        }
    }

    fn route(ep: &str, f: Option<Value>) -> Route {
        Route {
            endpoint_id: ep.into(),
            partition: partition_of(ep, 4),
            filter: f.and_then(|v| v.as_object().cloned()),
            generation: String::new(),
        }
    }

    #[test]
    fn selection_is_one_job_per_endpoint() {
        let routes = vec![
            route("ep_a", Some(json!({"resource.orgShortName": "nope"}))),
            route("ep_a", Some(json!({"resource.orgShortName": "tfoinc"}))),
            route("ep_a", None),
            route("ep_b", None),
            route("ep_c", Some(json!({"type": "other"}))),
            route("ep_d", Some(json!({"data.amount": {"$gt": 5}}))),
            route("ep_e", Some(json!({"$or": [{"data.amount": {"$lt": 5}}, {"type": "x"}]}))),
            route("ep_f", Some(json!({"data.amount": {"$bogus": 5}}))),
        ];
        let table = RouteTable::new(routes);
        let chosen: Vec<&str> = table.select(&event()).iter().map(|r| r.endpoint_id.as_str()).collect();
        assert_eq!(chosen, ["ep_a", "ep_b", "ep_d"]);
        assert_eq!(table.unindexed.len(), 4, "no filter twice, and the two operator-only filters");
    }

    #[test]
    fn route_cache_answers_only_its_generation() {
        let cache = RouteCache::default();
        cache.put("acme", "t", 3, Arc::new(RouteTable::new(Vec::new())));
        assert!(cache.get("acme", "t", 3).is_some());
        assert!(cache.get("acme", "t", 4).is_none());
        assert!(cache.get("other", "t", 3).is_none());
        cache.put("acme", "u", 4, Arc::new(RouteTable::new(Vec::new())));
        assert!(cache.get("acme", "t", 3).is_none(), "older generations are dropped");
    }

    #[tokio::test]
    async fn callers_that_miss_together_load_the_table_once() {
        let cache = RouteCache::default();
        let loads = std::sync::atomic::AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, ()>(RouteTable::new(vec![route("ep_1", None)]))
        };
        let callers = (0..8).map(|_| cache.get_or_load("acme", "t", 1, load));
        let tables = futures::future::join_all(callers).await;
        assert!(tables.iter().all(|t| t.as_ref().is_ok_and(|t| t.routes.len() == 1)));
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(cache.get_or_load("acme", "t", 2, load).await.is_ok(), "a new generation loads again");
        assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
