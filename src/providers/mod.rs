//! Payment providers: the [`Provider`] trait and its adapters.
//!
//! An adapter speaks one provider's wire format and maps every answer to an
//! [`OutcomeClass`] in one place. Nothing outside an adapter looks at a
//! provider's codes to decide what to do; the engine acts on the class.
//! Inbound webhooks follow the same rule: an adapter verifies and reads its
//! provider's events and answers provider-neutral [`WebhookEvent`]s
//! ([`webhook`]); [`signature`] holds Stripe's signature scheme, which the
//! Stripe adapter and the sandbox share.

pub mod adyen;
pub mod classify;
pub mod sandbox;
pub mod signature;
pub mod stripe;
pub mod transport;
pub mod wallet;
pub mod webhook;

pub use webhook::{VerifiedWebhook, WebhookError, WebhookEvent, WebhookHeaders, WebhookKind};

use crate::domain::{Amount, Currency, MerchantId, OutcomeClass, PaymentId, Timestamp};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One charge, as the engine asks a provider for it.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    pub payment_id: PaymentId,
    pub attempt_number: u32,
    /// `{payment_id}-{attempt_number}`: the provider deduplicates on it.
    pub idempotency_key: String,
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub customer_id: String,
    pub amount: Amount,
    pub currency: Currency,
    pub payment_method: String,
    pub description: Option<String>,
}

/// A provider's answer to one call, already classified.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderResponse {
    pub class: OutcomeClass,
    pub provider_payment_id: Option<String>,
    /// The provider's reason code (`card_declined`, `rate_limited`...).
    pub code: Option<String>,
    pub message: Option<String>,
    /// The answer as the provider gave it, secrets masked.
    pub raw: String,
    /// The provider asked us to wait this long before retrying.
    pub retry_after_ms: Option<u64>,
}

impl ProviderResponse {
    /// An answer the engine made up because the provider gave none that
    /// counts (refused before the call, timed out).
    pub fn synthetic(class: OutcomeClass, code: &str, message: &str) -> Self {
        ProviderResponse {
            class,
            provider_payment_id: None,
            code: Some(code.to_string()),
            message: Some(message.to_string()),
            raw: serde_json::json!({ "engine": code, "message": message }).to_string(),
            retry_after_ms: None,
        }
    }
}

/// A refund of (part of) a captured charge.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The provider's id of the charge (`provider_payment_id`).
    pub provider_payment_id: String,
    pub amount: Amount,
    pub currency: Currency,
    /// Derived by the engine (`{refund_id}`); the provider deduplicates on it.
    pub idempotency_key: String,
    pub reason: Option<String>,
}

/// How a refund request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    /// The money is on its way back.
    Succeeded,
    /// Accepted; the outcome arrives later (Adyen confirms by webhook).
    Pending,
    /// Refused (e.g. already refunded, amount too large): nothing moved.
    Failed,
    /// No usable answer: retry with the same key or look it up.
    Unknown,
}

/// A provider's answer to a refund request.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundResponse {
    pub status: RefundStatus,
    pub provider_refund_id: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub raw: String,
}

/// One line of a provider's settlement report: what it says happened to a
/// charge, with its fee. The reconciler compares these with the engine.
///
/// What each field can be compared on depends on the provider: see the
/// adapter's module documentation (`stripe`, `sandbox`; `adyen` and
/// `wallet` have no lines to give).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettlementRecord {
    pub provider_payment_id: String,
    /// `charge` or `refund`.
    pub kind: String,
    /// Minor units; negative for refunds.
    pub amount: i64,
    pub currency: String,
    /// The provider's fee in minor units.
    pub fee: i64,
    /// The provider's own word for the line's state (the sandbox:
    /// `succeeded`, `refunded`, `partially_refunded`; Stripe: the balance
    /// transaction's `pending` or `available`).
    pub status: String,
    pub created_at: Timestamp,
    /// The engine's `{payment_id}-{attempt_number}` key the charge was
    /// made under, when the provider keeps it.
    pub idempotency_key: Option<String>,
    /// The merchant the charge was made for, when the provider keeps it.
    pub merchant_id: Option<String>,
    /// The merchant's order, when the provider keeps it.
    pub order_id: Option<String>,
    /// Minor units refunded of the charge so far, as the provider knows
    /// it when the page is read; 0 when it does not say (and on refund
    /// lines).
    pub amount_refunded: i64,
}

/// One page of a provider's settlement records: a call to
/// [`Provider::settlements`] reads one page from the provider, never the
/// whole window, so a reconciliation run stays in bounded memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SettlementPage {
    /// The records of this page, in the provider's order. A page may be
    /// empty and still have a `next` (its lines were all of kinds the
    /// engine does not reconcile, such as payouts).
    pub records: Vec<SettlementRecord>,
    /// The cursor of the next page, to pass back as `cursor`; `None`: this
    /// was the last page.
    pub next: Option<String>,
}

impl SettlementPage {
    /// A page with nothing on it and nothing after it.
    pub fn empty() -> Self {
        SettlementPage::default()
    }
}

/// What a provider knows about a charge looked up by idempotency key or by
/// the provider's own id of it.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupResult {
    /// The provider charged it.
    Charged {
        provider_payment_id: String,
        amount: i64,
        currency: String,
    },
    /// The provider has no charge under that key (or id): nothing was
    /// charged.
    NotFound,
}

/// Errors of the provider layer that are not charge outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unreachable: {0}")]
    Unreachable(String),
    /// The provider answered something we cannot read.
    #[error("unreadable provider answer: {0}")]
    Malformed(String),
    /// The provider refused our request (bad credentials, bad parameters).
    #[error("provider refused the request: {0}")]
    Refused(String),
    /// The provider is still processing a request under this key: ask again
    /// later. Not a failure of the look-up.
    #[error("still in progress at the provider: {0}")]
    InProgress(String),
    /// The provider offers no API for this (e.g. Adyen has no look-up by
    /// idempotency key; its outcomes arrive by webhook).
    #[error("not supported by this provider: {0}")]
    Unsupported(&'static str),
    #[error("provider record error: {0}")]
    Record(#[from] sqlx::Error),
}

/// A payment provider. Implementations never panic and never return an
/// unclassified failure from `charge`: every answer, transport errors
/// included, becomes a [`ProviderResponse`] with a class.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Charges once per `request.idempotency_key`.
    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse;

    /// What the provider did under `idempotency_key`.
    async fn lookup(&self, idempotency_key: &str) -> Result<LookupResult, ProviderError>;

    /// What the provider knows about the charge it named
    /// `provider_payment_id` (its answer's id): for a charge whose answer
    /// named it without a final outcome, or a settlement line the engine
    /// cannot place. A provider with no such look-up answers
    /// [`ProviderError::Unsupported`], which is the default.
    async fn lookup_reference(
        &self,
        _provider_payment_id: &str,
    ) -> Result<LookupResult, ProviderError> {
        Err(ProviderError::Unsupported(
            "this provider has no look-up by its own payment id",
        ))
    }

    /// Refunds once per `request.idempotency_key`.
    async fn refund(&self, request: &RefundRequest) -> RefundResponse;

    /// One page of the provider's settlement records created in
    /// `[from, to)`: the first page for `cursor: None`, then the page after
    /// the one whose [`SettlementPage::next`] was passed as `cursor`, until
    /// a page answers `next: None`. A cursor is opaque, and only good for
    /// the same window.
    async fn settlements(
        &self,
        from: Timestamp,
        to: Timestamp,
        cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError>;

    /// The events of one inbound webhook request, once its signature is
    /// verified against the provider's configured secret; `now` is the
    /// engine's clock, for the signature's timestamp tolerance.
    ///
    /// The signature is checked on the raw `body` before it is read as
    /// JSON. Any refusal refuses the whole request: the caller applies
    /// nothing of it. A provider that takes no webhooks answers
    /// [`WebhookError::Unsupported`], which is the default.
    /// The body the provider expects in a webhook's `200` answer, when it
    /// expects one (Adyen retries a notification not answered
    /// `[accepted]`); `None`: the engine's JSON receipt.
    fn webhook_acknowledgement(&self) -> Option<&'static str> {
        None
    }

    fn verify_webhook(
        &self,
        _headers: &WebhookHeaders,
        _body: &[u8],
        _now: Timestamp,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        Err(WebhookError::Unsupported(
            "this provider does not take webhooks",
        ))
    }
}
