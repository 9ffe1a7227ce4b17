//! Reconciliation over real HTTP (issue 11's mutation test, DESIGN §9):
//! 200 payments of every kind reconcile clean; then exactly one
//! disagreement per category is made, through the sandbox's operator hooks
//! (the provider's side) and behind the engine's back in its database (the
//! ledger's side), and the next run reports each once, in its category.

use crate::common::{payment_body, unique, Backend, Reply, ServerOptions, TestServer};
use futures_util::future::join_all;
use rstest::rstest;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Two fee-charging sandboxes (the cheaper, `sandbox_a`, takes every card
/// payment) and the wallet; no timer run during the test.
const CONFIG: &str = r#"
[reconciler]
interval_secs = 3600
run_at_startup = false

[[providers]]
name = "sandbox_a"
[providers.fees]
usd = { fixed = 25, percent_bps = 250 }

[[providers]]
name = "sandbox_b"
[providers.fees]
usd = { fixed = 30, percent_bps = 290 }

[[providers]]
name = "wallet"
kind = "wallet"
"#;

const CARD_PAYMENTS: usize = 160;
const DECLINED_PAYMENTS: usize = 20;
const WALLET_PAYMENTS: usize = 20;
/// Wallet payments whose customer holds nothing: they fail.
const POOR_WALLET_PAYMENTS: usize = 2;
const PAYMENTS: usize = CARD_PAYMENTS + DECLINED_PAYMENTS + WALLET_PAYMENTS;
/// Requests sent at once while creating payments.
const CONCURRENCY: usize = 20;

async fn post(server: &TestServer, path: &str, body: Value) -> Reply {
    server
        .send(
            server
                .client
                .post(server.url(path))
                .bearer_auth(&server.operator_key)
                .header("Idempotency-Key", unique("key"))
                .json(&body),
        )
        .await
}

async fn pay(
    server: &TestServer,
    order: String,
    method: &str,
    amount: i64,
    customer: &str,
) -> Value {
    let mut body = payment_body(&order, method);
    body["amount"] = json!(amount);
    body["customer_id"] = json!(customer);
    let reply = post(server, "/v1/payments", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()
}

/// Creates the 200 payments (and refunds); returns the card payments that
/// succeeded and were not refunded, and the wallet payments, by outcome.
async fn create_payments(server: &TestServer) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let rich = unique("cus_rich");
    let topped = post(
        server,
        &format!("/v1/wallets/{rich}/top_ups"),
        json!({ "amount": 1_000_000, "currency": "usd" }),
    )
    .await;
    assert_eq!(topped.status, 201, "{}", topped.text);
    let mut plan: Vec<(String, i64, String)> = Vec::new();
    for i in 0..CARD_PAYMENTS {
        plan.push(("pm_card_visa".into(), 1_000 + i as i64, unique("cus")));
    }
    for _ in 0..DECLINED_PAYMENTS {
        plan.push(("pm_card_declined".into(), 700, unique("cus")));
    }
    for i in 0..WALLET_PAYMENTS {
        let customer = if i < POOR_WALLET_PAYMENTS {
            unique("cus_poor")
        } else {
            rich.clone()
        };
        plan.push(("wallet".into(), 500 + i as i64, customer));
    }
    let mut created = Vec::new();
    for chunk in plan.chunks(CONCURRENCY) {
        let batch = chunk.iter().map(|(method, amount, customer)| {
            pay(server, unique("ord"), method, *amount, customer)
        });
        created.extend(join_all(batch).await);
    }
    assert_eq!(created.len(), PAYMENTS);
    let status = |p: &Value| p["status"].as_str().unwrap_or_default().to_string();
    let cards: Vec<Value> = created[..CARD_PAYMENTS].to_vec();
    assert!(
        cards.iter().all(|p| status(p) == "succeeded"),
        "every card payment succeeded"
    );
    // Ten refunds: five partial, five full.
    for (i, payment) in cards[..10].iter().enumerate() {
        let amount = payment["amount"].as_i64().expect("amount");
        let refunded = if i < 5 { amount / 2 } else { amount };
        let path = format!(
            "/v1/payments/{}/refunds",
            payment["id"].as_str().expect("id")
        );
        let reply = post(server, &path, json!({ "amount": refunded })).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
        assert_eq!(reply.json()["status"], "succeeded");
    }
    let wallets = &created[CARD_PAYMENTS + DECLINED_PAYMENTS..];
    let (poor, paid): (Vec<Value>, Vec<Value>) =
        wallets.iter().cloned().partition(|p| status(p) == "failed");
    assert_eq!(poor.len(), POOR_WALLET_PAYMENTS, "{poor:?}");
    (cards[10..].to_vec(), paid, poor)
}

fn window() -> Value {
    let now = chrono::Utc::now();
    json!({
        "from": (now - chrono::Duration::minutes(10)).to_rfc3339(),
        "to": (now + chrono::Duration::minutes(10)).to_rfc3339(),
    })
}

async fn run(server: &TestServer, window: &Value) -> Value {
    let reply = post(server, "/v1/reconciliation/runs", window.clone()).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let report = reply.json();
    assert_eq!(report["object"], "reconciliation_run", "{report}");
    report
}

fn by_category(report: &Value) -> BTreeMap<String, u64> {
    report["by_category"]
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// The sandbox charge of `payment`'s order at `sandbox_a`.
async fn charge_of(server: &TestServer, payment: &Value) -> Value {
    let order = payment["order_id"].as_str().expect("order");
    let charges = server.sandbox_charges("sandbox_a", order).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    charges[0].clone()
}

async fn hook(server: &TestServer, method: reqwest::Method, path: &str, body: Value) -> Value {
    let reply = server
        .send(
            server
                .client
                .request(method, server.url(path))
                .bearer_auth(&server.operator_key)
                .json(&body),
        )
        .await;
    assert!(
        reply.status < 300,
        "{path}: {} {}",
        reply.status,
        reply.text
    );
    reply.json()
}

/// One disagreement per provider category, through the sandbox's hooks.
async fn mutate_provider(server: &TestServer, cards: &[Value]) {
    use reqwest::Method;
    let charges = join_all(cards[..6].iter().map(|p| charge_of(server, p))).await;
    let path = |charge: &Value| {
        format!(
            "/v1/sandbox/sandbox_a/charges/{}",
            charge["id"].as_str().expect("id")
        )
    };
    let amount = charges[0]["amount"].as_i64().expect("amount");
    hook(
        server,
        Method::PATCH,
        &path(&charges[0]),
        json!({ "amount": amount + 1 }),
    )
    .await;
    hook(
        server,
        Method::PATCH,
        &path(&charges[1]),
        json!({ "currency": "eur" }),
    )
    .await;
    hook(
        server,
        Method::PATCH,
        &path(&charges[2]),
        json!({ "status": "refunded" }),
    )
    .await;
    let fee = charges[3]["fee"].as_i64().expect("fee");
    hook(
        server,
        Method::PATCH,
        &path(&charges[3]),
        json!({ "fee": fee + 7 }),
    )
    .await;
    hook(server, Method::DELETE, &path(&charges[4]), json!({})).await;
    let unknown = json!({ "order_id": unique("ord_nobody"), "amount": 4_200, "currency": "usd" });
    hook(
        server,
        Method::POST,
        "/v1/sandbox/sandbox_a/charges",
        unknown,
    )
    .await;
    let second = json!({ "order_id": cards[5]["order_id"], "amount": 1_234, "currency": "usd" });
    hook(
        server,
        Method::POST,
        "/v1/sandbox/sandbox_a/charges",
        second,
    )
    .await;
}

/// One disagreement per ledger category, behind the engine's back.
async fn mutate_ledger(server: &TestServer, paid_wallet: &Value, poor_wallet: &Value) {
    let id = |p: &Value| p["id"].as_str().expect("id").to_string();
    // Succeeded without its posting.
    server
        .execute_sql(&format!(
            "UPDATE payments SET status = 'succeeded' WHERE id = '{}'",
            id(poor_wallet)
        ))
        .await;
    // Failed, yet posted.
    server
        .execute_sql(&format!(
            "UPDATE payments SET status = 'failed' WHERE id = '{}'",
            id(paid_wallet)
        ))
        .await;
    // A transaction whose debits and credits differ.
    let now_micros = chrono::Utc::now().timestamp_micros();
    let txn = unique("txn_forged");
    server
        .execute_sql(&format!(
            "INSERT INTO ledger_transactions (id, kind, merchant_id, payment_id, refund_id, created_at)
               VALUES ('{txn}', 'wallet_top_up', 'default', NULL, NULL, {now_micros});
             INSERT INTO ledger_entries (transaction_id, line, account, direction, amount, currency, created_at)
               VALUES ('{txn}', 1, 'wallet_funding:default', 'debit', 100, 'usd', {now_micros}),
                      ('{txn}', 2, 'customer_wallet:default/cus_forged', 'credit', 90, 'usd', {now_micros});"
        ))
        .await;
}

#[rstest]
#[tokio::test]
async fn every_disagreement_is_found_once_in_its_category(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(CONFIG)).await;
    let (cards, paid_wallets, poor_wallets) = create_payments(&server).await;
    let window = window();

    let clean = run(&server, &window).await;
    assert_eq!(by_category(&clean), BTreeMap::new(), "{clean}");
    assert_eq!(clean["checked"], PAYMENTS as u64, "{clean}");
    assert_eq!(clean["matched"], PAYMENTS as u64, "{clean}");
    assert_eq!(clean["mismatched"], 0, "{clean}");

    mutate_provider(&server, &cards).await;
    mutate_ledger(&server, &paid_wallets[0], &poor_wallets[0]).await;
    let found = run(&server, &window).await;
    let expected: BTreeMap<String, u64> = [
        "amount_mismatch",
        "currency_mismatch",
        "status_mismatch",
        "fee_mismatch",
        "missing_at_provider",
        "missing_internally",
        "duplicate_charge",
        "ledger_missing",
        "failed_but_posted",
        "unbalanced",
    ]
    .into_iter()
    .map(|category| (category.to_string(), 1))
    .collect();
    assert_eq!(by_category(&found), expected, "{found}");
    // The unknown charge is checked too; eight payments disagree, and the
    // unknown charge; the forged transaction names no payment.
    assert_eq!(found["checked"], PAYMENTS as u64 + 1, "{found}");
    assert_eq!(found["mismatched"], 9, "{found}");
    assert_eq!(found["matched"], PAYMENTS as u64 + 1 - 9, "{found}");
    let listed = found["discrepancies"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 10, "{found}");
    assert_eq!(server.count_rows("discrepancies").await, 10);

    let again = run(&server, &window).await;
    assert_eq!(by_category(&again), expected, "found again, once each");
    assert_eq!(
        server.count_rows("discrepancies").await,
        10,
        "no duplicates"
    );

    let open = server
        .get("/v1/reconciliation/discrepancies?status=open&category=duplicate_charge")
        .await
        .json();
    let duplicate = &open["data"][0];
    assert_eq!(duplicate["severity"], "critical", "{open}");
    let disc = duplicate["id"].as_str().expect("id");
    let resolved = post(
        &server,
        &format!("/v1/reconciliation/discrepancies/{disc}/resolve"),
        json!({ "resolution": "refunded the second charge at the provider" }),
    )
    .await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert_eq!(resolved.json()["status"], "resolved");
    let still_open = server
        .get("/v1/reconciliation/discrepancies?status=open&limit=100")
        .await
        .json();
    assert_eq!(still_open["data"].as_array().map_or(0, Vec::len), 9);

    let runs = server.get("/v1/reconciliation/runs").await.json();
    assert_eq!(runs["data"].as_array().map_or(0, Vec::len), 3, "{runs}");
    let first = runs["data"][2]["id"].as_str().expect("id");
    let read = server
        .get(&format!("/v1/reconciliation/runs/{first}"))
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["mismatched"], 0);
}

#[rstest]
#[tokio::test]
async fn bad_run_windows_are_refused_naming_the_parameter(
    #[values(Backend::Sqlite)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(CONFIG)).await;
    let cases = [
        (json!({ "to": "2026-12-01T00:00:00Z" }), "from"),
        (
            json!({ "from": "yesterday", "to": "2026-12-01T00:00:00Z" }),
            "from",
        ),
        (
            json!({ "from": "2026-12-01T00:00:00Z", "to": "2026-11-01T00:00:00Z" }),
            "to",
        ),
        (
            json!({ "from": "2020-01-01T00:00:00Z", "to": "2026-12-01T00:00:00Z" }),
            "to",
        ),
    ];
    for (body, param) in cases {
        let reply = post(&server, "/v1/reconciliation/runs", body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text);
        assert_eq!(reply.error_param(), json!(param), "{body}: {}", reply.text);
    }
    let filter = server
        .get("/v1/reconciliation/discrepancies?category=vibes")
        .await;
    assert_eq!(filter.status, 400, "{}", filter.text);
    assert_eq!(filter.error_param(), json!("category"));
    assert_eq!(server.count_rows("reconciliation_runs").await, 0);
}

/// The timer's runs: the whole `window_secs` at start, then only what is
/// new since the last run (less the overlap), not the whole day each time.
#[tokio::test]
async fn timer_runs_after_the_first_check_only_what_is_new() {
    const WINDOW_SECS: i64 = 86_400;
    /// How far each run between full ones looks back before the last one ended.
    const OVERLAP_SECS: i64 = 60;
    let server = TestServer::start_with(
        Backend::Sqlite,
        ServerOptions::config("[reconciler]\ninterval_secs = 1.2\n"),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let runs = loop {
        let listed = server.get("/v1/reconciliation/runs?limit=100").await;
        assert_eq!(listed.status, 200, "{}", listed.text);
        let mut runs: Vec<Value> = listed.json()["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter(|run| run["trigger"] == "timer")
            .cloned()
            .collect();
        if runs.len() >= 3 || std::time::Instant::now() > deadline {
            runs.sort_by_key(|run| run["created_at"].as_str().unwrap_or("").to_string());
            break runs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    };
    assert!(runs.len() >= 3, "three timer runs within 20 s: {runs:?}");
    let at = |run: &Value, field: &str| {
        chrono::DateTime::parse_from_rfc3339(run[field].as_str().expect("a time"))
            .expect("RFC 3339")
            .timestamp_millis()
    };
    let first = &runs[0];
    assert_eq!(
        at(first, "to") - at(first, "from"),
        WINDOW_SECS * 1000,
        "the first timer run checks the whole window: {first}"
    );
    for pair in runs.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        assert_eq!(
            at(after, "from"),
            at(before, "to") - OVERLAP_SECS * 1000,
            "a later run starts where the last ended, less the overlap: {before} then {after}"
        );
    }
}
