//! NATS JetStream publishing (DESIGN §11, issue 13; cargo feature `nats`):
//! every event is in the stream once, and a payment's events in order.
//! The test runs a `nats-server -js` of its own on a free port.

use crate::common::{payment_body, unique, Backend, ServerOptions, TestServer, DEV_KEY};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const STREAM: &str = "PAYMENTS_TEST";
const ASYNC_PAYMENTS: usize = 5;
const CARD_PAYMENTS: usize = 3;

/// A `nats-server` child process, killed on drop.
struct NatsServer {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nats_server_binary() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for dir in candidates {
        let binary = dir.join("nats-server");
        if binary.is_file() {
            return binary;
        }
    }
    panic!("nats-server not found: apt-get install -y nats-server");
}

async fn start_nats() -> NatsServer {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let store = tempfile::tempdir().expect("store dir");
    let child = Command::new(nats_server_binary())
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn nats-server");
    let url = format!("nats://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while async_nats::connect(url.as_str()).await.is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    NatsServer {
        child,
        url,
        _store: store,
    }
}

/// Every message in the stream, in stream order, once `expected` are there.
async fn stream_messages(url: &str, expected: u64) -> Vec<(String, Value)> {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        if let Ok(stream) = js.get_stream(STREAM).await {
            break stream;
        }
        assert!(Instant::now() < deadline, "stream never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        let count = stream.info().await.expect("info").state.messages;
        if count >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A little longer: a duplicate would arrive now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count = stream.info().await.expect("info").state.messages;
    let mut messages = Vec::new();
    for sequence in 1..=count {
        let message = stream.get_raw_message(sequence).await.expect("message");
        let body: Value = serde_json::from_slice(&message.payload).expect("JSON");
        messages.push((message.subject.to_string(), body));
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_is_published_once_and_in_order_per_payment() {
    let nats = start_nats().await;
    let toml = format!(
        "[sandbox]\nasync_confirm_ms = 300\n\n[events.nats]\nurl = \"{}\"\nstream = \"{STREAM}\"\n\n\
         [webhook_delivery]\npoll_interval_ms = 50\n\n\
         [anomaly.velocity]\naction = \"off\"\n\n[anomaly.duplicate_amount]\naction = \"off\"\n",
        nats.url
    );
    // One customer pays thirteen times: the rules that would flag it (and
    // add `anomaly.flagged` events) are off, so the stream holds only the
    // payments' own events.
    let server = TestServer::start_with(Backend::Sqlite, ServerOptions::config(&toml)).await;
    let mut tokens = vec!["pm_card_async"; ASYNC_PAYMENTS];
    tokens.extend(["pm_card_visa"; CARD_PAYMENTS]);
    for token in tokens {
        let body = payment_body(&unique("order"), token).to_string();
        let reply = server
            .create_raw(Some(&unique("key")), Some(DEV_KEY), body)
            .await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    // Each async payment: pending, then succeeded; each card: succeeded.
    let expected = (ASYNC_PAYMENTS * 2 + CARD_PAYMENTS) as u64;
    let messages = stream_messages(&nats.url, expected).await;
    assert_eq!(messages.len() as u64, expected, "{messages:#?}");
    let ids: HashSet<&str> = messages
        .iter()
        .map(|(_, event)| event["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), messages.len(), "each event once");
    let mut by_payment: HashMap<String, Vec<String>> = HashMap::new();
    for (subject, event) in &messages {
        let kind = event["type"].as_str().expect("type");
        assert_eq!(subject, &format!("payments.events.{kind}"));
        let payment = event["data"]["object"]["id"].as_str().expect("payment id");
        by_payment
            .entry(payment.to_string())
            .or_default()
            .push(kind.to_string());
    }
    let pending_then_succeeded = by_payment
        .values()
        .filter(|kinds| kinds == &&["payment.pending", "payment.succeeded"])
        .count();
    assert_eq!(pending_then_succeeded, ASYNC_PAYMENTS, "{by_payment:#?}");
    // Every listed event is in the stream.
    let listed = server.get("/v1/events?limit=100").await.json();
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(messages.len())
    );
}
