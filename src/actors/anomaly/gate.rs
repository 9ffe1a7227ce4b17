//! The anomaly check as the payment path calls it.
//!
//! In `instance` scope the check is a call into the shared detector (a
//! lock held for well under a microsecond, no mailbox hop, no store
//! round trip). In `cluster` scope it first reads the customer's counts
//! over every instance's payments from the shared store (one aggregate
//! read and one short streak read) and judges the larger of those and the
//! instance's own windows. A failed store read does not fail the payment:
//! the instance's own windows judge it alone, and the failure is logged.

use super::{AnomalyActor, AnomalyDetector};
use crate::config::{AnomalyScope, AnomalySettings};
use crate::domain::{Flag, Payment, PaymentFacts, Rule, Timestamp};
use crate::store::{anomaly_outcome, CountsQuery, Store};
use actix::Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Most recent finished payments read for `failed_streak` in cluster
/// scope: past this many consecutive declines the count stops growing,
/// which is over any sane maximum.
pub const CLUSTER_STREAK_ROWS_MAX: u32 = 1_000;

/// The detector and, in `cluster` scope, the store it counts in; cheap to
/// clone. A disabled gate (tests that build a payment path by hand)
/// evaluates nothing.
#[derive(Clone)]
pub struct AnomalyGate {
    detector: Option<AnomalyDetector>,
    shared: Option<Shared>,
    /// Flags raised per rule by this gate since start, for the log.
    fired: Arc<[AtomicU64; Rule::ALL.len()]>,
    /// Keeps the actor (its idle sweep) alive as long as the payment path.
    actor: Option<Addr<AnomalyActor>>,
}

/// What `cluster` scope needs: the store and the windows' lengths.
#[derive(Clone)]
struct Shared {
    store: Arc<dyn Store>,
    settings: Arc<AnomalySettings>,
}

impl AnomalyGate {
    /// The gate over `actor`'s detector; `store` is read only in `cluster`
    /// scope.
    pub fn new(
        actor: Addr<AnomalyActor>,
        detector: AnomalyDetector,
        settings: &AnomalySettings,
        store: Arc<dyn Store>,
    ) -> Self {
        let shared = (settings.scope == AnomalyScope::Cluster).then(|| Shared {
            store,
            settings: Arc::new(settings.clone()),
        });
        AnomalyGate {
            detector: Some(detector),
            shared,
            fired: Arc::default(),
            actor: Some(actor),
        }
    }

    /// A gate that flags nothing and records nothing.
    pub fn disabled() -> Self {
        AnomalyGate {
            detector: None,
            shared: None,
            fired: Arc::default(),
            actor: None,
        }
    }

    /// Records the payment in its customer's windows and returns the rules
    /// it makes fire (each logged with the rule's running count).
    pub async fn evaluate(&self, now: Timestamp, facts: &PaymentFacts) -> Vec<Flag> {
        let Some(detector) = &self.detector else {
            return Vec::new();
        };
        let shared = match &self.shared {
            Some(shared) => shared.counts(now, facts).await,
            None => None,
        };
        let flags = detector.evaluate_shared(now, facts, shared);
        for flag in &flags {
            let total = self.fired[flag.rule.index()].fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                rule = %flag.rule,
                action = flag.action.as_str(),
                fired_total = total,
                merchant = ?facts.merchant.as_str(),
                customer_id = ?facts.customer_id,
                "anomaly rule fired"
            );
        }
        flags
    }

    /// Feeds a payment's final outcome to `failed_streak` (nothing for an
    /// unfinished or blocked payment: nothing was decided or tried).
    pub fn record_outcome(&self, now: Timestamp, payment: &Payment) {
        let Some(detector) = &self.detector else {
            return;
        };
        if let Some(succeeded) = anomaly_outcome(payment.status, payment.failure_code.as_deref()) {
            detector.record_outcome(now, &payment.merchant_id, &payment.customer_id, succeeded);
        }
    }

    /// The actor, for its messages (`Snapshot`, `Warm`); `None` when disabled.
    pub fn actor(&self) -> Option<&Addr<AnomalyActor>> {
        self.actor.as_ref()
    }

    /// Flags raised per rule since start.
    pub fn fired(&self) -> Vec<(Rule, u64)> {
        Rule::ALL
            .iter()
            .map(|rule| (*rule, self.fired[rule.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

impl Shared {
    /// The customer's counts over the store, or `None` (logged) if the read
    /// failed.
    async fn counts(
        &self,
        now: Timestamp,
        facts: &PaymentFacts,
    ) -> Option<crate::domain::CustomerCounts> {
        let s = &self.settings;
        let since = |secs: u32| now.plus_millis(-i64::from(secs) * 1_000);
        let query = CountsQuery {
            facts: facts.clone(),
            velocity_since: since(s.velocity.window_secs),
            duplicate_since: since(s.duplicate_amount.window_secs),
            card_since: since(s.card_testing.window_secs),
            streak_rows: s
                .failed_streak
                .max_failures
                .saturating_add(1)
                .min(CLUSTER_STREAK_ROWS_MAX),
        };
        match self.store.customer_counts(&query).await {
            Ok(counts) => Some(counts),
            Err(error) => {
                tracing::warn!(%error, "cluster anomaly counts unavailable; judging on this instance's windows");
                None
            }
        }
    }
}
