//! Messages of the reconciler (`actors::reconciler`).

use actix::Message;
use serde::Serialize;

/// Run one recovery pass now.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "RecoveryReport")]
pub struct RunRecovery;

/// Start no new pass; answer once the running one ended (shutdown).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopPasses;

/// What one recovery pass found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// Stuck payments examined.
    pub examined: u32,
    pub resolved: u32,
    pub unresolved: u32,
    /// Held by another live instance.
    pub skipped: u32,
    pub errors: u32,
    /// Scheduled retries that came due and were attempted.
    pub retried: u32,
    /// Pending refunds asked about again, and those that settled.
    pub refunds_examined: u32,
    pub refunds_settled: u32,
    /// Idempotency records past retention, deleted.
    pub pruned_keys: u64,
    /// True when a pass was already running and this one did nothing.
    pub overlapped: bool,
}

/// Run a reconciliation over `[from, to)` now (DESIGN §9): every payment of
/// the window against its provider's records and the ledger. Refused with
/// `Overloaded` while another run is in progress on this instance.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Result<crate::domain::RunReport, crate::error::EngineError>")]
pub struct RunReconciliation {
    pub from: crate::domain::Timestamp,
    pub to: crate::domain::Timestamp,
    /// `timer` or `manual`.
    pub trigger: RunTrigger,
}

/// What started a reconciliation run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunTrigger {
    Timer,
    Manual,
}

impl RunTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            RunTrigger::Timer => "timer",
            RunTrigger::Manual => "manual",
        }
    }
}
