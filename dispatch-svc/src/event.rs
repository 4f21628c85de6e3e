//! An event as a read batch loads it: the exact stored payload bytes (the `json`
//! format body) beside their parsed form, shared as `Arc<LoadedEvent>` by
//! every endpoint the event goes to.

use std::sync::OnceLock;

use bytes::Bytes;
use herald_common::event_header::EventHeader;
use herald_common::model::StoredEvent;

use crate::error::DispatchError;

/// An event as stored, with its parsed form next to the exact stored bytes.
#[derive(Debug)]
pub struct LoadedEvent {
    /// Exactly the stored JSON: the `json` format body.
    pub raw: Bytes,
    pub event: StoredEvent,
    /// Length of its `envelope` message, worked out once however many
    /// envelope endpoints the event goes to.
    pub(crate) envelope_len: OnceLock<usize>,
}

impl LoadedEvent {
    /// Reads an event as stored: its header line, then the payload, which
    /// is kept without a copy.
    pub fn parse(stored: Bytes) -> Result<Self, DispatchError> {
        let (_, start) = EventHeader::split(&stored);
        let raw = stored.slice(start..);
        let event = serde_json::from_slice(&raw)?;
        Ok(LoadedEvent { raw, event, envelope_len: OnceLock::new() })
    }

    /// For events that were never stored, such as test sends.
    pub fn from_event(event: StoredEvent) -> Result<Self, DispatchError> {
        let raw = Bytes::from(serde_json::to_vec(&event)?);
        Ok(LoadedEvent { raw, event, envelope_len: OnceLock::new() })
    }
}
