//! Creating a payment: the anomaly rules, idempotency, the order guard,
//! then the attempts.

use super::call::Fence;
use super::{attempts, blocked, PaymentDeps};
use crate::domain::{Payment, PaymentEvent, PaymentId, PaymentObject, PaymentStatus, Timestamp};
use crate::error::EngineError;
use crate::messages::payment::{CreatePayment, CreatedPayment};
use crate::store::{BeginOutcome, IdempotencyRecord, NewPayment, StoreError};
use serde_json::json;
use std::time::Instant;

/// Handles [`CreatePayment`] inside the order's actor.
pub(super) async fn create(
    deps: &PaymentDeps,
    msg: CreatePayment,
) -> Result<CreatedPayment, EngineError> {
    // A duplicate that finished before is answered by the engine's handle
    // without reaching this actor; one that arrived while the first was
    // running here waited in the mailbox and finds the key taken below.
    let request = &msg.request;
    // The anomaly rules judge the payment before it is routed: a blocked
    // one never reaches a provider.
    let flags = deps
        .anomaly
        .evaluate(deps.clock.now(), &blocked::facts(&msg))
        .await;
    if blocked::blocks(&flags) {
        return create_blocked(deps, &msg, flags).await;
    }
    let route = crate::routing::route(
        &deps.providers,
        deps.strategy,
        request.amount,
        request.currency,
        request.provider.as_deref(),
        &request.payment_method,
        deps.clock.now(),
    );
    if route.candidates.is_empty() {
        // Validated at the edge; reaching here means configuration changed.
        return Err(EngineError::invalid(
            "currency",
            "no configured provider supports this currency",
        ));
    }
    let now = deps.clock.now();
    let mut payment = new_payment(&msg, now);
    payment.anomaly_flags = blocked::names(&flags);
    let mut events = vec![
        PaymentEvent::status_change(
            payment.id,
            None,
            payment.status,
            now,
            json!({ "amount": payment.amount, "currency": payment.currency }),
        ),
        PaymentEvent::new(payment.id, "payment.routed", now, route.reason.clone()),
    ];
    // The first attempt is written with the payment: one durable write
    // before the provider call (DESIGN §12). Its event comes after the
    // creation's (event ids sort by creation time).
    let (attempt, started) = attempts::new_attempt(&payment, &route.candidates[0], now);
    payment.provider = Some(attempt.provider.clone());
    payment.attempts.push(attempt);
    events.push(started);
    let written = Instant::now();
    if let Some(refused) = begin(deps, &msg, &payment, events, flags).await? {
        return refused;
    }
    // User-supplied values are logged through Debug, which quotes and
    // escapes them: an order id cannot forge log fields or lines.
    tracing::Span::current().record("payment_id", tracing::field::display(payment.id));
    tracing::info!(payment_id = %payment.id, order_id = ?payment.order_id, merchant = ?payment.merchant_id.as_str(), "payment created");
    let fence = Fence::from_write(deps, written);
    let first = attempts::FirstAttempt::Written;
    match attempts::run(deps, payment, &route.candidates, fence, first).await {
        Err(EngineError::Store(StoreError::LeaseLost(_))) => abandoned(deps, &msg).await,
        Ok(finished) => {
            // Feeds `failed_streak`.
            deps.anomaly
                .record_outcome(deps.clock.now(), &finished.payment);
            Ok(finished)
        }
        failed => failed,
    }
}

/// A payment a rule blocks: written with its flags (claiming the key and
/// the order like any other), then failed `blocked_by_rule` at once.
async fn create_blocked(
    deps: &PaymentDeps,
    msg: &CreatePayment,
    flags: Vec<crate::domain::Flag>,
) -> Result<CreatedPayment, EngineError> {
    let now = deps.clock.now();
    let mut payment = new_payment(msg, now);
    payment.anomaly_flags = blocked::names(&flags);
    let events = vec![PaymentEvent::status_change(
        payment.id,
        None,
        payment.status,
        now,
        json!({ "amount": payment.amount, "currency": payment.currency }),
    )];
    if let Some(refused) = begin(deps, msg, &payment, events, flags.clone()).await? {
        return refused;
    }
    blocked::fail(deps, payment, &flags).await
}

/// The answer after this process lost the order's lease mid-payment (it was
/// frozen past the lease, and another instance's recovery took over): the
/// payment as the new holder left it, or "in progress, retry" if it is not
/// finished yet. Never an error of ours: nothing is wrong with the payment.
async fn abandoned(deps: &PaymentDeps, msg: &CreatePayment) -> Result<CreatedPayment, EngineError> {
    match deps
        .store
        .idempotency_record(&msg.merchant_id, &msg.idempotency_key)
        .await?
    {
        Some(record) => replay(record, msg),
        None => Err(EngineError::IdempotencyKeyInUse),
    }
}

/// The payment a request creates, in its initial status, without attempts.
fn new_payment(msg: &CreatePayment, now: Timestamp) -> Payment {
    let request = &msg.request;
    Payment {
        id: PaymentId::new(),
        object: PaymentObject,
        merchant_id: msg.merchant_id.clone(),
        status: PaymentStatus::INITIAL,
        amount: request.amount,
        amount_refunded: 0,
        amount_refund_pending: 0,
        currency: request.currency,
        customer_id: request.customer_id.clone(),
        order_id: request.order_id.clone(),
        payment_method: request.payment_method.clone(),
        description: request.description.clone(),
        provider: None,
        provider_payment_id: None,
        failure_code: None,
        failure_message: None,
        next_attempt_at: None,
        attempts: Vec::new(),
        anomaly_flags: Vec::new(),
        metadata: request.metadata.clone(),
        recovery_attempts: 0,
        created_at: now,
        updated_at: now,
    }
}

/// The one write before the provider call: key, order claim, payment,
/// first attempt and events. `Some` is the answer when it was refused (the
/// key was used before, or the order has a live payment).
async fn begin(
    deps: &PaymentDeps,
    msg: &CreatePayment,
    payment: &Payment,
    events: Vec<PaymentEvent>,
    flags: Vec<crate::domain::Flag>,
) -> Result<Option<Result<CreatedPayment, EngineError>>, EngineError> {
    let now = payment.created_at;
    let new = NewPayment {
        payment: payment.clone(),
        idempotency_key: msg.idempotency_key.clone(),
        fingerprint: msg.fingerprint.clone(),
        holder: deps.holder.clone(),
        lease_expires_at: now.plus_millis(deps.lease_ttl_ms),
        events,
        flags,
    };
    match deps.begin_payment(new).await? {
        BeginOutcome::Started => Ok(None),
        // Another process claimed the key between our read and our write.
        BeginOutcome::KeyExists(record) => Ok(Some(replay(record, msg))),
        BeginOutcome::OrderBusy { payment_id, status } => Ok(Some(Err(if status.is_paid() {
            EngineError::OrderAlreadyPaid { payment_id }
        } else {
            EngineError::OrderPaymentInProgress { payment_id }
        }))),
    }
}

/// The answer for a key that was used before.
fn replay(record: IdempotencyRecord, msg: &CreatePayment) -> Result<CreatedPayment, EngineError> {
    CreatedPayment::replay(record, &msg.merchant_id, &msg.fingerprint)
}
