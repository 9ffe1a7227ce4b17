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
    /// The secret inbound webhooks are signed with (Stripe's and the
    /// sandbox's `whsec_…`, Adyen's HMAC key in hex). Prefer
    /// `webhook_secret_env` outside development; the sandbox uses
    /// `whsec_sandbox` when neither is set.
    pub webhook_secret: Option<Secret>,
    /// The environment variable holding the webhook secret.
    pub webhook_secret_env: Option<String>,
}

/// A credential written in the configuration file: never shown by `Debug`
/// or written back out by `Serialize` (a dumped or logged configuration
/// must not leak it).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for the code that signs or verifies with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
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
            webhook_secret: None,
            webhook_secret_env: None,
        }
    }

    /// The webhook secret in effect: from the named environment variable
    /// when one is named (it must then hold one), else the file's; `None`
    /// when neither is set (the sandbox then uses its development default).
    pub fn resolved_webhook_secret(&self) -> Result<Option<String>, String> {
        if let Some(variable) = &self.webhook_secret_env {
            return match std::env::var(variable) {
                Ok(secret) if !secret.trim().is_empty() => Ok(Some(secret)),
                _ => Err(format!(
                    "webhook_secret_env: environment variable {variable} holds no secret"
                )),
            };
        }
        Ok(self.webhook_secret.as_ref().map(|s| s.expose().to_string()))
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn a_webhook_secret_is_never_shown() {
        let config = ProviderConfig {
            webhook_secret: Some(Secret::new("whsec_do_not_show")),
            ..ProviderConfig::sandbox("sandbox")
        };
        assert!(!format!("{config:?}").contains("whsec_do_not_show"));
        let dumped = serde_json::to_string(&config).expect("serializes");
        assert!(!dumped.contains("whsec_do_not_show"), "{dumped}");
        assert_eq!(
            config.resolved_webhook_secret(),
            Ok(Some("whsec_do_not_show".to_string()))
        );
    }

    #[test]
    fn an_empty_secret_variable_is_refused() {
        let config = ProviderConfig {
            webhook_secret_env: Some("PAYMENTS_TEST_SURELY_UNSET_WEBHOOK_SECRET".into()),
            ..ProviderConfig::sandbox("sandbox")
        };
        let refused = config
            .resolved_webhook_secret()
            .expect_err("no such variable");
        assert!(
            refused.contains("PAYMENTS_TEST_SURELY_UNSET_WEBHOOK_SECRET"),
            "{refused}"
        );
    }
}
