//! Message-level tests of the anomaly actor (DESIGN §10): each rule driven
//! through `Evaluate` / `RecordOutcome` / `Warm` / `Snapshot` with a manual
//! clock, the bounds (cap, idle eviction, bytes per customer) and the cost
//! of one evaluation, directly and through the mailbox.

use actix::prelude::*;
use payments::actors::anomaly::{
    AnomalyActor, AnomalyDetector, AnomalyWindows, BYTES_PER_CUSTOMER,
};
use payments::clock::{Clock, ManualClock};
use payments::config::AnomalySettings;
use payments::domain::{
    Amount, Currency, Flag, MerchantId, PastPayment, PaymentFacts, Rule, RuleAction, Timestamp,
};
use payments::messages::anomaly::{Evaluate, RecordOutcome, Snapshot, Warm};
use std::sync::Arc;
use std::time::Instant;

/// 2023-11-14T22:13:20Z: any fixed instant will do.
const START_MICROS: i64 = 1_700_000_000_000_000;
const MERCHANT: &str = "m_anomaly";

/// An actor on a manual clock, and the detector it owns.
struct Fixture {
    clock: Arc<ManualClock>,
    actor: Addr<AnomalyActor>,
    detector: AnomalyDetector,
}

impl Fixture {
    fn start(settings: AnomalySettings) -> Self {
        let clock = Arc::new(ManualClock::new(
            Timestamp::from_micros(START_MICROS).expect("start"),
        ));
        let actor = AnomalyActor::new(settings, clock.clone());
        let detector = actor.detector();
        Fixture {
            clock,
            actor: actor.start(),
            detector,
        }
    }

    fn advance_secs(&self, secs: i64) {
        self.clock.advance_ms(secs * 1_000);
    }

    async fn evaluate(&self, facts: PaymentFacts) -> Vec<Flag> {
        self.actor.send(Evaluate(facts)).await.expect("evaluate")
    }

    /// The rules a payment of `customer` makes fire.
    async fn pay(&self, customer: &str, amount: i64, currency: &str, method: &str) -> Vec<Rule> {
        rules(
            &self
                .evaluate(facts(customer, amount, currency, method))
                .await,
        )
    }

    async fn outcome(&self, customer: &str, succeeded: bool) {
        let message = RecordOutcome {
            merchant: MerchantId::new(MERCHANT),
            customer_id: customer.into(),
            succeeded,
        };
        self.actor.send(message).await.expect("outcome");
    }
}

fn facts(customer: &str, amount: i64, currency: &str, method: &str) -> PaymentFacts {
    PaymentFacts {
        merchant: MerchantId::new(MERCHANT),
        customer_id: customer.into(),
        amount: Amount::new(amount).expect("amount"),
        currency: Currency::parse(currency).expect("currency"),
        payment_method: method.into(),
    }
}

fn rules(flags: &[Flag]) -> Vec<Rule> {
    flags.iter().map(|flag| flag.rule).collect()
}

/// Settings with every rule off but `rule`, whose action is `action`.
fn only(rule: Rule, action: RuleAction) -> AnomalySettings {
    let mut settings = AnomalySettings::default();
    settings.velocity.action = RuleAction::Off;
    settings.large_amount.action = RuleAction::Off;
    settings.failed_streak.action = RuleAction::Off;
    settings.duplicate_amount.action = RuleAction::Off;
    settings.card_testing.action = RuleAction::Off;
    match rule {
        Rule::Velocity => settings.velocity.action = action,
        Rule::LargeAmount => settings.large_amount.action = action,
        Rule::FailedStreak => settings.failed_streak.action = action,
        Rule::DuplicateAmount => settings.duplicate_amount.action = action,
        Rule::CardTesting => settings.card_testing.action = action,
    }
    settings
}

#[actix::test]
async fn velocity_fires_on_the_sixth_payment_in_sixty_seconds_not_the_fifth() {
    let f = Fixture::start(AnomalySettings::default());
    for i in 0..5 {
        // Distinct amounts, one card: only velocity can fire.
        assert_eq!(f.pay("cus_v", 100 + i, "usd", "pm_card_visa").await, []);
        f.advance_secs(10);
    }
    let flags = f.evaluate(facts("cus_v", 200, "usd", "pm_card_visa")).await;
    assert_eq!(rules(&flags), [Rule::Velocity]);
    assert_eq!(flags[0].action, RuleAction::Flag);
    assert_eq!(flags[0].detail["count"], 6);
    assert_eq!(flags[0].detail["max_count"], 5);
    assert_eq!(flags[0].detail["window_secs"], 60);
    // Another customer, and the same customer id at another merchant, are
    // counted apart.
    assert_eq!(f.pay("cus_other", 300, "usd", "pm_card_visa").await, []);
    let mut elsewhere = facts("cus_v", 301, "usd", "pm_card_visa");
    elsewhere.merchant = MerchantId::new("m_elsewhere");
    assert_eq!(rules(&f.evaluate(elsewhere).await), []);
}

#[actix::test]
async fn the_velocity_window_slides() {
    let f = Fixture::start(only(Rule::Velocity, RuleAction::Flag));
    // t = 0, 10, 20, 30, 40.
    for i in 0..5 {
        assert_eq!(f.pay("cus_slide", 100 + i, "usd", "pm_a").await, []);
        f.advance_secs(10);
    }
    // t = 61: the payment at 0 no longer counts: 10, 20, 30, 40, 61.
    f.advance_secs(11);
    assert_eq!(f.pay("cus_slide", 200, "usd", "pm_a").await, []);
    // t = 62: six in (2, 62].
    f.advance_secs(1);
    assert_eq!(
        f.pay("cus_slide", 201, "usd", "pm_a").await,
        [Rule::Velocity]
    );
    // Two minutes later the window is empty again.
    f.advance_secs(120);
    assert_eq!(f.pay("cus_slide", 202, "usd", "pm_a").await, []);
}

#[actix::test]
async fn a_blocking_rule_says_block_and_a_blocked_payment_still_counts() {
    let f = Fixture::start(only(Rule::Velocity, RuleAction::Block));
    for i in 0..5 {
        assert_eq!(f.pay("cus_b", 100 + i, "usd", "pm_a").await, []);
    }
    for attempt in 0..3 {
        f.advance_secs(5);
        let flags = f.evaluate(facts("cus_b", 900, "usd", "pm_a")).await;
        assert_eq!(rules(&flags), [Rule::Velocity], "retry {attempt}");
        assert!(flags[0].blocks());
        assert_eq!(flags[0].action, RuleAction::Block);
        assert_eq!(flags[0].detail["count"], 6 + attempt);
    }
}

#[actix::test]
async fn rules_that_are_off_never_fire() {
    let mut settings = only(Rule::Velocity, RuleAction::Off);
    settings.large_amount.thresholds.insert("usd".into(), 10);
    let f = Fixture::start(settings);
    for i in 0..100 {
        f.outcome("cus_off", false).await;
        // The same huge amount, a new card each time, 100 in a row.
        let method = format!("pm_{i}");
        assert_eq!(f.pay("cus_off", 99_999_999, "usd", &method).await, []);
    }
    let snapshot = f.actor.send(Snapshot).await.expect("snapshot");
    assert_eq!(snapshot.evaluated, 100);
    assert!(snapshot.flags_by_rule.values().all(|n| *n == 0));
    assert_eq!(snapshot.flags_by_rule.len(), Rule::ALL.len());
    let json = serde_json::to_value(&snapshot).expect("snapshot as JSON");
    assert_eq!(json["flags_by_rule"]["card_testing"], 0, "{json}");
}

#[actix::test]
async fn large_amount_uses_the_currencys_threshold_or_the_default() {
    let mut settings = only(Rule::LargeAmount, RuleAction::Flag);
    settings.large_amount.thresholds = [("eur".to_string(), 100_000)].into();
    let f = Fixture::start(settings);
    assert_eq!(f.pay("cus_l", 100_000, "eur", "pm_a").await, []);
    let flags = f.evaluate(facts("cus_l", 100_001, "eur", "pm_a")).await;
    assert_eq!(rules(&flags), [Rule::LargeAmount]);
    assert_eq!(flags[0].detail["threshold"], 100_000);
    assert_eq!(flags[0].detail["currency"], "eur");
    // usd is no longer listed: the default 500,000 applies, as to any other.
    assert_eq!(f.pay("cus_l", 500_000, "usd", "pm_a").await, []);
    assert_eq!(
        f.pay("cus_l", 500_001, "usd", "pm_a").await,
        [Rule::LargeAmount]
    );
    assert_eq!(
        f.pay("cus_l", 500_001, "jpy", "pm_a").await,
        [Rule::LargeAmount]
    );
    assert_eq!(f.pay("cus_l", 500_000, "gbp", "pm_a").await, []);
}

#[actix::test]
async fn large_amount_defaults_to_usd_500000_and_the_same_elsewhere() {
    let f = Fixture::start(only(Rule::LargeAmount, RuleAction::Flag));
    for currency in ["usd", "eur", "jpy"] {
        assert_eq!(f.pay("cus_d", 500_000, currency, "pm_a").await, []);
        assert_eq!(
            f.pay("cus_d", 500_001, currency, "pm_a").await,
            [Rule::LargeAmount],
            "{currency}"
        );
    }
}

#[actix::test]
async fn failed_streak_fires_after_more_than_three_failures_and_resets_on_success() {
    let f = Fixture::start(only(Rule::FailedStreak, RuleAction::Flag));
    for _ in 0..3 {
        assert_eq!(f.pay("cus_f", 100, "usd", "pm_a").await, []);
        f.outcome("cus_f", false).await;
    }
    // Three consecutive failures: not over the maximum.
    assert_eq!(f.pay("cus_f", 100, "usd", "pm_a").await, []);
    f.outcome("cus_f", false).await;
    // Four: the next payment is flagged, and each one after while it lasts.
    let flags = f.evaluate(facts("cus_f", 100, "usd", "pm_a")).await;
    assert_eq!(rules(&flags), [Rule::FailedStreak]);
    assert_eq!(flags[0].detail["consecutive_failures"], 4);
    assert_eq!(
        f.pay("cus_f", 100, "usd", "pm_a").await,
        [Rule::FailedStreak]
    );
    // A success ends the streak.
    f.outcome("cus_f", true).await;
    assert_eq!(f.pay("cus_f", 100, "usd", "pm_a").await, []);
    for _ in 0..3 {
        f.outcome("cus_f", false).await;
    }
    assert_eq!(f.pay("cus_f", 100, "usd", "pm_a").await, []);
}

#[actix::test]
async fn duplicate_amount_fires_on_the_fourth_same_amount_in_five_minutes() {
    let f = Fixture::start(only(Rule::DuplicateAmount, RuleAction::Flag));
    // Another amount, and the same number in another currency, differ.
    let others = [(4_201, "usd"), (4_200, "eur"), (1, "usd")];
    for (amount, currency) in others {
        assert_eq!(f.pay("cus_dup", 4_200, "usd", "pm_a").await, []);
        assert_eq!(f.pay("cus_dup", amount, currency, "pm_a").await, []);
        f.advance_secs(60);
    }
    let flags = f.evaluate(facts("cus_dup", 4_200, "usd", "pm_a")).await;
    assert_eq!(rules(&flags), [Rule::DuplicateAmount]);
    assert_eq!(flags[0].detail["count"], 4);
    assert_eq!(flags[0].detail["amount"], 4_200);
    // Five minutes after the first (t = 300): it left the window.
    f.advance_secs(120);
    assert_eq!(f.pay("cus_dup", 4_201, "usd", "pm_a").await, []);
}

#[actix::test]
async fn card_testing_counts_distinct_methods_only() {
    let f = Fixture::start(only(Rule::CardTesting, RuleAction::Flag));
    for i in 0..5 {
        let method = format!("pm_card_{i}");
        assert_eq!(f.pay("cus_c", 100, "usd", &method).await, []);
        // Reusing a card already seen adds nothing.
        assert_eq!(f.pay("cus_c", 100, "usd", "pm_card_0").await, []);
        f.advance_secs(60);
    }
    let flags = f.evaluate(facts("cus_c", 100, "usd", "pm_card_5")).await;
    assert_eq!(rules(&flags), [Rule::CardTesting]);
    assert_eq!(flags[0].detail["distinct_methods"], 6);
    assert_eq!(flags[0].detail["max_methods"], 5);
    // An hour after the first cards, they no longer count.
    f.advance_secs(3_600);
    assert_eq!(f.pay("cus_c", 100, "usd", "pm_card_0").await, []);
}

#[actix::test]
async fn a_million_customers_stay_under_the_cap_and_its_memory() {
    let cap = 10_000;
    let settings = AnomalySettings {
        max_customers: cap,
        ..AnomalySettings::default()
    };
    let f = Fixture::start(settings);
    let now = f.clock.now();
    let mut payment = facts("cus_0", 100, "usd", "pm_a");
    for i in 0..1_000_000u64 {
        payment.customer_id.clear();
        payment.customer_id.push_str("cus_");
        payment.customer_id.push_str(&i.to_string());
        f.detector.evaluate(now, &payment);
    }
    let snapshot = f.actor.send(Snapshot).await.expect("snapshot");
    assert_eq!(snapshot.tracked_customers, cap);
    assert_eq!(snapshot.evicted_over_cap, 1_000_000 - cap as u64);
    assert_eq!(snapshot.bytes_per_customer, BYTES_PER_CUSTOMER);
    assert!(
        snapshot.memory_bytes <= cap * BYTES_PER_CUSTOMER + 4_096,
        "{} bytes for {cap} customers at {BYTES_PER_CUSTOMER} each",
        snapshot.memory_bytes
    );
    println!(
        "anomaly: {cap} customers tracked in {} bytes ({BYTES_PER_CUSTOMER} per customer at most)",
        snapshot.memory_bytes
    );
    // The newest customer is still tracked: paying again evicts nobody.
    f.detector.evaluate(now, &payment);
    let again = f.actor.send(Snapshot).await.expect("snapshot");
    assert_eq!(again.evicted_over_cap, snapshot.evicted_over_cap);
    assert_eq!(again.tracked_customers, cap);
}

#[actix::test]
async fn bytes_per_customer_is_fixed_and_small() {
    // Every buffer of a customer is an inline array: the constant is the
    // slot's size plus its share of the index, whatever the traffic.
    const { assert!(BYTES_PER_CUSTOMER < 1_024) };
    let small = AnomalyWindows::new(AnomalySettings {
        max_customers: 1,
        ..AnomalySettings::default()
    });
    assert!(small.memory_bytes() < 4_096);
    assert_eq!(small.tracked_customers(), 0);
}

#[actix::test]
async fn idle_customers_are_evicted() {
    let settings = AnomalySettings::default();
    let idle_secs = i64::from(settings.idle_secs);
    let f = Fixture::start(settings);
    for i in 0..100 {
        f.pay(&format!("cus_idle_{i}"), 100, "usd", "pm_a").await;
    }
    f.advance_secs(idle_secs - 10);
    f.pay("cus_recent", 100, "usd", "pm_a").await;
    let snapshot = f.actor.send(Snapshot).await.expect("snapshot");
    assert_eq!(snapshot.tracked_customers, 101, "not idle long enough yet");
    f.advance_secs(11);
    let snapshot = f.actor.send(Snapshot).await.expect("snapshot");
    assert_eq!(snapshot.tracked_customers, 1, "only the recent one is left");
    assert_eq!(snapshot.evicted_idle, 100);
}

/// The payments of one customer as the store would give them back.
fn history(customer: &str, count: i64, start: Timestamp) -> Vec<PastPayment> {
    (0..count)
        .map(|i| PastPayment {
            facts: facts(customer, 100 + i, "usd", "pm_a"),
            at: start.plus_millis(i * 5_000),
            succeeded: Some(false),
        })
        .collect()
}

#[actix::test]
async fn a_warm_start_recreates_the_flag_a_restart_would_have_lost() {
    let before = Fixture::start(AnomalySettings::default());
    let start = before.clock.now();
    for payment in history("cus_w", 5, start) {
        assert_eq!(rules(&before.evaluate(payment.facts).await), []);
        before.advance_secs(5);
    }
    // The process restarts 5 s after the fifth payment: a cold actor does
    // not see the sixth payment as the sixth ...
    let restarted_at = 30;
    let cold = Fixture::start(AnomalySettings::default());
    cold.advance_secs(restarted_at);
    assert_eq!(cold.pay("cus_w", 999, "usd", "pm_a").await, []);
    // ... a warmed one does. The history also restores the failures.
    let warm = Fixture::start(AnomalySettings::default());
    warm.advance_secs(restarted_at);
    let mut past = history("cus_w", 5, start);
    past.reverse();
    let applied = warm.actor.send(Warm(past)).await.expect("warm");
    assert_eq!(applied, 5);
    let flags = warm.evaluate(facts("cus_w", 999, "usd", "pm_a")).await;
    assert_eq!(rules(&flags), [Rule::Velocity, Rule::FailedStreak]);
    let snapshot = warm.actor.send(Snapshot).await.expect("snapshot");
    assert_eq!((snapshot.warmed, snapshot.evaluated), (5, 1));
    assert_eq!(snapshot.flags_by_rule[&Rule::Velocity], 1);
}

/// Nanoseconds per call of `run`, over `calls` calls.
async fn ns_per_call<F: std::future::Future<Output = ()>>(
    calls: u64,
    mut run: impl FnMut(u64) -> F,
) -> u64 {
    let started = Instant::now();
    for i in 0..calls {
        run(i).await;
    }
    started.elapsed().as_nanos() as u64 / calls
}

#[actix::test]
async fn evaluation_costs_microseconds_directly_and_through_the_mailbox() {
    // Each customer pays every 100 s (one payment per simulated ms): the
    // common case, where no rule fires and no flag is built.
    const CUSTOMERS: u64 = 100_000;
    const CALLS: u64 = 200_000;
    let f = Fixture::start(AnomalySettings::default());
    let start = f.clock.now();
    let payments: Vec<PaymentFacts> = (0..CUSTOMERS)
        .map(|i| facts(&format!("cus_{i}"), 1_000 + i as i64, "usd", "pm_card_visa"))
        .collect();
    let payment = |i: u64| &payments[(i % CUSTOMERS) as usize];
    let mut flagged = 0;
    let direct = ns_per_call(CALLS, |i| {
        flagged += f
            .detector
            .evaluate(start.plus_millis(i as i64), payment(i))
            .len();
        std::future::ready(())
    })
    .await;
    assert_eq!(flagged, 0, "the common case raises no flag");
    let same_thread = ns_per_call(CALLS / 10, |i| {
        let send = f.actor.send(Evaluate(payment(i).clone()));
        async move {
            send.await.expect("evaluate");
        }
    })
    .await;
    // The payment actors live on other arbiters: the realistic hop crosses
    // a thread.
    let arbiter = Arbiter::new();
    let remote = {
        let clock: Arc<dyn Clock> = f.clock.clone();
        AnomalyActor::start_in_arbiter(&arbiter.handle(), move |_| {
            AnomalyActor::new(AnomalySettings::default(), clock)
        })
    };
    let cross_thread = ns_per_call(CALLS / 10, |i| {
        let send = remote.send(Evaluate(payment(i).clone()));
        async move {
            send.await.expect("evaluate");
        }
    })
    .await;
    arbiter.stop();
    println!(
        "anomaly evaluate: direct {direct} ns, actor same thread {same_thread} ns, \
         actor across threads {cross_thread} ns per payment"
    );
    // Generous bounds: a debug build on a shared 2-core machine.
    assert!(direct < 50_000, "direct evaluation took {direct} ns");
    assert!(cross_thread < 2_000_000, "actor hop took {cross_thread} ns");
}
