//! Inbound provider webhooks, inside the order's actor (DESIGN §6).
//!
//! An event is applied at most once (its receipt, stored, deduplicates
//! redeliveries) and only forward: an open payment (`processing` whose
//! process died, `pending`, `needs_review`) or a `pending` refund takes the
//! outcome the provider reports, exactly as if a look-up had found it, in
//! one write with its ledger posting. An event that agrees with a final
//! state changes nothing; one that contradicts it is recorded in the audit
//! trail and raised as a discrepancy, never applied.

use super::recover::{self, Finding, Origin};
use super::{decide::Evidence, refund as refunds, PaymentDeps};
use crate::domain::{
    Category, OutcomeClass, Payment, PaymentEvent, PaymentStatus, Refund, RefundId, RefundState,
    WebhookResult,
};
use crate::error::EngineError;
use crate::messages::payment::ApplyWebhook;
use crate::providers::{RefundResponse, RefundStatus, WebhookKind};
use crate::store::{self, StoreError, WebhookReceipt, WebhookRecord};
use serde_json::json;

/// Refunds of one payment searched for an event that names a refund only
/// by the provider's id for it.
const MAX_REFUNDS_SEARCHED: u32 = 100;

/// Handles [`ApplyWebhook`].
pub(super) async fn apply(
    deps: &PaymentDeps,
    msg: ApplyWebhook,
) -> Result<WebhookResult, EngineError> {
    if deps
        .store
        .webhook_seen(&msg.provider, &msg.event.id)
        .await?
    {
        return Ok(WebhookResult::Duplicate);
    }
    let Some(payment) = deps.store.payment(&msg.merchant_id, msg.payment_id).await? else {
        return note(deps, &msg, None, WebhookResult::Unmatched, None).await;
    };
    match &msg.event.kind {
        WebhookKind::ChargeSucceeded | WebhookKind::ChargeFailed { .. } => {
            charge(deps, &msg, payment).await
        }
        WebhookKind::RefundSucceeded { .. } | WebhookKind::RefundFailed { .. } => {
            refund(deps, &msg, payment).await
        }
        WebhookKind::ChargeRefunded { .. } | WebhookKind::Other(_) => {
            note(deps, &msg, Some(&payment), WebhookResult::NoEffect, None).await
        }
    }
}

/// A charge event: settles an open payment, or is checked against a final one.
async fn charge(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: Payment,
) -> Result<WebhookResult, EngineError> {
    let charged = msg.event.kind == WebhookKind::ChargeSucceeded;
    let last_provider = payment.attempts.last().map(|a| a.provider.as_str());
    let ours = last_provider == Some(msg.provider.as_str());
    use PaymentStatus::*;
    match payment.status {
        Processing | Pending | NeedsReview if ours => settle(deps, msg, payment).await,
        Succeeded | PartiallyRefunded | Refunded if charged && !same_charge(msg, &payment) => {
            let finding = finding(msg, &payment, Category::DuplicateCharge, "a second charge");
            note(
                deps,
                msg,
                Some(&payment),
                WebhookResult::Late,
                Some(finding),
            )
            .await
        }
        Succeeded | PartiallyRefunded | Refunded if charged => {
            note(deps, msg, Some(&payment), WebhookResult::NoEffect, None).await
        }
        Failed | RetryScheduled | Processing | Pending | NeedsReview if !charged => {
            note(deps, msg, Some(&payment), WebhookResult::NoEffect, None).await
        }
        _ => {
            let engine_says = payment.status.as_str();
            let finding = finding(msg, &payment, Category::StatusMismatch, engine_says);
            note(
                deps,
                msg,
                Some(&payment),
                WebhookResult::Late,
                Some(finding),
            )
            .await
        }
    }
}

/// Whether a charge event is about the charge that paid `payment` (and not
/// a second one for the same payment).
fn same_charge(msg: &ApplyWebhook, payment: &Payment) -> bool {
    let provider = payment.provider.as_deref() == Some(msg.provider.as_str());
    let reference = match (&msg.event.provider_payment_id, &payment.provider_payment_id) {
        (Some(event), Some(ours)) => event == ours,
        _ => true,
    };
    provider && reference
}

/// Gives an open payment the outcome the event reports, holding the
/// order's lease as any writer must.
async fn settle(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: Payment,
) -> Result<WebhookResult, EngineError> {
    if !deps.store.claim_lease(deps.lease_claim(&payment)).await? {
        return Err(EngineError::OrderBusy);
    }
    let finding = Finding {
        evidence: evidence(&msg.event.kind, payment.status),
        provider_payment_id: msg.event.provider_payment_id.clone(),
    };
    let origin = Origin::Webhook {
        event: describe(msg),
    };
    match recover::apply(deps, payment.clone(), finding, origin).await {
        Err(EngineError::Store(StoreError::LeaseLost(_))) => return Err(EngineError::OrderBusy),
        Err(error) => return Err(error),
        Ok(_) => {}
    }
    record(
        deps,
        msg,
        Some(&payment),
        WebhookResult::Applied,
        Vec::new(),
        None,
    )
    .await
}

/// What a charge event proves. A failure ends the attempt: only a
/// `processing` payment may still be rescheduled after a soft decline; a
/// `pending` one (whose attempt is over) fails with the decline's code.
fn evidence(kind: &WebhookKind, status: PaymentStatus) -> Evidence {
    let WebhookKind::ChargeFailed {
        class,
        code,
        message,
    } = kind
    else {
        return Evidence::Charged;
    };
    let class = match class {
        OutcomeClass::SoftDecline if status != PaymentStatus::Processing => {
            OutcomeClass::HardDecline
        }
        // "Failed" says nothing was charged, whatever else it says.
        OutcomeClass::Succeeded | OutcomeClass::Unknown => OutcomeClass::TransientNotCharged,
        other => *other,
    };
    Evidence::Answer {
        class,
        code: code.clone(),
        message: message.clone(),
        budget_exhausted: false,
    }
}

/// A refund event: settles a pending refund, or is checked against a
/// final one.
async fn refund(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: Payment,
) -> Result<WebhookResult, EngineError> {
    let Some(refund) = find_refund(deps, msg, &payment).await? else {
        return note(deps, msg, Some(&payment), WebhookResult::Unmatched, None).await;
    };
    let succeeded = matches!(msg.event.kind, WebhookKind::RefundSucceeded { .. });
    match (refund.status, succeeded) {
        (RefundState::Pending, _) => {
            let refund_id = refund.id;
            refunds::settle_reported(deps, &payment, refund, reported(msg)).await?;
            let mut receipt = receipt(deps, msg, Some(&payment), WebhookResult::Applied);
            receipt.refund_id = Some(refund_id);
            store_receipt(deps, receipt, &payment, Vec::new(), None).await
        }
        (RefundState::Succeeded, true) | (RefundState::Failed, false) => {
            note(deps, msg, Some(&payment), WebhookResult::NoEffect, None).await
        }
        (status, _) => {
            let mut finding = finding(msg, &payment, Category::StatusMismatch, status.as_str());
            finding.subject = refund.id.to_string();
            note(
                deps,
                msg,
                Some(&payment),
                WebhookResult::Late,
                Some(finding),
            )
            .await
        }
    }
}

/// The refund an event is about: by the engine's key it echoes (the
/// refund's id), else by the provider's id for it.
async fn find_refund(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: &Payment,
) -> Result<Option<Refund>, EngineError> {
    let by_key = msg
        .event
        .idempotency_key
        .as_deref()
        .and_then(|key| key.parse::<RefundId>().ok());
    if let Some(id) = by_key {
        return Ok(deps.store.refund(&payment.merchant_id, id).await?);
    }
    let provider_refund_id = match &msg.event.kind {
        WebhookKind::RefundSucceeded {
            provider_refund_id, ..
        }
        | WebhookKind::RefundFailed {
            provider_refund_id, ..
        } => provider_refund_id,
        _ => return Ok(None),
    };
    let refunds = deps
        .store
        .refunds_of_payment(&payment.merchant_id, payment.id, None, MAX_REFUNDS_SEARCHED)
        .await?;
    Ok(refunds
        .into_iter()
        .find(|r| r.provider_refund_id.as_deref() == Some(provider_refund_id.as_str())))
}

/// A refund event as the provider's answer to the refund.
fn reported(msg: &ApplyWebhook) -> RefundResponse {
    let (status, provider_refund_id, code) = match &msg.event.kind {
        WebhookKind::RefundSucceeded {
            provider_refund_id, ..
        } => (RefundStatus::Succeeded, provider_refund_id.clone(), None),
        WebhookKind::RefundFailed {
            provider_refund_id,
            code,
            ..
        } => (
            RefundStatus::Failed,
            provider_refund_id.clone(),
            code.clone(),
        ),
        _ => (RefundStatus::Unknown, String::new(), None),
    };
    RefundResponse {
        status,
        provider_refund_id: Some(provider_refund_id),
        code,
        message: None,
        raw: msg.event.raw.to_string(),
    }
}

/// The discrepancy a contradicting event raises: the engine's state
/// (`engine_says`) against what the provider reports.
fn finding(
    msg: &ApplyWebhook,
    payment: &Payment,
    category: Category,
    engine_says: &str,
) -> store::Finding {
    store::Finding {
        category,
        subject: payment.id.to_string(),
        merchant_id: Some(payment.merchant_id.clone()),
        payment_id: Some(payment.id),
        provider: Some(msg.provider.clone()),
        provider_reference: msg.event.provider_payment_id.clone(),
        expected: Some(engine_says.to_string()),
        actual: Some(format!(
            "webhook {}: {}",
            msg.event.id,
            msg.event.kind.name()
        )),
    }
}

/// Records the event's receipt, with an audit entry on the payment.
async fn note(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: Option<&Payment>,
    result: WebhookResult,
    finding: Option<store::Finding>,
) -> Result<WebhookResult, EngineError> {
    let audit = payment
        .map(|p| {
            let kind = if result == WebhookResult::Late {
                "payment.webhook_late"
            } else {
                "payment.webhook_received"
            };
            let mut data = describe(msg);
            data["result"] = json!(result.as_str());
            vec![PaymentEvent::new(p.id, kind, deps.clock.now(), data)]
        })
        .unwrap_or_default();
    if result == WebhookResult::Late {
        tracing::warn!(event_id = msg.event.id, payment_id = %msg.payment_id, "a provider event contradicts a final state; raised as a discrepancy");
    }
    record(deps, msg, payment, result, audit, finding).await
}

async fn record(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: Option<&Payment>,
    result: WebhookResult,
    events: Vec<PaymentEvent>,
    finding: Option<store::Finding>,
) -> Result<WebhookResult, EngineError> {
    let receipt = receipt(deps, msg, payment, result);
    match payment {
        Some(payment) => store_receipt(deps, receipt, payment, events, finding).await,
        None => {
            let record = WebhookRecord {
                receipt,
                merchant_id: None,
                events,
                finding: None,
            };
            Ok(first_or_duplicate(
                deps.store.record_webhook(record).await?,
                result,
            ))
        }
    }
}

async fn store_receipt(
    deps: &PaymentDeps,
    receipt: WebhookReceipt,
    payment: &Payment,
    events: Vec<PaymentEvent>,
    finding: Option<store::Finding>,
) -> Result<WebhookResult, EngineError> {
    let result = receipt.result;
    let record = WebhookRecord {
        receipt,
        merchant_id: Some(payment.merchant_id.clone()),
        events,
        finding: finding.map(|f| (format!("disc_{}", uuid::Uuid::now_v7().simple()), f)),
    };
    Ok(first_or_duplicate(
        deps.store.record_webhook(record).await?,
        result,
    ))
}

/// A receipt that was not new lost a race with a redelivery of the same
/// event (on another instance): this delivery did nothing.
fn first_or_duplicate(new: bool, result: WebhookResult) -> WebhookResult {
    if new {
        result
    } else {
        WebhookResult::Duplicate
    }
}

fn receipt(
    deps: &PaymentDeps,
    msg: &ApplyWebhook,
    payment: Option<&Payment>,
    result: WebhookResult,
) -> WebhookReceipt {
    WebhookReceipt {
        provider: msg.provider.clone(),
        event_id: msg.event.id.clone(),
        kind: msg.event.kind.name().to_string(),
        payment_id: payment.map(|p| p.id),
        refund_id: None,
        result,
        received_at: deps.clock.now(),
    }
}

/// The event, as the audit trail shows it.
fn describe(msg: &ApplyWebhook) -> serde_json::Value {
    json!({
        "provider": msg.provider,
        "event_id": msg.event.id,
        "kind": msg.event.kind.name(),
        "provider_payment_id": msg.event.provider_payment_id,
        "created": msg.event.created,
    })
}
