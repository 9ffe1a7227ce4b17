//! Two `payments serve` processes on one database: a storm of duplicates
//! split across both charges each order exactly once.

use crate::common::{payment_body, Backend, ServerOptions, TestDb, TestServer};
use rstest::rstest;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

const ORDERS: usize = 100;
const REQUESTS: usize = 1_000;
/// Distinct idempotency keys per order: the storm mixes repeats of one key
/// with new keys for the same order (a customer clicking twice).
const KEYS_PER_ORDER: usize = 3;

const SLOW_SANDBOXES: &str = r#"
[[providers]]
name = "sandbox_a"
[providers.faults]
latency_ms = 50

[[providers]]
name = "sandbox_b"
[providers.faults]
latency_ms = 50
"#;

const DOCUMENTED_409: [&str; 3] = [
    "idempotency_key_in_use",
    "order_already_paid",
    "order_payment_in_progress",
];

async fn post(server: &TestServer, key: &str, body: &Value) -> (u16, String) {
    let reply = server.create(key, body).await;
    (reply.status, reply.text)
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_duplicate_storm_across_two_instances_charges_each_order_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    // 50 ms calls keep many duplicates in flight at once on both instances.
    let options = ServerOptions::config(SLOW_SANDBOXES);
    let servers = Arc::new([
        TestServer::start_on(&db, options.clone()).await,
        TestServer::start_on(&db, options).await,
    ]);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        // Spread each order's requests over both instances and over time.
        let order = (i * 7) % ORDERS;
        let key = format!("o{order}-k{}", (i / ORDERS) % KEYS_PER_ORDER);
        let servers = servers.clone();
        tasks.push(tokio::spawn(async move {
            let body = payment_body(&format!("storm-{order}"), "pm_card_visa");
            let (status, text) = post(&servers[i % 2], &key, &body).await;
            (order, key, status, text)
        }));
    }
    let mut bodies_by_key: HashMap<String, HashSet<String>> = HashMap::new();
    let mut payment_by_order: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut conflicts: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        let (order, key, status, text) = task.await.expect("task");
        match status {
            201 => {
                let id = serde_json::from_str::<Value>(&text).expect("json")["id"]
                    .as_str()
                    .expect("id")
                    .to_string();
                payment_by_order.entry(order).or_default().insert(id);
                bodies_by_key.entry(key).or_default().insert(text);
            }
            409 => {
                let code = serde_json::from_str::<Value>(&text).expect("json")["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    DOCUMENTED_409.contains(&code.as_str()),
                    "undocumented 409: {text}"
                );
                *conflicts.entry(code).or_default() += 1;
            }
            other => panic!("unexpected {other}: {text}"),
        }
    }
    let elapsed = started.elapsed();
    for (key, bodies) in &bodies_by_key {
        assert_eq!(
            bodies.len(),
            1,
            "key {key} answered with {} different bodies",
            bodies.len()
        );
    }
    for (order, ids) in &payment_by_order {
        assert_eq!(
            ids.len(),
            1,
            "order {order} has {} different payments",
            ids.len()
        );
    }
    // Once the storm is over every key replays its first answer, on either instance.
    for (key, bodies) in &bodies_by_key {
        let order: usize = key[1..key.find('-').expect("key")].parse().expect("order");
        let body = payment_body(&format!("storm-{order}"), "pm_card_visa");
        for server in servers.iter() {
            let (status, text) = post(server, key, &body).await;
            assert_eq!(status, 201, "{text}");
            assert!(bodies.contains(&text), "replay of {key} differs");
        }
    }
    for order in 0..ORDERS {
        assert_eq!(
            servers[0].total_charges(&format!("storm-{order}")).await,
            1,
            "order {order}"
        );
    }
    eprintln!(
        "duplicate storm {backend:?}: {REQUESTS} requests over 2 instances in {:.2}s = {:.0} req/s; {} keys answered 201, 409s: {conflicts:?}",
        elapsed.as_secs_f64(),
        REQUESTS as f64 / elapsed.as_secs_f64(),
        bodies_by_key.len(),
    );
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_in_flight_on_one_instance_is_409_on_the_other_then_replays(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    let slow = ServerOptions::config(
        "[[providers]]\nname = \"sandbox_a\"\n[providers.faults]\nlatency_ms = 1000\n",
    );
    let servers = Arc::new([
        TestServer::start_on(&db, slow.clone()).await,
        TestServer::start_on(&db, slow).await,
    ]);
    let body = payment_body("in-flight-order", "pm_card_visa");
    let first = {
        let (servers, body) = (servers.clone(), body.clone());
        tokio::spawn(async move { post(&servers[0], "shared-key", &body).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let in_use = servers[1].create("shared-key", &body).await;
    assert_eq!(in_use.status, 409, "{}", in_use.text);
    assert_eq!(in_use.error_code(), "idempotency_key_in_use");
    assert_eq!(
        in_use.header("Retry-After").as_deref(),
        Some("1"),
        "the client is told when to retry"
    );
    let (first_status, first_text) = first.await.expect("first request");
    assert_eq!(first_status, 201, "{first_text}");
    let (status, text) = post(&servers[1], "shared-key", &body).await;
    assert_eq!(status, 201, "{text}");
    assert_eq!(
        text, first_text,
        "the other instance replays the first answer byte for byte"
    );
    assert_eq!(
        servers[1]
            .sandbox_charges("sandbox_a", "in-flight-order")
            .await
            .len(),
        1
    );
}
