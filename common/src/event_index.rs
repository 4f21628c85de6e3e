//! The entries of a tenant's event log index (`tenant:{t}:events`): one
//! member per published event, `<published ms, 13 digits>:<type>:<id>`,
//! all at score 0, so the set reads in publish order by `BYLEX` and a range
//! of publish times is a range of members. The type rides in the member so
//! a listing filtered by type reads no event it does not answer. Neither
//! types nor ids may hold `:`, so the layout parses back unambiguously.

use crate::model::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventIndexEntry<'a> {
    pub published_ms: Millis,
    pub event_type: &'a str,
    pub event_id: &'a str,
}

impl<'a> EventIndexEntry<'a> {
    pub fn encode(&self) -> String {
        format!("{:013}:{}:{}", self.published_ms.max(0), self.event_type, self.event_id)
    }

    /// `None` for anything [`EventIndexEntry::encode`] cannot have written.
    pub fn decode(member: &'a str) -> Option<EventIndexEntry<'a>> {
        let (ms, rest) = member.split_once(':')?;
        let (event_type, event_id) = rest.split_once(':')?;
        let valid = ms.len() == 13
            && ms.bytes().all(|b| b.is_ascii_digit())
            && !event_type.is_empty()
            && !event_id.is_empty()
            && !event_id.contains(':');
        valid.then(|| EventIndexEntry { published_ms: ms.parse().unwrap_or(0), event_type, event_id })
    }
}

/// The `BYLEX` bound below every entry published at `ms` or later.
pub fn from_time(ms: Millis) -> String {
    format!("[{:013}", ms.max(0))
}

/// The `BYLEX` bound above every entry published before `ms`.
pub fn before_time(ms: Millis) -> String {
    format!("({:013}", ms.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_sort_by_time() {
        let entry = EventIndexEntry { published_ms: 1_733_030_000_123, event_type: "order.paid", event_id: "e-1.x~" };
        let member = entry.encode();
        assert_eq!(member, "1733030000123:order.paid:e-1.x~");
        assert_eq!(EventIndexEntry::decode(&member), Some(entry));
        let earlier = EventIndexEntry { published_ms: 999, event_type: "z", event_id: "z" }.encode();
        assert!(earlier < member);
        assert!(from_time(1_733_030_000_123)[1..] <= *member);
        assert!(before_time(1_733_030_000_123)[1..] < *member);
    }

    #[test]
    fn what_was_not_encoded_does_not_decode() {
        for bad in [
            "",
            "1733030000123",
            "1733030000123:t",
            "173303000012:t:e",
            "17330300001x3:t:e",
            "1733030000123::e",
            "1733030000123:t:a:b",
        ] {
            assert_eq!(EventIndexEntry::decode(bad), None, "{bad}");
        }
    }
}
