//! Outgoing events and signed webhooks (DESIGN §6, §11; issue 13): a
//! local receiver (wiremock on loopback) gets each event signed, retried
//! with backoff, dead-lettered after the last try, redelivered on an
//! operator's word; two instances deliver each event once; a restart in
//! the middle of a backoff still delivers.

use crate::common::{
    binary, payment_body, unique, Backend, ServerOptions, TestDb, TestServer, DEV_KEY,
};
use payments::domain::{verify_signature, EVENT_ID_HEADER, SIGNATURE_HEADER};
use serde_json::Value;
use std::time::{Duration, Instant};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const SECRET: &str = "whsec_outgoing_test";
const MERCHANT_KEY: &str = "sk_default_merchant_only_0001";
const WAIT: Duration = Duration::from_secs(30);

/// A config sending `events` (TOML list, or "" for all) to `receiver`,
/// with a fast schedule: tries 100 ms, 200 ms… apart.
fn config(receiver: &MockServer, events: &str, max_attempts: u32, base_secs: f64) -> String {
    let filter = if events.is_empty() {
        String::new()
    } else {
        format!("events = {events}\n")
    };
    format!(
        "[[webhooks]]\nurl = \"{}/hooks\"\nsecret = \"{SECRET}\"\n{filter}\n\
         [webhook_delivery]\npoll_interval_ms = 50\nmax_attempts = {max_attempts}\n\
         backoff_base_secs = {base_secs}\ntimeout_ms = 2000\n",
        receiver.uri()
    )
}

async fn respond(receiver: &MockServer, status: u16, times: Option<u64>, priority: u8) {
    let mock = Mock::given(any())
        .respond_with(ResponseTemplate::new(status))
        .with_priority(priority);
    match times {
        Some(n) => mock.up_to_n_times(n).mount(receiver).await,
        None => mock.mount(receiver).await,
    }
}

fn header(request: &Request, name: &str) -> String {
    request
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("webhook body is JSON")
}

/// Waits until the receiver has at least `count` requests; returns them.
async fn received(receiver: &MockServer, count: usize) -> Vec<Request> {
    let deadline = Instant::now() + WAIT;
    loop {
        let requests = receiver.received_requests().await.unwrap_or_default();
        if requests.len() >= count || Instant::now() > deadline {
            return requests;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `rows` (a table and condition) counts `expected`; returns
/// the last count.
async fn rows_eventually(server: &TestServer, rows: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let count = server.count_rows(rows).await;
        if count == expected || Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pay(server: &TestServer, token: &str) -> Value {
    pay_as(server, DEV_KEY, token).await
}

async fn pay_as(server: &TestServer, api_key: &str, token: &str) -> Value {
    let body = payment_body(&unique("order"), token).to_string();
    let reply = server
        .create_raw(Some(&unique("key")), Some(api_key), body)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()
}

#[rstest::rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_gets_payment_succeeded_signed(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let receiver = MockServer::start().await;
    respond(&receiver, 200, None, 1).await;
    let options = ServerOptions::config(&config(&receiver, "", 3, 0.1));
    let server = TestServer::start_with(backend, options).await;
    let payment = pay(&server, "pm_card_visa").await;
    assert_eq!(payment["status"], "succeeded");
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1, "one event, delivered once");
    let request = &requests[0];
    let event = body(request);
    assert_eq!(event["type"], "payment.succeeded");
    assert_eq!(event["object"], "event");
    assert_eq!(event["data"]["object"]["id"], payment["id"]);
    assert_eq!(event["data"]["object"]["status"], "succeeded");
    assert_eq!(
        header(request, EVENT_ID_HEADER),
        event["id"].as_str().unwrap()
    );
    let signature = header(request, SIGNATURE_HEADER);
    let now = chrono::Utc::now().timestamp();
    verify_signature(&signature, &request.body, SECRET, 300, now).expect("valid signature");
    assert!(verify_signature(&signature, &request.body, "wrong", 300, now).is_err());
    let mut tampered = request.body.clone();
    tampered.push(b' ');
    assert!(verify_signature(&signature, &tampered, SECRET, 300, now).is_err());
    // The event is also listed, with the same body.
    let listed = server.get("/v1/events").await.json();
    assert_eq!(listed["data"][0], event);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_failures_then_success_delivers_the_same_event_three_times() {
    let receiver = MockServer::start().await;
    respond(&receiver, 500, Some(2), 1).await;
    respond(&receiver, 200, None, 2).await;
    let toml = config(&receiver, "[\"payment.succeeded\"]", 5, 0.1);
    let server = TestServer::start_with(Backend::Sqlite, ServerOptions::config(&toml)).await;
    pay(&server, "pm_card_visa").await;
    let requests = received(&receiver, 3).await;
    assert_eq!(requests.len(), 3);
    // Delivered: nothing more comes.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let requests = receiver.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 3, "a delivered event is not sent again");
    let ids: Vec<String> = requests
        .iter()
        .map(|r| header(r, EVENT_ID_HEADER))
        .collect();
    assert!(
        ids.iter().all(|id| id == &ids[0] && id.starts_with("evt_")),
        "{ids:?}"
    );
    let delivered = "webhook_deliveries WHERE status = 'delivered' AND attempts = 3";
    assert_eq!(rows_eventually(&server, delivered, 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_never_accepts_gets_the_event_dead_lettered_then_redelivered() {
    let receiver = MockServer::start().await;
    respond(&receiver, 503, None, 1).await;
    // A merchant key of its own, so the operator key is another.
    let options = ServerOptions {
        env: vec![(
            "PAYMENTS_API_KEYS".into(),
            format!("default:{MERCHANT_KEY}"),
        )],
        config_toml: Some(config(&receiver, "[\"payment.failed\"]", 3, 0.1)),
    };
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let payment = pay_as(&server, MERCHANT_KEY, "pm_card_declined").await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(received(&receiver, 3).await.len(), 3);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        receiver.received_requests().await.unwrap_or_default().len(),
        3,
        "no try after the last"
    );
    let dead = "webhook_deliveries WHERE status = 'dead' AND attempts = 3";
    assert_eq!(rows_eventually(&server, dead, 1).await, 1);
    let event_id = header(&received(&receiver, 1).await[0], EVENT_ID_HEADER);
    let path = format!("/v1/events/{event_id}/redeliver");
    // A merchant may not redeliver; an unknown event is 404.
    let as_merchant = server
        .send(
            server
                .client
                .post(server.url(&path))
                .bearer_auth(MERCHANT_KEY),
        )
        .await;
    assert_eq!(as_merchant.status, 403, "{}", as_merchant.text);
    assert_eq!(as_merchant.json()["error"]["type"], "permission_error");
    let unknown = server
        .send(
            server
                .client
                .post(server.url("/v1/events/evt_0190a0a0a0a07000800000000000000/redeliver"))
                .bearer_auth(&server.operator_key),
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    receiver.reset().await;
    respond(&receiver, 200, None, 1).await;
    let redelivered = server
        .send(
            server
                .client
                .post(server.url(&path))
                .bearer_auth(&server.operator_key),
        )
        .await;
    assert_eq!(redelivered.status, 200, "{}", redelivered.text);
    assert_eq!(redelivered.json()["id"], event_id.as_str());
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(header(&requests[0], EVENT_ID_HEADER), event_id);
    let delivered = "webhook_deliveries WHERE status = 'delivered'";
    assert_eq!(rows_eventually(&server, delivered, 1).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn two_instances_on_postgres_deliver_each_event_once() {
    const PAYMENTS: usize = 30;
    let receiver = MockServer::start().await;
    // A slow receiver keeps deliveries in flight while the other instance
    // polls: a claim that was not exclusive would show as a duplicate.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(30)))
        .mount(&receiver)
        .await;
    let db = TestDb::new(Backend::Postgres);
    let options = ServerOptions::config(&config(&receiver, "[\"payment.succeeded\"]", 5, 0.1));
    let servers = [
        TestServer::start_on(&db, options.clone()).await,
        TestServer::start_on(&db, options).await,
    ];
    for i in 0..PAYMENTS {
        pay(&servers[i % 2], "pm_card_visa").await;
    }
    let requests = received(&receiver, PAYMENTS).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let requests_after = receiver.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), PAYMENTS);
    let mut ids: Vec<String> = requests_after
        .iter()
        .map(|r| header(r, EVENT_ID_HEADER))
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), PAYMENTS, "every event delivered");
    assert_eq!(total, PAYMENTS, "and each exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_in_the_middle_of_a_backoff_still_delivers() {
    let receiver = MockServer::start().await;
    respond(&receiver, 500, None, 1).await;
    let db = TestDb::new(Backend::Sqlite);
    // The second try is 2 s after the first: the server is killed between.
    let options = ServerOptions::config(&config(&receiver, "[\"payment.succeeded\"]", 5, 2.0));
    let server = TestServer::start_on(&db, options.clone()).await;
    pay(&server, "pm_card_visa").await;
    let first = received(&receiver, 1).await;
    assert_eq!(first.len(), 1);
    let event_id = header(&first[0], EVENT_ID_HEADER);
    server.kill_9();
    drop(server);
    receiver.reset().await;
    respond(&receiver, 200, None, 1).await;
    let _restarted = TestServer::start_on(&db, options).await;
    let requests = received(&receiver, 1).await;
    assert_eq!(requests.len(), 1, "delivered after the restart");
    assert_eq!(header(&requests[0], EVENT_ID_HEADER), event_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_listed_newest_first_and_paginated() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut ids = Vec::new();
    for token in ["pm_card_visa", "pm_card_visa", "pm_card_declined"] {
        ids.push(pay(&server, token).await["id"].clone());
    }
    let page = server.get("/v1/events?limit=2").await.json();
    assert_eq!(page["has_more"], true);
    let data = page["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["type"], "payment.failed");
    assert_eq!(data[0]["data"]["object"]["id"], ids[2]);
    assert_eq!(data[1]["data"]["object"]["id"], ids[1]);
    let cursor = data[1]["id"].as_str().expect("id");
    let next = server
        .get(&format!("/v1/events?limit=2&starting_after={cursor}"))
        .await
        .json();
    assert_eq!(next["has_more"], false);
    assert_eq!(next["data"][0]["data"]["object"]["id"], ids[0]);
    let succeeded = server.get("/v1/events?type=payment.succeeded").await.json();
    assert_eq!(succeeded["data"].as_array().map(Vec::len), Some(2));
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("type=payment.exploded", "type"),
        ("starting_after=pay_123", "starting_after"),
    ] {
        let reply = server.get(&format!("/v1/events?{query}")).await;
        assert_eq!(reply.status, 400, "{query}: {}", reply.text);
        assert_eq!(reply.error_param(), param, "{query}");
    }
    let anonymous = server
        .send(server.client.get(server.url("/v1/events")))
        .await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merchant_sees_only_its_own_events() {
    let env = vec![(
        "PAYMENTS_API_KEYS".to_string(),
        "acme:sk_acme_events_000001,globex:sk_globex_events_0001".to_string(),
    )];
    let options = ServerOptions {
        env,
        config_toml: None,
    };
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    pay_as(&server, "sk_acme_events_000001", "pm_card_visa").await;
    let acme = server
        .get_as("/v1/events", "sk_acme_events_000001")
        .await
        .json();
    assert_eq!(acme["data"].as_array().map(Vec::len), Some(1));
    let globex = server
        .get_as("/v1/events", "sk_globex_events_0001")
        .await
        .json();
    assert_eq!(globex["data"].as_array().map(Vec::len), Some(0));
}

/// `payments serve` with `toml` refuses to start, naming `key`, and shows
/// no secret.
fn refused(toml: &str, key: &str) {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("p.toml"), toml).expect("write");
    let output = std::process::Command::new(binary())
        .args(["serve", "--port", "0", "--config", "p.toml"])
        .current_dir(dir.path())
        .env("PAYMENTS_DATA_DIR", dir.path().join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("PAYMENTS_CONFIG")
        .env_remove("PAYMENTS_API_KEYS")
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{toml} was accepted");
    assert!(stderr.contains(key), "{key} not named: {stderr}");
    assert!(!stderr.contains("whsec"), "{stderr}");
}

#[test]
fn a_webhook_with_a_bad_url_or_an_empty_secret_is_refused_naming_the_key() {
    for (toml, key) in [
        ("[[webhooks]]\nurl = \"ftp://x/hooks\"\nsecret = \"s\"\n", "webhooks[0].url"),
        ("[[webhooks]]\nurl = \"not a url\"\nsecret = \"s\"\n", "webhooks[0].url"),
        ("[[webhooks]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \" \"\n", "webhooks[0].secret"),
        (
            "[[webhooks]]\nurl = \"http://127.0.0.1:9/h\"\nsecret = \"s\"\nevents = [\"payment.exploded\"]\n",
            "webhooks[0].events",
        ),
        ("[webhook_delivery]\nmax_attempts = 0\n", "webhook_delivery.max_attempts"),
    ] {
        refused(toml, key);
    }
}

/// Without the `nats` feature, `[events.nats]` is refused, saying how to
/// get it, rather than silently publishing nothing.
#[cfg(not(feature = "nats"))]
#[test]
fn events_nats_is_refused_by_a_build_without_the_feature() {
    refused(
        "[events.nats]\nurl = \"nats://127.0.0.1:4222\"\nstream = \"PAYMENTS\"\n",
        "--features nats",
    );
}
