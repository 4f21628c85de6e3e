//! Reading deliveries back in pages: newest first for the API, oldest
//! first from a time for recovery.
//!
//! There is no index of deliveries: a stored event keeps the ids of its
//! deliveries ([`herald_common::stored_event`]), and a tenant's event log
//! orders its events by publish time ([`herald_common::event_index`]). A
//! list reads a chunk of the log, the ids of those events, then their
//! states, and keeps what the filter asks for. A list by event reads that
//! event's ids only; a list by endpoint reads only the states in the
//! endpoint's record shard; a list by type skips other events unread.
//!
//! A cursor names the log entry and the delivery a page ended at
//! (`<entry id>.<delivery id>`; the delivery id alone in a list by event),
//! so it stays stable however the deliveries spread over partitions. A page
//! that read too many states answers what it found and a cursor to carry
//! on from.

use herald_common::event_index::{self, EventIndexEntry};
use herald_common::ids;
use herald_common::model::Millis;
use herald_common::stored_event::{self, EventHeader};

use super::{DeliveryRecord, DeliveryStatus, Records};
use crate::error::DispatchError;

/// Log entries, and states, read per round trip.
const LIST_CHUNK: usize = 200;
/// Most states read for one page; the cursor then resumes.
const LIST_MAX_STATES: usize = 25 * LIST_CHUNK;
/// Bytes read from a stored event at first: its header line and, for an
/// event of up to a few dozen deliveries and a small body, all its ids.
const HEAD_BYTES: usize = 1024;
/// How far a delivery's creation time (the registry's clock) may sit from
/// its event's log entry time (Redis's clock): time bounds on the log are
/// widened by it, and each delivery is then held to the exact bound.
const CLOCK_MARGIN_MS: Millis = 60_000;

/// Which deliveries of a tenant a list shows.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub tenant: String,
    pub endpoint_id: Option<String>,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Created at or after / before these times.
    pub created_from: Option<Millis>,
    pub created_before: Option<Millis>,
}

impl ListFilter {
    fn keeps(&self, record: &DeliveryRecord) -> bool {
        record.tenant == self.tenant
            && self.endpoint_id.as_ref().is_none_or(|e| *e == record.endpoint_id)
            && self.event_id.as_ref().is_none_or(|e| *e == record.event_id)
            && self.event_type.as_ref().is_none_or(|t| *t == record.event_type)
            && self.status.is_none_or(|s| s == record.status)
    }

    fn created_in_range(&self, id: &str) -> bool {
        let Some(created) = ids::created_millis(id) else { return false };
        self.created_from.is_none_or(|from| created >= from)
            && self.created_before.is_none_or(|before| created < before)
    }
}

/// Where a page ended: the log entry (none in a list by event) and the last
/// delivery answered or read.
struct Cursor {
    entry: Option<String>,
    delivery: String,
}

impl Cursor {
    fn parse(raw: &str) -> Result<Cursor, DispatchError> {
        let (entry, delivery) = match raw.split_once('.') {
            Some((entry, delivery)) => (Some(entry.to_owned()), delivery),
            None => (None, raw),
        };
        let valid = entry.as_deref().is_none_or(|e| event_index::entry_ms(e).is_some())
            && ids::created_millis(delivery).is_some();
        if !valid {
            return Err(invalid_cursor());
        }
        Ok(Cursor { entry, delivery: delivery.to_owned() })
    }

    fn spell(entry: Option<&str>, delivery: &str) -> String {
        match entry {
            Some(entry) => format!("{entry}.{delivery}"),
            None => delivery.to_owned(),
        }
    }
}

/// One event's deliveries to read, newest first, and its log entry.
struct EventIds<'a> {
    entry: Option<String>,
    event_id: &'a str,
    ids: Vec<String>,
}

impl Records {
    /// One page of deliveries, newest first, and the cursor of the next page.
    pub async fn list(
        &self,
        filter: &ListFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<DeliveryRecord>, Option<String>), DispatchError> {
        let cursor = cursor.map(Cursor::parse).transpose()?;
        let mut page = Page { records: Vec::with_capacity(limit), limit, last_entry: None, read: 0 };
        if let Some(event_id) = &filter.event_id {
            let ids = self.event_delivery_ids(&filter.tenant, &[event_id.as_str()]).await?.pop().unwrap_or_default();
            let event = EventIds { entry: None, event_id, ids: newest_first(ids, cursor.as_ref()) };
            return Ok(match self.fill(filter, &mut page, event).await? {
                Filled::Full(next) | Filled::Read(next) => (page.records, Some(next)),
                Filled::Room => (page.records, None),
            });
        }
        let log = self.keys.tenant_events(&filter.tenant);
        let before = filter.created_before.map(|ms| event_index::before_time(ms.saturating_add(CLOCK_MARGIN_MS)));
        let mut upper = match &cursor {
            Some(Cursor { entry: Some(entry), .. }) => entry.clone(),
            _ => before.unwrap_or_else(|| "+".to_owned()),
        };
        let lower = filter
            .created_from
            .map_or_else(|| "-".to_owned(), |ms| event_index::from_time(ms.saturating_sub(CLOCK_MARGIN_MS)));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..LIST_MAX_STATES / LIST_CHUNK {
            let entries = self.log_chunk(&log, "XREVRANGE", &upper, &lower).await?;
            let Some(last) = entries.last() else { return Ok((page.records, None)) };
            upper = format!("({}", last.entry_id);
            let exhausted = entries.len() < LIST_CHUNK;
            // An event logged twice (older data) is listed once.
            let events: Vec<&EventIndexEntry> = entries
                .iter()
                .filter(|e| filter.event_type.as_ref().is_none_or(|t| *t == e.event_type))
                .filter(|e| seen.insert(e.event_id.clone()))
                .collect();
            let event_ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            let id_lists = self.event_delivery_ids(&filter.tenant, &event_ids).await?;
            for (entry, ids) in events.into_iter().zip(id_lists) {
                let resumed = cursor.as_ref().filter(|c| c.entry.as_deref() == Some(entry.entry_id.as_str()));
                let ids = newest_first(ids, resumed);
                let event = EventIds { entry: Some(entry.entry_id.clone()), event_id: &entry.event_id, ids };
                match self.fill(filter, &mut page, event).await? {
                    Filled::Room => {}
                    Filled::Full(next) | Filled::Read(next) => return Ok((page.records, Some(next))),
                }
            }
            if exhausted {
                return Ok((page.records, None));
            }
        }
        // As many log entries read as one page may: carry on past the last.
        let last_entry = upper.trim_start_matches('(');
        Ok((page.records, Some(Cursor::spell(Some(last_entry), &ids::floor_id(ids::DELIVERY, 0)))))
    }

    /// Adds the deliveries of one event the filter keeps to the page.
    async fn fill(&self, filter: &ListFilter, page: &mut Page, event: EventIds<'_>) -> Result<Filled, DispatchError> {
        let shard = filter.endpoint_id.as_deref().map(|e| self.keys.endpoint_shard(e));
        let ids: Vec<&str> = event
            .ids
            .iter()
            .map(String::as_str)
            .filter(|id| shard.is_none_or(|s| s == self.shard_of(id)) && filter.created_in_range(id))
            .collect();
        for chunk in ids.chunks(LIST_CHUNK) {
            if page.read >= LIST_MAX_STATES {
                // The cursor is exclusive: name an id just above the first
                // one not read.
                return Ok(Filled::Read(Cursor::spell(event.entry.as_deref(), &just_above(chunk[0]))));
            }
            page.read += chunk.len();
            for mut record in self.load_many(chunk).await? {
                // Ids from the first layout's index may be another event's.
                if !filter.keeps(&record) || record.event_id != event.event_id {
                    continue;
                }
                // A match beyond a full page: only now is there a next page.
                if page.records.len() == page.limit {
                    let last = page.records.last().map(|r| r.id.as_str()).unwrap_or_default();
                    return Ok(Filled::Full(Cursor::spell(page.last_entry.as_deref(), last)));
                }
                // Attempts are for a delivery read alone.
                record.attempts.clear();
                page.records.push(record);
                page.last_entry.clone_from(&event.entry);
            }
        }
        Ok(Filled::Room)
    }

    /// An endpoint's deliveries created at or after `since`, oldest first,
    /// one chunk of the tenant's event log at a time: `after` is the cursor
    /// the previous chunk answered. Answers the chunk's deliveries to the
    /// endpoint and its cursor (`None` at the end).
    pub async fn endpoint_deliveries_since(
        &self,
        tenant: &str,
        endpoint_id: &str,
        since: Millis,
        after: Option<&str>,
    ) -> Result<(Vec<DeliveryRecord>, Option<String>), DispatchError> {
        let from = match after {
            Some(after) if event_index::entry_ms(after).is_some() => format!("({after}"),
            Some(_) => return Err(invalid_cursor()),
            None => event_index::from_time(since.saturating_sub(CLOCK_MARGIN_MS)),
        };
        let entries = self.log_chunk(&self.keys.tenant_events(tenant), "XRANGE", &from, "+").await?;
        let cursor = (entries.len() == LIST_CHUNK).then(|| entries.last().map(|e| e.entry_id.clone())).flatten();
        // An event logged twice (older data) is read once.
        let mut seen = std::collections::HashSet::new();
        let event_ids: Vec<&str> = entries.iter().map(|e| e.event_id.as_str()).filter(|id| seen.insert(*id)).collect();
        let shard = self.keys.endpoint_shard(endpoint_id);
        let id_lists = self.event_delivery_ids(tenant, &event_ids).await?;
        let mut ids: Vec<(&str, String)> = event_ids
            .iter()
            .zip(id_lists)
            .flat_map(|(event_id, ids)| ids.into_iter().map(move |id| (*event_id, id)))
            .collect();
        ids.retain(|(_, id)| self.shard_of(id) == shard && ids::created_millis(id).is_some_and(|t| t >= since));
        let mut records = Vec::new();
        for chunk in ids.chunks(LIST_CHUNK) {
            let chunk_ids: Vec<&str> = chunk.iter().map(|(_, id)| id.as_str()).collect();
            // Per id, the events it was read under.
            let mut listed: std::collections::HashMap<&str, Vec<&str>> = std::collections::HashMap::new();
            for (event_id, id) in chunk {
                listed.entry(id.as_str()).or_default().push(*event_id);
            }
            let loaded = self.load_many(&chunk_ids).await?;
            // Ids from the first layout's index may be another event's (and
            // an id in two events' spans is read twice): each is kept once,
            // under its own event.
            let kept = loaded.into_iter().filter(|r| {
                let under_its_event = listed.get_mut(r.id.as_str()).and_then(|events| {
                    let at = events.iter().position(|e| *e == r.event_id)?;
                    Some(events.swap_remove(at))
                });
                r.tenant == tenant && r.endpoint_id == endpoint_id && under_its_event.is_some()
            });
            records.extend(kept);
        }
        Ok((records, cursor))
    }

    /// Up to a chunk of a tenant's event log between two range bounds.
    async fn log_chunk(
        &self,
        log: &str,
        command: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<EventIndexEntry>, DispatchError> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<(String, String)>)> =
            redis::cmd(command).arg(log).arg(from).arg(to).arg("COUNT").arg(LIST_CHUNK).query_async(&mut conn).await?;
        Ok(entries.iter().filter_map(|(id, fields)| EventIndexEntry::from_stream(id, fields)).collect())
    }

    /// The delivery ids each event keeps, in order (none for an event
    /// gone): the first bytes of every event in one round trip, then the
    /// rest of those with more ids than that. An event of the first layout
    /// keeps none: its ids are read from that layout's index over the time
    /// span its header names, and may include another event's.
    async fn event_delivery_ids(&self, tenant: &str, event_ids: &[&str]) -> Result<Vec<Vec<String>>, DispatchError> {
        if event_ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = event_ids.iter().map(|id| self.keys.event(tenant, id)).collect();
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("GETRANGE").arg(key).arg(0).arg(HEAD_BYTES - 1);
        }
        let mut conn = self.conn.clone();
        let heads: Vec<Vec<u8>> = pipe.query_async(&mut conn).await?;
        let mut lists = vec![Vec::new(); keys.len()];
        let mut longer = Vec::new();
        let mut first_layout = Vec::new();
        for (i, head) in heads.iter().enumerate() {
            let Some(start) = stored_event::delivery_ids_start(head) else {
                if let Some(header) = EventHeader::read(head) {
                    first_layout.push((i, header));
                }
                continue;
            };
            if head.len() < HEAD_BYTES {
                lists[i] = stored_event::delivery_ids(head.get(start..).unwrap_or_default()).collect();
            } else {
                longer.push((i, start));
            }
        }
        if !longer.is_empty() {
            let mut pipe = redis::pipe();
            for (i, start) in &longer {
                pipe.cmd("GETRANGE").arg(&keys[*i]).arg(*start).arg(-1);
            }
            let rests: Vec<Vec<u8>> = pipe.query_async(&mut conn).await?;
            for ((i, _), rest) in longer.iter().zip(rests) {
                lists[*i] = stored_event::delivery_ids(&rest).collect();
            }
        }
        if !first_layout.is_empty() {
            self.first_layout_ids(tenant, &first_layout, &mut lists).await?;
        }
        Ok(lists)
    }

    /// Fills in the ids of first-layout events from the index that layout
    /// kept per tenant and record shard: the ids made in each event's span.
    async fn first_layout_ids(
        &self,
        tenant: &str,
        events: &[(usize, EventHeader)],
        lists: &mut [Vec<String>],
    ) -> Result<(), DispatchError> {
        let shards = self.keys.record_shards();
        let mut pipe = redis::pipe();
        for (_, header) in events {
            let from = format!("[{}", ids::floor_id(ids::DELIVERY, header.published_ms));
            let last = header.published_ms.saturating_add(header.span_ms).saturating_add(1);
            let to = format!("({}", ids::floor_id(ids::DELIVERY, last));
            for shard in 0..shards {
                pipe.cmd("ZRANGEBYLEX").arg(self.keys.first_layout_deliveries(shard, tenant)).arg(&from).arg(&to);
            }
        }
        let mut conn = self.conn.clone();
        let answers: Vec<Vec<String>> = pipe.query_async(&mut conn).await?;
        let per_event = usize::try_from(shards).unwrap_or(1).max(1);
        for ((i, _), found) in events.iter().zip(answers.chunks(per_event)) {
            lists[*i] = found.concat();
        }
        Ok(())
    }
}

/// What a page is being filled with.
struct Page {
    records: Vec<DeliveryRecord>,
    limit: usize,
    /// The log entry of the last record.
    last_entry: Option<String>,
    /// States read so far.
    read: usize,
}

/// How filling a page from one event ended.
enum Filled {
    /// Room for more: go on with the next event.
    Room,
    /// Full, with a match beyond it: the cursor of the next page.
    Full(String),
    /// Read as much as one page may: the cursor to carry on from.
    Read(String),
}

/// An event's ids newest first, those after `cursor` only when the page
/// resumes inside this event.
fn newest_first(mut ids: Vec<String>, cursor: Option<&Cursor>) -> Vec<String> {
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    if let Some(cursor) = cursor {
        ids.retain(|id| *id < cursor.delivery);
    }
    ids
}

/// The delivery id right above `id`, so that an exclusive cursor naming it
/// resumes at `id`.
fn just_above(id: &str) -> String {
    match ids::ulid_bits(id).and_then(|bits| bits.checked_add(1)) {
        Some(bits) => ids::id_from_bits(ids::DELIVERY, bits),
        None => id.to_owned(),
    }
}

fn invalid_cursor() -> DispatchError {
    DispatchError::Invalid { field: "page.cursor".to_owned(), message: "is not a valid cursor".to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_read_back_and_refuse_what_no_page_answers() {
        let id = ids::new_delivery_id(2);
        let spelled = Cursor::spell(Some("1733030000123-4"), &id);
        let cursor = Cursor::parse(&spelled).unwrap();
        assert_eq!((cursor.entry.as_deref(), cursor.delivery.as_str()), (Some("1733030000123-4"), id.as_str()));
        let by_event = Cursor::parse(&Cursor::spell(None, &id)).unwrap();
        assert_eq!((by_event.entry, by_event.delivery), (None, id.clone()));
        for bad in ["", "x", "1733030000123-4.", "soon.dlv_x", &format!("1733030000123.{id}")] {
            assert!(Cursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_event_resumes_below_its_cursor_and_just_above_reaches_back_one_id() {
        let mut made: Vec<String> = (0..5).map(|_| ids::new_delivery_id(0)).collect();
        made.sort_unstable();
        let cursor = Cursor { entry: None, delivery: made[3].clone() };
        let mut doubled = made.clone();
        doubled.push(made[1].clone());
        assert_eq!(newest_first(doubled, Some(&cursor)), vec![made[2].clone(), made[1].clone(), made[0].clone()]);
        assert_eq!(newest_first(made.clone(), None).len(), 5);
        let above = just_above(&made[2]);
        assert!(above > made[2] && above.len() == made[2].len());
        let resumed = Cursor { entry: None, delivery: above };
        assert_eq!(newest_first(vec![made[2].clone()], Some(&resumed)), vec![made[2].clone()]);
    }
}
