//! The reconciler (DESIGN §9): finds stuck work and has it finished, and
//! checks the books.
//!
//! Two jobs, each never running twice at once:
//!
//! - `recovery`: payments left `processing` by a dead instance and
//!   `pending` ones past their age are sent to their order's actor as
//!   `RecoverPayment`, at startup and then every `interval_secs`; each pass
//!   also fires scheduled retries that came due and prunes idempotency
//!   records past retention.
//! - `run`: a reconciliation run compares every payment of a window with
//!   its provider's settlement records and with the ledger, and stores what
//!   disagrees as discrepancies. The timer runs one after each recovery
//!   pass: over the last `window_secs` at start and then at most every
//!   [`FULL_RUN_INTERVAL_MS`], and in between only over what is new since
//!   its last run (see [`Reconciler::timer_window`]); `RunReconciliation`
//!   runs one on demand.

use super::registry::PaymentRegistry;
use crate::actors::provider::ProviderDirectory;
use crate::clock::Clock;
use crate::config::ReconcilerSettings;
use crate::domain::RunReport;
use crate::error::EngineError;
use crate::messages::reconciler::{
    RecoveryReport, RunReconciliation, RunRecovery, RunTrigger, StopPasses,
};
use crate::store::Store;
use actix::prelude::*;
use std::pin::Pin;
use std::sync::Arc;

mod recovery;
mod run;

/// How often a stop checks whether the running pass has ended.
const STOP_POLL_MS: u64 = 10;

/// Runs recovery passes, never two at once.
pub struct Reconciler {
    registry: PaymentRegistry,
    providers: ProviderDirectory,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ReconcilerSettings,
    retention_hours: u64,
    running: bool,
    /// A reconciliation run is in progress.
    reconciling: bool,
    /// When the timer last started a run.
    last_timer_run: Option<std::time::Instant>,
    /// When the timer last started a run over the whole window.
    last_full_run: Option<std::time::Instant>,
    /// The end of the timer's last run that finished.
    covered_to: Option<crate::domain::Timestamp>,
    /// Shutdown began: no new pass starts.
    stopping: bool,
}

impl Reconciler {
    pub fn new(
        registry: PaymentRegistry,
        providers: ProviderDirectory,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: ReconcilerSettings,
        retention_hours: u64,
    ) -> Self {
        Reconciler {
            registry,
            providers,
            store,
            clock,
            settings,
            retention_hours,
            running: false,
            reconciling: false,
            last_timer_run: None,
            last_full_run: None,
            covered_to: None,
            stopping: false,
        }
    }

    fn run_deps(&self) -> run::RunDeps {
        let pending_age_ms =
            i64::try_from(self.settings.pending_age.as_millis()).unwrap_or(i64::MAX);
        run::RunDeps {
            store: self.store.clone(),
            providers: self.providers.clone(),
            clock: self.clock.clone(),
            pending_age_ms,
            processing_age_ms: pending_age_ms.max(MIN_STUCK_PROCESSING_MS),
        }
    }

    /// The timer's run, unless one is running.
    fn timer_run(&mut self, ctx: &mut Context<Self>) {
        let recent = self.last_timer_run.is_some_and(|at| {
            at.elapsed() < std::time::Duration::from_millis(MIN_TIMER_RUN_INTERVAL_MS)
        });
        if self.reconciling || self.stopping || recent {
            return;
        }
        self.last_timer_run = Some(std::time::Instant::now());
        let to = self.clock.now();
        let run = RunReconciliation {
            from: self.timer_window(to),
            to,
            trigger: RunTrigger::Timer,
        };
        ctx.spawn(fut::wrap_future::<_, Self>(ctx.address().send(run)).map(
            move |answer, act, _| match answer {
                Ok(Ok(_)) => act.covered_to = Some(to),
                Ok(Err(error)) => tracing::warn!(%error, "timer reconciliation run failed"),
                Err(_) => {}
            },
        ));
    }

    /// Where a timer run ending at `to` starts. Re-checking the whole
    /// `window_secs` every `interval_secs` made each run read every payment
    /// of the last day: under sustained load (1,500 payments/s) runs took
    /// 20-30 s of every minute and halved throughput. So the whole window
    /// is checked at start and then at most every [`FULL_RUN_INTERVAL_MS`];
    /// the runs between look back only to where the last finished one
    /// ended, less [`OVERLAP_MS`], so a payment that settles, or whose
    /// provider record appears, shortly after a run is checked again once
    /// it has. Later settlements wait for the next full run: a longer
    /// overlap re-reads minutes of payments every minute (two intervals,
    /// as first built, made each run read three minutes of payments and
    /// still cost 40 % of throughput at full load, measured).
    fn timer_window(&mut self, to: crate::domain::Timestamp) -> crate::domain::Timestamp {
        let window_ms = i64::try_from(self.settings.window.as_millis()).unwrap_or(i64::MAX);
        let whole = to.plus_millis(-window_ms);
        let full_due = self.last_full_run.is_none_or(|at| {
            at.elapsed() >= std::time::Duration::from_millis(FULL_RUN_INTERVAL_MS)
        });
        match self.covered_to {
            Some(covered) if !full_due => whole.max(covered.plus_millis(-OVERLAP_MS)),
            _ => {
                self.last_full_run = Some(std::time::Instant::now());
                whole
            }
        }
    }
}

/// Timer runs over the whole `window_secs` are made at most this often
/// (and at start); the runs between check only what is new.
pub const FULL_RUN_INTERVAL_MS: u64 = 60 * 60 * 1000;
/// How far a timer run between two full ones looks back before the end of
/// the last one: longer than a payment stays undecided in the common case
/// (a provider call's timeout, a lease's life).
pub const OVERLAP_MS: i64 = 60 * 1000;
/// The timer starts runs at most this often, however short the recovery
/// interval (tests poll recovery every few milliseconds).
const MIN_TIMER_RUN_INTERVAL_MS: u64 = 1_000;
/// A payment still `processing` this long is stuck whatever the pending
/// age: its lease would have been renewed many times over.
const MIN_STUCK_PROCESSING_MS: i64 = 5 * 60 * 1000;

impl Actor for Reconciler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // At startup: attempts a crashed process left behind are found now
        // (those whose lease already expired) or on a later tick.
        if self.settings.run_at_startup {
            ctx.notify(RunRecovery);
        }
        ctx.run_interval(self.settings.interval, |act, ctx| {
            ctx.notify(RunRecovery);
            act.timer_run(ctx);
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

impl Handler<RunReconciliation> for Reconciler {
    type Result = ResponseActFuture<Self, Result<RunReport, EngineError>>;

    fn handle(&mut self, msg: RunReconciliation, _ctx: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return Box::pin(fut::ready(Err(EngineError::ShuttingDown)));
        }
        if self.reconciling {
            return Box::pin(fut::ready(Err(EngineError::Overloaded {
                what: "a reconciliation run is in progress",
            })));
        }
        self.reconciling = true;
        let deps = self.run_deps();
        let work = async move { run::reconcile(&deps, msg.from, msg.to, msg.trigger).await };
        Box::pin(work.into_actor(self).map(|report, act, _ctx| {
            act.reconciling = false;
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

/// Resolves once no pass or run is running, checking every [`STOP_POLL_MS`].
fn wait_idle(act: &mut Reconciler) -> Pin<Box<dyn ActorFuture<Reconciler, Output = ()>>> {
    if !act.running && !act.reconciling {
        return Box::pin(fut::ready(()));
    }
    let pause = tokio::time::sleep(std::time::Duration::from_millis(STOP_POLL_MS));
    Box::pin(fut::wrap_future::<_, Reconciler>(pause).then(|(), act, _ctx| wait_idle(act)))
}
