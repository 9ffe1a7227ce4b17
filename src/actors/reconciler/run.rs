//! A reconciliation run (DESIGN §9): every payment of a window compared
//! with its provider's record and with the ledger; what disagrees is stored
//! as a discrepancy, once.
//!
//! Memory stays bounded whatever the window: each provider's records are
//! read a page at a time into a staging table in the engine's database,
//! then every comparison is a paged query there (see `store::sql::reconcile`),
//! so at most one page of records or findings is held at once.

use crate::actors::provider::{ProviderDirectory, ProviderEntry};
use crate::clock::Clock;
use crate::domain::{Category, PaymentId, PaymentStatus, RunReport, Timestamp};
use crate::error::EngineError;
use crate::messages::provider::Settlements;
use crate::messages::reconciler::RunTrigger;
use crate::providers::{ProviderError, SettlementRecord};
use crate::store::{
    Check, DiscrepancyFilter, Finding, FindingQuery, MatchedRecord, StagedRecord, Store,
};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

/// Findings or records read per page.
const PAGE: u32 = 500;
/// Pages of one provider's records read in one run before giving up on it
/// (a bound on the loop; a window that needs more is too wide).
const MAX_PROVIDER_PAGES: usize = 10_000;
/// Provider records are read this far beyond the window on both sides: a
/// charge is stamped a little after its payment, and one at the window's
/// edge must still find its payment (only those inside count as missing).
const RECORD_MARGIN_MS: i64 = 10 * 60 * 1000;
/// Discrepancies listed in a run's report (`by_category` counts them all).
const MAX_LISTED: u32 = 100;

/// What a run needs from the engine.
pub(crate) struct RunDeps {
    pub store: Arc<dyn Store>,
    pub providers: ProviderDirectory,
    pub clock: Arc<dyn Clock>,
    /// A payment `pending` longer than this is stuck.
    pub pending_age_ms: i64,
    /// A payment `processing` longer than this is stuck (its lease could
    /// have been renewed many times over).
    pub processing_age_ms: i64,
}

/// Tallies of one run.
#[derive(Default)]
struct Tally {
    by_category: BTreeMap<String, u64>,
    /// Payments with at least one finding.
    mismatched_payments: HashSet<PaymentId>,
    /// Findings about no payment (records the engine has no payment for).
    unmatched: u64,
    new: u64,
}

/// Runs one reconciliation over `[from, to)`.
pub(crate) async fn reconcile(
    deps: &RunDeps,
    from: Timestamp,
    to: Timestamp,
    trigger: RunTrigger,
) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let run_id = format!("recon_{}", uuid::Uuid::now_v7().simple());
    let read = stage_providers(deps, &run_id, from, to).await;
    let mut tally = Tally::default();
    let outcome = compare(deps, &run_id, from, to, read, &mut tally).await;
    if let Err(error) = deps.store.unstage_records(&run_id).await {
        tracing::warn!(%error, run_id, "could not drop a run's staged records");
    }
    outcome?;
    let checked = deps.store.payments_in_window(from, to).await? + tally.unmatched;
    let mismatched = tally.mismatched_payments.len() as u64 + tally.unmatched;
    let filter = DiscrepancyFilter {
        run_id: Some(run_id.clone()),
        limit: MAX_LISTED,
        ..DiscrepancyFilter::default()
    };
    let report = RunReport {
        id: run_id,
        object: "reconciliation_run",
        from,
        to,
        checked,
        matched: checked.saturating_sub(mismatched),
        mismatched,
        by_category: tally.by_category,
        discrepancies: deps.store.discrepancies(&filter).await?,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        trigger: trigger.as_str().to_string(),
        created_at: deps.clock.now(),
    };
    deps.store.save_run(report.clone()).await?;
    tracing::info!(
        run_id = report.id,
        checked = report.checked,
        mismatched = report.mismatched,
        new = tally.new,
        by_category = ?report.by_category,
        duration_ms = report.duration_ms,
        "reconciliation run"
    );
    Ok(report)
}

/// Stages every provider's records that it can give; returns the names of
/// those whose records were read in full (only their payments can be
/// missing at the provider).
async fn stage_providers(
    deps: &RunDeps,
    run_id: &str,
    from: Timestamp,
    to: Timestamp,
) -> Vec<String> {
    let mut read = Vec::new();
    for entry in deps
        .providers
        .entries()
        .iter()
        .filter(|entry| !entry.wallet)
    {
        match stage_provider(deps, run_id, entry, from, to).await {
            Ok(()) => read.push(entry.name.clone()),
            Err(ProviderError::Unsupported(why)) => {
                tracing::debug!(
                    provider = entry.name,
                    why,
                    "provider offers no settlement records"
                )
            }
            Err(error) => {
                tracing::warn!(provider = entry.name, %error, "could not read the provider's records; its payments are not compared this run")
            }
        }
    }
    read
}

async fn stage_provider(
    deps: &RunDeps,
    run_id: &str,
    entry: &ProviderEntry,
    from: Timestamp,
    to: Timestamp,
) -> Result<(), ProviderError> {
    let (from, to) = (
        from.plus_millis(-RECORD_MARGIN_MS),
        to.plus_millis(RECORD_MARGIN_MS),
    );
    let mut cursor = None;
    for _ in 0..MAX_PROVIDER_PAGES {
        let page = entry
            .addr
            .send(Settlements { from, to, cursor })
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))??;
        let records = page
            .records
            .into_iter()
            .map(|record| staged(&entry.name, record))
            .collect();
        deps.store
            .stage_records(run_id, records)
            .await
            .map_err(|e| ProviderError::Unreachable(e.to_string()))?;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
    Err(ProviderError::Malformed(format!(
        "more than {MAX_PROVIDER_PAGES} pages of records: narrow the window"
    )))
}

fn staged(provider: &str, record: SettlementRecord) -> StagedRecord {
    // The engine's key names its payment: `{payment_id}-{attempt}`.
    let payment_id = record
        .idempotency_key
        .as_deref()
        .and_then(|key| key.rsplit_once('-'))
        .and_then(|(payment, _)| payment.parse().ok());
    StagedRecord {
        provider: provider.to_string(),
        reference: record.provider_payment_id,
        kind: record.kind,
        payment_id,
        merchant_id: record.merchant_id,
        order_id: record.order_id,
        amount: record.amount,
        currency: record.currency.to_ascii_lowercase(),
        fee: record.fee,
        status: record.status,
        amount_refunded: record.amount_refunded,
        created_at: record.created_at,
    }
}

/// Every comparison of the run, recorded as it goes.
async fn compare(
    deps: &RunDeps,
    run_id: &str,
    from: Timestamp,
    to: Timestamp,
    providers: Vec<String>,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    compare_matched(deps, run_id, tally).await?;
    let now = deps.clock.now();
    for check in Check::ALL {
        let mut query = FindingQuery {
            run_id: run_id.to_string(),
            check,
            from,
            to,
            providers: providers.clone(),
            pending_before: now.plus_millis(-deps.pending_age_ms),
            processing_before: now.plus_millis(-deps.processing_age_ms),
            after: None,
            limit: PAGE,
        };
        loop {
            let findings = deps.store.findings(&query).await?;
            let Some(last) = findings.last() else { break };
            query.after = Some(last.subject.clone());
            let full = findings.len() == PAGE as usize;
            record(deps, run_id, findings, tally).await?;
            if !full {
                break;
            }
        }
    }
    Ok(())
}

/// Compares each record that names a payment with what the engine holds.
async fn compare_matched(
    deps: &RunDeps,
    run_id: &str,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    let mut after = String::new();
    loop {
        let page = deps.store.matched_records(run_id, &after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.record.reference.clone();
        let full = page.len() == PAGE as usize;
        let findings = page.iter().flat_map(differences).collect();
        record(deps, run_id, findings, tally).await?;
        if !full {
            return Ok(());
        }
    }
}

/// What the provider's record says the engine's payment should be.
fn expected_provider_status(status: PaymentStatus) -> Option<&'static str> {
    match status {
        PaymentStatus::Succeeded => Some("succeeded"),
        PaymentStatus::PartiallyRefunded => Some("partially_refunded"),
        PaymentStatus::Refunded => Some("refunded"),
        // Still being decided: the stuck checks watch those.
        PaymentStatus::Processing | PaymentStatus::Pending => None,
        PaymentStatus::Failed | PaymentStatus::RetryScheduled | PaymentStatus::NeedsReview => {
            Some("no charge")
        }
    }
}

/// How one provider record disagrees with the engine's payment.
fn differences(m: &MatchedRecord) -> Vec<Finding> {
    let r = &m.record;
    let Some(payment) = r.payment_id else {
        return Vec::new();
    };
    let finding = |category: Category, aspect: &str, expected: String, actual: String| Finding {
        category,
        subject: format!("{payment}{aspect}"),
        merchant_id: Some(m.merchant_id.clone()),
        payment_id: Some(payment),
        provider: Some(r.provider.clone()),
        provider_reference: Some(r.reference.clone()),
        expected: Some(expected),
        actual: Some(actual),
    };
    let mut found = Vec::new();
    if r.amount != m.amount {
        found.push(finding(
            Category::AmountMismatch,
            "",
            m.amount.to_string(),
            r.amount.to_string(),
        ));
    }
    if !r.currency.eq_ignore_ascii_case(&m.currency) {
        found.push(finding(
            Category::CurrencyMismatch,
            "",
            m.currency.clone(),
            r.currency.clone(),
        ));
    }
    if let Some(expected) = expected_provider_status(m.status) {
        if expected != r.status {
            found.push(finding(
                Category::StatusMismatch,
                "",
                expected.into(),
                r.status.clone(),
            ));
        }
    }
    if r.amount_refunded != m.amount_refunded {
        let (expected, actual) = (
            format!("amount_refunded {}", m.amount_refunded),
            format!("amount_refunded {}", r.amount_refunded),
        );
        found.push(finding(
            Category::AmountMismatch,
            ":refunded",
            expected,
            actual,
        ));
    }
    let captured = matches!(expected_provider_status(m.status), Some(s) if s != "no charge");
    if captured && r.fee != m.booked_fee {
        found.push(finding(
            Category::FeeMismatch,
            "",
            m.booked_fee.to_string(),
            r.fee.to_string(),
        ));
    }
    found
}

/// Stores `findings` (once each) and counts them.
async fn record(
    deps: &RunDeps,
    run_id: &str,
    findings: Vec<Finding>,
    tally: &mut Tally,
) -> Result<(), EngineError> {
    if findings.is_empty() {
        return Ok(());
    }
    for f in &findings {
        *tally
            .by_category
            .entry(f.category.as_str().to_string())
            .or_default() += 1;
        match f.payment_id {
            Some(payment) => {
                tally.mismatched_payments.insert(payment);
            }
            None if f.category == Category::MissingInternally => tally.unmatched += 1,
            None => {}
        }
    }
    let identified = findings
        .into_iter()
        .map(|f| (format!("disc_{}", uuid::Uuid::now_v7().simple()), f))
        .collect();
    tally.new += deps
        .store
        .record_findings(run_id, identified, deps.clock.now())
        .await?;
    Ok(())
}
