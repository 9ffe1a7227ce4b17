//! Inbound provider webhooks over real HTTP (issue 11, DESIGN §6, §7):
//! verified before they are read, applied once through the order's actor,
//! never moving a final state backwards.
//!
//! Events are built here from the sandbox's own record of the charge (as
//! `GET /v1/sandbox/{provider}/charges` lists it) and signed here with the
//! independent Stripe-scheme signer of `webhooks_verify`, so a mistake in
//! the engine's signing code cannot make these pass.

use crate::common::{payment_body, unique, wait_for_status, Backend, ServerOptions, TestServer};
use crate::webhooks_verify::stripe_v1;
use rstest::rstest;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sandbox's development secret (DESIGN §7).
const SANDBOX_SECRET: &str = "whsec_sandbox";

/// Every answer of `sandbox_a` is lost after it charged, the unknown
/// outcome is not retried, and no reconciler pass runs during the test:
/// whatever resolves a `pending` payment here is its webhook.
const PENDING_CONFIG: &str = r#"
[retry.unknown]
max_attempts = 1

[reconciler]
interval_secs = 3600
run_at_startup = false

[[providers]]
name = "sandbox_a"
call_timeout_ms = 500
[providers.faults]
timeout_rate = 1.0
"#;

/// Answers normally; webhooks only confirm what the engine knows.
const PLAIN_CONFIG: &str = r#"
[reconciler]
interval_secs = 3600
run_at_startup = false

[[providers]]
name = "sandbox_a"
"#;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A sandbox event of `kind` about `charge`, as the sandbox sends it.
fn event(kind: &str, charge: &Value, extra: Value) -> Value {
    let mut object = charge.clone();
    object["object"] = json!("charge");
    if let (Some(object), Value::Object(extra)) = (object.as_object_mut(), extra) {
        object.extend(extra);
    }
    json!({
        "id": unique("evt"),
        "object": "event",
        "type": kind,
        "created": unix_now(),
        "data": { "object": object },
    })
}

/// Posts `body` to the sandbox's webhook endpoint, signed at `t` with `secret`.
async fn deliver(server: &TestServer, body: &[u8], secret: &str, t: i64) -> (u16, Value) {
    let signature = format!("t={t},v1={}", stripe_v1(secret, t, body));
    let reply = server
        .send(
            server
                .client
                .post(server.url("/v1/webhooks/sandbox_a"))
                .header("Stripe-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body.to_vec()),
        )
        .await;
    let json = serde_json::from_str(&reply.text).unwrap_or(Value::Null);
    (reply.status, json)
}

async fn deliver_event(server: &TestServer, event: &Value) -> (u16, Value) {
    let body = event.to_string().into_bytes();
    deliver(server, &body, SANDBOX_SECRET, unix_now()).await
}

/// The result the engine reports for the one event of a delivery.
fn result_of(reply: &(u16, Value)) -> String {
    assert_eq!(reply.0, 200, "{}", reply.1);
    reply.1["events"][0]["result"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn audit_kinds(server: &TestServer, payment: &str) -> Vec<String> {
    let events = server
        .get(&format!("/v1/payments/{payment}/events"))
        .await
        .json();
    events["data"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|e| e["type"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn postings(server: &TestServer, payment: &str) -> usize {
    let reply = server
        .get(&format!("/v1/ledger/transactions?payment_id={payment}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["data"].as_array().map_or(0, Vec::len)
}

/// A payment left `pending` with the charge made at the sandbox.
async fn pending_payment(server: &TestServer) -> (String, Value) {
    let order = unique("ord");
    let created = server
        .create(&unique("key"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    assert_eq!(created["status"], "pending", "{created}");
    let charges = server.sandbox_charges("sandbox_a", &order).await;
    assert_eq!(charges.len(), 1, "the sandbox charged once: {charges:?}");
    let id = created["id"].as_str().expect("id").to_string();
    (id, charges[0].clone())
}

#[rstest]
#[tokio::test]
async fn a_pending_payment_is_resolved_by_its_webhook_before_any_reconciler_pass(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(PENDING_CONFIG)).await;
    let (id, charge) = pending_payment(&server).await;
    assert_eq!(
        postings(&server, &id).await,
        0,
        "nothing posted while pending"
    );

    let reply = deliver_event(&server, &event("charge.succeeded", &charge, json!({}))).await;
    assert_eq!(result_of(&reply), "applied");

    let payment = server.get(&format!("/v1/payments/{id}")).await.json();
    assert_eq!(payment["status"], "succeeded", "{payment}");
    assert_eq!(payment["provider_payment_id"], charge["id"]);
    assert_eq!(
        postings(&server, &id).await,
        1,
        "posted once, with the success"
    );
    let kinds = audit_kinds(&server, &id).await;
    assert!(
        kinds.iter().any(|k| k == "payment.webhook_applied"),
        "{kinds:?}"
    );
}

#[rstest]
#[tokio::test]
async fn a_failed_charge_webhook_fails_a_pending_payment_with_its_code(
    #[values(Backend::Sqlite)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(PENDING_CONFIG)).await;
    let (id, charge) = pending_payment(&server).await;
    let failed = event(
        "charge.failed",
        &charge,
        json!({ "failure_code": "card_declined", "failure_message": "declined late" }),
    );
    assert_eq!(result_of(&deliver_event(&server, &failed).await), "applied");
    let payment = server.get(&format!("/v1/payments/{id}")).await.json();
    assert_eq!(payment["status"], "failed", "{payment}");
    assert_eq!(payment["failure_code"], "card_declined");
    assert_eq!(postings(&server, &id).await, 0);
}

/// Issue 11's webhook chaos: forged, stale, duplicated, out of order and
/// replayed after the final state.
#[rstest]
#[tokio::test]
async fn webhook_chaos_changes_nothing_it_should_not(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(PENDING_CONFIG)).await;
    let (id, charge) = pending_payment(&server).await;
    let succeeded = event("charge.succeeded", &charge, json!({}));
    let body = succeeded.to_string().into_bytes();

    // Forged: signed with another secret. Stale: signed 400 s ago (the
    // tolerance is 300 s). Neither is applied nor recorded.
    let forged = deliver(&server, &body, "whsec_attacker", unix_now()).await;
    assert_eq!(forged.0, 400, "{}", forged.1);
    assert_eq!(forged.1["error"]["code"], "webhook_signature_invalid");
    let stale = deliver(&server, &body, SANDBOX_SECRET, unix_now() - 400).await;
    assert_eq!(stale.0, 400, "{}", stale.1);
    assert_eq!(stale.1["error"]["code"], "webhook_timestamp_stale");
    let tampered = String::from_utf8(body.clone())
        .expect("utf-8")
        .replace(&charge["amount"].to_string(), "1");
    let t = unix_now();
    let signature = format!("t={t},v1={}", stripe_v1(SANDBOX_SECRET, t, &body));
    let reply = server
        .send(
            server
                .client
                .post(server.url("/v1/webhooks/sandbox_a"))
                .header("Stripe-Signature", signature)
                .body(tampered),
        )
        .await;
    assert_eq!(
        reply.status, 400,
        "a body changed after signing: {}",
        reply.text
    );
    assert_eq!(server.count_rows("webhook_receipts").await, 0);
    let payment = server.get(&format!("/v1/payments/{id}")).await.json();
    assert_eq!(
        payment["status"], "pending",
        "refused webhooks change nothing"
    );

    // Out of order: the failure the provider sent first arrives after the
    // success was applied. Duplicates ×3 of each.
    assert_eq!(
        result_of(&deliver_event(&server, &succeeded).await),
        "applied"
    );
    let audit_after_apply = audit_kinds(&server, &id).await.len();
    for _ in 0..3 {
        let again = deliver_event(&server, &succeeded).await;
        assert_eq!(result_of(&again), "duplicate");
    }
    assert_eq!(audit_kinds(&server, &id).await.len(), audit_after_apply);

    let late_failure = event(
        "charge.failed",
        &charge,
        json!({ "failure_code": "card_declined" }),
    );
    assert_eq!(
        result_of(&deliver_event(&server, &late_failure).await),
        "late"
    );
    for _ in 0..3 {
        assert_eq!(
            result_of(&deliver_event(&server, &late_failure).await),
            "duplicate"
        );
    }
    let payment = server.get(&format!("/v1/payments/{id}")).await.json();
    assert_eq!(
        payment["status"], "succeeded",
        "a final state never regresses"
    );
    assert_eq!(postings(&server, &id).await, 1);
    let kinds = audit_kinds(&server, &id).await;
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "payment.webhook_late")
            .count(),
        1,
        "the late event is in the audit trail once: {kinds:?}"
    );
    assert_eq!(
        server.count_rows("discrepancies").await,
        1,
        "and raised as one discrepancy"
    );
    assert_eq!(server.count_rows("webhook_receipts").await, 2);

    let listed = server
        .get(&format!("/v1/reconciliation/discrepancies?payment_id={id}"))
        .await
        .json();
    let found = &listed["data"][0];
    assert_eq!(found["category"], "status_mismatch", "{listed}");
    assert_eq!(found["severity"], "high");
    assert_eq!(found["status"], "open");
    let disc = found["id"].as_str().expect("id");
    let resolve = |note: &'static str| {
        server.send(
            server
                .client
                .post(server.url(&format!("/v1/reconciliation/discrepancies/{disc}/resolve")))
                .bearer_auth(&server.operator_key)
                .json(&json!({ "resolution": note })),
        )
    };
    let resolved = resolve("the provider's failure was for an earlier try").await;
    assert_eq!(resolved.status, 200, "{}", resolved.text);
    assert_eq!(resolved.json()["status"], "resolved");
    assert_eq!(resolve("again").await.status, 409);
}

#[rstest]
#[tokio::test]
async fn events_about_unknown_charges_and_providers_are_answered_without_effect(
    #[values(Backend::Sqlite)] backend: Backend,
) {
    let server = TestServer::start_with(backend, ServerOptions::config(PLAIN_CONFIG)).await;
    let stranger = json!({
        "id": "ch_nobody_knows", "provider": "sandbox_a", "amount": 500, "currency": "usd",
    });
    let reply = deliver_event(&server, &event("charge.succeeded", &stranger, json!({}))).await;
    assert_eq!(result_of(&reply), "unmatched");

    let nowhere = server
        .send(
            server
                .client
                .post(server.url("/v1/webhooks/no_such_provider"))
                .body("{}"),
        )
        .await;
    assert_eq!(nowhere.status, 404, "{}", nowhere.text);

    let garbage = deliver(&server, b"not json", SANDBOX_SECRET, unix_now()).await;
    assert_eq!(garbage.0, 400, "{}", garbage.1);
    assert_eq!(garbage.1["error"]["code"], "webhook_malformed");

    // A payment the engine settled itself: its webhook confirms it.
    let order = unique("ord");
    let paid = server
        .create(&unique("key"), &payment_body(&order, "pm_card_visa"))
        .await
        .json();
    let id = paid["id"].as_str().expect("id");
    let charge = server.sandbox_charges("sandbox_a", &order).await[0].clone();
    let confirm = deliver_event(&server, &event("charge.succeeded", &charge, json!({}))).await;
    assert_eq!(result_of(&confirm), "no_effect");
    let resolved = wait_for_status(&server, id, "succeeded").await;
    assert_eq!(resolved["attempts"].as_array().map(Vec::len), Some(1));
    tokio::time::sleep(Duration::from_millis(10)).await;
}

/// The sandbox confirms `pm_card_async` charges by webhook
/// `async_confirm_ms` later; no reconciler pass runs, so what settles the
/// payments is their webhook, within 5 s of it.
#[rstest]
#[tokio::test]
async fn async_payments_end_succeeded_through_their_webhook(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    const CONFIRM_MS: u64 = 300;
    let config = format!("{PLAIN_CONFIG}\n[sandbox]\nasync_confirm_ms = {CONFIRM_MS}\n");
    let server = TestServer::start_with(backend, ServerOptions::config(&config)).await;
    let orders: Vec<String> = (0..20).map(|_| unique("ord_async")).collect();
    let created = futures_util::future::join_all(orders.iter().map(|order| {
        let (key, body) = (unique("key"), payment_body(order, "pm_card_async"));
        let server = &server;
        async move { server.create(&key, &body).await }
    }))
    .await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for reply in created {
        assert_eq!(reply.status, 201, "{}", reply.text);
        let payment = reply.json();
        assert_eq!(payment["status"], "pending", "{payment}");
        ids.push(payment["id"].as_str().expect("id").to_string());
    }
    let deadline = Duration::from_millis(CONFIRM_MS) + Duration::from_secs(5);
    for id in &ids {
        loop {
            let payment = server.get(&format!("/v1/payments/{id}")).await.json();
            if payment["status"] == "succeeded" {
                break;
            }
            assert!(
                started.elapsed() < deadline,
                "still {} {:?} after its webhook: {payment}",
                payment["status"],
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let kinds = audit_kinds(&server, id).await;
        assert!(
            kinds.iter().any(|k| k == "payment.webhook_applied"),
            "{kinds:?}"
        );
        assert_eq!(postings(&server, id).await, 1);
    }
    for order in &orders {
        assert_eq!(server.sandbox_charges("sandbox_a", order).await.len(), 1);
    }
    // An answer of "accepted, confirmed later" is not a provider failure.
    let providers = server.get("/v1/providers").await.json();
    let sandbox_a = providers["data"]
        .as_array()
        .and_then(|list| list.iter().find(|p| p["name"] == "sandbox_a"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(sandbox_a["circuit_state"], "closed", "{providers}");
}

/// Stripe and Adyen endpoints over HTTP, with their secrets from the
/// configuration: Stripe's rolling secrets (two `v1` signatures), Adyen's
/// `[accepted]` answer and per-item HMAC.
#[rstest]
#[tokio::test]
async fn stripe_and_adyen_webhooks_are_verified_over_http(
    #[values(Backend::Sqlite)] backend: Backend,
) {
    use crate::webhooks_verify::{adyen_example_item, adyen_request, payment_intent, ADYEN_KEY};
    let config = format!(
        r#"
[reconciler]
interval_secs = 3600
run_at_startup = false

[[providers]]
name = "sandbox_a"

[[providers]]
name = "stripe"
kind = "stripe"
base_url = "http://127.0.0.1:9"
api_key_env = "PAYMENTS_TEST_STRIPE_KEY"
webhook_secret_env = "PAYMENTS_TEST_STRIPE_WEBHOOK_SECRET"

[[providers]]
name = "adyen"
kind = "adyen"
base_url = "http://127.0.0.1:9"
api_key_env = "PAYMENTS_TEST_ADYEN_KEY"
merchant_account = "TestMerchant"
webhook_secret = "{ADYEN_KEY}"
"#
    );
    let options = ServerOptions {
        env: vec![
            ("PAYMENTS_TEST_STRIPE_KEY".into(), "sk_test_unused".into()),
            ("PAYMENTS_TEST_ADYEN_KEY".into(), "AQE_unused".into()),
            (
                "PAYMENTS_TEST_STRIPE_WEBHOOK_SECRET".into(),
                "whsec_current".into(),
            ),
        ],
        config_toml: Some(config),
    };
    let server = TestServer::start_with(backend, options).await;
    let post = |path: &'static str, headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut request = server.client.post(server.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        server.send(request)
    };

    // Stripe, while the endpoint's secret rolls: signed with the old and
    // the new secret, the new one matching.
    let body = json!({
        "id": unique("evt"), "object": "event", "created": unix_now(),
        "type": "payment_intent.succeeded", "data": { "object": payment_intent("succeeded") },
    })
    .to_string()
    .into_bytes();
    let t = unix_now();
    let rolling = format!(
        "t={t},v1={},v1={}",
        stripe_v1("whsec_previous", t, &body),
        stripe_v1("whsec_current", t, &body)
    );
    let reply = post(
        "/v1/webhooks/stripe",
        vec![("Stripe-Signature", rolling)],
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json()["events"][0]["result"], "unmatched");
    let old_only = format!("t={t},v1={}", stripe_v1("whsec_previous", t, &body));
    let reply = post(
        "/v1/webhooks/stripe",
        vec![("Stripe-Signature", old_only)],
        body,
    )
    .await;
    assert_eq!(reply.status, 400, "{}", reply.text);

    // Adyen: Adyen's own published example item, answered `[accepted]`.
    let reply = post(
        "/v1/webhooks/adyen",
        vec![],
        adyen_request(&[adyen_example_item()]),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.text, "[accepted]");
    let mut forged = adyen_example_item();
    forged["amount"]["value"] = json!(1);
    let reply = post("/v1/webhooks/adyen", vec![], adyen_request(&[forged])).await;
    assert_eq!(reply.status, 400, "{}", reply.text);
    assert_eq!(reply.error_code(), "webhook_signature_invalid");
    assert_eq!(server.count_rows("webhook_receipts").await, 2);
}
