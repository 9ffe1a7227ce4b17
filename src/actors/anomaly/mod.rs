//! The anomaly actor (DESIGN §10): sliding-window counters per customer,
//! bounded per customer and in number, idle customers evicted.
//!
//! The windows ([`AnomalyWindows`]) are pure state behind a lock, held by
//! an [`AnomalyDetector`]. The actor owns one detector: it answers the
//! typed messages (tests and the engine drive it the same way), reads
//! "now" from its clock, and sweeps idle customers on a timer. A caller on
//! the payment path can skip the mailbox hop and call a clone of the
//! detector directly: the lock is held for well under a microsecond and
//! both paths see the same windows.
//!
//! - `customer`: one customer's fixed-size windows;
//! - `table`: the capped, least-recently-seen table of customers;
//! - `windows`: the rules over them (evaluate, outcomes, warm-up);
//! - `gate`: what the payment path holds: the detector, and in `cluster`
//!   scope the store it counts in;
//! - `warm`: rebuilding the windows from the store at boot.

mod customer;
mod gate;
mod table;
mod warm;
mod windows;

pub use gate::AnomalyGate;
pub use table::BYTES_PER_CUSTOMER;
pub use warm::warm_from_store;
pub use windows::AnomalyWindows;

use crate::clock::Clock;
use crate::config::AnomalySettings;
use crate::domain::{CustomerCounts, Flag, MerchantId, PastPayment, PaymentFacts, Timestamp};
use crate::messages::anomaly::{AnomalySnapshot, Evaluate, RecordOutcome, Snapshot, Warm};
use actix::prelude::*;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Messages waiting for the anomaly actor; senders wait when it is full.
pub const ANOMALY_MAILBOX_CAPACITY: usize = 1_024;
/// How often the actor looks for idle customers, in milliseconds (they are
/// also evicted as payments arrive).
pub const IDLE_SWEEP_INTERVAL_MS: u64 = 10_000;
/// Payments per `Warm` message the warm-up should send: a page read from
/// the store, so neither the query nor the message holds more.
pub const WARM_PAGE_PAYMENTS: usize = 10_000;
/// Most payments a warm-up should read (the newest ones in the horizon):
/// the windows cannot hold more customers than `max_customers` anyway.
pub const WARM_MAX_PAYMENTS: usize = 1_000_000;

/// The windows behind a lock: cheap to clone, shared by the actor and by
/// callers that cannot afford a mailbox hop on the payment path.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    windows: Arc<Mutex<AnomalyWindows>>,
}

impl AnomalyDetector {
    /// A detector for validated settings (`Config::validate`).
    pub fn new(settings: AnomalySettings) -> Self {
        AnomalyDetector {
            windows: Arc::new(Mutex::new(AnomalyWindows::new(settings))),
        }
    }

    /// See [`AnomalyWindows::evaluate`].
    pub fn evaluate(&self, now: Timestamp, facts: &PaymentFacts) -> Vec<Flag> {
        self.windows.lock().evaluate(now, facts)
    }

    /// See [`AnomalyWindows::evaluate_shared`].
    pub fn evaluate_shared(
        &self,
        now: Timestamp,
        facts: &PaymentFacts,
        shared: Option<CustomerCounts>,
    ) -> Vec<Flag> {
        self.windows.lock().evaluate_shared(now, facts, shared)
    }

    /// See [`AnomalyWindows::record_outcome`].
    pub fn record_outcome(
        &self,
        now: Timestamp,
        merchant: &MerchantId,
        customer_id: &str,
        succeeded: bool,
    ) {
        self.windows
            .lock()
            .record_outcome(now, merchant, customer_id, succeeded)
    }

    /// See [`AnomalyWindows::warm`].
    pub fn warm(&self, payments: &[PastPayment]) -> usize {
        self.windows.lock().warm(payments)
    }

    /// Forgets customers idle at `now`; returns how many.
    pub fn evict_idle(&self, now: Timestamp) -> usize {
        self.windows.lock().evict_idle(now)
    }

    /// The windows' state after evicting what is idle at `now`.
    pub fn snapshot(&self, now: Timestamp) -> AnomalySnapshot {
        let mut windows = self.windows.lock();
        windows.evict_idle(now);
        windows.snapshot()
    }
}

/// Owns the anomaly windows and answers [`crate::messages::anomaly`].
pub struct AnomalyActor {
    detector: AnomalyDetector,
    clock: Arc<dyn Clock>,
}

impl AnomalyActor {
    pub fn new(settings: AnomalySettings, clock: Arc<dyn Clock>) -> Self {
        AnomalyActor {
            detector: AnomalyDetector::new(settings),
            clock,
        }
    }

    /// The detector this actor owns, for direct calls.
    pub fn detector(&self) -> AnomalyDetector {
        self.detector.clone()
    }
}

impl Actor for AnomalyActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(ANOMALY_MAILBOX_CAPACITY);
        ctx.run_interval(
            Duration::from_millis(IDLE_SWEEP_INTERVAL_MS),
            |act, _ctx| {
                let evicted = act.detector.evict_idle(act.clock.now());
                if evicted > 0 {
                    tracing::debug!(evicted, "idle anomaly customers forgotten");
                }
            },
        );
    }
}

impl Handler<Evaluate> for AnomalyActor {
    type Result = MessageResult<Evaluate>;

    fn handle(&mut self, Evaluate(facts): Evaluate, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.detector.evaluate(self.clock.now(), &facts))
    }
}

impl Handler<RecordOutcome> for AnomalyActor {
    type Result = ();

    fn handle(&mut self, msg: RecordOutcome, _ctx: &mut Self::Context) {
        let now = self.clock.now();
        self.detector
            .record_outcome(now, &msg.merchant, &msg.customer_id, msg.succeeded);
    }
}

impl Handler<Warm> for AnomalyActor {
    type Result = MessageResult<Warm>;

    fn handle(&mut self, Warm(payments): Warm, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.detector.warm(&payments))
    }
}

impl Handler<Snapshot> for AnomalyActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _msg: Snapshot, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.detector.snapshot(self.clock.now()))
    }
}
