//! XChaCha20-Poly1305 (RustCrypto) for the two layers of resident data protection: a random
//! data key per resident seals their personal data, and the master key wraps each data key.
//! Every sealed value is `nonce (24 bytes) || ciphertext`, and its associated data names what it
//! is and whose, so a value copied to another resident or another purpose fails to open.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

const NONCE_BYTES: usize = 24;
pub const KEY_BYTES: usize = 32;

/// A value that does not open: wrong key, altered bytes, or another resident's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the sealed value does not open with this key")]
pub struct SealError;

/// A 256-bit key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey([u8; KEY_BYTES]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    pub fn generate() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; KEY_BYTES]>::try_from(bytes).ok().map(Self)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// Encrypts `plaintext`, binding it to `associated` (authenticated, not encrypted).
    pub fn seal(&self, plaintext: &[u8], associated: &[u8]) -> Result<Vec<u8>, SealError> {
        let cipher = XChaCha20Poly1305::new(&Key::from(self.0));
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .map_err(|_| SealError)?;
        let mut sealed = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts what [`SecretKey::seal`] produced with the same key and associated data.
    pub fn open(&self, sealed: &[u8], associated: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_BYTES {
            return Err(SealError);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError)?;
        XChaCha20Poly1305::new(&Key::from(self.0))
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: associated,
                },
            )
            .map_err(|_| SealError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_associated_data() {
        let key = SecretKey::generate();
        let sealed = key
            .seal(b"Ada Resident", b"resident T-1")
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(!sealed.windows(3).any(|w| w == b"Ada"));
        assert_eq!(
            key.open(&sealed, b"resident T-1").as_deref(),
            Ok(&b"Ada Resident"[..])
        );
        assert_eq!(key.open(&sealed, b"resident T-2"), Err(SealError));
        assert_eq!(
            SecretKey::generate().open(&sealed, b"resident T-1"),
            Err(SealError)
        );
        let mut altered = sealed.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(key.open(&altered, b"resident T-1"), Err(SealError));
        assert_eq!(key.open(&[1, 2, 3], b"resident T-1"), Err(SealError));
        assert!(!format!("{key:?}").contains(&format!("{}", key.as_bytes()[0])));
    }
}
