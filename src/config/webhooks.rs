//! Outgoing webhooks and the event stream (DESIGN §11): `[[webhooks]]`
//! endpoints, `[webhook_delivery]` (the retry schedule) and
//! `[events.nats]`.

use super::providers::Secret;
use super::validate::{invalid, ConfigError};
use crate::domain::{MerchantId, OutgoingEventType};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Default tries of one delivery: with the default base of a minute,
/// doubling to at most [`MAX_BACKOFF_SECS`], the sixteenth and last try is
/// about three days after the first (DESIGN §11).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 16;
/// Default first wait between tries.
pub const DEFAULT_BACKOFF_BASE_SECS: f64 = 60.0;
/// The longest wait between two tries.
pub const MAX_BACKOFF_SECS: u64 = 12 * 3_600;
/// Most tries that may be configured.
const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Longest `timeout_ms` of one try.
const MAX_DELIVERY_TIMEOUT_MS: u64 = 60_000;
/// Longest `poll_interval_ms`.
const MAX_POLL_INTERVAL_MS: u64 = 60_000;

/// One `[[webhooks]]` endpoint: where a merchant's events are POSTed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    pub url: String,
    /// Signs each delivery (`Payments-Signature`); never shown.
    pub secret: Secret,
    /// Event types sent; absent: every type.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Whose events; default `default` (the development merchant).
    #[serde(default = "default_merchant")]
    pub merchant: String,
}

fn default_merchant() -> String {
    super::DEVELOPMENT_MERCHANT.to_string()
}

impl WebhookEndpoint {
    /// A stable id (`we_` and 16 hex digits of a digest of merchant and
    /// URL): the same on every instance and across restarts, so delivery
    /// rows name their endpoint without storing the configuration.
    pub fn id(&self) -> String {
        let digest = Sha256::new()
            .chain_update(self.merchant.as_bytes())
            .chain_update([0u8])
            .chain_update(self.url.as_bytes())
            .finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("we_{hex}")
    }

    pub fn merchant_id(&self) -> MerchantId {
        MerchantId::new(&self.merchant)
    }

    /// The filter as types; `None`: every type. Validated at load.
    pub fn event_types(&self) -> Option<Vec<OutgoingEventType>> {
        self.events
            .as_ref()
            .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect())
    }

    fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let name = |field: &str| format!("webhooks[{index}].{field}");
        let parsed = reqwest::Url::parse(&self.url)
            .map_err(|e| invalid(&name("url"), format!("{:?} is not a URL: {e}", self.url)))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(&name("url"), "must be an http:// or https:// URL"));
        }
        if self.secret.expose().trim().is_empty() {
            return Err(invalid(&name("secret"), "must not be empty"));
        }
        if self.merchant.trim().is_empty() {
            return Err(invalid(&name("merchant"), "must not be empty"));
        }
        for event in self.events.iter().flatten() {
            if event.parse::<OutgoingEventType>().is_err() {
                return Err(invalid(
                    &name("events"),
                    format!("unknown event type {event:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// `[webhook_delivery]`: how deliveries are retried and paced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookDeliverySettings {
    /// Tries of one delivery before it is dead-lettered.
    pub max_attempts: u32,
    /// The first wait; each later one doubles, up to [`MAX_BACKOFF_SECS`],
    /// with ±10 % jitter. Fractions are accepted (tests).
    #[serde(rename = "backoff_base_secs", with = "super::secs")]
    pub backoff_base: Duration,
    /// Longest one try may take.
    pub timeout_ms: u64,
    /// How often due deliveries are looked for.
    pub poll_interval_ms: u64,
}

impl Default for WebhookDeliverySettings {
    fn default() -> Self {
        WebhookDeliverySettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: Duration::from_secs_f64(DEFAULT_BACKOFF_BASE_SECS),
            timeout_ms: 10_000,
            poll_interval_ms: 1_000,
        }
    }
}

/// `[events]`: optional streams the outbox also feeds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// `[events.nats]`: publish every event to a JetStream stream (cargo
    /// feature `nats`).
    pub nats: Option<NatsSettings>,
}

/// `[events.nats]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSettings {
    /// e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream, created if missing, on subjects
    /// `{subject_prefix}.>`.
    pub stream: String,
    /// Each event goes to `{subject_prefix}.{type}`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
}

fn default_subject_prefix() -> String {
    "payments.events".to_string()
}

/// Validates the three sections.
pub(super) fn validate(
    endpoints: &[WebhookEndpoint],
    delivery: &WebhookDeliverySettings,
    events: &EventsSettings,
) -> Result<(), ConfigError> {
    for (index, endpoint) in endpoints.iter().enumerate() {
        endpoint.validate(index)?;
        if endpoints[..index].iter().any(|e| e.id() == endpoint.id()) {
            return Err(invalid(
                &format!("webhooks[{index}].url"),
                "this merchant has this URL configured twice",
            ));
        }
    }
    if !(1..=MAX_ATTEMPTS_LIMIT).contains(&delivery.max_attempts) {
        return Err(invalid(
            "webhook_delivery.max_attempts",
            format!("must be 1 to {MAX_ATTEMPTS_LIMIT}"),
        ));
    }
    if delivery.backoff_base.is_zero() || delivery.backoff_base.as_secs() > MAX_BACKOFF_SECS {
        return Err(invalid(
            "webhook_delivery.backoff_base_secs",
            format!("must be above 0 and at most {MAX_BACKOFF_SECS}"),
        ));
    }
    if !(1..=MAX_DELIVERY_TIMEOUT_MS).contains(&delivery.timeout_ms) {
        return Err(invalid(
            "webhook_delivery.timeout_ms",
            format!("must be 1 to {MAX_DELIVERY_TIMEOUT_MS}"),
        ));
    }
    if !(1..=MAX_POLL_INTERVAL_MS).contains(&delivery.poll_interval_ms) {
        return Err(invalid(
            "webhook_delivery.poll_interval_ms",
            format!("must be 1 to {MAX_POLL_INTERVAL_MS}"),
        ));
    }
    if let Some(nats) = &events.nats {
        validate_nats(nats)?;
    }
    Ok(())
}

fn validate_nats(nats: &NatsSettings) -> Result<(), ConfigError> {
    if !cfg!(feature = "nats") {
        return Err(invalid(
            "events.nats",
            "this build has no NATS support; rebuild with `cargo build --features nats` or remove [events.nats]",
        ));
    }
    if !nats.url.starts_with("nats://") && !nats.url.starts_with("tls://") {
        return Err(invalid(
            "events.nats.url",
            "must be a nats:// or tls:// URL",
        ));
    }
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !token(&nats.stream) {
        return Err(invalid(
            "events.nats.stream",
            "use letters, digits, _ and -",
        ));
    }
    if !nats.subject_prefix.split('.').all(token) {
        return Err(invalid(
            "events.nats.subject_prefix",
            "use dot-separated tokens of letters, digits, _ and -",
        ));
    }
    Ok(())
}
