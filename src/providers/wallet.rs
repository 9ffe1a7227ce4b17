//! The wallet: the engine's own stored-value provider (DESIGN §7).
//!
//! It pays from a customer's balance in the engine's ledger, so there is
//! nothing to call: the charge *is* the debit of `customer_wallet:{m}/{c}`,
//! written by the payment actor in the same transaction as the payment's
//! success, as one conditional statement that refuses to go below zero
//! (too little balance is the hard decline `insufficient_balance`). This
//! adapter therefore answers every charge and refund at once; whether the
//! money really moved is decided, atomically, by that write.

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementPage,
};
use crate::domain::{OutcomeClass, Timestamp};
use async_trait::async_trait;

/// The decline a payment gets when the wallet cannot cover it.
pub const INSUFFICIENT_BALANCE: &str = "insufficient_balance";

/// The stored-value provider.
#[derive(Debug)]
pub struct WalletProvider {
    name: String,
}

impl WalletProvider {
    pub fn new(name: impl Into<String>) -> Self {
        WalletProvider { name: name.into() }
    }
}

#[async_trait]
impl Provider for WalletProvider {
    fn name(&self) -> &str {
        &self.name
    }

    /// Accepted at once; the ledger write that follows decides.
    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        ProviderResponse {
            class: OutcomeClass::Succeeded,
            provider_payment_id: Some(format!("wlt_{}", request.payment_id)),
            code: None,
            message: None,
            raw: serde_json::json!({ "wallet": "debit written with the payment" }).to_string(),
            retry_after_ms: None,
        }
    }

    /// Nothing to ask: whether a wallet payment was charged is whether the
    /// ledger holds its posting, which the engine reads itself.
    async fn lookup(&self, _idempotency_key: &str) -> Result<LookupResult, ProviderError> {
        Err(ProviderError::Unsupported(
            "a wallet payment is looked up in the ledger",
        ))
    }

    /// Accepted at once; the ledger credit is written with the refund.
    async fn refund(&self, request: &RefundRequest) -> RefundResponse {
        RefundResponse {
            status: RefundStatus::Succeeded,
            provider_refund_id: Some(format!("wlt_{}", request.idempotency_key)),
            code: None,
            message: None,
            raw: serde_json::json!({ "wallet": "credit written with the refund" }).to_string(),
        }
    }

    /// Always an empty last page: the wallet's books are the engine's
    /// ledger itself, so there is nothing outside the engine to compare
    /// with (reconciliation checks the ledger on its own).
    async fn settlements(
        &self,
        _from: Timestamp,
        _to: Timestamp,
        _cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        Ok(SettlementPage::empty())
    }
}
