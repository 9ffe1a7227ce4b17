//! Validation: everything about a configuration that can be checked
//! without I/O, run once by every command before anything is opened.
//!
//! Each check names the setting it refuses, so an operator reading the
//! error knows which line to change.

use super::{mask_urls, Config, KeyDigest, ProviderConfig, ProviderKind, RateLimitSettings};
use crate::domain::Currency;
use crate::providers::sandbox::SandboxFaults;
use std::collections::HashMap;
use std::path::PathBuf;

/// Why a configuration cannot be used.
///
/// Every message passes through [`mask_urls`]: a TOML error quotes the
/// offending line, and a refused value may be a URL with a password.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid TOML in {path}: {}", mask_urls(&source.to_string()))]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid {name}: {}", mask_urls(reason))]
    Invalid { name: String, reason: String },
}

pub(super) fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.into(),
        reason: reason.into(),
    }
}

/// Most arbiter threads for payment actors.
const MAX_WORKER_THREADS: usize = 64;
/// Idempotency keys are kept at least a day (DESIGN §5).
const MIN_IDEMPOTENCY_RETENTION_HOURS: u64 = 24;
/// Longest `server.body_timeout_ms`: past a minute a slow client holds a
/// connection for nothing.
const MAX_BODY_TIMEOUT_MS: u64 = 60_000;
/// Longest `sandbox.async_confirm_ms`: a confirmation an hour late is no
/// longer "a moment later" (DESIGN §7).
const MAX_ASYNC_CONFIRM_MS: u64 = 3_600_000;
/// Database URL schemes the store opens (`store::open`).
const DATABASE_SCHEMES: &[&str] = &["sqlite:", "postgres:", "postgresql:"];
/// What `log.format` may be.
const LOG_FORMATS: &[&str] = &["text", "json"];

impl Config {
    /// Checks everything that can be checked without I/O.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.retry
            .validate()
            .map_err(|field| invalid(field, "out of range"))?;
        if self.providers.is_empty() {
            return Err(invalid("providers", "at least one provider is required"));
        }
        for (i, provider) in self.providers.iter().enumerate() {
            if self.providers[..i].iter().any(|p| p.name == provider.name) {
                return Err(invalid(
                    "providers.name",
                    format!("{} is configured twice", provider.name),
                ));
            }
            self.validate_provider(provider)?;
        }
        if !crate::store::valid_schema_name(&self.database_schema) {
            return Err(invalid(
                "database_schema",
                "use lowercase letters, digits and _",
            ));
        }
        self.validate_engine()?;
        self.validate_server()?;
        self.validate_log()?;
        self.validate_database_url()?;
        self.validate_sandbox()?;
        self.anomaly.validate()?;
        self.email.validate()?;
        super::webhooks::validate(&self.webhooks, &self.webhook_delivery, &self.events)?;
        self.validate_api_keys()
    }

    fn validate_sandbox(&self) -> Result<(), ConfigError> {
        if self.sandbox.async_confirm_ms > MAX_ASYNC_CONFIRM_MS {
            return Err(invalid(
                "sandbox.async_confirm_ms",
                format!("must be at most {MAX_ASYNC_CONFIRM_MS}"),
            ));
        }
        if self
            .sandbox
            .webhook_secret
            .as_deref()
            .is_some_and(|secret| secret.trim().is_empty())
        {
            return Err(invalid(
                "sandbox.webhook_secret",
                "must not be empty (leave it out for the development secret)",
            ));
        }
        Ok(())
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_BODY_TIMEOUT_MS).contains(&self.server.body_timeout_ms) {
            return Err(invalid(
                "server.body_timeout_ms",
                format!("must be 1 to {MAX_BODY_TIMEOUT_MS}"),
            ));
        }
        self.server
            .rate_limit
            .as_ref()
            .map_or(Ok(()), RateLimitSettings::validate)
    }

    fn validate_log(&self) -> Result<(), ConfigError> {
        if !LOG_FORMATS.contains(&self.log.format.as_str()) {
            return Err(invalid(
                "log.format",
                format!("{:?} is neither \"text\" nor \"json\"", self.log.format),
            ));
        }
        if let Some(endpoint) = &self.log.otlp_endpoint {
            validate_otlp_endpoint(endpoint)?;
        }
        if self.log.otlp_service_name.trim().is_empty() {
            return Err(invalid("log.otlp_service_name", "must not be empty"));
        }
        Ok(())
    }

    /// What can only be checked against this machine: the variables that
    /// hold credentials are set, and a SQLite file's directory exists (the
    /// default `./data/` is created). Every command runs it with
    /// [`Config::validate`], before anything is opened or bound.
    pub fn check_environment(
        &self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for provider in &self.providers {
            let named = [
                ("providers.api_key_env", &provider.api_key_env),
                ("providers.webhook_secret_env", &provider.webhook_secret_env),
            ];
            for (key, variable) in named {
                let Some(variable) = variable else { continue };
                if var(variable).is_none_or(|value| value.trim().is_empty()) {
                    return Err(invalid(
                        key,
                        format!(
                            "provider {}: environment variable {variable} is not set",
                            provider.name
                        ),
                    ));
                }
            }
        }
        self.email.check_environment(&var)?;
        self.check_sqlite_directory()
    }

    /// A SQLite URL the operator wrote must name a file in an existing
    /// directory: a typo would otherwise start the engine on a new, empty
    /// database somewhere unexpected.
    fn check_sqlite_directory(&self) -> Result<(), ConfigError> {
        let Some(url) = &self.database_url else {
            return Ok(());
        };
        let Some(path) = crate::store::sqlite_path(url) else {
            return Ok(());
        };
        let parent = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => return Ok(()),
        };
        if parent.is_dir() || path == self.default_sqlite_path() {
            return Ok(());
        }
        Err(invalid(
            "database_url",
            format!(
                "the directory {} does not exist; create it first",
                parent.display()
            ),
        ))
    }

    /// Refused here rather than by the store so the message is ours, with
    /// the URL masked (a mistyped scheme still carries its password).
    fn validate_database_url(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        if !DATABASE_SCHEMES
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            return Err(invalid(
                "database_url",
                format!("{url} is neither sqlite://... nor postgres://..."),
            ));
        }
        Ok(())
    }

    fn validate_engine(&self) -> Result<(), ConfigError> {
        if self.engine.worker_threads > MAX_WORKER_THREADS {
            return Err(invalid(
                "engine.worker_threads",
                format!("must be 0 (one per core) to {MAX_WORKER_THREADS}"),
            ));
        }
        if self.engine.max_in_flight_payments == 0 {
            return Err(invalid(
                "engine.max_in_flight_payments",
                "must be at least 1",
            ));
        }
        if self.engine.max_payment_actors == 0 {
            return Err(invalid("engine.max_payment_actors", "must be at least 1"));
        }
        if self.reconciler.interval.is_zero() || self.reconciler.batch_limit == 0 {
            return Err(invalid(
                "reconciler",
                "interval_secs and batch_limit must be positive",
            ));
        }
        if self.engine.idempotency_retention_hours < MIN_IDEMPOTENCY_RETENTION_HOURS {
            return Err(invalid(
                "engine.idempotency_retention_hours",
                format!("must be at least {MIN_IDEMPOTENCY_RETENTION_HOURS}"),
            ));
        }
        Ok(())
    }

    /// Key formats were checked as they were read (only digests are left);
    /// here: each key has a merchant, and one key never names two merchants
    /// (which one a request is for would depend on the order of the list).
    fn validate_api_keys(&self) -> Result<(), ConfigError> {
        let mut merchant_of: HashMap<&KeyDigest, &str> = HashMap::new();
        for key in &self.api_keys {
            let merchant = key.merchant.as_str();
            if merchant.trim().is_empty() || merchant.chars().any(char::is_control) {
                return Err(invalid(
                    "api_keys",
                    "each key needs a merchant name without control characters",
                ));
            }
            match merchant_of.insert(&key.key, merchant) {
                Some(other) if other != merchant => {
                    return Err(invalid(
                        "api_keys",
                        format!("the same key is configured for merchants {other} and {merchant}"),
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn validate_provider(&self, provider: &ProviderConfig) -> Result<(), ConfigError> {
        let valid_name = !provider.name.is_empty()
            && provider
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_name {
            return Err(invalid(
                "providers.name",
                format!("{:?} must be [A-Za-z0-9_-]+", provider.name),
            ));
        }
        if provider.max_in_flight == 0 {
            return Err(invalid("providers.max_in_flight", "must be at least 1"));
        }
        if provider.call_timeout_ms == 0 {
            return Err(invalid("providers.call_timeout_ms", "must be at least 1"));
        }
        for code in &provider.currencies {
            if Currency::parse(code).is_none() {
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
        if provider.kind != ProviderKind::Sandbox && provider.faults != SandboxFaults::default() {
            return Err(invalid(
                "providers.faults",
                format!(
                    "{} is not a sandbox: only sandbox providers have fault knobs",
                    provider.name
                ),
            ));
        }
        self.validate_lease_against(provider)?;
        validate_fee_keys(provider)?;
        provider
            .breaker
            .validate()
            .map_err(|field| invalid(&format!("providers.breaker.{field}"), "out of range"))?;
        validate_credentials(provider)
    }

    /// A live instance must renew its lease before it can expire, or another
    /// instance's recovery could take over a payment whose call is still in
    /// flight.
    fn validate_lease_against(&self, provider: &ProviderConfig) -> Result<(), ConfigError> {
        let policy = provider.retry_policy(&self.retry);
        policy
            .validate()
            .map_err(|field| invalid(&format!("providers.{field}"), "out of range"))?;
        let min_ttl_ms = policy.min_lease_ttl_ms(provider.call_timeout_ms);
        if self.engine.lease_ttl_ms < min_ttl_ms {
            return Err(invalid(
                "engine.lease_ttl_ms",
                format!(
                    "must be at least {min_ttl_ms} ms: provider {} may take {} ms between lease renewals",
                    provider.name,
                    policy.longest_renewal_gap_ms(provider.call_timeout_ms)
                ),
            ));
        }
        Ok(())
    }
}

fn validate_fee_keys(provider: &ProviderConfig) -> Result<(), ConfigError> {
    for currency in provider.fees.keys() {
        let known =
            currency == "*" || Currency::parse(currency).is_some_and(|c| c.code() == currency);
        if !known {
            return Err(invalid(
                "providers.fees",
                format!("{currency:?} is not a lowercase ISO 4217 code or \"*\""),
            ));
        }
    }
    Ok(())
}

fn validate_credentials(provider: &ProviderConfig) -> Result<(), ConfigError> {
    let external = matches!(provider.kind, ProviderKind::Stripe | ProviderKind::Adyen);
    if external && provider.api_key_env.is_none() {
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
    Ok(())
}

/// `log.otlp_endpoint`: a base URL the exporter appends `/v1/traces` to,
/// so a query or fragment would end up before the path. Its form is
/// checked in every build (a typo is found before a rebuild); a build
/// without the exporter then refuses it, rather than exporting nothing.
fn validate_otlp_endpoint(endpoint: &str) -> Result<(), ConfigError> {
    const KEY: &str = "log.otlp_endpoint";
    let parsed = reqwest::Url::parse(endpoint)
        .map_err(|e| invalid(KEY, format!("{endpoint:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(invalid(
            KEY,
            "must be an http:// or https:// URL, e.g. http://127.0.0.1:4318",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(
            KEY,
            "must be a base URL without query or fragment: the spans go to {endpoint}/v1/traces",
        ));
    }
    if !cfg!(feature = "otlp") {
        return Err(invalid(
            KEY,
            "this build has no OTLP export; rebuild with `cargo build --features otlp` or remove log.otlp_endpoint",
        ));
    }
    Ok(())
}
