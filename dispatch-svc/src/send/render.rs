//! Request bodies for every endpoint format.
//!
//! An event is loaded from Redis once and shared as `Arc<LoadedEvent>` by
//! every endpoint it goes to; the stored JSON *is* the `json` format body, so
//! that format sends the stored bytes without copying them. The other formats
//! serialise straight from borrowed fields into one buffer:
//!
//! | format | content-type | body |
//! |---|---|---|
//! | `json` | `application/json` | the stored event `{"id","type","timestamp","resource"?,"data"}` |
//! | `cloudevents` | `application/cloudevents+json` | a structured CloudEvent 1.0 with the event as `data` |
//! | `cloudevents-binary` | `application/json` | `data` only; the attributes travel as `ce-*` headers |
//! | `envelope` | `application/json` | `{"messages":[{"id","creationDate","messageType":{"id"},"resource","data"}, …]}` |
//! | `template` | `application/json` | the endpoint's template with `"$.…"` string leaves replaced |
//!
//! Only `envelope` carries several events in one body; the others render
//! exactly one. A [`RenderPlan`] holds what can be worked out once per
//! endpoint (the compiled template, the CloudEvents `source`), so rendering a
//! delivery does no parsing.

use std::sync::Arc;

use bytes::Bytes;
use herald_common::model::{EndpointRecord, Format, StoredEvent};
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use crate::error::DispatchError;
pub use crate::event::LoadedEvent;
use crate::send::envelope;

pub const CONTENT_TYPE_JSON: &str = "application/json";
pub const CONTENT_TYPE_CLOUDEVENTS: &str = "application/cloudevents+json";
pub const CLOUDEVENTS_SPECVERSION: &str = "1.0";

/// A request body with the headers that belong to its format.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub body: Bytes,
    pub content_type: HeaderValue,
    /// Format headers, such as the `ce-*` attributes of binary CloudEvents.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The CloudEvents `source` of a tenant's events.
pub fn cloudevents_source(tenant: &str) -> String {
    format!("/herald/tenants/{tenant}")
}

/// Renders with a plan made on the spot; endpoints that deliver repeatedly
/// keep a [`RenderPlan`] instead.
pub fn render(endpoint: &EndpointRecord, events: &[Arc<LoadedEvent>]) -> Result<Rendered, DispatchError> {
    RenderPlan::new(endpoint)?.render(events)
}

/// What rendering needs from an endpoint, worked out once.
#[derive(Clone, Debug)]
pub struct RenderPlan {
    kind: Kind,
}

#[derive(Clone, Debug)]
enum Kind {
    Json,
    CloudEvents { source: String },
    CloudEventsBinary { source: HeaderValue },
    Envelope,
    Template(Node),
}

impl RenderPlan {
    pub fn new(endpoint: &EndpointRecord) -> Result<Self, DispatchError> {
        let kind = match endpoint.format {
            Format::Json => Kind::Json,
            Format::Cloudevents => Kind::CloudEvents { source: cloudevents_source(&endpoint.tenant) },
            Format::CloudeventsBinary => Kind::CloudEventsBinary {
                source: HeaderValue::try_from(cloudevents_source(&endpoint.tenant))
                    .map_err(|_| DispatchError::Render("tenant id is not a valid header value".into()))?,
            },
            Format::Envelope => Kind::Envelope,
            Format::Template => {
                let template = endpoint
                    .template
                    .as_ref()
                    .ok_or_else(|| DispatchError::Template("the template format needs a template".into()))?;
                Kind::Template(Node::compile(template))
            }
        };
        Ok(RenderPlan { kind })
    }

    /// Whether several events may share one body.
    pub fn batches(&self) -> bool {
        matches!(self.kind, Kind::Envelope)
    }

    pub fn render(&self, events: &[Arc<LoadedEvent>]) -> Result<Rendered, DispatchError> {
        if let Kind::Envelope = self.kind {
            if events.is_empty() {
                return Err(DispatchError::Render("nothing to send".into()));
            }
            let size = events.iter().map(|e| e.envelope_message_len() + 1).sum::<usize>() + envelope::FRAME;
            return Ok(json(to_bytes(size, &envelope::Envelope::new(events))?));
        }
        let [loaded] = events else {
            return Err(DispatchError::Render(format!(
                "this format sends one event per request, not {}",
                events.len()
            )));
        };
        if let Kind::Json = self.kind {
            // The stored body as it is: no value tree is built for it.
            return Ok(json(loaded.raw.clone()));
        }
        let event = loaded.event();
        match &self.kind {
            Kind::CloudEvents { source } => {
                let body = to_bytes(
                    loaded.raw.len() + source.len() + 160,
                    &CloudEvent {
                        specversion: CLOUDEVENTS_SPECVERSION,
                        id: &event.id,
                        source,
                        event_type: &event.event_type,
                        time: &event.timestamp,
                        datacontenttype: CONTENT_TYPE_JSON,
                        data: &event.data,
                    },
                )?;
                Ok(Rendered {
                    body,
                    content_type: HeaderValue::from_static(CONTENT_TYPE_CLOUDEVENTS),
                    headers: Vec::new(),
                })
            }
            Kind::CloudEventsBinary { source } => {
                let body = to_bytes(loaded.raw.len(), &event.data)?;
                let headers = vec![
                    (HeaderName::from_static("ce-specversion"), HeaderValue::from_static(CLOUDEVENTS_SPECVERSION)),
                    (HeaderName::from_static("ce-id"), header_value("event id", &event.id)?),
                    (HeaderName::from_static("ce-source"), source.clone()),
                    (HeaderName::from_static("ce-type"), header_value("event type", &event.event_type)?),
                    (HeaderName::from_static("ce-time"), header_value("event time", &event.timestamp)?),
                ];
                Ok(Rendered { body, content_type: HeaderValue::from_static(CONTENT_TYPE_JSON), headers })
            }
            Kind::Template(node) => Ok(json(to_bytes(loaded.raw.len() + 64, &Bound { node, event })?)),
            Kind::Json | Kind::Envelope => Err(DispatchError::Render("unreachable format".into())),
        }
    }
}

fn json(body: Bytes) -> Rendered {
    Rendered { body, content_type: HeaderValue::from_static(CONTENT_TYPE_JSON), headers: Vec::new() }
}

fn to_bytes<T: Serialize + ?Sized>(capacity: usize, value: &T) -> Result<Bytes, DispatchError> {
    let mut buf = Vec::with_capacity(capacity);
    serde_json::to_writer(&mut buf, value).map_err(|e| DispatchError::Render(e.to_string()))?;
    Ok(Bytes::from(buf))
}

fn header_value(what: &str, value: &str) -> Result<HeaderValue, DispatchError> {
    HeaderValue::from_str(value).map_err(|_| DispatchError::Render(format!("{what} is not a valid header value")))
}

#[derive(Serialize)]
struct CloudEvent<'a> {
    specversion: &'static str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    time: &'a str,
    datacontenttype: &'static str,
    data: &'a Value,
}

/// A compiled template: literal subtrees stay as they were written, string
/// leaves of the form `$.root.path` become lookups into the event.
#[derive(Clone, Debug, PartialEq)]
enum Node {
    Literal(Value),
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Path(Root, Vec<String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    Id,
    Type,
    Time,
    Resource,
    Data,
}

impl Node {
    fn compile(template: &Value) -> Node {
        match template {
            Value::String(s) => match parse_path(s) {
                Some((root, path)) => Node::Path(root, path),
                None => Node::Literal(template.clone()),
            },
            Value::Object(map) => {
                let entries: Vec<(String, Node)> = map.iter().map(|(k, v)| (k.clone(), Node::compile(v))).collect();
                if entries.iter().all(|(_, n)| matches!(n, Node::Literal(_))) {
                    Node::Literal(template.clone())
                } else {
                    Node::Object(entries)
                }
            }
            Value::Array(items) => {
                let nodes: Vec<Node> = items.iter().map(Node::compile).collect();
                if nodes.iter().all(|n| matches!(n, Node::Literal(_))) {
                    Node::Literal(template.clone())
                } else {
                    Node::Array(nodes)
                }
            }
            _ => Node::Literal(template.clone()),
        }
    }
}

/// `$.data.order.id` → (`Data`, `["order", "id"]`). Anything else, including
/// an unknown root or an empty segment, is not a path and stays verbatim.
fn parse_path(s: &str) -> Option<(Root, Vec<String>)> {
    let mut segments = s.strip_prefix("$.")?.split('.');
    let root = match segments.next()? {
        "id" => Root::Id,
        "type" => Root::Type,
        "time" | "timestamp" => Root::Time,
        "resource" => Root::Resource,
        "data" => Root::Data,
        _ => return None,
    };
    let path: Vec<String> = segments.map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return None;
    }
    Some((root, path))
}

/// Follows object keys, and array indices for numeric segments.
fn lookup<'a>(mut value: &'a Value, path: &[String]) -> Option<&'a Value> {
    for segment in path {
        value = match value {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// A template node bound to the event it is rendered for.
struct Bound<'a> {
    node: &'a Node,
    event: &'a StoredEvent,
}

impl Serialize for Bound<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.event;
        match self.node {
            Node::Literal(value) => value.serialize(serializer),
            Node::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, node) in entries {
                    map.serialize_entry(key, &Bound { node, event })?;
                }
                map.end()
            }
            Node::Array(nodes) => serializer.collect_seq(nodes.iter().map(|node| Bound { node, event })),
            Node::Path(root, path) => {
                let scalar = match root {
                    Root::Id => Some(&event.id),
                    Root::Type => Some(&event.event_type),
                    Root::Time => Some(&event.timestamp),
                    Root::Resource => {
                        return event.resource.as_ref().and_then(|r| lookup(r, path)).serialize(serializer);
                    }
                    Root::Data => return lookup(&event.data, path).serialize(serializer),
                };
                match scalar {
                    Some(s) if path.is_empty() => serializer.serialize_str(s),
                    _ => serializer.serialize_unit(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use herald_common::model::{EndpointStatus, Ordering, StoredAuth};
    use serde_json::json;

    use super::*;

    fn endpoint(format: Format, template: Option<Value>) -> EndpointRecord {
        EndpointRecord {
            id: "ep_1".into(),
            tenant: "acme".into(),
            url: "https://example.com/hook".into(),
            description: String::new(),
            auth: StoredAuth::None,
            format,
            template,
            headers: Default::default(),
            rate_limit_per_second: None,
            max_in_flight: None,
            ordering: Ordering::None,
            metadata: Default::default(),
            max_batch_size: None,
            handshake: false,
            retry: None,
            status: EndpointStatus::Active,
            disabled_reason: None,
            signing_secrets: Vec::new(),
            created_at: 0,
            updated_at: 0,
            generation: String::new(),
            activated_at: None,
        }
    }

    fn event(id: &str) -> Arc<LoadedEvent> {
        let raw = json!({
            "id": id,
            "type": "CheckNotification",
            "timestamp": "2021-08-13T15:40:43.511Z",
            "resource": {"orgShortName": "tfoinc", "locRef": "fdmnh144"},
            "data": {"status": "Submitted", "items": [{"sku": "a1"}, {"sku": "b2"}], "n": 3}
        });
        Arc::new(LoadedEvent::parse("", Bytes::from(serde_json::to_vec(&raw).unwrap())).unwrap())
    }

    fn body(r: &Rendered) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn json_sends_the_stored_bytes() {
        let e = event("evt_1");
        let r = render(&endpoint(Format::Json, None), std::slice::from_ref(&e)).unwrap();
        assert_eq!(r.body, e.raw);
        assert_eq!(r.body.as_ptr(), e.raw.as_ptr(), "the stored bytes are shared, not copied");
        assert_eq!(r.content_type, "application/json");
        assert!(r.headers.is_empty());
        assert!(!e.is_parsed(), "no value tree is built for the json format");
        render(&endpoint(Format::Cloudevents, None), std::slice::from_ref(&e)).unwrap();
        assert!(e.is_parsed(), "other formats parse the event once, on demand");
    }

    #[test]
    fn structured_cloudevent() {
        let r = render(&endpoint(Format::Cloudevents, None), &[event("evt_1")]).unwrap();
        assert_eq!(r.content_type, "application/cloudevents+json");
        assert_eq!(
            body(&r),
            json!({
                "specversion": "1.0",
                "id": "evt_1",
                "source": "/herald/tenants/acme",
                "type": "CheckNotification",
                "time": "2021-08-13T15:40:43.511Z",
                "datacontenttype": "application/json",
                "data": {"status": "Submitted", "items": [{"sku": "a1"}, {"sku": "b2"}], "n": 3}
            })
        );
    }

    #[test]
    fn binary_cloudevent_moves_attributes_to_headers() {
        let r = render(&endpoint(Format::CloudeventsBinary, None), &[event("evt_1")]).unwrap();
        assert_eq!(r.content_type, "application/json");
        assert_eq!(body(&r)["status"], "Submitted");
        let headers: Vec<(&str, &str)> = r.headers.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(
            headers,
            [
                ("ce-specversion", "1.0"),
                ("ce-id", "evt_1"),
                ("ce-source", "/herald/tenants/acme"),
                ("ce-type", "CheckNotification"),
                ("ce-time", "2021-08-13T15:40:43.511Z"),
            ]
        );
    }

    #[test]
    fn envelope_batches_events() {
        let r = render(&endpoint(Format::Envelope, None), &[event("evt_1"), event("evt_2")]).unwrap();
        let b = body(&r);
        let messages = b["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2);
        assert_eq!(
            messages[0],
            json!({
                "id": "evt_1",
                "creationDate": "2021-08-13T15:40:43.511Z",
                "messageType": {"id": "CheckNotification"},
                "resource": {"orgShortName": "tfoinc", "locRef": "fdmnh144"},
                "data": {"status": "Submitted", "items": [{"sku": "a1"}, {"sku": "b2"}], "n": 3}
            })
        );
        assert_eq!(messages[1]["id"], "evt_2");
        assert!(render(&endpoint(Format::Envelope, None), &[]).is_err());
    }

    #[test]
    fn single_event_formats_refuse_batches() {
        for format in [Format::Json, Format::Cloudevents, Format::CloudeventsBinary] {
            assert!(render(&endpoint(format, None), &[event("a"), event("b")]).is_err(), "{format:?}");
            assert!(render(&endpoint(format, None), &[]).is_err(), "{format:?}");
        }
    }

    #[test]
    fn seed_004_template() {
        let template = json!({"id": "$.id", "event": "$.type", "eventDate": "$.time", "order": "$.data"});
        let r = render(&endpoint(Format::Template, Some(template)), &[event("evt_1")]).unwrap();
        assert_eq!(r.content_type, "application/json");
        assert_eq!(
            body(&r),
            json!({
                "id": "evt_1",
                "event": "CheckNotification",
                "eventDate": "2021-08-13T15:40:43.511Z",
                "order": {"status": "Submitted", "items": [{"sku": "a1"}, {"sku": "b2"}], "n": 3}
            })
        );
    }

    #[test]
    fn template_paths() {
        let template = json!({
            "when": "$.timestamp",
            "org": "$.resource.orgShortName",
            "missing": "$.resource.nope",
            "deep": "$.data.items.1.sku",
            "badIndex": "$.data.items.x",
            "count": "$.data.n",
            "idPath": "$.id.x",
            "unknownRoot": "$.foo",
            "notAPath": "plain $.id",
            "emptySegment": "$.data..n",
            "list": ["$.id", 1, {"nested": "$.resource"}],
            "literal": {"a": [1, 2, "x"], "b": null},
            "$.id": "keys are not replaced"
        });
        let r = render(&endpoint(Format::Template, Some(template)), &[event("evt_9")]).unwrap();
        assert_eq!(
            body(&r),
            json!({
                "when": "2021-08-13T15:40:43.511Z",
                "org": "tfoinc",
                "missing": null,
                "deep": "b2",
                "badIndex": null,
                "count": 3,
                "idPath": null,
                "unknownRoot": "$.foo",
                "notAPath": "plain $.id",
                "emptySegment": "$.data..n",
                "list": ["evt_9", 1, {"nested": {"orgShortName": "tfoinc", "locRef": "fdmnh144"}}],
                "literal": {"a": [1, 2, "x"], "b": null},
                "$.id": "keys are not replaced"
            })
        );
    }

    #[test]
    fn template_without_resource_and_scalar_templates() {
        let raw = json!({"id": "e", "type": "t", "timestamp": "2020-01-01T00:00:00Z", "data": {"k": 1}});
        let e = Arc::new(LoadedEvent::parse("", Bytes::from(serde_json::to_vec(&raw).unwrap())).unwrap());
        let r = render(
            &endpoint(Format::Template, Some(json!({"r": "$.resource", "o": "$.resource.x"}))),
            std::slice::from_ref(&e),
        )
        .unwrap();
        assert_eq!(body(&r), json!({"r": null, "o": null}));
        let r = render(&endpoint(Format::Template, Some(json!("$.data"))), &[e]).unwrap();
        assert_eq!(body(&r), json!({"k": 1}));
    }

    #[test]
    fn template_format_needs_a_template() {
        assert!(matches!(RenderPlan::new(&endpoint(Format::Template, None)), Err(DispatchError::Template(_))));
    }

    #[test]
    fn literal_templates_are_kept_whole() {
        let t = json!({"a": {"b": [1, "x"]}, "c": "$.id"});
        let Node::Object(entries) = Node::compile(&t) else { panic!("expected an object") };
        assert!(entries.iter().any(|(k, n)| k == "a" && matches!(n, Node::Literal(_))));
        assert!(entries.iter().any(|(k, n)| k == "c" && *n == Node::Path(Root::Id, vec![])));
    }

    #[test]
    fn corrupt_events_are_errors() {
        assert!(matches!(LoadedEvent::parse("e-1", Bytes::from_static(b"{\"id\":1}")), Err(DispatchError::Corrupt(_))));
    }
}
