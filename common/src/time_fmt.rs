//! RFC 3339 timestamps as Herald writes them: UTC with millisecond precision.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

pub fn now_millis() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn from_millis(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn to_millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 in UTC with exactly three fraction digits, so every time Herald
/// writes has the same width and sorts as text: `2024-05-07T19:18:32.076Z`.
const MILLIS_UTC: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(MILLIS_UTC).unwrap_or_default()
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_in_utc() {
        let t = from_millis(1_607_368_712_076);
        assert_eq!(rfc3339(t), "2020-12-07T19:18:32.076Z");
        assert_eq!(parse_rfc3339("2020-12-07T19:18:32.076Z"), Some(t));
        assert_eq!(rfc3339(from_millis(1_607_368_712_350)), "2020-12-07T19:18:32.350Z");
        assert_eq!(rfc3339(from_millis(1_607_368_712_000)), "2020-12-07T19:18:32.000Z");
    }
}
