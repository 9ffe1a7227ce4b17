//! Retry policy, per outcome class, as data; and the retry budget.
//!
//! Which answers are retried, how often and how far apart is a table an
//! operator can read in the configuration, not logic spread through the
//! flow. The budget caps retries at a share of first attempts (plus a small
//! floor for quiet periods), so when a provider is down the engine sends it
//! at most ~10 % more traffic, not 3×.

use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// The retry budget's size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetSettings {
    /// Retries earned per first attempt (0.1: retries ≤ 10 % of first attempts).
    pub ratio: f64,
    /// Retries always allowed per second, for quiet periods.
    pub min_retries_per_sec: u32,
    /// Most retries banked from a quiet, healthy period.
    pub max_banked_retries: u32,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            ratio: 0.1,
            min_retries_per_sec: 10,
            max_banked_retries: 100,
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
}

/// Shared retry allowance (a token bucket), in thousandths of a retry.
#[derive(Debug)]
pub struct RetryBudget {
    settings: BudgetSettings,
    state: Mutex<BudgetState>,
}

#[derive(Debug)]
struct BudgetState {
    earned_milli: i64,
    floor_milli: i64,
    last_refill: Instant,
}

impl RetryBudget {
    pub fn new(settings: BudgetSettings) -> Self {
        RetryBudget {
            settings,
            state: Mutex::new(BudgetState {
                earned_milli: 0,
                floor_milli: i64::from(settings.min_retries_per_sec) * 1000,
                last_refill: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A payment made its first attempt: it earns `ratio` of a retry.
    pub fn record_first_attempt(&self) {
        let mut state = self.lock();
        let cap = i64::from(self.settings.max_banked_retries) * 1000;
        state.earned_milli = (state.earned_milli + (self.settings.ratio * 1000.0) as i64).min(cap);
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_spend(&self) -> bool {
        let mut state = self.lock();
        let floor_cap = i64::from(self.settings.min_retries_per_sec) * 1000;
        let elapsed_ms = state.last_refill.elapsed().as_millis() as i64;
        if elapsed_ms > 0 {
            state.floor_milli = (state.floor_milli
                + elapsed_ms * i64::from(self.settings.min_retries_per_sec))
            .min(floor_cap);
            state.last_refill = Instant::now();
        }
        if state.earned_milli >= 1000 {
            state.earned_milli -= 1000;
            true
        } else if state.floor_milli >= 1000 {
            state.floor_milli -= 1000;
            true
        } else {
            false
        }
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
    fn budget_allows_a_tenth_of_first_attempts_plus_the_floor() {
        let budget = RetryBudget::new(BudgetSettings {
            ratio: 0.1,
            min_retries_per_sec: 0,
            max_banked_retries: 1_000,
        });
        for _ in 0..1_000 {
            budget.record_first_attempt();
        }
        let granted = (0..1_000).filter(|_| budget.try_spend()).count();
        assert_eq!(granted, 100);
        let with_floor = RetryBudget::new(BudgetSettings {
            ratio: 0.1,
            min_retries_per_sec: 2,
            max_banked_retries: 1_000,
        });
        assert_eq!(
            (0..10).filter(|_| with_floor.try_spend()).count(),
            2,
            "the floor lets a quiet engine retry"
        );
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
