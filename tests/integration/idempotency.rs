//! DESIGN §5 over real HTTP: replays, key reuse, concurrent duplicates and
//! the order-level guard.

use crate::common::Backend;
use crate::common::{payment_body, unique, Reply, ServerOptions, TestServer};
use rstest::rstest;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Latency injected into both sandboxes by the concurrency tests. Without
/// it, whether a duplicate ever arrives while the first request is still
/// running depends on how fast the machine is: on a fast one the first is
/// done before the others are sent, and a test of "waits for the first"
/// quietly becomes a test of sequential replays.
const LATENCY: Duration = Duration::from_millis(200);

fn slow_sandboxes() -> ServerOptions {
    let ms = LATENCY.as_millis();
    ServerOptions::config(&format!(
        r#"
[[providers]]
name = "sandbox_a"
[providers.faults]
latency_ms = {ms}

[[providers]]
name = "sandbox_b"
[providers.faults]
latency_ms = {ms}
"#
    ))
}

/// A reply with when its request was sent and answered, both measured
/// from one instant shared by all the requests of a test.
struct Timed {
    sent: Duration,
    answered: Duration,
    reply: Reply,
}

impl Timed {
    fn took(&self) -> Duration {
        self.answered - self.sent
    }
}

/// Sends `count` requests at once, `make(i)` each, and returns them timed.
async fn concurrently<F, Fut>(count: usize, make: F) -> Vec<Timed>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Reply> + Send + 'static,
{
    let epoch = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let request = make(i);
            tokio::spawn(async move {
                let sent = epoch.elapsed();
                let reply = request.await;
                Timed {
                    sent,
                    answered: epoch.elapsed(),
                    reply,
                }
            })
        })
        .collect();
    let mut timed = Vec::with_capacity(count);
    for task in tasks {
        timed.push(task.await.expect("task"));
    }
    timed
}

/// The requests of `others` sent while `first` was certainly still
/// running: before half the provider's latency had passed since `first`
/// was sent (the other half is slack for reaching the server). `first`'s
/// provider call alone takes [`LATENCY`], so these reached the engine
/// while it was in flight, and whatever they were answered, they had to
/// wait for it. Panics unless `first` really took that long: otherwise the
/// latency was not injected and the race this counts is not real.
fn sent_while_in_flight<'a>(first: &Timed, others: &[&'a Timed]) -> Vec<&'a Timed> {
    assert!(
        first.took() >= LATENCY,
        "the first request took {:?}, less than the injected {LATENCY:?}",
        first.took()
    );
    others
        .iter()
        .copied()
        .filter(|other| other.sent < first.sent + LATENCY / 2)
        .collect()
}

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
    let server = Arc::new(TestServer::start_with(backend, slow_sandboxes()).await);
    let order = unique("ord");
    let body = payment_body(&order, "pm_card_visa");
    let timed = concurrently(100, |_| {
        let (server, body) = (server.clone(), body.clone());
        async move { server.create("storm-key", &body).await }
    })
    .await;
    let mut bodies = HashSet::new();
    for t in &timed {
        assert_eq!(t.reply.status, 201, "{}", t.reply.text);
        bodies.insert(t.reply.text.clone());
    }
    let (originals, replays): (Vec<&Timed>, Vec<&Timed>) = timed
        .iter()
        .partition(|t| t.reply.header("Idempotent-Replayed").is_none());
    assert_eq!(originals.len(), 1, "exactly one request did the work");
    assert_eq!(
        bodies.len(),
        1,
        "every answer is the same payment, byte for byte"
    );
    // The case DESIGN §5 describes: the same key while the first is still
    // running waits for it and gets the replay. Each of these got the
    // finished payment, which did not exist until the first's provider
    // call returned.
    let first = originals[0];
    let waited = sent_while_in_flight(first, &replays);
    assert!(
        !waited.is_empty(),
        "no replay was sent while the first request was in flight"
    );
    for replay in &waited {
        assert!(
            replay.answered >= first.sent + LATENCY,
            "a replay answered at {:?}, before the first's provider call could end",
            replay.answered
        );
    }
    eprintln!(
        "{backend:?}: {} of {} replays arrived while the first was in flight (it took {:?})",
        waited.len(),
        replays.len(),
        first.took()
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
    let server = Arc::new(TestServer::start_with(backend, slow_sandboxes()).await);
    let order = unique("ord");
    let timed = concurrently(20, |i| {
        let server = server.clone();
        let body = payment_body(&order, "pm_card_visa");
        async move { server.create(&format!("double-click-{i}"), &body).await }
    })
    .await;
    let mut paid_ids = HashSet::new();
    let mut winners = Vec::new();
    let mut refused = Vec::new();
    for t in &timed {
        let reply = &t.reply;
        match reply.status {
            201 => {
                winners.push(t);
                paid_ids.insert(reply.json()["id"].as_str().expect("id").to_string());
            }
            409 => {
                let code = reply.error_code();
                assert!(
                    code == "order_already_paid" || code == "order_payment_in_progress",
                    "{}",
                    reply.text
                );
                refused.push(t);
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
    assert_eq!(winners.len(), 1, "one key wins");
    assert_eq!(paid_ids.len(), 1, "every 409 names the winning payment");
    // The double click this test is about: other keys for the order arrived
    // while the winner was still charging, not after it had finished.
    let racing = sent_while_in_flight(winners[0], &refused);
    assert!(
        !racing.is_empty(),
        "no other key was sent while the winner was in flight"
    );
    for t in &racing {
        // "Already paid" is only known once the winner's call returned.
        if t.reply.error_code() == "order_already_paid" {
            assert!(
                t.answered >= winners[0].sent + LATENCY,
                "order_already_paid at {:?}, before the winner could have been paid",
                t.answered
            );
        }
    }
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
