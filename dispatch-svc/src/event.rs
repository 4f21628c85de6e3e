//! An event as a read batch loads it: its `json` format body, its type,
//! and its parsed form once a format other than `json` asks for it; shared
//! as `Arc<LoadedEvent>` by every endpoint the event goes to.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use herald_common::model::StoredEvent;
use herald_common::stored_event;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::DispatchError;

/// An event as stored: the exact body, and its parsed form when needed.
#[derive(Debug)]
pub struct LoadedEvent {
    /// The `json` format body.
    pub raw: Bytes,
    pub event_type: String,
    /// Most endpoints take the `json` body as it is: the value tree is
    /// built only for the formats that read into it.
    parsed: OnceLock<StoredEvent>,
    /// Length of its `envelope` message, worked out once however many
    /// envelope endpoints the event goes to.
    pub(crate) envelope_len: OnceLock<usize>,
}

impl LoadedEvent {
    /// Reads event `event_id` as stored (see [`stored_event`]): its body
    /// made again, or kept without a copy when it was stored whole.
    pub fn parse(event_id: &str, stored: Bytes) -> Result<Self, DispatchError> {
        let raw = match stored_event::json_body(event_id, &stored) {
            Some(Cow::Borrowed(body)) => stored.slice_ref(body),
            Some(Cow::Owned(body)) => Bytes::from(body),
            None => {
                let broken =
                    <serde_json::Error as serde::de::Error>::custom("the stored event's header does not parse");
                return Err(broken.into());
            }
        };
        let Checked { event_type, .. } = serde_json::from_slice(&raw)?;
        Ok(LoadedEvent { raw, event_type, parsed: OnceLock::new(), envelope_len: OnceLock::new() })
    }

    /// For events that were never stored, such as test sends.
    pub fn from_event(event: StoredEvent) -> Result<Self, DispatchError> {
        let raw = Bytes::from(serde_json::to_vec(&event)?);
        let event_type = event.event_type.clone();
        Ok(LoadedEvent { raw, event_type, parsed: OnceLock::from(event), envelope_len: OnceLock::new() })
    }

    #[cfg(test)]
    pub fn is_parsed(&self) -> bool {
        self.parsed.get().is_some()
    }

    /// The event parsed, the first time it is asked for.
    pub fn event(&self) -> &StoredEvent {
        self.parsed.get_or_init(|| {
            serde_json::from_slice(&self.raw).unwrap_or_else(|e| {
                // Loading checked every field a `StoredEvent` needs.
                tracing::error!(error = %e, "an event checked when loaded did not parse");
                StoredEvent {
                    id: String::new(),
                    event_type: self.event_type.clone(),
                    timestamp: String::new(),
                    resource: None,
                    data: serde_json::Value::Null,
                }
            })
        })
    }
}

/// What loading checks of a body: every field [`StoredEvent`] needs, of
/// the kind it needs, with the type kept and the values skipped over
/// rather than built.
#[derive(Deserialize)]
struct Checked<'a> {
    #[serde(rename = "id", borrow)]
    _id: Cow<'a, str>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(rename = "timestamp", borrow)]
    _timestamp: Cow<'a, str>,
    #[serde(rename = "resource", default)]
    _resource: Option<IgnoredAny>,
    #[serde(rename = "data")]
    _data: IgnoredAny,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loading_checks_what_parsing_needs_and_parses_on_demand() {
        let body = br#"{"id":"e-1","type":"order.created","timestamp":"2026-01-01T00:00:00Z","data":{"n":[1,{"x":"\u00e9"}]}}"#;
        let loaded = LoadedEvent::parse("e-1", Bytes::from_static(body)).unwrap();
        assert_eq!(loaded.event_type, "order.created");
        let parsed: StoredEvent = serde_json::from_slice(body).unwrap();
        assert_eq!(serde_json::to_value(loaded.event()).unwrap(), serde_json::to_value(parsed).unwrap());
        for broken in [
            r#"{"id":"e-1","type":"t","data":{}}"#,
            r#"{"id":1,"type":"t","timestamp":"x","data":{}}"#,
            r#"{"id":"e-1","type":"t","timestamp":"x"}"#,
            r#"{"id":"e-1","type":"t","timestamp":"x","data":{}"#,
        ] {
            assert!(LoadedEvent::parse("e-1", Bytes::from(broken)).is_err(), "{broken}");
        }
    }
}
