//! Message-level tests: the payment and provider actors driven by their
//! typed messages, with a real SQLite store and scripted fake providers. No
//! HTTP, no engine thread.

use crate::common::{postgres_url, Backend, TestDb};
use actix::prelude::*;
use async_trait::async_trait;
use payments::actors::{
    PaymentActor, PaymentDeps, PaymentRegistry, ProviderActor, ProviderDirectory, ProviderEntry,
    ProviderSettings,
};
use payments::clock::Clock;
use payments::clock::ManualClock;
use payments::domain::{
    Amount, Attempt, AttemptId, AttemptOutcome, Currency, MerchantId, OrderKey, OutcomeClass,
    Payment, PaymentId, PaymentObject, PaymentStatus, Timestamp,
};
use payments::engine::validate::fingerprint;
use payments::messages::payment::{CreatePayment, PaymentRequest, RecoverPayment, RecoveryOutcome};
use payments::messages::provider::{CallRejected, Charge, GetSnapshot, SetEnabled};
use payments::providers::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementPage,
};
use payments::resilience::{BackoffKind, BudgetSettings, ClassPolicy, RetryBudget, RetryPolicy};
use payments::routing::{ProviderHealth, Strategy};
use payments::store::{BeginOutcome, LeaseChange, NewPayment, PaymentWrite, Store};
use rstest::rstest;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A provider that answers from a script and remembers every call.
pub(crate) struct FakeProvider {
    name: String,
    script: Mutex<VecDeque<OutcomeClass>>,
    /// Answer when the script is exhausted.
    otherwise: OutcomeClass,
    delay: Duration,
    calls: Mutex<Vec<ChargeRequest>>,
    /// When set, each call records the stored outcome of the attempt being
    /// charged, as seen in the database at the moment of the call.
    store: Option<Arc<dyn Store>>,
    seen_outcomes: Mutex<Vec<Option<AttemptOutcome>>>,
    /// Every answer names the provider's reference (as Stripe's
    /// `processing` PaymentIntent does), not only successes.
    always_references: bool,
    /// Look-ups fail (the provider is unreachable) instead of "not found".
    lookups_fail: bool,
}

impl FakeProvider {
    pub(crate) fn new(name: &str, script: &[OutcomeClass], otherwise: OutcomeClass) -> Arc<Self> {
        Arc::new(Self::build(name, script, otherwise))
    }

    /// A provider that takes `delay` per call.
    fn slow(name: &str, otherwise: OutcomeClass, delay: Duration) -> Arc<Self> {
        Arc::new(FakeProvider {
            delay,
            ..Self::build(name, &[], otherwise)
        })
    }

    fn build(name: &str, script: &[OutcomeClass], otherwise: OutcomeClass) -> Self {
        FakeProvider {
            name: name.into(),
            script: Mutex::new(script.iter().copied().collect()),
            otherwise,
            delay: Duration::ZERO,
            calls: Mutex::new(Vec::new()),
            store: None,
            seen_outcomes: Mutex::new(Vec::new()),
            always_references: false,
            lookups_fail: false,
        }
    }

    /// Answers that always carry a reference, and look-ups that fail.
    fn referencing_and_unreachable(name: &str, otherwise: OutcomeClass) -> Arc<Self> {
        Arc::new(FakeProvider {
            always_references: true,
            lookups_fail: true,
            ..Self::build(name, &[], otherwise)
        })
    }

    pub(crate) fn calls(&self) -> Vec<ChargeRequest> {
        self.calls.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Provider for FakeProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        self.calls.lock().expect("lock").push(request.clone());
        if let Some(store) = &self.store {
            let merchant = request.merchant_id.clone();
            let payment = store
                .payment(&merchant, request.payment_id)
                .await
                .expect("read");
            let outcome = payment.and_then(|p| {
                p.attempts
                    .iter()
                    .find(|a| a.number == request.attempt_number)
                    .map(|a| a.outcome)
            });
            self.seen_outcomes.lock().expect("lock").push(outcome);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let class = self
            .script
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or(self.otherwise);
        let succeeded = class == OutcomeClass::Succeeded;
        ProviderResponse {
            class,
            provider_payment_id: (succeeded || self.always_references)
                .then(|| format!("fake_{}", request.idempotency_key)),
            code: (!succeeded).then(|| class.as_str().to_string()),
            message: None,
            raw: "{}".into(),
            retry_after_ms: None,
        }
    }

    async fn lookup(&self, _key: &str) -> Result<LookupResult, ProviderError> {
        if self.lookups_fail {
            return Err(ProviderError::Unreachable("fake outage".into()));
        }
        Ok(LookupResult::NotFound)
    }

    async fn refund(&self, _request: &RefundRequest) -> RefundResponse {
        RefundResponse {
            status: RefundStatus::Failed,
            provider_refund_id: None,
            code: Some("unsupported".into()),
            message: None,
            raw: "{}".into(),
        }
    }

    async fn settlements(
        &self,
        _from: Timestamp,
        _to: Timestamp,
        _cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        Ok(SettlementPage::empty())
    }
}

struct Fixture {
    deps: Arc<PaymentDeps>,
    _db: TestDb,
}

/// A fresh store of `backend` (the `TestDb` owns its files or schema).
pub(crate) async fn open_store(backend: Backend) -> (Arc<dyn Store>, TestDb) {
    let db = TestDb::new(backend);
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", db.data_dir.join("payments.db").display()),
        Backend::Postgres => postgres_url(),
    };
    let store = payments::store::open(&url, &db.schema)
        .await
        .expect("store");
    (store, db)
}

/// Default attempts per class, no waiting.
pub(crate) fn policy() -> RetryPolicy {
    let no_wait = ClassPolicy {
        backoff: BackoffKind::None,
        ..ClassPolicy::default()
    };
    RetryPolicy {
        transient_not_charged: no_wait,
        unknown: no_wait,
        ..RetryPolicy::default()
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(ManualClock::new(
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("ts"),
    ))
}

/// A provider actor on `fake` with default limits.
fn provider_actor(fake: Arc<FakeProvider>, settings: ProviderSettings) -> Addr<ProviderActor> {
    ProviderActor::new(fake, settings, clock(), Arc::new(ProviderHealth::default())).start()
}

async fn fixture(providers: &[Arc<FakeProvider>], store: (Arc<dyn Store>, TestDb)) -> Fixture {
    let (store, db) = store;
    let entries = providers
        .iter()
        .map(|fake| ProviderEntry {
            name: fake.name.clone(),
            addr: provider_actor(fake.clone(), ProviderSettings::default()),
            currencies: None,
            priority: 0,
            weight: 1,
            fees: Default::default(),
            health: Arc::new(ProviderHealth::default()),
            lookup_consistency_ms: 0,
            call_timeout_ms: 5_000,
            wallet: false,
            retry: policy(),
        })
        .collect();
    let deps = PaymentDeps {
        store,
        providers: ProviderDirectory::new(entries),
        clock: clock(),
        policy: policy(),
        holder: payments::store::LeaseHolder {
            instance_id: "test-instance".into(),
            incarnation: 1,
        },
        lease_ttl_ms: 60_000,
        idle_timeout: Duration::from_secs(60),
        max_recovery_attempts: 3,
        in_progress: Default::default(),
        panic_on_order: Default::default(),
        notifier: Default::default(),
        strategy: Strategy::Priority,
        retry_budget: Arc::new(RetryBudget::new(BudgetSettings {
            ratio: 1.0,
            min_retries_per_sec: 1_000,
            max_banked_retries: 1_000,
        })),
        anomaly: payments::actors::AnomalyGate::disabled(),
    };
    Fixture {
        deps: Arc::new(deps),
        _db: db,
    }
}

fn request(order: &str) -> PaymentRequest {
    PaymentRequest {
        amount: Amount::new(1234).expect("amount"),
        currency: Currency::parse("eur").expect("currency"),
        customer_id: "cus_1".into(),
        order_id: order.into(),
        payment_method: "pm_fake".into(),
        description: None,
        metadata: BTreeMap::new(),
        provider: None,
    }
}

pub(crate) fn create(order: &str, key: &str) -> CreatePayment {
    let request = request(order);
    CreatePayment {
        merchant_id: MerchantId::new("m"),
        idempotency_key: key.into(),
        fingerprint: fingerprint(&request),
        request,
        span: tracing::Span::none(),
    }
}

impl Fixture {
    fn actor(&self, order: &str) -> Addr<PaymentActor> {
        let key = OrderKey {
            merchant_id: MerchantId::new("m"),
            order_id: order.into(),
        };
        PaymentActor::new(key, self.deps.clone()).start()
    }
}

#[rstest]
#[actix::test]
async fn a_successful_charge_is_recorded_with_one_attempt(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let fake = FakeProvider::new("a", &[], OutcomeClass::Succeeded);
    let fx = fixture(std::slice::from_ref(&fake), open_store(backend).await).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    assert!(!created.replayed);
    let stored = fx
        .deps
        .store
        .payment(&MerchantId::new("m"), created.payment.id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(stored.status, PaymentStatus::Succeeded);
    assert_eq!(stored.attempts.len(), 1);
    assert_eq!(
        stored.provider_payment_id.as_deref(),
        Some(format!("fake_{}-1", created.payment.id).as_str())
    );
    assert_eq!(fake.calls().len(), 1);
}

#[rstest]
#[actix::test]
async fn the_attempt_is_durable_as_processing_before_the_provider_is_called(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (store, db) = open_store(backend).await;
    let fake = Arc::new(FakeProvider {
        store: Some(store.clone()),
        ..FakeProvider::build(
            "a",
            &[OutcomeClass::TransientNotCharged],
            OutcomeClass::Succeeded,
        )
    });
    let fx = fixture(std::slice::from_ref(&fake), (store, db)).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    let seen = fake.seen_outcomes.lock().expect("lock").clone();
    assert_eq!(
        seen,
        vec![Some(AttemptOutcome::Processing); 2],
        "each attempt was in the store, processing, when its call went out"
    );
}

#[rstest]
#[actix::test]
async fn an_unknown_outcome_is_retried_on_the_same_provider_with_the_same_key(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let a = FakeProvider::new(
        "a",
        &[OutcomeClass::Unknown, OutcomeClass::Unknown],
        OutcomeClass::Succeeded,
    );
    let b = FakeProvider::new("b", &[], OutcomeClass::Succeeded);
    let fx = fixture(&[a.clone(), b.clone()], open_store(backend).await).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    let keys: Vec<String> = a.calls().into_iter().map(|c| c.idempotency_key).collect();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "same key on every retry: {keys:?}"
    );
    assert_eq!(
        created.payment.attempts.len(),
        1,
        "retries of an unknown outcome are the same attempt"
    );
    assert!(b.calls().is_empty(), "never failed over after unknown");
}

#[rstest]
#[actix::test]
async fn an_outcome_that_stays_unknown_leaves_the_payment_pending_never_failed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let a = FakeProvider::new("a", &[], OutcomeClass::Unknown);
    let b = FakeProvider::new("b", &[], OutcomeClass::Succeeded);
    let fx = fixture(&[a.clone(), b.clone()], open_store(backend).await).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Pending);
    assert_eq!(created.payment.failure_code, None);
    assert_eq!(a.calls().len(), policy().unknown.max_attempts as usize);
    assert!(
        b.calls().is_empty(),
        "a payment that may have charged is never sent to a second provider"
    );
}

/// Issue 8, item 6: after an unknown answer only a success or a decline
/// says what happened; a provider that then calls our request invalid (a
/// 401, 403 or 404 to the same-key retry) says nothing about the first call,
/// which may have charged.
#[rstest]
#[actix::test]
async fn after_an_unknown_answer_an_invalid_one_leaves_the_payment_pending(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let a = FakeProvider::new("a", &[OutcomeClass::Unknown], OutcomeClass::Invalid);
    let fx = fixture(std::slice::from_ref(&a), open_store(backend).await).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Pending);
    assert_eq!(created.payment.failure_code, None);
    assert_eq!(a.calls().len(), policy().unknown.max_attempts as usize);
}

/// Issue 8, item 10: a look-up that cannot conclude must not erase the
/// provider's reference the first answer gave (the PaymentIntent id is what
/// a person reviewing the payment looks up), and the reference is shown on
/// every attempt.
#[rstest]
#[actix::test]
async fn an_inconclusive_recovery_keeps_the_attempts_provider_reference(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let a = FakeProvider::referencing_and_unreachable("a", OutcomeClass::Unknown);
    let fx = fixture(std::slice::from_ref(&a), open_store(backend).await).await;
    let actor = fx.actor("o1");
    let created = created_on(&actor, "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Pending);
    let reference = created.payment.attempts[0].provider_payment_id.clone();
    assert!(
        reference.is_some(),
        "the unknown answer named its reference"
    );
    let outcome = actor
        .send(RecoverPayment {
            merchant_id: MerchantId::new("m"),
            order_id: "o1".into(),
            payment_id: created.payment.id,
        })
        .await
        .expect("mailbox")
        .expect("a live actor")
        .expect("recover");
    assert_eq!(outcome, RecoveryOutcome::Unresolved);
    let stored = fx
        .deps
        .store
        .payment(&MerchantId::new("m"), created.payment.id)
        .await
        .expect("read")
        .expect("payment");
    assert_eq!(stored.attempts[0].provider_payment_id, reference);
    let shown = serde_json::to_value(&stored).expect("json");
    assert_eq!(
        shown["attempts"][0]["provider_payment_id"],
        serde_json::json!(reference),
        "every attempt shows what the provider told us: {shown}"
    );
}

#[rstest]
#[actix::test]
async fn transient_failures_fail_over_with_a_new_attempt_and_key(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let a = FakeProvider::new(
        "a",
        &[OutcomeClass::TransientNotCharged],
        OutcomeClass::Succeeded,
    );
    let b = FakeProvider::new("b", &[], OutcomeClass::Succeeded);
    let fx = fixture(&[a.clone(), b.clone()], open_store(backend).await).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    assert_eq!(created.payment.provider.as_deref(), Some("b"));
    let attempts = &created.payment.attempts;
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attempts[0].outcome,
        AttemptOutcome::Completed(OutcomeClass::TransientNotCharged)
    );
    assert_eq!(
        a.calls()[0].idempotency_key,
        format!("{}-1", created.payment.id)
    );
    assert_eq!(
        b.calls()[0].idempotency_key,
        format!("{}-2", created.payment.id)
    );
}

#[rstest]
#[actix::test]
async fn hard_declines_fail_without_retry(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let a = FakeProvider::new("a", &[], OutcomeClass::HardDecline);
    let b = FakeProvider::new("b", &[], OutcomeClass::Succeeded);
    let fx = fixture(&[a.clone(), b.clone()], open_store(backend).await).await;
    let created = created_on(&fx.actor("o1"), "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Failed);
    assert_eq!(
        created.payment.failure_code.as_deref(),
        Some("hard_decline")
    );
    assert_eq!(a.calls().len(), 1);
    assert!(b.calls().is_empty());
}

#[rstest]
#[actix::test]
async fn concurrent_duplicates_are_serialized_by_the_actor(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let slow = FakeProvider::slow("a", OutcomeClass::Succeeded, Duration::from_millis(100));
    let fx = fixture(std::slice::from_ref(&slow), open_store(backend).await).await;
    let actor = fx.actor("o1");
    let replies =
        futures_util::future::join_all((0..10).map(|_| actor.send(create("o1", "same-key")))).await;
    let mut originals = 0;
    let mut bodies = std::collections::HashSet::new();
    for reply in replies {
        let created = reply
            .expect("mailbox")
            .expect("a live actor")
            .expect("create");
        originals += usize::from(!created.replayed);
        bodies.insert(created.body);
    }
    assert_eq!(originals, 1);
    assert_eq!(bodies.len(), 1);
    assert_eq!(
        slow.calls().len(),
        1,
        "one provider call for ten identical messages"
    );
}

/// Issue 8, item 9: idle actors are retired by one sweeper (no timer per
/// actor), and a retired actor refuses work so a fresh one takes the order.
#[rstest]
#[actix::test]
async fn the_sweeper_retires_idle_actors_and_a_retired_one_refuses_work(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let fake = FakeProvider::new("a", &[], OutcomeClass::Succeeded);
    let mut fx = fixture(std::slice::from_ref(&fake), open_store(backend).await).await;
    Arc::get_mut(&mut fx.deps).expect("unshared").idle_timeout = Duration::from_millis(1);
    let registry = PaymentRegistry::new(fx.deps.clone(), vec![Arbiter::current()], 10);
    registry
        .create_payment(create("o1", "k1"))
        .await
        .expect("create");
    assert_eq!(registry.live_actors(), 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(registry.sweep(), 1, "the idle actor was retired");
    assert_eq!(registry.live_actors(), 0);
    let retired = fx.actor("o2");
    retired
        .send(payments::messages::payment::Retire)
        .await
        .expect("retire");
    match retired.send(create("o2", "k2")).await {
        Err(_) | Ok(Err(payments::messages::payment::Retired)) => {}
        Ok(other) => panic!("a retired actor must not work: {other:?}"),
    }
    assert_eq!(
        fake.calls().len(),
        1,
        "only the first payment reached the provider"
    );
    // The order gets a fresh actor through the registry.
    registry
        .create_payment(create("o2", "k2"))
        .await
        .expect("a fresh actor");
    assert_eq!(fake.calls().len(), 2);
}

/// Issue 8, item 9: the registry is bounded; a new order beyond the bound
/// is shed with `Overloaded` (503 + Retry-After), while orders that have
/// an actor go on.
#[rstest]
#[actix::test]
async fn a_full_registry_sheds_new_orders(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let fake = FakeProvider::new("a", &[], OutcomeClass::Succeeded);
    let fx = fixture(std::slice::from_ref(&fake), open_store(backend).await).await;
    let registry = PaymentRegistry::new(fx.deps.clone(), vec![Arbiter::current()], 2);
    for order in ["o1", "o2"] {
        registry
            .create_payment(create(order, &format!("k-{order}")))
            .await
            .expect("room for two");
    }
    match registry.create_payment(create("o3", "k-o3")).await {
        Err(payments::EngineError::Overloaded { .. }) => {}
        other => panic!("a third order must be shed: {other:?}"),
    }
    assert_eq!(registry.live_actors(), 2);
    // An order that has an actor is still served.
    let replay = registry
        .create_payment(create("o1", "k-o1"))
        .await
        .expect("replay on a live actor");
    assert!(replay.replayed);
}

#[actix::test]
async fn provider_calls_run_outside_the_mailbox() {
    let slow = FakeProvider::slow("a", OutcomeClass::Succeeded, Duration::from_millis(200));
    let actor = provider_actor(slow.clone(), ProviderSettings::default());
    let started = Instant::now();
    let requests: Vec<_> = (0..10)
        .map(|i| actor.send(Charge(charge_request(i))))
        .collect();
    for reply in futures_util::future::join_all(requests).await {
        assert_eq!(
            reply.expect("mailbox").expect("admitted").response.class,
            OutcomeClass::Succeeded
        );
    }
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "10 calls of 200 ms overlapped: {:?}",
        started.elapsed()
    );
    let snapshot = actor.send(GetSnapshot).await.expect("snapshot");
    assert_eq!(snapshot.calls, 10);
    assert_eq!(snapshot.in_flight, 0);
}

#[actix::test]
async fn the_bulkhead_refuses_calls_beyond_max_in_flight() {
    let slow = FakeProvider::slow("a", OutcomeClass::Succeeded, Duration::from_millis(200));
    let settings = ProviderSettings {
        max_in_flight: 2,
        call_timeout_ms: 5_000,
        ..ProviderSettings::default()
    };
    let actor = provider_actor(slow.clone(), settings);
    let replies =
        futures_util::future::join_all((0..5).map(|i| actor.send(Charge(charge_request(i))))).await;
    let rejected = replies
        .iter()
        .filter(|r| matches!(r, Ok(Err(CallRejected::BulkheadFull))))
        .count();
    assert_eq!(rejected, 3);
    assert_eq!(
        slow.calls().len(),
        2,
        "refused calls never reach the provider"
    );
    let snapshot = actor.send(GetSnapshot).await.expect("snapshot");
    assert_eq!(snapshot.rejected, 3);
}

#[actix::test]
async fn a_disabled_provider_refuses_and_a_slow_one_times_out_as_unknown() {
    let slow = FakeProvider::slow("a", OutcomeClass::Succeeded, Duration::from_millis(500));
    let settings = ProviderSettings {
        max_in_flight: 10,
        call_timeout_ms: 50,
        ..ProviderSettings::default()
    };
    let actor = provider_actor(slow.clone(), settings);
    let timed_out = actor
        .send(Charge(charge_request(1)))
        .await
        .expect("mailbox")
        .expect("admitted");
    assert_eq!(
        timed_out.response.class,
        OutcomeClass::Unknown,
        "a call that times out may have charged"
    );
    actor.send(SetEnabled(false)).await.expect("mailbox");
    let refused = actor
        .send(Charge(charge_request(2)))
        .await
        .expect("mailbox");
    assert_eq!(refused, Err(CallRejected::Disabled));
    assert_eq!(slow.calls().len(), 1);
    let snapshot = actor.send(GetSnapshot).await.expect("snapshot");
    assert!(!snapshot.enabled);
    assert_eq!(snapshot.failed, 1);
}

pub(crate) fn charge_request(n: u32) -> ChargeRequest {
    ChargeRequest {
        payment_id: payments::domain::PaymentId::new(),
        attempt_number: n,
        idempotency_key: format!("key-{n}"),
        merchant_id: MerchantId::new("m"),
        order_id: format!("o{n}"),
        customer_id: "c".into(),
        amount: Amount::new(100).expect("amount"),
        currency: Currency::parse("usd").expect("usd"),
        payment_method: "pm".into(),
        description: None,
    }
}

/// A provider that, like a remote one whose client timed out, goes on
/// processing the call and commits the charge `commit_after` after it
/// arrived, long after the engine gave up on the answer.
struct LateCommitter {
    commit_after: Duration,
    committed: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Provider for LateCommitter {
    fn name(&self) -> &str {
        "late"
    }

    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        let (key, committed, wait) = (
            request.idempotency_key.clone(),
            self.committed.clone(),
            self.commit_after,
        );
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            committed.lock().expect("lock").push(key);
        });
        // Never answers in time: the engine's call timeout fires first.
        tokio::time::sleep(Duration::from_secs(3_600)).await;
        unreachable!("the call times out first")
    }

    async fn lookup(&self, key: &str) -> Result<LookupResult, ProviderError> {
        let found = self
            .committed
            .lock()
            .expect("lock")
            .iter()
            .any(|k| k == key);
        Ok(if found {
            LookupResult::Charged {
                provider_payment_id: format!("late_{key}"),
                amount: 1234,
                currency: "eur".into(),
            }
        } else {
            LookupResult::NotFound
        })
    }

    async fn refund(&self, _request: &RefundRequest) -> RefundResponse {
        unreachable!("not refunded here")
    }

    async fn settlements(
        &self,
        _: Timestamp,
        _: Timestamp,
        _: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        Ok(SettlementPage::empty())
    }
}

/// Issue 8, item 4: "no such charge" from a look-up is believed only once no
/// call of the attempt can still be in flight (attempt start + the longest
/// the call and its retries can take) and the provider's window passed. A
/// provider that commits after the engine gave up is found, not failed.
#[rstest]
#[actix::test]
async fn a_charge_committed_after_the_engine_gave_up_is_found_not_failed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (store, _db) = open_store(backend).await;
    let manual = Arc::new(ManualClock::new(
        Timestamp::parse_rfc3339("2026-01-01T00:00:00Z").expect("ts"),
    ));
    let committed = Arc::new(Mutex::new(Vec::new()));
    let late = Arc::new(LateCommitter {
        commit_after: Duration::from_millis(300),
        committed: committed.clone(),
    });
    let settings = ProviderSettings {
        call_timeout_ms: 100,
        ..ProviderSettings::default()
    };
    let once = ClassPolicy {
        max_attempts: 1,
        backoff: BackoffKind::None,
        ..ClassPolicy::default()
    };
    let retry = RetryPolicy {
        unknown: once,
        transient_not_charged: once,
        ..policy()
    };
    let entry = ProviderEntry {
        name: "late".into(),
        addr: ProviderActor::new(
            late,
            settings,
            manual.clone(),
            Arc::new(ProviderHealth::default()),
        )
        .start(),
        currencies: None,
        priority: 0,
        weight: 1,
        fees: Default::default(),
        health: Arc::new(ProviderHealth::default()),
        lookup_consistency_ms: 0,
        call_timeout_ms: 100,
        wallet: false,
        retry,
    };
    let trusted_after_ms = entry.not_found_trusted_after_ms();
    let mut fx = fixture(&[], (store, _db)).await;
    let deps = Arc::get_mut(&mut fx.deps).expect("unshared");
    deps.providers = ProviderDirectory::new(vec![entry]);
    deps.clock = manual.clone();
    let actor = fx.actor("o1");
    let created = created_on(&actor, "o1", "k1").await;
    assert_eq!(created.payment.status, PaymentStatus::Pending);
    let recover = || RecoverPayment {
        merchant_id: MerchantId::new("m"),
        order_id: "o1".into(),
        payment_id: created.payment.id,
    };
    // Right away the provider has not committed yet: "not found" now must
    // not fail a payment whose call may still land.
    let early = actor.send(recover()).await.expect("mailbox").expect("live");
    assert_eq!(early.expect("recover"), RecoveryOutcome::Unresolved);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        committed.lock().expect("lock").len(),
        1,
        "the late charge landed"
    );
    manual.advance_ms(i64::try_from(trusted_after_ms).expect("ms") + 1);
    let later = actor.send(recover()).await.expect("mailbox").expect("live");
    assert_eq!(
        later.expect("recover"),
        RecoveryOutcome::Resolved {
            from: PaymentStatus::Pending,
            to: PaymentStatus::Succeeded
        }
    );
}

/// Issue 8, item 5: a crash between an attempt's answer and the payment's
/// new status (possible with the old two-write scheduled retry) left a
/// `processing` payment whose last attempt was a soft decline; recovery
/// answered it with an internal error on every pass. It now decides it.
#[rstest]
#[actix::test]
async fn recovery_decides_a_processing_payment_whose_last_attempt_completed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let fake = FakeProvider::new("a", &[], OutcomeClass::Succeeded);
    let fx = fixture(std::slice::from_ref(&fake), open_store(backend).await).await;
    let store = fx.deps.store.clone();
    let (mut payment, attempt) = soft_declined_payment(fx.deps.clock.now());
    let begun = store
        .begin_payment(NewPayment {
            payment: payment.clone(),
            idempotency_key: "k1".into(),
            fingerprint: "f".into(),
            holder: fx.deps.holder.clone(),
            lease_expires_at: payment.created_at,
            events: vec![],
            flags: vec![],
        })
        .await
        .expect("begin");
    assert_eq!(begun, BeginOutcome::Started);
    payment.attempts = vec![attempt.clone()];
    store
        .save_payment(PaymentWrite {
            payment: payment.clone(),
            expected_status: PaymentStatus::Processing,
            attempts: vec![attempt],
            events: vec![],
            response: None,
            lease: LeaseChange::Renew {
                expires_at: payment.created_at,
            },
            holder: fx.deps.holder.clone(),
            posting: None,
        })
        .await
        .expect("the state a crash left");
    let outcome = fx
        .actor("o1")
        .send(RecoverPayment {
            merchant_id: MerchantId::new("m"),
            order_id: "o1".into(),
            payment_id: payment.id,
        })
        .await
        .expect("mailbox")
        .expect("a live actor")
        .expect("recovery decides it");
    assert_eq!(
        outcome,
        RecoveryOutcome::Resolved {
            from: PaymentStatus::Processing,
            to: PaymentStatus::RetryScheduled
        }
    );
    assert!(fake.calls().is_empty(), "a soft decline is not looked up");
}

/// A `processing` payment of order `o1` whose one attempt was soft-declined.
fn soft_declined_payment(now: Timestamp) -> (Payment, Attempt) {
    let request = request("o1");
    let payment = Payment {
        id: PaymentId::new(),
        object: PaymentObject,
        merchant_id: MerchantId::new("m"),
        status: PaymentStatus::Processing,
        amount: request.amount,
        amount_refunded: 0,
        amount_refund_pending: 0,
        currency: request.currency,
        customer_id: request.customer_id,
        order_id: request.order_id,
        payment_method: request.payment_method,
        description: None,
        provider: Some("a".into()),
        provider_payment_id: None,
        failure_code: None,
        failure_message: None,
        next_attempt_at: None,
        attempts: Vec::new(),
        anomaly_flags: Vec::new(),
        metadata: BTreeMap::new(),
        recovery_attempts: 0,
        created_at: now,
        updated_at: now,
    };
    let attempt = Attempt {
        id: AttemptId::new(),
        number: 1,
        provider: "a".into(),
        outcome: AttemptOutcome::Completed(OutcomeClass::SoftDecline),
        code: Some("insufficient_funds".into()),
        latency_ms: Some(1),
        provider_payment_id: None,
        raw_response: None,
        created_at: now,
        updated_at: None,
    };
    (payment, attempt)
}

/// Sends a create for `order` under `key` to `actor`; the created payment.
async fn created_on(
    actor: &Addr<PaymentActor>,
    order: &str,
    key: &str,
) -> payments::CreatedPayment {
    actor
        .send(create(order, key))
        .await
        .expect("mailbox")
        .expect("a live actor")
        .expect("create")
}
