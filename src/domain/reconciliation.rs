//! Reconciliation's vocabulary (DESIGN §9): what can disagree, how bad it
//! is, and the record a run leaves.

use super::{MerchantId, PaymentId, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// What a discrepancy is about (DESIGN §9's categories).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The provider has a charge the engine has no payment for.
    MissingInternally,
    /// The engine has a captured payment the provider has no record of.
    MissingAtProvider,
    AmountMismatch,
    CurrencyMismatch,
    StatusMismatch,
    FeeMismatch,
    /// Two charges at the provider for one order.
    DuplicateCharge,
    /// A captured payment (or a succeeded refund) without its posting.
    LedgerMissing,
    /// A payment that did not capture, with a posting.
    FailedButPosted,
    /// A ledger transaction whose debits and credits differ.
    Unbalanced,
    StuckPending,
    StuckProcessing,
}

impl Category {
    pub const ALL: [Category; 12] = [
        Category::MissingInternally,
        Category::MissingAtProvider,
        Category::AmountMismatch,
        Category::CurrencyMismatch,
        Category::StatusMismatch,
        Category::FeeMismatch,
        Category::DuplicateCharge,
        Category::LedgerMissing,
        Category::FailedButPosted,
        Category::Unbalanced,
        Category::StuckPending,
        Category::StuckProcessing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::MissingInternally => "missing_internally",
            Category::MissingAtProvider => "missing_at_provider",
            Category::AmountMismatch => "amount_mismatch",
            Category::CurrencyMismatch => "currency_mismatch",
            Category::StatusMismatch => "status_mismatch",
            Category::FeeMismatch => "fee_mismatch",
            Category::DuplicateCharge => "duplicate_charge",
            Category::LedgerMissing => "ledger_missing",
            Category::FailedButPosted => "failed_but_posted",
            Category::Unbalanced => "unbalanced",
            Category::StuckPending => "stuck_pending",
            Category::StuckProcessing => "stuck_processing",
        }
    }

    /// How bad a finding of this category is (issue 11): critical when
    /// money may have moved wrongly, high when the books disagree on what
    /// moved, medium for fees and stuck work, low for the rest.
    pub fn severity(self) -> Severity {
        match self {
            Category::DuplicateCharge | Category::FailedButPosted | Category::MissingInternally => {
                Severity::Critical
            }
            Category::AmountMismatch
            | Category::CurrencyMismatch
            | Category::StatusMismatch
            | Category::LedgerMissing
            | Category::Unbalanced => Severity::High,
            Category::FeeMismatch | Category::StuckPending | Category::StuckProcessing => {
                Severity::Medium
            }
            Category::MissingAtProvider => Severity::Low,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Category {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        Category::ALL
            .into_iter()
            .find(|category| category.as_str() == text)
            .ok_or(())
    }
}

/// How urgently a person should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl FromStr for Severity {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low,
        ]
        .into_iter()
        .find(|severity| severity.as_str() == text)
        .ok_or(())
    }
}

/// Whether a person has dealt with a discrepancy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyStatus {
    Open,
    Resolved,
}

impl DiscrepancyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DiscrepancyStatus::Open => "open",
            DiscrepancyStatus::Resolved => "resolved",
        }
    }
}

impl FromStr for DiscrepancyStatus {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        match text {
            "open" => Ok(DiscrepancyStatus::Open),
            "resolved" => Ok(DiscrepancyStatus::Resolved),
            _ => Err(()),
        }
    }
}

/// One disagreement a run found (DESIGN §6's `discrepancy` object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discrepancy {
    pub id: String,
    pub object: &'static str,
    pub run_id: String,
    pub category: Category,
    pub severity: Severity,
    #[serde(skip)]
    pub merchant_id: Option<MerchantId>,
    pub payment_id: Option<PaymentId>,
    pub provider: Option<String>,
    pub provider_reference: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    pub status: DiscrepancyStatus,
    pub resolution: Option<String>,
    pub created_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

/// What one run checked and found (DESIGN §6's `reconciliation_run`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub id: String,
    pub object: &'static str,
    pub from: Timestamp,
    pub to: Timestamp,
    /// The engine's payments in the window, plus the provider records that
    /// match none of them.
    pub checked: u64,
    pub matched: u64,
    /// Checked items with at least one discrepancy.
    pub mismatched: u64,
    /// New and already-known findings of this run, by category.
    pub by_category: BTreeMap<String, u64>,
    /// The run's findings (at most a page of them; `by_category` counts all).
    pub discrepancies: Vec<Discrepancy>,
    pub duration_ms: u64,
    /// `timer` or `manual`.
    pub trigger: String,
    pub created_at: Timestamp,
}
