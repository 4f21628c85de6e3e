//! The global event type catalogue.
//!
//! A type has a name (its key), a description, an optional JSON Schema that
//! published `data` must satisfy, and an optional integer `code` (an alias
//! some compatibility profiles address types by). Codes are unique: the
//! `etype-code:{code}` key names the type that holds it, and is claimed and
//! released in the same Lua step that writes the type.

use herald_common::model::EventTypeRecord;
use herald_common::time_fmt::now_millis;
use serde_json::Value;

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::schema;
use crate::store::EventTypeWrite;
use crate::validate::{self, Page, Violations};

/// How often an update re-reads and retries when another writer got there first.
const UPDATE_ATTEMPTS: usize = 3;

/// A validated create or update.
pub struct EventTypeInput {
    pub name: String,
    pub description: String,
    pub schema: Option<Value>,
    pub code: Option<i64>,
}

impl EventTypeInput {
    /// Checks every field; `schema` bytes must be a JSON Schema (2020-12).
    pub fn parse(name: String, description: String, schema: &[u8], code: Option<i64>) -> Result<Self> {
        let mut v = Violations::new();
        v.take(validate::event_type_name("name", &name));
        validate::text(&mut v, "description", &description, validate::MAX_EVENT_TYPE_DESCRIPTION);
        let schema = if schema.is_empty() {
            None
        } else {
            match serde_json::from_slice::<Value>(schema) {
                Ok(value) => v.take(schema::compile(&value).map(|_| value)),
                Err(e) => {
                    v.add("schema", format!("is not valid JSON: {e}"));
                    None
                }
            }
        };
        v.finish()?;
        Ok(EventTypeInput { name, description, schema, code })
    }
}

impl Registry {
    pub async fn create_event_type(&self, input: EventTypeInput) -> Result<EventTypeRecord> {
        let now = now_millis();
        let record = EventTypeRecord {
            name: input.name,
            description: input.description,
            schema: input.schema,
            code: input.code,
            created_at: now,
            updated_at: now,
        };
        match self.store.put_event_type(&record, None).await? {
            EventTypeWrite::Written => {
                tracing::info!(event_type = %record.name, "event type created");
                Ok(record)
            }
            EventTypeWrite::Exists => Err(RegistryError::AlreadyExists(format!("event type {}", record.name))),
            EventTypeWrite::CodeTaken => Err(code_taken(record.code)),
            EventTypeWrite::Missing | EventTypeWrite::Changed => {
                Err(RegistryError::Conflict(format!("event type {}", record.name)))
            }
        }
    }

    /// Replaces description, schema and code (PUT semantics).
    pub async fn update_event_type(&self, input: EventTypeInput) -> Result<EventTypeRecord> {
        for _ in 0..UPDATE_ATTEMPTS {
            let (current, raw) = self
                .store
                .event_type(&input.name)
                .await?
                .ok_or_else(|| RegistryError::not_found("event type", &input.name))?;
            let record = EventTypeRecord {
                name: input.name.clone(),
                description: input.description.clone(),
                schema: input.schema.clone(),
                code: input.code,
                created_at: current.created_at,
                // Strictly later than before, so caches keyed by it always see a change.
                updated_at: now_millis().max(current.updated_at + 1),
            };
            match self.store.put_event_type(&record, Some((&current, &raw))).await? {
                EventTypeWrite::Written => return Ok(record),
                EventTypeWrite::CodeTaken => return Err(code_taken(record.code)),
                EventTypeWrite::Missing => return Err(RegistryError::not_found("event type", &input.name)),
                EventTypeWrite::Exists | EventTypeWrite::Changed => continue,
            }
        }
        Err(RegistryError::Conflict(format!("event type {}", input.name)))
    }

    pub async fn event_type_by_name(&self, name: &str) -> Result<EventTypeRecord> {
        if !validate::is_event_type_name(name) {
            return Err(RegistryError::not_found("event type", name));
        }
        Ok(self.store.event_type(name).await?.ok_or_else(|| RegistryError::not_found("event type", name))?.0)
    }

    pub async fn event_type_by_code(&self, code: i64) -> Result<EventTypeRecord> {
        let missing = || RegistryError::NotFound(format!("event type with code {code}"));
        let name = self.store.event_type_by_code(code).await?.ok_or_else(missing)?;
        let (record, _) = self.store.event_type(&name).await?.ok_or_else(missing)?;
        // A code key left behind by an interrupted write must not alias another type.
        if record.code == Some(code) { Ok(record) } else { Err(missing()) }
    }

    pub async fn list_event_types(&self, page: &Page) -> Result<(Vec<EventTypeRecord>, Option<String>)> {
        self.store.list_event_types(page).await
    }

    pub async fn delete_event_type(&self, name: &str) -> Result<()> {
        let record = self.event_type_by_name(name).await?;
        self.store.delete_event_type(&record).await?;
        tracing::info!(event_type = %name, "event type deleted");
        Ok(())
    }
}

fn code_taken(code: Option<i64>) -> RegistryError {
    RegistryError::AlreadyExists(format!("event type with code {}", code.unwrap_or_default()))
}
