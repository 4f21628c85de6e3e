//! An event as a read batch loads it: its `json` format body beside its
//! parsed form, shared as `Arc<LoadedEvent>` by every endpoint the event
//! goes to.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use herald_common::model::StoredEvent;
use herald_common::stored_event;

use crate::error::DispatchError;

/// An event as stored, with its parsed form next to the exact stored bytes.
#[derive(Debug)]
pub struct LoadedEvent {
    /// The `json` format body.
    pub raw: Bytes,
    pub event: StoredEvent,
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
        let event = serde_json::from_slice(&raw)?;
        Ok(LoadedEvent { raw, event, envelope_len: OnceLock::new() })
    }

    /// For events that were never stored, such as test sends.
    pub fn from_event(event: StoredEvent) -> Result<Self, DispatchError> {
        let raw = Bytes::from(serde_json::to_vec(&event)?);
        Ok(LoadedEvent { raw, event, envelope_len: OnceLock::new() })
    }
}
