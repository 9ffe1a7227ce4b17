//! Choosing providers for a payment (DESIGN §7).
//!
//! Candidates are the providers configured for the currency (only the
//! pinned one if the merchant pinned one) that are enabled and whose circuit
//! admits calls, ordered by the configured strategy. The payment then fails
//! over down that list, and only after `transient_not_charged`. The chosen
//! order and the reason for it go into the payment's audit trail.

mod directory;
mod health;

pub use directory::{ProviderDirectory, ProviderEntry};
pub use health::ProviderHealth;

use crate::domain::{Amount, Currency, Timestamp};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// How candidates are ordered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Cheapest first: fixed + percentage fee for the amount and currency.
    #[default]
    Cost,
    /// By configured `priority` (lower first).
    Priority,
    /// Highest rolling success rate first (as measured by provider actors).
    SuccessRate,
    /// First provider drawn at random in proportion to `weight`.
    Weighted,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Cost => "cost",
            Strategy::Priority => "priority",
            Strategy::SuccessRate => "success_rate",
            Strategy::Weighted => "weighted",
        }
    }
}

/// The providers to try, in order, and why.
#[derive(Clone)]
pub struct Route<A> {
    pub candidates: Vec<ProviderEntry<A>>,
    /// For the audit trail.
    pub reason: Value,
}

/// Orders the candidates for a payment of `amount` in `currency`.
pub fn route<A: Clone>(
    directory: &ProviderDirectory<A>,
    strategy: Strategy,
    amount: Amount,
    currency: Currency,
    pinned: Option<&str>,
    payment_method: &str,
    now: Timestamp,
) -> Route<A> {
    let now_ms = u64::try_from(now.as_micros() / 1000).unwrap_or(0);
    let supporting = directory.supporting(currency, pinned, payment_method);
    let (mut healthy, excluded): (Vec<_>, Vec<_>) = supporting
        .into_iter()
        .partition(|entry| entry.health.admits_calls(now_ms));
    let mut excluded_reasons: Vec<Value> = excluded
        .iter()
        .map(|e| {
            let why = if e.health.enabled() {
                format!("circuit {}", e.health.circuit().as_str())
            } else {
                "disabled".into()
            };
            json!({ "provider": e.name, "why": why })
        })
        .collect();
    // With nothing healthy, or a pinned provider, the call is still made
    // through the provider actor, which refuses it and says why.
    if healthy.is_empty() {
        healthy = excluded;
        excluded_reasons.clear();
    }
    let fee = |entry: &ProviderEntry<A>| {
        entry
            .fee(amount.minor_units(), currency)
            .unwrap_or(i64::MAX)
    };
    match strategy {
        Strategy::Cost => healthy.sort_by_key(|e| (fee(e), e.priority)),
        Strategy::Priority => healthy.sort_by_key(|e| e.priority),
        Strategy::SuccessRate => healthy.sort_by(|a, b| {
            b.health
                .success_rate()
                .total_cmp(&a.health.success_rate())
                .then(a.priority.cmp(&b.priority))
        }),
        Strategy::Weighted => {
            healthy.sort_by_key(|e| e.priority);
            let total: u64 = healthy.iter().map(|e| u64::from(e.weight)).sum();
            if total > 0 {
                let mut draw = rand::thread_rng().gen_range(0..total);
                let first = healthy
                    .iter()
                    .position(|e| {
                        let weight = u64::from(e.weight);
                        if draw < weight {
                            true
                        } else {
                            draw -= weight;
                            false
                        }
                    })
                    .unwrap_or(0);
                let chosen = healthy.remove(first);
                healthy.insert(0, chosen);
            }
        }
    }
    let described: Vec<Value> = healthy
        .iter()
        .map(|e| {
            json!({
                "provider": e.name,
                "fee": e.fee(amount.minor_units(), currency),
                "success_rate": e.health.success_rate(),
                "priority": e.priority,
                "weight": e.weight,
            })
        })
        .collect();
    let reason = json!({
        "strategy": if pinned.is_some() { "pinned" } else { strategy.as_str() },
        "candidates": described,
        "excluded": excluded_reasons,
    });
    Route {
        candidates: healthy,
        reason,
    }
}
