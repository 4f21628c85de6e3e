//! The line a stored event starts with: `h1 <deliveries> <published ms>
//! <span ms>\n`, then the payload (the `json` format body, byte for byte).
//!
//! It is what lets one `SET … NX GET` be the whole idempotency check: a
//! publish of a stored id reads back how many deliveries the first publish
//! made and when (the answer within `HERALD_IDEMPOTENCY_WINDOW`, `0` past
//! it), with no marker key per event. The delivery ids of the event were
//! made within `span` ms after `published`, which bounds where its
//! deliveries sit in the tenant's listing index. The publish script reads
//! the same line, so its layout is fixed: digits only, single spaces.

use crate::model::Millis;

const TAG: &[u8] = b"h1 ";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    pub deliveries: u32,
    pub published_ms: Millis,
    /// The deliveries were created in `published_ms ..= published_ms + span_ms`.
    pub span_ms: Millis,
}

impl EventHeader {
    /// The header line followed by `payload`, as stored.
    pub fn prepend(&self, payload: &[u8]) -> Vec<u8> {
        let line = format!("h1 {} {} {}\n", self.deliveries, self.published_ms.max(0), self.span_ms.max(0));
        let mut stored = Vec::with_capacity(line.len() + payload.len());
        stored.extend_from_slice(line.as_bytes());
        stored.extend_from_slice(payload);
        stored
    }

    /// The header of a stored event and where its payload starts. An event
    /// stored without a header (older data) is all payload.
    pub fn split(stored: &[u8]) -> (Option<EventHeader>, usize) {
        if !stored.starts_with(TAG) {
            return (None, 0);
        }
        let Some(end) = stored.iter().position(|b| *b == b'\n') else { return (None, 0) };
        let parsed = std::str::from_utf8(&stored[TAG.len()..end]).ok().and_then(|line| {
            let mut parts = line.split(' ');
            let deliveries = parts.next()?.parse().ok()?;
            let published_ms = parts.next()?.parse().ok()?;
            let span_ms = parts.next()?.parse().ok()?;
            Some(EventHeader { deliveries, published_ms, span_ms })
        });
        (parsed, end + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_and_leave_the_payload_whole() {
        let header = EventHeader { deliveries: 3, published_ms: 1_700_000_000_123, span_ms: 2 };
        let stored = header.prepend(br#"{"id":"e-1"}"#);
        let (read, start) = EventHeader::split(&stored);
        assert_eq!(read, Some(header));
        assert_eq!(&stored[start..], br#"{"id":"e-1"}"#);
    }

    #[test]
    fn events_without_a_header_are_all_payload() {
        assert_eq!(EventHeader::split(br#"{"id":"e-1"}"#), (None, 0));
        assert_eq!(EventHeader::split(b"h1 x\n{}").0, None);
    }
}
