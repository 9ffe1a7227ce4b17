//! Messages of the provider actor (`actors::provider`).

use crate::domain::Timestamp;
use crate::providers::{
    ChargeRequest, LookupResult, ProviderError, ProviderResponse, RefundRequest, RefundResponse,
    SettlementPage, VerifiedWebhook, WebhookError, WebhookHeaders,
};
use crate::resilience::{CircuitChange, CircuitState};
use actix::Message;
use serde::Serialize;

/// Charge through this provider. Admission is decided synchronously; the
/// call itself runs outside the actor's mailbox.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<ChargeReply, CallRejected>")]
pub struct Charge(pub ChargeRequest);

/// The provider's answer, and the breaker change it caused (if any), so the
/// payment's audit trail can show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeReply {
    pub response: ProviderResponse,
    pub circuit_change: Option<CircuitChange>,
}

/// Force the circuit open (drain the provider) or release it.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct ForceOpen(pub bool);

/// Ask the provider what happened to an attempt: by the provider's own
/// reference when an answer gave one (a direct read, e.g. Stripe's
/// PaymentIntent), else, or where the provider cannot, by the provider
/// idempotency key (e.g. Stripe's search, which may lag).
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<LookupResult, ProviderError>")]
pub struct Lookup {
    pub idempotency_key: String,
    pub provider_payment_id: Option<String>,
}

/// Refund through this provider, under the refund's own idempotency key.
/// Like a look-up, it runs outside the mailbox with the call timeout; a
/// refund that gets no answer in time is `unknown`, to be asked again under
/// the same key.
#[derive(Debug, Clone, Message)]
#[rtype(result = "RefundResponse")]
pub struct Refund(pub RefundRequest);

/// Read one page of the provider's settlement records created in
/// `[from, to)` (see `Provider::settlements`): the first page for `cursor:
/// None`, then the page after the one whose `next` is passed.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<SettlementPage, ProviderError>")]
pub struct Settlements {
    pub from: Timestamp,
    pub to: Timestamp,
    pub cursor: Option<String>,
}

/// Verify and read one inbound webhook request (see
/// `Provider::verify_webhook`). Answered synchronously: it is HMAC work on
/// a body of at most the API's size limit, with no I/O.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<VerifiedWebhook, WebhookError>")]
pub struct VerifyWebhook {
    pub headers: WebhookHeaders,
    pub body: Vec<u8>,
}

/// Enable or disable the provider (drain it without a deploy).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct SetEnabled(pub bool);

/// Read the provider's health and statistics.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "ProviderSnapshot")]
pub struct GetSnapshot;

/// Why a call was refused before reaching the provider. Nothing was
/// charged, so the payment may safely try elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallRejected {
    #[error("provider disabled")]
    Disabled,
    #[error("too many calls in flight")]
    BulkheadFull,
    #[error("circuit {}", .0.as_str())]
    CircuitOpen(CircuitState),
}

impl CallRejected {
    pub fn code(self) -> &'static str {
        match self {
            CallRejected::Disabled => "provider_disabled",
            CallRejected::BulkheadFull => "bulkhead_full",
            CallRejected::CircuitOpen(_) => "circuit_open",
        }
    }
}

/// A provider's state as the provider actor sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProviderSnapshot {
    pub name: String,
    pub enabled: bool,
    pub circuit_state: CircuitState,
    /// Breaker state changes since start.
    pub circuit_transitions: u64,
    /// Percent of failed / slow calls in the breaker's window.
    pub window_failure_rate: f64,
    pub window_slow_call_rate: f64,
    pub in_flight: u32,
    pub max_in_flight: u32,
    pub calls: u64,
    pub succeeded: u64,
    pub declined: u64,
    pub failed: u64,
    pub rejected: u64,
    /// Share of completed calls that were provider failures (transient,
    /// unknown); declines are the customer's, not the provider's.
    pub failure_rate: f64,
    /// Share of the last calls that succeeded (routing's `success_rate`).
    pub success_rate: f64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}
