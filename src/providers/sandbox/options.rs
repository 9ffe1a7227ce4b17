//! What a sandbox provider is built with: its fault knobs, which also
//! change at runtime, and the options fixed at boot.

use crate::domain::{Currency, Fee};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The largest latency a knob may inject.
pub const MAX_INJECTED_LATENCY_MS: u64 = 60_000;
/// How long after answering a `pm_card_async` charge `pending` the sandbox
/// confirms it by webhook, unless configured (`sandbox.async_confirm_ms`).
pub const DEFAULT_ASYNC_CONFIRM_MS: u64 = 2_000;
/// The key of the fee that applies to currencies without one of their own.
pub const ANY_CURRENCY_FEE: &str = "*";

/// The runtime fault knobs of one sandbox provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxFaults {
    /// Added before every answer.
    pub latency_ms: u64,
    /// Share of calls refused with a 503 before anything is charged.
    pub failure_rate: f64,
    /// Share of charges made whose answer is then lost (the call times out).
    pub timeout_rate: f64,
    /// Every call is refused before it reaches the provider.
    pub outage: bool,
}

impl SandboxFaults {
    /// `Err(param)` naming the first knob out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.latency_ms > MAX_INJECTED_LATENCY_MS {
            return Err("latency_ms");
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err("failure_rate");
        }
        if !(0.0..=1.0).contains(&self.timeout_rate) {
            return Err("timeout_rate");
        }
        Ok(())
    }
}

/// How one sandbox provider behaves, fixed when it is built.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxOptions {
    /// The fault knobs it starts with.
    pub faults: SandboxFaults,
    /// A charge not committed this long after its call arrived is dropped,
    /// never committed later (see [`super::SandboxProvider`]).
    pub call_timeout_ms: u64,
    /// Signs and verifies webhooks; `None` (or empty):
    /// [`super::DEFAULT_WEBHOOK_SECRET`].
    pub webhook_secret: Option<String>,
    /// The provider's fees by lowercase currency code, [`ANY_CURRENCY_FEE`]
    /// for the others: each charge records its fee from them (0 when none
    /// applies), as the engine's `[providers.fees]` says it should be.
    pub fees: BTreeMap<String, Fee>,
    /// How long a `pm_card_async` charge waits for its webhook.
    pub async_confirm_ms: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            faults: SandboxFaults::default(),
            call_timeout_ms: 10_000,
            webhook_secret: None,
            fees: BTreeMap::new(),
            async_confirm_ms: DEFAULT_ASYNC_CONFIRM_MS,
        }
    }
}

/// The fee of a charge of `amount` minor units in `currency` under
/// `fees`: the currency's own entry, else [`ANY_CURRENCY_FEE`], else none
/// (0). Rounded by [`Fee::on`]'s rule; a fee too large to represent (only
/// an absurd configured percentage gets there) is recorded as `i64::MAX`
/// rather than refuse a charge the engine asked for.
pub(super) fn fee_on(fees: &BTreeMap<String, Fee>, amount: i64, currency: Currency) -> i64 {
    fees.get(currency.code())
        .or_else(|| fees.get(ANY_CURRENCY_FEE))
        .map_or(Some(0), |fee| fee.on(amount))
        .unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_currency_s_own_fee_wins_over_the_default_and_none_is_free() {
        let usd = Currency::parse("usd").expect("known");
        let eur = Currency::parse("eur").expect("known");
        let mut fees = BTreeMap::new();
        assert_eq!(fee_on(&fees, 1_000, usd), 0, "no fees configured");
        fees.insert(
            "usd".to_string(),
            Fee {
                fixed: 30,
                percent_bps: 290,
            },
        );
        assert_eq!(fee_on(&fees, 1_000, usd), 59);
        assert_eq!(fee_on(&fees, 1_000, eur), 0, "no entry for eur, no *");
        fees.insert(
            ANY_CURRENCY_FEE.to_string(),
            Fee {
                fixed: 10,
                percent_bps: 0,
            },
        );
        assert_eq!(fee_on(&fees, 1_000, eur), 10);
        assert_eq!(fee_on(&fees, 1_000, usd), 59);
    }
}
