//! Webhook signatures, in the style of Stripe's: `Doorstep-Signature: t=<unix seconds>,v1=<hex>`,
//! where the hex is HMAC-SHA256 with the shared secret over `<t>.<body>`. A receiver recomputes
//! it, compares in constant time, and refuses a timestamp too far from its own clock (replays).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Doorstep-Signature";
/// The header that carries the delivery id, the same on every retry of one delivery.
pub const DELIVERY_HEADER: &str = "Doorstep-Delivery";
/// The header that names what happened, e.g. `escalation.raised`.
pub const EVENT_HEADER: &str = "Doorstep-Event";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length, so this never fails.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable_hmac(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

#[cold]
fn unreachable_hmac() -> ! {
    unreachable!("HMAC accepts keys of every length")
}

/// The header value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(digest))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not t=<seconds>,v1=<hex>")]
    Malformed,
    #[error("the timestamp is more than the tolerance away from now")]
    Stale,
    #[error("no v1 signature matches")]
    Mismatch,
}

/// Checks a `Doorstep-Signature` header as a receiver should: well formed, fresh within
/// `tolerance_seconds` of `now`, and a `v1` that matches (compared in constant time).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_seconds: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                );
            }
            Some(("v1", value)) => {
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_seconds {
        return Err(SignatureError::Stale);
    }
    let matches = signatures
        .iter()
        .any(|signature| mac(secret, timestamp, body).verify_slice(signature).is_ok());
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_any_change_breaks_it() {
        let secret = b"whsec_test_secret_of_some_length";
        let body = br#"{"type":"escalation.raised"}"#;
        let header = sign(secret, 1_780_000_000, body);
        assert!(header.starts_with("t=1780000000,v1="));
        assert_eq!(verify(secret, &header, body, 1_780_000_100, 300), Ok(()));
        assert_eq!(
            verify(secret, &header, b"{}", 1_780_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                b"another secret entirely",
                &header,
                body,
                1_780_000_100,
                300
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, &header, body, 1_780_001_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(secret, "v1=00", body, 1_780_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256("key", "0.The quick brown fox jumps over the lazy dog"), computed with
        // `printf '0.The quick…' | openssl dgst -sha256 -hmac key`.
        let header = sign(b"key", 0, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            header,
            "t=0,v1=8511f28f7a1949f0c42772b447d68b2daf760f5f0439a20a17e3b4e7cd395763"
        );
    }
}
