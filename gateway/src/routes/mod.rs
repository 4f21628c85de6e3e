//! The canonical `/v1` API (PRODUCT §3), one module per resource, plus the
//! operational routes. Handlers only translate: JSON in, a gRPC call, JSON
//! out; validation of meaning lives in the services, which answer
//! `INVALID_ARGUMENT` with field violations.

pub mod deliveries;
pub mod endpoint_auth;
pub mod endpoint_bodies;
pub mod endpoint_stats;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod operations;
pub mod portal_sessions;
pub mod replay;
pub mod retry_policy;
pub mod subscriptions;
pub mod tenants;

use herald_common::time_fmt;
use prost_types::Timestamp;

use crate::AppState;
use crate::error::GatewayError;
use crate::openapi::ApiRouter;

/// Every documented route of the canonical API.
pub fn api() -> ApiRouter<AppState> {
    ApiRouter::new()
        .merge(tenants::routes())
        .merge(event_types::routes())
        .merge(events::routes())
        .merge(endpoints::routes())
        .merge(subscriptions::routes())
        .merge(deliveries::routes())
        .merge(operations::routes())
        .merge(portal_sessions::routes())
        .merge(replay::routes())
        .merge(endpoint_stats::routes())
}

/// RFC 3339 UTC with milliseconds; the epoch when upstream left it unset.
pub fn rfc3339(ts: Option<&Timestamp>) -> String {
    time_fmt::rfc3339(time_fmt::from_millis(ts.map(herald_proto::convert::millis).unwrap_or(0)))
}

/// Like [`rfc3339`], `None` when unset.
pub fn rfc3339_opt(ts: Option<&Timestamp>) -> Option<String> {
    ts.filter(|t| t.seconds != 0 || t.nanos != 0).map(|t| rfc3339(Some(t)))
}

/// Parses an RFC 3339 time given in a request.
pub fn parse_time(field: &str, raw: &str) -> Result<Timestamp, GatewayError> {
    let t = time_fmt::parse_rfc3339(raw.trim())
        .ok_or_else(|| GatewayError::invalid(field, "must be an RFC 3339 time like 2024-05-07T19:18:32Z"))?;
    let nanos = t.unix_timestamp_nanos();
    Ok(Timestamp { seconds: (nanos.div_euclid(1_000_000_000)) as i64, nanos: nanos.rem_euclid(1_000_000_000) as i32 })
}

/// An optional RFC 3339 time from a query string; empty is absent.
pub fn parse_optional_time(field: &str, raw: Option<String>) -> Result<Option<Timestamp>, GatewayError> {
    raw.filter(|t| !t.trim().is_empty()).map(|t| parse_time(field, &t)).transpose()
}

/// A JSON value as the raw bytes the services take; `None` is "absent" (empty).
pub fn json_bytes(value: Option<&serde_json::Value>) -> Vec<u8> {
    match value {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(v) => serde_json::to_vec(v).unwrap_or_default(),
    }
}

/// Stored JSON bytes as a value; `None` when empty.
pub fn json_value(bytes: &[u8]) -> Option<serde_json::Value> {
    if bytes.is_empty() {
        return None;
    }
    match serde_json::from_slice(bytes) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "upstream sent a JSON field that does not parse");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        let ts = parse_time("since", "2020-12-07T19:18:32.076Z").unwrap();
        assert_eq!(rfc3339(Some(&ts)), "2020-12-07T19:18:32.076Z");
        let ts = parse_time("since", "2020-12-07T20:18:32+01:00").unwrap();
        assert_eq!(rfc3339(Some(&ts)), "2020-12-07T19:18:32.000Z");
        assert!(parse_time("since", "yesterday").is_err());
        assert_eq!(rfc3339_opt(None), None);
    }
}
