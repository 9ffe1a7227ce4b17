//! The `Payments-Signature` header of outgoing webhooks (DESIGN §11): how
//! the engine signs a delivery and how a receiver checks it.
//!
//! The header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, keyed
//! with the endpoint's `secret`. The timestamp is signed with the body, so a
//! receiver that refuses old timestamps bounds replays of a captured
//! request. Pure functions: a Rust receiver calls [`verify_signature`] with
//! the raw body bytes, before parsing them.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Payments-Signature";
/// The header carrying the event's id: the same on every retry, so a
/// receiver deduplicates on it.
pub const EVENT_ID_HEADER: &str = "Payments-Event-Id";
/// A tolerance a receiver may use: five minutes either way.
pub const DEFAULT_SIGNATURE_TOLERANCE_SECS: u64 = 300;
/// Longest header looked at: a real one is about 80 bytes.
const MAX_HEADER_BYTES: usize = 1_024;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the tolerance")]
    Stale,
    #[error("no signature matches the body")]
    Mismatch,
}

/// The header value signing `body` at `unix_secs` with `secret`.
pub fn sign(secret: &str, unix_secs: i64, body: &[u8]) -> String {
    format!(
        "t={unix_secs},v1={}",
        to_hex(&mac(secret, &unix_secs.to_string(), body))
    )
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| {
        unreachable!("HMAC takes keys of every length");
    });
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Checks that `body` was signed with `secret` per `header` (the
/// `Payments-Signature` value), at most `tolerance_secs` away from
/// `now_unix_secs`. Any one `v1` matching is enough (several may be sent
/// while a secret is rolled); the comparison is constant-time.
pub fn verify_signature(
    header: &str,
    body: &[u8],
    secret: &str,
    tolerance_secs: u64,
    now_unix_secs: i64,
) -> Result<(), SignatureError> {
    if header.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for element in header.split(',') {
        match element.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let (Some(timestamp), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let signed_at: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    if signed_at.abs_diff(now_unix_secs) > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    let key = secret.as_bytes();
    for signature in signatures {
        let Some(bytes) = from_hex(signature) else {
            continue;
        };
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
            return Err(SignatureError::Mismatch);
        };
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        if mac.verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_a_changed_one_does_not() {
        let header = sign("whsec_test", 1_700_000_000, b"{\"a\":1}");
        assert_eq!(
            verify_signature(&header, b"{\"a\":1}", "whsec_test", 300, 1_700_000_100),
            Ok(())
        );
        assert_eq!(
            verify_signature(&header, b"{\"a\":2}", "whsec_test", 300, 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, b"{\"a\":1}", "other", 300, 1_700_000_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&header, b"{\"a\":1}", "whsec_test", 300, 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify_signature("v1=00", b"", "s", 300, 0),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_the_documented_hmac() {
        // echo -n '1.body' | openssl dgst -sha256 -hmac key
        let header = sign("key", 1, b"body");
        assert_eq!(
            header,
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
        assert_eq!(header.len(), "t=1,v1=".len() + 64);
    }
}
