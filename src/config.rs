//! Configuration: a TOML file, environment overrides, command-line flags.
//!
//! Precedence (DESIGN §11): flags over environment over file over defaults.
//! Every default is usable: with no configuration at all the engine runs on
//! a SQLite file under `./data/` with two sandbox providers.

use crate::actors::breaker::BreakerSettings;
use crate::actors::Fee;
use crate::providers::sandbox::SandboxFaults;
use crate::retry::{ClassPolicy, RetryPolicy};
use crate::routing::Strategy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The development key accepted for merchant `default` when no keys are
/// configured (and only on a loopback address).
pub const DEVELOPMENT_API_KEY: &str = "sk_test_default";
/// The merchant the development key belongs to.
pub const DEVELOPMENT_MERCHANT: &str = "default";
/// Slack between the longest time a live instance may go without renewing
/// an order lease and the lease's lifetime.
pub const LEASE_MARGIN_MS: u64 = 1_000;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    /// `sqlite://…` or `postgres://…`; `None`: `{data_dir}/payments.db`.
    pub database_url: Option<String>,
    /// PostgreSQL schema holding the engine's tables and migration history,
    /// so a host application's own tables and migrations never collide.
    pub database_schema: String,
    /// Where the default SQLite files live.
    pub data_dir: PathBuf,
    pub api_keys: Vec<ApiKey>,
    pub engine: EngineSettings,
    pub retry: RetryPolicy,
    pub reconciler: ReconcilerSettings,
    pub routing: RoutingSettings,
    pub providers: Vec<ProviderConfig>,
    pub sandbox: SandboxSettings,
    pub log: LogSettings,
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
}

/// An API key and the merchant it authenticates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub merchant: String,
    pub key: String,
}

/// Knobs of the engine core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Arbiter threads running payment actors.
    pub worker_threads: usize,
    /// A payment actor with no message for this long stops.
    pub payment_idle_timeout_ms: u64,
    /// How long an order lease lasts without renewal; a crashed instance's
    /// orders are free again after it.
    pub lease_ttl_ms: i64,
    /// Idempotency keys are kept at least this long.
    pub idempotency_retention_hours: u64,
    /// How long shutdown waits for in-flight payments.
    pub shutdown_grace_ms: u64,
    /// Names this process in leases; default: host name and process id.
    pub instance_id: Option<String>,
}

/// The recovery pass: stuck `processing` and `pending` payments are looked
/// up at their provider and finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilerSettings {
    /// Time between passes (one also runs at startup).
    pub interval_ms: u64,
    /// A `pending` payment is looked up once it has been pending this long.
    pub pending_age_ms: i64,
    /// Look-ups without a definite answer before a payment goes to `needs_review`.
    pub max_recovery_attempts: u32,
    /// Payments looked at per pass.
    pub batch_limit: u32,
    /// Run a pass as soon as the engine starts (crash recovery). The
    /// `reconcile` command turns it off to run exactly one pass itself.
    pub run_at_startup: bool,
}

impl Default for ReconcilerSettings {
    fn default() -> Self {
        ReconcilerSettings {
            interval_ms: 60_000,
            pending_age_ms: 5 * 60_000,
            max_recovery_attempts: 5,
            batch_limit: 100,
            run_at_startup: true,
        }
    }
}

/// How payments are routed to providers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    pub strategy: Strategy,
}

/// The kinds of provider the engine can talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Sandbox,
    Stripe,
    Adyen,
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
    pub timeout_ms: u64,
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
    /// found" is not taken to mean "not charged". Default: 0 for the
    /// sandbox, one hour for Stripe.
    pub lookup_consistency_ms: Option<u64>,
}

/// Where the sandbox keeps its record of charges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Default: `{data_dir}/sandbox.db`. Engines sharing one database should
    /// share this file too, as they would share one real provider.
    pub database_path: Option<PathBuf>,
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `payments=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            database_url: None,
            database_schema: "payments".into(),
            data_dir: PathBuf::from("data"),
            api_keys: Vec::new(),
            engine: EngineSettings::default(),
            retry: RetryPolicy::default(),
            reconciler: ReconcilerSettings::default(),
            routing: RoutingSettings::default(),
            providers: vec![
                ProviderConfig::sandbox("sandbox_a"),
                ProviderConfig::sandbox("sandbox_b"),
            ],
            sandbox: SandboxSettings::default(),
            log: LogSettings::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            worker_threads: 1,
            payment_idle_timeout_ms: 30_000,
            lease_ttl_ms: 60_000,
            idempotency_retention_hours: 24,
            shutdown_grace_ms: 10_000,
            instance_id: None,
        }
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
            ProviderKind::Sandbox | ProviderKind::Adyen => 0,
        })
    }

    pub fn sandbox(name: &str) -> Self {
        ProviderConfig {
            name: name.into(),
            kind: ProviderKind::Sandbox,
            enabled: true,
            currencies: Vec::new(),
            max_in_flight: 256,
            timeout_ms: 10_000,
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

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML in {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid {name}: {reason}")]
    Invalid { name: String, reason: String },
}

fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        reason: reason.into(),
    }
}

impl Config {
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })
    }

    /// Applies the documented environment variables, read through `get`
    /// (so tests need not touch the process environment).
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(port) = get("PAYMENTS_PORT") {
            self.server.port = port
                .parse()
                .map_err(|_| invalid("PAYMENTS_PORT", format!("not a port number: {port}")))?;
        }
        if let Some(host) = get("PAYMENTS_HOST") {
            self.server.host = host;
        }
        if let Some(url) = get("DATABASE_URL") {
            self.database_url = Some(url);
        }
        if let Some(schema) = get("PAYMENTS_DATABASE_SCHEMA") {
            self.database_schema = schema;
        }
        if let Some(dir) = get("PAYMENTS_DATA_DIR") {
            self.data_dir = PathBuf::from(dir);
        }
        if let Some(keys) = get("PAYMENTS_API_KEYS") {
            self.api_keys = parse_api_keys(&keys)?;
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("payments.db").display()))
    }

    /// The sandbox record file in effect.
    pub fn sandbox_database_path(&self) -> PathBuf {
        self.sandbox
            .database_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("sandbox.db"))
    }

    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.retry
            .validate()
            .map_err(|field| invalid(field, "out of range"))?;
        if self.providers.is_empty() {
            return Err(invalid("providers", "at least one provider is required"));
        }
        for (i, provider) in self.providers.iter().enumerate() {
            if provider.name.is_empty()
                || !provider
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(invalid(
                    "providers.name",
                    format!("{:?} must be [A-Za-z0-9_-]+", provider.name),
                ));
            }
            if self.providers[..i].iter().any(|p| p.name == provider.name) {
                return Err(invalid(
                    "providers.name",
                    format!("{} is configured twice", provider.name),
                ));
            }
            if provider.max_in_flight == 0 {
                return Err(invalid("providers.max_in_flight", "must be at least 1"));
            }
            if provider.timeout_ms == 0 {
                return Err(invalid("providers.timeout_ms", "must be at least 1"));
            }
            for code in &provider.currencies {
                if crate::domain::Currency::parse(code).is_none() {
                    return Err(invalid(
                        "providers.currencies",
                        format!("unknown currency {code}"),
                    ));
                }
            }
            provider
                .faults
                .validate()
                .map_err(|field| invalid(&format!("providers.faults.{field}"), "out of range"))?;
        }
        if !crate::store::valid_schema_name(&self.database_schema) {
            return Err(invalid(
                "database_schema",
                "use lowercase letters, digits and _",
            ));
        }
        if self.engine.worker_threads == 0 || self.engine.worker_threads > 64 {
            return Err(invalid("engine.worker_threads", "must be 1 to 64"));
        }
        // A live instance must renew its lease before it can expire, or
        // another instance's recovery could take over a payment whose call is
        // still in flight. Between two renewals lies at most one call with its
        // same-key retries, and one backoff.
        for provider in &self.providers {
            let policy = provider.retry_policy(&self.retry);
            policy
                .validate()
                .map_err(|field| invalid(&format!("providers.{field}"), "out of range"))?;
            let (unknown, transient) = (policy.unknown, policy.transient_not_charged);
            let calls = u64::from(unknown.max_attempts);
            // A provider's Retry-After is honoured up to `cap_ms`, whatever
            // the backoff kind, so the wait between attempts can reach it.
            let longest_gap_ms = provider.timeout_ms * calls
                + unknown.max_wait_ms() * calls.saturating_sub(1)
                + transient.max_wait_ms().max(transient.cap_ms);
            if self.engine.lease_ttl_ms < 0
                || (self.engine.lease_ttl_ms as u64) < longest_gap_ms + LEASE_MARGIN_MS
            {
                return Err(invalid(
                    "engine.lease_ttl_ms",
                    format!(
                        "must be at least {} ms: provider {} may take {longest_gap_ms} ms between lease renewals",
                        longest_gap_ms + LEASE_MARGIN_MS,
                        provider.name
                    ),
                ));
            }
            for currency in provider.fees.keys() {
                let known = currency == "*"
                    || crate::domain::Currency::parse(currency)
                        .is_some_and(|c| c.code() == currency);
                if !known {
                    return Err(invalid(
                        "providers.fees",
                        format!("{currency:?} is not a lowercase ISO 4217 code or \"*\""),
                    ));
                }
            }
            provider
                .breaker
                .validate()
                .map_err(|field| invalid(&format!("providers.breaker.{field}"), "out of range"))?;
            if provider.kind != ProviderKind::Sandbox && provider.api_key_env.is_none() {
                return Err(invalid(
                    "providers.api_key_env",
                    format!(
                        "{} needs the name of the variable holding its API key",
                        provider.name
                    ),
                ));
            }
            if provider.kind == ProviderKind::Adyen && provider.merchant_account.is_none() {
                return Err(invalid(
                    "providers.merchant_account",
                    format!("{} needs its Adyen merchant account", provider.name),
                ));
            }
        }
        if self.reconciler.interval_ms == 0 || self.reconciler.batch_limit == 0 {
            return Err(invalid(
                "reconciler",
                "interval_ms and batch_limit must be positive",
            ));
        }
        if self.engine.idempotency_retention_hours < 24 {
            return Err(invalid(
                "engine.idempotency_retention_hours",
                "must be at least 24",
            ));
        }
        for key in &self.api_keys {
            if key.merchant.is_empty() || key.key.len() < 8 {
                return Err(invalid(
                    "api_keys",
                    "each key needs a merchant and at least 8 characters",
                ));
            }
        }
        Ok(())
    }
}

/// Parses `merchant:key,merchant:key`.
pub fn parse_api_keys(text: &str) -> Result<Vec<ApiKey>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (merchant, key) = pair.split_once(':').ok_or_else(|| {
                invalid(
                    "PAYMENTS_API_KEYS",
                    "expected merchant:key[,merchant:key...]",
                )
            })?;
            Ok(ApiKey {
                merchant: merchant.trim().to_string(),
                key: key.trim().to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_are_valid_and_zero_setup() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.server.port, 8080);
        assert_eq!(config.server.host, "127.0.0.1");
        assert!(config.database_url().starts_with("sqlite://data/"));
        let names: Vec<_> = config.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sandbox_a", "sandbox_b"]);
    }

    #[test]
    fn environment_overrides_file() {
        let mut config: Config = toml::from_str(
            "database_url = \"sqlite://x.db\"\n[server]\nport = 9000\n[[api_keys]]\nmerchant = \"m\"\nkey = \"sk_from_file\"\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("PAYMENTS_PORT", "9100"),
            ("DATABASE_URL", "postgres://db/payments"),
            (
                "PAYMENTS_API_KEYS",
                "acme:sk_acme_123456, globex:sk_globex_123456",
            ),
        ]
        .into();
        config
            .apply_env(|name| env.get(name).map(|v| v.to_string()))
            .unwrap();
        assert_eq!(config.server.port, 9100);
        assert_eq!(config.database_url(), "postgres://db/payments");
        assert_eq!(config.api_keys.len(), 2);
        assert_eq!(config.api_keys[1].merchant, "globex");
        assert_eq!(config.api_keys[1].key, "sk_globex_123456");
    }

    #[test]
    fn a_lease_shorter_than_a_call_is_refused() {
        let mut config = Config::default();
        config.engine.lease_ttl_ms = 5_000;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("engine.lease_ttl_ms"), "{error}");
        config.providers.iter_mut().for_each(|p| p.timeout_ms = 300);
        config.validate().unwrap();
    }

    #[test]
    fn retry_after_up_to_the_cap_counts_in_the_lease_check() {
        let mut config = Config::default();
        config
            .providers
            .iter_mut()
            .for_each(|p| p.timeout_ms = 1_000);
        config.engine.lease_ttl_ms = 10_000;
        config.validate().unwrap();
        // A fixed 10 ms backoff whose cap lets Retry-After ask for 20 s.
        config.retry.transient_not_charged.backoff = crate::retry::BackoffKind::Fixed;
        config.retry.transient_not_charged.base_ms = 10;
        config.retry.transient_not_charged.cap_ms = 20_000;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("engine.lease_ttl_ms"), "{error}");
    }

    #[test]
    fn fee_keys_are_validated() {
        let mut config = Config::default();
        config.providers[0]
            .fees
            .insert("usd".into(), Fee::default());
        config.providers[0].fees.insert("*".into(), Fee::default());
        config.validate().unwrap();
        config.providers[0]
            .fees
            .insert("USD".into(), Fee::default());
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("providers.fees"));
    }

    #[test]
    fn bad_values_are_named() {
        let mut config = Config::default();
        let err = config.apply_env(|name| (name == "PAYMENTS_PORT").then(|| "eighty".to_string()));
        assert!(err.unwrap_err().to_string().contains("PAYMENTS_PORT"));
        assert!(parse_api_keys("nocolon").is_err());
        assert!(toml::from_str::<Config>("bogus_field = 1").is_err());
        config.providers[1].name = "sandbox_a".into();
        assert!(config.validate().unwrap_err().to_string().contains("twice"));
    }
}
