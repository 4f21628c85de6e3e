//! Sealing of stored secrets (auth passwords, tokens, client secrets,
//! signing secrets) with XChaCha20-Poly1305 keyed by `HERALD_SECRET_KEY`.
//!
//! A sealed value reads `k<key id>:<base64(nonce || ciphertext)>`, where the
//! key id is the first 8 hex digits of SHA-256 of the key. Rotation: set the
//! new key as `HERALD_SECRET_KEY` and the old one as
//! `HERALD_SECRET_KEY_PREVIOUS`; values sealed with either open, and every
//! write seals with the new one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit};
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

    pub fn seal(&self, plaintext: &str) -> Sealed {
        // 192-bit random nonces: collisions are negligible however many values are sealed.
        let nonce = XNonce::from(rand::random::<[u8; NONCE_LEN]>());
        // Encryption with a valid key and nonce length cannot fail; an empty
        // ciphertext would only fail to open later, never leak.
        let ciphertext = self.current.cipher.encrypt(&nonce, plaintext.as_bytes()).unwrap_or_default();
        let mut blob = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        Sealed(format!("k{}:{}", self.current.id, B64.encode(blob)))
    }

    pub fn open(&self, sealed: &Sealed) -> Result<String> {
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
        let plaintext = cipher.cipher.decrypt(nonce, ciphertext).map_err(|_| CommonError::Decrypt)?;
        String::from_utf8(plaintext).map_err(|_| CommonError::Decrypt)
    }
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

    #[test]
    fn seal_hides_and_opens() {
        let sb = SecretBox::from_base64(&key(1), None).unwrap();
        let sealed = sb.seal("hunter2");
        assert!(!sealed.0.contains("hunter2"));
        assert_ne!(sb.seal("hunter2"), sealed, "nonces must differ");
        assert_eq!(sb.open(&sealed).unwrap(), "hunter2");
    }

    #[test]
    fn rotation_opens_old_values() {
        let old = SecretBox::from_base64(&key(1), None).unwrap();
        let sealed = old.seal("s3cret");
        let rotated = SecretBox::from_base64(&key(2), Some(&key(1))).unwrap();
        assert_eq!(rotated.open(&sealed).unwrap(), "s3cret");
        let other = SecretBox::from_base64(&key(3), None).unwrap();
        assert!(other.open(&sealed).is_err());
    }

    #[test]
    fn tampering_is_detected() {
        let sb = SecretBox::from_base64(&key(1), None).unwrap();
        let mut sealed = sb.seal("x").0;
        sealed.pop();
        sealed.push('A');
        assert!(sb.open(&Sealed(sealed)).is_err());
        assert!(sb.open(&Sealed("garbage".into())).is_err());
    }

    #[test]
    fn bad_keys_are_config_errors() {
        assert!(SecretBox::from_base64("not base64!", None).is_err());
        assert!(SecretBox::from_base64(&B64.encode([0u8; 16]), None).is_err());
    }
}
