//! The stored shape of a delivery: a JSON array of values in a fixed order,
//! without field names, so a retained delivery costs its values only.
//!
//! Field `<id>` of the delivery's hour bucket holds its state and its latest
//! attempt; field `<id>.<n>` holds attempt `n` when more attempts followed
//! it (written with the outcome that schedules the next one), so the common
//! case, delivered on the first attempt, is one field. A retry set member is
//! not stored: it is the next job, rebuilt from the state
//! ([`DeliveryRecord::retry_member`]).

use herald_common::model::{Job, Millis};

use super::retry_set::encode_job;
use super::{AttemptRecord, DeliveryRecord, DeliveryStatus, SentRequest};

/// Layout version, the first value of every state.
const VERSION: u8 = 1;

/// Where a retrying delivery's next attempt waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Waiting {
    /// Nowhere: pending, or settled for good.
    Nothing,
    /// In its partition's retry set, as [`DeliveryRecord::retry_member`].
    RetrySet,
    /// With its `fifo` actor, the stream entry still pending.
    Actor,
}

impl Waiting {
    fn code(self) -> u8 {
        match self {
            Waiting::Nothing => 0,
            Waiting::RetrySet => 1,
            Waiting::Actor => 2,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Waiting::RetrySet,
            2 => Waiting::Actor,
            _ => Waiting::Nothing,
        }
    }
}

pub(super) fn status_code(status: DeliveryStatus) -> u8 {
    match status {
        DeliveryStatus::Pending => 0,
        DeliveryStatus::Delivered => 1,
        DeliveryStatus::Retrying => 2,
        DeliveryStatus::Failed => 3,
    }
}

fn status_from_code(code: u8) -> Option<DeliveryStatus> {
    match code {
        0 => Some(DeliveryStatus::Pending),
        1 => Some(DeliveryStatus::Delivered),
        2 => Some(DeliveryStatus::Retrying),
        3 => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

/// What was sent: its shape, body size and the shape's gaps
/// (see [`super::request_shape`]).
type SentValues<'a> = (u64, u64, &'a [String]);
type OwnedSent = (u64, u64, Vec<String>);
type AttemptValues<'a> = (u32, Millis, Option<u16>, u64, Option<&'a str>, &'a str, Option<SentValues<'a>>);
/// An attempt as stored; attempts stored before requests were recorded
/// have six values.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OwnedAttempt {
    Sent(u32, Millis, Option<u16>, u64, Option<String>, String, Option<OwnedSent>),
    Bare(u32, Millis, Option<u16>, u64, Option<String>, String),
}
/// The latest attempt inside a state: its time is left out (`null`) when it
/// is the state's `updatedAt`, as it is whenever the attempt settled it.
type LatestValues<'a> = (u32, Option<Millis>, Option<u16>, u64, Option<&'a str>, &'a str, Option<SentValues<'a>>);
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OwnedLatest {
    Sent(u32, Option<Millis>, Option<u16>, u64, Option<String>, String, Option<OwnedSent>),
    Bare(u32, Option<Millis>, Option<u16>, u64, Option<String>, String),
}

impl OwnedLatest {
    /// The attempt, its time defaulting to the state's `updated_at`.
    fn into_attempt(self, updated_at: Millis) -> AttemptRecord {
        let (n, at, status_code, latency_ms, error, response_body, sent) = match self {
            OwnedLatest::Sent(n, at, code, latency, error, body, sent) => (n, at, code, latency, error, body, sent),
            OwnedLatest::Bare(n, at, code, latency, error, body) => (n, at, code, latency, error, body, None),
        };
        let at = at.unwrap_or(updated_at);
        attempt_from(OwnedAttempt::Sent(n, at, status_code, latency_ms, error, response_body, sent))
    }
}

fn sent_values(sent: &SentRequest) -> SentValues<'_> {
    (sent.shape_id, sent.body_bytes, &sent.varying)
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

fn attempt_values(a: &AttemptRecord) -> AttemptValues<'_> {
    (a.n, a.at, a.status_code, a.latency_ms, a.error.as_deref(), &a.response_body, a.sent.as_ref().map(sent_values))
}

fn attempt_from(values: OwnedAttempt) -> AttemptRecord {
    let (n, at, status_code, latency_ms, error, response_body, sent) = match values {
        OwnedAttempt::Sent(n, at, code, latency, error, body, sent) => (n, at, code, latency, error, body, sent),
        OwnedAttempt::Bare(n, at, code, latency, error, body) => (n, at, code, latency, error, body, None),
    };
    let sent = sent.map(|(shape_id, body_bytes, varying)| SentRequest { shape_id, body_bytes, varying, shape: None });
    AttemptRecord { n, at, status_code, latency_ms, error, response_body, sent }
}

/// What a state says besides the job's own ids.
pub struct State<'a> {
    pub status: DeliveryStatus,
    pub attempt_count: u32,
    pub updated_at: Millis,
    pub next_attempt_at: Option<Millis>,
    pub waiting: Waiting,
    pub event_type: &'a str,
    pub last_attempt: Option<&'a AttemptRecord>,
}

/// The stored state of `job`'s delivery. The publisher's `traceparent` is
/// kept only while a retry waits in the retry set (its member carries it,
/// and is rebuilt from the state); a settled delivery does not need it.
pub fn encode_state(job: &Job, state: &State<'_>) -> String {
    let latest = state.last_attempt.map(|a| -> LatestValues<'_> {
        let at = (a.at != state.updated_at).then_some(a.at);
        (a.n, at, a.status_code, a.latency_ms, a.error.as_deref(), &a.response_body, a.sent.as_ref().map(sent_values))
    });
    let traceparent = if state.waiting == Waiting::RetrySet { job.traceparent.as_deref() } else { None };
    let values = (
        VERSION,
        status_code(state.status),
        state.attempt_count,
        state.updated_at,
        state.next_attempt_at,
        state.waiting.code(),
        job.tenant.as_str(),
        job.endpoint_id.as_str(),
        job.event_id.as_str(),
        state.event_type,
        job.generation.as_deref(),
        traceparent,
        latest,
    );
    serde_json::to_string(&values).unwrap_or_default()
}

/// A stored attempt of its own field (`<id>.<n>`).
pub fn encode_attempt(attempt: &AttemptRecord) -> String {
    serde_json::to_string(&attempt_values(attempt)).unwrap_or_default()
}

pub fn decode_attempt(raw: &str) -> Option<AttemptRecord> {
    serde_json::from_str::<OwnedAttempt>(raw).ok().map(attempt_from)
}

/// The field of attempt `n` of delivery `id`.
pub fn attempt_field(id: &str, n: u32) -> String {
    format!("{id}.{n}")
}

/// A delivery read back from its state; its attempts hold the latest one
/// only (the caller adds the others). `None` for a corrupt state.
pub fn decode_state(id: &str, raw: &str) -> Option<DeliveryRecord> {
    let values: OwnedState = serde_json::from_str(raw).ok()?;
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
        attempts: last.map(|latest| latest.into_attempt(updated_at)).into_iter().collect(),
    })
}

impl DeliveryRecord {
    /// The job of its next attempt, as a retry or a manual requeue queues it.
    pub fn next_job(&self) -> Job {
        Job {
            delivery_id: self.id.clone(),
            tenant: self.tenant.clone(),
            endpoint_id: self.endpoint_id.clone(),
            event_id: self.event_id.clone(),
            attempt: self.attempt_count.saturating_add(1),
            traceparent: self.traceparent.clone(),
            generation: self.generation.clone(),
        }
    }

    /// Its member in the retry set, while a retry waits there. The member
    /// is the next job, made the same way when it was scheduled.
    pub fn retry_member(&self) -> Option<String> {
        (self.waiting == Waiting::RetrySet).then(|| encode_job(&self.next_job()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        Job {
            delivery_id: herald_common::ids::new_id(herald_common::ids::DELIVERY),
            tenant: "acme".into(),
            endpoint_id: "ep_1".into(),
            event_id: "e-\"1\"".into(),
            attempt: 2,
            traceparent: None,
            generation: Some("gen_1".into()),
        }
    }

    #[test]
    fn states_read_back() {
        let job = job();
        let attempt = AttemptRecord {
            n: 2,
            at: 7,
            status_code: Some(503),
            latency_ms: 12,
            error: Some("endpoint answered status 503".into()),
            response_body: "<b>busy</b>".into(),
            sent: Some(SentRequest { shape_id: 0x0a1b, body_bytes: 42, varying: vec!["e-1".into()], shape: None }),
        };
        let state = State {
            status: DeliveryStatus::Retrying,
            attempt_count: 2,
            updated_at: 9,
            next_attempt_at: Some(60_009),
            waiting: Waiting::RetrySet,
            event_type: "order.created",
            last_attempt: Some(&attempt),
        };
        let record = decode_state(&job.delivery_id, &encode_state(&job, &state)).unwrap();
        assert_eq!(
            (record.status, record.attempt_count, record.next_attempt_at),
            (DeliveryStatus::Retrying, 2, Some(60_009))
        );
        assert_eq!(
            (record.tenant.as_str(), record.event_id.as_str(), record.event_type.as_str()),
            ("acme", "e-\"1\"", "order.created")
        );
        assert_eq!(record.attempts, vec![attempt.clone()]);
        assert_eq!(record.generation.as_deref(), Some("gen_1"));
        assert!(record.created_at > 0);
        let next = Job { attempt: 3, ..job };
        assert_eq!(record.retry_member(), Some(encode_job(&next)));
        assert_eq!(decode_attempt(&encode_attempt(&attempt)), Some(attempt));
    }

    #[test]
    fn settled_states_keep_no_trace_and_no_second_time() {
        let job = Job { traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()), ..job() };
        let attempt = AttemptRecord {
            n: 1,
            at: 9,
            status_code: Some(204),
            latency_ms: 3,
            error: None,
            response_body: String::new(),
            sent: None,
        };
        let mut state = State {
            status: DeliveryStatus::Delivered,
            attempt_count: 1,
            updated_at: 9,
            next_attempt_at: None,
            waiting: Waiting::Nothing,
            event_type: "t",
            last_attempt: Some(&attempt),
        };
        let raw = encode_state(&job, &state);
        assert!(!raw.contains("0af7651916cd43dd") && !raw.contains(",9,204"), "{raw}");
        let record = decode_state(&job.delivery_id, &raw).unwrap();
        assert_eq!((record.traceparent, record.attempts), (None, vec![attempt.clone()]));
        state.waiting = Waiting::RetrySet;
        let record = decode_state(&job.delivery_id, &encode_state(&job, &state)).unwrap();
        assert_eq!(record.traceparent, job.traceparent);
    }

    #[test]
    fn a_state_without_an_attempt_or_a_retry_reads_back() {
        let job = job();
        let state = State {
            status: DeliveryStatus::Pending,
            attempt_count: 0,
            updated_at: 1,
            next_attempt_at: None,
            waiting: Waiting::Nothing,
            event_type: "t",
            last_attempt: None,
        };
        let record = decode_state(&job.delivery_id, &encode_state(&job, &state)).unwrap();
        assert!(record.attempts.is_empty());
        assert_eq!(record.retry_member(), None);
        assert_eq!(decode_state("dlv_x", "[2]"), None);
        assert_eq!(decode_state("dlv_x", "not json"), None);
    }
}
