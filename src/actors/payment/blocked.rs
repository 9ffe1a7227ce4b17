//! The anomaly check on a new payment, before routing (DESIGN §10).
//!
//! A rule with action `flag` lets the payment proceed: it carries the
//! rule names in `anomaly_flags`, and the flags are stored in the same
//! write as the payment. A rule with action `block` fails it with
//! `failure_code: blocked_by_rule`: the payment is written (with its flags)
//! and then failed with its stored answer, and no provider is called, so
//! nothing is charged and nothing is posted to the ledger. A crash between
//! the two writes leaves a `processing` payment with no attempt, which
//! recovery fails as never sent.

use super::PaymentDeps;
use crate::domain::{Flag, Payment, PaymentEvent, PaymentFacts, PaymentStatus, BLOCKED_BY_RULE};
use crate::error::EngineError;
use crate::messages::payment::{CreatePayment, CreatedPayment};
use crate::store::{LeaseChange, PaymentWrite, StoredResponse};
use serde_json::json;

/// What the rules look at in a payment request.
pub(super) fn facts(msg: &CreatePayment) -> PaymentFacts {
    let request = &msg.request;
    PaymentFacts {
        merchant: msg.merchant_id.clone(),
        customer_id: request.customer_id.clone(),
        amount: request.amount,
        currency: request.currency,
        payment_method: request.payment_method.clone(),
    }
}

/// Whether any fired rule blocks the payment.
pub(super) fn blocks(flags: &[Flag]) -> bool {
    flags.iter().any(Flag::blocks)
}

/// The fired rules' names, as the payment carries them.
pub(super) fn names(flags: &[Flag]) -> Vec<String> {
    flags
        .iter()
        .map(|flag| flag.rule.as_str().to_string())
        .collect()
}

/// Fails the just-written (attempt-less) `payment` for the blocking rules
/// among `flags`, storing its answer under its idempotency key.
pub(super) async fn fail(
    deps: &PaymentDeps,
    mut payment: Payment,
    flags: &[Flag],
) -> Result<CreatedPayment, EngineError> {
    let rules: Vec<&str> = flags
        .iter()
        .filter(|flag| flag.blocks())
        .map(|flag| flag.rule.as_str())
        .collect();
    let now = deps.clock.now();
    let from = payment.status;
    payment.status = from
        .transition(PaymentStatus::Failed)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    payment.failure_code = Some(BLOCKED_BY_RULE.to_string());
    payment.failure_message = Some(format!(
        "blocked by anomaly rule {} before any provider was called",
        rules.join(", ")
    ));
    payment.updated_at = now;
    let event = PaymentEvent::status_change(
        payment.id,
        Some(from),
        payment.status,
        now,
        json!({ "code": BLOCKED_BY_RULE, "rules": rules }),
    );
    let body = serde_json::to_string(&payment).map_err(|e| EngineError::Internal(e.to_string()))?;
    // Through the notifying wrapper: a blocked payment ends `failed`, and
    // its notice leaves like any other's.
    deps.save_payment(PaymentWrite {
        payment: payment.clone(),
        expected_status: from,
        attempts: Vec::new(),
        events: vec![event],
        response: Some(StoredResponse { body: body.clone() }),
        lease: LeaseChange::Release,
        holder: deps.holder.clone(),
        posting: None,
    })
    .await?;
    tracing::info!(payment_id = %payment.id, rules = ?rules, "payment blocked by anomaly rule");
    Ok(CreatedPayment {
        payment,
        body,
        replayed: false,
    })
}
