//! The anomaly rules on the payment path, over real HTTP (DESIGN §6, §10):
//! each rule flagged end to end and listed at `/v1/anomalies`; a blocking
//! rule fails the payment before any provider is called; the windows
//! survive a restart; `scope = "cluster"` counts across two instances; and
//! the per-key rate limit answers 429 without storing anything.

use crate::common::{unique, Backend, Reply, ServerOptions, TestDb, TestServer, DEV_KEY};
use rstest::rstest;
use serde_json::{json, Value};
use std::time::Duration;

/// Creates a payment of `customer` and returns it (201 asserted).
async fn pay(server: &TestServer, customer: &str, amount: i64, method: &str) -> Value {
    let body = json!({
        "amount": amount,
        "currency": "usd",
        "customer_id": customer,
        "order_id": unique("order"),
        "payment_method": method,
    });
    let reply = server.create(&unique("idem"), &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()
}

/// The rules a payment carries in `anomaly_flags`.
fn flags(payment: &Value) -> Vec<String> {
    payment["anomaly_flags"]
        .as_array()
        .unwrap_or_else(|| panic!("no anomaly_flags: {payment}"))
        .iter()
        .map(|f| f.as_str().expect("a rule name").to_string())
        .collect()
}

/// Pays `count` times for `customer` (amounts `base`, `base + 1`, ...
/// unless `same_amount`), returning the payments in order.
async fn pay_many(
    server: &TestServer,
    customer: &str,
    count: usize,
    same_amount: bool,
    method: impl Fn(usize) -> String,
) -> Vec<Value> {
    let mut paid = Vec::new();
    for i in 0..count {
        let amount = if same_amount { 1_500 } else { 1_000 + i as i64 };
        paid.push(pay(server, customer, amount, &method(i)).await);
    }
    paid
}

/// Asserts that only the last of `paid` carries `rule`.
fn only_last_has(paid: &[Value], rule: &str) {
    let (last, before) = paid.split_last().expect("payments");
    for (i, payment) in before.iter().enumerate() {
        assert!(
            !flags(payment).contains(&rule.to_string()),
            "payment {} flagged {rule} too early: {payment}",
            i + 1
        );
    }
    assert!(
        flags(last).contains(&rule.to_string()),
        "the last payment is not flagged {rule}: {last}"
    );
}

async fn anomalies(server: &TestServer, query: &str) -> Value {
    let reply = server.get(&format!("/v1/anomalies{query}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()
}

#[rstest]
#[tokio::test]
async fn each_rule_is_flagged_end_to_end_and_listed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let started = chrono::Utc::now() - chrono::Duration::seconds(1);
    let visa = |_| "pm_card_visa".to_string();

    let velocity = unique("cus_velocity");
    let paid = pay_many(&server, &velocity, 6, false, visa).await;
    only_last_has(&paid, "velocity");
    assert_eq!(flags(&paid[5]), ["velocity"], "only velocity fires");
    assert_eq!(paid[5]["status"], "succeeded", "a flag does not stop it");
    // And it is an outgoing event (DESIGN §11), written with the flag.
    let events = server
        .get("/v1/events?type=anomaly.flagged&limit=100")
        .await;
    assert_eq!(events.status, 200, "{}", events.text);
    let flagged: Vec<Value> = events.json()["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["data"]["object"]["payment_id"] == paid[5]["id"])
        .collect();
    assert_eq!(flagged.len(), 1, "{}", events.text);
    assert_eq!(flagged[0]["data"]["object"]["rule"], "velocity");

    let large = unique("cus_large");
    assert!(flags(&pay(&server, &large, 500_000, "pm_card_visa").await).is_empty());
    let big = pay(&server, &large, 500_001, "pm_card_visa").await;
    assert_eq!(flags(&big), ["large_amount"]);

    let streak = unique("cus_streak");
    let declined = pay_many(&server, &streak, 4, false, |_| "pm_card_declined".into()).await;
    assert!(declined.iter().all(|p| p["status"] == "failed"));
    let fifth = pay(&server, &streak, 2_000, "pm_card_visa").await;
    only_last_has(&[declined, vec![fifth.clone()]].concat(), "failed_streak");

    let duplicate = unique("cus_duplicate");
    let paid = pay_many(&server, &duplicate, 4, true, visa).await;
    only_last_has(&paid, "duplicate_amount");

    let cards = unique("cus_cards");
    let paid = pay_many(&server, &cards, 6, false, |i| format!("pm_card_test_{i}")).await;
    only_last_has(&paid, "card_testing");

    // Listed newest first, with the contract's fields.
    let all = anomalies(&server, "?limit=100").await;
    let data = all["data"].as_array().expect("data");
    let rules: Vec<&str> = data.iter().map(|f| f["rule"].as_str().unwrap()).collect();
    for rule in [
        "velocity",
        "large_amount",
        "failed_streak",
        "duplicate_amount",
        "card_testing",
    ] {
        assert!(rules.contains(&rule), "{rule} not listed: {all}");
    }
    let newest = &data[0];
    assert_eq!(newest["object"], "anomaly_flag");
    assert!(newest["id"].as_str().unwrap().starts_with("af_"));
    assert_eq!(newest["payment_id"], paid[5]["id"]);
    assert_eq!(newest["customer_id"], cards.as_str());
    assert_eq!(newest["action"], "flag");
    assert!(newest["created_at"].is_string() || newest["created_at"].is_number());
    let ids: Vec<&str> = data.iter().map(|f| f["id"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first");

    // Filters.
    let mine = anomalies(&server, &format!("?customer_id={velocity}")).await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["data"][0]["rule"], "velocity");
    assert_eq!(mine["data"][0]["detail"]["count"], 6);
    let large_only = anomalies(&server, "?rule=large_amount").await;
    let large_data = large_only["data"].as_array().unwrap();
    assert_eq!(large_data.len(), 1);
    assert_eq!(large_data[0]["payment_id"], big["id"]);
    let since = started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let recent = anomalies(&server, &format!("?since={since}&limit=100")).await;
    assert_eq!(recent["data"].as_array().unwrap().len(), data.len());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none = anomalies(&server, &format!("?since={future}")).await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);

    // Pagination.
    let first = anomalies(&server, "?limit=2").await;
    assert_eq!(first["has_more"], true);
    let last_id = first["data"][1]["id"].as_str().unwrap();
    let second = anomalies(&server, &format!("?limit=2&starting_after={last_id}")).await;
    assert_eq!(second["data"][0]["id"], data[2]["id"]);

    // Bad filters: 400 naming the param.
    for (query, param) in [
        ("?rule=bogus", "rule"),
        ("?since=yesterday", "since"),
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?starting_after=no%20such", "starting_after"),
    ] {
        let reply = server.get(&format!("/v1/anomalies{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(reply.error_param(), param, "{query}");
    }
}

const BLOCK_VELOCITY: &str = r#"
[anomaly.velocity]
action = "block"
"#;

#[rstest]
#[tokio::test]
async fn a_blocking_rule_fails_the_payment_before_any_provider(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(BLOCK_VELOCITY)).await;
    let customer = unique("cus_attacker");
    let paid = pay_many(&server, &customer, 7, false, |_| "pm_card_visa".into()).await;
    for payment in &paid[..5] {
        assert_eq!(payment["status"], "succeeded", "{payment}");
    }
    for blocked in &paid[5..] {
        assert_eq!(blocked["status"], "failed", "{blocked}");
        assert_eq!(blocked["failure_code"], "blocked_by_rule");
        let message = blocked["failure_message"].as_str().unwrap();
        assert!(message.contains("velocity"), "{message}");
        assert_eq!(flags(blocked), ["velocity"]);
        assert_eq!(blocked["attempts"].as_array().unwrap().len(), 0);
        assert!(blocked["provider"].is_null());
        let order = blocked["order_id"].as_str().unwrap();
        assert_eq!(server.total_charges(order).await, 0, "the sandbox charged");
        let id = blocked["id"].as_str().unwrap();
        let postings = server
            .get(&format!("/v1/ledger/transactions?payment_id={id}"))
            .await;
        assert_eq!(postings.status, 200, "{}", postings.text);
        assert_eq!(postings.json()["data"].as_array().unwrap().len(), 0);
        // Read back as stored, with its audit trail.
        let stored = server.get(&format!("/v1/payments/{id}")).await.json();
        assert_eq!(stored["failure_code"], "blocked_by_rule");
        let events = server.get(&format!("/v1/payments/{id}/events")).await;
        let last = events.json()["data"].as_array().unwrap().last().cloned();
        assert_eq!(last.unwrap()["data"]["code"], "blocked_by_rule");
    }
    // The five that went through were charged once each.
    for payment in &paid[..5] {
        let order = payment["order_id"].as_str().unwrap();
        assert_eq!(server.total_charges(order).await, 1);
    }
    let listed = anomalies(&server, &format!("?customer_id={customer}")).await;
    let data = listed["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert!(data.iter().all(|f| f["action"] == "block"));
}

#[rstest]
#[tokio::test]
async fn after_a_restart_the_windows_are_warm(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    let customer = unique("cus_restart");
    let mut server = TestServer::start_on(&db, ServerOptions::default()).await;
    let paid = pay_many(&server, &customer, 5, false, |_| "pm_card_visa".into()).await;
    assert!(paid.iter().all(|p| flags(p).is_empty()));
    assert!(server.terminate(), "clean stop");
    let server = TestServer::start_on(&db, ServerOptions::default()).await;
    let sixth = pay(&server, &customer, 3_000, "pm_card_visa").await;
    assert_eq!(flags(&sixth), ["velocity"], "the windows were not warmed");
    let other = pay(&server, &unique("cus_fresh"), 3_000, "pm_card_visa").await;
    assert!(flags(&other).is_empty());
}

const CLUSTER: &str = r#"
[anomaly]
scope = "cluster"
"#;

#[rstest]
#[tokio::test]
async fn cluster_scope_counts_every_instance(
    #[values(Backend::Postgres)] backend: Backend,
    #[values(true, false)] cluster: bool,
) {
    let db = TestDb::new(backend);
    let options = if cluster {
        ServerOptions::config(CLUSTER)
    } else {
        ServerOptions::default()
    };
    let servers = [
        TestServer::start_on(&db, options.clone()).await,
        TestServer::start_on(&db, options).await,
    ];
    let customer = unique("cus_spread");
    let mut paid = Vec::new();
    for i in 0..6 {
        let server = &servers[i % 2];
        paid.push(pay(server, &customer, 1_000 + i as i64, "pm_card_visa").await);
    }
    if cluster {
        only_last_has(&paid, "velocity");
    } else {
        // Each instance saw three: per-instance windows see only their share.
        assert!(paid.iter().all(|p| flags(p).is_empty()), "{paid:?}");
    }
}

const RATE_LIMITED: &str = r#"
[server.rate_limit]
requests_per_second = 1
burst = 2
"#;

async fn create_with(server: &TestServer, key: &str, body: &Value) -> Reply {
    server
        .create_raw(Some(key), Some(DEV_KEY), body.to_string())
        .await
}

#[rstest]
#[tokio::test]
async fn over_the_rate_limit_is_429_and_stores_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(RATE_LIMITED)).await;
    let customer = unique("cus_rate");
    let body = |order: &str| {
        json!({"amount": 1_000, "currency": "usd", "customer_id": customer,
               "order_id": order, "payment_method": "pm_card_visa"})
    };
    let mut answers = Vec::new();
    let orders: Vec<String> = (0..4).map(|_| unique("order")).collect();
    let keys: Vec<String> = (0..4).map(|_| unique("idem")).collect();
    for (order, key) in orders.iter().zip(&keys) {
        answers.push(create_with(&server, key, &body(order)).await);
    }
    let created = answers.iter().filter(|r| r.status == 201).count();
    assert!(created >= 2, "the burst of 2 is allowed");
    let limited: Vec<usize> = (0..4).filter(|i| answers[*i].status == 429).collect();
    assert!(!limited.is_empty(), "no 429 over the limit");
    let refused = &answers[limited[0]];
    assert_eq!(refused.json()["error"]["type"], "rate_limit_error");
    assert_eq!(refused.error_code(), "rate_limit_exceeded");
    let wait: u64 = refused
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!(wait >= 1, "Retry-After {wait}");
    // Probes are not limited.
    for _ in 0..5 {
        let health = server.send(server.client.get(server.url("/healthz"))).await;
        assert_eq!(health.status, 200);
    }
    // Nothing was stored for the refused key: retried after the wait, it
    // is a new payment, created once.
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let i = limited[0];
    let retried = create_with(&server, &keys[i], &body(&orders[i])).await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    assert!(retried.header("Idempotent-Replayed").is_none());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed = server
        .get(&format!("/v1/payments?customer_id={customer}&limit=100"))
        .await;
    let payments = listed.json()["data"].as_array().cloned().unwrap();
    let of_order = payments
        .iter()
        .filter(|p| p["order_id"] == orders[i].as_str())
        .count();
    assert_eq!(of_order, 1, "exactly one payment for the retried order");
    assert_eq!(payments.len(), created + 1);
}

/// `scope = "cluster"`'s read, straight from the store: the counts over a
/// customer's stored payments, and what one read costs.
#[rstest]
#[tokio::test]
async fn cluster_counts_are_read_from_the_store(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    use payments::domain::{Amount, Currency, MerchantId, PaymentFacts, Timestamp};
    use payments::store::CountsQuery;
    let db = TestDb::new(backend);
    let server = TestServer::start_on(&db, ServerOptions::default()).await;
    let customer = unique("cus_counts");
    pay_many(&server, &customer, 4, false, |_| "pm_card_declined".into()).await;
    pay_many(&server, &customer, 8, false, |_| "pm_card_visa".into()).await;
    pay_many(&server, &customer, 2, false, |_| "pm_card_declined".into()).await;
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", db.data_dir.join("payments.db").display()),
        Backend::Postgres => crate::common::postgres_url(),
    };
    let store = payments::store::open(&url, &db.schema)
        .await
        .expect("store");
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let ago = |secs: i64| now.plus_millis(-secs * 1_000);
    let query = CountsQuery {
        facts: PaymentFacts {
            merchant: MerchantId::new("default"),
            customer_id: customer.clone(),
            amount: Amount::new(1_001).expect("amount"),
            currency: Currency::parse("usd").expect("usd"),
            payment_method: "pm_card_visa".into(),
        },
        velocity_since: ago(60),
        duplicate_since: ago(300),
        card_since: ago(3_600),
        streak_rows: 4,
    };
    let counts = store.customer_counts(&query).await.expect("counts");
    assert_eq!(counts.in_velocity_window, 14);
    // Amounts 1000+i in each batch: 1001 appears once per batch.
    assert_eq!(counts.same_amount, 3);
    assert_eq!(counts.distinct_methods, 2);
    assert!(counts.method_seen);
    assert_eq!(
        counts.failures, 2,
        "the two newest declines, then a success"
    );
    let other = CountsQuery {
        facts: PaymentFacts {
            customer_id: unique("cus_nobody"),
            ..query.facts.clone()
        },
        ..query.clone()
    };
    assert_eq!(
        store.customer_counts(&other).await.expect("counts"),
        Default::default()
    );
    const READS: u32 = 300;
    let started = std::time::Instant::now();
    for _ in 0..READS {
        store.customer_counts(&query).await.expect("counts");
    }
    let micros = started.elapsed().as_micros() / u128::from(READS);
    println!("cluster anomaly counts on {backend:?}: {micros} µs per payment");
    assert!(micros < 50_000, "{micros} µs per read");
}
