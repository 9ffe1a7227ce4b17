//! Payments, attempts and audit events: the records the engine keeps.

use super::{Amount, AttemptId, Currency, EventId, PaymentId, PaymentStatus, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// The `payment_method` that pays from the customer's stored-value wallet
/// (DESIGN §7): such a payment goes to a wallet provider, and only there.
pub const WALLET_PAYMENT_METHOD: &str = "wallet";

/// The merchant that owns a resource. Every query is scoped by it, which is
/// what makes a foreign id indistinguishable from a missing one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MerchantId(String);

impl MerchantId {
    pub fn new(id: impl Into<String>) -> Self {
        MerchantId(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MerchantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A merchant's order: the unit the engine serializes on (one payment actor
/// per key) and the unit of the "charged at most once" promise.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderKey {
    pub merchant_id: MerchantId,
    pub order_id: String,
}

/// How a provider's answer to one call is classified (DESIGN §4). The class,
/// not the provider's code, decides what the engine does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeClass {
    /// Authorized and captured.
    Succeeded,
    /// Declined for good: never retried.
    HardDecline,
    /// Declined for now: a later attempt may succeed.
    SoftDecline,
    /// Refused before anything was charged: safe to retry or fail over.
    TransientNotCharged,
    /// The provider may have charged: retry the same key or look it up.
    Unknown,
    /// The provider rejected the request itself: our bug or our config.
    Invalid,
}

impl OutcomeClass {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeClass::Succeeded => "succeeded",
            OutcomeClass::HardDecline => "hard_decline",
            OutcomeClass::SoftDecline => "soft_decline",
            OutcomeClass::TransientNotCharged => "transient_not_charged",
            OutcomeClass::Unknown => "unknown",
            OutcomeClass::Invalid => "invalid",
        }
    }

    /// Whether this answer to a same-key retry says what the first call
    /// (whose answer was unknown) did: only a success or a decline does. A
    /// refusal or an "invalid request" is about the retry, not the charge.
    pub fn settles_an_unknown(self) -> bool {
        matches!(
            self,
            OutcomeClass::Succeeded | OutcomeClass::HardDecline | OutcomeClass::SoftDecline
        )
    }
}

/// Where one attempt stands: still running, or classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Written before the provider is called, so a crash leaves evidence.
    Processing,
    Completed(OutcomeClass),
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Processing => "processing",
            AttemptOutcome::Completed(class) => class.as_str(),
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        use OutcomeClass::*;
        if text == "processing" {
            return Some(AttemptOutcome::Processing);
        }
        [
            Succeeded,
            HardDecline,
            SoftDecline,
            TransientNotCharged,
            Unknown,
            Invalid,
        ]
        .into_iter()
        .find(|class| class.as_str() == text)
        .map(AttemptOutcome::Completed)
    }
}

impl Serialize for AttemptOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttemptOutcome {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        AttemptOutcome::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("unknown attempt outcome"))
    }
}

/// One call to one provider, and its retries with the same provider
/// idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: AttemptId,
    /// 1-based; part of the provider idempotency key.
    pub number: u32,
    pub provider: String,
    pub outcome: AttemptOutcome,
    /// The provider's (or engine's) reason code, e.g. `card_declined`.
    pub code: Option<String>,
    pub latency_ms: Option<i64>,
    /// Whatever the provider told us its reference is, on every attempt
    /// (DESIGN §6): what a person reviewing the payment looks up.
    pub provider_payment_id: Option<String>,
    /// The provider's raw answer, secrets masked; kept for disputes and
    /// reconciliation, not shown in the API object.
    #[serde(skip)]
    pub raw_response: Option<String>,
    pub created_at: Timestamp,
    #[serde(skip)]
    pub updated_at: Option<Timestamp>,
}

impl Attempt {
    /// The key the provider deduplicates on (DESIGN §4): derived, never the
    /// client's, and the same for every retry of this attempt.
    pub fn provider_idempotency_key(payment_id: PaymentId, number: u32) -> String {
        format!("{payment_id}-{number}")
    }
}

/// Serializes as the constant `"payment"`: the `object` field of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PaymentObject;

impl Serialize for PaymentObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("payment")
    }
}

impl<'de> Deserialize<'de> for PaymentObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = String::deserialize(deserializer)?;
        Ok(PaymentObject)
    }
}

/// One merchant request to charge an order, with its attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: PaymentId,
    pub object: PaymentObject,
    #[serde(skip_serializing, default = "MerchantId::unknown")]
    pub merchant_id: MerchantId,
    pub status: PaymentStatus,
    pub amount: Amount,
    pub amount_refunded: i64,
    /// What pending refunds hold: reserved against the amount, so the
    /// refunds of a payment can never add up to more than it.
    #[serde(skip)]
    pub amount_refund_pending: i64,
    pub currency: Currency,
    pub customer_id: String,
    pub order_id: String,
    pub payment_method: String,
    pub description: Option<String>,
    /// The provider of the latest attempt (or the pinned one before any).
    pub provider: Option<String>,
    pub provider_payment_id: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub next_attempt_at: Option<Timestamp>,
    pub attempts: Vec<Attempt>,
    pub anomaly_flags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    /// Look-ups made by recovery without a definite answer; past the
    /// configured limit the payment goes to `needs_review`.
    #[serde(skip)]
    pub recovery_attempts: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl MerchantId {
    /// Placeholder for a record read back from a stored answer, which does
    /// not carry its merchant (the reader sets it).
    pub(crate) fn unknown() -> Self {
        MerchantId(String::new())
    }
}

/// One entry of a payment's audit trail. Appended, never changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentEvent {
    pub id: EventId,
    pub payment_id: PaymentId,
    /// e.g. `payment.created`, `payment.status_changed`, `attempt.started`.
    #[serde(rename = "type")]
    pub kind: String,
    pub from_status: Option<PaymentStatus>,
    pub to_status: Option<PaymentStatus>,
    pub attempt_id: Option<AttemptId>,
    pub data: serde_json::Value,
    pub created_at: Timestamp,
}

impl PaymentEvent {
    pub fn new(payment_id: PaymentId, kind: &str, at: Timestamp, data: serde_json::Value) -> Self {
        PaymentEvent {
            id: EventId::new(),
            payment_id,
            kind: kind.to_string(),
            from_status: None,
            to_status: None,
            attempt_id: None,
            data,
            created_at: at,
        }
    }

    /// The audit entry for a status change; `from` is `None` on creation.
    pub fn status_change(
        payment_id: PaymentId,
        from: Option<PaymentStatus>,
        to: PaymentStatus,
        at: Timestamp,
        data: serde_json::Value,
    ) -> Self {
        let kind = if from.is_none() {
            "payment.created"
        } else {
            "payment.status_changed"
        };
        PaymentEvent {
            from_status: from,
            to_status: Some(to),
            ..PaymentEvent::new(payment_id, kind, at, data)
        }
    }
}
