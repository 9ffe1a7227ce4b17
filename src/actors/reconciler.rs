//! The reconciler: finds stuck work and has it finished.
//!
//! For now it runs the recovery pass (DESIGN §9 "stuck work"): payments left
//! `processing` by a dead instance and `pending` ones past their age are
//! sent to their order's actor as `RecoverPayment`, at startup and then every
//! `interval_secs`. Each pass also fires scheduled retries that came due
//! (`RetryDue`) and prunes idempotency records past retention.
//! Comparing against providers' settlement records and the ledger comes with
//! those features.

use super::registry::PaymentRegistry;
use crate::clock::Clock;
use crate::config::ReconcilerSettings;
use crate::domain::{RefundState, Timestamp};
use crate::messages::payment::{RecoverPayment, RecoverRefund, RecoveryOutcome, RetryDue};
use crate::messages::reconciler::{RecoveryReport, RunRecovery, StopPasses};
use crate::store::Store;
use actix::prelude::*;
use std::pin::Pin;
use std::sync::Arc;

/// Payments recovered at once within a pass: bounds the look-ups in flight.
const RECOVERY_CONCURRENCY: usize = 8;
/// How often a stop checks whether the running pass has ended.
const STOP_POLL_MS: u64 = 10;

/// Runs recovery passes, never two at once.
pub struct Reconciler {
    registry: PaymentRegistry,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ReconcilerSettings,
    retention_hours: u64,
    running: bool,
    /// Shutdown began: no new pass starts.
    stopping: bool,
}

impl Reconciler {
    pub fn new(
        registry: PaymentRegistry,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: ReconcilerSettings,
        retention_hours: u64,
    ) -> Self {
        Reconciler {
            registry,
            store,
            clock,
            settings,
            retention_hours,
            running: false,
            stopping: false,
        }
    }
}

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // At startup: attempts a crashed process left behind are found now
        // (those whose lease already expired) or on a later tick.
        if self.settings.run_at_startup {
            ctx.notify(RunRecovery);
        }
        ctx.run_interval(self.settings.interval, |_act, ctx| {
            ctx.notify(RunRecovery);
        });
    }
}

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
async fn pass(
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

impl Handler<RunRecovery> for Reconciler {
    type Result = ResponseActFuture<Self, RecoveryReport>;

    fn handle(&mut self, _msg: RunRecovery, _ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return Box::pin(fut::ready(RecoveryReport::default()));
        }
        if self.running {
            return Box::pin(fut::ready(RecoveryReport {
                overlapped: true,
                ..RecoveryReport::default()
            }));
        }
        self.running = true;
        let work = pass(
            self.registry.clone(),
            self.store.clone(),
            self.clock.clone(),
            self.settings.clone(),
            self.retention_hours,
        );
        Box::pin(work.into_actor(self).map(|report, act, _ctx| {
            act.running = false;
            report
        }))
    }
}

impl Handler<StopPasses> for Reconciler {
    type Result = ResponseActFuture<Self, ()>;

    /// Starts no new pass, and answers once the running one (if any) ended,
    /// so shutdown closes the store only after the reconciler let go of it.
    fn handle(&mut self, _msg: StopPasses, _ctx: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        Box::pin(fut::wrap_future::<_, Self>(async {}).then(|(), act, _ctx| wait_idle(act)))
    }
}

/// Resolves once no pass is running, checking every [`STOP_POLL_MS`].
fn wait_idle(act: &mut Reconciler) -> Pin<Box<dyn ActorFuture<Reconciler, Output = ()>>> {
    if !act.running {
        return Box::pin(fut::ready(()));
    }
    let pause = tokio::time::sleep(std::time::Duration::from_millis(STOP_POLL_MS));
    Box::pin(fut::wrap_future::<_, Reconciler>(pause).then(|(), act, _ctx| wait_idle(act)))
}
