//! Configuration: a TOML file, environment overrides, command-line flags.
//!
//! Precedence (DESIGN §11): flags over environment over file over defaults.
//! Every default is usable: with no configuration at all the engine runs on
//! a SQLite file under `./data/` with two sandbox providers.
//!
//! Configuration is a plain description: it names settings of lower layers
//! (resilience, routing, providers) but starts nothing; the engine turns it
//! into parts at boot. Split by concern:
//!
//! - this file: the schema (every section and its defaults) and the
//!   environment overrides;
//! - `providers`: one configured provider;
//! - `anomaly`: the `[anomaly]` rules, their actions and numbers;
//! - `email`: the optional `[email]` notifier (SMTP relay, recipients);
//! - `rate_limit`: `[server.rate_limit]`, requests per API key;
//! - `keys`: merchant and operator API keys, held only as digests;
//! - `mask`: credentials out of every URL in a message or log line;
//! - `validate`: every check that needs no I/O, run by every command.

mod anomaly;
mod email;
mod keys;
mod mask;
mod providers;
mod rate_limit;
mod validate;
mod webhooks;

pub use anomaly::{
    AnomalyScope, AnomalySettings, CardTestingRule, DuplicateAmountRule, FailedStreakRule,
    LargeAmountRule, VelocityRule, ANY_CURRENCY, DEFAULT_LARGE_AMOUNT_MINOR, MAX_TRACKED_CUSTOMERS,
    MAX_VELOCITY_COUNT, MAX_WINDOW_SECS,
};
pub use email::{
    EmailSettings, EmailTls, DEFAULT_EMAIL_TIMEOUT_MS, DEFAULT_SMTP_PORT, EMAIL_EVENTS,
    MAX_EMAIL_TIMEOUT_MS,
};
pub use keys::{parse_admin_keys, parse_api_keys, ApiKey, KeyDigest, MIN_API_KEY_CHARS};
pub use mask::mask_urls;
pub use providers::{ProviderConfig, ProviderKind, ProviderRetry, STRIPE_LOOKUP_CONSISTENCY_MS};
pub use rate_limit::{RateLimitSettings, MAX_RATE_LIMIT};
pub use validate::ConfigError;
pub use webhooks::{
    EventsSettings, NatsSettings, WebhookDeliverySettings, WebhookEndpoint, DEFAULT_MAX_ATTEMPTS,
    MAX_BACKOFF_SECS,
};

use crate::resilience::RetryPolicy;
use crate::routing::Strategy;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use validate::invalid;

/// The development key accepted for merchant `default` when no merchant
/// keys are configured (and only on a loopback address).
pub const DEVELOPMENT_API_KEY: &str = "sk_test_default";
/// The merchant the development key belongs to.
pub const DEVELOPMENT_MERCHANT: &str = "default";
/// How long a client may take to send a request body, by default: a body
/// trickled in slower than this holds a connection and a worker's buffer
/// for nothing (DESIGN §6).
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 10_000;

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
    /// Merchant keys; none: the development key is active (loopback only).
    pub api_keys: Vec<ApiKey>,
    /// Operator keys (DESIGN §6): provider draining, sandbox knobs and the
    /// other operator actions. None: the development key is the operator
    /// key while it is active, and nobody is otherwise.
    pub admin_keys: Vec<KeyDigest>,
    pub engine: EngineSettings,
    pub retry: RetryPolicy,
    pub reconciler: ReconcilerSettings,
    pub routing: RoutingSettings,
    pub providers: Vec<ProviderConfig>,
    pub sandbox: SandboxSettings,
    pub log: LogSettings,
    /// The anomaly rules (DESIGN §10).
    pub anomaly: AnomalySettings,
    /// The optional e-mail notifier (DESIGN §11); off by default.
    pub email: EmailSettings,
    /// Outgoing webhook endpoints (DESIGN §11).
    pub webhooks: Vec<WebhookEndpoint>,
    /// How webhook deliveries are retried.
    pub webhook_delivery: WebhookDeliverySettings,
    /// Event streams (`[events.nats]`).
    pub events: EventsSettings,
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub host: String,
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Longest a request body may take to arrive; slower is a 408.
    pub body_timeout_ms: u64,
    /// Requests per API key (DESIGN §6). When the section is absent, every
    /// configured key gets the defaults, and the development key (loopback
    /// only, no keys configured) is not limited: DESIGN's 10,000
    /// payments/s target is measured through it with the default
    /// configuration, ten times the default per-key rate.
    pub rate_limit: Option<RateLimitSettings>,
}

/// Knobs of the engine core.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSettings {
    /// Arbiter threads running payment actors; 0 means one per core.
    pub worker_threads: usize,
    /// A payment actor with no message for this long stops.
    pub payment_idle_timeout_ms: u64,
    /// How long an order lease lasts without renewal; a crashed instance's
    /// orders are free again after it.
    pub lease_ttl_ms: u64,
    /// Idempotency keys are kept at least this long.
    pub idempotency_retention_hours: u64,
    /// How long shutdown waits for in-flight payments.
    pub shutdown_grace_ms: u64,
    /// Names this process in leases, stable across its restarts; default:
    /// derived from the host name and the data directory.
    pub instance_id: Option<String>,
    /// Most orders with a live payment actor at once; beyond it new orders
    /// are shed with 503 + Retry-After rather than grow memory.
    pub max_payment_actors: usize,
    /// Most new payments in flight at once. A payment beyond it waits for
    /// room at most `admission_wait_ms`, then is shed with 503 +
    /// Retry-After: at saturation latency stays bounded instead of growing
    /// with the queue.
    pub max_in_flight_payments: usize,
    pub admission_wait_ms: u64,
    /// Test hook: the first payment for this order id panics inside its
    /// actor (to prove a panic is contained). Never set it in production.
    pub fault_panic_on_order: Option<String>,
}

/// The reconciler (DESIGN §9): the recovery pass over stuck `processing`
/// and `pending` payments, scheduled retries, key pruning.
///
/// Durations are in seconds, as the contract names them; fractions are
/// accepted (`interval_secs = 0.2`) so tests can run passes quickly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconcilerSettings {
    /// Time between passes (one also runs at startup).
    #[serde(rename = "interval_secs", with = "secs")]
    pub interval: Duration,
    /// How far back a timer run compares payments with their providers.
    #[serde(rename = "window_secs", with = "secs")]
    pub window: Duration,
    /// A `pending` payment is looked up once it has been pending this long.
    #[serde(rename = "pending_age_secs", with = "secs")]
    pub pending_age: Duration,
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
            interval: Duration::from_secs(60),
            window: Duration::from_secs(86_400),
            pending_age: Duration::from_secs(300),
            max_recovery_attempts: 5,
            batch_limit: 100,
            run_at_startup: true,
        }
    }
}

/// Durations written as (possibly fractional) seconds.
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// How payments are routed to providers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    pub strategy: Strategy,
}

/// The sandbox providers' shared settings: where they keep their record of
/// charges, and their webhooks.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Default: `{data_dir}/sandbox.db`. Engines sharing one database should
    /// share this file too, as they would share one real provider.
    pub database_path: Option<PathBuf>,
    /// How long after answering a `pm_card_async` charge `pending` a
    /// sandbox confirms it by webhook.
    pub async_confirm_ms: u64,
    /// The secret sandbox webhooks are signed and verified with (Stripe's
    /// scheme); default: the development secret `whsec_sandbox`.
    #[serde(skip_serializing)]
    pub webhook_secret: Option<String>,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        SandboxSettings {
            database_path: None,
            async_confirm_ms: crate::providers::sandbox::DEFAULT_ASYNC_CONFIRM_MS,
            webhook_secret: None,
        }
    }
}

impl std::fmt::Debug for SandboxSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxSettings")
            .field("database_path", &self.database_path)
            .field("async_confirm_ms", &self.async_confirm_ms)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[REDACTED]"),
            )
            .finish()
    }
}

/// Log output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `payments=debug`; `RUST_LOG` wins.
    pub level: String,
    /// An OpenTelemetry collector's OTLP/HTTP base URL (e.g.
    /// `http://127.0.0.1:4318`): the spans go to `{endpoint}/v1/traces` as
    /// JSON. Read by every build, so a file naming it parses anywhere;
    /// only a build with the cargo feature `otlp` accepts it (validation
    /// refuses it elsewhere rather than exporting nothing silently).
    pub otlp_endpoint: Option<String>,
    /// The exported spans' `service.name`.
    pub otlp_service_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig::default(),
            database_url: None,
            database_schema: "payments".into(),
            data_dir: PathBuf::from("data"),
            api_keys: Vec::new(),
            admin_keys: Vec::new(),
            engine: EngineSettings::default(),
            retry: RetryPolicy::default(),
            reconciler: ReconcilerSettings::default(),
            routing: RoutingSettings::default(),
            providers: vec![
                ProviderConfig::sandbox("sandbox_a"),
                ProviderConfig::sandbox("sandbox_b"),
                ProviderConfig::wallet("wallet"),
            ],
            sandbox: SandboxSettings::default(),
            log: LogSettings::default(),
            anomaly: AnomalySettings::default(),
            email: EmailSettings::default(),
            webhooks: Vec::new(),
            webhook_delivery: WebhookDeliverySettings::default(),
            events: EventsSettings::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            body_timeout_ms: DEFAULT_BODY_TIMEOUT_MS,
            rate_limit: None,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            worker_threads: 0,
            payment_idle_timeout_ms: 30_000,
            lease_ttl_ms: 60_000,
            idempotency_retention_hours: 24,
            shutdown_grace_ms: 10_000,
            instance_id: None,
            max_payment_actors: 100_000,
            max_in_flight_payments: 512,
            admission_wait_ms: 100,
            fault_panic_on_order: None,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: "text".into(),
            level: "info".into(),
            otlp_endpoint: None,
            otlp_service_name: "payments".into(),
        }
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
        if let Some(keys) = get("PAYMENTS_ADMIN_KEYS") {
            self.admin_keys = parse_admin_keys(&keys)?;
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.default_sqlite_path().display()))
    }

    /// The engine's SQLite file when no database is named (its directory
    /// is created at start).
    pub fn default_sqlite_path(&self) -> PathBuf {
        self.data_dir.join("payments.db")
    }

    /// The sandbox record file in effect.
    pub fn sandbox_database_path(&self) -> PathBuf {
        self.sandbox
            .database_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("sandbox.db"))
    }
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
        assert_eq!(names, ["sandbox_a", "sandbox_b", "wallet"]);
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
        assert_eq!(config.api_keys[1].key, KeyDigest::of("sk_globex_123456"));
    }

    #[test]
    fn a_lease_shorter_than_a_call_is_refused() {
        let mut config = Config::default();
        config.engine.lease_ttl_ms = 5_000;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("engine.lease_ttl_ms"), "{error}");
        config
            .providers
            .iter_mut()
            .for_each(|p| p.call_timeout_ms = 300);
        config.validate().unwrap();
    }

    #[test]
    fn retry_after_up_to_the_cap_counts_in_the_lease_check() {
        let mut config = Config::default();
        config
            .providers
            .iter_mut()
            .for_each(|p| p.call_timeout_ms = 1_000);
        config.engine.lease_ttl_ms = 10_000;
        config.validate().unwrap();
        // A fixed 10 ms backoff whose cap lets Retry-After ask for 20 s.
        config.retry.transient_not_charged.backoff = crate::resilience::BackoffKind::Fixed;
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
            .insert("usd".into(), crate::domain::Fee::default());
        config.providers[0]
            .fees
            .insert("*".into(), crate::domain::Fee::default());
        config.validate().unwrap();
        config.providers[0]
            .fees
            .insert("USD".into(), crate::domain::Fee::default());
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

    #[test]
    fn one_key_for_two_merchants_is_refused() {
        let mut config = Config {
            api_keys: parse_api_keys("acme:sk_shared_1234,globex:sk_shared_1234").unwrap(),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("api_keys"), "{error}");
        assert!(
            error.contains("acme") && error.contains("globex"),
            "{error}"
        );
        assert!(!error.contains("sk_shared_1234"), "{error}");
        config.api_keys = parse_api_keys("acme:sk_shared_1234,acme:sk_shared_1234").unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn keys_in_the_file_are_read_as_digests_and_checked() {
        let config: Config = toml::from_str(
            "admin_keys = [\"sk_admin_from_file\"]\n[[api_keys]]\nmerchant = \"m\"\nkey = \"sk_from_file\"\n",
        )
        .unwrap();
        assert_eq!(config.api_keys[0].key, KeyDigest::of("sk_from_file"));
        assert_eq!(config.admin_keys, [KeyDigest::of("sk_admin_from_file")]);
        assert!(!format!("{config:?}").contains("sk_from_file"));
        let short = toml::from_str::<Config>("[[api_keys]]\nmerchant = \"m\"\nkey = \"short\"\n");
        assert!(short.unwrap_err().to_string().contains("at least"));
        let spaced =
            toml::from_str::<Config>("[[api_keys]]\nmerchant = \"m\"\nkey = \"sk with space\"\n");
        assert!(spaced.is_err());
    }

    #[test]
    fn admin_keys_come_from_the_environment_too() {
        let mut config = Config::default();
        config
            .apply_env(|name| (name == "PAYMENTS_ADMIN_KEYS").then(|| "sk_ops_12345678".into()))
            .unwrap();
        assert_eq!(config.admin_keys, [KeyDigest::of("sk_ops_12345678")]);
    }

    #[test]
    fn a_mistyped_database_url_is_refused_with_its_password_masked() {
        let mut config = Config {
            database_url: Some("postgress://user:secret@host/db?password=other".into()),
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("database_url"), "{error}");
        assert!(error.contains("postgress://***@host/db"), "{error}");
        assert!(
            !error.contains("secret") && !error.contains("other"),
            "{error}"
        );
        config.database_url = Some("postgresql://user:secret@host/db".into());
        config.validate().unwrap();
    }

    #[test]
    fn toml_errors_mask_urls_they_quote() {
        let path = Path::new("payments.toml");
        let source = toml::from_str::<Config>("database_url = \"postgres://u:secret@h/db\" junk\n")
            .unwrap_err();
        let error = ConfigError::Parse {
            path: path.into(),
            source,
        }
        .to_string();
        assert!(
            error.contains("postgres://***@h/db"),
            "the line is quoted: {error}"
        );
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn sandbox_webhook_settings_are_read_checked_and_never_shown() {
        let config: Config = toml::from_str(
            "[sandbox]\nasync_confirm_ms = 50\nwebhook_secret = \"whsec_from_file\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.sandbox.async_confirm_ms, 50);
        assert_eq!(
            config.sandbox.webhook_secret.as_deref(),
            Some("whsec_from_file")
        );
        assert!(!format!("{config:?}").contains("whsec_from_file"));
        assert_eq!(
            Config::default().sandbox.async_confirm_ms,
            crate::providers::sandbox::DEFAULT_ASYNC_CONFIRM_MS
        );
        for toml in [
            "[sandbox]\nasync_confirm_ms = 3600001\n",
            "[sandbox]\nwebhook_secret = \"\"\n",
        ] {
            let config: Config = toml::from_str(toml).unwrap();
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("sandbox."), "{error}");
        }
    }

    #[test]
    fn the_body_timeout_is_bounded() {
        let mut config = Config::default();
        assert_eq!(config.server.body_timeout_ms, DEFAULT_BODY_TIMEOUT_MS);
        config.server.body_timeout_ms = 0;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("server.body_timeout_ms"), "{error}");
    }

    /// Every build parses the OTLP keys; their form is checked everywhere,
    /// and only a build with the exporter accepts a well-formed endpoint.
    #[test]
    fn otlp_keys_parse_everywhere_and_are_checked() {
        let config: Config = toml::from_str(
            "[log]\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_service_name = \"pay\"\n",
        )
        .unwrap();
        assert_eq!(config.log.otlp_service_name, "pay");
        assert_eq!(Config::default().log.otlp_service_name, "payments");
        let verdict = config.validate();
        if cfg!(feature = "otlp") {
            verdict.unwrap();
        } else {
            let error = verdict.unwrap_err().to_string();
            assert!(error.contains("log.otlp_endpoint"), "{error}");
            assert!(error.contains("--features otlp"), "{error}");
        }
        for (endpoint, service) in [
            ("127.0.0.1:4318", "payments"),
            ("grpc://127.0.0.1:4317", "payments"),
            ("http://127.0.0.1:4318?x=1", "payments"),
            ("not a url", "payments"),
        ] {
            let mut config = Config::default();
            config.log.otlp_endpoint = Some(endpoint.into());
            config.log.otlp_service_name = service.into();
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains("log.otlp_endpoint"), "{endpoint}: {error}");
            assert!(!error.contains("--features"), "{endpoint}: {error}");
        }
        let mut config = Config::default();
        config.log.otlp_service_name = " ".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("log.otlp_service_name"), "{error}");
    }
}
