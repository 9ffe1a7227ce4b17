//! Traces (issue 13): a request's W3C `traceparent` is continued, its
//! trace id is on the request's span and on the payment's spans beneath
//! it (payment id, order id, merchant, provider, attempt), in the JSON
//! logs, and the answer names the engine's span in the same trace.

use crate::common::binary;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The caller's trace and span (the OTLP test continues the same ones).
pub(crate) const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub(crate) const PARENT: &str = "00f067aa0ba902b7";

/// `POST /v1/payments` for `order` with `token`, sent in the caller's
/// trace ([`TRACE_ID`], its span [`PARENT`], sampled).
pub(crate) async fn pay_in_callers_trace(
    base: &str,
    order: &str,
    token: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/v1/payments"))
        .bearer_auth("sk_test_default")
        .header("Idempotency-Key", crate::common::unique("key"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT}-01"))
        .json(&crate::common::payment_body(order, token))
        .send()
        .await
        .expect("send")
}

/// A server logging JSON at `info` to a file; (child, base URL, log path).
fn start(dir: &std::path::Path) -> (std::process::Child, String, std::path::PathBuf) {
    start_configured(dir, "[log]\nformat = \"json\"\nlevel = \"info\"\n")
}

/// A server on its own data directory under `dir`, started with the
/// configuration file `toml`, its log written to a file; (child, base URL,
/// log path). The OTLP test starts its exporting server with it too.
pub(crate) fn start_configured(
    dir: &std::path::Path,
    toml: &str,
) -> (std::process::Child, String, std::path::PathBuf) {
    let config = dir.join("payments.toml");
    std::fs::write(&config, toml).expect("config");
    let log = dir.join("server.log");
    let mut child = Command::new(binary())
        .args(["serve", "--host", "127.0.0.1", "--port", "0", "--config"])
        .arg(&config)
        .env("PAYMENTS_DATA_DIR", dir.join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("PAYMENTS_API_KEYS")
        .env_remove("PAYMENTS_ADMIN_KEYS")
        .env_remove("PAYMENTS_CONFIG")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("listening on ").map(str::to_string))
        .expect("the server says where it listens");
    (child, base, log)
}

/// The log's JSON lines that say `message`.
fn lines_saying(log: &std::path::Path, message: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"] == message)
        .collect()
}

#[tokio::test]
async fn a_callers_trace_is_continued_through_the_payment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, base, log) = start(dir.path());
    let order = crate::common::unique("ord_trace");
    let answer = pay_in_callers_trace(&base, &order, "pm_card_timeout_after_charge").await;
    let traceparent = answer
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .expect("the answer carries traceparent");
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")) && !traceparent.contains(PARENT),
        "{traceparent}"
    );
    let payment: Value = answer.json().await.expect("json");
    let payment_id = payment["id"].as_str().expect("id").to_string();

    // The lines are flushed as they are written; give the file a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (created, retried) = loop {
        let created = lines_saying(&log, "payment created");
        let retried = lines_saying(&log, "retrying unknown outcome with the same key");
        if (!created.is_empty() && !retried.is_empty()) || Instant::now() > deadline {
            break (created, retried);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();

    let created = created
        .iter()
        .find(|line| line["fields"]["payment_id"] == payment_id.as_str())
        .unwrap_or_else(|| panic!("no `payment created` line for {payment_id}"));
    let spans = created["spans"].as_array().expect("spans");
    let request = spans
        .iter()
        .find(|s| s["name"] == "http.request")
        .expect("the request's span");
    assert_eq!(request["trace_id"], TRACE_ID);
    assert_eq!(request["parent_span_id"], PARENT);
    let payment_span = spans
        .iter()
        .find(|s| s["name"] == "payment")
        .expect("the payment's span, beneath the request's");
    assert_eq!(payment_span["payment_id"], payment_id.as_str());
    assert!(
        payment_span["order_id"]
            .as_str()
            .is_some_and(|o| o.contains(&order)),
        "{payment_span}"
    );

    // The same-key retry is logged inside the attempt's span, in the same trace.
    let retried = retried
        .iter()
        .find(|line| line["fields"]["payment_id"] == payment_id.as_str())
        .expect("the retry's line");
    let spans = retried["spans"].as_array().expect("spans");
    assert!(spans
        .iter()
        .any(|s| s["name"] == "http.request" && s["trace_id"] == TRACE_ID));
    assert!(spans.iter().any(|s| s["name"] == "payment"));
}

#[tokio::test]
async fn without_a_traceparent_each_request_starts_a_trace() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, base, _log) = start(dir.path());
    let client = reqwest::Client::new();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let answer = client
            .get(format!("{base}/healthz"))
            .header("traceparent", "garbage")
            .send()
            .await
            .expect("send");
        let value = answer
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .expect("traceparent")
            .to_string();
        let parts: Vec<&str> = value.split('-').collect();
        assert_eq!(parts.len(), 4, "{value}");
        assert_eq!((parts[1].len(), parts[2].len()), (32, 16), "{value}");
        seen.push(parts[1].to_string());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(seen[0], seen[1], "a new trace per request");
}
