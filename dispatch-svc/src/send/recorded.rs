//! What the delivery history keeps of a request: its shape (URL and
//! headers, credentials and signatures redacted, per-message values left as
//! gaps) and the values that fill the gaps (see `records::request_shape`).
//! An endpoint builds its shape once and reuses it while it stays the same,
//! so recording costs a hash of the headers per attempt.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use url::Url;

use crate::records::{REDACTED, RequestShape, SentRequest, is_varying};

/// An endpoint's latest request shape and its key.
#[derive(Clone, Default)]
pub struct ShapeCache(Arc<Mutex<Option<KeyedShape>>>);

type KeyedShape = (u64, Arc<RequestShape>);

impl ShapeCache {
    /// The record of a request about to be sent to `url`.
    pub fn record(&self, url: &Url, headers: &HeaderMap, body_bytes: usize) -> SentRequest {
        let mut hasher = std::hash::DefaultHasher::new();
        url.as_str().hash(&mut hasher);
        let mut varying = Vec::new();
        for (name, value) in headers {
            name.as_str().hash(&mut hasher);
            if is_varying(name.as_str()) {
                varying.push(String::from_utf8_lossy(value.as_bytes()).into_owned());
            } else if secret(name, value) {
                REDACTED.hash(&mut hasher);
            } else {
                value.as_bytes().hash(&mut hasher);
            }
        }
        let key = hasher.finish();
        // Only whole values are stored under this lock: a panic cannot leave it half-changed.
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let shape = match &*cached {
            Some((k, shape)) if *k == key => shape.clone(),
            _ => {
                let shape = Arc::new(shape_of(url, headers));
                *cached = Some((key, shape.clone()));
                shape
            }
        };
        SentRequest { shape_id: key, body_bytes: body_bytes as u64, varying, shape: Some(shape) }
    }
}

/// Credentials (the authorization, the endpoint's sealed headers) and signatures.
fn secret(name: &HeaderName, value: &HeaderValue) -> bool {
    value.is_sensitive() || name == AUTHORIZATION || name.as_str().contains("signature")
}

fn shape_of(url: &Url, headers: &HeaderMap) -> RequestShape {
    let headers = headers
        .iter()
        .map(|(name, value)| {
            let shown = if is_varying(name.as_str()) {
                None
            } else if secret(name, value) {
                Some(REDACTED.to_owned())
            } else {
                Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
            };
            (name.as_str().to_owned(), shown)
        })
        .collect();
    RequestShape { url: url.to_string(), headers }
}

impl std::fmt::Debug for ShapeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShapeCache")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_the_shape_is_reused() {
        let url = Url::parse("https://example.com/h").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("webhook-id", HeaderValue::from_static("evt_1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t0p"));
        let mut sealed = HeaderValue::from_static("k3y");
        sealed.set_sensitive(true);
        headers.insert("x-api-key", sealed);
        headers.insert("webhook-signature", HeaderValue::from_static("v1,abc"));
        let cache = ShapeCache::default();
        let first = cache.record(&url, &headers, 7);
        let (_, shown) = first.url_and_headers().unwrap();
        assert_eq!(
            shown,
            [
                ("webhook-id", "evt_1"),
                ("authorization", REDACTED),
                ("x-api-key", REDACTED),
                ("webhook-signature", REDACTED)
            ]
        );
        headers.insert("webhook-id", HeaderValue::from_static("evt_2"));
        let second = cache.record(&url, &headers, 9);
        assert_eq!(first.shape_id, second.shape_id);
        assert!(Arc::ptr_eq(first.shape.as_ref().unwrap(), second.shape.as_ref().unwrap()));
        headers.insert("x-other", HeaderValue::from_static("1"));
        assert_ne!(cache.record(&url, &headers, 9).shape_id, first.shape_id);
    }
}
