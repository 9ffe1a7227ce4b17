//! Retry policy: how many attempts and how long to wait between them.
//!
//! Kept as data (configurable, serializable) so the behaviour on each kind of
//! failure is a table an operator can read, not logic spread through the flow.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Hard ceiling on attempts per payment, whatever the configuration says:
/// bounds the time a merchant's request can be held.
pub const MAX_ATTEMPTS_CEILING: u32 = 10;
/// Hard ceiling on same-key retries after an `unknown` outcome.
pub const MAX_UNKNOWN_RETRIES_CEILING: u32 = 5;

/// The engine's retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per payment after `transient_not_charged` answers (each a new
    /// attempt number, possibly on the next provider), the first included.
    pub max_attempts: u32,
    /// Same-provider, same-key retries after an `unknown` answer before the
    /// payment is left `pending` for reconciliation.
    pub unknown_retries: u32,
    /// Capped exponential backoff with full jitter: a retry waits a random
    /// time in `[0, min(cap, base * 2^retry)]`.
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// When a soft-declined payment is tried again.
    pub soft_decline_delay_secs: i64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            unknown_retries: 2,
            backoff_base_ms: 50,
            backoff_cap_ms: 1_000,
            soft_decline_delay_secs: 24 * 60 * 60,
        }
    }
}

impl RetryPolicy {
    /// `Err(field)` naming the first setting out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_CEILING {
            return Err("retry.max_attempts");
        }
        if self.unknown_retries > MAX_UNKNOWN_RETRIES_CEILING {
            return Err("retry.unknown_retries");
        }
        if self.backoff_base_ms > self.backoff_cap_ms {
            return Err("retry.backoff_base_ms");
        }
        if self.soft_decline_delay_secs <= 0 {
            return Err("retry.soft_decline_delay_secs");
        }
        Ok(())
    }

    /// The wait before retry number `retry` (1-based), jittered.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1).min(20);
        let ceiling = self
            .backoff_base_ms
            .saturating_mul(1u64 << exponent)
            .min(self.backoff_cap_ms);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(rand::thread_rng().gen_range(0..=ceiling))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for retry in 1..30 {
            let wait = policy.backoff(retry);
            assert!(
                wait <= Duration::from_millis(policy.backoff_cap_ms),
                "retry {retry}: {wait:?}"
            );
        }
        let first: Vec<Duration> = (0..200).map(|_| policy.backoff(1)).collect();
        assert!(first.iter().all(|d| *d <= Duration::from_millis(50)));
        assert!(first.iter().any(|d| *d != first[0]), "full jitter varies");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(bad.validate(), Err("retry.max_attempts"));
        let bad = RetryPolicy {
            max_attempts: 50,
            ..RetryPolicy::default()
        };
        assert_eq!(bad.validate(), Err("retry.max_attempts"));
        assert_eq!(RetryPolicy::default().validate(), Ok(()));
    }
}
