//! The `webhook-id` a delivery is sent under.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The `webhook-id` of a POST, the same on every retry, manual retry and
/// recovery, as Standard Webhooks receivers expect: the event id for one
/// event; for an `envelope` batch, a digest of its event ids. Batches are
/// rebuilt from whatever is queued, so naming a batch after its first event
/// would give `[A, C]` the id of `[A, B]` and a deduplicating receiver would
/// drop `C`; the same set of events always gets the same id.
pub(super) fn message_id<'a>(mut event_ids: impl Iterator<Item = &'a str>) -> String {
    let first = event_ids.next().unwrap_or_default();
    let Some(second) = event_ids.next() else {
        return first.to_owned();
    };
    let mut ids: Vec<&str> = [first, second].into_iter().chain(event_ids).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut digest = Sha256::new();
    for id in &ids {
        digest.update(id.as_bytes());
        digest.update(b"\n");
    }
    let digest = digest.finalize();
    let mut id = String::with_capacity(4 + 32);
    id.push_str("msg_");
    for byte in &digest[..16] {
        let _ = write!(id, "{byte:02x}");
    }
    id
}

#[cfg(test)]
mod tests {
    use super::message_id;

    #[test]
    fn one_event_is_named_by_its_id() {
        assert_eq!(message_id(["evt_1"].into_iter()), "evt_1");
    }

    #[test]
    fn a_batch_is_named_by_its_set_of_events() {
        let ab = message_id(["evt_a", "evt_b"].into_iter());
        assert_eq!(ab, message_id(["evt_b", "evt_a"].into_iter()), "order does not matter");
        assert_ne!(ab, message_id(["evt_a", "evt_c"].into_iter()), "another set is another message");
        assert_ne!(ab, "evt_a");
        assert!(ab.starts_with("msg_") && ab.len() == 36, "{ab}");
    }
}
