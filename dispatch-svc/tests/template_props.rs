//! Property tests of request body rendering ([`render`]).
//!
//! The `template` format is checked against an oracle written here from the
//! contract alone: a string leaf `"$.<root>[.<segment>]*"` with a known root
//! (`id`, `type`, `time`, `timestamp`, `resource`, `data`) and no empty
//! segment is a placeholder; `id`, `type` and `time`/`timestamp` become the
//! event's strings (and `null` with a sub-path, as strings have no fields);
//! `resource` and `data` paths follow object keys and, on arrays, decimal
//! indices, giving `null` when anything on the way is missing. Every other
//! leaf, and every object key, is kept verbatim. The rendered bytes must be
//! exactly the oracle's value as serde_json writes it.
//!
//! The other formats must always give valid JSON that carries the event's id,
//! type, time and data, and `json` must send the stored bytes untouched,
//! whatever their layout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::Bytes;
use herald_common::model::{EndpointRecord, Format, StoredEvent};
use herald_dispatch::send::render::{LoadedEvent, RenderPlan, Rendered, render};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value, json};

/// Cases per property: every property below runs in well under a second at
/// this count, even unoptimised.
const CASES: u32 = 2_000;

/// Deepest template and data the deep-nesting property builds. A template
/// or event must get through serde_json's parser (128 levels) to be stored,
/// so neither can be much deeper than this in production; together they
/// make a body nearly twice as deep.
const MAX_DEPTH: usize = 120;

// ---------------------------------------------------------------- fixtures

/// An endpoint as the dispatcher reads it from Redis; built from JSON so that
/// fields added with serde defaults later need no change here.
fn endpoint(format: Format, template: Option<Value>) -> EndpointRecord {
    let mut record = json!({
        "id": "ep_1",
        "tenant": "acme",
        "url": "https://example.com/hook",
        "format": format,
        "signingSecrets": [],
        "createdAt": 0,
        "updatedAt": 0,
    });
    if let Some(template) = template {
        record["template"] = template;
    }
    serde_json::from_value(record).unwrap()
}

/// Stores the event as the registry does (serialised once) and loads it as
/// the dispatcher does (parsed from the stored bytes).
fn load(event: &StoredEvent) -> Arc<LoadedEvent> {
    Arc::new(LoadedEvent::parse("", Bytes::from(serde_json::to_vec(event).unwrap())).unwrap())
}

fn body(rendered: &Rendered) -> Value {
    serde_json::from_slice(&rendered.body).unwrap()
}

// ---------------------------------------------------------------- oracle

#[derive(Clone, Copy, Debug)]
enum Root {
    Id,
    Type,
    Time,
    Resource,
    Data,
}

/// Whether a template string leaf is a placeholder, and for what.
fn placeholder(s: &str) -> Option<(Root, Vec<&str>)> {
    let rest = s.strip_prefix("$.")?;
    let segments: Vec<&str> = rest.split('.').collect();
    if segments.iter().any(|segment| segment.is_empty()) {
        return None;
    }
    let root = match segments[0] {
        "id" => Root::Id,
        "type" => Root::Type,
        "time" | "timestamp" => Root::Time,
        "resource" => Root::Resource,
        "data" => Root::Data,
        _ => return None,
    };
    Some((root, segments[1..].to_vec()))
}

/// Object keys, and decimal indices on arrays.
fn walk<'a>(mut value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(*segment)?,
            Value::Array(items) if segment.bytes().all(|b| b.is_ascii_digit()) => {
                items.get(segment.parse::<usize>().ok()?)?
            }
            _ => return None,
        };
    }
    Some(value)
}

fn resolve(root: Root, path: &[&str], event: &StoredEvent) -> Value {
    let string = |s: &str| if path.is_empty() { Value::String(s.to_owned()) } else { Value::Null };
    match root {
        Root::Id => string(&event.id),
        Root::Type => string(&event.event_type),
        Root::Time => string(&event.timestamp),
        Root::Resource => event.resource.as_ref().and_then(|r| walk(r, path)).cloned().unwrap_or(Value::Null),
        Root::Data => walk(&event.data, path).cloned().unwrap_or(Value::Null),
    }
}

/// What the template must render to for this event.
fn expected(template: &Value, event: &StoredEvent) -> Value {
    match template {
        Value::String(s) => match placeholder(s) {
            Some((root, path)) => resolve(root, &path, event),
            None => template.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(|item| expected(item, event)).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), expected(v, event))).collect()),
        _ => template.clone(),
    }
}

/// JSON equality where floats may differ in the last place: serde_json's
/// default float parser is not exactly round-trip, and the formats other
/// than `json` and `template` are checked by reading their body back.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => {
                (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 2.0
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------- strategies

/// Keys of event objects: a small alphabet so that template paths often
/// hit, plus the awkward ones (empty, dotted, placeholder-like, unicode).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(&["a", "b", "c", "0", "1", "10", "ü", "€x"][..]).prop_map(str::to_owned),
        1 => prop::sample::select(&["", "a.b", "$.id", "$.data", " ", "+1"][..]).prop_map(str::to_owned),
        1 => ".{0,6}",
    ]
}

/// One path segment as a template may write it (never a `.`; `+` aside,
/// see `index_segments_are_parsed_leniently`).
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(&["a", "b", "c", "0", "1", "2", "10", "01", "ü", "€x", "x"][..]).prop_map(str::to_owned),
        1 => "[0-9]{1,21}",
        1 => "[^.+]{1,4}",
    ]
}

fn placeholder_like() -> impl Strategy<Value = String> {
    let root = prop_oneof![
        8 => prop::sample::select(&["data", "resource", "id", "type", "time", "timestamp"][..]),
        1 => prop::sample::select(&["", "Data", "DATA", "ids", "foo", "$", " data", "data "][..]),
    ];
    let segments = prop::collection::vec(prop_oneof![9 => segment(), 1 => Just(String::new())], 0..5);
    (root, segments).prop_map(|(root, segments)| {
        let mut s = format!("$.{root}");
        for segment in segments {
            s.push('.');
            s.push_str(&segment);
        }
        s
    })
}

fn template_string() -> BoxedStrategy<String> {
    prop_oneof![
        6 => placeholder_like(),
        2 => prop::sample::select(
            &[
                "$", "$.", "$..", "$.data.", "$.data..a", "$.data.a.b", "$.resource.x", "$.id.x", "$.type.a",
                "$.foo", " $.id", "$.id ", "plain $.id", "$.data.0", "$.data.résumé", "€$.data", "$.$.data",
                "$.data.a\u{0}b", "$.data.\u{feff}", "",
            ][..]
        )
        .prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "\\$\\.?.{0,10}",
    ]
    .boxed()
}

fn plain_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9 ]{0,8}",
        1 => prop::sample::select(&["$.id", "$.data", "\"", "\\", "\u{0}", "\u{2028}", "😀", "é"][..])
            .prop_map(str::to_owned),
        1 => any::<String>(),
    ]
    .boxed()
}

fn scalar(strings: BoxedStrategy<String>) -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..300).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("a finite number", |f| Number::from_f64(f).map(Value::Number)),
        (-1000i32..1000).prop_map(|n| Value::from(f64::from(n) / 8.0)),
        strings.prop_map(Value::String),
    ]
    .boxed()
}

/// Nested objects and arrays of `leaf`s, `depth` levels at most.
fn json_tree(leaf: BoxedStrategy<Value>, depth: u32) -> BoxedStrategy<Value> {
    leaf.prop_recursive(depth, 64, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..5).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Templates are JSON objects: the registry refuses anything else.
fn template() -> BoxedStrategy<Value> {
    json_tree(scalar(template_string()), 6)
        .prop_map(|tree| if tree.is_object() { tree } else { json!({ "v": tree }) })
        .boxed()
}

fn data() -> BoxedStrategy<Value> {
    json_tree(scalar(plain_string()), 6)
}

/// Ids, types and times as the registry accepts them, and (rarely) any
/// string at all, as a corrupt or hand-written record could hold.
fn stored_event() -> impl Strategy<Value = StoredEvent> {
    let id = prop_oneof![8 => "[A-Za-z0-9._~-]{1,40}", 1 => any::<String>()];
    let event_type = prop_oneof![8 => "[A-Za-z0-9._-]{1,40}", 1 => any::<String>()];
    let timestamp = prop_oneof![
        8 => "20[0-9]{2}-[01][0-9]-[0-3][0-9]T[0-2][0-9]:[0-5][0-9]:[0-5][0-9](\\.[0-9]{3})?Z",
        1 => any::<String>(),
    ];
    (id, event_type, timestamp, prop::option::of(data()), data()).prop_map(
        |(id, event_type, timestamp, resource, data)| StoredEvent { id, event_type, timestamp, resource, data },
    )
}

/// Whether the registry would have accepted these attributes, in which case
/// every format must render.
fn is_publishable(event: &StoredEvent) -> bool {
    let token = |s: &str, extra: &[u8]| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra.contains(&b) || b == b'.' || b == b'-')
    };
    token(&event.id, b"_~") && token(&event.event_type, b"_") && token(&event.timestamp, b":")
}

/// A template nested `depth` levels deep (objects and arrays alternating),
/// with `leaf` at the bottom.
fn nest(depth: usize, leaf: Value) -> Value {
    (0..depth).fold(leaf, |inner, level| if level % 2 == 0 { json!({"k": inner}) } else { json!([1, inner]) })
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(Config::with_cases(CASES))]

    /// Any template renders for any event, without a panic, to exactly what
    /// the oracle computes, and the body is valid JSON.
    #[test]
    fn template_renders_what_the_oracle_says(template in template(), event in stored_event()) {
        let loaded = load(&event);
        let rendered = render(&endpoint(Format::Template, Some(template.clone())), std::slice::from_ref(&loaded));
        prop_assert!(rendered.is_ok(), "render failed: {:?}", rendered.err());
        let rendered = rendered.unwrap();
        prop_assert_eq!(rendered.content_type.as_bytes(), b"application/json");
        let parsed = serde_json::from_slice::<Value>(&rendered.body);
        prop_assert!(parsed.is_ok(), "invalid JSON: {:?}", parsed.err());
        let want = serde_json::to_vec(&expected(&template, loaded.event())).unwrap();
        prop_assert_eq!(
            String::from_utf8_lossy(&rendered.body),
            String::from_utf8_lossy(&want),
            "template {}",
            template
        );
    }

    /// A template without placeholders is sent exactly as written, however
    /// close its strings come to being one (`$.foo`, `$.data..a`, `$.`).
    #[test]
    fn non_placeholder_leaves_are_kept_verbatim(
        template in json_tree(
            scalar(template_string().prop_map(|s| if placeholder(&s).is_some() { format!(" {s}") } else { s }).boxed()),
            6,
        ).prop_map(|tree| if tree.is_object() { tree } else { json!({ "v": tree }) }),
        event in stored_event(),
    ) {
        let rendered = render(&endpoint(Format::Template, Some(template.clone())), &[load(&event)]).unwrap();
        let want_bytes = serde_json::to_vec(&template).unwrap();
        prop_assert_eq!(rendered.body.as_ref(), want_bytes.as_slice());
    }

    /// `"$.data.<path>"` (and `"$.resource.<path>"`) gives exactly the value
    /// at that path, and `null` one step past the end of the data: a missing
    /// key, an index out of range or not a number, a field of a scalar.
    #[test]
    fn paths_give_the_value_at_that_path(
        event in stored_event(),
        on_resource in any::<bool>(),
        choices in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        overshoot in prop::option::of((any::<prop::sample::Index>(), "[a-z]{1,3}")),
        wrapped in any::<bool>(),
    ) {
        let loaded = load(&event);
        let (root, start) = if on_resource {
            ("resource", loaded.event().resource.as_ref())
        } else {
            ("data", Some(&loaded.event().data))
        };
        let mut path: Vec<String> = Vec::new();
        let mut node = start;
        // Walk down through keys a template can name (no `.`, not empty).
        for choice in &choices {
            let step = match node {
                Some(Value::Object(map)) => {
                    let keys: Vec<&String> = map.keys().filter(|k| !k.is_empty() && !k.contains('.')).collect();
                    if keys.is_empty() { break }
                    let k = keys[choice.index(keys.len())];
                    (k.clone(), map.get(k))
                }
                Some(Value::Array(items)) if !items.is_empty() => {
                    let i = choice.index(items.len());
                    (i.to_string(), items.get(i))
                }
                _ => break,
            };
            path.push(step.0);
            node = step.1;
        }
        let mut want = node.cloned().unwrap_or(Value::Null);
        if let Some((choice, word)) = overshoot {
            let miss = match node {
                Some(Value::Object(map)) => (0..).map(|n| format!("{word}{n}")).find(|k| !map.contains_key(k)).unwrap(),
                Some(Value::Array(items)) => {
                    let misses = [items.len().to_string(), "x".into(), "18446744073709551616".into(), "-1".into()];
                    misses[choice.index(misses.len())].clone()
                }
                _ => word,
            };
            path.push(miss);
            want = Value::Null;
        }
        let placeholder = std::iter::once(format!("$.{root}")).chain(path).collect::<Vec<_>>().join(".");
        let (template, want) = if wrapped {
            (json!({"v": placeholder, "w": [placeholder, "x"]}), json!({"v": want, "w": [want, "x"]}))
        } else {
            (Value::String(placeholder), want)
        };
        let rendered = render(&endpoint(Format::Template, Some(template.clone())), &[loaded]).unwrap();
        let want_bytes = serde_json::to_vec(&want).unwrap();
        prop_assert_eq!(
            String::from_utf8_lossy(&rendered.body),
            String::from_utf8_lossy(&want_bytes),
            "template {}",
            template
        );
    }

    /// Templates and data nested up to [`MAX_DEPTH`] levels each render
    /// (the body is up to twice as deep) without overflowing anything, to
    /// exactly the oracle's bytes.
    #[test]
    fn deep_nesting_renders(
        template_depth in 0..=MAX_DEPTH,
        data_depth in 0..=MAX_DEPTH,
        leaf in template_string(),
        event in stored_event(),
    ) {
        let mut event = event;
        // The data path "a.0.a.0…" runs to the bottom of the data.
        let mut data = json!("bottom");
        let mut path = Vec::new();
        for level in 0..data_depth {
            data = if level % 2 == 0 { json!({"a": data}) } else { json!([data, 2]) };
        }
        for level in (0..data_depth).rev() {
            path.push(if level % 2 == 0 { "a" } else { "0" });
        }
        event.data = data;
        let loaded = load(&event);
        let to_bottom = std::iter::once("$.data").chain(path.iter().copied()).collect::<Vec<_>>().join(".");
        let template = nest(template_depth, json!({"bottom": to_bottom, "other": leaf, "whole": "$.data"}));
        let rendered = render(&endpoint(Format::Template, Some(template.clone())), std::slice::from_ref(&loaded)).unwrap();
        let want = expected(&template, loaded.event());
        let want_bytes = serde_json::to_vec(&want).unwrap();
        prop_assert_eq!(rendered.body.as_ref(), want_bytes.as_slice());
        let mut bottom = &want;
        for _ in 0..template_depth {
            bottom = match bottom {
                Value::Object(map) => &map["k"],
                Value::Array(items) => &items[1],
                _ => unreachable!(),
            };
        }
        prop_assert_eq!(&bottom["bottom"], &json!("bottom"));
        // serde_json reads back only 128 levels; within that, check the
        // body parses as well.
        if template_depth + data_depth < 120 {
            prop_assert!(serde_json::from_slice::<Value>(&rendered.body).is_ok());
        }
        prop_assert!(render(&endpoint(Format::Template, Some(template)), &[loaded.clone(), loaded]).is_err());
    }

    /// `json` sends the stored bytes themselves, whatever their layout: key
    /// order, whitespace, fields Herald does not know.
    #[test]
    fn json_is_the_stored_bytes(event in stored_event(), layout in 0..6u8, extra in data()) {
        let mut map: Map<String, Value> = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        if layout >= 4 {
            map.insert("extra".into(), extra);
        }
        let raw = match layout {
            0 => serde_json::to_vec(&event).unwrap(),
            1 => serde_json::to_vec_pretty(&event).unwrap(),
            2 | 4 => serde_json::to_vec(&map).unwrap(),
            _ => serde_json::to_vec_pretty(&map).unwrap(),
        };
        let raw = Bytes::from(raw);
        let loaded = Arc::new(LoadedEvent::parse("", raw.clone()).unwrap());
        let rendered = render(&endpoint(Format::Json, None), std::slice::from_ref(&loaded)).unwrap();
        prop_assert_eq!(&rendered.body, &raw);
        prop_assert_eq!(rendered.body.as_ptr(), loaded.raw.as_ptr());
        prop_assert_eq!(rendered.content_type.as_bytes(), b"application/json");
    }

    /// `cloudevents`, `cloudevents-binary` and `envelope` give valid JSON
    /// carrying the event's id, type, time and data; an event the registry
    /// would accept always renders, and any other never panics.
    #[test]
    fn other_formats_carry_the_event(event in stored_event()) {
        let loaded = load(&event);
        let e = loaded.event();
        let one = std::slice::from_ref(&loaded);

        let r = render(&endpoint(Format::Cloudevents, None), one).unwrap();
        prop_assert_eq!(r.content_type.as_bytes(), b"application/cloudevents+json");
        let b = body(&r);
        prop_assert_eq!(&b["specversion"], "1.0");
        prop_assert_eq!(&b["id"], e.id.as_str());
        prop_assert_eq!(&b["type"], e.event_type.as_str());
        prop_assert_eq!(&b["time"], e.timestamp.as_str());
        prop_assert_eq!(&b["source"], "/herald/tenants/acme");
        prop_assert_eq!(&b["datacontenttype"], "application/json");
        prop_assert!(same_json(&b["data"], &e.data), "data {} became {}", e.data, b["data"]);

        let r = render(&endpoint(Format::Envelope, None), one).unwrap();
        let b = body(&r);
        let messages = b["messages"].as_array().unwrap();
        prop_assert_eq!(messages.len(), 1);
        let m = &messages[0];
        prop_assert_eq!(&m["id"], e.id.as_str());
        prop_assert_eq!(&m["messageType"]["id"], e.event_type.as_str());
        prop_assert_eq!(&m["creationDate"], e.timestamp.as_str());
        prop_assert_eq!(m.get("resource").is_some(), e.resource.is_some());
        if let Some(resource) = &e.resource {
            prop_assert!(same_json(&m["resource"], resource));
        }
        prop_assert!(same_json(&m["data"], &e.data));

        match render(&endpoint(Format::CloudeventsBinary, None), one) {
            Ok(r) => {
                prop_assert_eq!(r.content_type.as_bytes(), b"application/json");
                prop_assert!(same_json(&body(&r), &e.data));
                let header = |name: &str| r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_bytes().to_vec());
                prop_assert_eq!(header("ce-specversion"), Some(b"1.0".to_vec()));
                prop_assert_eq!(header("ce-id"), Some(e.id.as_bytes().to_vec()));
                prop_assert_eq!(header("ce-type"), Some(e.event_type.as_bytes().to_vec()));
                prop_assert_eq!(header("ce-time"), Some(e.timestamp.as_bytes().to_vec()));
                prop_assert_eq!(header("ce-source"), Some(b"/herald/tenants/acme".to_vec()));
            }
            Err(err) => prop_assert!(!is_publishable(e), "publishable event refused: {err}"),
        }
    }

    /// Envelopes keep every event of a batch, in order; the one-event
    /// formats refuse an empty batch or several events instead of panicking.
    #[test]
    fn batches(events in prop::collection::vec(stored_event(), 0..5), template in template()) {
        let loaded: Vec<Arc<LoadedEvent>> = events.iter().map(load).collect();
        let plan = RenderPlan::new(&endpoint(Format::Envelope, None)).unwrap();
        prop_assert!(plan.batches());
        match plan.render(&loaded) {
            Ok(r) => {
                let b = body(&r);
                let messages = b["messages"].as_array().unwrap();
                let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
                let want: Vec<&str> = loaded.iter().map(|l| l.event().id.as_str()).collect();
                prop_assert_eq!(ids, want);
            }
            Err(_) => prop_assert!(loaded.is_empty()),
        }
        for format in [Format::Json, Format::Cloudevents, Format::CloudeventsBinary, Format::Template] {
            let plan = RenderPlan::new(&endpoint(format, Some(template.clone()))).unwrap();
            prop_assert!(!plan.batches());
            if loaded.len() != 1 {
                prop_assert!(plan.render(&loaded).is_err(), "{:?} rendered {} events", format, loaded.len());
            }
        }
    }

    /// Loading never panics on any stored bytes; what loads sends as `json`
    /// exactly.
    #[test]
    fn loading_any_bytes_never_panics(
        raw in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            (data(), data()).prop_map(|(a, b)| serde_json::to_vec(&json!({"id": a, "type": "t", "timestamp": "x", "data": b})).unwrap()),
            data().prop_map(|d| serde_json::to_vec(&d).unwrap()),
        ]
    ) {
        let raw = Bytes::from(raw);
        if let Ok(loaded) = LoadedEvent::parse("", raw.clone()) {
            let rendered = render(&endpoint(Format::Json, None), &[Arc::new(loaded)]).unwrap();
            prop_assert_eq!(rendered.body, raw);
        }
    }
}

/// Index segments are read by Rust's `usize` parser, which also takes a
/// leading `+` and leading zeros; the filter matcher of the registry reads
/// them the same way. Recorded here so a change to it is a decision.
#[test]
fn index_segments_are_parsed_leniently() {
    let event = load(&StoredEvent {
        id: "e".into(),
        event_type: "t".into(),
        timestamp: "2024-01-01T00:00:00Z".into(),
        resource: None,
        data: json!({"items": ["zero", "one"]}),
    });
    let template =
        json!(["$.data.items.1", "$.data.items.01", "$.data.items.+1", "$.data.items.-1", "$.data.items. 1"]);
    let r = render(&endpoint(Format::Template, Some(template)), &[event]).unwrap();
    assert_eq!(body(&r), json!(["one", "one", "one", null, null]));
}
