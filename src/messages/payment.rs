//! Messages of the payment actor (`actors::payment`), one actor per order.

use crate::domain::{Amount, Currency, MerchantId, Payment};
use crate::error::EngineError;
use crate::store::IdempotencyRecord;
use actix::Message;
use serde::Serialize;
use std::collections::BTreeMap;

/// A payment actor's answer: the operation's result, or [`Retired`].
pub type Served<T> = Result<Result<T, EngineError>, Retired>;

/// The actor was leaving the registry when the message arrived and did
/// nothing; the registry sends the message again, to a fresh actor. Never
/// reaches a caller of the engine's handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired;

/// Stop: the registry's sweeper found the actor idle and removed it from the
/// registry, so no new message can reach it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Retire;

/// A validated request to charge an order (the body of `POST /v1/payments`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PaymentRequest {
    pub amount: Amount,
    pub currency: Currency,
    pub customer_id: String,
    pub order_id: String,
    pub payment_method: String,
    pub description: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// Pin one provider instead of routing.
    pub provider: Option<String>,
}

/// Create a payment for the actor's order and confirm it with a provider.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Served<CreatedPayment>")]
pub struct CreatePayment {
    pub merchant_id: MerchantId,
    pub idempotency_key: String,
    /// SHA-256 of the canonical request, compared on replays.
    pub fingerprint: String,
    pub request: PaymentRequest,
    /// The caller's span (the HTTP request's, with its trace id), so the
    /// payment's work, on the actor's thread, is traced as its child.
    pub span: tracing::Span,
}

/// The answer to [`CreatePayment`]: the payment and the exact response body
/// stored under the idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedPayment {
    pub payment: Payment,
    /// The response body, byte-identical on every replay.
    pub body: String,
    /// True when this is a replay of an earlier answer.
    pub replayed: bool,
}

impl CreatedPayment {
    /// The answer for a key used before: the stored answer if the same
    /// request finished, `IdempotencyKeyReused` for a different request,
    /// `IdempotencyKeyInUse` while the first is still running elsewhere.
    pub fn replay(
        record: IdempotencyRecord,
        merchant: &MerchantId,
        fingerprint: &str,
    ) -> Result<Self, EngineError> {
        if record.fingerprint != fingerprint {
            return Err(EngineError::IdempotencyKeyReused);
        }
        let Some(response) = record.response else {
            // Still running in another process (or left by a crash and not
            // yet recovered): the client may retry.
            return Err(EngineError::IdempotencyKeyInUse);
        };
        let mut payment: Payment = serde_json::from_str(&response.body)
            .map_err(|e| EngineError::Internal(format!("stored response unreadable: {e}")))?;
        payment.merchant_id = merchant.clone();
        Ok(CreatedPayment {
            payment,
            body: response.body,
            replayed: true,
        })
    }
}

/// Finish a payment left `processing` by a dead instance, or `pending`
/// after an unknown outcome, by looking it up at its provider.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Served<RecoveryOutcome>")]
pub struct RecoverPayment {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub payment_id: crate::domain::PaymentId,
}

/// What a [`RecoverPayment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryOutcome {
    /// Another live instance holds the order's lease: not ours to touch.
    Skipped,
    /// The payment had already come to rest.
    AlreadyResolved,
    /// The payment moved to a resting status.
    Resolved {
        from: crate::domain::PaymentStatus,
        to: crate::domain::PaymentStatus,
    },
    /// The provider could not say; the payment stays (or becomes) `pending`.
    Unresolved,
}

/// Make the next attempt of a `retry_scheduled` payment whose time has come.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Served<Option<crate::domain::PaymentStatus>>")]
pub struct RetryDue {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub payment_id: crate::domain::PaymentId,
}

/// A validated request to refund a payment (the body of
/// `POST /v1/payments/{id}/refunds`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefundRequest {
    /// `None`: all that remains to refund.
    pub amount: Option<crate::domain::Amount>,
    pub reason: Option<crate::domain::RefundReason>,
}

/// Refund (part of) a payment of the actor's order: the order's actor is
/// the serialization point for refunds too (DESIGN §2).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Served<CreatedRefund>")]
pub struct CreateRefund {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub payment_id: crate::domain::PaymentId,
    pub idempotency_key: String,
    /// SHA-256 of the canonical request, compared on replays.
    pub fingerprint: String,
    pub request: RefundRequest,
}

/// The answer to [`CreateRefund`]: the refund and the exact body stored
/// under the idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedRefund {
    pub refund: crate::domain::Refund,
    pub body: String,
    pub replayed: bool,
}

impl CreatedRefund {
    /// The answer for a key used before (see [`CreatedPayment::replay`]); a
    /// key that created a payment, or a refund of another payment, is a
    /// different request.
    pub fn replay(
        record: IdempotencyRecord,
        merchant: &MerchantId,
        fingerprint: &str,
    ) -> Result<Self, EngineError> {
        if record.fingerprint != fingerprint || record.refund_id.is_none() {
            return Err(EngineError::IdempotencyKeyReused);
        }
        let Some(response) = record.response else {
            return Err(EngineError::IdempotencyKeyInUse);
        };
        let mut refund: crate::domain::Refund = serde_json::from_str(&response.body)
            .map_err(|e| EngineError::Internal(format!("stored response unreadable: {e}")))?;
        refund.merchant_id = merchant.clone();
        Ok(CreatedRefund {
            refund,
            body: response.body,
            replayed: true,
        })
    }
}

/// Ask a pending refund's provider again, under the same key (the
/// reconciler's way to resolve a refund whose outcome is unknown).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Served<crate::domain::RefundState>")]
pub struct RecoverRefund {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub refund_id: crate::domain::RefundId,
}

/// A verified provider event about one of this order's payments (or one of
/// their refunds), to be applied under the order's serialization: a
/// webhook and a retry, a refund or a recovery of the same order never
/// interleave.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Served<crate::domain::WebhookResult>")]
pub struct ApplyWebhook {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub payment_id: crate::domain::PaymentId,
    /// The provider the webhook came in for (its URL path).
    pub provider: String,
    pub event: crate::providers::WebhookEvent,
}
