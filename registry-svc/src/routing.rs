//! Routing: which endpoints an event reaches. A routing table per (tenant,
//! event type), indexed by each subscription's first scalar filter value,
//! and the cache that keeps tables while the tenant's routing generation
//! says they are current.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_common::model::{FilterMap, StoredEvent};
use serde_json::Value;

/// The routing cache forgets everything past this many (tenant, type) tables.
const MAX_CACHED_ROUTES: usize = 50_000;

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
#[derive(Default)]
pub struct RouteCache {
    tenants: RwLock<HashMap<String, HashMap<String, CachedRoutes>>>,
}

impl RouteCache {
    pub(crate) fn get(&self, tenant: &str, event_type: &str, generation: u64) -> Option<Arc<RouteTable>> {
        let tenants = self.tenants.read().unwrap_or_else(|e| e.into_inner());
        let cached = tenants.get(tenant)?.get(event_type)?;
        (cached.generation == generation).then(|| cached.routes.clone())
    }

    pub(crate) fn put(&self, tenant: &str, event_type: &str, generation: u64, routes: Arc<RouteTable>) {
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

/// What the event holds at the dotted `path` (`resource.org`, `data.a.0.b`,
/// `type`): a JSON value, or one of the event's own strings.
enum Held<'e> {
    Json(&'e Value),
    Text(&'e str),
}

impl Held<'_> {
    fn equals(&self, expected: &Value) -> bool {
        match self {
            Held::Json(value) => *value == expected,
            Held::Text(text) => expected.as_str() == Some(text),
        }
    }

    /// The JSON text of a scalar, the key of the routing index.
    fn scalar_key(&self) -> Option<String> {
        match self {
            Held::Json(value) => scalar_key(value),
            Held::Text(text) => serde_json::to_string(text).ok(),
        }
    }
}

/// Scalars compare equal exactly when their JSON texts do (`1` and `1.0`
/// differ in both), so the text can key a hash index of filter values.
fn scalar_key(value: &Value) -> Option<String> {
    match value {
        Value::Array(_) | Value::Object(_) => None,
        scalar => serde_json::to_string(scalar).ok(),
    }
}

fn held_at<'e>(event: &'e StoredEvent, path: &str) -> Option<Held<'e>> {
    let mut segments = path.split('.');
    let text = |value: &'e str, mut rest: std::str::Split<'_, char>| rest.next().is_none().then_some(Held::Text(value));
    let mut node = match segments.next() {
        Some("id") => return text(&event.id, segments),
        Some("type") => return text(&event.event_type, segments),
        Some("timestamp") => return text(&event.timestamp, segments),
        Some("resource") => event.resource.as_ref()?,
        Some("data") => &event.data,
        _ => return None,
    };
    for segment in segments {
        node = match node {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(Held::Json(node))
}

/// Does the event hold `expected` at the dotted `path`?
fn path_equals(event: &StoredEvent, path: &str, expected: &Value) -> bool {
    held_at(event, path).is_some_and(|held| held.equals(expected))
}

/// Every entry of the filter must hold.
pub fn matches(filter: Option<&FilterMap>, event: &StoredEvent) -> bool {
    filter.is_none_or(|f| f.iter().all(|(path, expected)| path_equals(event, path, expected)))
}

/// The routes of one (tenant, event type), indexed so that choosing an
/// event's endpoints costs a hash lookup per filtered path rather than a
/// filter check per subscription: 10,000 subscriptions filtered on
/// `data.customer` cost one lookup, not 10,000 walks of the event.
pub struct RouteTable {
    /// Sorted by endpoint id, so one endpoint's routes are adjacent.
    routes: Vec<Route>,
    /// Routes with no scalar filter entry to index by: always checked.
    unindexed: Vec<usize>,
    /// Per filtered path, the routes whose first scalar entry names that
    /// path, by the entry's value (JSON text).
    indexed: Vec<(String, HashMap<String, Vec<usize>>)>,
}

impl RouteTable {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| a.endpoint_id.cmp(&b.endpoint_id));
        let mut unindexed = Vec::new();
        let mut indexed: Vec<(String, HashMap<String, Vec<usize>>)> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let entry = route
                .filter
                .iter()
                .flat_map(|f| f.iter())
                .find_map(|(path, value)| scalar_key(value).map(|key| (path, key)));
            let Some((path, key)) = entry else {
                unindexed.push(i);
                continue;
            };
            let by_value = match indexed.iter().position(|(p, _)| p == path) {
                Some(at) => &mut indexed[at].1,
                None => {
                    indexed.push((path.clone(), HashMap::new()));
                    let last = indexed.len() - 1;
                    &mut indexed[last].1
                }
            };
            by_value.entry(key).or_default().push(i);
        }
        RouteTable { routes, unindexed, indexed }
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
        for route in candidates.into_iter().map(|i| &self.routes[i]) {
            if selected.last().is_some_and(|last| last.endpoint_id == route.endpoint_id) {
                continue;
            }
            if matches(route.filter.as_ref(), event) {
                selected.push(route);
            }
        }
        selected
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use herald_common::keys::partition_of;

    fn event() -> StoredEvent {
        StoredEvent {
            id: "evt_1".into(),
            event_type: "order.created".into(),
            timestamp: "2024-05-07T19:18:32.076Z".into(),
            resource: Some(json!({"orgShortName": "tfoinc", "locRef": "l1"})),
            data: json!({"a": {"b": 2}, "items": [{"sku": "x"}], "flag": true}),
        }
    }

    fn filter(value: Value) -> FilterMap {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn filters_compare_dotted_paths() {
        let e = event();
        assert!(matches(None, &e));
        assert!(matches(Some(&filter(json!({"resource.orgShortName": "tfoinc"}))), &e));
        assert!(matches(Some(&filter(json!({"type": "order.created", "id": "evt_1", "data.a.b": 2}))), &e));
        assert!(matches(Some(&filter(json!({"data.items.0.sku": "x", "data.flag": true}))), &e));
        assert!(matches(Some(&filter(json!({"data.a": {"b": 2}}))), &e));
        assert!(!matches(Some(&filter(json!({"resource.orgShortName": "other"}))), &e));
        assert!(!matches(Some(&filter(json!({"resource.orgShortName": "tfoinc", "resource.locRef": "l2"}))), &e));
        assert!(!matches(Some(&filter(json!({"data.a.b": "2"}))), &e));
        assert!(!matches(Some(&filter(json!({"data.missing": null}))), &e));
        assert!(!matches(Some(&filter(json!({"data.items.7.sku": "x"}))), &e));
        let mut no_resource = event();
        no_resource.resource = None;
        assert!(!matches(Some(&filter(json!({"resource.orgShortName": "tfoinc"}))), &no_resource));
    }

    #[test]
    fn selection_is_one_job_per_endpoint() {
        let route = |ep: &str, f: Option<Value>| Route {
            generation: String::new(),
            endpoint_id: ep.into(),
            partition: partition_of(ep, 4),
            filter: f.map(filter),
        };
        let routes = vec![
            route("ep_a", Some(json!({"resource.orgShortName": "nope"}))),
            route("ep_a", Some(json!({"resource.orgShortName": "tfoinc"}))),
            route("ep_a", None),
            route("ep_b", None),
            route("ep_c", Some(json!({"type": "other"}))),
        ];
        let table = RouteTable::new(routes);
        let chosen: Vec<&str> = table.select(&event()).iter().map(|r| r.endpoint_id.as_str()).collect();
        assert_eq!(chosen, ["ep_a", "ep_b"]);
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
}
