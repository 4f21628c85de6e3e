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
    // Floored, as the format drops the digits past the milliseconds.
    let ms = i64::try_from(t.unix_timestamp_nanos().div_euclid(1_000_000)).unwrap_or(i64::MAX);
    match four_digit_years(ms) {
        Some(text) => text,
        None => t.to_offset(time::UtcOffset::UTC).format(MILLIS_UTC).unwrap_or_default(),
    }
}

/// [`rfc3339`] digit by digit, for years 0000–9999 (every time Herald makes
/// or accepts in practice): the format-description walk costs a publish
/// more than the rest of storing its event's header.
fn four_digit_years(ms: i64) -> Option<String> {
    const DAY_MS: i64 = 86_400_000;
    let (days, ms_of_day) = (ms.div_euclid(DAY_MS), ms.rem_euclid(DAY_MS));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let fields = [
        (year, 4, '-'),
        (month, 2, '-'),
        (day, 2, 'T'),
        (ms_of_day / 3_600_000, 2, ':'),
        (ms_of_day / 60_000 % 60, 2, ':'),
        (ms_of_day / 1000 % 60, 2, '.'),
        (ms_of_day % 1000, 3, 'Z'),
    ];
    let mut out = String::with_capacity(24);
    for (value, digits, after) in fields {
        for place in (0..digits).rev() {
            out.push(char::from(b'0' + (value / 10_i64.pow(place) % 10) as u8));
        }
        out.push(after);
    }
    Some(out)
}

/// Year, month and day of the proleptic Gregorian calendar for a count of
/// days since 1970-01-01 (the "civil from days" algorithm of H. Hinnant's
/// date library, in eras of 400 years).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_agree_with_the_time_crate() {
        let formatted = |ms: i64| from_millis(ms).format(MILLIS_UTC).unwrap();
        // Edges: the epoch, leap days, centuries, the ends of 0000 and 9999.
        let edges = [
            0,
            -1,
            951_782_400_000,
            951_868_799_999,
            4_107_542_400_000,
            -62_167_219_200_000,
            253_402_300_799_999,
            1_607_368_712_076,
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let random = std::iter::repeat_with(|| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 315_569_520_000_000) as i64 - 62_167_219_200_000
        });
        for ms in edges.into_iter().chain(random.take(20_000)) {
            assert_eq!(four_digit_years(ms).as_deref(), Some(formatted(ms).as_str()), "{ms}");
            assert_eq!(rfc3339(from_millis(ms)), formatted(ms));
        }
        for nanos in [1_607_368_712_076_999_999_i128, -500_000, -1_000_000_001] {
            let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap();
            assert_eq!(rfc3339(t), t.format(MILLIS_UTC).unwrap(), "{nanos} ns");
        }
        assert_eq!(four_digit_years(-62_167_219_200_001), None, "the year before 0000 is left to the time crate");
        assert_eq!(four_digit_years(253_402_300_800_000), None);
    }

    #[test]
    fn formats_with_millis_in_utc() {
        let t = from_millis(1_607_368_712_076);
        assert_eq!(rfc3339(t), "2020-12-07T19:18:32.076Z");
        assert_eq!(parse_rfc3339("2020-12-07T19:18:32.076Z"), Some(t));
        assert_eq!(rfc3339(from_millis(1_607_368_712_350)), "2020-12-07T19:18:32.350Z");
        assert_eq!(rfc3339(from_millis(1_607_368_712_000)), "2020-12-07T19:18:32.000Z");
    }
}
