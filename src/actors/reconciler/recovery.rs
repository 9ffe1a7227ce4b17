//! The recovery pass (DESIGN §9 "stuck work"): payments left `processing`
//! by a dead instance and `pending` ones past their age are sent to their
//! order's actor to be looked up; scheduled retries that came due and
//! refunds still pending are sent there too; idempotency records past
//! retention are pruned.

use crate::actors::registry::PaymentRegistry;
use crate::clock::Clock;
use crate::config::ReconcilerSettings;
use crate::domain::{RefundState, Timestamp};
use crate::messages::payment::{RecoverPayment, RecoverRefund, RecoveryOutcome, RetryDue};
use crate::messages::reconciler::RecoveryReport;
use crate::store::Store;
use std::sync::Arc;

/// Payments recovered at once within a pass: bounds the look-ups in flight.
const RECOVERY_CONCURRENCY: usize = 8;

/// Runs `work` on every item, at most [`RECOVERY_CONCURRENCY`] at a time,
/// and returns the results in order.
async fn in_chunks<T, R, F, Fut>(items: &[T], work: F) -> Vec<R>
where
    F: Fn(&T) -> Fut,
    Fut: std::future::Future<Output = R>,
{
    let mut results = Vec::with_capacity(items.len());
    for chunk in items.chunks(RECOVERY_CONCURRENCY) {
        results.extend(futures_util::future::join_all(chunk.iter().map(&work)).await);
    }
    results
}

/// One pass, outside the actor.
pub(super) async fn pass(
    registry: PaymentRegistry,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ReconcilerSettings,
    retention_hours: u64,
) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    let now = clock.now();
    recover_stuck(&registry, store.as_ref(), &settings, now, &mut report).await;
    fire_due_retries(&registry, store.as_ref(), &settings, now, &mut report).await;
    settle_pending_refunds(&registry, store.as_ref(), &settings, now, &mut report).await;
    let retention_ms = i64::try_from(retention_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
    match store
        .prune_idempotency(now.plus_millis(-retention_ms))
        .await
    {
        Ok(pruned) => report.pruned_keys = pruned,
        Err(error) => {
            tracing::warn!(%error, "pruning idempotency keys failed");
            report.errors += 1;
        }
    }
    if let Err(error) = store.maintain(now).await {
        tracing::warn!(%error, "store maintenance failed");
        report.errors += 1;
    }
    if report.examined > 0 || report.retried > 0 || report.pruned_keys > 0 {
        tracing::info!(?report, "recovery pass");
    }
    report
}

/// Sends every stuck payment to its order's actor to be looked up.
async fn recover_stuck(
    registry: &PaymentRegistry,
    store: &dyn Store,
    settings: &ReconcilerSettings,
    now: Timestamp,
    report: &mut RecoveryReport,
) {
    let pending_age_ms = i64::try_from(settings.pending_age.as_millis()).unwrap_or(i64::MAX);
    let pending_before = now.plus_millis(-pending_age_ms);
    let stuck = match store
        .stuck_payments(now, pending_before, registry.holder(), settings.batch_limit)
        .await
    {
        Ok(stuck) => stuck,
        Err(error) => {
            tracing::warn!(%error, "recovery pass could not list stuck payments");
            report.errors += 1;
            return;
        }
    };
    let recovered = in_chunks(&stuck, |s| {
        registry.recover_payment(RecoverPayment {
            merchant_id: s.merchant_id.clone(),
            order_id: s.order_id.clone(),
            payment_id: s.payment_id,
        })
    })
    .await;
    for result in recovered {
        report.examined += 1;
        match result {
            Ok(RecoveryOutcome::Resolved { .. } | RecoveryOutcome::AlreadyResolved) => {
                report.resolved += 1
            }
            Ok(RecoveryOutcome::Unresolved) => report.unresolved += 1,
            Ok(RecoveryOutcome::Skipped) => report.skipped += 1,
            Err(error) => {
                tracing::warn!(%error, "recovering a payment failed");
                report.errors += 1;
            }
        }
    }
}

/// Has every refund pending longer than `pending_age` asked about again,
/// under its own key, by its order's actor.
async fn settle_pending_refunds(
    registry: &PaymentRegistry,
    store: &dyn Store,
    settings: &ReconcilerSettings,
    now: Timestamp,
    report: &mut RecoveryReport,
) {
    let pending_age_ms = i64::try_from(settings.pending_age.as_millis()).unwrap_or(i64::MAX);
    let pending = match store
        .pending_refunds(now.plus_millis(-pending_age_ms), settings.batch_limit)
        .await
    {
        Ok(pending) => pending,
        Err(error) => {
            tracing::warn!(%error, "could not list pending refunds");
            report.errors += 1;
            return;
        }
    };
    let asked = in_chunks(&pending, |r| {
        registry.recover_refund(RecoverRefund {
            merchant_id: r.merchant_id.clone(),
            order_id: r.order_id.clone(),
            refund_id: r.refund_id,
        })
    })
    .await;
    for result in asked {
        report.refunds_examined += 1;
        match result {
            Ok(RefundState::Pending) => {}
            Ok(_) => report.refunds_settled += 1,
            Err(error) => {
                tracing::warn!(%error, "asking about a pending refund failed");
                report.errors += 1;
            }
        }
    }
}

/// Sends every scheduled retry that came due to its order's actor.
async fn fire_due_retries(
    registry: &PaymentRegistry,
    store: &dyn Store,
    settings: &ReconcilerSettings,
    now: Timestamp,
    report: &mut RecoveryReport,
) {
    let due = match store.due_retries(now, settings.batch_limit).await {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "could not list due retries");
            report.errors += 1;
            return;
        }
    };
    let retried = in_chunks(&due, |s| {
        registry.retry_due(RetryDue {
            merchant_id: s.merchant_id.clone(),
            order_id: s.order_id.clone(),
            payment_id: s.payment_id,
        })
    })
    .await;
    for result in retried {
        match result {
            Ok(Some(_)) => report.retried += 1,
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "scheduled retry failed");
                report.errors += 1;
            }
        }
    }
}
