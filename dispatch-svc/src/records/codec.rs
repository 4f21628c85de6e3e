//! The stored shape of a delivery: a compact byte layout ([`compact`]) of
//! values in a fixed order, without field names, its times as differences
//! from the delivery's creation and its ids as 16 bytes, so a retained
//! delivery costs about a hundred bytes.
//!
//! Field `<id>` of the delivery's hour bucket holds its state and its latest
//! attempt; field `<id>.<n>` holds attempt `n` when more attempts followed
//! it (written with the outcome that schedules the next one), so the common
//! case, delivered on the first attempt, is one field. A retry set member is
//! not stored: it is the next job, rebuilt from the state
//! ([`DeliveryRecord::retry_member`]). States of the first layout (JSON)
//! are still read ([`legacy`]).

use herald_common::model::{Job, Millis};

use super::compact::{Decoder, Encoder};
use super::retry_set::encode_job;
use super::{AttemptRecord, DeliveryRecord, DeliveryStatus, SentRequest};

mod legacy;

/// Layout version, the first byte of every state and attempt (the first
/// layout's JSON starts with `[`). The requeue script reads the status and
/// attempt count at fixed places: the flags byte after it, then a varint.
const VERSION: u8 = 2;
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
    pub(super) fn code(self) -> u8 {
        match self {
            Waiting::Nothing => 0,
            Waiting::RetrySet => 1,
            Waiting::Actor => 2,
        }
    }

    pub(super) fn from_code(code: u8) -> Self {
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

pub(super) fn status_from_code(code: u8) -> Option<DeliveryStatus> {
    match code {
        0 => Some(DeliveryStatus::Pending),
        1 => Some(DeliveryStatus::Delivered),
        2 => Some(DeliveryStatus::Retrying),
        3 => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

/// Flags of a state, in the byte after the version: the status and where a
/// retry waits in the low four bits, then which optional values follow.
const HAS_NEXT_ATTEMPT: u8 = 1 << 4;
const HAS_GENERATION: u8 = 1 << 5;
const HAS_TRACEPARENT: u8 = 1 << 6;
const HAS_LATEST: u8 = 1 << 7;

/// Flags of an attempt.
const HAS_TIME: u8 = 1;
const HAS_STATUS_CODE: u8 = 1 << 1;
const HAS_ERROR: u8 = 1 << 2;
const HAS_SENT: u8 = 1 << 3;

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

/// The time a delivery's stored times are differences from: its creation.
fn base_time(id: &str) -> Millis {
    herald_common::ids::created_millis(id).unwrap_or(0)
}

/// The stored state of `job`'s delivery. The publisher's `traceparent` is
/// kept only while a retry waits in the retry set (its member carries it,
/// and is rebuilt from the state); a settled delivery does not need it.
pub fn encode_state(job: &Job, state: &State<'_>) -> Vec<u8> {
    let traceparent = if state.waiting == Waiting::RetrySet { job.traceparent.as_deref() } else { None };
    let mut flags = status_code(state.status) | (state.waiting.code() << 2);
    for (present, flag) in [
        (state.next_attempt_at.is_some(), HAS_NEXT_ATTEMPT),
        (job.generation.is_some(), HAS_GENERATION),
        (traceparent.is_some(), HAS_TRACEPARENT),
        (state.last_attempt.is_some(), HAS_LATEST),
    ] {
        if present {
            flags |= flag;
        }
    }
    let mut out = Encoder::with_capacity(128);
    out.byte(VERSION);
    out.byte(flags);
    out.uint(u64::from(state.attempt_count));
    out.int(state.updated_at.saturating_sub(base_time(&job.delivery_id)));
    if let Some(next) = state.next_attempt_at {
        out.int(next.saturating_sub(state.updated_at));
    }
    for text in [job.tenant.as_str(), &job.endpoint_id, &job.event_id, state.event_type] {
        out.text(text);
    }
    for text in [job.generation.as_deref(), traceparent].into_iter().flatten() {
        out.text(text);
    }
    if let Some(latest) = state.last_attempt {
        // Its time is left out when it is the state's `updated_at`, as it
        // is whenever the attempt settled it.
        write_attempt(&mut out, latest, state.updated_at, latest.at == state.updated_at);
    }
    out.finish()
}

/// An attempt, its time a difference from `base` (left out when `base` is
/// its time).
fn write_attempt(out: &mut Encoder, attempt: &AttemptRecord, base: Millis, time_is_base: bool) {
    let mut flags = 0;
    for (present, flag) in [
        (!time_is_base, HAS_TIME),
        (attempt.status_code.is_some(), HAS_STATUS_CODE),
        (attempt.error.is_some(), HAS_ERROR),
        (attempt.sent.is_some(), HAS_SENT),
    ] {
        if present {
            flags |= flag;
        }
    }
    out.uint(u64::from(attempt.n));
    out.byte(flags);
    if !time_is_base {
        out.int(attempt.at.saturating_sub(base));
    }
    if let Some(code) = attempt.status_code {
        out.uint(u64::from(code));
    }
    out.uint(attempt.latency_ms);
    if let Some(error) = &attempt.error {
        out.text(error);
    }
    out.text(&attempt.response_body);
    if let Some(sent) = &attempt.sent {
        out.fixed_u64(sent.shape_id);
        out.uint(sent.body_bytes);
        out.uint(sent.varying.len() as u64);
        for value in &sent.varying {
            out.text(value);
        }
    }
}

fn read_attempt(input: &mut Decoder<'_>, base: Millis) -> Option<AttemptRecord> {
    let n = u32::try_from(input.uint()?).ok()?;
    let flags = input.byte()?;
    let at = if flags & HAS_TIME != 0 { base.saturating_add(input.int()?) } else { base };
    let status_code = if flags & HAS_STATUS_CODE != 0 { Some(u16::try_from(input.uint()?).ok()?) } else { None };
    let latency_ms = input.uint()?;
    let error = if flags & HAS_ERROR != 0 { Some(input.text()?) } else { None };
    let response_body = input.text()?;
    let sent = if flags & HAS_SENT != 0 {
        let shape_id = input.fixed_u64()?;
        let body_bytes = input.uint()?;
        let count = input.uint()?;
        // Each value takes at least a byte: a count past what is left is corrupt.
        let count = usize::try_from(count).ok().filter(|c| *c <= 64)?;
        let varying = (0..count).map(|_| input.text()).collect::<Option<Vec<_>>>()?;
        Some(SentRequest { shape_id, body_bytes, varying, shape: None })
    } else {
        None
    };
    Some(AttemptRecord { n, at, status_code, latency_ms, error, response_body, sent })
}

/// A stored attempt of its own field (`<id>.<n>`) of delivery `id`.
pub fn encode_attempt(id: &str, attempt: &AttemptRecord) -> Vec<u8> {
    let mut out = Encoder::with_capacity(64);
    out.byte(VERSION);
    write_attempt(&mut out, attempt, base_time(id), false);
    out.finish()
}

pub fn decode_attempt(id: &str, raw: &[u8]) -> Option<AttemptRecord> {
    match raw.split_first()? {
        (&VERSION, rest) => {
            let mut input = Decoder::new(rest);
            read_attempt(&mut input, base_time(id)).filter(|_| input.is_empty())
        }
        (b'[', _) => legacy::decode_attempt(raw),
        _ => None,
    }
}

/// The field of attempt `n` of delivery `id`.
pub fn attempt_field(id: &str, n: u32) -> String {
    format!("{id}.{n}")
}

/// A delivery read back from its state; its attempts hold the latest one
/// only (the caller adds the others). `None` for a corrupt state.
pub fn decode_state(id: &str, raw: &[u8]) -> Option<DeliveryRecord> {
    match raw.split_first()? {
        (&VERSION, rest) => read_state(id, &mut Decoder::new(rest)),
        (b'[', _) => legacy::decode_state(id, raw),
        _ => None,
    }
}

fn read_state(id: &str, input: &mut Decoder<'_>) -> Option<DeliveryRecord> {
    let flags = input.byte()?;
    let created_at = base_time(id);
    let attempt_count = u32::try_from(input.uint()?).ok()?;
    let updated_at = created_at.saturating_add(input.int()?);
    let next_attempt_at =
        if flags & HAS_NEXT_ATTEMPT != 0 { Some(updated_at.saturating_add(input.int()?)) } else { None };
    let (tenant, endpoint_id, event_id, event_type) = (input.text()?, input.text()?, input.text()?, input.text()?);
    let generation = if flags & HAS_GENERATION != 0 { Some(input.text()?) } else { None };
    let traceparent = if flags & HAS_TRACEPARENT != 0 { Some(input.text()?) } else { None };
    let latest = if flags & HAS_LATEST != 0 { Some(read_attempt(input, updated_at)?) } else { None };
    if !input.is_empty() {
        return None;
    }
    Some(DeliveryRecord {
        id: id.to_owned(),
        tenant,
        endpoint_id,
        event_id,
        event_type,
        status: status_from_code(flags & 3)?,
        attempt_count,
        created_at,
        updated_at,
        next_attempt_at,
        waiting: Waiting::from_code((flags >> 2) & 3),
        traceparent,
        generation,
        attempts: latest.into_iter().collect(),
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
        let next = Job { attempt: 3, ..job.clone() };
        assert_eq!(record.retry_member(), Some(encode_job(&next)));
        let own = encode_attempt(&job.delivery_id, &attempt);
        assert_eq!(decode_attempt(&job.delivery_id, &own), Some(attempt));
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
        let without_trace = encode_state(&Job { traceparent: None, ..job.clone() }, &state);
        assert_eq!(raw, without_trace, "no trace kept");
        let settled_at_other_time = encode_state(&job, &State { updated_at: 10, ..state });
        assert_eq!(raw.len() + 1, settled_at_other_time.len(), "the attempt's time only when it differs");
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
        assert_eq!(decode_state("dlv_x", b"[2]"), None);
        assert_eq!(decode_state("dlv_x", b"not json"), None);
        let raw = encode_state(&job, &state);
        assert_eq!(decode_state(&job.delivery_id, &raw[..raw.len() - 1]), None, "cut short");
        assert_eq!(decode_state(&job.delivery_id, &[raw.as_slice(), &[0]].concat()), None, "trailing bytes");
    }
}
