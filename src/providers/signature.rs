//! Stripe's webhook signature scheme, written once: the Stripe adapter
//! verifies with it, and the sandbox both signs and verifies with it
//! (DESIGN §7: the sandbox's webhooks are in Stripe's scheme).
//!
//! The scheme, as Stripe documents it ("Verify webhook signatures"):
//!
//! - the `Stripe-Signature` header is a comma-separated list of
//!   `key=value` elements: `t` is the Unix time the event was signed at,
//!   each `v1` is a signature; other schemes (`v0`, test-only) are ignored;
//! - the signed payload is `{t}.{body}`: the timestamp exactly as sent, a
//!   dot, then the raw body bytes, before any JSON parsing;
//! - `v1` is the lowercase hex HMAC-SHA256 of the signed payload keyed with
//!   the endpoint's secret (`whsec_…`, used as it is);
//! - while a secret is being rolled, Stripe signs with every active secret,
//!   so a header may carry several `v1`: one that matches is enough;
//! - a timestamp more than the tolerance (300 s by default) away from now
//!   is refused, which bounds replays of a captured request.
//!
//! Signatures are compared in constant time ([`Mac::verify_slice`]), so the
//! time taken says nothing about how much of a forged signature was right.

use super::webhook::{unix_secs, WebhookError, WebhookHeaders};
use crate::domain::Timestamp;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying Stripe's signature (lowercase, as
/// [`WebhookHeaders`] stores names).
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// How far a signature's timestamp may be from now, either way: Stripe's
/// documented default.
pub const DEFAULT_WEBHOOK_TOLERANCE_SECS: u64 = 300;
/// The element holding the signing time.
const TIMESTAMP_ELEMENT: &str = "t";
/// The element holding a signature in the one scheme verified.
const SIGNATURE_SCHEME: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// Checks that `body` was signed with `secret` per the `Stripe-Signature`
/// header of `headers`, no more than `tolerance_secs` away from `now`.
///
/// The signature is checked before the timestamp, so a forged request is
/// always [`WebhookError::BadSignature`] and [`WebhookError::Stale`] means
/// an authentic request delivered (or replayed) outside the tolerance.
pub fn verify(
    headers: &WebhookHeaders,
    body: &[u8],
    secret: &str,
    tolerance_secs: u64,
    now: Timestamp,
) -> Result<(), WebhookError> {
    let header = headers
        .get(SIGNATURE_HEADER)
        .ok_or(WebhookError::BadSignature("no Stripe-Signature header"))?;
    let parsed = parse_header(header)?;
    let expected = signed_payload_mac(secret.as_bytes(), parsed.timestamp_text, body);
    let matches = parsed
        .signatures
        .iter()
        .filter_map(|candidate| decode_hex(candidate))
        .any(|candidate| expected.clone().verify_slice(&candidate).is_ok());
    if !matches {
        return Err(WebhookError::BadSignature(
            "no v1 signature matches the body and the configured secret",
        ));
    }
    let skew_secs = unix_secs(now).abs_diff(parsed.timestamp);
    if skew_secs > tolerance_secs {
        return Err(WebhookError::Stale {
            skew_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

/// The `Stripe-Signature` value for `body` signed with `secret` at
/// `timestamp` (Unix seconds): `t={timestamp},v1={signature}`.
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let text = timestamp.to_string();
    let signature = signed_payload_mac(secret.as_bytes(), &text, body)
        .finalize()
        .into_bytes();
    format!(
        "{TIMESTAMP_ELEMENT}={text},{SIGNATURE_SCHEME}={}",
        encode_hex(&signature)
    )
}

/// What a `Stripe-Signature` header says.
#[derive(Debug, PartialEq)]
struct ParsedHeader<'a> {
    /// As sent: the signed payload starts with exactly these characters.
    timestamp_text: &'a str,
    timestamp: i64,
    /// The `v1` values, in order; not checked to be hex here.
    signatures: Vec<&'a str>,
}

/// Reads the header's `t` (exactly one) and its `v1` values (at least one);
/// elements of other schemes and elements without `=` are ignored.
fn parse_header(header: &str) -> Result<ParsedHeader<'_>, WebhookError> {
    let mut timestamp_text = None;
    let mut signatures = Vec::new();
    for element in header.split(',') {
        let Some((key, value)) = element.split_once('=') else {
            continue;
        };
        match key.trim() {
            TIMESTAMP_ELEMENT if timestamp_text.is_some() => {
                return Err(WebhookError::BadSignature(
                    "the Stripe-Signature header has more than one timestamp",
                ))
            }
            TIMESTAMP_ELEMENT => timestamp_text = Some(value.trim()),
            SIGNATURE_SCHEME => signatures.push(value.trim()),
            _ => {}
        }
    }
    let timestamp_text = timestamp_text.ok_or(WebhookError::BadSignature(
        "the Stripe-Signature header has no timestamp",
    ))?;
    let timestamp = timestamp_text.parse::<i64>().map_err(|_| {
        WebhookError::BadSignature("the Stripe-Signature timestamp is not a number")
    })?;
    if signatures.is_empty() {
        return Err(WebhookError::BadSignature(
            "the Stripe-Signature header has no v1 signature",
        ));
    }
    Ok(ParsedHeader {
        timestamp_text,
        timestamp,
        signatures,
    })
}

/// HMAC-SHA256 keyed with `key`, fed Stripe's signed payload
/// `{timestamp}.{body}`, not yet finalized.
fn signed_payload_mac(key: &[u8], timestamp_text: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = hmac_sha256(key);
    mac.update(timestamp_text.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// HMAC-SHA256 keyed with `key`.
pub(crate) fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC hashes a long key and pads a short one: no length is refused.
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0F)]));
    }
    out
}

/// The bytes of `text` read as hex (either case), or `None` if it is not
/// an even number of hex digits.
pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn digit(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::webhook::timestamp_from_unix_secs;

    const SECRET: &str = "whsec_test_secret";
    const SIGNED_AT: i64 = 1_700_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    /// HMAC-SHA256 of `1700000000.{BODY}` keyed with [`SECRET`], computed
    /// independently with `openssl dgst -sha256 -hmac`.
    const KNOWN_SIGNATURE: &str =
        "c0475716eb2200f1fe97fcf35a3c05d1fd4f8ba9a07a596730c8d18bb87c0672";

    fn at(seconds: i64) -> Timestamp {
        timestamp_from_unix_secs(seconds).expect("representable")
    }

    fn headers(value: &str) -> WebhookHeaders {
        [("Stripe-Signature", value)].into_iter().collect()
    }

    #[test]
    fn signs_as_stripe_documents() {
        assert_eq!(
            signature_header(SECRET, SIGNED_AT, BODY),
            format!("t={SIGNED_AT},v1={KNOWN_SIGNATURE}")
        );
    }

    #[test]
    fn a_valid_signature_is_accepted_within_the_tolerance() {
        let header = signature_header(SECRET, SIGNED_AT, BODY);
        for now in [SIGNED_AT, SIGNED_AT + 300, SIGNED_AT - 300] {
            assert_eq!(
                verify(&headers(&header), BODY, SECRET, 300, at(now)),
                Ok(()),
                "now = {now}"
            );
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let header = signature_header(SECRET, SIGNED_AT, BODY);
        for (now, skew_secs) in [(SIGNED_AT + 301, 301), (SIGNED_AT - 301, 301)] {
            assert_eq!(
                verify(&headers(&header), BODY, SECRET, 300, at(now)),
                Err(WebhookError::Stale {
                    skew_secs,
                    tolerance_secs: 300
                })
            );
        }
    }

    #[test]
    fn forgeries_are_refused() {
        let header = signature_header(SECRET, SIGNED_AT, BODY);
        let now = at(SIGNED_AT);
        let refused = |headers: &WebhookHeaders, body: &[u8], secret: &str| {
            matches!(
                verify(headers, body, secret, 300, now),
                Err(WebhookError::BadSignature(_))
            )
        };
        assert!(refused(&headers(&header), b"{\"id\":\"evt_2\"}", SECRET));
        assert!(refused(&headers(&header), BODY, "whsec_other"));
        assert!(refused(&WebhookHeaders::new(), BODY, SECRET));
        let moved = header.replace(&format!("t={SIGNED_AT}"), &format!("t={}", SIGNED_AT + 1));
        assert!(
            refused(&headers(&moved), BODY, SECRET),
            "timestamp is signed"
        );
        assert!(refused(&headers(&format!("t={SIGNED_AT}")), BODY, SECRET));
        assert!(refused(
            &headers(&format!("v1={KNOWN_SIGNATURE}")),
            BODY,
            SECRET
        ));
        assert!(refused(
            &headers(&format!("t=soon,v1={KNOWN_SIGNATURE}")),
            BODY,
            SECRET
        ));
        assert!(refused(
            &headers(&format!("t={SIGNED_AT},t={SIGNED_AT},v1={KNOWN_SIGNATURE}")),
            BODY,
            SECRET
        ));
        assert!(refused(
            &headers(&format!("t={SIGNED_AT},v1=zz")),
            BODY,
            SECRET
        ));
        // A valid signature under another scheme is not a v1 signature.
        assert!(refused(
            &headers(&format!("t={SIGNED_AT},v0={KNOWN_SIGNATURE}")),
            BODY,
            SECRET
        ));
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let rotated = format!(
            "t={SIGNED_AT},v1={},v0=ignored,v1={KNOWN_SIGNATURE}, extra",
            "0".repeat(64)
        );
        assert_eq!(
            verify(&headers(&rotated), BODY, SECRET, 300, at(SIGNED_AT)),
            Ok(())
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        assert_eq!(encode_hex(&[0x00, 0xAB, 0xFF]), "00abff");
        assert_eq!(decode_hex("00abFF"), Some(vec![0x00, 0xAB, 0xFF]));
        assert_eq!(decode_hex(""), Some(vec![]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
