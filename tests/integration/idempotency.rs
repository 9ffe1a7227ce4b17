//! DESIGN §5 over real HTTP: replays, key reuse, concurrent duplicates and
//! the order-level guard.

use crate::common::Backend;
use crate::common::{payment_body, unique, TestServer};
use rstest::rstest;
use serde_json::Value;
use std::collections::HashSet;

#[rstest]
#[tokio::test]
async fn replay_returns_the_identical_body_with_the_header(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let order = unique("ord");
    let body = payment_body(&order, "pm_card_visa");
    let first = server.create("replay-key", &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.header("Idempotent-Replayed"), None);
    // Same request, differently spelled JSON (field order, currency case):
    // it is the same request, so it replays.
    let mut respelled = serde_json::Map::new();
    for field in [
        "payment_method",
        "order_id",
        "customer_id",
        "currency",
        "amount",
    ] {
        respelled.insert(field.into(), body[field].clone());
    }
    respelled.insert("currency".into(), Value::from("USD"));
    for replay_body in [body.clone(), Value::Object(respelled)] {
        let replay = server.create("replay-key", &replay_body).await;
        assert_eq!(replay.status, 201);
        assert_eq!(
            replay.header("Idempotent-Replayed").as_deref(),
            Some("true")
        );
        assert_eq!(replay.text, first.text, "replay must be byte-identical");
    }
    assert_eq!(server.total_charges(&order).await, 1);
}

#[rstest]
#[tokio::test]
async fn a_different_body_under_a_used_key_is_refused_and_stores_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let order = unique("ord");
    let first = server
        .create("reused-key", &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let payments_before = server.count_rows("payments").await;
    let events_before = server.count_rows("payment_events").await;

    let mut changed_amount = payment_body(&order, "pm_card_visa");
    changed_amount["amount"] = Value::from(5000);
    let other_order = unique("ord");
    for body in [changed_amount, payment_body(&other_order, "pm_card_visa")] {
        let reply = server.create("reused-key", &body).await;
        assert_eq!(reply.status, 422, "{}", reply.text);
        assert_eq!(reply.json()["error"]["type"], "idempotency_error");
        assert_eq!(reply.error_code(), "idempotency_key_reused");
    }
    assert_eq!(server.count_rows("payments").await, payments_before);
    assert_eq!(server.count_rows("payment_events").await, events_before);
    assert_eq!(server.total_charges(&order).await, 1);
    assert_eq!(server.total_charges(&other_order).await, 0);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn hundred_concurrent_identical_requests_charge_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = std::sync::Arc::new(TestServer::start(backend).await);
    let order = unique("ord");
    let body = payment_body(&order, "pm_card_visa");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (server, body) = (server.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            server.create("storm-key", &body).await
        }));
    }
    let mut bodies = HashSet::new();
    let mut originals = 0;
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!(reply.status, 201, "{}", reply.text);
        if reply.header("Idempotent-Replayed").is_none() {
            originals += 1;
        }
        bodies.insert(reply.text);
    }
    assert_eq!(originals, 1, "exactly one request did the work");
    assert_eq!(
        bodies.len(),
        1,
        "every answer is the same payment, byte for byte"
    );
    assert_eq!(server.total_charges(&order).await, 1);
    assert_eq!(server.count_rows("payments").await, 1);
}

#[rstest]
#[tokio::test]
async fn a_second_key_for_a_paid_order_gets_409_naming_the_first_payment(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let order = unique("ord");
    let first = server
        .create("click-1", &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let first_id = first.json()["id"].as_str().expect("id").to_string();
    let second = server
        .create("click-2", &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.json()["error"]["type"], "conflict");
    assert_eq!(second.error_code(), "order_already_paid");
    assert_eq!(second.json()["error"]["payment_id"], first_id.as_str());
    assert_eq!(server.total_charges(&order).await, 1);
    // The refused request stored nothing under its key: the same key for
    // another order works.
    let elsewhere = server
        .create("click-2", &payment_body(&unique("ord"), "pm_card_visa"))
        .await;
    assert_eq!(elsewhere.status, 201, "{}", elsewhere.text);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn many_keys_for_one_order_concurrently_charge_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = std::sync::Arc::new(TestServer::start(backend).await);
    let order = unique("ord");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let server = server.clone();
        let body = payment_body(&order, "pm_card_visa");
        tasks.push(tokio::spawn(async move {
            server.create(&format!("double-click-{i}"), &body).await
        }));
    }
    let mut paid_ids = HashSet::new();
    let mut created = 0;
    for task in tasks {
        let reply = task.await.expect("task");
        match reply.status {
            201 => {
                created += 1;
                paid_ids.insert(reply.json()["id"].as_str().expect("id").to_string());
            }
            409 => {
                let code = reply.error_code();
                assert!(
                    code == "order_already_paid" || code == "order_payment_in_progress",
                    "{}",
                    reply.text
                );
                paid_ids.insert(
                    reply.json()["error"]["payment_id"]
                        .as_str()
                        .expect("payment_id")
                        .to_string(),
                );
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(created, 1, "one key wins");
    assert_eq!(paid_ids.len(), 1, "every 409 names the winning payment");
    assert_eq!(server.total_charges(&order).await, 1);
}

#[rstest]
#[tokio::test]
async fn the_order_guard_blocks_live_payments_and_frees_failed_ones(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    // A decline leaves the order payable.
    let order = unique("ord");
    let declined = server
        .create(&unique("k"), &payment_body(&order, "pm_card_declined"))
        .await;
    assert_eq!(declined.json()["status"], "failed");
    let retried = server
        .create(&unique("k"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(retried.status, 201, "{}", retried.text);
    assert_eq!(retried.json()["status"], "succeeded");
    // A scheduled retry holds the order.
    let order = unique("ord");
    let soft = server
        .create(
            &unique("k"),
            &payment_body(&order, "pm_card_insufficient_funds"),
        )
        .await;
    assert_eq!(soft.json()["status"], "retry_scheduled");
    let blocked = server
        .create(&unique("k"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(blocked.status, 409, "{}", blocked.text);
    assert_eq!(blocked.error_code(), "order_payment_in_progress");
    assert_eq!(blocked.json()["error"]["payment_id"], soft.json()["id"]);
    assert_eq!(server.total_charges(&order).await, 0);
}
