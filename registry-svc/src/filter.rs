//! Subscription filters: parsing (with the errors an integrator sees) and
//! matching against a stored event.
//!
//! A filter is a JSON object whose entries must all hold. An entry is a
//! dotted event path (`data.amount`, rooted at `id`, `type`, `timestamp`,
//! `resource` or `data`) mapped to either a plain value, which the event
//! must hold there (JSON equality: `1` and `1.0` differ), or an object of
//! operators, all of which must hold: `$eq`, `$ne`, `$in`, `$nin`, `$gt`,
//! `$gte`, `$lt`, `$lte` (numbers, or RFC 3339 strings compared as
//! instants), `$exists` (bool) and `$prefix` (string). An entry may also be
//! `"$or": [filter, …]` or `"$and": [filter, …]`.
//!
//! A path that leads nowhere holds nothing: every test on it fails except
//! `$ne`, `$nin` (the negations of `$eq`, `$in`) and `$exists: false`.
//! Stored filters are parsed once per routing table, not per event.

use std::cmp::Ordering;

use herald_common::model::{FilterMap, StoredEvent};
use serde_json::{Number, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::FieldError;

/// Most entries in one filter object (the top level or a nested one).
pub const MAX_ENTRIES: usize = 32;
/// Most nested `$or`/`$and` levels.
pub const MAX_DEPTH: usize = 4;
/// Most conditions in a whole filter: entries, operators, `$in` values.
pub const MAX_TERMS: usize = 256;
const MAX_PATH: usize = 512;

/// Event paths a filter may start from: the fields of the stored event.
const ROOTS: &[&str] = &["id", "type", "timestamp", "resource", "data"];
const OPERATORS: &str = "$eq, $ne, $in, $nin, $gt, $gte, $lt, $lte, $exists, $prefix";

/// A parsed filter: a conjunction of entries.
#[derive(Clone, Debug)]
pub struct Filter {
    entries: Vec<Entry>,
}

#[derive(Clone, Debug)]
enum Entry {
    Path(String, Test),
    Or(Vec<Filter>),
    And(Vec<Filter>),
}

#[derive(Clone, Debug)]
enum Test {
    Equals(Value),
    /// All must hold.
    Ops(Vec<Op>),
}

#[derive(Clone, Debug)]
enum Op {
    Eq(Value),
    Ne(Value),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Cmp(Ordering, bool, Bound),
    Exists(bool),
    Prefix(String),
}

#[derive(Clone, Debug)]
enum Bound {
    Number(Number),
    Instant(OffsetDateTime),
}

/// What the event holds at a path: a JSON value, or one of the event's own
/// strings (`id`, `type`, `timestamp`).
#[derive(Clone, Copy)]
pub enum Held<'e> {
    Json(&'e Value),
    Text(&'e str),
}

impl<'e> Held<'e> {
    fn equals(&self, expected: &Value) -> bool {
        match self {
            Held::Json(value) => *value == expected,
            Held::Text(text) => expected.as_str() == Some(text),
        }
    }

    fn as_str(self) -> Option<&'e str> {
        match self {
            Held::Json(value) => value.as_str(),
            Held::Text(text) => Some(text),
        }
    }

    /// The key of the routing index: scalars compare equal exactly when
    /// their JSON texts do.
    pub fn scalar_key(&self) -> Option<String> {
        match self {
            Held::Json(value) => scalar_key(value),
            Held::Text(text) => serde_json::to_string(text).ok(),
        }
    }

    fn compare(&self, bound: &Bound) -> Option<Ordering> {
        match (self, bound) {
            (Held::Json(Value::Number(n)), Bound::Number(b)) => compare_numbers(n, b),
            (_, Bound::Instant(b)) => Some(OffsetDateTime::parse(self.as_str()?, &Rfc3339).ok()?.cmp(b)),
            _ => None,
        }
    }
}

/// The JSON text of a scalar; `None` for arrays and objects.
pub fn scalar_key(value: &Value) -> Option<String> {
    match value {
        Value::Array(_) | Value::Object(_) => None,
        scalar => serde_json::to_string(scalar).ok(),
    }
}

/// Exact for integers, by `f64` otherwise.
fn compare_numbers(a: &Number, b: &Number) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Some(x.cmp(&y));
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return Some(x.cmp(&y));
    }
    a.as_f64()?.partial_cmp(&b.as_f64()?)
}

/// What `event` holds at the dotted `path`, if anything.
pub fn held_at<'e>(event: &'e StoredEvent, path: &str) -> Option<Held<'e>> {
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

impl Op {
    fn holds(&self, held: Option<Held<'_>>) -> bool {
        let any_of = |values: &[Value]| held.is_some_and(|h| values.iter().any(|v| h.equals(v)));
        match self {
            Op::Eq(value) => held.is_some_and(|h| h.equals(value)),
            Op::Ne(value) => !held.is_some_and(|h| h.equals(value)),
            Op::In(values) => any_of(values),
            Op::Nin(values) => !any_of(values),
            Op::Cmp(want, or_equal, bound) => held
                .and_then(|h| h.compare(bound))
                .is_some_and(|got| got == *want || (*or_equal && got == Ordering::Equal)),
            Op::Exists(want) => held.is_some() == *want,
            Op::Prefix(prefix) => held.and_then(|h| h.as_str()).is_some_and(|s| s.starts_with(prefix.as_str())),
        }
    }
}

impl Filter {
    /// Parses a filter, naming the offending field in errors:
    /// `filter.data.amount.$gt`, `filter.$or[1].type`.
    pub fn parse(map: &FilterMap) -> Result<Filter, FieldError> {
        let mut terms = 0;
        let filter = parse_object(map, "filter", 0, &mut terms)?;
        if terms > MAX_TERMS {
            return Err(FieldError::new("filter", format!("at most {MAX_TERMS} conditions")));
        }
        Ok(filter)
    }

    pub fn matches(&self, event: &StoredEvent) -> bool {
        self.entries.iter().all(|entry| match entry {
            Entry::Path(path, test) => {
                let held = held_at(event, path);
                match test {
                    Test::Equals(value) => held.is_some_and(|h| h.equals(value)),
                    Test::Ops(ops) => ops.iter().all(|op| op.holds(held)),
                }
            }
            Entry::Or(filters) => filters.iter().any(|f| f.matches(event)),
            Entry::And(filters) => filters.iter().all(|f| f.matches(event)),
        })
    }

    /// The first top-level entry that demands one scalar at a path (a
    /// plain value or `$eq`): the routing table indexes the filter by it,
    /// since no event can match without holding that value there.
    pub fn index_entry(&self) -> Option<(&str, String)> {
        self.entries.iter().find_map(|entry| match entry {
            Entry::Path(path, Test::Equals(value)) => Some((path.as_str(), scalar_key(value)?)),
            Entry::Path(path, Test::Ops(ops)) => ops.iter().find_map(|op| match op {
                Op::Eq(value) => Some((path.as_str(), scalar_key(value)?)),
                _ => None,
            }),
            _ => None,
        })
    }
}

/// No filter matches everything; a stored filter that no longer parses
/// matches nothing rather than everything.
pub fn matches(filter: Option<&FilterMap>, event: &StoredEvent) -> bool {
    filter.is_none_or(|f| Filter::parse(f).is_ok_and(|f| f.matches(event)))
}

fn parse_object(map: &FilterMap, field: &str, depth: usize, terms: &mut usize) -> Result<Filter, FieldError> {
    if map.len() > MAX_ENTRIES {
        return Err(FieldError::new(field, format!("at most {MAX_ENTRIES} entries")));
    }
    let mut entries = Vec::with_capacity(map.len());
    for (key, value) in map {
        *terms += 1;
        let here = format!("{field}.{key}");
        let entry = match key.as_str() {
            "$or" => Entry::Or(parse_list(value, &here, depth + 1, terms)?),
            "$and" => Entry::And(parse_list(value, &here, depth + 1, terms)?),
            other if other.starts_with('$') => {
                return Err(FieldError::new(here, "is not a filter combinator ($or, $and) nor an event path"));
            }
            path => {
                check_path(path, &here)?;
                Entry::Path(path.to_owned(), parse_test(value, &here, terms)?)
            }
        };
        entries.push(entry);
    }
    Ok(Filter { entries })
}

fn parse_list(value: &Value, field: &str, depth: usize, terms: &mut usize) -> Result<Vec<Filter>, FieldError> {
    if depth > MAX_DEPTH {
        return Err(FieldError::new(field, format!("$or and $and nest at most {MAX_DEPTH} deep")));
    }
    let Some(items) = value.as_array().filter(|items| !items.is_empty() && items.len() <= MAX_ENTRIES) else {
        return Err(FieldError::new(field, format!("must be an array of 1 to {MAX_ENTRIES} filter objects")));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) if !map.is_empty() => parse_object(map, &format!("{field}[{i}]"), depth, terms),
            _ => Err(FieldError::new(format!("{field}[{i}]"), "must be a non-empty filter object")),
        })
        .collect()
}

fn check_path(path: &str, field: &str) -> Result<(), FieldError> {
    let mut segments = path.split('.');
    let root = segments.next().unwrap_or_default();
    if !ROOTS.contains(&root) {
        return Err(FieldError::new(field, "paths start with id, type, timestamp, resource or data"));
    }
    if path.split('.').any(str::is_empty) || path.len() > MAX_PATH {
        return Err(FieldError::new(field, "is not a dotted path"));
    }
    if matches!(root, "id" | "type" | "timestamp") && segments.next().is_some() {
        return Err(FieldError::new(field, format!("{root} has no fields")));
    }
    Ok(())
}

/// A plain value, or an object whose keys are all operators. An object
/// with no `$` key is a plain value (an object the event must hold).
fn parse_test(value: &Value, field: &str, terms: &mut usize) -> Result<Test, FieldError> {
    let Value::Object(ops) = value else { return Ok(Test::Equals(value.clone())) };
    let dollars = ops.keys().filter(|k| k.starts_with('$')).count();
    if dollars == 0 {
        return Ok(Test::Equals(value.clone()));
    }
    if dollars != ops.len() {
        return Err(FieldError::new(field, "mixes operators ($…) with plain keys"));
    }
    let mut parsed = Vec::with_capacity(ops.len());
    for (name, operand) in ops {
        *terms += 1;
        let here = format!("{field}.{name}");
        let list = |terms: &mut usize| match operand {
            Value::Array(items) => {
                *terms += items.len();
                Ok(items.clone())
            }
            _ => Err(FieldError::new(&here, "must be an array")),
        };
        let bound = || match operand {
            Value::Number(n) => Ok(Bound::Number(n.clone())),
            Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
                .map(Bound::Instant)
                .map_err(|_| FieldError::new(&here, "must be a number or an RFC 3339 time")),
            _ => Err(FieldError::new(&here, "must be a number or an RFC 3339 time")),
        };
        parsed.push(match name.as_str() {
            "$eq" => Op::Eq(operand.clone()),
            "$ne" => Op::Ne(operand.clone()),
            "$in" => Op::In(list(terms)?),
            "$nin" => Op::Nin(list(terms)?),
            "$gt" => Op::Cmp(Ordering::Greater, false, bound()?),
            "$gte" => Op::Cmp(Ordering::Greater, true, bound()?),
            "$lt" => Op::Cmp(Ordering::Less, false, bound()?),
            "$lte" => Op::Cmp(Ordering::Less, true, bound()?),
            "$exists" => Op::Exists(operand.as_bool().ok_or_else(|| FieldError::new(&here, "must be true or false"))?),
            "$prefix" => Op::Prefix(
                operand.as_str().map(str::to_owned).ok_or_else(|| FieldError::new(&here, "must be a string"))?,
            ),
            _ => return Err(FieldError::new(here, format!("is not a filter operator ({OPERATORS})"))),
        });
    }
    Ok(Test::Ops(parsed))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event() -> StoredEvent {
        StoredEvent {
            id: "evt_1".into(),
            event_type: "order.created".into(),
            timestamp: "2024-05-07T19:18:32.076Z".into(),
            resource: Some(json!({"org": "tfoinc"})),
            data: json!({"amount": 120, "price": 9.5, "at": "2024-05-07T21:18:32+02:00", "sku": "AB-1", "n": null}),
        }
    }

    fn parsed(value: Value) -> Result<Filter, String> {
        Filter::parse(value.as_object().unwrap()).map_err(|e| e.field)
    }

    fn check(value: Value) -> bool {
        parsed(value).unwrap().matches(&event())
    }

    #[test]
    fn operators_hold_as_documented() {
        assert!(check(json!({"data.amount": {"$gt": 100, "$lte": 120}})));
        assert!(!check(json!({"data.amount": {"$gt": 120}})));
        assert!(check(json!({"data.price": {"$gte": 9.5, "$lt": 10}})));
        assert!(check(
            json!({"data.at": {"$gte": "2024-05-07T19:18:32Z"}, "timestamp": {"$lt": "2025-01-01T00:00:00Z"}})
        ));
        assert!(!check(json!({"data.at": {"$gt": "2024-05-07T19:18:32.076Z"}})));
        assert!(check(json!({"type": {"$in": ["a", "order.created"]}, "data.sku": {"$prefix": "AB-"}})));
        assert!(check(json!({"data.missing": {"$ne": 1, "$nin": [1], "$exists": false}, "data.n": {"$exists": true}})));
        assert!(!check(json!({"data.missing": {"$lt": 5}})));
        assert!(!check(json!({"data.sku": {"$gt": 5}})), "a string is not compared with a number");
        assert!(check(json!({"$or": [{"type": "nope"}, {"resource.org": "tfoinc"}]})));
        assert!(!check(json!({"$and": [{"type": "order.created"}, {"resource.org": "x"}]})));
        assert!(check(json!({"data.amount": {"$eq": 120}, "$or": [{"$and": [{"data.sku": {"$exists": true}}]}]})));
    }

    #[test]
    fn errors_name_the_path() {
        assert_eq!(parsed(json!({"data.amount": {"$gt": "soon"}})).unwrap_err(), "filter.data.amount.$gt");
        assert_eq!(parsed(json!({"data.amount": {"$regex": "x"}})).unwrap_err(), "filter.data.amount.$regex");
        assert_eq!(parsed(json!({"data.a": {"$in": 1}})).unwrap_err(), "filter.data.a.$in");
        assert_eq!(parsed(json!({"data.a": {"$exists": 1}})).unwrap_err(), "filter.data.a.$exists");
        assert_eq!(parsed(json!({"data.a": {"$eq": 1, "b": 2}})).unwrap_err(), "filter.data.a");
        assert_eq!(parsed(json!({"$or": [{"type": "a"}, {"x.y": 1}]})).unwrap_err(), "filter.$or[1].x.y");
        assert_eq!(parsed(json!({"$or": []})).unwrap_err(), "filter.$or");
        assert_eq!(parsed(json!({"$not": [{"type": "a"}]})).unwrap_err(), "filter.$not");
        let deep = json!({"$or": [{"$or": [{"$or": [{"$or": [{"$or": [{"type": "a"}]}]}]}]}]});
        assert_eq!(parsed(deep).unwrap_err(), "filter.$or[0].$or[0].$or[0].$or[0].$or");
        let wide: Vec<Value> = (0..300).map(Value::from).collect();
        assert_eq!(parsed(json!({"data.a": {"$in": wide}})).unwrap_err(), "filter");
    }

    #[test]
    fn top_level_equality_is_the_index() {
        let key = |v: Value| parsed(v).unwrap().index_entry().map(|(p, k)| (p.to_owned(), k));
        assert_eq!(key(json!({"data.amount": {"$gt": 1}, "type": "x"})), Some(("type".into(), "\"x\"".into())));
        assert_eq!(key(json!({"data.amount": {"$eq": 5}})), Some(("data.amount".into(), "5".into())));
        assert_eq!(key(json!({"$or": [{"type": "x"}]})), None);
        assert_eq!(key(json!({"data.a": [1]})), None);
    }
}
