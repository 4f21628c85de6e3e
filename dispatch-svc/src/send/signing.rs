//! Standard Webhooks signatures.
//!
//! A signing secret reads `whsec_<base64 key>`. The signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}` and the signature header is
//! `v1,<base64 HMAC-SHA256>`. During a secret rotation every active secret
//! signs, and the signatures are space-separated, so receivers that know
//! either secret accept the message. See
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>.
//!
//! Each key is turned into a keyed HMAC state once, when the endpoint is
//! loaded; signing clones that state and feeds the three parts of the signed
//! content into it in turn, so no concatenated copy of the body is built.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderValue;
use sha2::Sha256;

use crate::error::DispatchError;

type HmacSha256 = Hmac<Sha256>;

pub const SECRET_PREFIX: &str = "whsec_";

/// A decoded signing secret, ready to sign.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

impl SigningKey {
    /// Decodes `whsec_<base64>`; the prefix is optional, as in the reference libraries.
    pub fn from_secret(secret: &str) -> Result<Self, DispatchError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = STANDARD
            .decode(encoded)
            .or_else(|_| STANDARD_NO_PAD.decode(encoded))
            .map_err(|_| DispatchError::SigningSecret("not valid base64".into()))?;
        if key.is_empty() {
            return Err(DispatchError::SigningSecret("empty key".into()));
        }
        let mac = HmacSha256::new_from_slice(&key).map_err(|_| DispatchError::SigningSecret("unusable key".into()))?;
        Ok(SigningKey { mac })
    }

    fn sign_into(&self, msg_id: &[u8], timestamp: &[u8], body: &[u8], out: &mut String) {
        let mut mac = self.mac.clone();
        mac.update(msg_id);
        mac.update(b".");
        mac.update(timestamp);
        mac.update(b".");
        mac.update(body);
        out.push_str("v1,");
        STANDARD.encode_string(mac.finalize().into_bytes(), out);
    }
}

/// The `webhook-signature` value for a message: one `v1,…` per key,
/// space-separated. `None` when there is no key to sign with.
pub fn signature_header<'a>(
    keys: impl IntoIterator<Item = &'a SigningKey>,
    msg_id: &str,
    timestamp: &HeaderValue,
    body: &[u8],
) -> Option<HeaderValue> {
    // "v1," + 44 base64 characters, and a separating space for a second key.
    let mut out = String::with_capacity(96);
    for key in keys {
        if !out.is_empty() {
            out.push(' ');
        }
        key.sign_into(msg_id.as_bytes(), timestamp.as_bytes(), body, &mut out);
    }
    if out.is_empty() {
        return None;
    }
    HeaderValue::try_from(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const PAYLOAD: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn known_answer_from_the_specification() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        let sig = signature_header(&[key], MSG_ID, &HeaderValue::from(1_614_265_330_i64), PAYLOAD).unwrap();
        assert_eq!(sig, EXPECTED);
    }

    #[test]
    fn rotation_signs_with_every_key() {
        let old = SigningKey::from_secret(SECRET).unwrap();
        let new = SigningKey::from_secret("whsec_c2Vjb25kLXNlY3JldC1mb3ItdGVzdHMh").unwrap();
        let ts = HeaderValue::from(1_614_265_330_i64);
        let sig = signature_header(&[new.clone(), old], MSG_ID, &ts, PAYLOAD).unwrap();
        let parts: Vec<&str> = sig.to_str().unwrap().split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1], EXPECTED);
        assert_eq!(parts[0], signature_header(&[new], MSG_ID, &ts, PAYLOAD).unwrap().to_str().unwrap());
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn prefix_is_optional_and_garbage_is_refused() {
        let bare = SigningKey::from_secret(SECRET.trim_start_matches(SECRET_PREFIX)).unwrap();
        let ts = HeaderValue::from(1_614_265_330_i64);
        assert_eq!(signature_header(&[bare], MSG_ID, &ts, PAYLOAD).unwrap(), EXPECTED);
        assert!(SigningKey::from_secret("whsec_not base64!").is_err());
        assert!(SigningKey::from_secret("whsec_").is_err());
        assert!(signature_header(&[] as &[SigningKey], MSG_ID, &ts, PAYLOAD).is_none());
    }
}
