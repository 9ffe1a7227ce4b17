//! The sandbox's record as reconciliation reads it (DESIGN §7, §9): each
//! charge's fee per the configured fees, its refunded amount and status
//! kept by refunds, the operator hooks that make the provider disagree with
//! the engine, settlement pages, and `pm_card_async` confirmed by a signed
//! webhook handed to a sink.
//!
//! What touches the API runs through the real binary over HTTP, on both
//! backends where the engine's store takes part (payments and refunds); the
//! settlement pages and the webhook sink are read through the library.

use crate::common::{
    payment_body, unique, wait_for_status, Backend, Reply, ServerOptions, TestServer,
};
use futures_util::future::join_all;
use hmac::{Hmac, Mac};
use payments::domain::{Amount, Currency, MerchantId, OutcomeClass, PaymentId, Timestamp};
use payments::providers::sandbox::{
    SandboxOptions, SandboxProvider, SandboxRecord, DEFAULT_WEBHOOK_SECRET, PENDING_CODE,
    SETTLEMENT_PAGE_CHARGES,
};
use payments::providers::{ChargeRequest, LookupResult, Provider};
use rstest::rstest;
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::BTreeSet;
use std::time::Duration;

const ACME: &str = "sk_acme_sandbox_0001";
const ADMIN: &str = "sk_admin_sandbox_0001";
/// A payment's amount: with `usd = { fixed = 30, percent_bps = 290 }` its
/// fee is 30 + 57.971 rounded half up = 88.
const AMOUNT: i64 = 1_999;
const AMOUNT_FEE: i64 = 88;
/// How long a test waits for the sandbox's webhook.
const WEBHOOK_WAIT_MS: u64 = 10_000;

/// `sandbox_a` with a usd fee, `sandbox_b` with none; a merchant and an
/// operator key.
fn configured() -> ServerOptions {
    ServerOptions {
        env: vec![
            ("PAYMENTS_API_KEYS".into(), format!("acme:{ACME}")),
            ("PAYMENTS_ADMIN_KEYS".into(), ADMIN.into()),
        ],
        config_toml: Some(
            r#"
[[providers]]
name = "sandbox_a"
kind = "sandbox"
[providers.fees]
usd = { fixed = 30, percent_bps = 290 }

[[providers]]
name = "sandbox_b"
kind = "sandbox"
"#
            .into(),
        ),
    }
}

async fn send_as(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Reply {
    let mut request = server
        .client
        .request(method, server.url(path))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    server.send(request).await
}

async fn post_as(server: &TestServer, path: &str, key: &str, body: Value) -> Reply {
    let request = server
        .client
        .post(server.url(path))
        .bearer_auth(key)
        .header("Idempotency-Key", unique("idem"))
        .json(&body);
    server.send(request).await
}

/// A payment of [`AMOUNT`] usd, pinned to `provider`; its id.
async fn pay(server: &TestServer, order: &str, provider: &str) -> String {
    let mut body = payment_body(order, "pm_card_visa");
    body["provider"] = json!(provider);
    let reply = post_as(server, "/v1/payments", ACME, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json()["status"], "succeeded", "{}", reply.text);
    reply.json()["id"].as_str().expect("an id").to_string()
}

/// The one charge `provider` made for `order`.
async fn only_charge(server: &TestServer, provider: &str, order: &str) -> Value {
    let charges = server.sandbox_charges(provider, order).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    charges[0].clone()
}

#[rstest]
#[tokio::test]
async fn charges_carry_their_fee_and_refunds_keep_amount_refunded_and_status(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, configured()).await;
    let (order_a, order_b) = (unique("fee_a"), unique("fee_b"));
    let payment = pay(&server, &order_a, "sandbox_a").await;
    pay(&server, &order_b, "sandbox_b").await;
    let charge = only_charge(&server, "sandbox_a", &order_a).await;
    assert_eq!(charge["fee"], AMOUNT_FEE, "{charge}");
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["amount_refunded"], 0);
    let unpriced = only_charge(&server, "sandbox_b", &order_b).await;
    assert_eq!(unpriced["fee"], 0, "no fees configured: {unpriced}");

    let refunds = format!("/v1/payments/{payment}/refunds");
    let partial = post_as(&server, &refunds, ACME, json!({ "amount": 500 })).await;
    assert_eq!(partial.status, 201, "{}", partial.text);
    let charge = only_charge(&server, "sandbox_a", &order_a).await;
    assert_eq!(
        (&charge["amount_refunded"], &charge["status"]),
        (&json!(500), &json!("partially_refunded")),
        "{charge}"
    );
    let rest = post_as(&server, &refunds, ACME, json!({})).await;
    assert_eq!(rest.status, 201, "{}", rest.text);
    let charge = only_charge(&server, "sandbox_a", &order_a).await;
    assert_eq!(
        (&charge["amount_refunded"], &charge["status"]),
        (&json!(AMOUNT), &json!("refunded")),
        "{charge}"
    );
    assert_eq!(charge["fee"], AMOUNT_FEE, "a refund keeps the fee");
}

#[tokio::test]
async fn hooks_make_the_provider_disagree_and_need_an_operator_key() {
    let server = TestServer::start_with(Backend::Sqlite, configured()).await;
    let order = unique("hooked");
    pay(&server, &order, "sandbox_a").await;
    let id = only_charge(&server, "sandbox_a", &order).await["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let charge_path = format!("/v1/sandbox/sandbox_a/charges/{id}");
    let patch = |key: &'static str, body: Value| {
        send_as(
            &server,
            reqwest::Method::PATCH,
            &charge_path,
            key,
            Some(body),
        )
    };

    let refused = patch(ACME, json!({ "amount": 1 })).await;
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert_eq!(refused.error_code(), "operator_key_required");
    let changed = patch(
        ADMIN,
        json!({ "amount": 1_500, "currency": "EUR", "status": "refunded", "fee": 7 }),
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.text);
    let changed = changed.json();
    assert_eq!(
        (&changed["amount"], &changed["currency"]),
        (&json!(1_500), &json!("eur"))
    );
    assert_eq!(
        (&changed["status"], &changed["fee"]),
        (&json!("refunded"), &json!(7))
    );
    assert_eq!(only_charge(&server, "sandbox_a", &order).await, changed);
    let fee_only = patch(ADMIN, json!({ "fee": 0 })).await.json();
    assert_eq!(
        (&fee_only["fee"], &fee_only["amount"]),
        (&json!(0), &json!(1_500)),
        "the fields not named keep their value"
    );
    for (body, param) in [
        (json!({ "amount": -5 }), "amount"),
        (json!({ "amount": "10" }), "amount"),
        (json!({ "currency": "xyz" }), "currency"),
        (json!({ "status": "failed" }), "status"),
        (json!({ "fee": -1 }), "fee"),
        (json!({ "fee": 1.5 }), "fee"),
        (json!({ "amount_refunded": 3 }), "amount_refunded"),
    ] {
        let bad = patch(ADMIN, body.clone()).await;
        assert_eq!(bad.status, 400, "{body}: {}", bad.text);
        assert_eq!(bad.error_param(), param, "{body}: {}", bad.text);
    }
    let missing = send_as(
        &server,
        reqwest::Method::PATCH,
        "/v1/sandbox/sandbox_a/charges/ch_none",
        ADMIN,
        Some(json!({ "fee": 1 })),
    )
    .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    let elsewhere = send_as(
        &server,
        reqwest::Method::PATCH,
        &format!("/v1/sandbox/sandbox_b/charges/{id}"),
        ADMIN,
        Some(json!({ "fee": 1 })),
    )
    .await;
    assert_eq!(elsewhere.status, 404, "another sandbox's charge");

    let delete =
        |key: &'static str| send_as(&server, reqwest::Method::DELETE, &charge_path, key, None);
    assert_eq!(delete(ACME).await.status, 403);
    let deleted = delete(ADMIN).await;
    assert_eq!(deleted.status, 200, "{}", deleted.text);
    assert_eq!(deleted.json()["deleted"], true);
    assert!(server.sandbox_charges("sandbox_a", &order).await.is_empty());
    assert_eq!(delete(ADMIN).await.status, 404, "already gone");

    let stranger = unique("stranger");
    let create = |key: &'static str, body: Value| {
        send_as(
            &server,
            reqwest::Method::POST,
            "/v1/sandbox/sandbox_a/charges",
            key,
            Some(body),
        )
    };
    let body =
        json!({ "order_id": stranger, "amount": AMOUNT, "currency": "usd", "merchant_id": "acme" });
    assert_eq!(create(ACME, body.clone()).await.status, 403);
    let created = create(ADMIN, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    assert_eq!(created["fee"], AMOUNT_FEE, "priced like any charge");
    assert_eq!(created["merchant_id"], "acme");
    let key = created["idempotency_key"].as_str().expect("a key");
    assert!(
        key.starts_with("unsolicited_") && !key.contains('-'),
        "a key of its own, naming no payment: {key}"
    );
    let listed = server.all_charges_as("sandbox_a", ACME).await;
    assert!(
        listed.iter().any(|charge| charge["id"] == created["id"]),
        "the merchant sees it in its books"
    );
    let unpaid = server
        .get_as(&format!("/v1/payments?order_id={stranger}"), ACME)
        .await
        .json();
    assert_eq!(unpaid["data"], json!([]), "the engine knows nothing of it");
    let defaulted = create(
        ADMIN,
        json!({ "order_id": unique("o"), "amount": 10, "currency": "eur" }),
    )
    .await;
    assert_eq!(defaulted.status, 201, "{}", defaulted.text);
    assert_eq!(
        defaulted.json()["merchant_id"],
        "default",
        "an operator key of no merchant"
    );
    for (body, param) in [
        (json!({ "amount": 10, "currency": "usd" }), "order_id"),
        (json!({ "order_id": "o", "currency": "usd" }), "amount"),
        (json!({ "order_id": "o", "amount": 10 }), "currency"),
        (
            json!({ "order_id": "", "amount": 10, "currency": "usd" }),
            "order_id",
        ),
        (
            json!({ "order_id": "o", "amount": 10, "currency": "usd", "customer": "c" }),
            "customer",
        ),
    ] {
        let bad = create(ADMIN, body.clone()).await;
        assert_eq!(bad.status, 400, "{body}: {}", bad.text);
        assert_eq!(bad.error_param(), param, "{body}: {}", bad.text);
    }
    let nowhere = send_as(
        &server,
        reqwest::Method::POST,
        "/v1/sandbox/sandbox_z/charges",
        ADMIN,
        Some(json!({ "order_id": "o", "amount": 10, "currency": "usd" })),
    )
    .await;
    assert_eq!(nowhere.status, 404, "{}", nowhere.text);
}

fn charge_request(order: &str, payment_method: &str) -> ChargeRequest {
    let payment_id = PaymentId::new();
    ChargeRequest {
        idempotency_key: format!("{payment_id}-1"),
        payment_id,
        attempt_number: 1,
        merchant_id: MerchantId::new("acme"),
        order_id: order.to_string(),
        customer_id: "cus_1".to_string(),
        amount: Amount::new(AMOUNT).expect("valid"),
        currency: Currency::parse("usd").expect("known"),
        payment_method: payment_method.to_string(),
        description: None,
    }
}

async fn sandbox(options: SandboxOptions) -> (tempfile::TempDir, SandboxProvider) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let record = SandboxRecord::open(&dir.path().join("sandbox.db"))
        .await
        .expect("record");
    (dir, SandboxProvider::new("sandbox_a", record, options))
}

fn now() -> Timestamp {
    Timestamp::from_datetime(chrono::Utc::now())
}

#[tokio::test]
async fn settlements_are_read_a_page_at_a_time() {
    let (_dir, sandbox) = sandbox(SandboxOptions::default()).await;
    let from = now();
    let made = 2 * SETTLEMENT_PAGE_CHARGES + 7;
    let requests: Vec<ChargeRequest> = (0..made)
        .map(|i| charge_request(&format!("order_{i}"), "pm_card_visa"))
        .collect();
    let answers = join_all(requests.iter().map(|request| sandbox.charge(request))).await;
    let mut charged = BTreeSet::new();
    for answer in answers {
        charged.insert(answer.provider_payment_id.expect("charged"));
    }
    let to = now().plus_millis(1);

    let mut seen = Vec::new();
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let page = sandbox
            .settlements(from, to, cursor.take())
            .await
            .expect("a page");
        pages += 1;
        assert!(page.records.len() <= SETTLEMENT_PAGE_CHARGES);
        seen.extend(page.records);
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last().map(|r| &r.provider_payment_id));
                cursor = Some(next);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3, "{made} charges, {SETTLEMENT_PAGE_CHARGES} a page");
    let ids: BTreeSet<String> = seen.iter().map(|r| r.provider_payment_id.clone()).collect();
    assert_eq!(seen.len(), made, "no charge twice");
    assert_eq!(ids, charged, "every charge once");
    let order: Vec<(Timestamp, &str)> = seen
        .iter()
        .map(|r| (r.created_at, r.provider_payment_id.as_str()))
        .collect();
    assert!(order.is_sorted(), "oldest first, by (created_at, id)");
    let by_key: BTreeSet<&str> = requests
        .iter()
        .map(|r| r.idempotency_key.as_str())
        .collect();
    for record in &seen {
        assert_eq!(record.kind, "charge");
        assert_eq!((record.amount, record.currency.as_str()), (AMOUNT, "usd"));
        assert_eq!(
            (record.status.as_str(), record.amount_refunded, record.fee),
            ("succeeded", 0, 0)
        );
        assert_eq!(record.merchant_id.as_deref(), Some("acme"));
        assert!(record
            .order_id
            .as_deref()
            .is_some_and(|o| o.starts_with("order_")));
        assert!(by_key.contains(record.idempotency_key.as_deref().unwrap_or_default()));
    }
}

/// Charges in the record for the page-cost test: enough that a page which
/// scanned the window from its start would cost many times the first.
const LONG_WINDOW_CHARGES: usize = 200_000;
/// Each page is read this often; the fastest read counts (noise only adds).
const PAGE_READS: usize = 5;

/// Writes `LONG_WINDOW_CHARGES` charges straight into the record, one a
/// microsecond from `from`; returns the id of each.
fn fill_record(path: &std::path::Path, from: Timestamp) -> Vec<String> {
    let mut conn = rusqlite::Connection::open(path).expect("record file");
    let tx = conn.transaction().expect("transaction");
    let mut ids = Vec::with_capacity(LONG_WINDOW_CHARGES);
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO sandbox_charges (id, provider, idempotency_key, merchant_id, order_id,
                    customer_id, amount, currency, payment_method, status, created_at)
                 VALUES (?1, 'sandbox_a', ?1, 'acme', ?1, 'cus_1', 1999, 'usd', 'pm_card_visa',
                    'succeeded', ?2)",
            )
            .expect("prepare");
        for i in 0..LONG_WINDOW_CHARGES {
            let id = format!("ch_{i:08}");
            let at = from.plus_millis(0).as_micros() + i as i64;
            let at = Timestamp::from_micros(at).expect("time").to_string();
            insert.execute(rusqlite::params![id, at]).expect("insert");
            ids.push(id);
        }
    }
    tx.commit().expect("commit");
    ids
}

/// The fastest of `PAGE_READS` reads of the page after `cursor`.
async fn fastest_page(
    sandbox: &SandboxProvider,
    from: Timestamp,
    to: Timestamp,
    cursor: Option<&str>,
) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..PAGE_READS {
        let started = std::time::Instant::now();
        let page = sandbox
            .settlements(from, to, cursor.map(str::to_string))
            .await
            .expect("a page");
        best = best.min(started.elapsed());
        assert_eq!(page.records.len(), SETTLEMENT_PAGE_CHARGES);
    }
    best
}

/// Reading a long window page by page is linear: the page after a cursor
/// near the window's end costs about what the first page costs. (It
/// scanned from the window's start, so a reconciliation over a day of
/// charges was quadratic.)
#[tokio::test]
async fn a_settlement_page_near_the_end_of_a_long_window_costs_what_the_first_does() {
    let (dir, sandbox) = sandbox(SandboxOptions::default()).await;
    let from = now();
    let ids = fill_record(&dir.path().join("sandbox.db"), from);
    let to = from.plus_millis(60_000);
    let near_end = &ids[LONG_WINDOW_CHARGES - SETTLEMENT_PAGE_CHARGES - 1];

    let first = fastest_page(&sandbox, from, to, None).await;
    let last = fastest_page(&sandbox, from, to, Some(near_end)).await;
    assert!(
        last <= first * 3 + Duration::from_millis(5),
        "the page near the end took {last:?}, the first {first:?}"
    );
}

/// Stripe's `v1`, computed here rather than by the code under test.
fn stripe_v1(secret: &str, t: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[tokio::test]
async fn async_charges_answer_pending_then_a_signed_event_reaches_the_sink() {
    let options = SandboxOptions {
        async_confirm_ms: 50,
        ..SandboxOptions::default()
    };
    let (_dir, sandbox) = sandbox(options).await;
    let (sink, mut delivered) = tokio::sync::mpsc::channel(8);
    sandbox.set_webhook_sink(sink);
    let request = charge_request(&unique("async"), "pm_card_async");
    let answered = sandbox.charge(&request).await;
    assert_eq!(answered.class, OutcomeClass::Unknown);
    assert_eq!(answered.code.as_deref(), Some(PENDING_CODE));
    let id = answered
        .provider_payment_id
        .clone()
        .expect("names its charge");
    assert!(matches!(
        sandbox.lookup(&request.idempotency_key).await,
        Ok(LookupResult::Charged { .. })
    ));

    let wait = Duration::from_millis(WEBHOOK_WAIT_MS);
    let (provider, headers, body) = tokio::time::timeout(wait, delivered.recv())
        .await
        .expect("the confirmation within the wait")
        .expect("the sink is open");
    assert_eq!(provider, "sandbox_a");
    let signature = headers.get("stripe-signature").expect("signed");
    let t = signature
        .split(',')
        .find_map(|element| element.strip_prefix("t="))
        .expect("a timestamp");
    let v1 = signature
        .split(',')
        .find_map(|element| element.strip_prefix("v1="))
        .expect("a v1 signature");
    assert_eq!(v1, stripe_v1(DEFAULT_WEBHOOK_SECRET, t, &body));
    let event: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(event["type"], "charge.succeeded");
    assert_eq!(event["data"]["object"]["id"], id.as_str());
    assert_eq!(
        event["data"]["object"]["idempotency_key"],
        request.idempotency_key.as_str()
    );
    let events = sandbox
        .verify_webhook(&headers, &body, now())
        .expect("verifies");
    assert_eq!(events[0].provider_payment_id.as_deref(), Some(id.as_str()));
}

/// Over HTTP, before the engine takes the sandbox's webhooks: the payment
/// is `pending` at once, the provider's record has the charge, and
/// recovery's look-up (answered `Charged`) settles it.
#[rstest]
#[tokio::test]
async fn an_async_payment_is_pending_then_settled_by_recovery(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let options = ServerOptions::config(
        "[reconciler]\ninterval_secs = 0.2\npending_age_secs = 0.5\n\n[sandbox]\nasync_confirm_ms = 600000\n",
    );
    let server = TestServer::start_with(backend, options).await;
    let order = unique("async_http");
    let created = server
        .create(&unique("idem"), &payment_body(&order, "pm_card_async"))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let payment = created.json();
    assert_eq!(payment["status"], "pending", "{payment}");
    let charges = server.sandbox_charges("sandbox_a", &order).await;
    let charges = [charges, server.sandbox_charges("sandbox_b", &order).await].concat();
    assert_eq!(
        charges.len(),
        1,
        "charged once, retries included: {charges:?}"
    );
    assert_eq!(charges[0]["status"], "succeeded");
    let id = payment["id"].as_str().expect("an id");
    let settled = wait_for_status(&server, id, "succeeded").await;
    assert_eq!(
        settled["provider_payment_id"], charges[0]["id"],
        "{settled}"
    );
}
