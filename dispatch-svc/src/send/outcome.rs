//! What an attempt's answer means: the [`Verdict`] that decides what happens
//! next (`Retry-After` included) and the [`AttemptOutcome`] stored with the
//! delivery.
//!
//! Classification follows the delivery contract: `2xx` delivered, `410`
//! gone (the endpoint is disabled), `429`/`503` with `Retry-After` wait at
//! least that long, `415` the format is refused (no retry), anything else,
//! including transport and token failures, is retried on the schedule.

use std::time::{Duration, SystemTime};

use http::{HeaderValue, StatusCode};

use crate::records::SentRequest;

/// What to do after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `2xx`.
    Delivered,
    /// `410 Gone`: disable the endpoint and stop its retries.
    Gone,
    /// `429`/`503` with a usable `Retry-After`: wait at least this long.
    RetryAfter(Duration),
    /// Any other failure: status, timeout, connection, TLS, token endpoint.
    Retry,
    /// `415`, or a body that cannot be rendered: retrying cannot help.
    Permanent,
}

/// The result of one attempt, as stored with the delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptOutcome {
    pub verdict: Verdict,
    /// `None` when no HTTP answer was received.
    pub status_code: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    /// The first 1 KiB of the answer body.
    pub response_body: String,
    /// The endpoint refused the cached OAuth token and the request was sent
    /// again with a fresh one.
    pub token_refreshed: bool,
    /// The request sent (the last one, after a token refresh).
    pub sent: Option<SentRequest>,
}

/// What an attempt record keeps of an outcome: error, answer body, request.
pub type AttemptDetail = (Option<String>, String, Option<SentRequest>);

impl AttemptOutcome {
    /// A copy of the detail, for each job of a batch but the last.
    pub fn detail(&self) -> AttemptDetail {
        (self.error.clone(), self.response_body.clone(), self.sent.clone())
    }

    /// The detail moved out, for the last job of a batch (a single job's
    /// record costs no copy).
    pub fn take_detail(&mut self) -> AttemptDetail {
        (self.error.take(), std::mem::take(&mut self.response_body), self.sent.take())
    }

    /// No answer: the attempt failed before or while sending.
    pub fn failed(verdict: Verdict, error: String) -> Self {
        AttemptOutcome {
            verdict,
            status_code: None,
            latency: Duration::ZERO,
            error: Some(error),
            response_body: String::new(),
            token_refreshed: false,
            sent: None,
        }
    }

    pub fn delivered(&self) -> bool {
        self.verdict == Verdict::Delivered
    }

    pub fn latency_ms(&self) -> u64 {
        u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX)
    }
}

/// Maps an answer to what happens next.
pub fn classify(status: StatusCode, retry_after: Option<&HeaderValue>, now: SystemTime) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Delivered,
        410 => Verdict::Gone,
        415 => Verdict::Permanent,
        429 | 503 => retry_after
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now))
            .filter(|d| !d.is_zero())
            .map_or(Verdict::Retry, Verdict::RetryAfter),
        _ => Verdict::Retry,
    }
}

/// `Retry-After` as delay-seconds or an HTTP-date (IMF-fixdate, the form
/// RFC 9110 requires senders to use). A date in the past means no wait.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, format).ok()?.assume_utc();
    Some(SystemTime::from(at).duration_since(now).unwrap_or(Duration::ZERO))
}

/// The body prefix as text; a character cut in half at the limit is dropped
/// rather than shown as a replacement character.
pub(crate) fn utf8_prefix(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let utf8 = err.utf8_error();
            if utf8.error_len().is_none() {
                let mut bytes = err.into_bytes();
                bytes.truncate(utf8.valid_up_to());
                String::from_utf8_lossy(&bytes).into_owned()
            } else {
                String::from_utf8_lossy(err.as_bytes()).into_owned()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at(1_445_412_480); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), None);
        // Huge values parse without overflow; the retry schedule bounds them (HERALD_RETRY_AFTER_MAX).
        assert_eq!(parse_retry_after("18446744073709551615", now), Some(Duration::from_secs(u64::MAX)));
        assert!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).is_some_and(|d| d > Duration::from_secs(1 << 37))
        );
        assert_eq!(parse_retry_after("18446744073709551616", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[test]
    fn classification() {
        let now = at(1_445_412_480);
        let ra = |v: &'static str| Some(HeaderValue::from_static(v));
        let c = |code: u16, retry_after: Option<HeaderValue>| {
            classify(StatusCode::from_u16(code).unwrap(), retry_after.as_ref(), now)
        };
        assert_eq!(c(200, None), Verdict::Delivered);
        assert_eq!(c(204, None), Verdict::Delivered);
        assert_eq!(c(410, None), Verdict::Gone);
        assert_eq!(c(415, None), Verdict::Permanent);
        assert_eq!(c(429, ra("30")), Verdict::RetryAfter(Duration::from_secs(30)));
        assert_eq!(c(503, ra("Wed, 21 Oct 2015 07:28:10 GMT")), Verdict::RetryAfter(Duration::from_secs(10)));
        assert_eq!(c(429, None), Verdict::Retry);
        assert_eq!(c(429, ra("0")), Verdict::Retry);
        assert_eq!(c(503, ra("garbage")), Verdict::Retry);
        assert_eq!(c(500, ra("30")), Verdict::Retry, "Retry-After only counts on 429 and 503");
        for code in [301, 302, 400, 401, 403, 404, 408, 500, 502, 504] {
            assert_eq!(c(code, None), Verdict::Retry, "{code}");
        }
    }

    #[test]
    fn body_prefix_drops_a_split_character() {
        assert_eq!(utf8_prefix("héllo".as_bytes().to_vec()), "héllo");
        let mut cut = "aé".as_bytes().to_vec();
        cut.pop();
        assert_eq!(utf8_prefix(cut), "a");
        assert_eq!(utf8_prefix(vec![b'a', 0xff, b'b']), "a\u{fffd}b");
    }
}
