//! API keys as the engine keeps them: SHA-256 digests, never the keys.
//!
//! A key is hashed the moment it is read (from the file or the
//! environment), so no configuration value, log line, `Debug` output or
//! memory dump holds it; authentication hashes the presented key and looks
//! the digest up. Also here: the formats of `PAYMENTS_API_KEYS`
//! (`merchant:key,merchant:key`) and `PAYMENTS_ADMIN_KEYS` (`key,key`),
//! each checked strictly, because a typo there (`acme:k1;globex:k2`) would
//! otherwise configure something else than meant, silently.

use super::validate::{invalid, ConfigError};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

/// Shortest API key accepted: shorter ones are guessable.
pub const MIN_API_KEY_CHARS: usize = 8;
/// How a digest is written when serialized, and may be given in the file
/// instead of the key (so the file need not hold the secret).
const DIGEST_PREFIX: &str = "sha256:";
/// Hex digits of a digest that `Debug` shows: enough to tell keys apart in
/// a log, far too few to help guess one.
const DEBUG_DIGEST_HEX_CHARS: usize = 8;

/// The SHA-256 digest of an API key (merchant or operator).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of a presented key, whatever its form: authentication
    /// looks this up, so a malformed key simply matches nothing.
    pub fn of(key: &str) -> Self {
        KeyDigest(Sha256::digest(key.as_bytes()).into())
    }

    /// A configured key: at least [`MIN_API_KEY_CHARS`] printable ASCII
    /// characters without spaces, `,` or `;` (they separate entries), or a
    /// digest written `sha256:<64 hex digits>`. The error never repeats the
    /// key.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(hex) = text.strip_prefix(DIGEST_PREFIX) {
            return from_hex(hex)
                .map(KeyDigest)
                .ok_or_else(|| format!("{DIGEST_PREFIX} must be followed by 64 hex digits"));
        }
        key_format(text)?;
        Ok(KeyDigest::of(text))
    }

    fn hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

/// Why `text` cannot be a key, if it cannot.
fn key_format(text: &str) -> Result<(), String> {
    if text.chars().count() < MIN_API_KEY_CHARS {
        return Err(format!(
            "a key needs at least {MIN_API_KEY_CHARS} characters"
        ));
    }
    if !text.bytes().all(entry_byte) {
        return Err("a key must be printable ASCII without spaces, ',' or ';'".into());
    }
    Ok(())
}

/// Bytes allowed in a merchant name or key of an environment entry: what
/// can travel in an `Authorization` header, minus the separators.
fn entry_byte(byte: u8) -> bool {
    byte.is_ascii_graphic() && byte != b',' && byte != b';'
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (slot, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *slot = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        write!(
            f,
            "KeyDigest({DIGEST_PREFIX}{}…)",
            &hex[..DEBUG_DIGEST_HEX_CHARS]
        )
    }
}

/// Written as its digest, never as the key; reads back with [`KeyDigest::parse`].
impl Serialize for KeyDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{DIGEST_PREFIX}{}", self.hex()))
    }
}

impl<'de> Deserialize<'de> for KeyDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        KeyDigest::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A merchant's API key: `[[api_keys]]` in the file, `PAYMENTS_API_KEYS`
/// in the environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub merchant: String,
    pub key: KeyDigest,
}

impl ApiKey {
    /// `key` for `merchant`, hashed at once; refused if malformed.
    pub fn new(merchant: impl Into<String>, key: &str) -> Result<Self, ConfigError> {
        Ok(ApiKey {
            merchant: merchant.into(),
            key: KeyDigest::parse(key).map_err(|reason| invalid("api_keys", reason))?,
        })
    }
}

/// The variable merchant keys come from.
const API_KEYS_VAR: &str = "PAYMENTS_API_KEYS";
/// The variable operator keys come from.
const ADMIN_KEYS_VAR: &str = "PAYMENTS_ADMIN_KEYS";

/// Parses `PAYMENTS_API_KEYS`: `merchant:key` pairs separated by `,`
/// (spaces around a pair are ignored). A `;`, a space or an empty part
/// inside a pair is refused, as is an empty pair: each is a typo that would
/// otherwise configure the wrong thing silently.
pub fn parse_api_keys(text: &str) -> Result<Vec<ApiKey>, ConfigError> {
    entries(text, API_KEYS_VAR)?
        .map(|(number, pair)| {
            let wrong = |what: &str| invalid(API_KEYS_VAR, format!("entry {number}: {what}"));
            let (merchant, key) = pair
                .split_once(':')
                .ok_or_else(|| wrong("expected merchant:key[,merchant:key...]"))?;
            if merchant.is_empty() || !merchant.bytes().all(entry_byte) {
                return Err(wrong(
                    "the merchant must be non-empty printable ASCII without spaces, ',' or ';' (pairs are separated by ',')",
                ));
            }
            key_format(key).map_err(|reason| wrong(&format!("merchant {merchant}: {reason}")))?;
            Ok(ApiKey {
                merchant: merchant.to_string(),
                key: KeyDigest::of(key),
            })
        })
        .collect()
}

/// Parses `PAYMENTS_ADMIN_KEYS`: operator keys separated by `,`.
pub fn parse_admin_keys(text: &str) -> Result<Vec<KeyDigest>, ConfigError> {
    entries(text, ADMIN_KEYS_VAR)?
        .map(|(number, key)| {
            key_format(key)
                .map_err(|reason| invalid(ADMIN_KEYS_VAR, format!("entry {number}: {reason}")))?;
            Ok(KeyDigest::of(key))
        })
        .collect()
}

/// The `,`-separated entries of `text`, numbered from 1, trimmed; an empty
/// one is refused (a stray or doubled `,`).
fn entries<'a>(
    text: &'a str,
    variable: &str,
) -> Result<impl Iterator<Item = (usize, &'a str)>, ConfigError> {
    let parts: Vec<(usize, &str)> = text
        .split(',')
        .map(str::trim)
        .enumerate()
        .map(|(index, part)| (index + 1, part))
        .collect();
    if let Some((number, _)) = parts.iter().find(|(_, part)| part.is_empty()) {
        return Err(invalid(
            variable,
            format!("entry {number} is empty (a stray ',')"),
        ));
    }
    Ok(parts.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_kept_only_as_its_digest() {
        let key = ApiKey::new("acme", "sk_acme_secret_1234").unwrap();
        assert_eq!(key.key, KeyDigest::of("sk_acme_secret_1234"));
        let debug = format!("{key:?}");
        assert!(!debug.contains("sk_acme_secret_1234"), "{debug}");
        let hex = KeyDigest::of("sk_acme_secret_1234").hex();
        assert!(debug.contains(&hex[..DEBUG_DIGEST_HEX_CHARS]), "{debug}");
        assert!(
            !debug.contains(&hex[..DEBUG_DIGEST_HEX_CHARS + 1]),
            "{debug}"
        );
        let json = serde_json::to_string(&key).unwrap();
        assert!(!json.contains("sk_acme_secret_1234"), "{json}");
        let back: ApiKey = serde_json::from_str(&json).unwrap();
        assert_eq!(back, key, "the digest form reads back");
    }

    #[test]
    fn environment_pairs_are_checked_strictly() {
        let keys = parse_api_keys("acme:sk_acme_123456, globex:sk_globex_123456").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].merchant, "globex");
        assert_eq!(keys[1].key, KeyDigest::of("sk_globex_123456"));
        for bad in [
            "acme:sk_acme_123456;globex:sk_globex_123456",
            "acme:sk_acme 123456",
            "ac me:sk_acme_123456",
            ":sk_acme_123456",
            "acme:",
            "acme:sk_acme_123456,,globex:sk_globex_123456",
            "acme:sk_acme_123456,",
            "nocolon",
            "acme:short",
        ] {
            let error = parse_api_keys(bad)
                .map(|keys| format!("accepted as {keys:?}"))
                .unwrap_or_else(|e| e.to_string());
            assert!(error.contains("PAYMENTS_API_KEYS"), "{bad}: {error}");
            assert!(!error.contains("sk_acme_123456"), "{bad}: {error}");
        }
    }

    #[test]
    fn admin_keys_are_checked_too() {
        assert_eq!(
            parse_admin_keys("sk_admin_123456 , sk_admin_654321")
                .unwrap()
                .len(),
            2
        );
        for bad in [
            "sk_admin_123456;sk_admin_654321",
            "",
            "sk_admin_123456,",
            "short",
        ] {
            let error = parse_admin_keys(bad).unwrap_err().to_string();
            assert!(error.contains("PAYMENTS_ADMIN_KEYS"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_digest_may_be_configured_instead_of_the_key() {
        let written = format!("sha256:{}", KeyDigest::of("sk_written_as_digest").hex());
        assert_eq!(
            KeyDigest::parse(&written).unwrap(),
            KeyDigest::of("sk_written_as_digest")
        );
        assert!(KeyDigest::parse("sha256:abc").is_err());
        assert!(KeyDigest::parse(&format!("sha256:{}", "zz".repeat(32))).is_err());
    }
}
