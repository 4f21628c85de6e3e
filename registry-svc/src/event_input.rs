//! A published event's own checks, the ones that need no Redis: ids, type
//! name, size, time, and `data`/`resource` given either as raw JSON bytes
//! or as `google.protobuf.Struct`.
//!
//! Struct numbers are all doubles; an integral one (within ±2^53, where a
//! double is exact) becomes a JSON integer, so an event published as a
//! Struct is stored exactly like the same event sent as JSON and matches
//! the same filters (`{"data.n": 1}` equals `1`, not `1.0`).

use herald_common::{ids, time_fmt};
use herald_proto::v1::PublishRequest;
use prost::Message;
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};
use time::OffsetDateTime;

use crate::error::{FieldError, Result};
use crate::validate::{self, Violations};

/// Largest integer a double holds exactly.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// An event after the checks that need no Redis.
pub struct Parsed {
    pub tenant: String,
    pub id: String,
    pub event_type: String,
    pub resource: Option<Value>,
    pub data: Value,
    pub time: OffsetDateTime,
}

/// One JSON-valued field, given as bytes or as a Struct (at most one).
fn object(
    v: &mut Violations,
    field: &str,
    struct_field: &str,
    bytes: &[u8],
    structured: Option<prost_types::Struct>,
) -> Option<Map<String, Value>> {
    match structured {
        Some(_) if !bytes.is_empty() => {
            v.add(struct_field, format!("give {field} or {struct_field}, not both"));
            None
        }
        Some(s) => v.take(struct_to_json(s, struct_field)),
        None => v.take(validate::json_object(field, bytes)).flatten(),
    }
}

fn struct_to_json(s: prost_types::Struct, field: &str) -> Result<Map<String, Value>, FieldError> {
    s.fields.into_iter().map(|(k, value)| Ok((k, value_to_json(value, field)?))).collect()
}

fn value_to_json(value: prost_types::Value, field: &str) -> Result<Value, FieldError> {
    Ok(match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::NumberValue(n)) if n.is_finite() && n.fract() == 0.0 && n.abs() <= EXACT_INTEGER => {
            // Exact: the bound keeps the cast lossless.
            Value::from(n as i64)
        }
        Some(Kind::NumberValue(n)) => Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| FieldError::new(field, "holds a number JSON cannot carry (NaN or infinite)"))?,
        Some(Kind::StructValue(s)) => Value::Object(struct_to_json(s, field)?),
        Some(Kind::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(|v| value_to_json(v, field)).collect::<Result<_, _>>()?)
        }
    })
}

pub fn parse(request: PublishRequest, max_bytes: usize) -> Result<Parsed> {
    let PublishRequest { tenant, id, r#type, resource, data, time, data_struct, resource_struct } = request;
    let mut v = Violations::new();
    if tenant.is_empty() {
        v.add("tenant", "is required");
    } else if !ids::is_valid_external_id(&tenant, validate::MAX_TENANT_ID) {
        v.add("tenant", format!("tenant {tenant} not found"));
    }
    v.check(
        id.is_empty() || ids::is_valid_external_id(&id, validate::MAX_EVENT_ID),
        "id",
        format!("must be 1 to {} letters, digits, '-', '_', '.' or '~'", validate::MAX_EVENT_ID),
    );
    if r#type.is_empty() {
        v.add("type", "is required");
    } else if !validate::is_event_type_name(&r#type) {
        v.add("type", format!("unknown event type {type}", type = r#type));
    }
    let size = data.len()
        + resource.len()
        + data_struct.as_ref().map_or(0, Message::encoded_len)
        + resource_struct.as_ref().map_or(0, Message::encoded_len);
    let mut data_value = Value::Null;
    if size > max_bytes {
        v.add("data", format!("the event is larger than {max_bytes} bytes"));
    } else if data.is_empty() && data_struct.is_none() {
        v.add("data", "is required (a JSON object)");
    } else {
        data_value = object(&mut v, "data", "data_struct", &data, data_struct).map(Value::Object).unwrap_or_default();
    }
    let resource = object(&mut v, "resource", "resource_struct", &resource, resource_struct).map(Value::Object);
    let time = match time {
        None => time_fmt::now(),
        Some(ts) => {
            let nanos = i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos);
            match (0..1_000_000_000).contains(&ts.nanos).then(|| OffsetDateTime::from_unix_timestamp_nanos(nanos)) {
                Some(Ok(t)) => t,
                _ => {
                    v.add("time", "is not a valid timestamp");
                    time_fmt::now()
                }
            }
        }
    };
    v.finish()?;
    Ok(Parsed {
        tenant,
        id: if id.is_empty() { ids::new_id(ids::EVENT) } else { id },
        event_type: r#type,
        resource,
        data: data_value,
        time,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::RegistryError;

    fn fields(r: PublishRequest) -> Vec<String> {
        match parse(r, 1024) {
            Err(RegistryError::Invalid(list)) => list.into_iter().map(|e| e.field).collect(),
            _ => Vec::new(),
        }
    }

    fn ok() -> PublishRequest {
        PublishRequest {
            tenant: "acme".into(),
            r#type: "order.created".into(),
            data: br#"{"a":1}"#.to_vec(),
            ..PublishRequest::default()
        }
    }

    fn value(kind: Kind) -> prost_types::Value {
        prost_types::Value { kind: Some(kind) }
    }

    fn structure(pairs: Vec<(&str, Kind)>) -> prost_types::Struct {
        let fields: BTreeMap<String, prost_types::Value> =
            pairs.into_iter().map(|(k, v)| (k.into(), value(v))).collect();
        prost_types::Struct { fields }
    }

    #[test]
    fn parse_checks_local_rules() {
        let p = parse(ok(), 1024).unwrap();
        assert!(p.id.starts_with("evt_"));
        assert_eq!(fields(PublishRequest { data: b"[1]".to_vec(), ..ok() }), ["data"]);
        assert_eq!(fields(PublishRequest { data: vec![b' '; 2000], ..ok() }), ["data"]);
        assert_eq!(fields(PublishRequest { resource: b"1".to_vec(), ..ok() }), ["resource"]);
        assert_eq!(fields(PublishRequest { id: "a b".into(), ..ok() }), ["id"]);
        assert_eq!(fields(PublishRequest { r#type: "a b".into(), ..ok() }), ["type"]);
        let bad_time = prost_types::Timestamp { seconds: 0, nanos: -1 };
        assert_eq!(fields(PublishRequest { time: Some(bad_time), ..ok() }), ["time"]);
        let time = prost_types::Timestamp { seconds: 1_607_368_712, nanos: 76_000_000 };
        let p = parse(PublishRequest { time: Some(time), ..ok() }, 1024).unwrap();
        assert_eq!(time_fmt::rfc3339(p.time), "2020-12-07T19:18:32.076Z");
    }

    #[test]
    fn structs_become_the_json_they_stand_for() {
        let nested = structure(vec![("sku", Kind::StringValue("x".into()))]);
        let data = structure(vec![
            ("n", Kind::NumberValue(3.0)),
            ("price", Kind::NumberValue(9.5)),
            ("ok", Kind::BoolValue(true)),
            ("none", Kind::NullValue(0)),
            ("item", Kind::StructValue(nested)),
            ("list", Kind::ListValue(prost_types::ListValue { values: vec![value(Kind::NumberValue(-2.0))] })),
        ]);
        let resource = structure(vec![("org", Kind::StringValue("tfoinc".into()))]);
        let request =
            PublishRequest { data: Vec::new(), data_struct: Some(data), resource_struct: Some(resource), ..ok() };
        let p = parse(request, 1024).unwrap();
        assert_eq!(p.data, json!({"n": 3, "price": 9.5, "ok": true, "none": null, "item": {"sku": "x"}, "list": [-2]}));
        assert_eq!(p.resource, Some(json!({"org": "tfoinc"})));
        assert_eq!(p.data.to_string(), r#"{"item":{"sku":"x"},"list":[-2],"n":3,"none":null,"ok":true,"price":9.5}"#);
    }

    #[test]
    fn structs_exclude_their_byte_twins_and_non_finite_numbers() {
        let data = structure(vec![("a", Kind::NumberValue(1.0))]);
        assert_eq!(fields(PublishRequest { data_struct: Some(data.clone()), ..ok() }), ["data_struct"]);
        let resource = structure(vec![]);
        let both = PublishRequest { resource: b"{}".to_vec(), resource_struct: Some(resource), ..ok() };
        assert_eq!(fields(both), ["resource_struct"]);
        let nan = structure(vec![("a", Kind::NumberValue(f64::NAN))]);
        assert_eq!(fields(PublishRequest { data: Vec::new(), data_struct: Some(nan), ..ok() }), ["data_struct"]);
        assert_eq!(fields(PublishRequest { data: Vec::new(), ..ok() }), ["data"]);
        let big = structure(vec![("a", Kind::StringValue("x".repeat(2000)))]);
        assert_eq!(fields(PublishRequest { data: Vec::new(), data_struct: Some(big), ..ok() }), ["data"]);
    }
}
