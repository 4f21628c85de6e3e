//! The process environment as a plain map, and the value syntaxes Herald's
//! variables share (durations, flags, lists, listen addresses).
//!
//! Reading through [`Env`] lets tests build a configuration from pairs and
//! never touch the process environment.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{CommonError, Result};

/// A snapshot of environment variables.
#[derive(Clone, Debug, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    /// The value, with an empty string treated as unset.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key).unwrap_or(default).trim().to_owned()
    }

    pub fn parse<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => {
                raw.trim().parse().map_err(|_| CommonError::Config(format!("{key}={raw:?} is not a valid value")))
            }
        }
    }

    pub fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(CommonError::Config(format!("{key}={v:?} is not true or false"))),
        }
    }

    pub fn duration(&self, key: &str, default: &str) -> Result<Duration> {
        let raw = self.string(key, default);
        parse_duration(&raw)
            .ok_or_else(|| CommonError::Config(format!("{key}={raw:?} is not a duration like 500ms, 5s, 2m, 1h")))
    }

    pub fn socket_addr(&self, key: &str, default: &str) -> Result<SocketAddr> {
        let raw = self.string(key, default);
        // ":9101" is accepted as shorthand for every interface.
        let full = if raw.starts_with(':') { format!("0.0.0.0{raw}") } else { raw.clone() };
        full.parse()
            .map_err(|_| CommonError::Config(format!("{key}={raw:?} is not a listen address like 0.0.0.0:8080")))
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
            .unwrap_or_default()
    }
}

/// `500ms`, `5s`, `2m`, `1h`, `3d`; a bare number is seconds.
pub fn parse_duration(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// `3d`, `1h30m`, `500ms`: a duration for people to read, in error
/// messages (a variable takes one unit).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let units = [("d", 86_400_000u128), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)];
    let mut rest = ms;
    let mut text = String::new();
    for (unit, size) in units {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn durations_format_as_they_parse() {
        assert_eq!(format_duration(Duration::from_millis(90_061_500)), "1d1h1m1s500ms");
        assert_eq!(format_duration(Duration::from_secs(72 * 3600)), "3d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
