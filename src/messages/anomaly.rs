//! Messages of the anomaly actor (`actors::anomaly`).
//!
//! The actor reads "now" from its clock; messages carry only facts.

use crate::domain::{Flag, MerchantId, PastPayment, PaymentFacts, Rule};
use actix::Message;
use serde::Serialize;
use std::collections::BTreeMap;

/// Record a payment in its customer's windows and return the rules it makes
/// fire. Sent before any provider is called: a flag with action `block`
/// means the payment fails with `blocked_by_rule`.
#[derive(Debug, Clone, Message)]
#[rtype(result = "Vec<Flag>")]
pub struct Evaluate(pub PaymentFacts);

/// A payment of this customer ended: feeds `failed_streak` (a failure
/// extends the streak, a success ends it).
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct RecordOutcome {
    pub merchant: MerchantId,
    pub customer_id: String,
    pub succeeded: bool,
}

/// Rebuild the windows from recent payments read from the store after a
/// restart (a page at a time, oldest page first). Answers how many were
/// applied. No flags are raised: those payments were judged already.
#[derive(Debug, Clone, Message)]
#[rtype(result = "usize")]
pub struct Warm(pub Vec<PastPayment>);

/// Read the actor's state and counters (idle customers are evicted first,
/// so the count is current).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "AnomalySnapshot")]
pub struct Snapshot;

/// What the anomaly windows hold and have done since start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnomalySnapshot {
    pub tracked_customers: usize,
    pub max_customers: usize,
    /// Bytes allocated for the windows (capacity, not only what is used).
    pub memory_bytes: usize,
    /// What one tracked customer costs at most.
    pub bytes_per_customer: usize,
    /// Payments evaluated (warm-up not included).
    pub evaluated: u64,
    /// Outcomes recorded (warm-up included).
    pub outcomes: u64,
    /// Payments replayed by warm-up.
    pub warmed: u64,
    /// Flags raised per rule, every rule present (zero included).
    pub flags_by_rule: BTreeMap<Rule, u64>,
    /// Customers forgotten for being idle longer than `idle_secs`.
    pub evicted_idle: u64,
    /// Customers forgotten to make room under `max_customers`.
    pub evicted_over_cap: u64,
}
