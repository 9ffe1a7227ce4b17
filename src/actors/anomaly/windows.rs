//! The anomaly rules over every tracked customer's windows: pure state, no
//! actor, no I/O, time passed in.
//!
//! A customer is merchant + customer id, held as a keyed 64-bit hash (the
//! key is random per process, so nobody can aim a collision at another
//! customer; by chance, two of 100,000 tracked customers share a key with
//! probability about 3e-10). Each customer's memory is fixed
//! ([`BYTES_PER_CUSTOMER`]), the table holds at most `max_customers`, and a
//! customer idle longer than `idle_secs` is forgotten.
//!
//! Decisions:
//! - A payment is recorded in the windows *before* the rules are judged,
//!   whatever they decide: a blocked payment counts toward velocity,
//!   duplicates and card testing, so an attacker retrying a blocked card
//!   stays blocked.
//! - A rule whose action is `off` is neither recorded nor judged.
//! - `failed_streak` is judged on the customer's next payment: after four
//!   consecutive failures (default maximum 3) the fifth payment is flagged.
//!   A blocked payment is not an outcome (nothing was tried): callers do not
//!   report it, so a blocked customer's streak ends only with idleness.

use super::customer::{amount_key, method_key, secs_of, CustomerWindows, Secs, VelocityGeometry};
use super::table::{CustomerTable, Found, BYTES_PER_CUSTOMER};
use crate::config::AnomalySettings;
use crate::domain::{
    CustomerCounts, Flag, MerchantId, PastPayment, PaymentFacts, Rule, Timestamp,
    CARD_METHOD_SLOTS, DUPLICATE_RING_ENTRIES,
};
use crate::messages::anomaly::AnomalySnapshot;
use serde_json::json;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// What one payment did to its customer's windows: the counts the rules
/// judge (0 for a rule that is off).
#[derive(Debug, Clone, Copy, Default)]
struct Observed {
    in_velocity_window: u32,
    same_amount: u32,
    distinct_methods: u32,
    failures: u32,
}

impl Observed {
    /// Takes the larger of each own count and the shared one, with this
    /// payment added to the shared counts (the store does not hold it yet).
    /// A rule that is off keeps its 0.
    fn include(&mut self, shared: CustomerCounts) {
        let grow = |own: &mut u32, theirs: u32| {
            if *own > 0 {
                *own = (*own).max(theirs);
            }
        };
        grow(&mut self.in_velocity_window, shared.in_velocity_window + 1);
        grow(&mut self.same_amount, shared.same_amount + 1);
        let methods = shared.distinct_methods + u32::from(!shared.method_seen);
        grow(&mut self.distinct_methods, methods);
        self.failures = self.failures.max(shared.failures);
    }
}

/// Running totals for [`AnomalySnapshot`] and metrics.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    evaluated: u64,
    outcomes: u64,
    warmed: u64,
    flags: [u64; Rule::ALL.len()],
    evicted_idle: u64,
    evicted_over_cap: u64,
}

/// Every tracked customer's windows and the rules that judge them.
#[derive(Debug)]
pub struct AnomalyWindows {
    settings: AnomalySettings,
    velocity: VelocityGeometry,
    table: CustomerTable,
    keys: RandomState,
    counters: Counters,
}

impl AnomalyWindows {
    /// Windows for validated settings (`Config::validate`).
    pub fn new(settings: AnomalySettings) -> Self {
        assert!(settings.max_customers >= 1);
        assert!((settings.duplicate_amount.max_count as usize) < DUPLICATE_RING_ENTRIES);
        assert!((settings.card_testing.max_methods as usize) < CARD_METHOD_SLOTS);
        assert!(
            settings.duplicate_amount.window_secs >= 1 && settings.card_testing.window_secs >= 1
        );
        AnomalyWindows {
            velocity: VelocityGeometry::new(settings.velocity.window_secs),
            table: CustomerTable::new(settings.max_customers),
            keys: RandomState::new(),
            counters: Counters::default(),
            settings,
        }
    }

    pub fn settings(&self) -> &AnomalySettings {
        &self.settings
    }

    /// Records a payment in its customer's windows and returns the rules
    /// it makes fire (action `flag` or `block`).
    pub fn evaluate(&mut self, now: Timestamp, facts: &PaymentFacts) -> Vec<Flag> {
        self.evaluate_shared(now, facts, None)
    }

    /// [`Self::evaluate`] with `shared`, the customer's counts over every
    /// instance's stored payments (`scope = "cluster"`; this payment not
    /// among them): each rule judges the larger of its own count and the
    /// shared one, so payments this instance saw but the store does not
    /// hold yet still count.
    pub fn evaluate_shared(
        &mut self,
        now: Timestamp,
        facts: &PaymentFacts,
        shared: Option<CustomerCounts>,
    ) -> Vec<Flag> {
        let mut observed = self.record(now, facts);
        if let Some(shared) = shared {
            observed.include(shared);
        }
        self.counters.evaluated += 1;
        let flags = self.judge(facts, observed);
        for flag in &flags {
            assert!(flag.action.is_on(), "an off rule never fires");
            self.counters.flags[flag.rule.index()] += 1;
        }
        flags
    }

    /// Feeds `failed_streak`: a failure extends the customer's streak, a
    /// success ends it.
    pub fn record_outcome(
        &mut self,
        now: Timestamp,
        merchant: &MerchantId,
        customer_id: &str,
        succeeded: bool,
    ) {
        if !self.settings.failed_streak.action.is_on() {
            return;
        }
        let at = self.arrive(now);
        let key = self.customer_key(merchant, customer_id);
        let customer = find(&mut self.table, &mut self.counters, key);
        customer.see(at);
        customer.record_outcome(succeeded);
        self.counters.outcomes += 1;
    }

    /// Rebuilds the windows from payments read back after a restart:
    /// recorded (in time order) and their outcomes applied, without flags.
    /// Send pages oldest first. Returns how many were applied.
    pub fn warm(&mut self, payments: &[PastPayment]) -> usize {
        let mut ordered: Vec<&PastPayment> = payments.iter().collect();
        ordered.sort_by_key(|payment| payment.at);
        for payment in &ordered {
            self.record(payment.at, &payment.facts);
            if let Some(succeeded) = payment.succeeded {
                let facts = &payment.facts;
                self.record_outcome(payment.at, &facts.merchant, &facts.customer_id, succeeded);
            }
        }
        self.counters.warmed += ordered.len() as u64;
        ordered.len()
    }

    /// Forgets customers idle longer than `idle_secs` at `now`.
    pub fn evict_idle(&mut self, now: Timestamp) -> usize {
        self.evict_idle_at(secs_of(now.as_micros()))
    }

    pub fn tracked_customers(&self) -> usize {
        self.table.len()
    }

    /// Bytes held by the windows (allocated capacity, not only what is used).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.table.memory_bytes()
    }

    pub fn snapshot(&self) -> AnomalySnapshot {
        let c = &self.counters;
        AnomalySnapshot {
            tracked_customers: self.table.len(),
            max_customers: self.settings.max_customers,
            memory_bytes: self.memory_bytes(),
            bytes_per_customer: BYTES_PER_CUSTOMER,
            evaluated: c.evaluated,
            outcomes: c.outcomes,
            warmed: c.warmed,
            flags_by_rule: Rule::ALL.iter().map(|r| (*r, c.flags[r.index()])).collect(),
            evicted_idle: c.evicted_idle,
            evicted_over_cap: c.evicted_over_cap,
        }
    }

    /// Idle customers go first, then the payment's customer is found.
    fn arrive(&mut self, now: Timestamp) -> Secs {
        let at = secs_of(now.as_micros());
        self.evict_idle_at(at);
        at
    }

    fn evict_idle_at(&mut self, now: Secs) -> usize {
        let idle_secs = self.settings.idle_secs;
        let evicted = self
            .table
            .evict_while(|last_seen| now.saturating_sub(last_seen) > idle_secs);
        self.counters.evicted_idle += evicted as u64;
        evicted
    }

    fn customer_key(&self, merchant: &MerchantId, customer_id: &str) -> u64 {
        // Tuples of strings hash with a separator: ("ab", "c") != ("a", "bc").
        self.keys.hash_one((merchant.as_str(), customer_id)).max(1)
    }

    fn record(&mut self, now: Timestamp, facts: &PaymentFacts) -> Observed {
        let at = self.arrive(now);
        let key = self.customer_key(&facts.merchant, &facts.customer_id);
        let method = method_key(self.keys.hash_one(facts.payment_method.as_str()));
        let amount = amount_key(facts.amount, facts.currency);
        let (settings, velocity) = (&self.settings, self.velocity);
        let customer = find(&mut self.table, &mut self.counters, key);
        let at = customer.see(at);
        let mut observed = Observed {
            failures: customer.failures(),
            ..Observed::default()
        };
        if settings.velocity.action.is_on() {
            observed.in_velocity_window = customer.record_velocity(at, velocity);
        }
        let duplicate = &settings.duplicate_amount;
        if duplicate.action.is_on() {
            observed.same_amount = customer.record_amount(amount, at, duplicate.window_secs);
        }
        let card = &settings.card_testing;
        if card.action.is_on() {
            observed.distinct_methods = customer.record_method(method, at, card.window_secs);
        }
        observed
    }

    fn judge(&self, facts: &PaymentFacts, seen: Observed) -> Vec<Flag> {
        let s = &self.settings;
        let amount = facts.amount.minor_units();
        let checks = [
            (Rule::Velocity, s.velocity.action),
            (Rule::LargeAmount, s.large_amount.action),
            (Rule::FailedStreak, s.failed_streak.action),
            (Rule::DuplicateAmount, s.duplicate_amount.action),
            (Rule::CardTesting, s.card_testing.action),
        ];
        checks
            .into_iter()
            .filter(|(rule, action)| {
                action.is_on()
                    && match rule {
                        Rule::Velocity => seen.in_velocity_window > s.velocity.max_count,
                        Rule::LargeAmount => amount > s.large_amount.threshold(facts.currency),
                        Rule::FailedStreak => seen.failures > s.failed_streak.max_failures,
                        Rule::DuplicateAmount => seen.same_amount > s.duplicate_amount.max_count,
                        Rule::CardTesting => seen.distinct_methods > s.card_testing.max_methods,
                    }
            })
            .map(|(rule, action)| Flag {
                rule,
                action,
                detail: self.detail(rule, facts, seen),
            })
            .collect()
    }

    /// The numbers behind a flag, for `detail`.
    fn detail(&self, rule: Rule, facts: &PaymentFacts, seen: Observed) -> serde_json::Value {
        let s = &self.settings;
        let (amount, currency) = (facts.amount.minor_units(), facts.currency.code());
        match rule {
            Rule::Velocity => json!({
                "count": seen.in_velocity_window,
                "max_count": s.velocity.max_count,
                "window_secs": s.velocity.window_secs,
            }),
            Rule::LargeAmount => json!({
                "amount": amount,
                "currency": currency,
                "threshold": s.large_amount.threshold(facts.currency),
            }),
            Rule::FailedStreak => json!({
                "consecutive_failures": seen.failures,
                "max_failures": s.failed_streak.max_failures,
            }),
            Rule::DuplicateAmount => json!({
                "amount": amount,
                "currency": currency,
                "count": seen.same_amount,
                "max_count": s.duplicate_amount.max_count,
                "window_secs": s.duplicate_amount.window_secs,
            }),
            Rule::CardTesting => json!({
                "distinct_methods": seen.distinct_methods,
                "max_methods": s.card_testing.max_methods,
                "window_secs": s.card_testing.window_secs,
            }),
        }
    }
}

/// The customer `key`, tracked from now on; counts a customer forgotten to
/// make room. (A free function so callers can hold the settings meanwhile.)
fn find<'t>(
    table: &'t mut CustomerTable,
    counters: &mut Counters,
    key: u64,
) -> &'t mut CustomerWindows {
    let (customer, found) = table.find(key);
    if found == Found::Replaced {
        counters.evicted_over_cap += 1;
    }
    customer
}
