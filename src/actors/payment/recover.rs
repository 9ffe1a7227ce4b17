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

use super::decide::{self, Evidence};
use super::{postings, PaymentDeps};
use crate::domain::{
    Attempt, AttemptOutcome, OutcomeClass, Payment, PaymentEvent, PaymentStatus, Timestamp,
};
use crate::error::EngineError;
use crate::messages::payment::{RecoverPayment, RecoveryOutcome};
use crate::messages::provider::Lookup;
use crate::providers::{LookupResult, ProviderError};
use crate::store::{LeaseChange, PaymentWrite, StoreError, StoredResponse};
use serde_json::json;

/// What a look-up (or a provider's webhook) found, with the provider's
/// reference when it charged.
pub(super) struct Finding {
    pub evidence: Evidence,
    pub provider_payment_id: Option<String>,
}

/// Who learnt the outcome: it names the audit trail's entries.
pub(super) enum Origin {
    /// The reconciler's look-up.
    Recovery,
    /// A verified provider webhook; `event` describes it for the audit.
    Webhook { event: serde_json::Value },
}

impl Origin {
    fn label(&self) -> &'static str {
        match self {
            Origin::Recovery => "recovery",
            Origin::Webhook { .. } => "webhook",
        }
    }

    /// The audit entry saying what was learnt.
    fn event(&self, payment: &Payment, finding: &Finding, now: Timestamp) -> PaymentEvent {
        let (code, detail) = finding.describe();
        match self {
            Origin::Recovery => PaymentEvent::new(
                payment.id,
                "payment.recovery_lookup",
                now,
                json!({ "result": code.as_str(), "detail": detail, "recovery_attempts": payment.recovery_attempts }),
            ),
            Origin::Webhook { event } => PaymentEvent::new(
                payment.id,
                "payment.webhook_applied",
                now,
                json!({ "result": code.as_str(), "detail": detail, "event": event }),
            ),
        }
    }
}

impl Finding {
    fn of(evidence: Evidence) -> Self {
        Finding {
            evidence,
            provider_payment_id: None,
        }
    }

    /// The class recorded on the attempt, and what the audit trail says.
    fn describe(&self) -> (OutcomeClass, String) {
        match &self.evidence {
            Evidence::Charged => (
                OutcomeClass::Succeeded,
                "the provider has the charge".into(),
            ),
            Evidence::NotCharged => (
                OutcomeClass::TransientNotCharged,
                "the provider has no such charge".into(),
            ),
            Evidence::TooEarly => (
                OutcomeClass::Unknown,
                "the provider's look-up may still lag the charge; asking again later".into(),
            ),
            Evidence::Inconclusive { reason } => (OutcomeClass::Unknown, reason.clone()),
            Evidence::Answer { class, .. } => (*class, "the provider answered".into()),
        }
    }
}

pub(super) async fn recover(
    deps: &PaymentDeps,
    msg: RecoverPayment,
) -> Result<RecoveryOutcome, EngineError> {
    let claim = deps.lease_claim_for(&msg.merchant_id, &msg.order_id, msg.payment_id);
    if !deps.store.claim_lease(claim).await? {
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
        None => Finding::of(Evidence::NotCharged),
        Some(last) => examine(deps, &payment, last).await,
    };
    match apply(deps, payment, finding, Origin::Recovery).await {
        // Lost the lease between the claim and the write: the new holder
        // finishes it.
        Err(EngineError::Store(StoreError::LeaseLost(_))) => Ok(RecoveryOutcome::Skipped),
        other => other,
    }
}

/// What the last attempt tells, looking it up at its provider when its
/// outcome is not known. Every state a crash can leave is decided here: an
/// attempt that completed before the process died (its answer was written,
/// the payment's new status was not) is decided on that answer.
async fn examine(deps: &PaymentDeps, payment: &Payment, last: &Attempt) -> Finding {
    if postings::is_wallet(deps, &last.provider) {
        return wallet_finding(deps, payment).await;
    }
    match last.outcome {
        AttemptOutcome::Processing | AttemptOutcome::Completed(OutcomeClass::Unknown) => {
            lookup(deps, payment, last).await
        }
        // Every attempt so far was refused before charging (a crash in the
        // backoff between two attempts).
        AttemptOutcome::Completed(OutcomeClass::TransientNotCharged) => {
            Finding::of(Evidence::NotCharged)
        }
        AttemptOutcome::Completed(OutcomeClass::Succeeded) => Finding {
            evidence: Evidence::Charged,
            provider_payment_id: last.provider_payment_id.clone(),
        },
        AttemptOutcome::Completed(
            class @ (OutcomeClass::HardDecline | OutcomeClass::SoftDecline | OutcomeClass::Invalid),
        ) => Finding::of(Evidence::Answer {
            class,
            code: last.code.clone(),
            message: None,
            budget_exhausted: false,
        }),
    }
}

/// A wallet payment's charge is its ledger posting, written with its
/// success: the engine's own books say, at once and for sure.
async fn wallet_finding(deps: &PaymentDeps, payment: &Payment) -> Finding {
    match deps.store.payment_posted(payment.id).await {
        Ok(true) => Finding::of(Evidence::Charged),
        Ok(false) => Finding::of(Evidence::NotCharged),
        Err(error) => Finding::of(Evidence::Inconclusive {
            reason: error.to_string(),
        }),
    }
}

async fn lookup(deps: &PaymentDeps, payment: &Payment, attempt: &Attempt) -> Finding {
    let Some(entry) = deps.providers.get(&attempt.provider) else {
        return Finding::of(Evidence::Inconclusive {
            reason: format!("provider {} is no longer configured", attempt.provider),
        });
    };
    let key = Attempt::provider_idempotency_key(payment.id, attempt.number);
    // "No such charge" is trusted only once no call of this attempt can be
    // in flight anywhere and the provider's look-up has caught up (DESIGN §5).
    let since_start_ms = (deps.clock.now().as_micros() - attempt.created_at.as_micros()) / 1000;
    let trusted_after_ms = i64::try_from(entry.not_found_trusted_after_ms()).unwrap_or(i64::MAX);
    let settled = since_start_ms >= trusted_after_ms;
    match entry
        .addr
        .send(Lookup {
            idempotency_key: key,
            provider_payment_id: attempt.provider_payment_id.clone(),
        })
        .await
    {
        Ok(Ok(LookupResult::Charged {
            provider_payment_id,
            ..
        })) => Finding {
            evidence: Evidence::Charged,
            provider_payment_id: Some(provider_payment_id),
        },
        Ok(Ok(LookupResult::NotFound)) if settled => Finding::of(Evidence::NotCharged),
        Ok(Ok(LookupResult::NotFound)) => Finding::of(Evidence::TooEarly),
        Ok(Err(ProviderError::InProgress(_))) => Finding::of(Evidence::TooEarly),
        Ok(Err(error)) => Finding::of(Evidence::Inconclusive {
            reason: error.to_string(),
        }),
        Err(error) => Finding::of(Evidence::Inconclusive {
            reason: error.to_string(),
        }),
    }
}

/// Gives the last attempt, if it is still open, the class recovery found.
/// Returns it for the write. A provider reference the attempt already holds
/// is never replaced by nothing: it is what a person reviewing the payment
/// looks up at the provider.
fn close_last_attempt(payment: &mut Payment, code: OutcomeClass, origin: &Origin) -> Vec<Attempt> {
    let found = payment.provider_payment_id.clone();
    let Some(last) = payment.attempts.last_mut() else {
        return Vec::new();
    };
    let open = matches!(
        last.outcome,
        AttemptOutcome::Processing | AttemptOutcome::Completed(OutcomeClass::Unknown)
    );
    if !open {
        return Vec::new();
    }
    last.outcome = AttemptOutcome::Completed(code);
    if found.is_some() {
        last.provider_payment_id = found;
    }
    last.code = Some(format!("{}:{}", origin.label(), code.as_str()));
    vec![last.clone()]
}

/// Writes what `finding` means for `payment`, in one write with the
/// ledger's posting when it succeeded.
pub(super) async fn apply(
    deps: &PaymentDeps,
    mut payment: Payment,
    finding: Finding,
    origin: Origin,
) -> Result<RecoveryOutcome, EngineError> {
    let now = deps.clock.now();
    let from = payment.status;
    let decision = decide::decide(
        &finding.evidence,
        decide::facts(&payment),
        &deps.limits(),
        now,
    );
    if finding.provider_payment_id.is_some() {
        payment.provider_payment_id = finding.provider_payment_id.clone();
    }
    decide::apply(&mut payment, &decision)?;
    let (code, _) = finding.describe();
    let attempts = close_last_attempt(&mut payment, code, &origin);
    let mut events = vec![origin.event(&payment, &finding, now)];
    if payment.status != from {
        events.push(PaymentEvent::status_change(
            payment.id,
            Some(from),
            payment.status,
            now,
            json!({ "by": origin.label() }),
        ));
    }
    payment.updated_at = now;
    let posting = (payment.status == PaymentStatus::Succeeded)
        .then(|| postings::success(deps, &payment, now))
        .transpose()?;
    let resting = payment.status != PaymentStatus::Processing;
    let response = if resting {
        let body =
            serde_json::to_string(&payment).map_err(|e| EngineError::Internal(e.to_string()))?;
        Some(StoredResponse { body })
    } else {
        None
    };
    deps.save_payment(PaymentWrite {
        expected_status: from,
        attempts,
        events,
        response,
        lease: LeaseChange::Release,
        payment: payment.clone(),
        holder: deps.holder.clone(),
        posting,
    })
    .await?;
    tracing::info!(payment_id = %payment.id, %from, to = %payment.status, by = origin.label(), "payment outcome learnt");
    Ok(match payment.status {
        PaymentStatus::Pending => RecoveryOutcome::Unresolved,
        to => RecoveryOutcome::Resolved { from, to },
    })
}
