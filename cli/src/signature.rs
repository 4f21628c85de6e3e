//! Checking Standard Webhooks signatures, as a receiver must: the signed
//! content is `{webhook-id}.{webhook-timestamp}.{body}`, the key is the
//! base64 after `whsec_`, `webhook-signature` holds one or more
//! space-separated `v1,<base64 HMAC-SHA256>` (several during a secret
//! rotation), and a timestamp more than five minutes from now is refused so
//! a captured delivery cannot be replayed later.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far `webhook-timestamp` may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("malformed secret: {0}")]
    Secret(&'static str),
    #[error("no {0} header")]
    Missing(&'static str),
    #[error("malformed timestamp {0:?} (expected Unix seconds)")]
    Timestamp(String),
    #[error("timestamp outside the 5-minute tolerance ({0}s from now)")]
    Tolerance(i64),
    #[error("no matching signature (wrong secret, or the id, timestamp or body was altered)")]
    NoMatch,
}

/// A signing secret, decoded once.
#[derive(Clone)]
pub struct Secret {
    mac: HmacSha256,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// `whsec_<base64>`; the prefix is optional, as in the reference libraries.
    pub fn parse(secret: &str) -> Result<Secret, VerifyError> {
        let encoded = secret.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| VerifyError::Secret("the part after whsec_ is not base64"))?;
        if key.is_empty() {
            return Err(VerifyError::Secret("the key is empty"));
        }
        let mac = HmacSha256::new_from_slice(&key).map_err(|_| VerifyError::Secret("unusable key"))?;
        Ok(Secret { mac })
    }

    /// Checks one message; `now` is Unix seconds.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        if id.is_empty() {
            return Err(VerifyError::Missing("webhook-id"));
        }
        if signatures.trim().is_empty() {
            return Err(VerifyError::Missing("webhook-signature"));
        }
        let sent: i64 = timestamp.trim().parse().map_err(|_| VerifyError::Timestamp(timestamp.to_owned()))?;
        let skew = sent.saturating_sub(now);
        if skew.abs() > TOLERANCE_SECONDS {
            return Err(VerifyError::Tolerance(skew));
        }
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        // Other versions (`v1a,…`, asymmetric) are skipped, not refused: a
        // message may carry them beside a `v1` one.
        let matches = signatures
            .split_whitespace()
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b64| STANDARD.decode(b64).ok())
            .any(|expected| mac.clone().verify_slice(&expected).is_ok());
        if matches { Ok(()) } else { Err(VerifyError::NoMatch) }
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // The example message of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_specification_example_verifies() {
        let secret = Secret::parse(SECRET).unwrap();
        assert_eq!(secret.verify(ID, TS, SIG, BODY, 1614265330), Ok(()));
        let rotated = format!("v1,bm90IGl0 v1a,xyz {SIG}");
        assert_eq!(secret.verify(ID, TS, &rotated, BODY, 1614265330 + 299), Ok(()));
    }

    #[test]
    fn each_failure_names_its_reason() {
        let secret = Secret::parse(SECRET).unwrap();
        let now = 1614265330;
        assert_eq!(secret.verify(ID, TS, SIG, br#"{"test": 1}"#, now), Err(VerifyError::NoMatch));
        assert_eq!(secret.verify("msg_other", TS, SIG, BODY, now), Err(VerifyError::NoMatch));
        let other = Secret::parse("whsec_c2VjcmV0").unwrap();
        assert_eq!(other.verify(ID, TS, SIG, BODY, now), Err(VerifyError::NoMatch));
        assert_eq!(secret.verify(ID, TS, SIG, BODY, now + 301), Err(VerifyError::Tolerance(-301)));
        assert_eq!(secret.verify(ID, TS, SIG, BODY, now - 400), Err(VerifyError::Tolerance(400)));
        assert_eq!(secret.verify(ID, "yesterday", SIG, BODY, now), Err(VerifyError::Timestamp("yesterday".into())));
        assert_eq!(secret.verify(ID, TS, "", BODY, now), Err(VerifyError::Missing("webhook-signature")));
        assert!(matches!(Secret::parse("whsec_!!!"), Err(VerifyError::Secret(_))));
        assert!(matches!(Secret::parse("whsec_"), Err(VerifyError::Secret(_))));
    }
}
