//! What an attempt sent, stored without repeating what every request to an
//! endpoint has in common. The *shape* of a request (its URL and headers,
//! with the per-message values left as gaps) is stored once per hour
//! bucket, in field `s:<shape id>` of the bucket hash it expires with; an
//! attempt keeps the shape id, its body size and the values of the gaps
//! (`webhook-id`, `webhook-timestamp`, `traceparent`, the `ce-*` attributes
//! of a binary CloudEvent). Credentials and signatures are stored as
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

/// The gap that holds the message id, left empty when it is the event id.
const MESSAGE_ID: &str = "webhook-id";

impl SentRequest {
    /// The same, without the message id when it is `event_id` (as it is for
    /// every single-event message): the record names its event already.
    pub fn without_event_id(mut self, event_id: &str) -> SentRequest {
        if let Some(gap) = self.gap(MESSAGE_ID)
            && self.varying.get(gap).is_some_and(|v| v == event_id)
        {
            self.varying[gap].clear();
        }
        self
    }

    /// Puts back a message id left out by [`SentRequest::without_event_id`].
    pub fn restore_event_id(&mut self, event_id: &str) {
        if let Some(gap) = self.gap(MESSAGE_ID)
            && let Some(value) = self.varying.get_mut(gap)
            && value.is_empty()
        {
            value.push_str(event_id);
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

        let mut short = sent.clone().without_event_id("evt_1");
        assert_eq!(short.varying, ["", "1796105046"]);
        short.restore_event_id("evt_1");
        assert_eq!(short, sent);
        assert_eq!(sent.clone().without_event_id("evt_2"), sent);
    }
}
