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
use crate::messages::reconciler::{RecoveryReport, RunRecovery, StopPasses};
use crate::store::Store;
use actix::prelude::*;
use std::pin::Pin;
use std::sync::Arc;

mod recovery;

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
        let work = recovery::pass(
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
