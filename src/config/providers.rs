//! Provider settings: which providers exist, how to reach them, and the
//! limits, fees and retry rows of each.
//!
//! A plain description: the engine turns each entry into a provider adapter
//! and its actor at boot.

use crate::domain::Fee;
use crate::providers::sandbox::SandboxFaults;
use crate::resilience::{BreakerSettings, ClassPolicy, RetryPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kinds of provider the engine can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Sandbox,
    Stripe,
    Adyen,
    /// The engine's own stored-value provider (DESIGN §7).
    Wallet,
}

/// One configured provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    pub enabled: bool,
    /// ISO 4217 codes; empty: every currency.
    pub currencies: Vec<String>,
    pub max_in_flight: u32,
    /// A call not answered in this time is `unknown` (it may have charged).
    #[serde(alias = "timeout_ms")]
    pub call_timeout_ms: u64,
    /// Lower is tried first under the `priority` strategy and on ties;
    /// default: the provider's position in the list.
    pub priority: Option<u32>,
    /// Share of traffic under the `weighted` strategy.
    pub weight: u32,
    /// Fees by lowercase currency code (`*` for the others), for `cost`
    /// routing: `{ fixed = 30, percent_bps = 290 }`.
    pub fees: BTreeMap<String, Fee>,
    pub breaker: BreakerSettings,
    /// Retries after this provider's `transient_not_charged` and `unknown`
    /// answers; unset classes use the engine-wide `[retry]` table.
    pub retry: ProviderRetry,
    /// Initial fault knobs (sandbox only).
    pub faults: SandboxFaults,
    /// The provider's API base URL (Stripe, Adyen); default: the public one.
    pub base_url: Option<String>,
    /// The environment variable holding the API key (Stripe, Adyen):
    /// credentials never live in the configuration file.
    pub api_key_env: Option<String>,
    /// Adyen's merchant account.
    pub merchant_account: Option<String>,
    /// How long after a call the provider's look-up may still miss the
    /// charge (Stripe's search is eventually consistent). Until then "not
    /// found" is not taken to mean "not charged". Default: one second for
    /// the sandbox, one hour for Stripe, 0 for Adyen (which has no look-up).
    pub lookup_consistency_ms: Option<u64>,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig::sandbox("sandbox")
    }
}

/// A provider's own retry rows, overriding the engine-wide table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderRetry {
    pub transient_not_charged: Option<ClassPolicy>,
    pub unknown: Option<ClassPolicy>,
}

/// The sandbox drops a charge not committed by its call's deadline; one
/// whose commit began just before it lands within this window.
pub const SANDBOX_LOOKUP_CONSISTENCY_MS: u64 = 1_000;
/// Stripe's search index may lag a new charge by up to an hour in outages.
pub const STRIPE_LOOKUP_CONSISTENCY_MS: u64 = 3_600_000;

impl ProviderConfig {
    /// The retry rows in effect for this provider.
    pub fn retry_policy(&self, engine: &RetryPolicy) -> RetryPolicy {
        RetryPolicy {
            transient_not_charged: self
                .retry
                .transient_not_charged
                .unwrap_or(engine.transient_not_charged),
            unknown: self.retry.unknown.unwrap_or(engine.unknown),
            ..*engine
        }
    }

    /// The look-up consistency window in effect.
    pub fn lookup_consistency_ms(&self) -> u64 {
        self.lookup_consistency_ms.unwrap_or(match self.kind {
            ProviderKind::Stripe => STRIPE_LOOKUP_CONSISTENCY_MS,
            ProviderKind::Sandbox => SANDBOX_LOOKUP_CONSISTENCY_MS,
            ProviderKind::Adyen | ProviderKind::Wallet => 0,
        })
    }

    /// The wallet provider, configured by default as `wallet`.
    pub fn wallet(name: &str) -> Self {
        ProviderConfig {
            kind: ProviderKind::Wallet,
            ..ProviderConfig::sandbox(name)
        }
    }

    pub fn sandbox(name: &str) -> Self {
        ProviderConfig {
            name: name.into(),
            kind: ProviderKind::Sandbox,
            enabled: true,
            currencies: Vec::new(),
            max_in_flight: 256,
            call_timeout_ms: 10_000,
            priority: None,
            weight: 1,
            fees: BTreeMap::new(),
            breaker: BreakerSettings::default(),
            retry: ProviderRetry::default(),
            faults: SandboxFaults::default(),
            base_url: None,
            api_key_env: None,
            merchant_account: None,
            lookup_consistency_ms: None,
        }
    }
}
