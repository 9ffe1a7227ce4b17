//! Payment providers: the [`Provider`] trait and its adapters.
//!
//! An adapter speaks one provider's wire format and maps every answer to an
//! [`OutcomeClass`] in one place. Nothing outside an adapter looks at a
//! provider's codes to decide what to do; the engine acts on the class.

pub mod sandbox;

use crate::domain::{Amount, Currency, MerchantId, OutcomeClass, PaymentId};
use async_trait::async_trait;

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

/// What a provider knows about a charge looked up by idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupResult {
    /// The provider charged it.
    Charged {
        provider_payment_id: String,
        amount: i64,
        currency: String,
    },
    /// The provider has no charge under that key: nothing was charged.
    NotFound,
}

/// Errors of the provider layer that are not charge outcomes.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("provider unreachable: {0}")]
    Unreachable(String),
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
}
