//! `kill -9` of the real binary mid-payment, over and over: nothing
//! acknowledged is lost, nothing is left `processing`, nothing is charged
//! twice, and the provider's books agree with the engine's.

use crate::common::{
    all_payments, all_sandbox_charges, payment_body, wait_until_settled, Backend, ServerOptions,
    TestDb, TestServer,
};
use rstest::rstest;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kills per backend; `CRASH_KILLS` raises it for a longer soak.
const DEFAULT_KILLS: usize = 20;
/// Payments fired at each incarnation of the server.
const PAYMENTS_PER_ROUND: usize = 30;

/// Calls of 100 ms so some are always in flight; a 2 s lease so a killed
/// instance's orders are recovered quickly; recovery every 200 ms.
const CRASH_CONFIG: &str = r#"
[engine]
lease_ttl_ms = 2000

[retry.unknown]
max_attempts = 2
base_ms = 10
cap_ms = 50

[retry.transient_not_charged]
base_ms = 10
cap_ms = 50

[reconciler]
interval_secs = 0.2
pending_age_secs = 0
# Passes are 200 ms apart here: allow look-ups that time out under load
# to be retried for ~10 s before a payment is handed to a human.
max_recovery_attempts = 50

[[providers]]
name = "sandbox_a"
call_timeout_ms = 300
[providers.faults]
latency_ms = 100

[[providers]]
name = "sandbox_b"
call_timeout_ms = 300
[providers.faults]
latency_ms = 100
"#;

fn token(i: usize) -> &'static str {
    match i % 10 {
        0 => "pm_card_declined",
        1 => "pm_card_timeout_after_charge",
        2 => "pm_card_provider_error",
        _ => "pm_card_visa",
    }
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_nine_loses_nothing_and_charges_nothing_twice(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_KILLS);
    let db = TestDb::new(backend);
    let options = ServerOptions::config(CRASH_CONFIG);
    let started = Instant::now();
    // payment id -> the body acknowledged with a 201 before the kill.
    let mut acknowledged: HashMap<String, Value> = HashMap::new();
    let mut requests = 0;
    for round in 0..kills {
        let server = Arc::new(TestServer::start_on(&db, options.clone()).await);
        let mut tasks = Vec::new();
        for i in 0..PAYMENTS_PER_ROUND {
            let server = server.clone();
            let body = payment_body(&format!("r{round}-o{i}"), token(i));
            tasks.push(tokio::spawn(async move {
                let request = server
                    .client
                    .post(server.url("/v1/payments"))
                    .bearer_auth(crate::common::DEV_KEY)
                    .header("Idempotency-Key", format!("r{round}-k{i}"))
                    .json(&body);
                let reply = request.send().await.ok()?;
                let status = reply.status().as_u16();
                let text = reply.text().await.ok()?;
                (status == 201)
                    .then(|| serde_json::from_str::<Value>(&text).ok())
                    .flatten()
            }));
            requests += 1;
        }
        // Vary the moment of death: early (mostly in flight) to late.
        tokio::time::sleep(Duration::from_millis(30 + ((round * 97) % 900) as u64)).await;
        server.kill_9();
        for task in tasks {
            if let Ok(Some(payment)) = task.await {
                let id = payment["id"].as_str().expect("id").to_string();
                acknowledged.insert(id, payment);
            }
        }
    }
    let server = TestServer::start_on(&db, options).await;
    wait_until_settled(&server, Duration::from_secs(30)).await;

    let payments = all_payments(&server).await;
    let by_id: HashMap<&str, &Value> = payments
        .iter()
        .map(|p| (p["id"].as_str().unwrap_or_default(), p))
        .collect();
    for (id, acked) in &acknowledged {
        let now = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged payment {id} lost"));
        let (was, is) = (
            acked["status"].as_str().unwrap_or_default(),
            now["status"].as_str().unwrap_or_default(),
        );
        assert!(
            was == is || was == "pending",
            "{id} was acknowledged {was} and is now {is}"
        );
    }
    for payment in &payments {
        let status = payment["status"].as_str().unwrap_or_default();
        assert!(
            status != "processing" && status != "pending" && status != "needs_review",
            "{} left {status}",
            payment["id"]
        );
        for attempt in payment["attempts"].as_array().into_iter().flatten() {
            assert_ne!(
                attempt["outcome"], "processing",
                "attempt left processing in {}",
                payment["id"]
            );
        }
    }
    // Invariant 4: every status change, recovery's included, is in the
    // audit trail, each one starting where the previous one ended.
    for payment in &payments {
        let id = payment["id"].as_str().unwrap_or_default();
        let events = server
            .get(&format!("/v1/payments/{id}/events"))
            .await
            .json();
        let mut current: Option<String> = None;
        for event in events["data"].as_array().into_iter().flatten() {
            let Some(to) = event["to_status"].as_str() else {
                continue;
            };
            assert_eq!(
                event["from_status"].as_str().map(str::to_string),
                current,
                "{id}: status change out of sequence: {event}"
            );
            current = Some(to.to_string());
        }
        assert_eq!(
            current.as_deref(),
            payment["status"].as_str(),
            "{id}: audit trail ends elsewhere than the status"
        );
    }
    let charges = all_sandbox_charges(&server).await;
    let mut charges_by_order: HashMap<&str, Vec<&Value>> = HashMap::new();
    for charge in &charges {
        charges_by_order
            .entry(charge["order_id"].as_str().unwrap_or_default())
            .or_default()
            .push(charge);
    }
    let mut succeeded_by_order: HashMap<&str, Vec<&Value>> = HashMap::new();
    for payment in payments.iter().filter(|p| p["status"] == "succeeded") {
        succeeded_by_order
            .entry(payment["order_id"].as_str().unwrap_or_default())
            .or_default()
            .push(payment);
    }
    for (order, order_charges) in &charges_by_order {
        assert_eq!(
            order_charges.len(),
            1,
            "order {order} charged {} times",
            order_charges.len()
        );
        let paid = succeeded_by_order.get(order).unwrap_or_else(|| {
            let of_order: Vec<&Value> = payments
                .iter()
                .filter(|p| p["order_id"] == *order)
                .collect();
            panic!(
                "order {order} charged ({:?}) but no payment succeeded: {of_order:#?}",
                order_charges
            )
        });
        assert_eq!(
            paid.len(),
            1,
            "order {order} has {} succeeded payments",
            paid.len()
        );
        let key = order_charges[0]["idempotency_key"]
            .as_str()
            .unwrap_or_default();
        assert!(
            key.starts_with(paid[0]["id"].as_str().unwrap_or("?")),
            "charge {key} belongs to another payment"
        );
    }
    let succeeded: usize = succeeded_by_order.values().map(Vec::len).sum();
    assert_eq!(
        charges.len(),
        succeeded,
        "provider charges == succeeded payments"
    );
    eprintln!(
        "crash test {backend:?}: {kills} kills, {requests} requests, {} acknowledged, {} payments recorded, {} charges == {succeeded} succeeded, {:.1}s",
        acknowledged.len(),
        payments.len(),
        charges.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        !acknowledged.is_empty(),
        "the test must acknowledge some payments to prove anything"
    );
}
