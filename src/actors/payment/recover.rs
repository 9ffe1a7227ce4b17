//! Recovery: finishing a payment whose outcome this process does not know.
//!
//! Two cases reach here. A payment left `processing` by an instance that
//! died (its lease expired): its last attempt may or may not have reached
//! the provider. A payment left `pending` after an unknown answer. Either
//! way the provider is asked, under the attempt's own idempotency key,
//! whether it charged; the answer decides. A look-up that fails changes
//! nothing but a counter: after `max_recovery_attempts` of those the payment
//! goes to `needs_review` for a human. A payment is never reported `failed`
//! unless its provider said it has no such charge.

use super::PaymentDeps;
use crate::domain::{Attempt, AttemptOutcome, OutcomeClass, Payment, PaymentEvent, PaymentStatus};
use crate::error::EngineError;
use crate::messages::payment::{RecoverPayment, RecoveryOutcome};
use crate::messages::provider::Lookup;
use crate::providers::{LookupResult, ProviderError};
use crate::store::{LeaseChange, PaymentWrite, StoredResponse};
use serde_json::json;

/// The HTTP status stored for a request whose answer recovery completes.
const CREATED_STATUS: u16 = 201;

/// What the provider said about the last attempt.
enum Finding {
    Charged {
        provider_payment_id: String,
    },
    NotCharged,
    Unknown(String),
    /// "Not found" from a look-up that may still lag the charge, or the
    /// provider is still processing the call: ask again, without counting
    /// it as an inconclusive look-up.
    TooEarly,
}

pub(super) async fn recover(
    deps: &PaymentDeps,
    msg: RecoverPayment,
) -> Result<RecoveryOutcome, EngineError> {
    let now = deps.clock.now();
    let claimed = deps
        .store
        .claim_lease(
            &msg.merchant_id,
            &msg.order_id,
            msg.payment_id,
            &deps.instance_id,
            now,
            now.plus_millis(deps.lease_ttl_ms),
        )
        .await?;
    if !claimed {
        return Ok(RecoveryOutcome::Skipped);
    }
    let payment = deps
        .store
        .payment(&msg.merchant_id, msg.payment_id)
        .await?
        .ok_or(EngineError::NotFound {
            resource: "payment",
        })?;
    if !matches!(
        payment.status,
        PaymentStatus::Processing | PaymentStatus::Pending
    ) {
        return Ok(RecoveryOutcome::AlreadyResolved);
    }
    let finding = match payment.attempts.last() {
        // Nothing was ever sent.
        None => Finding::NotCharged,
        Some(last) => match last.outcome {
            AttemptOutcome::Processing | AttemptOutcome::Completed(OutcomeClass::Unknown) => {
                lookup(deps, &payment, last).await
            }
            // Every attempt so far was refused before charging (a crash in
            // the backoff between two attempts).
            AttemptOutcome::Completed(OutcomeClass::TransientNotCharged) => Finding::NotCharged,
            AttemptOutcome::Completed(other) => {
                return Err(EngineError::Internal(format!(
                    "payment {} is {} after a {} attempt",
                    payment.id,
                    payment.status,
                    other.as_str()
                )))
            }
        },
    };
    apply(deps, payment, finding).await
}

async fn lookup(deps: &PaymentDeps, payment: &Payment, attempt: &Attempt) -> Finding {
    let Some(entry) = deps.providers.get(&attempt.provider) else {
        return Finding::Unknown(format!(
            "provider {} is no longer configured",
            attempt.provider
        ));
    };
    let key = Attempt::provider_idempotency_key(payment.id, attempt.number);
    let since_call_ms = (deps.clock.now().as_micros() - attempt.created_at.as_micros()) / 1000;
    let settled = since_call_ms >= i64::try_from(entry.lookup_consistency_ms).unwrap_or(i64::MAX);
    match entry
        .addr
        .send(Lookup {
            idempotency_key: key,
        })
        .await
    {
        Ok(Ok(LookupResult::Charged {
            provider_payment_id,
            ..
        })) => Finding::Charged {
            provider_payment_id,
        },
        Ok(Ok(LookupResult::NotFound)) if settled => Finding::NotCharged,
        Ok(Ok(LookupResult::NotFound)) => Finding::TooEarly,
        Ok(Err(ProviderError::InProgress(_))) => Finding::TooEarly,
        Ok(Err(error)) => Finding::Unknown(error.to_string()),
        Err(error) => Finding::Unknown(error.to_string()),
    }
}

async fn apply(
    deps: &PaymentDeps,
    mut payment: Payment,
    finding: Finding,
) -> Result<RecoveryOutcome, EngineError> {
    let now = deps.clock.now();
    let from = payment.status;
    let mut attempts = Vec::new();
    let (to, code, detail) = match finding {
        Finding::Charged {
            provider_payment_id,
        } => {
            payment.provider_payment_id = Some(provider_payment_id);
            payment.failure_code = None;
            payment.failure_message = None;
            (
                PaymentStatus::Succeeded,
                OutcomeClass::Succeeded,
                "the provider has the charge".to_string(),
            )
        }
        Finding::NotCharged => {
            payment.failure_code = Some("not_charged".into());
            payment.failure_message =
                Some("recovery found that the provider never charged this payment".into());
            (
                PaymentStatus::Failed,
                OutcomeClass::TransientNotCharged,
                "the provider has no such charge".to_string(),
            )
        }
        Finding::TooEarly => (
            PaymentStatus::Pending,
            OutcomeClass::Unknown,
            "the provider's look-up may still lag the charge; asking again later".to_string(),
        ),
        Finding::Unknown(reason) => {
            payment.recovery_attempts = payment.recovery_attempts.saturating_add(1);
            let to = if payment.recovery_attempts >= deps.max_recovery_attempts
                && from == PaymentStatus::Pending
            {
                PaymentStatus::NeedsReview
            } else {
                PaymentStatus::Pending
            };
            (to, OutcomeClass::Unknown, reason)
        }
    };
    // The last attempt, if still open, gets its answer.
    if let Some(last) = payment.attempts.last_mut() {
        if matches!(
            last.outcome,
            AttemptOutcome::Processing | AttemptOutcome::Completed(OutcomeClass::Unknown)
        ) {
            last.outcome = AttemptOutcome::Completed(code);
            last.provider_payment_id = payment.provider_payment_id.clone();
            last.code = Some(format!("recovery:{}", code.as_str()));
            attempts.push(last.clone());
        }
    }
    let mut events = vec![PaymentEvent::new(
        payment.id,
        "payment.recovery_lookup",
        now,
        json!({ "result": code.as_str(), "detail": detail, "recovery_attempts": payment.recovery_attempts }),
    )];
    if to != from {
        payment.status = from
            .transition(to)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        events.push(PaymentEvent::status_change(
            payment.id,
            Some(from),
            to,
            now,
            json!({ "by": "recovery" }),
        ));
    }
    payment.updated_at = now;
    let resting = payment.status != PaymentStatus::Processing;
    let response = if resting {
        let body =
            serde_json::to_string(&payment).map_err(|e| EngineError::Internal(e.to_string()))?;
        Some(StoredResponse {
            status: CREATED_STATUS,
            body,
        })
    } else {
        None
    };
    deps.store
        .save_payment(PaymentWrite {
            expected_status: from,
            attempts,
            events,
            response,
            lease: LeaseChange::Release,
            payment: payment.clone(),
        })
        .await?;
    tracing::info!(payment_id = %payment.id, %from, to = %payment.status, "payment recovered");
    Ok(match payment.status {
        PaymentStatus::Pending => RecoveryOutcome::Unresolved,
        to => RecoveryOutcome::Resolved { from, to },
    })
}
