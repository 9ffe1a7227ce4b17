//! `kill -9` of the real binary mid-payment, over and over: nothing
//! acknowledged is lost, nothing is left `processing`, nothing is charged
//! twice, and the provider's books agree with the engine's.

use crate::common::{
    all_payments, all_sandbox_charges, assert_legal_transition, payment_body, wait_until_settled,
    Backend, ServerOptions, TestDb, TestServer,
};
use rstest::rstest;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kills per backend; `CRASH_KILLS` raises it for a longer soak.
const DEFAULT_KILLS: usize = 20;
/// Clients sending payments, one after another each, while the server lives.
const CLIENTS: usize = 16;
/// After a restart, nothing may be `processing` this long after readiness.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// The default lease (60 s): recovery after a crash must not wait for it.
/// Calls of 100 ms so some are always in flight at a kill; a 2 s call
/// timeout so a pending payment's "not found" is trusted within the test.
/// The retry budget must not be what fails payments here either.
const CRASH_CONFIG: &str = r#"
[retry.budget]
min_retries_per_sec = 1000
max_banked_retries = 10000

[reconciler]
interval_secs = 0.5
pending_age_secs = 1
max_recovery_attempts = 50

[[providers]]
name = "sandbox_a"
call_timeout_ms = 2000
[providers.faults]
latency_ms = 100
# The provider errors the tokens ask for must not open the breakers: this
# test is about crashes, not outages.
[providers.breaker]
minimum_number_of_calls = 10000
sliding_window_size = 10000

[[providers]]
name = "sandbox_b"
call_timeout_ms = 2000
[providers.faults]
latency_ms = 100
[providers.breaker]
minimum_number_of_calls = 10000
sliding_window_size = 10000
"#;

fn token(i: usize) -> &'static str {
    match i % 10 {
        0 => "pm_card_declined",
        1 => "pm_card_timeout_after_charge",
        2 => "pm_card_provider_error",
        _ => "pm_card_visa",
    }
}

/// What one client saw: payments acknowledged (201), requests cut off by a
/// kill (transport errors), and any other answer (a defect).
#[derive(Default)]
struct Seen {
    acknowledged: Vec<Value>,
    cut_off: usize,
    other: Vec<String>,
}

/// Sends payments one after another until `stop`, each with its own key
/// and order.
async fn client_loop(
    client: reqwest::Client,
    url: String,
    prefix: String,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        let body = payment_body(&format!("{prefix}-o{i}"), token(i));
        let sent = client
            .post(&url)
            .bearer_auth(crate::common::DEV_KEY)
            .header("Idempotency-Key", format!("{prefix}-k{i}"))
            .json(&body)
            .send()
            .await;
        i += 1;
        let reply = match sent {
            Ok(reply) => reply,
            Err(_) => {
                seen.cut_off += 1;
                break;
            }
        };
        let status = reply.status().as_u16();
        match reply.text().await {
            Ok(text) if status == 201 => match serde_json::from_str(&text) {
                Ok(payment) => seen.acknowledged.push(payment),
                Err(_) => seen
                    .other
                    .push(format!("201 with a body that is not JSON: {text}")),
            },
            Ok(text) => seen.other.push(format!("{status}: {text}")),
            Err(_) => {
                seen.cut_off += 1;
                break;
            }
        }
    }
    seen
}

/// Polls until readiness, then until nothing is `processing`; returns how
/// long the latter took.
async fn recovery_time(server: &TestServer) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = Instant::now();
    loop {
        let processing = server.get("/v1/payments?status=processing&limit=1").await;
        assert_eq!(processing.status, 200, "{}", processing.text);
        if processing.json()["data"]
            .as_array()
            .is_some_and(Vec::is_empty)
        {
            return ready.elapsed();
        }
        assert!(
            ready.elapsed() <= RECOVERY_BOUND,
            "still processing {RECOVERY_BOUND:?} after readiness: {}",
            processing.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    let (mut cut_off, mut recoveries) = (0, Vec::new());
    let mut server = TestServer::start_on(&db, options.clone()).await;
    for round in 0..kills {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let prefix = format!("r{round}-c{c}");
                let (client, url) = (server.client.clone(), server.url("/v1/payments"));
                tokio::spawn(client_loop(client, url, prefix, stop.clone()))
            })
            .collect();
        // Vary the moment of death.
        tokio::time::sleep(Duration::from_millis(300 + ((round * 97) % 900) as u64)).await;
        server.kill();
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            let seen = client.await.expect("client");
            assert!(
                seen.other.is_empty(),
                "answers other than 201: {:?}",
                seen.other
            );
            cut_off += seen.cut_off;
            for payment in seen.acknowledged {
                let id = payment["id"].as_str().expect("id").to_string();
                acknowledged.insert(id, payment);
            }
        }
        server = TestServer::start_on(&db, options.clone()).await;
        recoveries.push(recovery_time(&server).await);
    }
    assert!(
        cut_off > 0,
        "the kills must cut requests off to prove anything"
    );
    wait_until_settled(&server, Duration::from_secs(60)).await;

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
    let mut recovered_by_lookup = false;
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
            recovered_by_lookup |= event["type"] == "payment.recovery_lookup";
            let Some(to) = event["to_status"].as_str() else {
                continue;
            };
            assert_eq!(
                event["from_status"].as_str().map(str::to_string),
                current,
                "{id}: status change out of sequence: {event}"
            );
            // Checked against DESIGN §4's table as written, not the code's.
            assert_legal_transition(current.as_deref(), to);
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
    let mut by_status: HashMap<&str, usize> = HashMap::new();
    for payment in &payments {
        *by_status
            .entry(payment["failure_code"].as_str().unwrap_or("succeeded"))
            .or_default() += 1;
    }
    eprintln!("crash test {backend:?}: outcomes {by_status:?}");
    recoveries.sort();
    eprintln!(
        "crash test {backend:?}: {kills} kills, {cut_off} requests cut off, {} acknowledged, {} payments recorded, {} charges == {succeeded} succeeded, recovery after restart median {:?} max {:?}, {:.1}s",
        acknowledged.len(),
        payments.len(),
        charges.len(),
        recoveries[recoveries.len() / 2],
        recoveries[recoveries.len() - 1],
        started.elapsed().as_secs_f64()
    );
    assert!(
        recovered_by_lookup,
        "some payment was recovered by a look-up"
    );
    assert!(
        !acknowledged.is_empty(),
        "the test must acknowledge some payments to prove anything"
    );
}
