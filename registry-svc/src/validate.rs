//! Input rules that need no Redis: identifiers, pagination, JSON-valued
//! fields, endpoint headers and metadata, subscription filters.
//!
//! Checks push into a [`Violations`] collector so one answer names every bad
//! field at once, the way an integrator fixing a form wants it.

use std::collections::HashMap;

use herald_common::ids;
use herald_common::model::FilterMap;
use herald_proto::v1::PageRequest;
use serde_json::{Map, Value};

use crate::error::{FieldError, RegistryError, Result};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 1000;
pub const MAX_TENANT_ID: usize = 64;
pub const MAX_EVENT_ID: usize = 128;
pub const MAX_EVENT_TYPE_NAME: usize = 128;
pub const MAX_NAME: usize = 256;
pub const MAX_DESCRIPTION: usize = 1024;
pub const MAX_EVENT_TYPE_DESCRIPTION: usize = 4096;
pub const MAX_HEADERS: usize = 32;
pub const MAX_HEADER_VALUE: usize = 1024;
pub const MAX_METADATA: usize = 32;
pub const MAX_METADATA_KEY: usize = 256;
pub const MAX_METADATA_VALUE: usize = 4096;
pub const MAX_FILTER_ENTRIES: usize = crate::filter::MAX_ENTRIES;
pub const MAX_FILTER_BYTES: usize = 16 * 1024;
pub const MAX_SUBSCRIPTION_TYPES: usize = 256;
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Headers Herald sets itself on every delivery; an endpoint may not override them.
const RESERVED_HEADERS: &[&str] =
    &["content-type", "content-length", "host", "authorization", "user-agent", "traceparent", "tracestate"];
const RESERVED_HEADER_PREFIXES: &[&str] = &["webhook-", "ce-"];

/// Collects every field error of one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    pub fn new() -> Self {
        Violations(Vec::new())
    }

    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }

    /// Records the error of `result`, answering its value when there was none.
    pub fn take<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    pub fn merge(&mut self, err: RegistryError) -> Result<()> {
        match err {
            RegistryError::Invalid(errors) => {
                self.0.extend(errors);
                Ok(())
            }
            other => Err(other),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() { Ok(()) } else { Err(RegistryError::Invalid(self.0)) }
    }
}

/// A validated page request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: usize,
    /// The last id of the previous page; the next page starts after it.
    pub after: Option<String>,
}

/// `limit` 0 means the default; the cursor is the last id of the previous
/// page, which is what keeps lexicographic paging free of gaps and repeats.
pub fn page(request: Option<&PageRequest>) -> Result<Page> {
    let (limit, cursor) = request.map(|p| (p.limit as usize, p.cursor.as_str())).unwrap_or((0, ""));
    let mut v = Violations::new();
    v.check(limit <= MAX_LIMIT, "limit", format!("must be between 1 and {MAX_LIMIT}"));
    v.check(
        cursor.is_empty() || ids::is_valid_external_id(cursor, 256),
        "cursor",
        "is not a cursor returned by a previous page",
    );
    v.finish()?;
    Ok(Page {
        limit: if limit == 0 { DEFAULT_LIMIT } else { limit },
        after: (!cursor.is_empty()).then(|| cursor.to_owned()),
    })
}

/// Cuts a fetched run of `limit + 1` ids into a page and its next cursor.
pub fn split_page(mut ids: Vec<String>, limit: usize) -> (Vec<String>, Option<String>) {
    if ids.len() > limit {
        ids.truncate(limit);
        let next = ids.last().cloned();
        (ids, next)
    } else {
        (ids, None)
    }
}

pub fn tenant_id(field: &str, id: &str) -> Result<(), FieldError> {
    if ids::is_valid_external_id(id, MAX_TENANT_ID) {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be 1 to {MAX_TENANT_ID} letters, digits, '-', '_', '.' or '~'")))
    }
}

/// Tenant ids in requests that name an existing tenant: a malformed one
/// cannot exist, so it is answered like a missing one.
pub fn existing_tenant(id: &str) -> Result<()> {
    if ids::is_valid_external_id(id, MAX_TENANT_ID) {
        Ok(())
    } else if id.is_empty() {
        Err(RegistryError::invalid("tenant", "is required"))
    } else {
        Err(RegistryError::not_found("tenant", id))
    }
}

/// Ids of resources (endpoints, subscriptions, keys) named in a request.
pub fn resource_id(what: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        Err(RegistryError::invalid("id", "is required"))
    } else if ids::is_valid_external_id(id, 128) {
        Ok(())
    } else {
        Err(RegistryError::not_found(what, id))
    }
}

/// Letters, digits, `.`, `_`, `-`; at most 128.
pub fn is_event_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_EVENT_TYPE_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn event_type_name(field: &str, name: &str) -> Result<(), FieldError> {
    if is_event_type_name(name) {
        Ok(())
    } else {
        Err(FieldError::new(field, format!("must be 1 to {MAX_EVENT_TYPE_NAME} letters, digits, '.', '_' or '-'")))
    }
}

pub fn text(v: &mut Violations, field: &str, value: &str, max: usize) {
    v.check(value.chars().count() <= max, field, format!("must be at most {max} characters"));
}

/// Parses a JSON-valued bytes field; empty bytes mean absent.
pub fn json_object(field: &str, bytes: &[u8]) -> Result<Option<Map<String, Value>>, FieldError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(FieldError::new(field, "must be a JSON object")),
        Err(e) => Err(FieldError::new(field, format!("is not valid JSON: {e}"))),
    }
}

/// An RFC 9110 `token`, the grammar of header names.
pub fn is_http_token(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_reserved_header(lower: &str) -> bool {
    RESERVED_HEADERS.contains(&lower) || RESERVED_HEADER_PREFIXES.iter().any(|p| lower.starts_with(p))
}

/// Header names are kept as given but compared case-insensitively.
pub fn headers(v: &mut Violations, headers: &HashMap<String, String>) {
    v.check(headers.len() <= MAX_HEADERS, "headers", format!("at most {MAX_HEADERS} headers"));
    let mut seen = std::collections::HashSet::with_capacity(headers.len());
    let mut names: Vec<&String> = headers.keys().collect();
    names.sort();
    for name in names {
        let field = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if !is_http_token(name) {
            v.add(field, "is not a valid header name");
            continue;
        }
        if is_reserved_header(&lower) {
            v.add(field, "is set by Herald and cannot be overridden");
            continue;
        }
        if !seen.insert(lower) {
            v.add(field, "is given more than once");
            continue;
        }
        let value = &headers[name];
        if value.len() > MAX_HEADER_VALUE {
            v.add(field, format!("value must be at most {MAX_HEADER_VALUE} characters"));
        } else if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            v.add(field, "value may not contain control characters");
        }
    }
}

pub fn metadata(v: &mut Violations, field: &str, metadata: &HashMap<String, String>, max_entries: usize) {
    v.check(metadata.len() <= max_entries, field, format!("at most {max_entries} entries"));
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_METADATA_KEY {
            v.add(format!("{field}.{key}"), format!("keys must be 1 to {MAX_METADATA_KEY} characters"));
        } else if value.len() > MAX_METADATA_VALUE {
            v.add(format!("{field}.{key}"), format!("values must be at most {MAX_METADATA_VALUE} characters"));
        }
    }
}

/// A subscription filter (see [`crate::filter`]), checked and kept as
/// given. An empty object is the same as no filter.
pub fn filter(bytes: &[u8]) -> Result<Option<FilterMap>, FieldError> {
    if bytes.len() > MAX_FILTER_BYTES {
        return Err(FieldError::new("filter", format!("must be at most {MAX_FILTER_BYTES} bytes of JSON")));
    }
    let Some(map) = json_object("filter", bytes)? else { return Ok(None) };
    crate::filter::Filter::parse(&map)?;
    Ok((!map.is_empty()).then_some(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn page_defaults_and_limits() {
        assert_eq!(page(None).unwrap(), Page { limit: 50, after: None });
        let p = page(Some(&PageRequest { limit: 1000, cursor: "ep_01".into() })).unwrap();
        assert_eq!(p, Page { limit: 1000, after: Some("ep_01".into()) });
        assert!(page(Some(&PageRequest { limit: 1001, cursor: String::new() })).is_err());
        assert!(page(Some(&PageRequest { limit: 10, cursor: "(x".into() })).is_err());
    }

    #[test]
    fn split_page_sets_cursor_only_when_more_exist() {
        let ids: Vec<String> = (0..4).map(|i| format!("id{i}")).collect();
        let (page, next) = split_page(ids.clone(), 3);
        assert_eq!(page, ["id0", "id1", "id2"]);
        assert_eq!(next.as_deref(), Some("id2"));
        let (page, next) = split_page(ids[..3].to_vec(), 3);
        assert_eq!(page.len(), 3);
        assert_eq!(next, None);
    }

    #[test]
    fn event_type_names() {
        assert!(is_event_type_name("order.created_v2-beta"));
        assert!(!is_event_type_name("order created"));
        assert!(!is_event_type_name("a:b"));
        assert!(!is_event_type_name(""));
        assert!(!is_event_type_name(&"x".repeat(129)));
    }

    #[test]
    fn headers_refuse_reserved_and_invalid_names() {
        let mut v = Violations::new();
        headers(&mut v, &map(&[("X-Tenant", "acme"), ("X-Trace-Id", "1")]));
        assert!(v.is_empty());
        for bad in ["Content-Type", "authorization", "Webhook-Id", "ce-type", "Host", "bad header", "X\u{e9}"] {
            let mut v = Violations::new();
            headers(&mut v, &map(&[(bad, "x")]));
            assert!(!v.is_empty(), "{bad}");
        }
        let mut v = Violations::new();
        headers(&mut v, &map(&[("X-Long", &"a".repeat(1025))]));
        assert!(!v.is_empty());
        let mut v = Violations::new();
        headers(&mut v, &map(&[("X-Evil", "a\r\nb: c")]));
        assert!(!v.is_empty());
        let many: HashMap<String, String> = (0..33).map(|i| (format!("X-H{i}"), "v".to_owned())).collect();
        let mut v = Violations::new();
        headers(&mut v, &many);
        assert!(!v.is_empty());
    }

    #[test]
    fn filters_are_dotted_paths_from_event_roots() {
        let f = filter(br#"{"resource.orgShortName":"tfoinc","data.a.b":1,"type":"x"}"#).unwrap().unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(filter(b"").unwrap(), None);
        assert_eq!(filter(b"{}").unwrap(), None);
        assert!(filter(b"[1]").is_err());
        assert!(filter(b"{").is_err());
        assert!(filter(br#"{"orgShortName":"x"}"#).is_err());
        assert!(filter(br#"{"data..a":"x"}"#).is_err());
        assert!(filter(br#"{"id.x":"x"}"#).is_err());
        let big: Map<String, Value> = (0..33).map(|i| (format!("data.k{i}"), Value::from(i))).collect();
        assert!(filter(&serde_json::to_vec(&big).unwrap()).is_err());
    }

    #[test]
    fn json_object_fields() {
        assert_eq!(json_object("data", b"").unwrap(), None);
        assert!(json_object("data", br#"{"a":1}"#).unwrap().is_some());
        assert_eq!(json_object("data", b"1").unwrap_err().field, "data");
        assert!(json_object("data", b"nope").is_err());
    }

    #[test]
    fn tenant_ids() {
        assert!(tenant_id("id", "acme-1").is_ok());
        assert!(tenant_id("id", "a:b").is_err());
        assert!(matches!(existing_tenant("a b"), Err(RegistryError::NotFound(_))));
        assert!(matches!(existing_tenant(""), Err(RegistryError::Invalid(_))));
    }
}
