//! The payments API over real HTTP: each sandbox outcome, pinning, reads,
//! listing and pagination, the audit trail, tenant isolation and the
//! operational routes.

use crate::common::{payment_body, unique, Reply, ServerOptions, TestServer};
use crate::common::{Backend, DEV_KEY};
use rstest::rstest;
use serde_json::{json, Value};
use std::collections::HashSet;

/// A payment created over HTTP, with the order it was made for.
struct Created {
    order_id: String,
    payment: Value,
}

impl Created {
    fn id(&self) -> &str {
        self.payment["id"]
            .as_str()
            .expect("payment has a string id")
    }
}

/// Creates a payment for a fresh order with `token`, asserting the 201.
async fn pay(server: &TestServer, token: &str) -> Created {
    pay_with(server, token, |_| {}).await
}

/// Like [`pay`], letting `edit` change the body first.
async fn pay_with(server: &TestServer, token: &str, edit: impl FnOnce(&mut Value)) -> Created {
    let order_id = unique("ord");
    let mut body = payment_body(&order_id, token);
    edit(&mut body);
    let reply = server.create(&unique("key"), &body).await;
    assert_eq!(
        reply.status, 201,
        "creating a payment with {token}: {}",
        reply.text
    );
    let payment = reply.json();
    assert_eq!(payment["object"], "payment", "{}", reply.text);
    assert_eq!(payment["order_id"], order_id.as_str(), "{}", reply.text);
    Created { order_id, payment }
}

/// `(provider, outcome, code)` of each attempt, in order.
fn attempts(payment: &Value) -> Vec<(String, String, Option<String>)> {
    payment["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("attempts is not an array: {payment}"))
        .iter()
        .map(|a| {
            (
                a["provider"].as_str().unwrap_or_default().to_string(),
                a["outcome"].as_str().unwrap_or_default().to_string(),
                a["code"].as_str().map(str::to_string),
            )
        })
        .collect()
}

fn error_type(reply: &Reply) -> String {
    reply.json()["error"]["type"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// GET that must answer 200; returns the JSON.
async fn get_ok(server: &TestServer, path: &str) -> Value {
    let reply = server.get(path).await;
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
    reply.json()
}

/// The ids in a list answer's `data`, in order.
fn ids_of(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {page}"))
        .iter()
        .map(|p| {
            p["id"]
                .as_str()
                .expect("listed payment has an id")
                .to_string()
        })
        .collect()
}

/// The statuses a payment went through according to its audit trail.
fn status_history(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("payment.created" | "payment.status_changed")
            )
        })
        .map(|e| e["to_status"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ---------------------------------------------------------------------------
// Each sandbox token's outcome
// ---------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn visa_succeeds_with_one_charge(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let created = pay(&server, "pm_card_visa").await;
    let p = &created.payment;
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(p["failure_code"], Value::Null, "{p}");
    assert_eq!(p["amount"], 1999);
    assert_eq!(p["amount_refunded"], 0);
    assert_eq!(p["currency"], "usd");
    assert!(created.id().starts_with("pay_"), "{p}");
    assert_eq!(
        attempts(p),
        vec![("sandbox_a".into(), "succeeded".into(), None)],
        "{p}"
    );
    let attempt = &p["attempts"][0];
    assert_eq!(attempt["number"], 1, "{p}");
    assert!(
        attempt["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("att_")),
        "{p}"
    );
    let charges = server.sandbox_charges("sandbox_a", &created.order_id).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(
        server
            .sandbox_charges("sandbox_b", &created.order_id)
            .await
            .len(),
        0
    );
    let provider_payment_id = p["provider_payment_id"]
        .as_str()
        .expect("provider_payment_id set");
    assert_eq!(
        charges[0]["id"], provider_payment_id,
        "the payment names the sandbox's charge"
    );
    assert_eq!(charges[0]["amount"], 1999);
    assert_eq!(charges[0]["currency"], "usd");
    assert_eq!(p["provider"], "sandbox_a");
}

#[rstest]
#[tokio::test]
async fn hard_declines_fail_without_a_charge(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    for (token, code) in [
        ("pm_card_declined", "card_declined"),
        ("pm_card_expired", "expired_card"),
    ] {
        let created = pay(&server, token).await;
        let p = &created.payment;
        assert_eq!(p["status"], "failed", "{token}: {p}");
        assert_eq!(p["failure_code"], code, "{token}: {p}");
        assert!(
            p["failure_message"].as_str().is_some_and(|m| !m.is_empty()),
            "{token}: {p}"
        );
        assert_eq!(p["provider_payment_id"], Value::Null, "{token}: {p}");
        // A hard decline is never retried, and never sent to another provider.
        assert_eq!(
            attempts(p),
            vec![("sandbox_a".into(), "hard_decline".into(), Some(code.into()))],
            "{token}: {p}"
        );
        assert_eq!(server.total_charges(&created.order_id).await, 0, "{token}");
    }
}

#[rstest]
#[tokio::test]
async fn insufficient_funds_schedules_a_retry_a_day_later(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let before = chrono::Utc::now();
    let created = pay(&server, "pm_card_insufficient_funds").await;
    let p = &created.payment;
    assert_eq!(p["status"], "retry_scheduled", "{p}");
    assert_eq!(p["failure_code"], "insufficient_funds", "{p}");
    assert_eq!(
        attempts(p),
        vec![(
            "sandbox_a".into(),
            "soft_decline".into(),
            Some("insufficient_funds".into())
        )],
        "{p}"
    );
    let next = p["next_attempt_at"].as_str().expect("next_attempt_at set");
    let next = chrono::DateTime::parse_from_rfc3339(next).expect("next_attempt_at is RFC 3339");
    let ahead = next.with_timezone(&chrono::Utc) - before;
    assert!(
        ahead >= chrono::Duration::hours(23) && ahead <= chrono::Duration::hours(25),
        "next_attempt_at should be about 24 h ahead, is {ahead:?} ahead"
    );
    assert_eq!(server.total_charges(&created.order_id).await, 0);
}

#[rstest]
#[tokio::test]
async fn provider_error_fails_over_and_ends_failed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let created = pay(&server, "pm_card_provider_error").await;
    let p = &created.payment;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["failure_code"], "provider_unavailable", "{p}");
    let tries = attempts(p);
    assert_eq!(tries.len(), 3, "{p}");
    for (i, (provider, outcome, _)) in tries.iter().enumerate() {
        assert_eq!(outcome, "transient_not_charged", "attempt {}: {p}", i + 1);
        let expected = if i % 2 == 0 { "sandbox_a" } else { "sandbox_b" };
        assert_eq!(
            provider,
            expected,
            "attempt {} should fail over: {p}",
            i + 1
        );
        assert_eq!(p["attempts"][i]["number"], i + 1, "{p}");
    }
    assert_eq!(server.total_charges(&created.order_id).await, 0);
}

#[rstest]
#[tokio::test]
async fn timeout_after_charge_retries_the_same_key_and_charges_once(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let created = pay(&server, "pm_card_timeout_after_charge").await;
    let p = &created.payment;
    assert_eq!(p["status"], "succeeded", "{p}");
    // The unknown outcome is retried inside the same attempt (same provider,
    // same provider idempotency key), never as a new one elsewhere.
    assert_eq!(
        attempts(p),
        vec![("sandbox_a".into(), "succeeded".into(), None)],
        "{p}"
    );
    let charges = server.sandbox_charges("sandbox_a", &created.order_id).await;
    assert_eq!(charges.len(), 1, "exactly one charge: {charges:?}");
    assert_eq!(
        server
            .sandbox_charges("sandbox_b", &created.order_id)
            .await
            .len(),
        0
    );
    assert_eq!(charges[0]["idempotency_key"], format!("{}-1", created.id()));
    assert_eq!(charges[0]["id"], p["provider_payment_id"], "{p}");
}

#[rstest]
#[tokio::test]
async fn rate_limited_succeeds_after_429s_with_one_charge(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let created = pay(&server, "pm_card_rate_limited").await;
    let p = &created.payment;
    assert_eq!(p["status"], "succeeded", "{p}");
    let tries = attempts(p);
    // The sandbox answers 429 to the first two tries (DESIGN §7); the engine
    // fails over after each, so the third try succeeds.
    assert_eq!(
        tries.len(),
        3,
        "two rate-limited attempts, then success: {p}"
    );
    let (last, earlier) = tries.split_last().expect("at least one attempt");
    for (provider, outcome, code) in earlier {
        assert_eq!(outcome, "transient_not_charged", "{provider}: {p}");
        assert_eq!(code.as_deref(), Some("rate_limited"), "{provider}: {p}");
    }
    assert_eq!(last.1, "succeeded", "{p}");
    assert_eq!(server.total_charges(&created.order_id).await, 1);
    let charges = server.sandbox_charges(&last.0, &created.order_id).await;
    assert_eq!(
        charges.len(),
        1,
        "the charge is at the provider of the last attempt"
    );
    assert_eq!(charges[0]["id"], p["provider_payment_id"]);
}

#[rstest]
#[tokio::test]
async fn unknown_token_is_an_invalid_payment_method(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let created = pay(&server, "pm_card_does_not_exist").await;
    let p = &created.payment;
    assert_eq!(p["status"], "failed", "{p}");
    assert_eq!(p["failure_code"], "invalid_payment_method", "{p}");
    assert_eq!(
        p["attempts"].as_array().map(Vec::len),
        Some(1),
        "an invalid request is not retried: {p}"
    );
    assert_eq!(server.total_charges(&created.order_id).await, 0);
}

#[rstest]
#[tokio::test]
async fn pinned_provider_is_used(#[values(Backend::Sqlite, Backend::Postgres)] backend: Backend) {
    let server = TestServer::start(backend).await;
    let created = pay_with(&server, "pm_card_visa", |body| {
        body["provider"] = json!("sandbox_b")
    })
    .await;
    let p = &created.payment;
    assert_eq!(p["status"], "succeeded", "{p}");
    assert_eq!(p["provider"], "sandbox_b", "{p}");
    assert_eq!(
        attempts(p),
        vec![("sandbox_b".into(), "succeeded".into(), None)],
        "{p}"
    );
    assert_eq!(
        server
            .sandbox_charges("sandbox_b", &created.order_id)
            .await
            .len(),
        1
    );
    assert_eq!(
        server
            .sandbox_charges("sandbox_a", &created.order_id)
            .await
            .len(),
        0
    );

    // Pinning also keeps a failing payment on that provider (no failover).
    let created = pay_with(&server, "pm_card_provider_error", |body| {
        body["provider"] = json!("sandbox_b")
    })
    .await;
    let tries = attempts(&created.payment);
    assert!(!tries.is_empty(), "{}", created.payment);
    assert!(
        tries.iter().all(|(provider, ..)| provider == "sandbox_b"),
        "{}",
        created.payment
    );
}

// ---------------------------------------------------------------------------
// Reads
// ---------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn get_returns_the_created_payment(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    for token in ["pm_card_visa", "pm_card_provider_error"] {
        let created = pay(&server, token).await;
        let fetched = get_ok(&server, &format!("/v1/payments/{}", created.id())).await;
        assert_eq!(
            fetched, created.payment,
            "GET answers the payment POST returned ({token})"
        );
        assert!(!fetched["attempts"].as_array().expect("attempts").is_empty());
    }
    let missing = server
        .get("/v1/payments/pay_00000000000000000000000000000000")
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text);
    assert_eq!(error_type(&missing), "not_found");
    let garbage = server.get("/v1/payments/not-an-id").await;
    assert_eq!(garbage.status, 404, "{}", garbage.text);
    assert_eq!(error_type(&garbage), "not_found");
}

#[rstest]
#[tokio::test]
async fn list_is_newest_first_filters_and_paginates(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let customer = unique("cus");
    // Five payments for one customer (alternating outcomes), plus one for
    // another customer that the customer filter must leave out.
    let mut mine = Vec::new();
    for i in 0..5 {
        let token = if i % 2 == 0 {
            "pm_card_visa"
        } else {
            "pm_card_declined"
        };
        let c = customer.clone();
        mine.push(pay_with(&server, token, move |body| body["customer_id"] = json!(c)).await);
    }
    let other = pay(&server, "pm_card_visa").await;
    let newest_first: Vec<String> = mine.iter().rev().map(|c| c.id().to_string()).collect();

    // Everything, newest first.
    let all = get_ok(&server, "/v1/payments?limit=100").await;
    let all_ids = ids_of(&all);
    assert_eq!(all["has_more"], false, "{all}");
    assert_eq!(all_ids.len(), 6, "{all}");
    assert_eq!(all_ids[0], other.id(), "the newest comes first");
    assert_eq!(all_ids[1..], newest_first[..]);

    // Default limit is 10: six payments fit on one page.
    let default_page = get_ok(&server, "/v1/payments").await;
    assert_eq!(ids_of(&default_page).len(), 6);

    // customer_id
    let by_customer = get_ok(&server, &format!("/v1/payments?customer_id={customer}")).await;
    assert_eq!(ids_of(&by_customer), newest_first, "{by_customer}");

    // order_id
    let by_order = get_ok(
        &server,
        &format!("/v1/payments?order_id={}", mine[2].order_id),
    )
    .await;
    assert_eq!(ids_of(&by_order), vec![mine[2].id().to_string()]);

    // status
    let failed = get_ok(
        &server,
        &format!("/v1/payments?status=failed&customer_id={customer}"),
    )
    .await;
    let expected_failed: Vec<String> = mine
        .iter()
        .rev()
        .filter(|c| c.payment["status"] == "failed")
        .map(|c| c.id().to_string())
        .collect();
    assert_eq!(expected_failed.len(), 2);
    assert_eq!(ids_of(&failed), expected_failed);
    for p in failed["data"].as_array().expect("data") {
        assert_eq!(p["status"], "failed");
    }
    let succeeded = get_ok(&server, "/v1/payments?status=succeeded").await;
    assert_eq!(
        ids_of(&succeeded).len(),
        4,
        "three of mine and the other one"
    );

    // created_gte / created_lt: [created of #1, created of #3) is #1 and #2.
    let gte = mine[1].payment["created_at"].as_str().expect("created_at");
    let lt = mine[3].payment["created_at"].as_str().expect("created_at");
    let window = server
        .send(
            server
                .client
                .get(server.url("/v1/payments"))
                .query(&[
                    ("created_gte", gte),
                    ("created_lt", lt),
                    ("customer_id", customer.as_str()),
                ])
                .bearer_auth(crate::common::DEV_KEY),
        )
        .await;
    assert_eq!(window.status, 200, "{}", window.text);
    assert_eq!(
        ids_of(&window.json()),
        vec![mine[2].id().to_string(), mine[1].id().to_string()]
    );

    // Pages of two across all five of the customer's payments.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/payments?customer_id={customer}&limit=2");
        if let Some(after) = &cursor {
            path.push_str(&format!("&starting_after={after}"));
        }
        let page = get_ok(&server, &path).await;
        let ids = ids_of(&page);
        pages += 1;
        assert!(pages <= 3, "pagination does not end: {page}");
        assert!(ids.len() <= 2, "limit respected: {page}");
        let has_more = page["has_more"].as_bool().expect("has_more is a bool");
        seen.extend(ids.iter().cloned());
        if !has_more {
            break;
        }
        assert_eq!(ids.len(), 2, "a page with more after it is full: {page}");
        cursor = ids.last().cloned();
    }
    assert_eq!(pages, 3, "5 payments at 2 a page");
    assert_eq!(
        seen, newest_first,
        "every payment exactly once, newest first"
    );
    let unique_seen: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique_seen.len(), 5);

    // A full last page says has_more=false (not merely "the page was full").
    let exact = get_ok(
        &server,
        &format!("/v1/payments?customer_id={customer}&limit=5"),
    )
    .await;
    assert_eq!(exact["has_more"], false, "{exact}");
    assert_eq!(ids_of(&exact).len(), 5);
    let short = get_ok(
        &server,
        &format!("/v1/payments?customer_id={customer}&limit=4"),
    )
    .await;
    assert_eq!(short["has_more"], true, "{short}");
}

// ---------------------------------------------------------------------------
// The audit trail
// ---------------------------------------------------------------------------

/// Checks the audit trail of `created` against its status and attempts, and
/// returns its status history.
async fn check_events(server: &TestServer, created: &Created) -> Vec<String> {
    let page = get_ok(server, &format!("/v1/payments/{}/events", created.id())).await;
    let events = page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {page}"))
        .clone();
    assert!(!events.is_empty(), "{page}");

    // Oldest first.
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = events
        .iter()
        .map(|e| {
            chrono::DateTime::parse_from_rfc3339(e["created_at"].as_str().expect("created_at"))
                .expect("created_at is RFC 3339")
        })
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "events oldest first: {page}"
    );
    for e in &events {
        assert_eq!(e["payment_id"], created.id(), "{e}");
        assert!(
            e["id"].as_str().is_some_and(|id| id.starts_with("evt_")),
            "{e}"
        );
    }

    // The first event is the creation, in `processing`.
    assert_eq!(events[0]["type"], "payment.created", "{page}");
    assert_eq!(events[0]["from_status"], Value::Null, "{page}");

    // Each status change starts where the previous one ended.
    let changes: Vec<&Value> = events
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("payment.created" | "payment.status_changed")
            )
        })
        .collect();
    for pair in changes.windows(2) {
        assert_eq!(
            pair[1]["from_status"], pair[0]["to_status"],
            "a status change starts where the last ended: {page}"
        );
        assert_eq!(pair[1]["type"], "payment.status_changed");
    }
    let history = status_history(&events);
    assert_eq!(
        history.last().map(String::as_str),
        created.payment["status"].as_str(),
        "the trail ends in the payment's status: {page}"
    );

    // attempt.started and attempt.completed for every attempt.
    for attempt in created.payment["attempts"].as_array().expect("attempts") {
        let id = attempt["id"].as_str().expect("attempt id");
        for kind in ["attempt.started", "attempt.completed"] {
            let found: Vec<&Value> = events
                .iter()
                .filter(|e| e["type"] == kind && e["attempt_id"] == id)
                .collect();
            assert_eq!(found.len(), 1, "one {kind} for attempt {id}: {page}");
        }
        let started = events
            .iter()
            .position(|e| e["type"] == "attempt.started" && e["attempt_id"] == id);
        let completed = events
            .iter()
            .position(|e| e["type"] == "attempt.completed" && e["attempt_id"] == id);
        assert!(
            started < completed,
            "attempt {id} started before it completed: {page}"
        );
    }
    history
}

#[rstest]
#[tokio::test]
async fn events_record_the_status_history(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let cases = [
        ("pm_card_visa", vec!["processing", "succeeded"]),
        (
            "pm_card_insufficient_funds",
            vec!["processing", "retry_scheduled"],
        ),
        ("pm_card_declined", vec!["processing", "failed"]),
        ("pm_card_provider_error", vec!["processing", "failed"]),
        (
            "pm_card_timeout_after_charge",
            vec!["processing", "succeeded"],
        ),
    ];
    for (token, expected) in cases {
        let created = pay(&server, token).await;
        let history = check_events(&server, &created).await;
        assert_eq!(history, expected, "{token}");
    }
}

// ---------------------------------------------------------------------------
// Tenants
// ---------------------------------------------------------------------------

const ACME: &str = "sk_acme_12345678";
const GLOBEX: &str = "sk_globex_12345678";

async fn keyed_server(backend: Backend) -> TestServer {
    TestServer::start_with(
        backend,
        ServerOptions {
            env: vec![(
                "PAYMENTS_API_KEYS".into(),
                format!("acme:{ACME},globex:{GLOBEX}"),
            )],
            ..Default::default()
        },
    )
    .await
}

#[rstest]
#[tokio::test]
async fn merchants_never_see_each_other(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = keyed_server(backend).await;
    let order = unique("ord");
    let reply = server
        .create_raw(
            Some(&unique("key")),
            Some(ACME),
            payment_body(&order, "pm_card_visa").to_string(),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.json()["id"].as_str().expect("id").to_string();

    let own = server.get_as(&format!("/v1/payments/{id}"), ACME).await;
    assert_eq!(own.status, 200, "{}", own.text);
    assert_eq!(own.json()["id"], id.as_str());
    let own_events = server
        .get_as(&format!("/v1/payments/{id}/events"), ACME)
        .await;
    assert_eq!(own_events.status, 200, "{}", own_events.text);

    for path in [
        format!("/v1/payments/{id}"),
        format!("/v1/payments/{id}/events"),
    ] {
        let foreign = server.get_as(&path, GLOBEX).await;
        assert_eq!(foreign.status, 404, "globex GET {path}: {}", foreign.text);
        assert_eq!(error_type(&foreign), "not_found", "{}", foreign.text);
    }
    let globex_list = server.get_as("/v1/payments?limit=100", GLOBEX).await;
    assert_eq!(globex_list.status, 200, "{}", globex_list.text);
    assert!(
        ids_of(&globex_list.json()).is_empty(),
        "globex lists nothing: {}",
        globex_list.text
    );
    let by_order = server
        .get_as(&format!("/v1/payments?order_id={order}"), GLOBEX)
        .await;
    assert!(ids_of(&by_order.json()).is_empty(), "{}", by_order.text);
    let acme_list = server.get_as("/v1/payments", ACME).await;
    assert_eq!(
        ids_of(&acme_list.json()),
        vec![id.clone()],
        "{}",
        acme_list.text
    );

    // With keys configured the development key is off.
    let dev = server.get_as("/v1/payments", crate::common::DEV_KEY).await;
    assert_eq!(dev.status, 401, "{}", dev.text);
    assert_eq!(error_type(&dev), "authentication_error");
    let dev_create = server
        .create(
            &unique("key"),
            &payment_body(&unique("ord"), "pm_card_visa"),
        )
        .await;
    assert_eq!(dev_create.status, 401, "{}", dev_create.text);
}

#[rstest]
#[tokio::test]
async fn idempotency_keys_are_scoped_per_merchant(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = keyed_server(backend).await;
    let key = unique("shared_key");
    let (acme_order, globex_order) = (unique("ord_acme"), unique("ord_globex"));
    let acme = server
        .create_raw(
            Some(&key),
            Some(ACME),
            payment_body(&acme_order, "pm_card_visa").to_string(),
        )
        .await;
    assert_eq!(acme.status, 201, "{}", acme.text);
    let globex = server
        .create_raw(
            Some(&key),
            Some(GLOBEX),
            payment_body(&globex_order, "pm_card_visa").to_string(),
        )
        .await;
    assert_eq!(
        globex.status, 201,
        "same key, other merchant, other order: {}",
        globex.text
    );
    assert_eq!(
        globex.header("Idempotent-Replayed"),
        None,
        "not a replay of acme's answer"
    );
    let (acme, globex) = (acme.json(), globex.json());
    assert_ne!(acme["id"], globex["id"]);
    assert_eq!(acme["order_id"], acme_order.as_str());
    assert_eq!(globex["order_id"], globex_order.as_str());
    assert_eq!(server.total_charges(&acme_order).await, 1);
    assert_eq!(server.total_charges(&globex_order).await, 1);

    // Each merchant's replay still answers its own payment.
    let replay = server
        .create_raw(
            Some(&key),
            Some(GLOBEX),
            payment_body(&globex_order, "pm_card_visa").to_string(),
        )
        .await;
    assert_eq!(replay.status, 201, "{}", replay.text);
    assert_eq!(
        replay.header("Idempotent-Replayed").as_deref(),
        Some("true")
    );
    assert_eq!(replay.json()["id"], globex["id"]);
}

// ---------------------------------------------------------------------------
// Operational routes
// ---------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn health_readiness_and_unknown_routes(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let healthz = server.send(server.client.get(server.url("/healthz"))).await;
    assert_eq!(healthz.status, 200, "{}", healthz.text);
    let readyz = server.send(server.client.get(server.url("/readyz"))).await;
    assert_eq!(readyz.status, 200, "{}", readyz.text);

    let unknown = server.get("/v1/no_such_thing").await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    let error = &unknown.json()["error"];
    assert_eq!(error["type"], "not_found", "{}", unknown.text);
    assert!(
        error["code"].is_string() && error["message"].is_string(),
        "{}",
        unknown.text
    );
    assert!(
        error.get("param").is_some(),
        "the envelope always has param: {}",
        unknown.text
    );
}

#[rstest]
#[tokio::test]
async fn a_known_path_with_the_wrong_method_is_405_with_allow(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let delete = server
        .send(
            server
                .client
                .delete(server.url("/v1/payments"))
                .bearer_auth(DEV_KEY),
        )
        .await;
    assert_eq!(delete.status, 405, "{}", delete.text);
    assert_eq!(delete.header("Allow").as_deref(), Some("POST, GET"));
    assert_eq!(delete.json()["error"]["code"], "method_not_allowed");
    let put = server
        .send(
            server
                .client
                .put(server.url("/v1/providers/sandbox_a"))
                .bearer_auth(DEV_KEY),
        )
        .await;
    assert_eq!(put.status, 405);
    assert_eq!(put.header("Allow").as_deref(), Some("PATCH"));
    let unknown = server.get("/v1/nothing-here").await;
    assert_eq!(unknown.status, 404);
}

/// Issue 8, item 7: a panic inside a payment actor used to leave its dead
/// address in the registry, blocking the order until restart. The request
/// that hit it gets a 500 `api_error`; the next request for the order gets
/// a fresh actor and works.
#[rstest]
#[tokio::test]
async fn a_panic_in_a_payment_actor_is_contained_and_the_actor_replaced(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let order = unique("boom");
    let server = TestServer::start_with(
        backend,
        ServerOptions::config(&format!("[engine]\nfault_panic_on_order = \"{order}\"\n")),
    )
    .await;
    let hit = server
        .create(&unique("k"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(hit.status, 500, "{}", hit.text);
    assert_eq!(hit.json()["error"]["type"], "api_error", "{}", hit.text);
    let next = server
        .create(&unique("k"), &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(next.status, 201, "{}", next.text);
    assert_eq!(next.json()["status"], "succeeded", "{}", next.text);
    let other = server
        .create(&unique("k"), &payment_body(&unique("calm"), "pm_card_visa"))
        .await;
    assert_eq!(other.status, 201, "{}", other.text);
}

/// Issue 9: at saturation the excess is shed with 503 + Retry-After after
/// a bounded wait, not queued without bound; a shed request writes nothing
/// and its key can be retried later.
#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payments_beyond_the_in_flight_bound_are_shed_with_retry_after(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let config = "[engine]\nmax_in_flight_payments = 2\nadmission_wait_ms = 50\n\
                  [[providers]]\nname = \"sandbox_a\"\n[providers.faults]\nlatency_ms = 600\n";
    let server =
        std::sync::Arc::new(TestServer::start_with(backend, ServerOptions::config(config)).await);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let server = server.clone();
            tokio::spawn(async move {
                let key = format!("shed-{i}");
                let reply = server
                    .create(&key, &payment_body(&format!("shed-o{i}"), "pm_card_visa"))
                    .await;
                (key, i, reply)
            })
        })
        .collect();
    let mut shed = Vec::new();
    let mut served = 0;
    for task in tasks {
        let (key, i, reply) = task.await.expect("task");
        match reply.status {
            201 => served += 1,
            503 => {
                assert_eq!(reply.error_code(), "overloaded", "{}", reply.text);
                assert!(reply.header("retry-after").is_some(), "{}", reply.text);
                shed.push((key, i));
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert_eq!(served, 2, "exactly the bound was served at once");
    assert_eq!(shed.len(), 6);
    // A shed key was never stored: retried later, it is a new payment.
    let (key, i) = &shed[0];
    let again = server
        .create(key, &payment_body(&format!("shed-o{i}"), "pm_card_visa"))
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert!(again.header("Idempotent-Replayed").is_none());
}
