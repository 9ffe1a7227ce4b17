//! The benchmark's correctness check (`benches/support/charge_check.rs`)
//! under `cargo test`, not only `cargo bench`: a short run of the
//! benchmark's load must pass it, and the check must fail when the
//! provider's books and the engine's disagree, or it proves nothing.

#[path = "../../benches/support/charge_check.rs"]
mod charge_check;

use crate::common::{unique, Backend, TestServer};
use charge_check::{check_charges, ChargeCheck};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

/// Sends `count` of the benchmark's payments (a card that succeeds, a new
/// key and order each) from `connections` clients sending back to back,
/// and returns the `201 succeeded` answers and the orders paid.
async fn short_load(
    server: &Arc<TestServer>,
    count: usize,
    connections: usize,
) -> (usize, Vec<String>) {
    let run = unique("bench");
    let tasks: Vec<_> = (0..connections)
        .map(|client| {
            let (server, run) = (server.clone(), run.clone());
            tokio::spawn(async move {
                let mut paid = Vec::new();
                for n in (client..count).step_by(connections) {
                    let order = format!("ord_{run}_{n}");
                    let body = json!({
                        "amount": 1000,
                        "currency": "usd",
                        "customer_id": "cus_bench",
                        "order_id": order,
                        "payment_method": "pm_card_visa",
                    });
                    let reply = server.create(&format!("{run}_{n}"), &body).await;
                    if reply.status == 201 && reply.json()["status"] == "succeeded" {
                        paid.push(order);
                    }
                }
                paid
            })
        })
        .collect();
    let mut paid = Vec::new();
    for task in tasks {
        paid.extend(task.await.expect("load task"));
    }
    (paid.len(), paid)
}

/// Runs `sql` (binding `order`) on the sandbox's own record, as a
/// provider whose books disagree with the engine's would look.
async fn tamper(data_dir: &Path, sql: &str, order: &str) {
    use sqlx::{ConnectOptions, Connection};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(data_dir.join("sandbox.db"))
        .busy_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .expect("open sandbox record");
    let changed = sqlx::query(sql)
        .bind(order)
        .execute(&mut conn)
        .await
        .expect("tamper")
        .rows_affected();
    assert_eq!(changed, 1, "{sql} for {order}");
    let _ = conn.close().await;
}

fn mentions(check: &ChargeCheck, order: &str, what: &str) -> bool {
    check
        .problems
        .iter()
        .any(|p| p.contains(order) && p.contains(what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_benchmark_run_passes_the_charge_check() {
    let server = Arc::new(TestServer::start(Backend::Sqlite).await);
    let (succeeded, _) = short_load(&server, 200, 4).await;
    assert_eq!(succeeded, 200, "every benchmark payment succeeds");
    let check = check_charges(&server.data_dir, succeeded).await;
    assert!(check.is_consistent(), "{check}");
    assert_eq!(
        (check.charges, check.stored_succeeded),
        (200, 200),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_charge_check_fails_when_a_charge_is_missing_or_doubled() {
    let server = Arc::new(TestServer::start(Backend::Sqlite).await);
    let (succeeded, paid) = short_load(&server, 20, 4).await;
    assert_eq!(succeeded, 20);
    assert!(check_charges(&server.data_dir, succeeded)
        .await
        .is_consistent());

    // A succeeded payment whose charge the provider has no record of.
    let (lost, doubled) = (&paid[0], &paid[1]);
    tamper(
        &server.data_dir,
        "DELETE FROM sandbox_charges WHERE order_id = ?",
        lost,
    )
    .await;
    let check = check_charges(&server.data_dir, succeeded).await;
    assert!(!check.is_consistent(), "a missing charge passed: {check}");
    assert!(mentions(&check, lost, "never charged"), "{check}");
    assert!(mentions(&check, "", "totals differ"), "{check}");

    // And another order charged twice: the totals agree again (20 charges,
    // 20 succeeded), which a count alone would accept.
    tamper(
        &server.data_dir,
        "INSERT INTO sandbox_charges (id, provider, idempotency_key, merchant_id, order_id,
                customer_id, amount, currency, payment_method, status, created_at)
         SELECT id || '_again', provider, idempotency_key || '-again', merchant_id, order_id,
                customer_id, amount, currency, payment_method, status, created_at
         FROM sandbox_charges WHERE order_id = ?",
        doubled,
    )
    .await;
    let check = check_charges(&server.data_dir, succeeded).await;
    assert_eq!(
        (check.charges, check.stored_succeeded),
        (succeeded, succeeded),
        "{check}"
    );
    assert!(
        !check.is_consistent(),
        "equal totals hid a double charge: {check}"
    );
    assert!(mentions(&check, lost, "never charged"), "{check}");
    assert!(mentions(&check, doubled, "charged 2 times"), "{check}");
}
