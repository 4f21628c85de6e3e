//! The first stored layout of a delivery (a JSON array of values in a
//! fixed order), read so that records written before the compact layout
//! stay readable for the rest of their retention. Nothing writes it.

use herald_common::model::Millis;

use super::super::{AttemptRecord, DeliveryRecord, SentRequest};
use super::{Waiting, status_from_code};

/// What was sent: its shape id, body size and the shape's gaps.
type OwnedSent = (u64, u64, Vec<String>);

/// An attempt as stored; attempts stored before requests were recorded
/// have six values.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OwnedAttempt {
    Sent(u32, Millis, Option<u16>, u64, Option<String>, String, Option<OwnedSent>),
    Bare(u32, Millis, Option<u16>, u64, Option<String>, String),
}

/// The latest attempt inside a state: its time is `null` when it is the
/// state's `updatedAt`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OwnedLatest {
    Sent(u32, Option<Millis>, Option<u16>, u64, Option<String>, String, Option<OwnedSent>),
    Bare(u32, Option<Millis>, Option<u16>, u64, Option<String>, String),
}

#[allow(clippy::type_complexity)]
type OwnedState = (
    u8,
    u8,
    u32,
    Millis,
    Option<Millis>,
    u8,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<OwnedLatest>,
);

/// Version of the one layout this module reads, its first value.
const VERSION: u8 = 1;

fn attempt(
    (n, at, status_code, latency_ms, error, response_body, sent): (
        u32,
        Millis,
        Option<u16>,
        u64,
        Option<String>,
        String,
        Option<OwnedSent>,
    ),
) -> AttemptRecord {
    let sent = sent.map(|(shape_id, body_bytes, varying)| SentRequest { shape_id, body_bytes, varying, shape: None });
    AttemptRecord { n, at, status_code, latency_ms, error, response_body, sent }
}

pub fn decode_attempt(raw: &[u8]) -> Option<AttemptRecord> {
    Some(attempt(match serde_json::from_slice::<OwnedAttempt>(raw).ok()? {
        OwnedAttempt::Sent(n, at, code, latency, error, body, sent) => (n, at, code, latency, error, body, sent),
        OwnedAttempt::Bare(n, at, code, latency, error, body) => (n, at, code, latency, error, body, None),
    }))
}

pub fn decode_state(id: &str, raw: &[u8]) -> Option<DeliveryRecord> {
    let values: OwnedState = serde_json::from_slice(raw).ok()?;
    let (
        version,
        status,
        attempt_count,
        updated_at,
        next_attempt_at,
        waiting,
        tenant,
        endpoint_id,
        event_id,
        event_type,
        generation,
        traceparent,
        last,
    ) = values;
    if version != VERSION {
        return None;
    }
    let latest = last.map(|latest| {
        attempt(match latest {
            OwnedLatest::Sent(n, at, code, latency, error, body, sent) => {
                (n, at.unwrap_or(updated_at), code, latency, error, body, sent)
            }
            OwnedLatest::Bare(n, at, code, latency, error, body) => {
                (n, at.unwrap_or(updated_at), code, latency, error, body, None)
            }
        })
    });
    Some(DeliveryRecord {
        id: id.to_owned(),
        tenant,
        endpoint_id,
        event_id,
        event_type,
        status: status_from_code(status)?,
        attempt_count,
        created_at: herald_common::ids::created_millis(id).unwrap_or(0),
        updated_at,
        next_attempt_at,
        waiting: Waiting::from_code(waiting),
        traceparent,
        generation,
        attempts: latest.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::DeliveryStatus;

    #[test]
    fn states_of_the_first_layout_read_back() {
        let id = "dlv_01m8ry9br5006jbvc1h8vb9erq";
        let raw = r#"[1,1,1,1796133400638,null,0,"bench-f1","ep_01m8ry9bn5091x3dbn2jmv2qdv","evt_01m8ry9bqv06ad3bvj84rr0wkr","bench.f1","gen_01m8ry9bn53w6n6bhp8d554qhn",null,[1,null,204,53,null,"",[9166971291483436812,151,["","1796133400",""]]]]"#;
        let record = decode_state(id, raw.as_bytes()).unwrap();
        assert_eq!(
            (record.status, record.attempt_count, record.updated_at),
            (DeliveryStatus::Delivered, 1, 1796133400638)
        );
        assert_eq!((record.tenant.as_str(), record.event_type.as_str()), ("bench-f1", "bench.f1"));
        let latest = &record.attempts[0];
        assert_eq!((latest.at, latest.status_code, latest.latency_ms), (1796133400638, Some(204), 53));
        assert_eq!(latest.sent.as_ref().unwrap().varying, ["", "1796133400", ""]);
        let earlier = decode_attempt(br#"[1,7,503,12,"endpoint answered status 503","<b>busy</b>"]"#).unwrap();
        assert_eq!((earlier.n, earlier.at, earlier.status_code, earlier.sent), (1, 7, Some(503), None));
        assert_eq!(decode_state(id, b"[2]"), None);
    }
}
