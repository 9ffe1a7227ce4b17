//! Unknown outcomes and recovery: `pending` payments resolved by looking
//! them up at the provider, graceful shutdown on SIGTERM, key retention.

use crate::common::{
    payment_body, unique, wait_for_status, Backend, ServerOptions, TestDb, TestServer,
};
use payments::domain::{
    Amount, Currency, MerchantId, Payment, PaymentId, PaymentObject, PaymentStatus, Timestamp,
};
use payments::store::{BeginOutcome, LeaseChange, NewPayment, PaymentWrite, StoredResponse};
use rstest::rstest;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Recovery every 200 ms, pending payments looked up at once, no same-key
/// retries: an unknown answer leaves the payment pending for the reconciler.
fn config(faults_a: &str) -> String {
    format!(
        r#"
[retry.unknown]
max_attempts = 1

[retry.transient_not_charged]
base_ms = 10
cap_ms = 50

[reconciler]
interval_secs = 0.2
pending_age_secs = 0

[[providers]]
name = "sandbox_a"
call_timeout_ms = 200
[providers.faults]
{faults_a}

[[providers]]
name = "sandbox_b"
call_timeout_ms = 200
"#
    )
}

#[rstest]
#[tokio::test]
async fn a_charge_whose_answer_was_lost_ends_succeeded_through_the_reconciler(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(
        backend,
        ServerOptions::config(&config("timeout_rate = 1.0")),
    )
    .await;
    let order = unique("ord");
    let created = server
        .create("lost-answer", &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    assert_eq!(
        created["status"], "pending",
        "an unknown outcome is never reported failed"
    );
    assert_eq!(created["failure_code"], serde_json::Value::Null);
    let id = created["id"].as_str().expect("id");
    let resolved = wait_for_status(&server, id, "succeeded").await;
    assert!(resolved["provider_payment_id"].is_string());
    assert_eq!(server.total_charges(&order).await, 1, "exactly one charge");
    assert!(
        server.sandbox_charges("sandbox_b", &order).await.is_empty(),
        "never sent to a second provider"
    );
    let events = server
        .get(&format!("/v1/payments/{id}/events"))
        .await
        .json();
    let statuses: Vec<_> = events["data"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["to_status"].as_str())
        .collect();
    assert_eq!(statuses, ["processing", "pending", "succeeded"]);
}

#[rstest]
#[tokio::test]
async fn a_pending_payment_the_provider_never_charged_ends_failed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    // The sandbox answers after 1 s; the engine gives up after 200 ms, and
    // the abandoned call never charges.
    let server =
        TestServer::start_with(backend, ServerOptions::config(&config("latency_ms = 1000"))).await;
    let order = unique("ord");
    let created = server
        .create("slow", &payment_body(&order, "pm_card_visa"))
        .await
        .json();
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().expect("id");
    let resolved = wait_for_status(&server, id, "failed").await;
    assert_eq!(resolved["failure_code"], "not_charged");
    assert_eq!(server.total_charges(&order).await, 0);
    // The order is payable again.
    let again = server
        .create("slow-2", &payment_body(&order, "pm_card_declined"))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
}

/// Issue 8, item 8: SIGTERM during 64 in-flight payments (sandbox latency
/// 200 ms): every accepted request gets its final answer, the process exits
/// cleanly, and after a restart nothing is left `processing`. The 1 ms
/// reconciler interval once made shutdown panic (a pooled connection
/// dropped after its runtime was gone).
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_in_flight_payments_before_exiting(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    sigterm_during_payments(backend, "[reconciler]\ninterval_secs = 0.001\n", 200).await;
}

/// The HTTP server used to give requests only the grace period rounded
/// down to whole seconds, then dropped them while their actors were
/// mid-payment and closed the store under them: a payment longer than that
/// (but within the grace period) lost its answer.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_answers_payments_that_take_most_of_the_grace_period(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    sigterm_during_payments(backend, "[engine]\nshutdown_grace_ms = 1900\n", 1_300).await;
}

/// 64 payments in flight at sandbox `latency_ms`, then SIGTERM.
async fn sigterm_during_payments(backend: Backend, extra_config: &str, latency_ms: u64) {
    const IN_FLIGHT: usize = 64;
    let db = TestDb::new(backend);
    let slow = ServerOptions::config(&format!(
        "{extra_config}[[providers]]\nname = \"sandbox_a\"\n[providers.faults]\nlatency_ms = {latency_ms}\n"
    ));
    let mut server = TestServer::start_on(&db, slow).await;
    let client = server.client.clone();
    let url = server.url("/v1/payments");
    let mut tasks = Vec::new();
    for i in 0..IN_FLIGHT {
        let (client, url) = (client.clone(), url.clone());
        let body = payment_body(&format!("drain-{i}"), "pm_card_visa");
        tasks.push(tokio::spawn(async move {
            let reply = client
                .post(url)
                .bearer_auth(crate::common::DEV_KEY)
                .header("Idempotency-Key", format!("drain-{i}"))
                .json(&body)
                .send()
                .await
                .expect("in-flight request answered");
            (
                reply.status().as_u16(),
                reply.text().await.unwrap_or_default(),
            )
        }));
    }
    // Every request accepted (its payment written `processing`) before the
    // signal: a request that reaches the engine after it is refused with
    // 503, and this test is about the accepted ones.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let written = server.get("/v1/payments?limit=100").await.json();
        let accepted = written["data"].as_array().map_or(0, Vec::len);
        if accepted == IN_FLIGHT {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {accepted} of {IN_FLIGHT} payments accepted"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let exited_cleanly = tokio::task::spawn_blocking(move || {
        let clean = server.terminate();
        (clean, server)
    })
    .await
    .expect("terminate");
    for task in tasks {
        let (status, text) = task.await.expect("task");
        assert_eq!(status, 201, "{text}");
        assert!(text.contains("\"status\":\"succeeded\""), "{text}");
    }
    assert!(exited_cleanly.0, "the server exits 0 after draining");
    drop(exited_cleanly.1);
    let restarted = TestServer::start_on(&db, ServerOptions::default()).await;
    let processing = restarted
        .get("/v1/payments?status=processing&limit=100")
        .await
        .json();
    assert_eq!(
        processing["data"].as_array().map(Vec::len),
        Some(0),
        "{processing}"
    );
    let succeeded = restarted
        .get("/v1/payments?status=succeeded&limit=100")
        .await
        .json();
    assert_eq!(succeeded["data"].as_array().map(Vec::len), Some(IN_FLIGHT));
}

fn old_payment(created_at: Timestamp, order: &str) -> Payment {
    Payment {
        id: PaymentId::new(),
        object: PaymentObject,
        merchant_id: MerchantId::new("m"),
        status: PaymentStatus::Processing,
        amount: Amount::new(100).expect("amount"),
        amount_refunded: 0,
        amount_refund_pending: 0,
        currency: Currency::parse("usd").expect("usd"),
        customer_id: "c".into(),
        order_id: order.into(),
        payment_method: "pm_card_visa".into(),
        description: None,
        provider: None,
        provider_payment_id: None,
        failure_code: None,
        failure_message: None,
        next_attempt_at: None,
        attempts: vec![],
        anomaly_flags: vec![],
        metadata: BTreeMap::new(),
        recovery_attempts: 0,
        created_at,
        updated_at: created_at,
    }
}

#[rstest]
#[tokio::test]
async fn answered_keys_are_pruned_after_retention_and_open_ones_kept(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    let url = match backend {
        Backend::Sqlite => format!("sqlite://{}", db.data_dir.join("payments.db").display()),
        Backend::Postgres => crate::common::postgres_url(),
    };
    let store: Arc<dyn payments::store::Store> = payments::store::open(&url, &db.schema)
        .await
        .expect("store");
    let now = Timestamp::from_datetime(chrono::Utc::now());
    let day_and_hour_ago = now.plus_millis(-25 * 3_600_000);
    for (key, created_at, answered) in [
        ("old-answered", day_and_hour_ago, true),
        ("old-open", day_and_hour_ago, false),
        ("new-answered", now, true),
    ] {
        let payment = old_payment(created_at, key);
        let begun = store
            .begin_payment(NewPayment {
                payment: payment.clone(),
                idempotency_key: key.into(),
                fingerprint: "f".into(),
                holder: test_holder(),
                lease_expires_at: created_at,
                events: vec![],
                flags: vec![],
            })
            .await
            .expect("begin");
        assert_eq!(begun, BeginOutcome::Started);
        if answered {
            let mut done = payment.clone();
            done.status = PaymentStatus::Failed;
            store
                .save_payment(PaymentWrite {
                    payment: done,
                    expected_status: PaymentStatus::Processing,
                    attempts: vec![],
                    events: vec![],
                    response: Some(StoredResponse { body: "{}".into() }),
                    lease: LeaseChange::Release,
                    holder: test_holder(),
                    posting: None,
                })
                .await
                .expect("save");
        }
    }
    let pruned = store
        .prune_idempotency(now.plus_millis(-24 * 3_600_000))
        .await
        .expect("prune");
    assert_eq!(pruned, 1);
    let merchant = MerchantId::new("m");
    assert!(store
        .idempotency_record(&merchant, "old-answered")
        .await
        .expect("read")
        .is_none());
    assert!(
        store
            .idempotency_record(&merchant, "old-open")
            .await
            .expect("read")
            .is_some(),
        "an unanswered key waits for recovery"
    );
    assert!(store
        .idempotency_record(&merchant, "new-answered")
        .await
        .expect("read")
        .is_some());
    store.close().await;
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_command_resolves_what_a_stopped_server_left_pending(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    // The server never reconciles on its own (one pass a day) and loses
    // every answer, so its payment stays pending.
    let lossy = ServerOptions::config("[retry.unknown]\nmax_attempts = 1\n[reconciler]\ninterval_secs = 86400\nrun_at_startup = false\n\
             [[providers]]\nname = \"sandbox_a\"\n[providers.faults]\ntimeout_rate = 1.0\n");
    let mut server = TestServer::start_on(&db, lossy).await;
    let order = unique("ord");
    let created = server
        .create("cli-key", &payment_body(&order, "pm_card_visa"))
        .await
        .json();
    assert_eq!(created["status"], "pending");
    let id = created["id"].as_str().expect("id").to_string();
    let stopped = tokio::task::spawn_blocking(move || {
        let clean = server.terminate();
        drop(server);
        clean
    })
    .await
    .expect("stop");
    assert!(stopped);
    // One pass from the command line, with pending payments due at once.
    let config = db.data_dir.join("reconcile.toml");
    std::fs::write(&config, "[reconciler]\npending_age_secs = 0\n").expect("config");
    let output = std::process::Command::new(crate::common::binary())
        .arg("reconcile")
        .arg("--config")
        .arg(&config)
        .envs(db.env())
        .env_remove("PAYMENTS_API_KEYS")
        .output()
        .expect("run payments reconcile");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    assert_eq!(report["recovery"]["examined"], 1, "{report}");
    assert_eq!(report["recovery"]["resolved"], 1, "{report}");
    assert_eq!(report["object"], "reconciliation_run", "{report}");
    let server = TestServer::start_on(&db, ServerOptions::default()).await;
    let payment = server.get(&format!("/v1/payments/{id}")).await.json();
    assert_eq!(payment["status"], "succeeded", "{payment}");
    assert_eq!(server.sandbox_charges("sandbox_a", &order).await.len(), 1);
}

fn test_holder() -> payments::store::LeaseHolder {
    payments::store::LeaseHolder {
        instance_id: "test".into(),
        incarnation: 1,
    }
}
