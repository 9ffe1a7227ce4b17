//! The handle's money operations: refunds, the ledger and wallets
//! (DESIGN §6, §8). Refunds go through the order's actor; reads go to the
//! store; a top-up is one idempotent write.

use super::{validate, EngineHandle};
use crate::domain::{
    Account, Amount, Balance, Currency, MerchantId, PaymentId, Posting, Refund, RefundId,
    TransactionId, WalletTopUp,
};
use crate::error::EngineError;
use crate::messages::payment::{CreateRefund, CreatedRefund, RefundRequest};
use crate::store::ledger::{BalanceFilter, TransactionFilter};
use crate::store::{TopUp, TopUpOutcome};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// A page of refunds, or of ledger postings: `{data, has_more}`.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

/// A customer's wallet (`GET /v1/wallets/{customer_id}`): what it holds,
/// by currency, in minor units.
#[derive(Debug, Clone, Serialize)]
pub struct Wallet {
    pub object: &'static str,
    pub customer_id: String,
    pub balances: BTreeMap<String, i64>,
}

/// The answer to a top-up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToppedUp {
    pub body: String,
    pub replayed: bool,
}

/// What a top-up answers, stored with its key and replayed verbatim.
#[derive(Debug, Serialize)]
struct TopUpBody<'a> {
    id: TransactionId,
    object: &'static str,
    customer_id: &'a str,
    amount: Amount,
    currency: Currency,
    created_at: crate::domain::Timestamp,
}

fn fingerprint_of(request: &impl Serialize) -> String {
    let canonical = serde_json::to_vec(request).unwrap_or_default();
    format!("{:x}", Sha256::digest(&canonical))
}

impl EngineHandle {
    /// Refunds (part of) the merchant's payment `payment_id`, once per
    /// `(merchant, idempotency_key)`; the refunds of a payment never exceed
    /// what it captured (`AmountTooLarge`).
    pub async fn refund(
        &self,
        merchant: &MerchantId,
        payment_id: PaymentId,
        idempotency_key: &str,
        request: RefundRequest,
    ) -> Result<CreatedRefund, EngineError> {
        validate::idempotency_key(idempotency_key)?;
        let payment = self.payment(merchant, payment_id).await?;
        let fingerprint = fingerprint_of(&(&"refund", payment_id, &request));
        let (store, owner, key) = (
            self.inner.store.clone(),
            merchant.clone(),
            idempotency_key.to_string(),
        );
        let record = self
            .on_engine(async move { store.idempotency_record(&owner, &key).await })
            .await??;
        if let Some(record) =
            record.filter(|r| r.response.is_some() || r.fingerprint != fingerprint)
        {
            return CreatedRefund::replay(record, merchant, &fingerprint);
        }
        let msg = CreateRefund {
            merchant_id: merchant.clone(),
            order_id: payment.order_id,
            payment_id,
            idempotency_key: idempotency_key.to_string(),
            fingerprint,
            request,
        };
        let _room = self.admit().await?;
        self.inner.registry.create_refund(msg).await
    }

    /// The payment's refunds, oldest first.
    pub async fn refunds(
        &self,
        merchant: &MerchantId,
        payment_id: PaymentId,
        starting_after: Option<RefundId>,
        limit: u32,
    ) -> Result<Page<Refund>, EngineError> {
        // A foreign or missing payment is a 404, not an empty list.
        self.payment(merchant, payment_id).await?;
        let (store, owner) = (self.inner.store.clone(), merchant.clone());
        let asked = limit.saturating_add(1);
        let mut data = self
            .on_engine(async move {
                store
                    .refunds_of_payment(&owner, payment_id, starting_after, asked)
                    .await
            })
            .await??;
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(Page { data, has_more })
    }

    /// The balances of the merchant's accounts (its revenue, its wallet
    /// funding and its customers' wallets), narrowed by `filter`.
    pub async fn ledger_balances(
        &self,
        merchant: &MerchantId,
        filter: BalanceFilter,
    ) -> Result<Vec<Balance>, EngineError> {
        let balances = self.all_balances(filter).await?;
        Ok(balances
            .into_iter()
            .filter(|balance| balance.account.merchant().as_ref() == Some(merchant))
            .collect())
    }

    /// Every account's balances, whoever owns it (operators, and the
    /// embedding host's own accounting).
    pub async fn all_balances(&self, filter: BalanceFilter) -> Result<Vec<Balance>, EngineError> {
        let store = self.inner.store.clone();
        Ok(self
            .on_engine(async move { store.ledger_balances(&filter).await })
            .await??)
    }

    /// The merchant's postings, newest first.
    pub async fn ledger_transactions(
        &self,
        merchant: &MerchantId,
        mut filter: TransactionFilter,
    ) -> Result<Page<Posting>, EngineError> {
        filter.merchant_id = Some(merchant.clone());
        let limit = filter.limit as usize;
        filter.limit = filter.limit.saturating_add(1);
        let store = self.inner.store.clone();
        let mut data = self
            .on_engine(async move { store.ledger_transactions(&filter).await })
            .await??;
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(Page { data, has_more })
    }

    /// Credits `customer_id`'s wallet at `merchant` with `amount`, once per
    /// `(merchant, idempotency_key)`.
    pub async fn wallet_top_up(
        &self,
        merchant: &MerchantId,
        customer_id: &str,
        idempotency_key: &str,
        amount: Amount,
        currency: Currency,
    ) -> Result<ToppedUp, EngineError> {
        validate::idempotency_key(idempotency_key)?;
        let fingerprint = fingerprint_of(&(&"top_up", customer_id, amount, currency));
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        let top_up = WalletTopUp {
            id: TransactionId::new(),
            merchant_id: merchant.clone(),
            customer_id: customer_id.to_string(),
            amount,
            currency,
        };
        let posting = Posting::wallet_top_up(&top_up, now)
            .map_err(|e| EngineError::invalid("customer_id", e.to_string()))?;
        let body = serde_json::to_string(&TopUpBody {
            id: top_up.id,
            object: "wallet_top_up",
            customer_id,
            amount,
            currency,
            created_at: now,
        })
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        let write = TopUp {
            merchant_id: merchant.clone(),
            idempotency_key: idempotency_key.to_string(),
            fingerprint: fingerprint.clone(),
            posting,
            response_body: body.clone(),
        };
        match self.inner.store.top_up(write).await? {
            TopUpOutcome::Posted => Ok(ToppedUp {
                body,
                replayed: false,
            }),
            TopUpOutcome::KeyExists {
                fingerprint: stored,
                body,
            } if stored == fingerprint => Ok(ToppedUp {
                body,
                replayed: true,
            }),
            TopUpOutcome::KeyExists { .. } => Err(EngineError::IdempotencyKeyReused),
        }
    }

    /// What `customer_id`'s wallet at `merchant` holds, by currency.
    pub async fn wallet(
        &self,
        merchant: &MerchantId,
        customer_id: &str,
    ) -> Result<Wallet, EngineError> {
        let account = Account::customer_wallet(merchant, customer_id)
            .map_err(|e| EngineError::invalid("customer_id", e.to_string()))?;
        let filter = BalanceFilter {
            account: Some(account),
            ..BalanceFilter::default()
        };
        let balances = self
            .all_balances(filter)
            .await?
            .into_iter()
            // Spendable: what came in less what went out.
            .map(|b| (b.currency.code().to_string(), b.credits - b.debits))
            .collect();
        Ok(Wallet {
            object: "wallet",
            customer_id: customer_id.to_string(),
            balances,
        })
    }
}
