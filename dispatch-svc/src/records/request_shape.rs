//! What an attempt sent, stored without repeating what every request to an
//! endpoint has in common. The *shape* of a request (its URL and headers,
//! with the per-message values left as gaps) is stored once per hour
//! bucket, in field `s:<shape id>` of the bucket hash it expires with; an
//! attempt keeps the shape id, its body size and the values of the gaps
//! (`webhook-id`, `webhook-timestamp`, `traceparent`, the `ce-*` attributes
//! of a binary CloudEvent), leaving empty the ones it can make again
//! ([`KnownValues`]). Credentials and signatures are stored as
//! [`REDACTED`], never their values.

use std::sync::Arc;

/// The value a recorded header shows in place of a secret.
pub const REDACTED: &str = "[redacted]";

/// Headers whose value changes from one message to the next.
const VARYING: [&str; 6] = ["webhook-id", "webhook-timestamp", "traceparent", "ce-id", "ce-time", "ce-type"];

pub fn is_varying(name: &str) -> bool {
    VARYING.contains(&name)
}

/// An endpoint's request as it is the same for every message: headers in
/// the order sent, `None` where the value varies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestShape {
    pub url: String,
    pub headers: Vec<(String, Option<String>)>,
}

impl RequestShape {
    pub fn encode(&self) -> String {
        serde_json::to_string(&(&self.url, &self.headers)).unwrap_or_default()
    }

    pub fn decode(raw: &str) -> Option<RequestShape> {
        let (url, headers) = serde_json::from_str(raw).ok()?;
        Some(RequestShape { url, headers })
    }
}

/// The field of the bucket hash holding shape `id`.
pub fn shape_field(id: u64) -> String {
    format!("s:{id:016x}")
}

/// One attempt's request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRequest {
    /// A hash of the shape (its field is [`shape_field`]).
    pub shape_id: u64,
    pub body_bytes: u64,
    /// The values of the shape's gaps, in order.
    pub varying: Vec<String>,
    /// Known when sending; read from the bucket when reading (`None` if it
    /// could not be).
    pub shape: Option<Arc<RequestShape>>,
}

/// The gaps holding the message id and the `traceparent`.
const MESSAGE_ID: &str = "webhook-id";
const TRACEPARENT: &str = "traceparent";

/// Gap values the record of a delivery's attempt rebuilds from what it
/// names already, and so does not store: the message id when it is the
/// event id (as for every single-event message), and the `traceparent`
/// when it is the one made from the delivery id and attempt number.
#[derive(Clone, Copy, Debug)]
pub struct KnownValues<'a> {
    pub event_id: &'a str,
    pub traceparent: Option<&'a str>,
}

impl KnownValues<'_> {
    fn pairs(&self) -> [(&str, Option<&str>); 2] {
        [(MESSAGE_ID, Some(self.event_id)), (TRACEPARENT, self.traceparent)]
    }
}

impl SentRequest {
    /// The same, without the gap values `known` can rebuild.
    pub fn without_known(mut self, known: &KnownValues<'_>) -> SentRequest {
        for (name, value) in known.pairs() {
            if let (Some(gap), Some(value)) = (self.gap(name), value)
                && self.varying.get(gap).is_some_and(|v| v == value)
            {
                self.varying[gap].clear();
            }
        }
        self
    }

    /// Puts back the values [`SentRequest::without_known`] left out.
    pub fn restore_known(&mut self, known: &KnownValues<'_>) {
        for (name, value) in known.pairs() {
            if let (Some(gap), Some(value)) = (self.gap(name), value)
                && let Some(stored) = self.varying.get_mut(gap)
                && stored.is_empty()
            {
                stored.push_str(value);
            }
        }
    }

    /// Which of the values fills the shape's gap for header `name`.
    fn gap(&self, name: &str) -> Option<usize> {
        let shape = self.shape.as_deref()?;
        shape.headers.iter().filter(|(_, value)| value.is_none()).position(|(n, _)| n == name)
    }

    /// URL and headers as sent, when the shape is known.
    pub fn url_and_headers(&self) -> Option<(&str, Vec<(&str, &str)>)> {
        let shape = self.shape.as_deref()?;
        let mut gaps = self.varying.iter();
        let headers = shape
            .headers
            .iter()
            .map(|(name, value)| {
                (name.as_str(), value.as_deref().or_else(|| gaps.next().map(String::as_str)).unwrap_or(""))
            })
            .collect();
        Some((&shape.url, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_and_its_gaps_give_back_the_headers() {
        let shape = RequestShape {
            url: "https://example.com/h".into(),
            headers: vec![
                ("user-agent".into(), Some("Herald".into())),
                ("webhook-id".into(), None),
                ("authorization".into(), Some(REDACTED.into())),
                ("webhook-timestamp".into(), None),
            ],
        };
        assert_eq!(RequestShape::decode(&shape.encode()), Some(shape.clone()));
        let sent = SentRequest {
            shape_id: 1,
            body_bytes: 3,
            varying: vec!["evt_1".into(), "1796105046".into()],
            shape: Some(Arc::new(shape)),
        };
        let (url, headers) = sent.url_and_headers().unwrap();
        assert_eq!(url, "https://example.com/h");
        assert_eq!(
            headers,
            [
                ("user-agent", "Herald"),
                ("webhook-id", "evt_1"),
                ("authorization", REDACTED),
                ("webhook-timestamp", "1796105046")
            ]
        );
        assert!(is_varying("ce-id") && !is_varying("content-type"));

        let known = KnownValues { event_id: "evt_1", traceparent: None };
        let mut short = sent.clone().without_known(&known);
        assert_eq!(short.varying, ["", "1796105046"]);
        short.restore_known(&known);
        assert_eq!(short, sent);
        let other = KnownValues { event_id: "evt_2", traceparent: None };
        assert_eq!(sent.clone().without_known(&other), sent);
    }

    #[test]
    fn a_traceparent_made_from_the_delivery_is_left_out() {
        let shape = RequestShape {
            url: "https://example.com/h".into(),
            headers: vec![("webhook-id".into(), None), ("traceparent".into(), None)],
        };
        let made = "00-0190e4c5b8f07a1b2c3d4e5f60718293-1a2b3c4d5e6f7081-01";
        let sent = SentRequest {
            shape_id: 1,
            body_bytes: 3,
            varying: vec!["evt_1".into(), made.into()],
            shape: Some(Arc::new(shape)),
        };
        let known = KnownValues { event_id: "evt_1", traceparent: Some(made) };
        let mut short = sent.clone().without_known(&known);
        assert_eq!(short.varying, ["", ""]);
        short.restore_known(&known);
        assert_eq!(short, sent);
        let publisher = KnownValues { event_id: "evt_1", traceparent: Some("00-ab-cd-01") };
        assert_eq!(sent.clone().without_known(&publisher).varying, ["", made]);
    }
}
