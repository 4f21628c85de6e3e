//! Event type schemas: JSON Schema draft 2020-12, compiled once.
//!
//! Publishing must not recompile a schema per event, so compiled validators
//! are cached in memory per event type name together with the exact stored
//! record bytes they were compiled from (which include `updatedAt`). Any
//! change of the stored record, by this replica or another, changes the
//! bytes and therefore recompiles; an unchanged one costs a byte comparison.
//!
//! Remote `$ref`s are not fetched (the crate's HTTP and file resolvers are
//! compiled out), so a schema can never make the registry issue requests.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use herald_common::model::EventTypeRecord;
use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use crate::error::{FieldError, RegistryError, Result};

/// Most schema errors reported for one event.
const MAX_REPORTED_ERRORS: usize = 20;
/// The cache forgets everything past this many event types (it refills on use).
const MAX_CACHED_TYPES: usize = 10_000;

/// Compiles `schema` as draft 2020-12.
pub fn compile(schema: &Value) -> Result<Validator, FieldError> {
    jsonschema::draft202012::options()
        .build(schema)
        .map_err(|e| FieldError::new("schema", format!("is not a valid JSON Schema (2020-12): {e}")))
}

/// An event type as publishing needs it.
pub struct CompiledType {
    pub record: EventTypeRecord,
    pub validator: Option<Validator>,
}

struct Entry {
    raw: Vec<u8>,
    compiled: Arc<CompiledType>,
}

#[derive(Default)]
pub struct SchemaCache {
    entries: RwLock<HashMap<String, Entry>>,
}

impl SchemaCache {
    /// The compiled form of a stored event type record.
    pub fn get(&self, name: &str, raw: &[u8]) -> Result<Arc<CompiledType>> {
        {
            let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
            if let Some(entry) = entries.get(name)
                && entry.raw == raw
            {
                return Ok(entry.compiled.clone());
            }
        }
        let record: EventTypeRecord = serde_json::from_slice(raw)?;
        let validator = match &record.schema {
            None => None,
            // A stored schema was valid when written; failing now means the
            // record was corrupted outside Herald.
            Some(schema) => Some(compile(schema).map_err(|e| {
                RegistryError::Common(herald_common::CommonError::Config(format!(
                    "stored schema of event type {name} does not compile: {}",
                    e.message
                )))
            })?),
        };
        let compiled = Arc::new(CompiledType { record, validator });
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_CACHED_TYPES {
            entries.clear();
        }
        entries.insert(name.to_owned(), Entry { raw: raw.to_vec(), compiled: compiled.clone() });
        Ok(compiled)
    }
}

/// Validates `data` and names each failure by its path under `data`
/// (`data.orderId`, `data.items[2].sku`).
pub fn check(validator: &Validator, data: &Value) -> Result<(), Vec<FieldError>> {
    if validator.is_valid(data) {
        return Ok(());
    }
    let errors: Vec<FieldError> = validator
        .iter_errors(data)
        .take(MAX_REPORTED_ERRORS)
        .map(|e| {
            let mut field = field_path(data, e.instance_path().as_str());
            if let ValidationErrorKind::Required { property } = e.kind()
                && let Some(name) = property.as_str()
            {
                field.push('.');
                field.push_str(name);
            }
            FieldError::new(field, e.to_string())
        })
        .collect();
    if errors.is_empty() {
        Err(vec![FieldError::new("data", "does not match the event type's schema")])
    } else {
        Err(errors)
    }
}

/// Turns a JSON pointer into `data.a.b[3]`, walking `data` to tell array
/// indices from numeric property names.
fn field_path(data: &Value, pointer: &str) -> String {
    let mut out = String::from("data");
    let mut node = Some(data);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(Value::Array(items)) => {
                out.push('[');
                out.push_str(&segment);
                out.push(']');
                node = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                out.push('.');
                out.push_str(&segment);
                node = other.and_then(|v| v.get(&segment));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(compile(&json!({"type": "object", "required": ["a"]})).is_ok());
        let err = compile(&json!({"type": "nonsense"})).unwrap_err();
        assert_eq!(err.field, "schema");
        assert!(compile(&json!({"minimum": "five"})).is_err());
    }

    #[test]
    fn errors_name_data_paths() {
        let schema = json!({
            "type": "object",
            "required": ["orderId"],
            "properties": {
                "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
                "total": {"type": "number"}
            }
        });
        let v = compile(&schema).unwrap();
        assert!(check(&v, &json!({"orderId": "o1"})).is_ok());
        let errors = check(&v, &json!({"total": "x", "items": [{"sku": "a"}, {"sku": 2}]})).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"data.orderId"), "{fields:?}");
        assert!(fields.contains(&"data.total"), "{fields:?}");
        assert!(fields.contains(&"data.items[1].sku"), "{fields:?}");
    }

    #[test]
    fn one_of_schemas_from_the_seeds() {
        let schema = json!({
            "type": "object",
            "oneOf": [{"required": ["processUniqueId"]}, {"required": ["simulationUniqueId"]}]
        });
        let v = compile(&schema).unwrap();
        assert!(check(&v, &json!({"processUniqueId": "p"})).is_ok());
        assert!(check(&v, &json!({"processUniqueId": "p", "simulationUniqueId": "s"})).is_err());
        assert!(check(&v, &json!({})).is_err());
    }

    #[test]
    fn cache_recompiles_only_on_change() {
        let cache = SchemaCache::default();
        let rec = |desc: &str| {
            serde_json::to_vec(&json!({
                "name": "t", "description": desc, "schema": {"type": "object"}, "createdAt": 1, "updatedAt": 2
            }))
            .unwrap()
        };
        let a = cache.get("t", &rec("a")).unwrap();
        let again = cache.get("t", &rec("a")).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        let b = cache.get("t", &rec("b")).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.record.description, "b");
    }
}
