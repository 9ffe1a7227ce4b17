//! Refunds: money a succeeded payment gives back, in whole or in part.
//!
//! A refund is resolved like a charge: the provider's answer is classified,
//! and one whose outcome is unknown stays `pending` until a same-key retry
//! or a webhook says what happened; it is never sent twice under different
//! keys (its provider idempotency key is its own id).

use super::{Amount, Currency, MerchantId, PaymentId, RefundId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a refund stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    /// Asked for; the provider has not said (or said "later") yet. Its
    /// amount stays reserved against the payment meanwhile.
    Pending,
    Succeeded,
    Failed,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Pending => "pending",
            RefundState::Succeeded => "succeeded",
            RefundState::Failed => "failed",
        }
    }
}

impl FromStr for RefundState {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        [
            RefundState::Pending,
            RefundState::Succeeded,
            RefundState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or(())
    }
}

impl fmt::Display for RefundState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a merchant refunds (DESIGN §6): Stripe's three reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

impl RefundReason {
    pub const ALL: [RefundReason; 3] = [
        RefundReason::Duplicate,
        RefundReason::Fraudulent,
        RefundReason::RequestedByCustomer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Duplicate => "duplicate",
            RefundReason::Fraudulent => "fraudulent",
            RefundReason::RequestedByCustomer => "requested_by_customer",
        }
    }
}

impl FromStr for RefundReason {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        RefundReason::ALL
            .into_iter()
            .find(|reason| reason.as_str() == text)
            .ok_or(())
    }
}

/// Serializes as the constant `"refund"`: the `object` field of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RefundObject;

impl Serialize for RefundObject {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("refund")
    }
}

impl<'de> Deserialize<'de> for RefundObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let _ = String::deserialize(deserializer)?;
        Ok(RefundObject)
    }
}

/// One refund of (part of) a payment, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub id: RefundId,
    pub object: RefundObject,
    pub payment_id: PaymentId,
    #[serde(skip_serializing, default = "MerchantId::unknown")]
    pub merchant_id: MerchantId,
    pub amount: Amount,
    pub currency: Currency,
    pub reason: Option<RefundReason>,
    pub status: RefundState,
    pub failure_code: Option<String>,
    /// The provider that refunds (the payment's).
    pub provider: String,
    /// The provider's id for the refund, once it gave one.
    pub provider_refund_id: Option<String>,
    /// The provider's last answer, secrets masked; not shown in the API.
    #[serde(skip)]
    pub raw_response: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Refund {
    /// The key the provider deduplicates the refund on (DESIGN §6): its own
    /// id, the same for every retry.
    pub fn provider_idempotency_key(&self) -> String {
        self.id.to_string()
    }
}
