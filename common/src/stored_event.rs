//! How an event is stored, once per publish: a header line, its `json`
//! format body without what the key and the header hold already, and the
//! ids of its deliveries.
//!
//! `h2 <deliveries> <published ms> <span ms> <time> <body bytes>[ <call>]\n`,
//! the body, then each delivery id's ULID in 16 bytes (big-endian; the
//! `dlv_` prefix is implied). `<call>`, on a Redis Cluster only, names the
//! publish call whose partition steps appended the event's jobs (see
//! [`EventHeader::publish_call`]). `<time>` is the event time less the
//! publish time, and the body is then `{"type":…,"data":…}`: without its `id` (the key's)
//! and `timestamp` (made again from the header); or `w` when the body is
//! stored whole (a time the header cannot spell back). Events of the first
//! layout (`h1 <deliveries> <published ms> <span ms>\n` and the whole body,
//! no ids) are still read.
//!
//! The ids are the event's listing: a tenant's deliveries are listed by
//! reading its event log, then the ids of each event (a replay appends the
//! ids it adds). A delivery costs 16 bytes there, where an index entry of
//! its own took ~130.
//!
//! The header is what lets one `SET … NX GET` be the whole idempotency
//! check: a publish of a stored id reads back how many deliveries the first
//! publish made and when (the answer within `HERALD_IDEMPOTENCY_WINDOW`,
//! `0` past it), with no marker key per event. The publish script reads the
//! first two numbers, so their layout is fixed: digits only, single spaces.

use std::borrow::Cow;
use std::fmt::Write;

use crate::model::{Millis, StoredEvent};
use crate::{ids, time_fmt};

const WHOLE: &[u8] = b"h1 ";
const LISTED: &[u8] = b"h2 ";
/// The `<time>` of a body stored whole.
const WHOLE_BODY: &str = "w";
const ID_MEMBER: &[u8] = b"{\"id\":";
const TYPE_MEMBER: &[u8] = b"{\"type\":";
const TIMESTAMP_MEMBER: &[u8] = b",\"timestamp\":";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub deliveries: u32,
    pub published_ms: Millis,
    /// The deliveries were created in `published_ms ..= published_ms + span_ms`.
    pub span_ms: Millis,
    /// On a Redis Cluster, the publish call that stored the event: its
    /// partition steps mark themselves done once per call, not per event,
    /// and a publish of the same id again asks those marks.
    pub publish_call: Option<u64>,
}

impl EventHeader {
    /// The stored value of `event` (whose time is `time_ms`) under this
    /// header, with the ids of its deliveries.
    pub fn store(
        &self,
        event: &StoredEvent,
        time_ms: Millis,
        delivery_ids: &[&str],
    ) -> Result<Vec<u8>, serde_json::Error> {
        let body = serde_json::to_vec(event)?;
        let (deliveries, published, span) = (self.deliveries, self.published_ms.max(0), self.span_ms.max(0));
        let (time, body_parts) = match compact_parts(event, time_ms, &body)? {
            Some((type_member, tail)) => {
                (time_ms.saturating_sub(published).to_string(), [TYPE_MEMBER, type_member, tail])
            }
            None => (WHOLE_BODY.to_owned(), [body.as_slice(), &[], &[]]),
        };
        let body_len: usize = body_parts.iter().map(|p| p.len()).sum();
        let mut line = format!("h2 {deliveries} {published} {span} {time} {body_len}");
        if let Some(call) = self.publish_call {
            // Writing to a String cannot fail.
            let _ = write!(line, " {call}");
        }
        line.push('\n');
        let mut stored = Vec::with_capacity(line.len() + body_len + delivery_ids.len() * 16);
        stored.extend_from_slice(line.as_bytes());
        body_parts.iter().for_each(|part| stored.extend_from_slice(part));
        // An id Herald did not make has no ULID to keep: it is left out
        // (its delivery is found by id, not listed with the event).
        for bytes in delivery_ids.iter().filter_map(|id| delivery_id_bytes(id)) {
            stored.extend_from_slice(&bytes);
        }
        Ok(stored)
    }

    /// The header of a stored event; `None` for an event stored without one
    /// (older data) or a header that does not parse.
    pub fn read(stored: &[u8]) -> Option<EventHeader> {
        header_line(stored).map(|(header, _)| header)
    }
}

/// A delivery id as stored after the body (its ULID, big-endian); `None`
/// for an id Herald did not make.
pub fn delivery_id_bytes(id: &str) -> Option<[u8; 16]> {
    // Canonical digits only, so the id made again from the bits is this one.
    ids::canonical_ulid_bits(id.strip_prefix(ids::DELIVERY)?.as_bytes()).map(u128::to_be_bytes)
}

/// Where the delivery ids of a stored event start, from its first bytes
/// (at least its header line); `None` for an event of the first layout,
/// which keeps none, or a header that does not parse.
pub fn delivery_ids_start(head: &[u8]) -> Option<usize> {
    let (_, layout) = header_line(head)?;
    let Layout::Listed { body_start, body_len, .. } = layout else { return None };
    body_start.checked_add(body_len)
}

/// The delivery ids stored from [`delivery_ids_start`] on; a trailing
/// part shorter than an id is ignored.
pub fn delivery_ids(stored_ids: &[u8]) -> impl Iterator<Item = String> + '_ {
    stored_ids.chunks_exact(16).filter_map(|bytes| {
        let bits = u128::from_be_bytes(bytes.try_into().ok()?);
        Some(ids::id_from_bits(ids::DELIVERY, bits))
    })
}

/// The `json` format body of the stored event `event_id`: the stored bytes
/// themselves when it was stored whole, or made again. `None` when the
/// stored value is not an event as this module writes them.
pub fn json_body<'a>(event_id: &str, stored: &'a [u8]) -> Option<Cow<'a, [u8]>> {
    let Some((header, layout)) = header_line(stored) else {
        // Older data: all body.
        return (!stored.starts_with(WHOLE) && !stored.starts_with(LISTED)).then_some(Cow::Borrowed(stored));
    };
    let (rest, time_delta) = match layout {
        Layout::Whole { body_start } => return Some(Cow::Borrowed(&stored[body_start..])),
        Layout::Listed { body_start, body_len, time_delta } => {
            let rest = stored.get(body_start..body_start.checked_add(body_len)?)?;
            match time_delta {
                None => return Some(Cow::Borrowed(rest)),
                Some(delta) => (rest, delta),
            }
        }
    };
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

/// A body's type member value and its tail after the timestamp.
type CompactParts<'a> = (&'a [u8], &'a [u8]);

/// The type member's value and the body's tail after the timestamp, when
/// the body is `{"id":…,"type":…,"timestamp":…` + tail with a timestamp
/// the header spells back.
fn compact_parts<'a>(
    event: &StoredEvent,
    time_ms: Millis,
    body: &'a [u8],
) -> Result<Option<CompactParts<'a>>, serde_json::Error> {
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

/// Where a stored event's parts sit.
enum Layout {
    /// The first layout: the whole body from `body_start` to the end.
    Whole { body_start: usize },
    /// The body (compact unless `time_delta` is `None`), then the ids.
    Listed { body_start: usize, body_len: usize, time_delta: Option<Millis> },
}

fn header_line(stored: &[u8]) -> Option<(EventHeader, Layout)> {
    let listed = stored.starts_with(LISTED);
    if !listed && !stored.starts_with(WHOLE) {
        return None;
    }
    let end = stored.iter().position(|b| *b == b'\n')?;
    let line = std::str::from_utf8(&stored[WHOLE.len()..end]).ok()?;
    let mut parts = line.split(' ');
    let deliveries = parts.next()?.parse().ok()?;
    let published_ms = parts.next()?.parse().ok()?;
    let span_ms = parts.next()?.parse().ok()?;
    let body_start = end + 1;
    let mut publish_call = None;
    let layout = if listed {
        let time_delta = match parts.next()? {
            WHOLE_BODY => None,
            delta => Some(delta.parse().ok()?),
        };
        let body_len = parts.next()?.parse().ok()?;
        publish_call = parts.next().map(str::parse).transpose().ok()?;
        Layout::Listed { body_start, body_len, time_delta }
    } else {
        Layout::Whole { body_start }
    };
    if parts.next().is_some() {
        return None;
    }
    Some((EventHeader { deliveries, published_ms, span_ms, publish_call }, layout))
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

    const HEADER: EventHeader =
        EventHeader { deliveries: 2, published_ms: 1_700_000_000_123, span_ms: 2, publish_call: None };

    fn delivery_ids() -> [String; 2] {
        [ids::new_delivery_id(3), ids::new_delivery_id(0)]
    }

    fn stored_ids(stored: &[u8]) -> Vec<String> {
        let start = delivery_ids_start(&stored[..stored.len().min(64)]).unwrap();
        super::delivery_ids(&stored[start..]).collect()
    }

    #[test]
    fn bodies_read_back_byte_for_byte_and_headers_and_ids_with_them() {
        let time_ms = 1_700_000_000_100;
        let event = event(&time_fmt::rfc3339(time_fmt::from_millis(time_ms)));
        let ids = delivery_ids();
        let stored = HEADER.store(&event, time_ms, &[&ids[0], &ids[1]]).unwrap();
        assert!(stored.starts_with(b"h2 2 1700000000123 2 -23 "), "{}", String::from_utf8_lossy(&stored));
        assert_eq!(EventHeader::read(&stored), Some(HEADER));
        let body = json_body(&event.id, &stored).unwrap();
        assert_eq!(body.as_ref(), serde_json::to_vec(&event).unwrap().as_slice());
        assert_eq!(stored_ids(&stored), ids);
        assert!(stored.len() + 40 < body.len() + 32, "{} stored for a body of {}", stored.len(), body.len());
    }

    #[test]
    fn a_publish_call_reads_back_after_the_body_length() {
        let time_ms = 1_700_000_000_100;
        let event = event(&time_fmt::rfc3339(time_fmt::from_millis(time_ms)));
        let ids = delivery_ids();
        let header = EventHeader { publish_call: Some(u64::MAX), ..HEADER };
        let stored = header.store(&event, time_ms, &[&ids[0]]).unwrap();
        assert_eq!(EventHeader::read(&stored), Some(header));
        assert_eq!(json_body(&event.id, &stored).unwrap().as_ref(), serde_json::to_vec(&event).unwrap().as_slice());
        assert_eq!(stored_ids(&stored), ids[..1]);
        let with_foreign = header.store(&event, time_ms, &[&ids[0], "dlv_not-herald", &ids[1]]).unwrap();
        assert_eq!(stored_ids(&with_foreign), ids, "an id Herald did not make is left out");
        assert_eq!(EventHeader::read(b"h2 1 2 3 4 2 x\n{}"), None, "a call is digits");
        assert_eq!(EventHeader::read(b"h2 1 2 3 4 2 5 6\n{}"), None);
    }

    #[test]
    fn a_time_the_header_cannot_spell_keeps_the_body_whole() {
        let event = event("2023-11-14T22:13:20.100000Z");
        let ids = delivery_ids();
        let stored = HEADER.store(&event, 1_700_000_000_100, &[&ids[1]]).unwrap();
        assert!(stored.starts_with(b"h2 2 1700000000123 2 w "));
        assert_eq!(EventHeader::read(&stored), Some(HEADER));
        let body = json_body(&event.id, &stored).unwrap();
        assert!(matches!(body, Cow::Borrowed(_)));
        assert_eq!(body.as_ref(), serde_json::to_vec(&event).unwrap().as_slice());
        assert_eq!(stored_ids(&stored), ids[1..]);
    }

    #[test]
    fn events_of_the_first_layout_read_back_without_ids() {
        let stored = b"h1 3 1700000000123 2\n{\"id\":\"e-1\"}";
        assert_eq!(EventHeader::read(stored), Some(EventHeader { deliveries: 3, ..HEADER }));
        assert_eq!(json_body("e-1", stored).as_deref(), Some(br#"{"id":"e-1"}"#.as_slice()));
        assert_eq!(delivery_ids_start(stored), None);
    }

    #[test]
    fn events_without_a_header_are_all_body_and_broken_ones_nothing() {
        assert_eq!(EventHeader::read(br#"{"id":"e-1"}"#), None);
        assert_eq!(json_body("e-1", br#"{"id":"e-1"}"#).as_deref(), Some(br#"{"id":"e-1"}"#.as_slice()));
        assert_eq!(EventHeader::read(b"h1 x\n{}"), None);
        assert_eq!(json_body("e-1", b"h1 x\n{}"), None);
        assert_eq!(json_body("e-1", b"h2 1 2 3 4 50\n{\"type\":\"unterminated"), None, "shorter than its length");
        assert_eq!(json_body("e-1", b"h2 1 2 3 4 17\n{\"type\":\"unterminated"), None);
        assert_eq!(json_body("e-1", b"h2 1 2 3 4 2\n[]"), None);
        assert_eq!(delivery_id_bytes("dlv_x"), None);
        assert_eq!(delivery_id_bytes(&ids::new_id(ids::EVENT)), None);
        let id = ids::new_id(ids::DELIVERY);
        let bytes = delivery_id_bytes(&id).map(u128::from_be_bytes);
        assert_eq!(bytes, ids::ulid_bits(&id));
        let shouted = format!("{}{}", ids::DELIVERY, id[ids::DELIVERY.len()..].to_ascii_uppercase());
        assert_eq!(delivery_id_bytes(&shouted), None, "only the spelling Herald makes");
    }
}
