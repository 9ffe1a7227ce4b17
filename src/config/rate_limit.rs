//! `[server.rate_limit]`: the per-API-key request rate (DESIGN §6).
//!
//! Each key gets a GCRA bucket: `requests_per_second` sustained, `burst`
//! at once. Over it a request is answered `429 rate_limit_error` with
//! `Retry-After` before anything of it is read or stored.

use super::validate::{invalid, ConfigError};
use serde::{Deserialize, Serialize};

/// Largest `requests_per_second` or `burst`: past a million a second the
/// limit protects nothing (and GCRA's cell interval would round to zero).
pub const MAX_RATE_LIMIT: u32 = 1_000_000;

/// The per-key limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Requests a key may make per second, sustained.
    pub requests_per_second: u32,
    /// Requests a key may make at once after being idle.
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        RateLimitSettings {
            requests_per_second: 1_000,
            burst: 2_000,
        }
    }
}

impl RateLimitSettings {
    /// Both numbers 1 to [`MAX_RATE_LIMIT`]; each error names the key.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (name, value) in [
            (
                "server.rate_limit.requests_per_second",
                self.requests_per_second,
            ),
            ("server.rate_limit.burst", self.burst),
        ] {
            if !(1..=MAX_RATE_LIMIT).contains(&value) {
                return Err(invalid(name, format!("must be 1 to {MAX_RATE_LIMIT}")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract_and_zero_is_refused_by_name() {
        let defaults = RateLimitSettings::default();
        assert_eq!(
            (defaults.requests_per_second, defaults.burst),
            (1_000, 2_000)
        );
        assert!(defaults.validate().is_ok());
        let zero_rate = RateLimitSettings {
            requests_per_second: 0,
            ..defaults.clone()
        };
        let error = zero_rate.validate().unwrap_err().to_string();
        assert!(
            error.contains("server.rate_limit.requests_per_second"),
            "{error}"
        );
        let huge_burst = RateLimitSettings {
            burst: MAX_RATE_LIMIT + 1,
            ..defaults
        };
        let error = huge_burst.validate().unwrap_err().to_string();
        assert!(error.contains("server.rate_limit.burst"), "{error}");
    }
}
