//! Retry policy, per outcome class, as data.
//!
//! Which answers are retried, how often and how far apart is a table an
//! operator can read in the configuration, not logic spread through the
//! flow. How long a payment can go between two lease renewals follows from
//! this table, so that arithmetic lives here too.

use super::budget::BudgetSettings;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Slack between the longest time a live instance may go without renewing
/// an order lease and the lease's lifetime.
pub const LEASE_MARGIN_MS: u64 = 1_000;

/// Hard ceiling on attempts of one class per payment, whatever the
/// configuration says: bounds the time a merchant's request can be held.
pub const MAX_ATTEMPTS_CEILING: u32 = 10;

/// How waits grow between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    /// `base * 2^(retry-1)`, capped.
    Exponential,
    /// Always `base`.
    Fixed,
    /// No wait.
    None,
}

/// Retries of one outcome class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    pub backoff: BackoffKind,
    pub base_ms: u64,
    pub cap_ms: u64,
    /// Full jitter: wait a random time in `[0, computed]`.
    pub jitter: bool,
}

impl Default for ClassPolicy {
    fn default() -> Self {
        ClassPolicy {
            max_attempts: 3,
            backoff: BackoffKind::Exponential,
            base_ms: 50,
            cap_ms: 1_000,
            jitter: true,
        }
    }
}

impl ClassPolicy {
    /// The wait before retry number `retry` (1-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = match self.backoff {
            BackoffKind::None => 0,
            BackoffKind::Fixed => self.base_ms.min(self.cap_ms),
            BackoffKind::Exponential => {
                let exponent = retry.saturating_sub(1).min(20);
                self.base_ms
                    .saturating_mul(1u64 << exponent)
                    .min(self.cap_ms)
            }
        };
        if ceiling == 0 {
            return Duration::ZERO;
        }
        let millis = if self.jitter {
            rand::thread_rng().gen_range(0..=ceiling)
        } else {
            ceiling
        };
        Duration::from_millis(millis)
    }

    /// The longest wait this policy can produce.
    pub fn max_wait_ms(&self) -> u64 {
        match self.backoff {
            BackoffKind::None => 0,
            BackoffKind::Fixed => self.base_ms.min(self.cap_ms),
            BackoffKind::Exponential => self.cap_ms,
        }
    }

    fn validate(&self, name: &'static str) -> Result<(), &'static str> {
        if self.max_attempts == 0
            || self.max_attempts > MAX_ATTEMPTS_CEILING
            || self.base_ms > self.cap_ms
        {
            return Err(name);
        }
        Ok(())
    }
}

/// Scheduled retries after a soft decline (e.g. insufficient funds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduledPolicy {
    /// Soft-declined tries in all, the first included; then `failed`.
    pub max_attempts: u32,
    /// Wait before the next try.
    pub delay_secs: i64,
}

impl Default for ScheduledPolicy {
    fn default() -> Self {
        ScheduledPolicy {
            max_attempts: 3,
            delay_secs: 24 * 60 * 60,
        }
    }
}

/// The engine's retry policy: a row per retryable class, and the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// New attempts (new key, possibly the next provider) after a refusal
    /// that charged nothing.
    pub transient_not_charged: ClassPolicy,
    /// Same provider, same key, after an answer that may have charged; then
    /// the payment is left `pending` for reconciliation.
    pub unknown: ClassPolicy,
    pub soft_decline: ScheduledPolicy,
    pub budget: BudgetSettings,
}

impl RetryPolicy {
    /// `Err(field)` naming the first setting out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.transient_not_charged
            .validate("retry.transient_not_charged")?;
        self.unknown.validate("retry.unknown")?;
        if self.soft_decline.max_attempts == 0
            || self.soft_decline.max_attempts > MAX_ATTEMPTS_CEILING
            || self.soft_decline.delay_secs <= 0
        {
            return Err("retry.soft_decline");
        }
        if !(0.0..=1.0).contains(&self.budget.ratio) {
            return Err("retry.budget.ratio");
        }
        Ok(())
    }

    /// The longest a payment can go between two renewals of its order lease
    /// when each call may take `call_timeout_ms`: one call with its
    /// same-key retries and their backoffs, then the wait before the next
    /// attempt. A provider's `Retry-After` is honoured up to `cap_ms`,
    /// whatever the backoff kind, so that wait can reach the cap.
    pub fn longest_renewal_gap_ms(&self, call_timeout_ms: u64) -> u64 {
        let (unknown, transient) = (self.unknown, self.transient_not_charged);
        let calls = u64::from(unknown.max_attempts);
        call_timeout_ms.saturating_mul(calls)
            + unknown
                .max_wait_ms()
                .saturating_mul(calls.saturating_sub(1))
            + transient.max_wait_ms().max(transient.cap_ms)
    }

    /// The shortest order lease that a live instance always renews in time.
    pub fn min_lease_ttl_ms(&self, call_timeout_ms: u64) -> u64 {
        self.longest_renewal_gap_ms(call_timeout_ms) + LEASE_MARGIN_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped_and_jittered() {
        let policy = ClassPolicy::default();
        for retry in 1..30 {
            assert!(
                policy.backoff(retry) <= Duration::from_millis(policy.cap_ms),
                "retry {retry}"
            );
        }
        let first: Vec<Duration> = (0..200).map(|_| policy.backoff(1)).collect();
        assert!(first.iter().all(|d| *d <= Duration::from_millis(50)));
        assert!(first.iter().any(|d| *d != first[0]), "full jitter varies");
        let fixed = ClassPolicy {
            backoff: BackoffKind::Fixed,
            jitter: false,
            ..policy
        };
        assert_eq!(fixed.backoff(7), Duration::from_millis(50));
        let none = ClassPolicy {
            backoff: BackoffKind::None,
            ..policy
        };
        assert_eq!(none.backoff(3), Duration::ZERO);
    }

    #[test]
    fn validation_names_the_field() {
        let mut policy = RetryPolicy::default();
        policy.transient_not_charged.max_attempts = 0;
        assert_eq!(policy.validate(), Err("retry.transient_not_charged"));
        policy.transient_not_charged.max_attempts = 50;
        assert_eq!(policy.validate(), Err("retry.transient_not_charged"));
        assert_eq!(RetryPolicy::default().validate(), Ok(()));
    }
}
