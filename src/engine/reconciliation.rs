//! The handle's reconciliation reads and actions (DESIGN §6, §9): runs and
//! the discrepancies they found, and a person's resolution of one.

use super::{EngineHandle, Page};
use crate::clock::{Clock, SystemClock};
use crate::domain::{Discrepancy, DiscrepancyStatus, RunReport, Timestamp};
use crate::error::EngineError;
use crate::messages::reconciler::{RunReconciliation, RunTrigger};
use crate::store::DiscrepancyFilter;

/// Longest window one run may cover: wider runs belong split by day or
/// month (a run holds the whole window's findings in its report counts).
pub const MAX_RUN_WINDOW_DAYS: i64 = 93;
/// Longest resolution note kept: a note, not a document.
pub const MAX_RESOLUTION_CHARS: usize = 2_000;
/// Discrepancies listed with one run (`GET /v1/reconciliation/runs/{id}`);
/// the rest are listed with `run_id` at `/v1/reconciliation/discrepancies`.
pub const RUN_DISCREPANCIES_LISTED: u32 = 100;

impl EngineHandle {
    /// Runs a reconciliation over `[from, to)` now and returns its report
    /// (stored with the timer's runs).
    pub async fn run_reconciliation(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<RunReport, EngineError> {
        if from >= to {
            return Err(EngineError::invalid("to", "to must be after from"));
        }
        let window_ms = (to.as_micros() - from.as_micros()) / 1000;
        if window_ms > MAX_RUN_WINDOW_DAYS * 86_400_000 {
            return Err(EngineError::invalid(
                "to",
                format!("a run covers at most {MAX_RUN_WINDOW_DAYS} days; split the window"),
            ));
        }
        let run = RunReconciliation {
            from,
            to,
            trigger: RunTrigger::Manual,
        };
        self.inner
            .reconciler
            .send(run)
            .await
            .map_err(|_| EngineError::ShuttingDown)?
    }

    /// Discrepancies matching `filter`, newest first (narrow it by
    /// `merchant_id` for a merchant: its own payments' only).
    pub async fn discrepancies(
        &self,
        filter: DiscrepancyFilter,
    ) -> Result<Page<Discrepancy>, EngineError> {
        let store = self.inner.store.clone();
        let limit = filter.limit;
        let asked = DiscrepancyFilter {
            limit: limit.saturating_add(1),
            ..filter
        };
        let mut data = self
            .on_engine(async move { store.discrepancies(&asked).await })
            .await??;
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(Page { data, has_more })
    }

    /// Marks open discrepancy `id` resolved with a person's `resolution`.
    pub async fn resolve_discrepancy(
        &self,
        id: &str,
        resolution: &str,
    ) -> Result<Discrepancy, EngineError> {
        let resolution = resolution.trim();
        if resolution.is_empty() || resolution.chars().count() > MAX_RESOLUTION_CHARS {
            return Err(EngineError::invalid(
                "resolution",
                format!("resolution must be 1 to {MAX_RESOLUTION_CHARS} characters"),
            ));
        }
        let found = self.discrepancy(id).await?;
        if found.status == DiscrepancyStatus::Resolved {
            return Err(EngineError::AlreadyResolved);
        }
        let (store, owned_id, note) = (
            self.inner.store.clone(),
            id.to_string(),
            resolution.to_string(),
        );
        let now = SystemClock.now();
        let resolved = self
            .on_engine(async move { store.resolve_discrepancy(&owned_id, &note, now).await })
            .await??;
        if !resolved {
            // Another operator resolved it between the read and the write.
            return Err(EngineError::AlreadyResolved);
        }
        tracing::info!(discrepancy_id = id, category = %found.category, "discrepancy resolved");
        self.discrepancy(id).await
    }

    async fn discrepancy(&self, id: &str) -> Result<Discrepancy, EngineError> {
        let filter = DiscrepancyFilter {
            id: Some(id.to_string()),
            limit: 1,
            ..DiscrepancyFilter::default()
        };
        self.discrepancies(filter)
            .await?
            .data
            .pop()
            .ok_or(EngineError::NotFound {
                resource: "discrepancy",
            })
    }

    /// Past runs, newest first (timer runs too).
    pub async fn reconciliation_runs(
        &self,
        starting_after: Option<String>,
        limit: u32,
    ) -> Result<Page<RunReport>, EngineError> {
        let store = self.inner.store.clone();
        let asked = limit.saturating_add(1);
        let mut data = self
            .on_engine(async move { store.runs(None, starting_after.as_deref(), asked).await })
            .await??;
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(Page { data, has_more })
    }

    /// One past run, with (up to [`RUN_DISCREPANCIES_LISTED`] of) the
    /// discrepancies it found first.
    pub async fn reconciliation_run(&self, id: &str) -> Result<RunReport, EngineError> {
        let store = self.inner.store.clone();
        let owned = id.to_string();
        let mut report = self
            .on_engine(async move { store.runs(Some(&owned), None, 1).await })
            .await??
            .pop()
            .ok_or(EngineError::NotFound {
                resource: "reconciliation run",
            })?;
        let filter = DiscrepancyFilter {
            run_id: Some(id.to_string()),
            limit: RUN_DISCREPANCIES_LISTED,
            ..DiscrepancyFilter::default()
        };
        report.discrepancies = self.discrepancies(filter).await?.data;
        Ok(report)
    }
}
