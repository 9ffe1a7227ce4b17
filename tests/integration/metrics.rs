//! `GET /metrics` (issue 13): every family is there from the start, and
//! traffic moves each by the right amount. The server is the real binary;
//! the scrape is Prometheus text over loopback, read as a scraper would.

use crate::common::{payment_body, unique, Backend, TestServer};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Series name with labels (as printed) → value.
type Scrape = BTreeMap<String, f64>;

async fn scrape(server: &TestServer) -> Scrape {
    let reply = server.send(server.client.get(server.url("/metrics"))).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "Prometheus text"
    );
    reply
        .text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            (series.to_string(), value)
        })
        .collect()
}

fn value(scrape: &Scrape, series: &str) -> f64 {
    *scrape
        .get(series)
        .unwrap_or_else(|| panic!("no series {series}"))
}

fn delta(before: &Scrape, after: &Scrape, series: &str) -> f64 {
    value(after, series) - before.get(series).copied().unwrap_or(0.0)
}

/// The families DESIGN §11 and issue 13 name, each with at least one series.
const FAMILIES: &[&str] = &[
    "payments_http_requests_total",
    "payments_http_request_duration_seconds_bucket",
    "payments_payments_total",
    "payments_attempt_duration_seconds_bucket",
    "payments_retries_total",
    "payments_circuit_state",
    "payments_retry_budget_tokens",
    "payments_store_batch_size_bucket",
    "payments_store_commit_duration_seconds_bucket",
    "payments_payment_actors",
    "payments_discrepancies_total",
    "payments_anomaly_flags_total",
    "payments_webhook_deliveries_total",
    "payments_build_info",
];

#[tokio::test]
async fn every_family_is_present_from_the_start_with_zeros() {
    let server = TestServer::start(Backend::Sqlite).await;
    let first = scrape(&server).await;
    for family in FAMILIES {
        assert!(
            first.keys().any(|series| series.starts_with(family)),
            "{family} missing before any traffic"
        );
    }
    // A gauge and a counter per configured provider, at zero.
    for provider in ["sandbox_a", "sandbox_b", "wallet"] {
        assert_eq!(
            value(
                &first,
                &format!("payments_circuit_state{{provider=\"{provider}\"}}")
            ),
            0.0
        );
        assert_eq!(
            value(
                &first,
                &format!("payments_payments_total{{status=\"succeeded\",provider=\"{provider}\"}}")
            ),
            0.0
        );
    }
    assert_eq!(
        value(
            &first,
            "payments_discrepancies_total{category=\"duplicate_charge\"}"
        ),
        0.0
    );
    assert_eq!(
        value(
            &first,
            "payments_build_info{version=\"0.1.0\",name=\"payments\"}"
        ),
        1.0
    );
}

async fn pay(server: &TestServer, token: &str) -> Value {
    let reply = server
        .create(&unique("key"), &payment_body(&unique("ord"), token))
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()
}

#[tokio::test]
async fn traffic_moves_each_family_by_the_right_amount() {
    let server = TestServer::start(Backend::Sqlite).await;
    let before = scrape(&server).await;

    for _ in 0..3 {
        assert_eq!(pay(&server, "pm_card_visa").await["status"], "succeeded");
    }
    assert_eq!(pay(&server, "pm_card_declined").await["status"], "failed");
    // Charged, first answer lost: one same-key retry of an unknown outcome.
    let unknown = pay(&server, "pm_card_timeout_after_charge").await;
    assert_eq!(unknown["status"], "succeeded", "{unknown}");
    let provider = unknown["provider"].as_str().expect("provider").to_string();

    let after = scrape(&server).await;
    let payments = |status: &str, provider: &str| {
        format!("payments_payments_total{{status=\"{status}\",provider=\"{provider}\"}}")
    };
    let succeeded: f64 = ["sandbox_a", "sandbox_b"]
        .iter()
        .map(|p| delta(&before, &after, &payments("succeeded", p)))
        .sum();
    assert_eq!(succeeded, 4.0, "3 visa + 1 timeout-then-retry");
    let failed: f64 = ["sandbox_a", "sandbox_b"]
        .iter()
        .map(|p| delta(&before, &after, &payments("failed", p)))
        .sum();
    assert_eq!(failed, 1.0);
    let created: f64 = ["sandbox_a", "sandbox_b"]
        .iter()
        .map(|p| delta(&before, &after, &payments("processing", p)))
        .sum();
    assert_eq!(created, 5.0, "every payment starts processing");
    assert_eq!(
        delta(
            &before,
            &after,
            "payments_http_requests_total{route=\"/v1/payments\",method=\"POST\",status=\"201\"}"
        ),
        5.0
    );
    assert_eq!(
        delta(
            &before,
            &after,
            "payments_http_request_duration_seconds_count{route=\"/v1/payments\"}"
        ),
        5.0
    );
    assert_eq!(
        delta(&before, &after, "payments_retries_total{class=\"unknown\"}"),
        1.0
    );
    // Six calls: five first calls and the same-key retry.
    let calls: f64 = after
        .iter()
        .filter(|(series, _)| series.starts_with("payments_attempt_duration_seconds_count"))
        .map(|(series, v)| v - before.get(series).copied().unwrap_or(0.0))
        .sum();
    assert_eq!(calls, 6.0);
    assert_eq!(
        delta(
            &before,
            &after,
            &format!(
                "payments_attempt_duration_seconds_count{{provider=\"{provider}\",class=\"unknown\"}}"
            )
        ),
        1.0
    );
    assert_eq!(value(&after, "payments_payment_actors"), 5.0);
    assert!(delta(&before, &after, "payments_store_batch_size_count") >= 1.0);
    assert!(
        delta(
            &before,
            &after,
            "payments_store_commit_duration_seconds_count"
        ) >= 1.0
    );
    assert!(value(&after, "payments_retry_budget_tokens") > 0.0);
}

#[tokio::test]
async fn circuit_state_and_discrepancies_follow_the_operator_and_the_reconciler() {
    let server = TestServer::start(Backend::Sqlite).await;
    let reply =
        crate::common::patch_provider(&server, "sandbox_b", &json!({"force_open": true})).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let scraped = scrape(&server).await;
    assert_eq!(
        value(&scraped, "payments_circuit_state{provider=\"sandbox_b\"}"),
        3.0,
        "forced open"
    );

    // A charge the engine never made: one `missing_internally` finding.
    let before = scrape(&server).await;
    let stray = json!({ "order_id": unique("ord_nobody"), "amount": 4_200, "currency": "usd" });
    let reply = server
        .send(
            server
                .client
                .post(server.url("/v1/sandbox/sandbox_a/charges"))
                .bearer_auth(&server.operator_key)
                .json(&stray),
        )
        .await;
    assert!(reply.status < 300, "{}", reply.text);
    let window = json!({
        "from": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        "to": (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339(),
    });
    for _ in 0..2 {
        let run = server
            .send(
                server
                    .client
                    .post(server.url("/v1/reconciliation/runs"))
                    .bearer_auth(&server.operator_key)
                    .json(&window),
            )
            .await;
        assert_eq!(run.status, 201, "{}", run.text);
    }
    let after = scrape(&server).await;
    assert_eq!(
        delta(
            &before,
            &after,
            "payments_discrepancies_total{category=\"missing_internally\"}"
        ),
        1.0,
        "found twice, stored (and counted) once"
    );
}
