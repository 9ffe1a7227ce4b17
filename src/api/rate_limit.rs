//! The per-API-key rate limit (DESIGN §6, `[server.rate_limit]`).
//!
//! GCRA through `governor`, keyed by the key's digest: a key may send
//! `burst` requests at once and `requests_per_second` sustained. The check
//! runs in authentication (every extractor that names a caller), so an
//! over-limit request is answered `429` before its body is read or its
//! idempotency key is looked at: nothing is stored for it, and the same
//! request retried after `Retry-After` is served normally. Only configured
//! keys get a bucket (the check follows a successful authentication), so
//! the limiter's memory is bounded by the key list. Unauthenticated probes
//! (`/healthz`, `/readyz`, ...) and inbound webhooks are not limited.

use super::error::ApiError;
use crate::config::{KeyDigest, RateLimitSettings};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;

/// Shortest `Retry-After` answered, in seconds (the header counts whole
/// seconds; "0" would invite an immediate retry that fails again).
pub const MIN_RETRY_AFTER_SECS: u64 = 1;

/// One GCRA bucket per API key; none at all for the development key
/// unless a limit was configured.
pub struct KeyRateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<KeyDigest>>,
    clock: DefaultClock,
}

impl KeyRateLimiter {
    /// The server's limiter: `configured`, else the defaults, except that
    /// the development setup with no `[server.rate_limit]` is unlimited
    /// (see `ServerConfig::rate_limit`).
    pub fn for_server(configured: Option<&RateLimitSettings>, development: bool) -> Self {
        match (configured, development) {
            (Some(settings), _) => Self::new(settings),
            (None, false) => Self::new(&RateLimitSettings::default()),
            (None, true) => KeyRateLimiter {
                limiter: None,
                clock: DefaultClock::default(),
            },
        }
    }

    /// The limiter for validated settings (both numbers at least 1).
    pub fn new(settings: &RateLimitSettings) -> Self {
        let per_second = NonZeroU32::new(settings.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        KeyRateLimiter {
            limiter: Some(RateLimiter::keyed(
                Quota::per_second(per_second).allow_burst(burst),
            )),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &KeyDigest) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            ApiError::RateLimited {
                retry_after_secs: secs.max(MIN_RETRY_AFTER_SECS),
            }
        })
    }
}

impl std::fmt::Debug for KeyRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRateLimiter").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(limiter: &KeyRateLimiter, key: &KeyDigest, requests: u32) -> u32 {
        (0..requests).filter(|_| limiter.check(key).is_ok()).count() as u32
    }

    #[test]
    fn configured_keys_get_the_defaults_when_no_limit_is_configured() {
        let key = KeyDigest::of("sk_live_acme_0123456789");
        let limiter = KeyRateLimiter::for_server(None, false);
        // The burst (2,000), and at most a few more earned while counting.
        let granted = admitted(&limiter, &key, 3_000);
        assert!((2_000..2_100).contains(&granted), "{granted}");
    }

    #[test]
    fn the_development_key_is_unlimited_unless_a_limit_is_configured() {
        let key = KeyDigest::of("sk_test_default");
        let open = KeyRateLimiter::for_server(None, true);
        assert_eq!(admitted(&open, &key, 10_000), 10_000);
        let configured = RateLimitSettings {
            requests_per_second: 1,
            burst: 5,
        };
        let limited = KeyRateLimiter::for_server(Some(&configured), true);
        assert_eq!(admitted(&limited, &key, 50), 5);
    }
}
