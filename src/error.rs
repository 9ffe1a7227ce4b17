//! The engine's error type: what the embedding API ([`crate::EngineHandle`])
//! can answer besides success. The HTTP layer maps it to status codes in one
//! place (`api::error`).

use crate::domain::PaymentId;
use crate::providers::ProviderError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request itself is wrong; `param` names the offending field.
    #[error("{message}")]
    InvalidParam { param: String, message: String },
    #[error("no such {resource}")]
    NotFound { resource: &'static str },
    /// Same idempotency key, different request.
    #[error("this idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    /// Same idempotency key while the first request is still running elsewhere.
    #[error("a request with this idempotency key is still in progress; retry later")]
    IdempotencyKeyInUse,
    /// The order already has a succeeded payment.
    #[error("order already paid by {payment_id}")]
    OrderAlreadyPaid { payment_id: PaymentId },
    /// The order has a payment being worked on (processing, pending, ...).
    #[error("order has a payment in progress: {payment_id}")]
    OrderPaymentInProgress { payment_id: PaymentId },
    /// The refunds of the payment would exceed what it captured.
    #[error("the refund exceeds what remains to refund ({available})")]
    AmountTooLarge { available: i64 },
    /// The payment cannot be refunded in its status.
    #[error("a {status} payment cannot be refunded")]
    NotRefundable {
        status: crate::domain::PaymentStatus,
    },
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The engine is at a bound (payment actors, queued work) and sheds
    /// this request rather than queue it without limit; retry shortly.
    #[error("the engine is at capacity ({what}); retry shortly")]
    Overloaded { what: &'static str },
    /// The discrepancy was resolved already (a resolution is not replaced).
    #[error("the discrepancy is already resolved")]
    AlreadyResolved,
    /// Another instance holds the order's lease (it is working on the
    /// payment now): what was asked cannot be applied yet; retry shortly.
    #[error("the order is being worked on elsewhere; retry shortly")]
    OrderBusy,
    /// An inbound webhook was refused before anything was read from it.
    #[error(transparent)]
    Webhook(#[from] crate::providers::WebhookError),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A status change the transition table refuses: a bug, never input.
    #[error(transparent)]
    IllegalTransition(#[from] crate::domain::TransitionError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl EngineError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        EngineError::InvalidParam {
            param: param.to_string(),
            message: message.into(),
        }
    }
}
