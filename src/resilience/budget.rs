//! The retry budget: retries may not exceed a share of first attempts.
//!
//! A token bucket shared by every payment. Each first attempt earns a
//! fraction of a retry; each retry spends one. When a provider is down the
//! engine therefore sends it at most ~10 % more traffic, not 3x.
//!
//! What it guards is a struggling provider being asked *again*. A payment's
//! first call to another provider (failover after a refusal that charged
//! nothing) is not a retry of anything and never spends from it. The
//! bucket starts full (`max_banked_retries`): an engine that has just
//! started has not yet earned retries, but has no reason to refuse them.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Instant;

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

impl BudgetState {
    /// The tokens left, as the metrics show them.
    fn tokens(&self) -> f64 {
        (self.earned_milli + self.floor_milli) as f64 / 1000.0
    }
}

impl RetryBudget {
    pub fn new(settings: BudgetSettings) -> Self {
        let state = BudgetState {
            earned_milli: i64::from(settings.max_banked_retries) * 1000,
            floor_milli: i64::from(settings.min_retries_per_sec) * 1000,
            last_refill: Instant::now(),
        };
        crate::telemetry::retry_budget(state.tokens());
        RetryBudget {
            settings,
            state: Mutex::new(state),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A payment made its first attempt: it earns `ratio` of a retry.
    pub fn record_first_attempt(&self) {
        let tokens = {
            let mut state = self.lock();
            let cap = i64::from(self.settings.max_banked_retries) * 1000;
            let earned = (state.earned_milli + (self.settings.ratio * 1000.0) as i64).min(cap);
            if earned == state.earned_milli {
                // Full: nothing changed, nothing to show (the common case,
                // on every payment).
                return;
            }
            state.earned_milli = earned;
            state.tokens()
        };
        // Outside the lock: the gauge is a registry look-up.
        crate::telemetry::retry_budget(tokens);
    }

    /// Takes one retry from the budget, or says no.
    pub fn try_spend(&self) -> bool {
        let (granted, tokens) = self.spend();
        crate::telemetry::retry_budget(tokens);
        granted
    }

    /// [`RetryBudget::try_spend`] under the lock: (granted, tokens left).
    fn spend(&self) -> (bool, f64) {
        let mut state = self.lock();
        let floor_cap = i64::from(self.settings.min_retries_per_sec) * 1000;
        let elapsed_ms = state.last_refill.elapsed().as_millis() as i64;
        if elapsed_ms > 0 {
            state.floor_milli = (state.floor_milli
                + elapsed_ms * i64::from(self.settings.min_retries_per_sec))
            .min(floor_cap);
            state.last_refill = Instant::now();
        }
        let granted = if state.earned_milli >= 1000 {
            state.earned_milli -= 1000;
            true
        } else if state.floor_milli >= 1000 {
            state.floor_milli -= 1000;
            true
        } else {
            false
        };
        (granted, state.tokens())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_a_tenth_of_first_attempts_plus_the_floor() {
        let budget = RetryBudget::new(BudgetSettings {
            ratio: 0.1,
            min_retries_per_sec: 0,
            max_banked_retries: 1_000,
        });
        // Spend the initial burst first.
        assert_eq!((0..2_000).filter(|_| budget.try_spend()).count(), 1_000);
        for _ in 0..1_000 {
            budget.record_first_attempt();
        }
        let granted = (0..1_000).filter(|_| budget.try_spend()).count();
        assert_eq!(granted, 100);
        let with_floor = RetryBudget::new(BudgetSettings {
            ratio: 0.1,
            min_retries_per_sec: 2,
            max_banked_retries: 0,
        });
        assert_eq!(
            (0..10).filter(|_| with_floor.try_spend()).count(),
            2,
            "the floor lets a quiet engine retry"
        );
    }

    #[test]
    fn a_new_budget_starts_with_its_burst() {
        let budget = RetryBudget::new(BudgetSettings {
            ratio: 0.1,
            min_retries_per_sec: 0,
            max_banked_retries: 7,
        });
        assert_eq!((0..100).filter(|_| budget.try_spend()).count(), 7);
    }
}
