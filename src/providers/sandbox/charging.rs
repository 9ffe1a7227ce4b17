//! Recording a charge and answering it: once per idempotency key, with
//! its fee, and the answer its token asks for (a repeat included).

use super::tokens::{answer, pending, ASYNC_TOKEN};
use super::{options, SandboxCharge, SandboxFaults, SandboxProvider};
use crate::domain::{OutcomeClass, Timestamp};
use crate::providers::{ChargeRequest, ProviderResponse};
use std::time::Instant;

/// How a charge is answered once it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answering {
    /// At once.
    Now,
    /// Not at all, the first time (`pm_card_timeout_after_charge`).
    LoseFirst,
    /// `pending` at once, then by webhook (`pm_card_async`).
    Later,
}

impl SandboxProvider {
    /// Records the charge `request` asks for (once per idempotency key)
    /// and answers as `answering` says.
    pub(super) async fn make_charge(
        &self,
        request: &ChargeRequest,
        answering: Answering,
        faults: &SandboxFaults,
        deadline: Instant,
    ) -> ProviderResponse {
        let amount = request.amount.minor_units();
        let charge = SandboxCharge {
            id: format!("ch_{}", uuid::Uuid::now_v7().simple()),
            provider: self.name.clone(),
            idempotency_key: request.idempotency_key.clone(),
            merchant_id: request.merchant_id.to_string(),
            order_id: request.order_id.clone(),
            customer_id: request.customer_id.clone(),
            amount,
            currency: request.currency.code().to_string(),
            payment_method: request.payment_method.clone(),
            status: "succeeded".to_string(),
            amount_refunded: 0,
            fee: options::fee_on(&self.fees, amount, request.currency),
            created_at: Timestamp::from_datetime(chrono::Utc::now()).to_string(),
        };
        let (stored, is_new) = match self.record.charge_once(&charge, deadline).await {
            Ok(recorded) => recorded,
            // The record could not be written: like a provider's 500, the
            // charge may or may not exist, so the engine must look it up.
            Err(error) => {
                tracing::warn!(provider = %self.name, %error, "sandbox record write failed");
                return answer(
                    OutcomeClass::Unknown,
                    500,
                    Some("api_error"),
                    Some("internal error"),
                    None,
                );
            }
        };
        if !is_new {
            return self.repeat(&stored);
        }
        if answering == Answering::Later {
            self.outbox.confirm_later(stored.id.clone());
        }
        if answering == Answering::LoseFirst || Self::roll(faults.timeout_rate) {
            tracing::debug!(provider = %self.name, charge = %stored.id, "sandbox charged and lost the answer");
            return ProviderResponse::synthetic(
                OutcomeClass::Unknown,
                "timeout",
                "the provider did not answer in time",
            );
        }
        match answering {
            Answering::Later => pending(&stored.id),
            Answering::Now | Answering::LoseFirst => {
                answer(OutcomeClass::Succeeded, 200, None, None, Some(&stored.id))
            }
        }
    }

    /// The answer to a repeat of a key already charged: that charge,
    /// whatever the token now, which is what makes retrying an unknown
    /// outcome safe. Only a `pm_card_async` charge still awaiting its
    /// confirmation answers `pending` again, as a real provider replays
    /// its first answer: the engine's retries then leave the payment
    /// pending for the webhook (or a look-up) to settle.
    pub(super) fn repeat(&self, existing: &SandboxCharge) -> ProviderResponse {
        if existing.payment_method == ASYNC_TOKEN && self.outbox.awaits_confirmation(existing) {
            return pending(&existing.id);
        }
        answer(OutcomeClass::Succeeded, 200, None, None, Some(&existing.id))
    }
}
