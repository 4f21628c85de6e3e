//! The entries of a tenant's event log (`tenant:{t}:events`), a Redis
//! stream with one entry per published event: its id is the publish time
//! (`<ms>-<seq>`, given by Redis as the event is stored), its fields the
//! event's type and id. A stream keeps an entry in ~60 bytes where a sorted
//! set member took ~170, reads a range of publish times as a range of ids,
//! and trims itself to the retention as it grows (`XADD … MINID ~`). The
//! type rides in the entry so a listing filtered by type reads no event it
//! does not answer.

use crate::model::Millis;

/// Field names of an entry.
pub const TYPE: &str = "t";
pub const ID: &str = "i";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventIndexEntry {
    /// The stream entry id (its publish time, see [`entry_ms`]), which is
    /// also a page cursor.
    pub entry_id: String,
    pub event_type: String,
    pub event_id: String,
}

impl EventIndexEntry {
    /// An entry read back; `None` for anything the publish step cannot have written.
    pub fn from_stream(entry_id: &str, fields: &[(String, String)]) -> Option<EventIndexEntry> {
        entry_ms(entry_id)?;
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        Some(EventIndexEntry { entry_id: entry_id.to_owned(), event_type: field(TYPE)?, event_id: field(ID)? })
    }
}

/// The time of an entry id (`<ms>-<seq>`); `None` if it is not one, which is
/// how a cursor from a caller is checked.
pub fn entry_ms(entry_id: &str) -> Option<Millis> {
    let (ms, seq) = entry_id.split_once('-')?;
    seq.parse::<u64>().ok()?;
    ms.parse::<u64>().ok().and_then(|ms| Millis::try_from(ms).ok())
}

/// The range bound of every entry published at `ms` or later.
pub fn from_time(ms: Millis) -> String {
    format!("{}", ms.max(0))
}

/// The (exclusive) range bound of every entry published before `ms`.
pub fn before_time(ms: Millis) -> String {
    format!("({}-0", ms.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back() {
        let fields = vec![(TYPE.to_owned(), "order.paid".to_owned()), (ID.to_owned(), "e-1".to_owned())];
        let entry = EventIndexEntry::from_stream("1733030000123-4", &fields).unwrap();
        assert_eq!(
            (entry.entry_id.as_str(), entry.event_type.as_str(), entry.event_id.as_str()),
            ("1733030000123-4", "order.paid", "e-1")
        );
        assert_eq!(EventIndexEntry::from_stream("1733030000123-4", &fields[..1]), None);
        assert_eq!(EventIndexEntry::from_stream("soon", &fields), None);
    }

    #[test]
    fn cursors_are_entry_ids() {
        assert_eq!(entry_ms("1733030000123-0"), Some(1_733_030_000_123));
        for bad in ["", "1733030000123", "x-1", "1-x", "-1-1", "1:2"] {
            assert_eq!(entry_ms(bad), None, "{bad}");
        }
        assert_eq!(before_time(5), "(5-0");
        assert_eq!(from_time(-3), "0");
    }
}
