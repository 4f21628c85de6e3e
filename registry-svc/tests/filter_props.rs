//! Property tests of subscription filters: the validator
//! ([`validate::filter`]), the matcher ([`filter::matches`]) and the
//! indexed routing table ([`routing::RouteTable`]), which must choose
//! exactly what checking every route's filter would.
//!
//! The oracle is the contract: a filter is an object of dotted paths rooted
//! at `id`, `type`, `timestamp`, `resource` or `data`, each naming the value
//! the event must hold there (object keys, and decimal indices on arrays);
//! every entry must hold, and a path that leads nowhere never matches, not
//! even against `null`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_common::model::{FilterMap, StoredEvent};
use herald_registry::filter::matches;
use herald_registry::routing::{Route, RouteTable};
use herald_registry::validate;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Value, json};

const CASES: u32 = 2_000;

fn key() -> impl Strategy<Value = String> {
    // Dot-free keys, some of them digit strings that look like indices.
    prop_oneof![4 => "[a-zA-Z_][a-zA-Z0-9_-]{0,6}", 1 => "[0-9]{1,2}"]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[ -~]{0,8}".prop_map(Value::String),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), tree(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn event() -> impl Strategy<Value = StoredEvent> {
    ("[a-z0-9_]{1,12}", "[a-z]{1,8}\\.[a-z]{1,8}", prop::option::of(object()), object()).prop_map(
        |(id, event_type, resource, data)| StoredEvent {
            id,
            event_type,
            timestamp: "2026-11-23T10:00:00.000Z".into(),
            resource,
            data,
        },
    )
}

/// Every (dotted path, value) pair reachable from `root`, the root included.
fn leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    out.push((prefix.to_owned(), value.clone()));
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| leaves(&format!("{prefix}.{k}"), v, out)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, v)| leaves(&format!("{prefix}.{i}"), v, out)),
        _ => {}
    }
}

fn reachable(event: &StoredEvent) -> Vec<(String, Value)> {
    let mut out = vec![
        ("id".to_owned(), json!(event.id)),
        ("type".to_owned(), json!(event.event_type)),
        ("timestamp".to_owned(), json!(event.timestamp)),
    ];
    if let Some(resource) = &event.resource {
        leaves("resource", resource, &mut out);
    }
    leaves("data", &event.data, &mut out);
    out
}

fn filter_of(pairs: &[(String, Value)]) -> FilterMap {
    pairs.iter().cloned().collect::<Map<String, Value>>()
}

/// A value that differs from `value` by JSON equality.
fn other_than(value: &Value) -> Value {
    match value {
        Value::Null => json!(false),
        Value::Bool(b) => json!(!b),
        // A number never equals a string, nor its own text.
        Value::Number(n) => json!(n.to_string()),
        Value::String(s) => json!(format!("{s}~")),
        Value::Array(items) => Value::Array(items.iter().cloned().chain([Value::Null]).collect()),
        Value::Object(_) => json!([]),
    }
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// Any value the event holds, named by its path, matches; any other
    /// value at that path does not.
    #[test]
    fn a_held_value_matches_and_another_does_not(event in event(), pick in any::<prop::sample::Index>()) {
        let pairs = reachable(&event);
        let (path, value) = &pairs[pick.index(pairs.len())];
        prop_assert!(matches(Some(&filter_of(&[(path.clone(), value.clone())])), &event), "{path} = {value}");
        let wrong = other_than(value);
        prop_assert!(!matches(Some(&filter_of(&[(path.clone(), wrong.clone())])), &event), "{path} = {wrong}");
    }

    /// Entries are a conjunction: a filter matches exactly when each of its
    /// entries matches alone.
    #[test]
    fn entries_are_a_conjunction(
        event in event(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 1..6),
    ) {
        let pairs = reachable(&event);
        let mut entries: Vec<(String, Value)> = Vec::new();
        for (pick, keep) in picks {
            let (path, value) = &pairs[pick.index(pairs.len())];
            if entries.iter().any(|(p, _)| p == path) {
                continue;
            }
            entries.push((path.clone(), if keep { value.clone() } else { other_than(value) }));
        }
        let each = entries.iter().all(|entry| matches(Some(&filter_of(std::slice::from_ref(entry))), &event));
        prop_assert_eq!(matches(Some(&filter_of(&entries)), &event), each);
    }

    /// A path that leads nowhere never matches, whatever value it names.
    #[test]
    fn a_missing_path_never_matches(event in event(), pick in any::<prop::sample::Index>(), value in tree()) {
        let pairs = reachable(&event);
        let (path, held) = &pairs[pick.index(pairs.len())];
        // One segment further than a scalar, or a key the object lacks.
        let missing = match held {
            Value::Object(map) => (0..).map(|n| format!("{path}.missing{n}")).find(|p| {
                let key = p.rsplit('.').next().unwrap_or_default();
                !map.contains_key(key)
            }).unwrap(),
            Value::Array(items) => format!("{path}.{}", items.len()),
            _ => format!("{path}.deeper"),
        };
        prop_assert!(!matches(Some(&filter_of(&[(missing.clone(), value.clone())])), &event), "{missing}");
        prop_assert!(!matches(Some(&filter_of(&[(missing, Value::Null)])), &event));
    }

    /// No filter, or an empty one, matches every event.
    #[test]
    fn no_filter_matches_everything(event in event()) {
        prop_assert!(matches(None, &event));
        prop_assert!(matches(Some(&FilterMap::new()), &event));
    }

    /// The validator never panics, and what it accepts has only dotted
    /// paths from the five roots, at most 32 of them.
    #[test]
    fn the_validator_accepts_only_dotted_paths_from_the_roots(
        raw in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::btree_map("[a-z.]{0,12}", scalar(), 0..40)
                .prop_map(|m| serde_json::to_vec(&m).unwrap()),
            object().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
    ) {
        if let Ok(Some(filter)) = validate::filter(&raw) {
            prop_assert!(!filter.is_empty() && filter.len() <= validate::MAX_FILTER_ENTRIES);
            for path in filter.keys() {
                let mut segments = path.split('.');
                let root = segments.next().unwrap();
                prop_assert!(["id", "type", "timestamp", "resource", "data"].contains(&root), "{path}");
                prop_assert!(path.split('.').all(|s| !s.is_empty()), "{path}");
                if matches!(root, "id" | "type" | "timestamp") {
                    prop_assert!(segments.next().is_none(), "{path}");
                }
            }
        }
    }

    /// Every path the matcher can follow on an event is accepted by the
    /// validator, so every filter an integrator could mean can be stored.
    #[test]
    fn every_reachable_path_is_a_valid_filter(event in event(), pick in any::<prop::sample::Index>()) {
        let pairs = reachable(&event);
        let (path, value) = &pairs[pick.index(pairs.len())];
        let raw = serde_json::to_vec(&filter_of(&[(path.clone(), value.clone())])).unwrap();
        // Keys of generated data never hold dots or are empty, so every path is well formed.
        prop_assert!(validate::filter(&raw).unwrap().is_some(), "{path}");
    }

    /// The indexed table chooses exactly the endpoints a check of every
    /// route would, once each, in endpoint id order.
    #[test]
    fn the_route_table_chooses_what_a_full_scan_would(
        event in event(),
        specs in prop::collection::vec(
            (0..8u8, prop::collection::vec((any::<prop::sample::Index>(), 0..3u8), 0..3)),
            0..24,
        ),
    ) {
        let pairs = reachable(&event);
        let routes: Vec<Route> = specs
            .into_iter()
            .map(|(endpoint, entries)| {
                let filter: FilterMap = entries
                    .into_iter()
                    .map(|(pick, how)| {
                        let (path, value) = &pairs[pick.index(pairs.len())];
                        let value = match how {
                            0 => value.clone(),
                            1 => other_than(value),
                            _ => json!(1),
                        };
                        (path.clone(), value)
                    })
                    .collect();
                Route {
                    endpoint_id: format!("ep_{endpoint}"),
                    partition: u32::from(endpoint % 4),
                    filter: (!filter.is_empty()).then_some(filter),
                    generation: String::new(),
                }
            })
            .collect();
        let mut want: Vec<String> = routes
            .iter()
            .filter(|r| matches(r.filter.as_ref(), &event))
            .map(|r| r.endpoint_id.clone())
            .collect();
        want.sort();
        want.dedup();
        let table = RouteTable::new(routes);
        let got: Vec<String> = table.select(&event).iter().map(|r| r.endpoint_id.clone()).collect();
        prop_assert_eq!(got, want);
    }
}
