//! Refunds, inside the order's actor (the order's serialization point, as
//! for everything that touches it).
//!
//! A refund is reserved against the payment before its provider is called
//! (one write: key, reservation, the refund `pending`), so refunds can never
//! add up to more than was captured, whatever the concurrency and however
//! many instances. The provider is called under the refund's own key
//! (`re_…`), retried with that same key while its answer is unknown; the
//! answer settles the refund in one write with the payment's new status and
//! the ledger's reversal. A refund whose outcome stays unknown, or that the
//! provider confirms later (Adyen), stays `pending`: the reconciler asks
//! again under the same key, and a webhook may settle it. It is never sent
//! under another key.

use super::{postings, PaymentDeps};
use crate::domain::{
    Amount, Payment, PaymentEvent, PaymentStatus, Refund, RefundId, RefundObject, RefundState,
    Timestamp,
};
use crate::error::EngineError;
use crate::messages::payment::{CreateRefund, CreatedRefund, RecoverRefund};
use crate::messages::provider::Refund as RefundCall;
use crate::providers::{RefundRequest, RefundResponse, RefundStatus};
use crate::store::{FinishRefund, NewRefund, RefundBegin};
use serde_json::json;

/// Handles [`CreateRefund`].
pub(super) async fn create(
    deps: &PaymentDeps,
    msg: CreateRefund,
) -> Result<CreatedRefund, EngineError> {
    let payment = deps
        .store
        .payment(&msg.merchant_id, msg.payment_id)
        .await?
        .ok_or(EngineError::NotFound {
            resource: "payment",
        })?;
    let refund = new_refund(deps, &payment, &msg)?;
    let begin = NewRefund {
        refund: refund.clone(),
        idempotency_key: msg.idempotency_key.clone(),
        fingerprint: msg.fingerprint.clone(),
        order_id: payment.order_id.clone(),
        events: vec![event(
            &refund,
            "refund.created",
            json!({ "amount": refund.amount }),
        )],
    };
    match deps.store.begin_refund(begin).await? {
        RefundBegin::Started => {}
        RefundBegin::KeyExists(record) => {
            return CreatedRefund::replay(record, &msg.merchant_id, &msg.fingerprint)
        }
        RefundBegin::TooLarge { available } => {
            return Err(EngineError::AmountTooLarge { available })
        }
        RefundBegin::NotRefundable { status } => return Err(EngineError::NotRefundable { status }),
    }
    tracing::info!(refund_id = %refund.id, payment_id = %payment.id, amount = refund.amount.minor_units(), "refund created");
    let answer = ask(deps, &payment, &refund).await;
    let (refund, body) = settle(deps, &payment, refund, answer, true).await?;
    Ok(CreatedRefund {
        refund,
        body,
        replayed: false,
    })
}

/// Handles [`RecoverRefund`]: asks the provider again under the same key.
pub(super) async fn recover(
    deps: &PaymentDeps,
    msg: RecoverRefund,
) -> Result<RefundState, EngineError> {
    let not_found = || EngineError::NotFound { resource: "refund" };
    let refund = deps
        .store
        .refund(&msg.merchant_id, msg.refund_id)
        .await?
        .ok_or_else(not_found)?;
    if refund.status != RefundState::Pending {
        return Ok(refund.status);
    }
    let payment = deps
        .store
        .payment(&msg.merchant_id, refund.payment_id)
        .await?
        .ok_or_else(not_found)?;
    let answer = ask(deps, &payment, &refund).await;
    let (refund, _) = settle(deps, &payment, refund, answer, false).await?;
    Ok(refund.status)
}

/// The refund `msg` asks for, `pending`: all that remains when no amount
/// was given.
fn new_refund(
    deps: &PaymentDeps,
    payment: &Payment,
    msg: &CreateRefund,
) -> Result<Refund, EngineError> {
    if !matches!(
        payment.status,
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
    ) {
        return Err(EngineError::NotRefundable {
            status: payment.status,
        });
    }
    let available =
        payment.amount.minor_units() - payment.amount_refunded - payment.amount_refund_pending;
    let amount = match msg.request.amount {
        Some(amount) => amount,
        None => Amount::new(available).map_err(|_| EngineError::AmountTooLarge {
            available: available.max(0),
        })?,
    };
    let provider = payment
        .provider
        .clone()
        .ok_or_else(|| EngineError::Internal("a succeeded payment has a provider".into()))?;
    let now = deps.clock.now();
    Ok(Refund {
        id: RefundId::new(),
        object: RefundObject,
        payment_id: payment.id,
        merchant_id: payment.merchant_id.clone(),
        amount,
        currency: payment.currency,
        reason: msg.request.reason,
        status: RefundState::Pending,
        failure_code: None,
        provider,
        provider_refund_id: None,
        raw_response: None,
        created_at: now,
        updated_at: now,
    })
}

/// Calls the refund's provider, retrying an unknown answer under the same
/// key as the provider's `unknown` retry row allows.
async fn ask(deps: &PaymentDeps, payment: &Payment, refund: &Refund) -> RefundResponse {
    let Some(entry) = deps.providers.get(&refund.provider) else {
        return unanswered(
            "provider_not_configured",
            "the provider is no longer configured",
        );
    };
    let request = RefundRequest {
        provider_payment_id: payment.provider_payment_id.clone().unwrap_or_default(),
        amount: refund.amount,
        currency: refund.currency,
        idempotency_key: refund.provider_idempotency_key(),
        reason: refund.reason.map(|reason| reason.as_str().to_string()),
    };
    let policy = entry.retry.unknown;
    let mut tries = 0;
    loop {
        tries += 1;
        let answer = match entry.addr.send(RefundCall(request.clone())).await {
            Ok(answer) => answer,
            Err(error) => unanswered("provider_actor_unavailable", &error.to_string()),
        };
        if answer.status != RefundStatus::Unknown || tries >= policy.max_attempts {
            return answer;
        }
        tokio::time::sleep(policy.backoff(tries)).await;
    }
}

fn unanswered(code: &str, message: &str) -> RefundResponse {
    RefundResponse {
        status: RefundStatus::Unknown,
        provider_refund_id: None,
        code: Some(code.to_string()),
        message: Some(message.to_string()),
        raw: json!({ "engine": code, "message": message }).to_string(),
    }
}

/// Writes what the provider's answer means for the refund; returns the
/// refund and the body of the answer stored under its key (`answer_key`:
/// the request that created it is answering now).
async fn settle(
    deps: &PaymentDeps,
    payment: &Payment,
    mut refund: Refund,
    answer: RefundResponse,
    answer_key: bool,
) -> Result<(Refund, String), EngineError> {
    let now = deps.clock.now();
    refund.updated_at = now;
    refund.provider_refund_id = answer.provider_refund_id.or(refund.provider_refund_id);
    refund.raw_response = Some(answer.raw);
    refund.status = match answer.status {
        RefundStatus::Succeeded => RefundState::Succeeded,
        RefundStatus::Failed => RefundState::Failed,
        RefundStatus::Pending | RefundStatus::Unknown => RefundState::Pending,
    };
    if refund.status == RefundState::Failed {
        refund.failure_code = Some(answer.code.unwrap_or_else(|| "refund_failed".into()));
    }
    let body = serde_json::to_string(&refund).map_err(|e| EngineError::Internal(e.to_string()))?;
    let stored = answer_key.then(|| body.clone());
    if refund.status == RefundState::Pending {
        deps.store
            .refund_still_pending(refund.clone(), stored)
            .await?;
        return Ok((refund, body));
    }
    let kind = match refund.status {
        RefundState::Succeeded => "refund.succeeded",
        _ => "refund.failed",
    };
    let posting = (refund.status == RefundState::Succeeded)
        .then(|| postings::refund(deps, payment, &refund, now))
        .transpose()?;
    let events = vec![event(
        &refund,
        kind,
        json!({ "amount": refund.amount, "code": refund.failure_code }),
    )];
    deps.store
        .finish_refund(FinishRefund {
            refund: refund.clone(),
            posting,
            events,
            response_body: stored,
        })
        .await?;
    tracing::info!(refund_id = %refund.id, status = %refund.status, "refund settled");
    Ok((refund, body))
}

/// Settles a pending refund on an outcome the provider reported on its own
/// (a webhook), as if it had answered the call.
pub(super) async fn settle_reported(
    deps: &PaymentDeps,
    payment: &Payment,
    refund: Refund,
    reported: RefundResponse,
) -> Result<Refund, EngineError> {
    Ok(settle(deps, payment, refund, reported, false).await?.0)
}

/// An audit event of the refunded payment about `refund`.
fn event(refund: &Refund, kind: &str, data: serde_json::Value) -> PaymentEvent {
    let mut data = data;
    data["refund_id"] = json!(refund.id);
    PaymentEvent::new(refund.payment_id, kind, now_of(refund), data)
}

fn now_of(refund: &Refund) -> Timestamp {
    refund.updated_at
}
