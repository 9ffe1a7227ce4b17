//! Provider resilience (issue: circuit breakers, retries, routing): the
//! breaker driven message by message with a manual clock, a scheduled retry
//! surviving a restart, and end-to-end outage, budget and routing behaviour.

use crate::actors::{charge_request, create, open_store, policy, FakeProvider};
use crate::common::{
    patch_provider, payment_body, unique, wait_for_status, Backend, ServerOptions, TestServer,
};
use actix::prelude::*;
use payments::actors::{
    PaymentDeps, PaymentRegistry, ProviderActor, ProviderDirectory, ProviderEntry,
    ProviderSettings, Reconciler,
};
use payments::clock::{Clock, ManualClock};
use payments::config::ReconcilerSettings;
use payments::domain::{MerchantId, OutcomeClass, PaymentStatus, Timestamp};
use payments::messages::provider::{CallRejected, Charge, GetSnapshot, ProviderSnapshot};
use payments::messages::reconciler::RunRecovery;
use payments::resilience::{BreakerSettings, CircuitState};
use payments::resilience::{BudgetSettings, RetryBudget};
use payments::routing::{ProviderHealth, Strategy};
use rstest::rstest;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

fn start() -> Timestamp {
    Timestamp::parse_rfc3339("2026-03-01T00:00:00Z").expect("ts")
}

/// A breaker that opens at 50 % failures over at least 10 calls, waits
/// 30 s, then lets 3 probes through.
fn breaker() -> BreakerSettings {
    BreakerSettings {
        sliding_window_size: 20,
        minimum_number_of_calls: 10,
        failure_rate_threshold: 50.0,
        wait_duration_in_open_ms: 30_000,
        open_backoff_multiplier: 1.0,
        permitted_calls_in_half_open: 3,
        ..BreakerSettings::default()
    }
}

fn actor_with(fake: Arc<FakeProvider>, clock: Arc<ManualClock>) -> Addr<ProviderActor> {
    let settings = ProviderSettings {
        breaker: breaker(),
        ..ProviderSettings::default()
    };
    ProviderActor::new(fake, settings, clock, Arc::new(ProviderHealth::default())).start()
}

async fn charge(actor: &Addr<ProviderActor>, n: u32) -> Result<OutcomeClass, CallRejected> {
    actor
        .send(Charge(charge_request(n)))
        .await
        .expect("mailbox")
        .map(|reply| reply.response.class)
}

async fn state(actor: &Addr<ProviderActor>) -> CircuitState {
    actor
        .send(GetSnapshot)
        .await
        .expect("snapshot")
        .circuit_state
}

#[actix::test]
async fn the_breaker_opens_after_the_threshold_over_the_minimum_calls() {
    let clock = Arc::new(ManualClock::new(start()));
    let fake = FakeProvider::new("a", &[], OutcomeClass::TransientNotCharged);
    let actor = actor_with(fake.clone(), clock.clone());
    for n in 0..9 {
        assert_eq!(
            charge(&actor, n).await,
            Ok(OutcomeClass::TransientNotCharged)
        );
        assert_eq!(
            state(&actor).await,
            CircuitState::Closed,
            "below minimum_number_of_calls after {} calls",
            n + 1
        );
    }
    assert_eq!(
        charge(&actor, 9).await,
        Ok(OutcomeClass::TransientNotCharged)
    );
    assert_eq!(state(&actor).await, CircuitState::Open);
    // While OPEN, nothing reaches the provider.
    for n in 10..110 {
        clock.advance_ms(100);
        assert_eq!(
            charge(&actor, n).await,
            Err(CallRejected::CircuitOpen(CircuitState::Open))
        );
    }
    assert_eq!(
        fake.calls().len(),
        10,
        "zero calls reached the provider while open"
    );
}

#[actix::test]
async fn half_open_admits_only_the_permitted_probes_and_closes_on_success() {
    let clock = Arc::new(ManualClock::new(start()));
    let fake = FakeProvider::new("a", &[OutcomeClass::Unknown; 10], OutcomeClass::Succeeded);
    let actor = actor_with(fake.clone(), clock.clone());
    for n in 0..10 {
        charge(&actor, n).await.ok();
    }
    assert_eq!(state(&actor).await, CircuitState::Open);
    clock.advance_ms(30_000);
    // Three probes at once are admitted; a fourth concurrent one is not.
    let probes = futures_util::future::join_all((0..4).map(|n| charge(&actor, 100 + n))).await;
    let admitted = probes.iter().filter(|p| p.is_ok()).count();
    assert_eq!(admitted, 3, "{probes:?}");
    assert_eq!(
        state(&actor).await,
        CircuitState::Closed,
        "three healthy probes close it"
    );
    assert_eq!(fake.calls().len(), 13);
}

#[actix::test]
async fn a_failed_probe_reopens_the_breaker() {
    let clock = Arc::new(ManualClock::new(start()));
    let fake = FakeProvider::new("a", &[], OutcomeClass::TransientNotCharged);
    let actor = actor_with(fake.clone(), clock.clone());
    for n in 0..10 {
        charge(&actor, n).await.ok();
    }
    clock.advance_ms(30_000);
    assert_eq!(
        charge(&actor, 50).await,
        Ok(OutcomeClass::TransientNotCharged)
    );
    assert_eq!(state(&actor).await, CircuitState::Open);
    assert!(
        charge(&actor, 51).await.is_err(),
        "open again for a new wait"
    );
    assert_eq!(fake.calls().len(), 11);
}

#[actix::test]
async fn a_thousand_hard_declines_never_open_it() {
    let clock = Arc::new(ManualClock::new(start()));
    let fake = FakeProvider::new("a", &[], OutcomeClass::HardDecline);
    let actor = actor_with(fake.clone(), clock.clone());
    for n in 0..1_000 {
        assert_eq!(charge(&actor, n).await, Ok(OutcomeClass::HardDecline));
    }
    let snapshot = actor.send(GetSnapshot).await.expect("snapshot");
    assert_eq!(snapshot.circuit_state, CircuitState::Closed);
    assert_eq!(snapshot.circuit_transitions, 0);
    assert_eq!(fake.calls().len(), 1_000);
}

/// Drives `classes` through a provider actor with [`breaker`]'s settings
/// (open at 50 % failures over at least 10 calls), one call each, on a
/// clock that never moves (so no call is slow and an open breaker stays
/// open). Returns the calls the breaker refused and the final snapshot.
async fn through_the_actor(classes: &[OutcomeClass]) -> (usize, ProviderSnapshot) {
    let clock = Arc::new(ManualClock::new(start()));
    let fake = FakeProvider::new("a", classes, OutcomeClass::Succeeded);
    let actor = actor_with(fake.clone(), clock);
    let (mut reached, mut refused) = (0, 0);
    for n in 0..classes.len() {
        match charge(&actor, n as u32).await {
            Ok(class) => {
                // The fake answers its script in order, one entry per call
                // that reached it.
                assert_eq!(class, classes[reached]);
                reached += 1;
            }
            Err(CallRejected::CircuitOpen(_)) => refused += 1,
            Err(other) => panic!("call {n} refused for another reason: {other:?}"),
        }
    }
    assert_eq!(fake.calls().len(), reached);
    (refused, actor.send(GetSnapshot).await.expect("snapshot"))
}

/// DESIGN §4: declines never count as provider failures. What the breaker
/// records is decided in the provider actor, which turns each outcome
/// class into a `CallRecord { failed, slow }`; the breaker's unit tests
/// only see records. So both kinds of decline go through the actor here,
/// against the same breaker that the test below opens.
#[actix::test]
async fn a_hundred_soft_and_a_hundred_hard_declines_leave_the_breaker_closed() {
    let declines: Vec<OutcomeClass> = (0..200)
        .map(|n| {
            if n % 2 == 0 {
                OutcomeClass::SoftDecline
            } else {
                OutcomeClass::HardDecline
            }
        })
        .collect();
    let (refused, snapshot) = through_the_actor(&declines).await;
    assert_eq!(refused, 0, "{snapshot:?}");
    assert_eq!(snapshot.circuit_state, CircuitState::Closed);
    assert_eq!(snapshot.circuit_transitions, 0);
    assert_eq!(
        snapshot.window_failure_rate, 0.0,
        "no decline entered the window as a failure: {snapshot:?}"
    );
    assert_eq!((snapshot.declined, snapshot.failed), (200, 0));
}

/// The control for the test above: the same number of calls, the same
/// breaker, but provider failures. Without it, a breaker that never opened
/// at all would pass the decline test.
#[actix::test]
async fn as_many_provider_failures_open_the_breaker() {
    for failure in [OutcomeClass::TransientNotCharged, OutcomeClass::Unknown] {
        let (refused, snapshot) = through_the_actor(&[failure; 200]).await;
        assert_eq!(snapshot.circuit_state, CircuitState::Open, "{failure:?}");
        assert_eq!(
            snapshot.calls, 10,
            "{failure:?}: opens at minimum_number_of_calls, then nothing reaches the provider"
        );
        assert_eq!(refused, 190, "{failure:?}");
    }
}

/// Everything a payment actor and the reconciler need, on `store`, with
/// the shared manual clock: one "process".
fn process(
    store: Arc<dyn payments::store::Store>,
    fake: Arc<FakeProvider>,
    clock: Arc<ManualClock>,
) -> (PaymentRegistry, Addr<Reconciler>) {
    process_with(store, fake, clock, 0)
}

fn process_with(
    store: Arc<dyn payments::store::Store>,
    fake: Arc<FakeProvider>,
    clock: Arc<ManualClock>,
    lookup_consistency_ms: u64,
) -> (PaymentRegistry, Addr<Reconciler>) {
    let entry = ProviderEntry {
        name: "a".into(),
        addr: ProviderActor::new(
            fake,
            ProviderSettings::default(),
            clock.clone(),
            Arc::new(ProviderHealth::default()),
        )
        .start(),
        currencies: None,
        priority: 0,
        weight: 1,
        fees: Default::default(),
        health: Arc::new(ProviderHealth::default()),
        lookup_consistency_ms,
        call_timeout_ms: 5_000,
        wallet: false,
        retry: policy(),
    };
    let providers = ProviderDirectory::new(vec![entry]);
    let deps = Arc::new(PaymentDeps {
        store: store.clone(),
        providers: providers.clone(),
        clock: clock.clone(),
        policy: policy(),
        holder: payments::store::LeaseHolder {
            instance_id: format!("process-{}", uuid::Uuid::now_v7().simple()),
            incarnation: 1,
        },
        lease_ttl_ms: 60_000,
        idle_timeout: Duration::from_secs(60),
        max_recovery_attempts: 3,
        in_progress: Default::default(),
        panic_on_order: Default::default(),
        notifier: Default::default(),
        strategy: Strategy::Priority,
        retry_budget: Arc::new(RetryBudget::new(BudgetSettings::default())),
        anomaly: payments::actors::AnomalyGate::disabled(),
    });
    let registry = PaymentRegistry::new(deps, vec![Arbiter::current()], 1_000);
    let settings = ReconcilerSettings {
        interval: std::time::Duration::from_secs(3_600),
        ..ReconcilerSettings::default()
    };
    let reconciler =
        Reconciler::new(registry.clone(), providers, store, clock, settings, 24).start();
    (registry, reconciler)
}

#[rstest]
#[actix::test]
async fn a_scheduled_retry_survives_a_restart_and_runs_when_due(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (store, _db) = open_store(backend).await;
    let clock = Arc::new(ManualClock::new(start()));
    let fake = FakeProvider::new("a", &[OutcomeClass::SoftDecline], OutcomeClass::Succeeded);
    // First process: the payment is soft-declined and scheduled a day later.
    let (registry, _) = process(store.clone(), fake.clone(), clock.clone());
    let created = registry
        .create_payment(create("o1", "k1"))
        .await
        .expect("create");
    assert_eq!(created.payment.status, PaymentStatus::RetryScheduled);
    let due_at = created.payment.next_attempt_at.expect("next_attempt_at");
    assert_eq!(due_at, clock.now().plus_millis(24 * 3_600_000));
    drop(registry);
    // A new process on the same database: nothing happens before it is due.
    let (_registry, reconciler) = process(store.clone(), fake.clone(), clock.clone());
    clock.advance_ms(24 * 3_600_000 - 1_000);
    let early = reconciler.send(RunRecovery).await.expect("pass");
    assert_eq!(early.retried, 0);
    assert_eq!(fake.calls().len(), 1);
    clock.advance_ms(1_000);
    let due = reconciler.send(RunRecovery).await.expect("pass");
    assert_eq!(due.retried, 1);
    let payment = store
        .payment(&MerchantId::new("m"), created.payment.id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.attempts.len(), 2);
    let keys: Vec<String> = fake
        .calls()
        .into_iter()
        .map(|c| c.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [format!("{}-1", payment.id), format!("{}-2", payment.id)],
        "a new attempt takes the next number"
    );
    let events = store
        .payment_events(&MerchantId::new("m"), payment.id)
        .await
        .expect("events")
        .expect("owned");
    let statuses: Vec<_> = events
        .iter()
        .filter_map(|e| e.to_status.map(|s| s.as_str()))
        .collect();
    assert_eq!(
        statuses,
        ["processing", "retry_scheduled", "processing", "succeeded"]
    );
}

#[rstest]
#[actix::test]
async fn a_not_found_look_up_too_soon_after_the_call_does_not_fail_the_payment(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (store, _db) = open_store(backend).await;
    let clock = Arc::new(ManualClock::new(start()));
    // Every call times out; the provider's look-up says "no such charge",
    // but like Stripe's search it may lag a real charge by up to an hour.
    let fake = FakeProvider::new("a", &[], OutcomeClass::Unknown);
    let (registry, reconciler) = process_with(store.clone(), fake, clock.clone(), 3_600_000);
    let created = registry
        .create_payment(create("o1", "k1"))
        .await
        .expect("create");
    assert_eq!(created.payment.status, PaymentStatus::Pending);
    let merchant = MerchantId::new("m");
    let id = created.payment.id;
    clock.advance_ms(10 * 60_000);
    reconciler.send(RunRecovery).await.expect("pass");
    let payment = store
        .payment(&merchant, id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        payment.status,
        PaymentStatus::Pending,
        "ten minutes: the look-up is not trusted yet"
    );
    clock.advance_ms(3_600_000);
    reconciler.send(RunRecovery).await.expect("pass");
    let payment = store
        .payment(&merchant, id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        payment.status,
        PaymentStatus::Failed,
        "an hour on, not found means not charged"
    );
}

// ---------------------------------------------------------------------------
// End to end over HTTP
// ---------------------------------------------------------------------------

const FAST_BREAKER: &str = r#"
[retry.transient_not_charged]
base_ms = 5
cap_ms = 20

[[providers]]
name = "sandbox_a"
[providers.breaker]
sliding_window_size = 10
minimum_number_of_calls = 5
# Long enough that the 30 payments of the outage phase finish inside one
# open window even on a loaded machine, so no half-open probe interleaves.
wait_duration_in_open_ms = 3000
open_backoff_multiplier = 1.0
permitted_calls_in_half_open = 2

[[providers]]
name = "sandbox_b"
"#;

async fn provider(server: &TestServer, name: &str) -> Value {
    let list = server.get("/v1/providers").await;
    assert_eq!(list.status, 200, "{}", list.text);
    list.json()["data"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no provider {name}"))
}

async fn set_faults(server: &TestServer, name: &str, faults: Value) {
    let reply = server
        .send(
            server
                .client
                .put(server.url(&format!("/v1/sandbox/{name}/faults")))
                .bearer_auth(crate::common::DEV_KEY)
                .json(&faults),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
}

/// Issue 8, item 1: right after start, with one provider in outage, every
/// payment fails over to the healthy one. Failing over is not a retry, so
/// the retry budget (which starts with its burst) never stands in the way,
/// and a rate-limited card still gets its retries afterwards.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_right_after_start_fails_every_payment_over(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = Arc::new(TestServer::start(backend).await);
    set_faults(&server, "sandbox_a", json!({ "outage": true })).await;
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                server
                    .create(
                        &unique("k"),
                        &payment_body(&format!("outage-{i}-{}", unique("o")), "pm_card_visa"),
                    )
                    .await
                    .json()
            })
        })
        .collect();
    for task in tasks {
        let payment = task.await.expect("task");
        assert_eq!(payment["status"], "succeeded", "{payment}");
        assert_eq!(payment["provider"], "sandbox_b", "{payment}");
    }
    let charged_by_a = crate::common::all_sandbox_charges(&server)
        .await
        .into_iter()
        .filter(|c| c["provider"] == "sandbox_a")
        .count();
    assert_eq!(
        charged_by_a, 0,
        "sandbox_a was in outage: it charged nothing"
    );
    let limited = server
        .create(
            &unique("k"),
            &payment_body(&unique("limited"), "pm_card_rate_limited"),
        )
        .await
        .json();
    assert_eq!(limited["status"], "succeeded", "{limited}");
}

#[rstest]
#[tokio::test]
async fn an_outage_opens_the_breaker_traffic_fails_over_and_it_closes_after_probes(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(FAST_BREAKER)).await;
    set_faults(&server, "sandbox_a", json!({ "outage": true })).await;
    let mut audited_change = false;
    for i in 0..30 {
        let reply = server
            .create(
                &unique("k"),
                &payment_body(&unique("outage"), "pm_card_visa"),
            )
            .await
            .json();
        assert_eq!(
            reply["status"], "succeeded",
            "payment {i} failed over: {reply}"
        );
        let events = server
            .get(&format!(
                "/v1/payments/{}/events",
                reply["id"].as_str().expect("id")
            ))
            .await
            .json();
        audited_change |= events["data"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["type"] == "provider.circuit_changed" && e["data"]["to"] == "open")
        });
    }
    assert!(
        audited_change,
        "the opening is in the audit trail of the payment that caused it"
    );
    let a = provider(&server, "sandbox_a").await;
    assert_eq!(a["circuit_state"], "open", "{a}");
    assert_eq!(
        a["calls"], 5,
        "after opening, no call reached sandbox_a: {a}"
    );
    assert_eq!(provider(&server, "sandbox_b").await["succeeded"], 30);
    // Lift the outage; after the wait, probes go to sandbox_a and close it.
    set_faults(&server, "sandbox_a", json!({ "outage": false })).await;
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    for _ in 0..4 {
        let reply = server
            .create(
                &unique("k"),
                &payment_body(&unique("after"), "pm_card_visa"),
            )
            .await
            .json();
        assert_eq!(reply["status"], "succeeded");
    }
    let a = provider(&server, "sandbox_a").await;
    assert_eq!(a["circuit_state"], "closed", "{a}");
    assert!(a["succeeded"].as_u64() >= Some(2), "{a}");
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_total_provider_failure_retries_stay_within_the_budget(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    // Breakers that never open, so only the budget limits retries; no floor,
    // so the bound is exactly 10 % of first attempts plus the initial burst.
    // Each payment's first call to each provider is free (failover is not
    // a retry), so with two providers the floor is two attempts a payment.
    let config = r#"
[retry.transient_not_charged]
max_attempts = 3
base_ms = 1
cap_ms = 5

[retry.budget]
ratio = 0.1
min_retries_per_sec = 0
max_banked_retries = 10

[[providers]]
name = "sandbox_a"
[providers.faults]
failure_rate = 1.0
[providers.breaker]
minimum_number_of_calls = 10000
sliding_window_size = 10000

[[providers]]
name = "sandbox_b"
[providers.faults]
failure_rate = 1.0
[providers.breaker]
minimum_number_of_calls = 10000
sliding_window_size = 10000
"#;
    let server = Arc::new(TestServer::start_with(backend, ServerOptions::config(config)).await);
    const PAYMENTS: usize = 200;
    let mut tasks = Vec::new();
    for i in 0..PAYMENTS {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            server
                .create(
                    &format!("storm-{i}"),
                    &payment_body(&format!("down-{i}"), "pm_card_visa"),
                )
                .await
                .json()
        }));
    }
    let mut attempts = 0;
    for task in tasks {
        let payment = task.await.expect("task");
        assert_eq!(payment["status"], "failed", "{payment}");
        assert_eq!(payment["failure_code"], "provider_unavailable");
        attempts += payment["attempts"].as_array().map_or(0, Vec::len);
    }
    let provider_calls: u64 = [
        provider(&server, "sandbox_a").await,
        provider(&server, "sandbox_b").await,
    ]
    .iter()
    .map(|p| p["calls"].as_u64().unwrap_or(0))
    .sum();
    eprintln!(
        "100% provider errors ({backend:?}): {PAYMENTS} first attempts, {attempts} attempts in all ({:.3}x), {provider_calls} provider calls",
        attempts as f64 / PAYMENTS as f64
    );
    const PROVIDERS: usize = 2;
    const BURST: usize = 10;
    let first_calls = PROVIDERS * PAYMENTS;
    let most_retries = PAYMENTS / 10 + BURST;
    assert!(
        attempts > first_calls,
        "the budget allowed some retries: {attempts} attempts for {PAYMENTS} payments"
    );
    assert!(
        attempts <= first_calls + most_retries,
        "retries beyond the budget: {attempts} attempts for {PAYMENTS} payments"
    );
    assert_eq!(
        provider_calls as usize, attempts,
        "each attempt is one call"
    );
}

#[rstest]
#[tokio::test]
async fn cost_routing_picks_the_cheaper_provider_and_respects_currencies(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let config = r#"
[routing]
strategy = "cost"

[[providers]]
name = "sandbox_a"
currencies = ["usd", "eur", "jpy"]
[providers.fees.usd]
fixed = 30
percent_bps = 290
[providers.fees.eur]
fixed = 10
percent_bps = 100

[[providers]]
name = "sandbox_b"
currencies = ["usd", "eur"]
[providers.fees.usd]
fixed = 10
percent_bps = 150
[providers.fees.eur]
fixed = 25
percent_bps = 140
"#;
    let server = TestServer::start_with(backend, ServerOptions::config(config)).await;
    let pay = |currency: &str, token: &str| {
        let mut body = payment_body(&unique("cost"), token);
        body["currency"] = json!(currency);
        body
    };
    let usd = server
        .create(&unique("k"), &pay("usd", "pm_card_visa"))
        .await
        .json();
    assert_eq!(usd["provider"], "sandbox_b", "cheaper for usd: {usd}");
    let eur = server
        .create(&unique("k"), &pay("eur", "pm_card_visa"))
        .await
        .json();
    assert_eq!(eur["provider"], "sandbox_a", "cheaper for eur: {eur}");
    let events = server
        .get(&format!(
            "/v1/payments/{}/events",
            usd["id"].as_str().expect("id")
        ))
        .await
        .json();
    let routed = events["data"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["type"] == "payment.routed").cloned());
    let routed = routed.expect("routing is audited");
    assert_eq!(routed["data"]["strategy"], "cost");
    assert_eq!(routed["data"]["candidates"][0]["provider"], "sandbox_b");
    assert_eq!(
        routed["data"]["candidates"][0]["fee"], 40,
        "10 + 1.5 % of 1999"
    );
    // sandbox_b has no jpy: even failing over, it is never tried.
    let jpy = server
        .create(&unique("k"), &pay("jpy", "pm_card_provider_error"))
        .await
        .json();
    let providers: Vec<_> = jpy["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["provider"].clone())
        .collect();
    assert!(
        !providers.is_empty() && providers.iter().all(|p| p == "sandbox_a"),
        "{providers:?}"
    );
    // A currency no provider takes is refused up front.
    let gbp = server
        .create(&unique("k"), &pay("gbp", "pm_card_visa"))
        .await;
    assert_eq!(gbp.status, 400, "{}", gbp.text);
    assert_eq!(gbp.error_param(), "currency");
}

#[rstest]
#[tokio::test]
async fn providers_can_be_drained_and_disabled_at_runtime(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let drained = patch_provider(&server, "sandbox_a", &json!({ "force_open": true })).await;
    assert_eq!(drained.status, 200, "{}", drained.text);
    assert_eq!(drained.json()["circuit_state"], "forced_open");
    let paid = server
        .create(
            &unique("k"),
            &payment_body(&unique("drain"), "pm_card_visa"),
        )
        .await
        .json();
    assert_eq!(paid["provider"], "sandbox_b");
    assert_eq!(
        paid["attempts"].as_array().map(Vec::len),
        Some(1),
        "a drained provider is skipped, not tried"
    );
    let released = patch_provider(
        &server,
        "sandbox_a",
        &json!({ "force_open": false, "enabled": false }),
    )
    .await
    .json();
    assert_eq!(released["circuit_state"], "closed");
    assert_eq!(released["enabled"], false);
    let paid = server
        .create(
            &unique("k"),
            &payment_body(&unique("drain"), "pm_card_visa"),
        )
        .await
        .json();
    assert_eq!(paid["provider"], "sandbox_b");
    let enabled = patch_provider(&server, "sandbox_a", &json!({ "enabled": true }))
        .await
        .json();
    assert_eq!(enabled["enabled"], true);
    let unknown = patch_provider(&server, "nope", &json!({ "enabled": true })).await;
    assert_eq!(unknown.status, 404);
    let bad = patch_provider(&server, "sandbox_a", &json!({ "enabled": "yes" })).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_param(), "enabled");
    let listed = server.get("/v1/providers").await.json();
    for field in [
        "name",
        "enabled",
        "circuit_state",
        "failure_rate",
        "in_flight",
        "latency_p50_ms",
        "latency_p99_ms",
        "fees",
    ] {
        assert!(
            listed["data"][0].get(field).is_some(),
            "GET /v1/providers lacks {field}: {listed}"
        );
    }
}

#[rstest]
#[tokio::test]
async fn a_provider_can_carry_its_own_retry_rows(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    // sandbox_a never retries a refusal; the engine-wide table allows three tries.
    let config = r#"
[[providers]]
name = "sandbox_a"
[providers.retry.transient_not_charged]
max_attempts = 1

[[providers]]
name = "sandbox_b"
"#;
    let server = TestServer::start_with(backend, ServerOptions::config(config)).await;
    let mut body = payment_body(&unique("own-rows"), "pm_card_provider_error");
    body["provider"] = json!("sandbox_a");
    let pinned_a = server.create(&unique("k"), &body).await.json();
    assert_eq!(
        pinned_a["attempts"].as_array().map(Vec::len),
        Some(1),
        "{pinned_a}"
    );
    body["provider"] = json!("sandbox_b");
    body["order_id"] = json!(unique("own-rows"));
    let pinned_b = server.create(&unique("k"), &body).await.json();
    assert_eq!(
        pinned_b["attempts"].as_array().map(Vec::len),
        Some(3),
        "{pinned_b}"
    );
}

#[rstest]
#[tokio::test]
async fn a_retry_refused_after_an_unknown_answer_never_fails_over(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    // sandbox_a charges and loses the answer; the unknown outcome opens its
    // breaker at once, so the same-key retry is refused by the breaker. That
    // refusal says nothing about the first call: the payment must stay
    // pending (then resolve by look-up), never move to sandbox_b.
    let config = r#"
[retry.unknown]
max_attempts = 3
base_ms = 1
cap_ms = 5

[reconciler]
interval_secs = 0.2
pending_age_secs = 0

[[providers]]
name = "sandbox_a"
[providers.faults]
timeout_rate = 1.0
[providers.breaker]
minimum_number_of_calls = 1
sliding_window_size = 1

[[providers]]
name = "sandbox_b"
"#;
    let server = TestServer::start_with(backend, ServerOptions::config(config)).await;
    let order = unique("refused-retry");
    let created = server
        .create(&unique("k"), &payment_body(&order, "pm_card_visa"))
        .await
        .json();
    assert_eq!(created["status"], "pending", "{created}");
    assert_eq!(
        created["attempts"].as_array().map(Vec::len),
        Some(1),
        "no second attempt: {created}"
    );
    let id = created["id"].as_str().expect("id").to_string();
    wait_for_status(&server, &id, "succeeded").await;
    assert_eq!(server.sandbox_charges("sandbox_a", &order).await.len(), 1);
    assert!(
        server.sandbox_charges("sandbox_b", &order).await.is_empty(),
        "sandbox_b must never be called"
    );
}

#[rstest]
#[tokio::test]
async fn when_every_provider_refuses_the_payment_fails_fast_without_retrying_into_them(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    for name in ["sandbox_a", "sandbox_b"] {
        let reply = patch_provider(&server, name, &json!({ "force_open": true })).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let payment = server
        .create(
            &unique("k"),
            &payment_body(&unique("drained"), "pm_card_visa"),
        )
        .await
        .json();
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_code"], "provider_unavailable");
    let codes: Vec<_> = payment["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| a["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [json!("circuit_open"), json!("circuit_open")],
        "one refused attempt per provider, none repeated"
    );
}
