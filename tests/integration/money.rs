//! Money over HTTP (issue 10, DESIGN §6-§8, §13.3, §13.7, §13.8): every
//! succeeded payment posts to the ledger, refunds never exceed what was
//! captured (across instances too), a wallet never goes below zero, and
//! merchants and operators see only what is theirs to see.

use crate::common::{payment_body, unique, Backend, Reply, ServerOptions, TestDb, TestServer};
use rstest::rstest;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const ACME: &str = "sk_acme_money_0001";
const GLOBEX: &str = "sk_globex_money_0001";
const ADMIN: &str = "sk_admin_money_0001";

/// Two merchants and an operator.
fn keyed() -> ServerOptions {
    ServerOptions {
        env: vec![
            (
                "PAYMENTS_API_KEYS".into(),
                format!("acme:{ACME},globex:{GLOBEX}"),
            ),
            ("PAYMENTS_ADMIN_KEYS".into(), ADMIN.into()),
        ],
        ..ServerOptions::default()
    }
}

async fn post_as(server: &TestServer, path: &str, key: &str, idem: &str, body: Value) -> Reply {
    server
        .send(
            server
                .client
                .post(server.url(path))
                .bearer_auth(key)
                .header("Idempotency-Key", idem)
                .json(&body),
        )
        .await
}

async fn pay_as(server: &TestServer, key: &str, order: &str, amount: i64, method: &str) -> Value {
    let mut body = payment_body(order, method);
    body["amount"] = json!(amount);
    let reply = post_as(server, "/v1/payments", key, &unique("pay"), body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()
}

async fn refund_as(server: &TestServer, key: &str, payment: &str, body: Value) -> Reply {
    let path = format!("/v1/payments/{payment}/refunds");
    post_as(server, &path, key, &unique("refund"), body).await
}

fn id(value: &Value) -> &str {
    value["id"].as_str().expect("id")
}

#[rstest]
#[tokio::test]
async fn a_payment_posts_once_and_refunds_reverse_it_up_to_the_amount(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, keyed()).await;
    let payment = pay_as(&server, ACME, &unique("o"), 1_000, "pm_card_visa").await;
    assert_eq!(payment["status"], "succeeded");
    let pid = id(&payment);
    let postings = server
        .get_as(&format!("/v1/ledger/transactions?payment_id={pid}"), ACME)
        .await
        .json();
    assert_eq!(
        postings["data"].as_array().map(Vec::len),
        Some(1),
        "{postings}"
    );
    let partial = refund_as(
        &server,
        ACME,
        pid,
        json!({ "amount": 300, "reason": "duplicate" }),
    )
    .await;
    assert_eq!(partial.status, 201, "{}", partial.text);
    assert_eq!(partial.json()["status"], "succeeded");
    assert_eq!(partial.json()["object"], "refund");
    let too_much = refund_as(&server, ACME, pid, json!({ "amount": 701 })).await;
    assert_eq!(too_much.status, 400, "{}", too_much.text);
    assert_eq!(too_much.error_code(), "amount_too_large");
    assert_eq!(too_much.error_param(), "amount");
    let after = server
        .get_as(&format!("/v1/payments/{pid}"), ACME)
        .await
        .json();
    assert_eq!(after["status"], "partially_refunded");
    assert_eq!(after["amount_refunded"], 300);
    // No amount: all that remains.
    let rest = refund_as(&server, ACME, pid, json!({})).await;
    assert_eq!(rest.json()["amount"], 700, "{}", rest.text);
    let after = server
        .get_as(&format!("/v1/payments/{pid}"), ACME)
        .await
        .json();
    assert_eq!(after["status"], "refunded");
    assert_eq!(after["amount_refunded"], 1_000);
    let postings = server
        .get_as(&format!("/v1/ledger/transactions?payment_id={pid}"), ACME)
        .await
        .json();
    assert_eq!(
        postings["data"].as_array().map(Vec::len),
        Some(3),
        "{postings}"
    );
    let listed = server
        .get_as(&format!("/v1/payments/{pid}/refunds"), ACME)
        .await
        .json();
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");
    // Revenue is back to zero: 1,000 in, 300 and 700 out.
    let revenue = server
        .get_as("/v1/ledger/balances?account=merchant_revenue:acme", ACME)
        .await
        .json();
    assert_eq!(revenue["data"][0]["balance"], 0, "{revenue}");
}

#[rstest]
#[tokio::test]
async fn a_refund_replays_under_its_key_and_foreign_payments_are_not_found(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, keyed()).await;
    let payment = pay_as(&server, ACME, &unique("o"), 500, "pm_card_visa").await;
    let path = format!("/v1/payments/{}/refunds", id(&payment));
    let first = post_as(
        &server,
        &path,
        ACME,
        "refund-once",
        json!({ "amount": 100 }),
    )
    .await;
    let again = post_as(
        &server,
        &path,
        ACME,
        "refund-once",
        json!({ "amount": 100 }),
    )
    .await;
    assert_eq!(first.text, again.text, "a replay is byte-identical");
    assert_eq!(again.header("Idempotent-Replayed").as_deref(), Some("true"));
    let other = post_as(
        &server,
        &path,
        ACME,
        "refund-once",
        json!({ "amount": 200 }),
    )
    .await;
    assert_eq!(other.status, 422, "{}", other.text);
    let foreign = post_as(&server, &path, GLOBEX, "refund-foreign", json!({})).await;
    assert_eq!(foreign.status, 404, "{}", foreign.text);
    let listed = server.get_as(&format!("{path}?limit=5"), GLOBEX).await;
    assert_eq!(listed.status, 404, "{}", listed.text);
    let declined = pay_as(&server, ACME, &unique("o"), 500, "pm_card_declined").await;
    let not_refundable = refund_as(&server, ACME, id(&declined), json!({})).await;
    assert_eq!(not_refundable.status, 400, "{}", not_refundable.text);
    assert_eq!(not_refundable.error_code(), "payment_not_refundable");
    let postings = server
        .get_as(
            &format!("/v1/ledger/transactions?payment_id={}", id(&declined)),
            ACME,
        )
        .await
        .json();
    assert_eq!(
        postings["data"].as_array().map(Vec::len),
        Some(0),
        "a failed payment has no posting"
    );
}

#[rstest]
#[tokio::test]
async fn wallets_are_topped_up_by_operators_and_pay_within_their_balance(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, keyed()).await;
    let customer = unique("cus");
    let top_up = |key: &'static str, idem: &'static str| {
        let path = format!("/v1/wallets/{customer}/top_ups");
        let server = &server;
        async move {
            post_as(
                server,
                &path,
                key,
                idem,
                json!({ "amount": 3_000, "currency": "usd", "merchant": "acme" }),
            )
            .await
        }
    };
    let refused = top_up(ACME, "t-merchant").await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.json()["error"]["type"], "permission_error");
    let topped = top_up(ADMIN, "t-1").await;
    assert_eq!(topped.status, 201, "{}", topped.text);
    let replayed = top_up(ADMIN, "t-1").await;
    assert_eq!(replayed.text, topped.text, "a top-up replays under its key");
    let wallet = server
        .get_as(&format!("/v1/wallets/{customer}"), ACME)
        .await
        .json();
    assert_eq!(wallet["balances"]["usd"], 3_000, "{wallet}");
    let mut body = payment_body(&unique("o"), "wallet");
    body["customer_id"] = json!(customer);
    body["amount"] = json!(1_000);
    let paid = post_as(&server, "/v1/payments", ACME, &unique("w"), body.clone())
        .await
        .json();
    assert_eq!(paid["status"], "succeeded", "{paid}");
    assert_eq!(paid["provider"], "wallet");
    body["order_id"] = json!(unique("o"));
    body["amount"] = json!(2_001);
    let declined = post_as(&server, "/v1/payments", ACME, &unique("w"), body)
        .await
        .json();
    assert_eq!(declined["status"], "failed", "{declined}");
    assert_eq!(declined["failure_code"], "insufficient_balance");
    let back = refund_as(&server, ACME, id(&paid), json!({ "amount": 400 })).await;
    assert_eq!(back.json()["status"], "succeeded", "{}", back.text);
    let wallet = server
        .get_as(&format!("/v1/wallets/{customer}"), ACME)
        .await
        .json();
    assert_eq!(wallet["balances"]["usd"], 2_400, "{wallet}");
    // Another merchant's customer of the same name has nothing.
    let foreign = server
        .get_as(&format!("/v1/wallets/{customer}"), GLOBEX)
        .await
        .json();
    assert_eq!(foreign["balances"], json!({}), "{foreign}");
}

/// DESIGN §13.8 across instances: 50 concurrent refunds of 100 on a payment
/// of 1,999, split over two instances on one PostgreSQL: exactly 19
/// succeed, and the provider's own record agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_refunds_over_two_instances_never_exceed_the_capture() {
    let db = TestDb::new(Backend::Postgres);
    let a = Arc::new(TestServer::start_on(&db, ServerOptions::default()).await);
    let b = Arc::new(TestServer::start_on(&db, ServerOptions::default()).await);
    let payment = pay_as(
        &a,
        crate::common::DEV_KEY,
        &unique("o"),
        1_999,
        "pm_card_visa",
    )
    .await;
    let pid = id(&payment).to_string();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let server = if i % 2 == 0 { a.clone() } else { b.clone() };
            let pid = pid.clone();
            tokio::spawn(async move {
                refund_as(
                    &server,
                    crate::common::DEV_KEY,
                    &pid,
                    json!({ "amount": 100 }),
                )
                .await
            })
        })
        .collect();
    let (mut succeeded, mut too_large) = (0, 0);
    for task in tasks {
        let reply = task.await.expect("task");
        match reply.status {
            201 => {
                assert_eq!(reply.json()["status"], "succeeded", "{}", reply.text);
                succeeded += 1;
            }
            400 => {
                assert_eq!(reply.error_code(), "amount_too_large", "{}", reply.text);
                too_large += 1;
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!((succeeded, too_large), (19, 31));
    let after = a.get(&format!("/v1/payments/{pid}")).await.json();
    assert_eq!(after["amount_refunded"], 1_900, "{after}");
    assert_eq!(after["status"], "partially_refunded");
    let record = rusqlite::Connection::open(db.data_dir.join("sandbox.db")).expect("record");
    let refunded: i64 = record
        .query_row(
            "SELECT COALESCE(SUM(amount), 0) FROM sandbox_refunds WHERE charge_id = ?1",
            [payment["provider_payment_id"].as_str().expect("charge id")],
            |row| row.get(0),
        )
        .expect("sum");
    assert_eq!(
        refunded, 1_900,
        "the provider refunded what the engine says"
    );
}

/// DESIGN §13.3 and §13.8 across instances: a wallet holding 3,000, twenty
/// concurrent wallet payments of 1,000 over two instances: exactly three
/// succeed, the balance ends at 0, and a reader polling all along never
/// sees it below zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_wallet_is_never_spent_twice_across_instances() {
    let db = TestDb::new(Backend::Postgres);
    let a = Arc::new(TestServer::start_on(&db, ServerOptions::default()).await);
    let b = Arc::new(TestServer::start_on(&db, ServerOptions::default()).await);
    let customer = unique("cus");
    let dev = crate::common::DEV_KEY;
    let top_up = post_as(
        &a,
        &format!("/v1/wallets/{customer}/top_ups"),
        dev,
        "fund",
        json!({ "amount": 3_000, "currency": "usd" }),
    )
    .await;
    assert_eq!(top_up.status, 201, "{}", top_up.text);
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (server, done, customer) = (a.clone(), done.clone(), customer.clone());
        tokio::spawn(async move {
            let mut lowest = i64::MAX;
            while !done.load(Ordering::SeqCst) {
                let wallet = server.get(&format!("/v1/wallets/{customer}")).await.json();
                lowest = lowest.min(wallet["balances"]["usd"].as_i64().unwrap_or(0));
            }
            lowest
        })
    };
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let server = if i % 2 == 0 { a.clone() } else { b.clone() };
            let mut body = payment_body(&unique("spend"), "wallet");
            body["customer_id"] = json!(customer);
            body["amount"] = json!(1_000);
            tokio::spawn(
                async move { post_as(&server, "/v1/payments", dev, &unique("w"), body).await },
            )
        })
        .collect();
    let mut succeeded = 0;
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!(reply.status, 201, "{}", reply.text);
        let payment = reply.json();
        match payment["status"].as_str() {
            Some("succeeded") => succeeded += 1,
            Some("failed") => assert_eq!(payment["failure_code"], "insufficient_balance"),
            other => panic!("unexpected status {other:?}: {payment}"),
        }
    }
    done.store(true, Ordering::SeqCst);
    let lowest = reader.await.expect("reader");
    assert_eq!(succeeded, 3);
    let wallet = b.get(&format!("/v1/wallets/{customer}")).await.json();
    assert_eq!(wallet["balances"]["usd"], 0, "{wallet}");
    assert!(lowest >= 0, "the wallet was seen at {lowest}");
}
