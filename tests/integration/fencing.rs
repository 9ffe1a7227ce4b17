//! Fenced leases across instances (issue 8, items 3 and 4): two instances
//! on one PostgreSQL database, sharing the sandbox's record as they would
//! share one real provider. One loses its lease while a call is in flight
//! (frozen with SIGSTOP, or held up by a provider that cannot commit); the
//! other recovers the payment; a new payment for the order is made. At most
//! one charge for the order, no payment `failed` that was charged, and the
//! instance that lost the lease answers its client without a 500.

use crate::common::{payment_body, unique, Backend, Reply, ServerOptions, TestDb, TestServer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// A 7 s lease; calls of at most 1 s (three same-key tries: the lease
/// check's minimum is exactly 7 s); recovery every 200 ms.
fn config(latency_ms: u64) -> String {
    format!(
        r#"
[engine]
lease_ttl_ms = 7000

[reconciler]
interval_secs = 0.2
pending_age_secs = 0

[[providers]]
name = "sandbox_a"
call_timeout_ms = 1000
[providers.faults]
latency_ms = {latency_ms}

[[providers]]
name = "sandbox_b"
call_timeout_ms = 1000
[providers.faults]
latency_ms = {latency_ms}
"#
    )
}

/// How long the recovering instance may take to decide.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(40);

async fn payments_of(server: &TestServer, order: &str) -> Vec<Value> {
    let reply = server
        .get(&format!("/v1/payments?order_id={order}&limit=100"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until the order's first payment is `failed` as seen by `server`.
async fn wait_failed(server: &TestServer, order: &str) {
    let deadline = Instant::now() + RECOVERY_TIMEOUT;
    while Instant::now() < deadline {
        if payments_of(server, order)
            .await
            .iter()
            .any(|p| p["status"] == "failed")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the frozen instance's payment was not recovered: {:?}",
        payments_of(server, order).await
    );
}

/// At most one charge for the order, and none for a failed payment.
async fn assert_charged_once(server: &TestServer, order: &str) {
    let charges = server.sandbox_charges("sandbox_a", order).await;
    let mut all = charges;
    all.extend(server.sandbox_charges("sandbox_b", order).await);
    assert!(
        all.len() <= 1,
        "the order was charged {} times: {all:?}",
        all.len()
    );
    for payment in payments_of(server, order).await {
        let id = payment["id"].as_str().unwrap_or_default();
        let charged = all.iter().any(|c| {
            c["idempotency_key"]
                .as_str()
                .is_some_and(|key| key.starts_with(id))
        });
        if payment["status"] == "failed" {
            assert!(!charged, "payment {id} is failed but was charged: {all:?}");
        }
        if payment["status"] == "succeeded" {
            assert!(charged, "payment {id} succeeded without a charge: {all:?}");
        }
    }
}

/// The frozen instance's own client: never a 500.
fn assert_no_server_error(reply: &Reply) {
    assert!(
        reply.status == 201 || reply.status == 409,
        "the instance that lost its lease answered {}: {}",
        reply.status,
        reply.text
    );
}

/// Which comes first once the frozen instance is frozen.
#[derive(Clone, Copy)]
enum Order {
    ResumeThenPayAgain,
    PayAgainThenResume,
}

async fn frozen_mid_call(order_of: Order) {
    let db = TestDb::new(Backend::Postgres);
    let options = ServerOptions::config(&config(800));
    let a = TestServer::start_on(&db, options.clone()).await;
    let b = TestServer::start_on(&db, options).await;
    let order = unique("frozen");
    let body = payment_body(&order, "pm_card_visa");
    let (client, url) = (a.client.clone(), a.url("/v1/payments"));
    let first = tokio::spawn(async move {
        let reply = client
            .post(url)
            .bearer_auth(crate::common::DEV_KEY)
            .header("Idempotency-Key", unique("first"))
            .json(&body)
            .send()
            .await
            .expect("answered once resumed");
        let status = reply.status().as_u16();
        (status, reply.text().await.unwrap_or_default())
    });
    // The call is in the sandbox's 800 ms when A is frozen.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.signal("STOP");
    wait_failed(&b, &order).await;
    let second = payment_body(&order, "pm_card_visa");
    let again = match order_of {
        Order::ResumeThenPayAgain => {
            a.signal("CONT");
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            b.create(&unique("second"), &second).await
        }
        Order::PayAgainThenResume => {
            let again = b.create(&unique("second"), &second).await;
            a.signal("CONT");
            again
        }
    };
    assert_eq!(again.status, 201, "{}", again.text);
    let (status, text) = first.await.expect("first request");
    assert_no_server_error(&Reply {
        status,
        headers: Default::default(),
        text,
    });
    // Let anything the resumed instance might still do land before counting.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_charged_once(&b, &order).await;
    assert!(
        payments_of(&b, &order)
            .await
            .iter()
            .any(|p| p["status"] == "succeeded"),
        "the new payment for the order succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_frozen_past_its_lease_never_charges_after_being_replaced() {
    frozen_mid_call(Order::ResumeThenPayAgain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_payment_while_the_old_holder_is_frozen_is_the_only_charge() {
    frozen_mid_call(Order::PayAgainThenResume).await;
}

/// The provider cannot commit (its record is write-locked, as a slow
/// provider's books might be) past the call timeout: one instance's
/// look-up says "still in flight", the other's says "no such charge". The
/// latter is believed only after attempt start + the longest the call and
/// its retries take + the provider's window, and a charge whose caller
/// gave up never commits later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_that_cannot_commit_in_time_never_charges_late() {
    use sqlx::Connection;
    let db = TestDb::new(Backend::Postgres);
    let options = ServerOptions::config(&config(0));
    let a = TestServer::start_on(&db, options.clone()).await;
    let b = TestServer::start_on(&db, options).await;
    let record = format!("sqlite://{}", db.data_dir.join("sandbox.db").display());
    let mut lock = sqlx::SqliteConnection::connect(&record)
        .await
        .expect("open the sandbox record");
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut lock)
        .await
        .expect("write-lock the record");
    let order = unique("slow-commit");
    let first = a
        .create(&unique("first"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.json()["status"], "pending", "{}", first.text);
    wait_failed(&b, &order).await;
    sqlx::query("ROLLBACK")
        .execute(&mut lock)
        .await
        .expect("release the record");
    drop(lock);
    // The blocked charges may now reach the record: none may commit.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = b
        .create(&unique("second"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json()["status"], "succeeded", "{}", again.text);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_charged_once(&b, &order).await;
}
