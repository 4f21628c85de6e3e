//! Property tests of filter operators: the registry's matcher
//! ([`filter::matches`]) and its indexed routing table
//! ([`routing::RouteTable`]) against a reference matcher written here from
//! the contract alone, on random events and random operator filters.
//!
//! The contract: every entry of a filter holds; `$or` holds when one of its
//! filters does, `$and` when all do. On a path: a plain value is JSON
//! equality; `$eq`/`$in` need the path to hold an equal value, `$ne`/`$nin`
//! are their negations (a missing path satisfies them); `$gt`/`$gte`/`$lt`/
//! `$lte` compare numbers with numbers and RFC 3339 strings as instants,
//! anything else fails; `$exists` says whether the path leads anywhere;
//! `$prefix` needs a string starting with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cmp::Ordering;

use herald_common::model::{FilterMap, StoredEvent};
use herald_registry::filter::matches;
use herald_registry::routing::{Route, RouteTable};
use herald_registry::validate;
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const CASES: u32 = 1_500;

// ------------------------------------------------------------ the reference

fn lookup(event: &StoredEvent, path: &str) -> Option<Value> {
    let mut parts = path.split('.');
    let root = parts.next()?;
    let rest: Vec<&str> = parts.collect();
    let mut node = match root {
        "id" | "type" | "timestamp" if !rest.is_empty() => return None,
        "id" => return Some(json!(event.id)),
        "type" => return Some(json!(event.event_type)),
        "timestamp" => return Some(json!(event.timestamp)),
        "resource" => event.resource.clone()?,
        "data" => event.data.clone(),
        _ => return None,
    };
    for part in rest {
        node = match node {
            Value::Object(mut map) => map.remove(part)?,
            Value::Array(mut items) => {
                let i: usize = part.parse().ok()?;
                if i >= items.len() {
                    return None;
                }
                items.swap_remove(i)
            }
            _ => return None,
        };
    }
    Some(node)
}

fn instant(value: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(value.as_str()?, &Rfc3339).ok()
}

fn order(held: &Value, bound: &Value) -> Option<Ordering> {
    match bound {
        Value::Number(b) => held.as_f64()?.partial_cmp(&b.as_f64()?).filter(|_| held.is_number()),
        Value::String(_) => Some(instant(held)?.cmp(&instant(bound)?)),
        _ => None,
    }
}

fn operator_holds(name: &str, operand: &Value, held: Option<&Value>) -> bool {
    let in_list = |list: &Value| held.is_some_and(|h| list.as_array().unwrap().contains(h));
    match name {
        "$eq" => held == Some(operand),
        "$ne" => held != Some(operand),
        "$in" => in_list(operand),
        "$nin" => !in_list(operand),
        "$gt" => held.and_then(|h| order(h, operand)) == Some(Ordering::Greater),
        "$gte" => matches!(held.and_then(|h| order(h, operand)), Some(Ordering::Greater | Ordering::Equal)),
        "$lt" => held.and_then(|h| order(h, operand)) == Some(Ordering::Less),
        "$lte" => matches!(held.and_then(|h| order(h, operand)), Some(Ordering::Less | Ordering::Equal)),
        "$exists" => held.is_some() == operand.as_bool().unwrap(),
        "$prefix" => held.and_then(Value::as_str).is_some_and(|s| s.starts_with(operand.as_str().unwrap())),
        other => panic!("the generator made an unknown operator {other}"),
    }
}

fn reference(filter: &FilterMap, event: &StoredEvent) -> bool {
    filter.iter().all(|(key, value)| match key.as_str() {
        "$or" => value.as_array().unwrap().iter().any(|f| reference(f.as_object().unwrap(), event)),
        "$and" => value.as_array().unwrap().iter().all(|f| reference(f.as_object().unwrap(), event)),
        path => {
            let held = lookup(event, path);
            match value {
                Value::Object(ops) if ops.keys().any(|k| k.starts_with('$')) => {
                    ops.iter().all(|(name, operand)| operator_holds(name, operand, held.as_ref()))
                }
                plain => held.as_ref() == Some(plain),
            }
        }
    })
}

// ------------------------------------------------------------ generators

const TIMES: &[&str] = &[
    "2026-01-01T00:00:00Z",
    "2026-01-01T01:00:00+01:00",
    "2026-01-01T00:00:00.500Z",
    "2025-12-31T23:59:59Z",
    "2026-06-01T12:00:00-07:00",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-20i64..20).prop_map(|n| json!(n)),
        (-40i32..40).prop_map(|n| json!(f64::from(n) / 4.0)),
        prop::sample::select(TIMES).prop_map(|t| json!(t)),
        "[ab]{0,3}".prop_map(Value::String),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-d]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = StoredEvent> {
    let object =
        || prop::collection::btree_map("[a-d]", tree(), 0..5).prop_map(|m| Value::Object(m.into_iter().collect()));
    (prop::option::of(object()), object(), prop::sample::select(TIMES)).prop_map(|(resource, data, ts)| StoredEvent {
        id: "evt_1".into(),
        event_type: "order.paid".into(),
        timestamp: ts.into(),
        resource,
        data,
    })
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => prop::sample::select(vec!["id", "type", "timestamp"]).prop_map(str::to_owned),
        6 => (prop::sample::select(vec!["data", "resource"]), prop::collection::vec(prop_oneof!["[a-d]", "[0-2]"], 0..3))
            .prop_map(|(root, rest)| std::iter::once(root.to_owned()).chain(rest).collect::<Vec<_>>().join(".")),
    ]
}

/// A valid operator with an operand of the right shape.
fn operator() -> impl Strategy<Value = (String, Value)> {
    let bound = prop_oneof![
        (-20i64..20).prop_map(|n| json!(n)),
        (-40i32..40).prop_map(|n| json!(f64::from(n) / 4.0)),
        prop::sample::select(TIMES).prop_map(|t| json!(t)),
    ];
    prop_oneof![
        scalar().prop_map(|v| ("$eq".to_owned(), v)),
        scalar().prop_map(|v| ("$ne".to_owned(), v)),
        prop::collection::vec(scalar(), 0..4).prop_map(|v| ("$in".to_owned(), Value::Array(v))),
        prop::collection::vec(scalar(), 0..4).prop_map(|v| ("$nin".to_owned(), Value::Array(v))),
        (prop::sample::select(vec!["$gt", "$gte", "$lt", "$lte"]), bound).prop_map(|(op, v)| (op.to_owned(), v)),
        any::<bool>().prop_map(|b| ("$exists".to_owned(), json!(b))),
        "[ab]{0,2}".prop_map(|p| ("$prefix".to_owned(), json!(p))),
    ]
}

fn condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => tree(),
        3 => prop::collection::vec(operator(), 1..3).prop_map(|ops| Value::Object(ops.into_iter().collect())),
    ]
}

fn filter() -> impl Strategy<Value = FilterMap> {
    let flat =
        prop::collection::btree_map(path(), condition(), 1..4).prop_map(|m| m.into_iter().collect::<FilterMap>());
    flat.prop_recursive(3, 16, 3, |inner| {
        (
            prop::collection::btree_map(path(), condition(), 0..3),
            prop::option::of(prop::collection::vec(inner.clone(), 1..3)),
            prop::option::of(prop::collection::vec(inner, 1..3)),
        )
            .prop_map(|(paths, or, and)| {
                let mut map: FilterMap = paths.into_iter().collect();
                if let Some(or) = or {
                    map.insert("$or".into(), Value::Array(or.into_iter().map(Value::Object).collect()));
                }
                if let Some(and) = and {
                    map.insert("$and".into(), Value::Array(and.into_iter().map(Value::Object).collect()));
                }
                if map.is_empty() {
                    map.insert("type".into(), json!("order.paid"));
                }
                map
            })
    })
}

proptest! {
    #![proptest_config(Config { cases: CASES, ..Config::default() })]

    /// Every generated filter is valid, and the matcher agrees with the reference.
    #[test]
    fn the_matcher_agrees_with_the_reference(event in event(), filter in filter()) {
        let raw = serde_json::to_vec(&filter).unwrap();
        prop_assert!(validate::filter(&raw).is_ok(), "{}", String::from_utf8_lossy(&raw));
        prop_assert_eq!(matches(Some(&filter), &event), reference(&filter, &event), "{}", Value::Object(filter.clone()));
    }

    /// The indexed table chooses exactly the endpoints the reference does.
    #[test]
    fn the_route_table_agrees_with_the_reference(
        event in event(),
        specs in prop::collection::vec((0..6u8, prop::option::of(filter())), 0..16),
    ) {
        let routes: Vec<Route> = specs
            .into_iter()
            .map(|(n, filter)| Route { endpoint_id: format!("ep_{n}"), partition: u32::from(n % 4), filter, generation: String::new() })
            .collect();
        let mut want: Vec<String> = routes
            .iter()
            .filter(|r| r.filter.as_ref().is_none_or(|f| reference(f, &event)))
            .map(|r| r.endpoint_id.clone())
            .collect();
        want.sort();
        want.dedup();
        let got: Vec<String> = RouteTable::new(routes).select(&event).iter().map(|r| r.endpoint_id.clone()).collect();
        prop_assert_eq!(got, want);
    }

    /// Operator objects of the wrong shape never pass validation, and the
    /// error names the operator's own path.
    #[test]
    fn wrong_operands_are_refused_by_path(p in path(), op in prop::sample::select(vec![
        ("$in", json!(1)), ("$nin", json!("x")), ("$gt", json!("soon")), ("$lte", json!(true)),
        ("$exists", json!("yes")), ("$prefix", json!(3)), ("$regex", json!("a.*")), ("$gt", json!(null)),
    ])) {
        let (name, operand) = op;
        let condition: FilterMap = [(name.to_owned(), operand)].into_iter().collect();
        let filter: FilterMap = [(p.clone(), Value::Object(condition))].into_iter().collect();
        let raw = serde_json::to_vec(&filter).unwrap();
        let err = validate::filter(&raw).unwrap_err();
        prop_assert_eq!(err.field, format!("filter.{p}.{name}"));
    }

    /// The validator never panics on arbitrary JSON shaped like filters.
    #[test]
    fn the_validator_never_panics(value in tree()) {
        let _ = validate::filter(&serde_json::to_vec(&json!({"data.a": value, "$or": [{"type": value}]})).unwrap());
    }
}
