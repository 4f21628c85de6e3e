//! The event log: a tenant's published events, newest first, for as long as
//! they are kept (`HERALD_EVENT_RETENTION`). The log's entries carry each
//! event's publish time and type ([`herald_common::event_index`]), so a page
//! filtered by type or time reads only the events it answers; the cursor is
//! the last entry's id.

use herald_common::event_index::{self, EventIndexEntry};
use herald_common::ids;
use herald_common::model::{Millis, StoredEvent};
use herald_common::stored_event::{self, EventHeader};

use crate::Registry;
use crate::error::{RegistryError, Result};
use crate::store::LogOrder;
use crate::validate::{self, Page};

/// A page filtered by type reads at most this many index entries, then
/// answers what it found with a cursor to go on from.
const MAX_SCANNED: usize = 5_000;

/// An event as the log shows it.
pub struct LoggedEvent {
    pub event: StoredEvent,
    pub deliveries: u32,
    pub published_ms: Millis,
}

/// What a listing asks for.
pub struct EventQuery<'a> {
    pub event_type: &'a str,
    pub published_after: Option<Millis>,
    pub published_before: Option<Millis>,
}

impl Registry {
    /// One page of the tenant's events, newest first; the cursor is the
    /// last index entry read.
    pub async fn list_events(
        &self,
        tenant: &str,
        query: EventQuery<'_>,
        page: &Page,
    ) -> Result<(Vec<LoggedEvent>, Option<String>)> {
        self.require_tenant(tenant).await?;
        if !query.event_type.is_empty() {
            validate::event_type_name("type", query.event_type).map_err(|e| RegistryError::Invalid(vec![e]))?;
        }
        let mut upper = match &page.after {
            Some(cursor) if event_index::entry_ms(cursor).is_some() => format!("({cursor}"),
            Some(_) => {
                return Err(RegistryError::invalid("page.cursor", "is not a cursor returned by a previous page"));
            }
            None => query.published_before.map_or_else(|| "+".to_owned(), event_index::before_time),
        };
        let lower =
            query.published_after.map_or_else(|| "-".to_owned(), |ms| event_index::from_time(ms.saturating_add(1)));
        let chunk = if query.event_type.is_empty() { page.limit + 1 } else { (page.limit + 1).max(100) };
        let mut matched: Vec<EventIndexEntry> = Vec::new();
        let mut scanned = 0;
        let mut next = None;
        loop {
            let entries = self.store.event_log_entries(tenant, LogOrder::NewestFirst, (&lower, &upper), chunk).await?;
            let exhausted = entries.len() < chunk;
            scanned += entries.len();
            if let Some(last) = entries.last() {
                upper = format!("({}", last.entry_id);
            }
            let wanted = |e: &EventIndexEntry| query.event_type.is_empty() || e.event_type == query.event_type;
            matched.extend(entries.into_iter().filter(wanted));
            if matched.len() > page.limit {
                matched.truncate(page.limit);
                next = matched.last().map(|e| e.entry_id.clone());
                break;
            }
            if exhausted {
                break;
            }
            if scanned >= MAX_SCANNED {
                next = Some(upper[1..].to_owned());
                break;
            }
        }
        let ids: Vec<&str> = matched.iter().map(|e| e.event_id.as_str()).collect();
        let stored = self.store.stored_events(tenant, &ids).await?;
        // An event past its retention may still be indexed until the next publish trims it.
        let events = ids.iter().zip(stored).filter_map(|(id, raw)| logged(id, &raw?)).collect();
        Ok((events, next))
    }

    /// One event of the tenant; another tenant's is not found.
    pub async fn get_event(&self, tenant: &str, id: &str) -> Result<LoggedEvent> {
        validate::existing_tenant(tenant)?;
        if !ids::is_valid_external_id(id, validate::MAX_EVENT_ID) {
            return Err(RegistryError::not_found("event", id));
        }
        let stored = self.store.stored_events(tenant, &[id]).await?;
        stored
            .into_iter()
            .flatten()
            .find_map(|raw| logged(id, &raw))
            .ok_or_else(|| RegistryError::not_found("event", id))
    }
}

/// A stored event as the log shows it (`published_ms` 0 when it has no
/// header line); `None` if it does not parse.
pub(crate) fn logged(id: &str, raw: &[u8]) -> Option<LoggedEvent> {
    let Some(body) = stored_event::json_body(id, raw) else {
        tracing::warn!(event = id, "a stored event has a broken header; left out of the event log");
        return None;
    };
    let header = EventHeader::read(raw);
    let event: StoredEvent = match serde_json::from_slice(&body) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "a stored event does not parse; left out of the event log");
            return None;
        }
    };
    let (deliveries, published_ms) = header.map_or((0, 0), |h| (h.deliveries, h.published_ms));
    Some(LoggedEvent { event, deliveries, published_ms })
}
