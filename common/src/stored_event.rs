//! How an event is stored, once per publish: a header line, then its `json`
//! format body without what the key and the header hold already.
//!
//! `h2 <deliveries> <published ms> <span ms> <time - published ms>\n`
//! followed by the body without its `id` (the key's) and `timestamp` (made
//! again from the header): `{"type":…,"data":…}`. An event whose body does
//! not take that form (a time the header cannot spell back) is stored
//! whole after an `h1 <deliveries> <published ms> <span ms>\n` line, as
//! every event was before; both are read.
//!
//! The header is what lets one `SET … NX GET` be the whole idempotency
//! check: a publish of a stored id reads back how many deliveries the first
//! publish made and when (the answer within `HERALD_IDEMPOTENCY_WINDOW`,
//! `0` past it), with no marker key per event. The delivery ids of the
//! event were made within `span` ms after `published`, which bounds where
//! its deliveries sit in the tenant's listing index. The publish script
//! reads the first two numbers, so their layout is fixed: digits only,
//! single spaces.

use std::borrow::Cow;

use crate::model::{Millis, StoredEvent};
use crate::time_fmt;

const WHOLE: &[u8] = b"h1 ";
const COMPACT: &[u8] = b"h2 ";
const ID_MEMBER: &[u8] = b"{\"id\":";
const TYPE_MEMBER: &[u8] = b"{\"type\":";
const TIMESTAMP_MEMBER: &[u8] = b",\"timestamp\":";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub deliveries: u32,
    pub published_ms: Millis,
    /// The deliveries were created in `published_ms ..= published_ms + span_ms`.
    pub span_ms: Millis,
}

impl EventHeader {
    /// The stored value of `event` (whose time is `time_ms`) under this
    /// header.
    pub fn store(&self, event: &StoredEvent, time_ms: Millis) -> Result<Vec<u8>, serde_json::Error> {
        let body = serde_json::to_vec(event)?;
        let (deliveries, published, span) = (self.deliveries, self.published_ms.max(0), self.span_ms.max(0));
        if let Some((type_member, tail)) = compact_parts(event, time_ms, &body)? {
            let line = format!("h2 {deliveries} {published} {span} {}\n", time_ms.saturating_sub(published));
            return Ok([line.as_bytes(), TYPE_MEMBER, type_member, tail].concat());
        }
        let line = format!("h1 {deliveries} {published} {span}\n");
        Ok([line.as_bytes(), &body].concat())
    }

    /// The header of a stored event; `None` for an event stored without one
    /// (older data) or a header that does not parse.
    pub fn read(stored: &[u8]) -> Option<EventHeader> {
        header_line(stored).map(|(header, _, _)| header)
    }
}

/// The `json` format body of the stored event `event_id`: the stored bytes
/// themselves when it was stored whole, or made again. `None` when the
/// stored value is not an event as this module writes them.
pub fn json_body<'a>(event_id: &str, stored: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    let Some((header, time_delta, start)) = header_line(stored) else {
        // Older data: all body.
        return (!stored.starts_with(WHOLE) && !stored.starts_with(COMPACT)).then_some(Cow::Borrowed(stored));
    };
    let rest = &stored[start..];
    let Some(time_delta) = time_delta else { return Some(Cow::Borrowed(rest)) };
    let after_type = rest.strip_prefix(TYPE_MEMBER)?;
    let mut strings = serde_json::Deserializer::from_slice(after_type).into_iter::<serde::de::IgnoredAny>();
    strings.next()?.ok()?;
    let (type_json, tail) = after_type.split_at(strings.byte_offset());
    let id = serde_json::to_string(event_id).ok()?;
    let timestamp = time_fmt::rfc3339(time_fmt::from_millis(header.published_ms.saturating_add(time_delta)));
    let mut body = Vec::with_capacity(rest.len() + id.len() + timestamp.len() + 32);
    for part in [ID_MEMBER, id.as_bytes(), b",\"type\":", type_json, TIMESTAMP_MEMBER, b"\""] {
        body.extend_from_slice(part);
    }
    body.extend_from_slice(timestamp.as_bytes());
    body.push(b'"');
    body.extend_from_slice(tail);
    Some(Cow::Owned(body))
}

/// The type member's value and the body's tail after the timestamp, when
/// the body is `{"id":…,"type":…,"timestamp":…` + tail with a timestamp
/// the header spells back.
fn compact_parts<'a>(
    event: &StoredEvent,
    time_ms: Millis,
    body: &'a [u8],
) -> Result<Option<(&'a [u8], &'a [u8])>, serde_json::Error> {
    if time_fmt::rfc3339(time_fmt::from_millis(time_ms)) != event.timestamp {
        return Ok(None);
    }
    let id = serde_json::to_vec(&event.id)?;
    let event_type = serde_json::to_vec(&event.event_type)?;
    let timestamp = serde_json::to_vec(&event.timestamp)?;
    let parts = body
        .strip_prefix(ID_MEMBER)
        .and_then(|rest| rest.strip_prefix(id.as_slice()))
        .and_then(|rest| rest.strip_prefix(b",\"type\":"))
        .and_then(|rest| rest.split_at_checked(event_type.len()))
        .filter(|(type_member, _)| *type_member == event_type.as_slice())
        .and_then(|(type_member, rest)| {
            let tail = rest.strip_prefix(TIMESTAMP_MEMBER)?.strip_prefix(timestamp.as_slice())?;
            Some((type_member, tail))
        });
    Ok(parts)
}

/// The header, the time difference of a compact event, and where the rest
/// starts.
fn header_line(stored: &[u8]) -> Option<(EventHeader, Option<Millis>, usize)> {
    let compact = stored.starts_with(COMPACT);
    if !compact && !stored.starts_with(WHOLE) {
        return None;
    }
    let end = stored.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&stored[WHOLE.len()..end]).ok()?;
    let mut parts = line.split(' ');
    let deliveries = parts.next()?.parse().ok()?;
    let published_ms = parts.next()?.parse().ok()?;
    let span_ms = parts.next()?.parse().ok()?;
    let time_delta = if compact { Some(parts.next()?.parse().ok()?) } else { None };
    if parts.next().is_some() {
        return None;
    }
    Some((EventHeader { deliveries, published_ms, span_ms }, time_delta, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(timestamp: &str) -> StoredEvent {
        StoredEvent {
            id: "evt_01m8ry9bqs9h9d9hw6b7j3w6ns".into(),
            event_type: "order.created".into(),
            timestamp: timestamp.into(),
            resource: Some(serde_json::json!({"org": "tfo"})),
            data: serde_json::json!({"n": 1, "s": "é\"\\"}),
        }
    }

    const HEADER: EventHeader = EventHeader { deliveries: 3, published_ms: 1_700_000_000_123, span_ms: 2 };

    #[test]
    fn bodies_read_back_byte_for_byte_and_headers_with_them() {
        let time_ms = 1_700_000_000_100;
        let event = event(&time_fmt::rfc3339(time_fmt::from_millis(time_ms)));
        let stored = HEADER.store(&event, time_ms).unwrap();
        assert!(stored.starts_with(b"h2 3 1700000000123 2 -23\n{\"type\":\"order.created\",\"resource\""));
        assert_eq!(EventHeader::read(&stored), Some(HEADER));
        let body = json_body(&event.id, &stored).unwrap();
        assert_eq!(body.as_ref(), serde_json::to_vec(&event).unwrap().as_slice());
        assert!(stored.len() + 40 < body.len(), "{} stored for a body of {}", stored.len(), body.len());
    }

    #[test]
    fn a_time_the_header_cannot_spell_is_stored_whole() {
        let event = event("2023-11-14T22:13:20.100000Z");
        let stored = HEADER.store(&event, 1_700_000_000_100).unwrap();
        assert!(stored.starts_with(b"h1 3 1700000000123 2\n{\"id\""));
        assert_eq!(EventHeader::read(&stored), Some(HEADER));
        let body = json_body(&event.id, &stored).unwrap();
        assert!(matches!(body, Cow::Borrowed(_)));
        assert_eq!(body.as_ref(), serde_json::to_vec(&event).unwrap().as_slice());
    }

    #[test]
    fn events_without_a_header_are_all_body_and_broken_ones_nothing() {
        assert_eq!(EventHeader::read(br#"{"id":"e-1"}"#), None);
        assert_eq!(json_body("e-1", br#"{"id":"e-1"}"#).as_deref(), Some(br#"{"id":"e-1"}"#.as_slice()));
        assert_eq!(EventHeader::read(b"h1 x\n{}"), None);
        assert_eq!(json_body("e-1", b"h1 x\n{}"), None);
        assert_eq!(json_body("e-1", b"h2 1 2 3 4\n{\"type\":\"unterminated"), None);
        assert_eq!(json_body("e-1", b"h2 1 2 3 4\n[]"), None);
    }
}
