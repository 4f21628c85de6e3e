//! Sealing of stored secrets (auth passwords, tokens, client secrets,
//! signing secrets) with XChaCha20-Poly1305 keyed by `HERALD_SECRET_KEY`.
//!
//! A sealed value reads `k<key id>:<base64(nonce || ciphertext)>`, where the
//! key id is the first 8 hex digits of SHA-256 of the key. Rotation: set the
//! new key as `HERALD_SECRET_KEY` and the old one as
//! `HERALD_SECRET_KEY_PREVIOUS`; values sealed with either open, and every
//! write seals with the new one.
//!
//! Every value is sealed for a [`Binding`]: the stable id of the record that
//! holds it and its slot there, authenticated as associated data. Someone who
//! can write Redis therefore cannot move a sealed value into another
//! record, or into a slot the API shows (a header), and have it open there.
//! Values sealed before bindings existed open without one; [`SecretBox::open`]
//! tries the binding first, and [`SecretBox::reseal`] tells a writer which
//! values to seal again.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::model::Sealed;
use crate::{CommonError, Result};

const NONCE_LEN: usize = 24;

#[derive(Clone)]
struct KeyedCipher {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl KeyedCipher {
    fn new(key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(key);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        KeyedCipher { id, cipher: XChaCha20Poly1305::new(key.into()) }
    }
}

#[derive(Clone)]
pub struct SecretBox {
    current: KeyedCipher,
    previous: Option<KeyedCipher>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretBox").field("key_id", &self.current.id).finish_non_exhaustive()
    }
}

fn decode_key(name: &str, b64: &str) -> Result<[u8; 32]> {
    let bytes = B64.decode(b64.trim()).map_err(|_| CommonError::Config(format!("{name} is not valid base64")))?;
    bytes.try_into().map_err(|_| CommonError::Config(format!("{name} must decode to exactly 32 bytes")))
}

impl SecretBox {
    pub fn from_base64(current: &str, previous: Option<&str>) -> Result<Self> {
        Ok(SecretBox {
            current: KeyedCipher::new(&decode_key("HERALD_SECRET_KEY", current)?),
            previous: previous
                .map(|p| decode_key("HERALD_SECRET_KEY_PREVIOUS", p).map(|k| KeyedCipher::new(&k)))
                .transpose()?,
        })
    }

    /// A random key for `--dev` runs: secrets do not survive a restart.
    pub fn ephemeral() -> Self {
        let key: [u8; 32] = rand::random();
        SecretBox { current: KeyedCipher::new(&key), previous: None }
    }

    pub fn seal(&self, plaintext: &str, binding: Binding<'_>) -> Sealed {
        self.seal_with_aad(plaintext, &binding.aad())
    }

    fn seal_with_aad(&self, plaintext: &str, aad: &[u8]) -> Sealed {
        // 192-bit random nonces: collisions are negligible however many values are sealed.
        let nonce = XNonce::from(rand::random::<[u8; NONCE_LEN]>());
        // Encryption with a valid key and nonce length cannot fail; an empty
        // ciphertext would only fail to open later, never leak.
        let ciphertext =
            self.current.cipher.encrypt(&nonce, Payload { msg: plaintext.as_bytes(), aad }).unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Sealed(format!("k{}:{}", self.current.id, B64.encode(blob)))
    }

    /// The plaintext of a value sealed for `binding` (or sealed before
    /// bindings existed).
    pub fn open(&self, sealed: &Sealed, binding: Binding<'_>) -> Result<String> {
        self.open_reporting(sealed, binding).map(|opened| opened.plaintext)
    }

    /// `Some(value sealed again)` when `sealed` opens but was sealed without
    /// its binding or under the previous key; `None` when it is current or
    /// does not open (it is kept as it is, and fails where it is used).
    pub fn reseal(&self, sealed: &Sealed, binding: Binding<'_>) -> Option<Sealed> {
        match self.open_reporting(sealed, binding) {
            Ok(Opened { plaintext, current: false }) => Some(self.seal(&plaintext, binding)),
            _ => None,
        }
    }

    fn open_reporting(&self, sealed: &Sealed, binding: Binding<'_>) -> Result<Opened> {
        let (key_id, body) = sealed.0.strip_prefix('k').and_then(|s| s.split_once(':')).ok_or(CommonError::Decrypt)?;
        let cipher = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|c| c.id == key_id)
            .ok_or(CommonError::Decrypt)?;
        let blob = B64.decode(body).map_err(|_| CommonError::Decrypt)?;
        if blob.len() < NONCE_LEN {
            return Err(CommonError::Decrypt);
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let nonce = <&XNonce>::try_from(nonce).map_err(|_| CommonError::Decrypt)?;
        let decrypt = |aad: &[u8]| cipher.cipher.decrypt(nonce, Payload { msg: ciphertext, aad });
        let (plaintext, bound) = match decrypt(&binding.aad()) {
            Ok(plaintext) => (plaintext, true),
            Err(_) => (decrypt(b"").map_err(|_| CommonError::Decrypt)?, false),
        };
        let plaintext = String::from_utf8(plaintext).map_err(|_| CommonError::Decrypt)?;
        Ok(Opened { plaintext, current: bound && cipher.id == self.current.id })
    }
}

/// A sealed value's record and its place in that record, bound into the
/// ciphertext as associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The kind of record, e.g. `endpoint`.
    pub kind: &'static str,
    /// The record's stable id: unlike its Redis key, it survives a change
    /// of `HERALD_REDIS_PREFIX` or a move to a Redis Cluster.
    pub id: &'a str,
    /// Where in the record the value sits, e.g. `auth.password`.
    pub slot: &'static str,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        // NUL cannot occur in ids or slot names, so the fields cannot run together.
        format!("herald\0{}\0{}\0{}", self.kind, self.id, self.slot).into_bytes()
    }
}

struct Opened {
    plaintext: String,
    /// Sealed for its binding under the current key: nothing to re-seal.
    current: bool,
}

/// Whether `value` has the shape of a sealed value (`k<8 hex>:<base64>`),
/// for fields stored in plaintext before they were sealed.
pub fn looks_sealed(value: &str) -> bool {
    value.strip_prefix('k').and_then(|s| s.split_once(':')).is_some_and(|(id, body)| {
        id.len() == 8
            && id.bytes().all(|b| b.is_ascii_hexdigit())
            && body.len() > NONCE_LEN
            && body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
    })
}

/// SHA-256 hex of an API key: what is stored and looked up.
pub fn hash_api_key(key: &str) -> String {
    Sha256::digest(key.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Constant-time equality for secrets and their hashes.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A fresh random secret: `prefix` followed by base64 of 24 random bytes.
pub fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    format!("{prefix}{}", B64.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        B64.encode([byte; 32])
    }

    const A: Binding<'static> = Binding { kind: "endpoint", id: "ep_a", slot: "auth.token" };
    const B: Binding<'static> = Binding { kind: "endpoint", id: "ep_b", slot: "auth.token" };

    #[test]
    fn seal_hides_and_opens() {
        let sb = SecretBox::from_base64(&key(1), None).unwrap();
        let sealed = sb.seal("hunter2", A);
        assert!(!sealed.0.contains("hunter2"));
        assert!(looks_sealed(&sealed.0));
        assert_ne!(sb.seal("hunter2", A), sealed, "nonces must differ");
        assert_eq!(sb.open(&sealed, A).unwrap(), "hunter2");
        assert_eq!(sb.reseal(&sealed, A), None, "a current value is left alone");
    }

    #[test]
    fn a_value_opens_only_for_its_record_and_slot() {
        let sb = SecretBox::from_base64(&key(1), None).unwrap();
        let sealed = sb.seal("hunter2", A);
        assert!(sb.open(&sealed, B).is_err(), "sealed for record A, opened as record B");
        assert!(sb.open(&sealed, Binding { slot: "headers", ..A }).is_err(), "moved to a header of A");
        assert!(sb.open(&sealed, Binding { kind: "tenant", ..A }).is_err());
        assert_eq!(sb.reseal(&sealed, B), None, "a value that does not open is not re-sealed");
    }

    #[test]
    fn values_sealed_without_a_binding_still_open_and_are_resealed() {
        let sb = SecretBox::from_base64(&key(1), None).unwrap();
        let old = sb.seal_with_aad("legacy", b"");
        assert_eq!(sb.open(&old, A).unwrap(), "legacy");
        assert_eq!(sb.open(&old, B).unwrap(), "legacy");
        let fresh = sb.reseal(&old, A).expect("an unbound value is sealed again");
        assert_eq!(sb.open(&fresh, A).unwrap(), "legacy");
        assert!(sb.open(&fresh, B).is_err());
        assert_eq!(sb.reseal(&fresh, A), None);
    }

    #[test]
    fn rotation_opens_old_values() {
        let old = SecretBox::from_base64(&key(1), None).unwrap();
        let sealed = old.seal("s3cret", A);
        let rotated = SecretBox::from_base64(&key(2), Some(&key(1))).unwrap();
        assert_eq!(rotated.open(&sealed, A).unwrap(), "s3cret");
        let moved = rotated.reseal(&sealed, A).expect("a value under the previous key is sealed again");
        assert!(moved.0.starts_with(&format!("k{}:", rotated.current.id)));
        let other = SecretBox::from_base64(&key(3), None).unwrap();
        assert!(other.open(&sealed, A).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let sb = SecretBox::from_base64(&key(1), None).unwrap();
        let mut sealed = sb.seal("x", A).0;
        sealed.pop();
        sealed.push('A');
        assert!(sb.open(&Sealed(sealed), A).is_err());
        assert!(sb.open(&Sealed("garbage".into()), A).is_err());
        assert!(!looks_sealed("garbage") && !looks_sealed("kzzzzzzzz:AAAA") && !looks_sealed("secret-api-key"));
    }

    #[test]
    fn bad_keys_are_config_errors() {
        assert!(SecretBox::from_base64("not base64!", None).is_err());
        assert!(SecretBox::from_base64(&B64.encode([0u8; 16]), None).is_err());
    }
}
