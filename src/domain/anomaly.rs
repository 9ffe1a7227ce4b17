//! Anomaly rules and their findings (DESIGN §10): plain data shared by the
//! configuration, the anomaly actor, the store and the HTTP layer.
//!
//! Only the vocabulary lives here: which rules exist, what a rule may do
//! when it fires, what a flag says, and the facts of a payment the rules
//! look at. The windows that count are in `actors::anomaly`.

use super::{Amount, Currency, MerchantId, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most velocity buckets a customer keeps: the velocity window is cut into
/// at most this many buckets, so its resolution is `window_secs / 60`
/// (one second at the default 60 s window).
pub const VELOCITY_BUCKETS: usize = 60;
/// Recent (amount, currency, time) entries a customer keeps for
/// `duplicate_amount`. Older entries are overwritten, so a repeat is seen
/// only among the customer's last 8 payments in the window; a customer
/// making more than 8 payments in the window trips `velocity` at any sane
/// setting. `duplicate_amount.max_count` must stay below it.
pub const DUPLICATE_RING_ENTRIES: usize = 8;
/// Distinct payment methods a customer keeps for `card_testing`. When all
/// are live in the window and another arrives, the oldest is forgotten: the
/// distinct count stays at 16, which is over any allowed maximum, so the
/// rule keeps firing. `card_testing.max_methods` must stay below it.
pub const CARD_METHOD_SLOTS: usize = 16;

/// One anomaly rule. The set is closed: each rule has its own window kind
/// and its own configuration section, `[anomaly.<rule>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// More than `max_count` payments by one customer in `window_secs`.
    Velocity,
    /// An amount above the currency's threshold.
    LargeAmount,
    /// More than `max_failures` consecutive failed payments.
    FailedStreak,
    /// The same amount more than `max_count` times in `window_secs`.
    DuplicateAmount,
    /// More than `max_methods` distinct payment methods in `window_secs`.
    CardTesting,
}

impl Rule {
    /// Every rule, in a fixed order (counters are indexed by it).
    pub const ALL: [Rule; 5] = [
        Rule::Velocity,
        Rule::LargeAmount,
        Rule::FailedStreak,
        Rule::DuplicateAmount,
        Rule::CardTesting,
    ];

    /// The rule's name in configuration, flags and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Velocity => "velocity",
            Rule::LargeAmount => "large_amount",
            Rule::FailedStreak => "failed_streak",
            Rule::DuplicateAmount => "duplicate_amount",
            Rule::CardTesting => "card_testing",
        }
    }

    /// The rule's position in [`Rule::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a rule does when it fires. Non-blocking by default: the payment
/// proceeds and carries the flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    /// Record the flag; the payment proceeds.
    #[default]
    Flag,
    /// The payment fails with `blocked_by_rule` before any provider call.
    Block,
    /// The rule is neither recorded nor evaluated.
    Off,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Flag => "flag",
            RuleAction::Block => "block",
            RuleAction::Off => "off",
        }
    }

    pub fn is_on(self) -> bool {
        self != RuleAction::Off
    }
}

/// A rule that fired for one payment: what the payment carries in
/// `anomaly_flags` and what `GET /v1/anomalies` lists (with ids and times
/// the store adds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub rule: Rule,
    /// `flag` or `block`, never `off`.
    pub action: RuleAction,
    /// The numbers that made it fire (count, maximum, window...).
    pub detail: serde_json::Value,
}

impl Flag {
    pub fn blocks(&self) -> bool {
        self.action == RuleAction::Block
    }
}

/// What the rules look at in a payment. Borrowed nowhere: it crosses an
/// actor mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentFacts {
    pub merchant: MerchantId,
    pub customer_id: String,
    pub amount: Amount,
    pub currency: Currency,
    pub payment_method: String,
}

/// A payment read back from the store to warm the windows after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PastPayment {
    pub facts: PaymentFacts,
    /// When it was created (when it was evaluated).
    pub at: Timestamp,
    /// `Some(true)` succeeded, `Some(false)` declined (`failed` or
    /// `retry_scheduled`), `None`: not known yet, or not the customer's
    /// doing (pending, a provider outage, blocked by a rule).
    pub succeeded: Option<bool>,
}

/// The `failure_code` of a payment a rule blocked before any provider call.
pub const BLOCKED_BY_RULE: &str = "blocked_by_rule";

impl std::str::FromStr for Rule {
    type Err = ();

    /// A rule by its contract name (`velocity`, `large_amount`, ...).
    fn from_str(name: &str) -> Result<Self, ()> {
        Rule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == name)
            .ok_or(())
    }
}

impl std::str::FromStr for RuleAction {
    type Err = ();

    fn from_str(name: &str) -> Result<Self, ()> {
        [RuleAction::Flag, RuleAction::Block, RuleAction::Off]
            .into_iter()
            .find(|action| action.as_str() == name)
            .ok_or(())
    }
}

/// A stored flag, as `GET /v1/anomalies` lists it (DESIGN §6): a [`Flag`]
/// with the payment it was raised for, an id and a time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyFlagRecord {
    /// `af_` + UUIDv7: ids sort by creation time.
    pub id: String,
    pub object: &'static str,
    /// Whose payment it was; not shown (a merchant sees only its own).
    #[serde(skip)]
    pub merchant_id: MerchantId,
    pub rule: Rule,
    pub action: RuleAction,
    pub customer_id: String,
    pub payment_id: String,
    pub detail: serde_json::Value,
    pub created_at: Timestamp,
}

/// A customer's counts as the shared store sees them (`scope =
/// "cluster"`): every instance's payments, the one being judged not
/// included. The windows take the larger of these and their own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CustomerCounts {
    /// Payments in the velocity window.
    pub in_velocity_window: u32,
    /// Payments of the same amount and currency in the duplicate window.
    pub same_amount: u32,
    /// Distinct payment methods in the card-testing window.
    pub distinct_methods: u32,
    /// Whether this payment's method is among them.
    pub method_seen: bool,
    /// Consecutive declines, newest first (a success ends the run).
    pub failures: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_contract_names() {
        let names: Vec<_> = Rule::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            names,
            [
                "velocity",
                "large_amount",
                "failed_streak",
                "duplicate_amount",
                "card_testing"
            ]
        );
        for (i, rule) in Rule::ALL.iter().enumerate() {
            assert_eq!(rule.index(), i);
            let json = serde_json::to_string(rule).expect("serialize");
            assert_eq!(json, format!("\"{}\"", rule.as_str()));
        }
        let action: RuleAction = serde_json::from_str("\"block\"").expect("parse");
        assert_eq!(action, RuleAction::Block);
        assert_eq!(RuleAction::default(), RuleAction::Flag);
    }
}
