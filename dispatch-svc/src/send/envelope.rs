//! The `envelope` format's body, `{"messages":[…]}`, and how many queued
//! events go into one.
//!
//! A batch is bounded by the endpoint's `maxBatchSize` and by
//! `HERALD_MAX_BATCH_BYTES`: it stops growing before the body would pass the
//! byte bound, so a receiver with a body-size limit is not sent a body it
//! must refuse (and would be sent again, whole, on every retry). An event
//! bigger than the bound on its own still goes, alone. Each message's length
//! is counted exactly, by serialising it once into a counter.

use std::io;
use std::sync::Arc;

use herald_common::model::StoredEvent;
use serde::Serialize;
use serde::ser::Serializer;
use serde_json::Value;

use crate::event::LoadedEvent;

/// Bytes around the messages: `{"messages":[` and `]}`.
pub const FRAME: usize = r#"{"messages":[]}"#.len();

/// The body of a batch.
#[derive(Serialize)]
pub struct Envelope<'a> {
    messages: Messages<'a>,
}

impl<'a> Envelope<'a> {
    pub fn new(events: &'a [Arc<LoadedEvent>]) -> Self {
        Envelope { messages: Messages(events) }
    }
}

struct Messages<'a>(&'a [Arc<LoadedEvent>]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|loaded| Message::of(loaded.event())))
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Message<'a> {
    id: &'a str,
    creation_date: &'a str,
    message_type: MessageType<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a Value>,
    data: &'a Value,
}

impl<'a> Message<'a> {
    fn of(e: &'a StoredEvent) -> Self {
        Message {
            id: &e.id,
            creation_date: &e.timestamp,
            message_type: MessageType { id: &e.event_type },
            resource: e.resource.as_ref(),
            data: &e.data,
        }
    }
}

#[derive(Serialize)]
struct MessageType<'a> {
    id: &'a str,
}

/// Counts what is written to it.
struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Bytes of one event's message in an envelope body.
pub fn message_len(event: &StoredEvent) -> usize {
    let mut counter = Counter(0);
    // Neither the counter nor serialising parsed JSON values can fail.
    let _ = serde_json::to_writer(&mut counter, &Message::of(event));
    counter.0
}

/// How many of `queued` (from the front, at most `max_count`) one body
/// carries without passing `max_bytes`; never fewer than one while anything
/// is queued.
pub fn batch_len<'a>(queued: impl IntoIterator<Item = &'a LoadedEvent>, max_count: usize, max_bytes: usize) -> usize {
    batch_len_of(queued.into_iter().map(LoadedEvent::envelope_message_len), max_count, max_bytes)
}

/// [`batch_len`] over the queued events' message lengths
/// ([`LoadedEvent::envelope_message_len`]), each asked for only when needed.
pub fn batch_len_of(message_lens: impl IntoIterator<Item = usize>, max_count: usize, max_bytes: usize) -> usize {
    let mut size = FRAME;
    let mut n = 0;
    for len in message_lens.into_iter().take(max_count) {
        let grown = size + len + usize::from(n > 0);
        if n > 0 && grown > max_bytes {
            break;
        }
        size = grown;
        n += 1;
    }
    n
}

impl LoadedEvent {
    /// Bytes this event takes as one message of an `envelope` body.
    pub fn envelope_message_len(&self) -> usize {
        *self.envelope_len.get_or_init(|| message_len(self.event()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str, blob: usize) -> Arc<LoadedEvent> {
        Arc::new(
            LoadedEvent::from_event(StoredEvent {
                id: id.into(),
                event_type: "order.created".into(),
                timestamp: "2021-08-13T15:40:43.511Z".into(),
                resource: Some(json!({"org": "tfoinc"})),
                data: json!({"blob": "x".repeat(blob), "quote": "\"é\""}),
            })
            .unwrap(),
        )
    }

    fn body_len(events: &[Arc<LoadedEvent>]) -> usize {
        serde_json::to_vec(&Envelope::new(events)).unwrap().len()
    }

    #[test]
    fn message_lengths_add_up_to_the_body() {
        let events = [event("evt_1", 10), event("evt_2", 300), event("evt_3", 0)];
        let counted = FRAME + events.iter().map(|e| e.envelope_message_len()).sum::<usize>() + events.len() - 1;
        assert_eq!(counted, body_len(&events));
        assert_eq!(FRAME + events[0].envelope_message_len(), body_len(&events[..1]));
    }

    #[test]
    fn a_batch_stops_growing_before_the_byte_bound() {
        let events: Vec<_> = (0..10).map(|i| event(&format!("evt_{i}"), 100)).collect();
        let one = body_len(&events[..1]);
        let refs = || events.iter().map(|e| e.as_ref());
        // The count bound alone.
        assert_eq!(batch_len(refs(), 4, usize::MAX), 4);
        for max_bytes in [one, one + 1, body_len(&events[..3]), body_len(&events[..3]) + 1, body_len(&events[..4]) - 1]
        {
            let n = batch_len(refs(), 10, max_bytes);
            assert!(body_len(&events[..n]) <= max_bytes, "{n} events over {max_bytes}");
            assert!(n == 10 || body_len(&events[..n + 1]) > max_bytes, "{n} events stop early under {max_bytes}");
        }
        assert_eq!(batch_len(refs(), 10, body_len(&events[..3])), 3);
        // An event bigger than the bound goes alone.
        assert_eq!(batch_len(refs(), 10, 10), 1);
        let big = [event("evt_big", 5000), event("evt_small", 1)];
        assert_eq!(batch_len(big.iter().map(|e| e.as_ref()), 10, 1024), 1);
        assert_eq!(batch_len(std::iter::empty(), 10, 1024), 0);
    }
}
