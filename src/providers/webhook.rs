//! Inbound provider webhooks, in the engine's terms (DESIGN §6, §7).
//!
//! `POST /v1/webhooks/{provider}` hands the request's headers and raw body to
//! the provider's [`Provider::verify_webhook`], which checks the signature
//! first and only then reads the body, and answers provider-neutral
//! [`WebhookEvent`]s. Nothing past the adapter reads a provider's event
//! types or codes: the engine acts on a [`WebhookKind`], as it acts on an
//! [`OutcomeClass`] for a charge answer.
//!
//! An event carries whatever the provider echoes of the engine's own ids, so
//! the engine can find the payment (and through it the order's actor)
//! without trusting anything unsigned:
//!
//! | field | what it is | who fills it |
//! |---|---|---|
//! | `provider_payment_id` | the provider's id of the charge, as recorded on the attempt | every adapter |
//! | `payment_id` | the engine's payment id | Stripe (metadata), Adyen (`merchantReference` of an `AUTHORISATION`), sandbox |
//! | `idempotency_key` | the engine's key of the request the event concludes | Stripe (metadata), Adyen (refund key of a `REFUND`), sandbox |
//! | `merchant_id`, `order_id` | the order the payment belongs to | Stripe (metadata), sandbox |
//!
//! [`Provider::verify_webhook`]: super::Provider::verify_webhook

use crate::domain::{OutcomeClass, Timestamp};
use std::collections::BTreeMap;
use std::fmt;

/// Headers whose values [`WebhookHeaders`]' `Debug` masks: a provider may
/// authenticate webhooks with basic auth on top of the signature.
const MASKED_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];
/// What replaces a masked header's value in `Debug`.
const MASKED_VALUE: &str = "[REDACTED]";

/// The headers of one webhook request: lowercase name → value.
///
/// Owned and small, so the provider layer needs no HTTP framework: the API
/// layer copies the headers it received (at least the signature header)
/// into one. Names are stored in lowercase and looked up in any case.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WebhookHeaders {
    values: BTreeMap<String, String>,
}

impl WebhookHeaders {
    pub fn new() -> Self {
        WebhookHeaders::default()
    }

    /// Adds `name: value`. A header that repeats is joined with `, `, as
    /// HTTP allows for list-valued headers (RFC 9110 §5.3).
    pub fn insert(&mut self, name: &str, value: impl Into<String>) -> &mut Self {
        let value = value.into();
        self.values
            .entry(name.to_ascii_lowercase())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
        self
    }

    /// The value of `name`, in any letter case.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Every header, by lowercase name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl<N: AsRef<str>, V: Into<String>> FromIterator<(N, V)> for WebhookHeaders {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(pairs: I) -> Self {
        let mut headers = WebhookHeaders::new();
        for (name, value) in pairs {
            headers.insert(name.as_ref(), value);
        }
        headers
    }
}

impl fmt::Debug for WebhookHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(name, value)| {
                let shown = if MASKED_HEADERS.contains(&name) {
                    MASKED_VALUE
                } else {
                    value
                };
                (name, shown)
            }))
            .finish()
    }
}

/// What a verified webhook says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookKind {
    /// The charge succeeded (an asynchronous confirmation, or a repeat of
    /// what the charge's answer already said).
    ChargeSucceeded,
    /// The charge failed; nothing was charged. `class` is the adapter's
    /// reading of the provider's reason (hard or soft decline, transient),
    /// from the same code tables as a charge answer.
    ChargeFailed {
        class: OutcomeClass,
        code: Option<String>,
        message: Option<String>,
    },
    /// The charge has been refunded, fully or partly: `amount_refunded` is
    /// the total refunded so far, in minor units, not this refund's amount.
    ChargeRefunded { amount_refunded: i64 },
    /// One refund succeeded. `amount` in minor units.
    RefundSucceeded {
        provider_refund_id: String,
        amount: i64,
    },
    /// One refund failed: the money did not go back (or came back to the
    /// merchant after a refund first reported as succeeded).
    RefundFailed {
        provider_refund_id: String,
        amount: Option<i64>,
        code: Option<String>,
    },
    /// An event the engine does not act on: the provider's event type (and,
    /// where it helps, why it is not acted on). Recorded without effect.
    Other(String),
}

impl WebhookKind {
    /// The engine's name for what the event reports (receipts, audit).
    pub fn name(&self) -> &str {
        match self {
            WebhookKind::ChargeSucceeded => "charge_succeeded",
            WebhookKind::ChargeFailed { .. } => "charge_failed",
            WebhookKind::ChargeRefunded { .. } => "charge_refunded",
            WebhookKind::RefundSucceeded { .. } => "refund_succeeded",
            WebhookKind::RefundFailed { .. } => "refund_failed",
            WebhookKind::Other(name) => name,
        }
    }
}

/// One verified provider event, in the engine's terms (see the module's
/// table for which ids each provider fills).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEvent {
    /// The provider's id of the event: the same event delivered twice has
    /// the same id (Adyen, which has no event id, gets a stable one from
    /// `pspReference`, `eventCode` and `success`).
    pub id: String,
    pub kind: WebhookKind,
    /// The provider's id of the charge the event is about.
    pub provider_payment_id: Option<String>,
    /// The engine's payment id, when the provider echoes it.
    pub payment_id: Option<String>,
    /// The engine's idempotency key of the request the event concludes
    /// (`{payment_id}-{attempt}` for a charge, the refund's key for a
    /// refund), when the provider echoes it.
    pub idempotency_key: Option<String>,
    /// The merchant and order of the payment, when the provider echoes them.
    pub merchant_id: Option<String>,
    pub order_id: Option<String>,
    /// The amount the event is about, in the engine's minor units.
    pub amount: Option<i64>,
    /// Lowercase ISO 4217 code.
    pub currency: Option<String>,
    /// When the provider created the event.
    pub created: Timestamp,
    /// The event (or the notification item) as the provider sent it,
    /// secret fields redacted.
    pub raw: serde_json::Value,
}

/// A verified webhook request: its events, and the body the provider
/// expects in the `200` answer, if it expects one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedWebhook {
    pub events: Vec<WebhookEvent>,
    pub acknowledgement: Option<&'static str>,
}

/// Why a webhook was refused. Every refusal leaves the engine unchanged;
/// the API answers `400` (`404` for [`WebhookError::Unsupported`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// The signature is missing, unreadable, or matches no configured
    /// secret: the request may not come from the provider.
    #[error("webhook signature refused: {0}")]
    BadSignature(&'static str),
    /// Authentic, but signed too long ago (or too far in the future): a
    /// replay, or a clock badly off.
    #[error(
        "webhook signed {skew_secs} s away from now, outside the {tolerance_secs} s tolerance"
    )]
    Stale { skew_secs: u64, tolerance_secs: u64 },
    /// The body, although correctly signed (or before a signature could be
    /// found in it), is not what the provider documents.
    #[error("malformed webhook: {0}")]
    Malformed(String),
    /// This provider does not take webhooks, or none is configured for it.
    #[error("webhooks are not supported: {0}")]
    Unsupported(&'static str),
}

/// `seconds` since the Unix epoch as a [`Timestamp`], if representable.
pub(crate) fn timestamp_from_unix_secs(seconds: i64) -> Option<Timestamp> {
    seconds
        .checked_mul(1_000_000)
        .and_then(Timestamp::from_micros)
}

/// `at` in whole seconds since the Unix epoch.
pub(crate) fn unix_secs(at: Timestamp) -> i64 {
    at.as_datetime().timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_case_insensitive_and_repeats_join() {
        let mut headers: WebhookHeaders = [("Stripe-Signature", "t=1,v1=aa")].into_iter().collect();
        headers.insert("STRIPE-SIGNATURE", "v1=bb");
        assert_eq!(headers.get("stripe-signature"), Some("t=1,v1=aa, v1=bb"));
        assert_eq!(headers.get("Stripe-Signature"), Some("t=1,v1=aa, v1=bb"));
        assert_eq!(headers.get("content-type"), None);
        assert_eq!(headers.iter().count(), 1);
    }

    #[test]
    fn credentials_are_masked_in_debug() {
        let headers: WebhookHeaders = [
            ("Authorization", "Basic dXNlcjpzZWNyZXQ="),
            ("Content-Type", "application/json"),
        ]
        .into_iter()
        .collect();
        let debug = format!("{headers:?}");
        assert!(!debug.contains("dXNlcjpzZWNyZXQ="), "{debug}");
        assert!(debug.contains("application/json"), "{debug}");
    }

    #[test]
    fn errors_say_what_went_wrong() {
        let stale = WebhookError::Stale {
            skew_secs: 420,
            tolerance_secs: 300,
        };
        assert_eq!(
            stale.to_string(),
            "webhook signed 420 s away from now, outside the 300 s tolerance"
        );
        assert!(WebhookError::BadSignature("no signature matches")
            .to_string()
            .contains("no signature matches"));
    }

    #[test]
    fn unix_seconds_round_trip() {
        let at = timestamp_from_unix_secs(1_700_000_000).expect("representable");
        assert_eq!(unix_secs(at), 1_700_000_000);
        assert_eq!(timestamp_from_unix_secs(i64::MAX), None);
    }
}
