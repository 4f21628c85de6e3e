//! Turning what people type into what the API takes: JSON given inline, as
//! `@file` or `-` (standard input), `key=value` pairs, and times given as
//! RFC 3339 or as "that long ago" (`90s`, `15m`, `1h30m`, `2d`).

use std::io::Read;

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::error::CliError;

/// The text of a `--data`-style argument.
pub fn text_arg(flag: &str, raw: &str) -> Result<String, CliError> {
    if raw == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::usage(format!("{flag} -: reading standard input: {e}")))?;
        Ok(text)
    } else if let Some(path) = raw.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| CliError::usage(format!("{flag} @{path}: {e}")))
    } else {
        Ok(raw.to_owned())
    }
}

/// A JSON value from a `--data`-style argument.
pub fn json_arg(flag: &str, raw: &str) -> Result<Value, CliError> {
    let text = text_arg(flag, raw)?;
    serde_json::from_str(&text).map_err(|e| CliError::usage(format!("{flag} is not valid JSON: {e}")))
}

/// `key=value` pairs as a JSON object of strings.
pub fn pairs(flag: &str, raw: &[String]) -> Result<Value, CliError> {
    let mut map = Map::new();
    for pair in raw {
        let (key, value) =
            pair.split_once('=').ok_or_else(|| CliError::usage(format!("{flag} {pair:?} must be key=value")))?;
        map.insert(key.trim().to_owned(), Value::String(value.to_owned()));
    }
    Ok(Value::Object(map))
}

/// `90s`, `15m`, `1h30m`, `2d`, `1w`.
pub fn duration(raw: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    let mut any = false;
    for c in raw.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            'w' => Duration::weeks(n),
            _ => return None,
        };
        total = total.checked_add(unit)?;
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// An RFC 3339 time, or a duration before `now`, as RFC 3339 UTC.
pub fn time_arg(flag: &str, raw: &str, now: OffsetDateTime) -> Result<String, CliError> {
    let at = match OffsetDateTime::parse(raw.trim(), &Rfc3339) {
        Ok(at) => at,
        Err(_) => match duration(raw) {
            // Whole seconds: nobody means "1h" to the nanosecond.
            Some(ago) => (now - ago).replace_nanosecond(0).unwrap_or(now - ago),
            None => {
                return Err(CliError::usage(format!(
                    "{flag} {raw:?} is neither an RFC 3339 time nor a duration like 30m, 1h or 2d"
                )));
            }
        },
    };
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| CliError::usage(format!("{flag} {raw:?} cannot be written as RFC 3339: {e}")))
}

/// Parses an RFC 3339 time the API answered.
pub fn parse_time(raw: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(raw, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration("90s"), Some(Duration::seconds(90)));
        assert_eq!(duration("1h30m"), Some(Duration::minutes(90)));
        assert_eq!(duration("2d"), Some(Duration::days(2)));
        for bad in ["", "h", "10", "5x", "1h30"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn times_are_absolute_or_ago() {
        let now = OffsetDateTime::parse("2025-06-01T12:00:00Z", &Rfc3339).unwrap();
        assert_eq!(time_arg("--since", "1h", now).unwrap(), "2025-06-01T11:00:00Z");
        assert_eq!(time_arg("--since", "2025-06-01T13:00:00+02:00", now).unwrap(), "2025-06-01T11:00:00Z");
        assert!(time_arg("--since", "yesterday", now).is_err());
    }

    #[test]
    fn pairs_and_json() {
        let value = pairs("--header", &["x-a=1".into(), "x-b=c=d".into()]).unwrap();
        assert_eq!(value, serde_json::json!({"x-a": "1", "x-b": "c=d"}));
        assert!(pairs("--header", &["nope".into()]).is_err());
        assert_eq!(json_arg("--data", r#"{"a":1}"#).unwrap(), serde_json::json!({"a": 1}));
        assert_eq!(json_arg("--data", "{").unwrap_err().exit_code(), 2);
        assert_eq!(json_arg("--data", "@/nonexistent/file.json").unwrap_err().exit_code(), 2);
    }
}
