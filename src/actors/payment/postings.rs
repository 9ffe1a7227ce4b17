//! The ledger postings a payment's status changes cause (DESIGN §8).
//!
//! Built here, from the payment and its provider's configuration, and
//! written by the store in the same transaction as the change itself
//! (DESIGN §13.7): a succeeded payment has exactly one posting, a refund
//! one reversal, and a failed payment none.

use super::PaymentDeps;
use crate::domain::{
    CardCharge, CardRefund, Payment, Posting, Refund, Timestamp, WalletCharge, WalletRefund,
};
use crate::error::EngineError;

fn ledger_error(error: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("cannot build the ledger posting: {error}"))
}

/// Whether `provider` is the engine's wallet (its charge is a ledger debit).
pub(super) fn is_wallet(deps: &PaymentDeps, provider: &str) -> bool {
    deps.providers
        .get(provider)
        .is_some_and(|entry| entry.wallet)
}

/// The posting of `payment`'s success at the provider of its last attempt:
/// the provider's clearing and fee against the merchant's revenue, or the
/// customer's wallet against it.
pub(super) fn success(
    deps: &PaymentDeps,
    payment: &Payment,
    now: Timestamp,
) -> Result<Posting, EngineError> {
    let provider = payment
        .attempts
        .last()
        .map(|attempt| attempt.provider.clone())
        .ok_or_else(|| EngineError::Internal("a succeeded payment has an attempt".into()))?;
    if is_wallet(deps, &provider) {
        let charge = WalletCharge {
            payment_id: payment.id,
            merchant_id: payment.merchant_id.clone(),
            customer_id: payment.customer_id.clone(),
            amount: payment.amount,
            currency: payment.currency,
        };
        return Posting::wallet_payment(&charge, now).map_err(ledger_error);
    }
    // The fee is the provider's configured one for this amount and currency
    // (rounded as `Fee::on` documents); a provider no longer configured
    // charged nothing we know of.
    let fee = deps
        .providers
        .get(&provider)
        .map_or(Some(0), |entry| {
            entry.fee(payment.amount.minor_units(), payment.currency)
        })
        .ok_or_else(|| ledger_error("the fee overflows"))?;
    let charge = CardCharge {
        payment_id: payment.id,
        merchant_id: payment.merchant_id.clone(),
        provider,
        amount: payment.amount,
        currency: payment.currency,
        fee,
    };
    Posting::card_payment(&charge, now).map_err(ledger_error)
}

/// The reversal of a succeeded `refund` of `payment`.
pub(super) fn refund(
    deps: &PaymentDeps,
    payment: &Payment,
    refund: &Refund,
    now: Timestamp,
) -> Result<Posting, EngineError> {
    if is_wallet(deps, &refund.provider) {
        let back = WalletRefund {
            refund_id: refund.id,
            payment_id: payment.id,
            merchant_id: payment.merchant_id.clone(),
            customer_id: payment.customer_id.clone(),
            amount: refund.amount,
            currency: refund.currency,
        };
        return Posting::wallet_refund(&back, now).map_err(ledger_error);
    }
    let back = CardRefund {
        refund_id: refund.id,
        payment_id: payment.id,
        merchant_id: payment.merchant_id.clone(),
        provider: refund.provider.clone(),
        amount: refund.amount,
        currency: refund.currency,
    };
    Posting::card_refund(&back, now).map_err(ledger_error)
}
