//! The e-mail notifier (DESIGN §11) against a local SMTP receiver: a
//! notice per payment that ends succeeded, failed or needs review, exactly
//! one each, filtered by `events`; nothing when off; and a relay that never
//! answers slows no payment.

use crate::common::{
    payment_body, unique, wait_for_status, Backend, ServerOptions, TestDb, TestServer,
};
use crate::smtp_sink::{Mail, SmtpSink};
use rstest::rstest;
use serde_json::Value;
use std::time::{Duration, Instant};

/// How long a notice may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(10);
/// How long to keep listening for a notice that must not come.
const QUIET: Duration = Duration::from_millis(1_500);

/// `[email]` on, plain SMTP to the sink on `port`, then `extra` lines.
fn email_config(port: u16, extra: &str) -> String {
    format!(
        r#"
[email]
enabled = true
smtp_host = "127.0.0.1"
smtp_port = {port}
tls = "none"
from = "Payments <payments@example.test>"
to = ["ops@example.test", "Finance <finance@example.test>"]
timeout_ms = 2000
{extra}
"#
    )
}

/// Creates a payment with `token`; returns the answer's JSON.
async fn pay(server: &TestServer, token: &str) -> Value {
    let reply = server
        .create(&unique("key"), &payment_body(&unique("ord"), token))
        .await;
    assert_eq!(reply.status, 201, "{token}: {}", reply.text);
    reply.json()
}

/// The mails about payment `id`.
fn about<'a>(mails: &'a [Mail], id: &str) -> Vec<&'a Mail> {
    mails.iter().filter(|m| m.subject().contains(id)).collect()
}

/// The one notice about `payment`, checked for its status, amount and
/// envelope.
fn assert_one_notice(mails: &[Mail], payment: &Value, status: &str) {
    let id = payment["id"].as_str().expect("id");
    let found = about(mails, id);
    assert_eq!(found.len(), 1, "one notice for {id} ({status}): {mails:#?}");
    let mail = found[0];
    let subject = mail.subject();
    assert!(subject.contains(status), "{subject}");
    assert!(subject.contains("19.99 USD"), "{subject}");
    let body = mail.body();
    assert!(body.contains(&format!("Payment:  {id}")), "{body}");
    assert!(body.contains(&format!("Status:   {status}")), "{body}");
    assert!(body.contains("1999 minor units"), "{body}");
    let order = payment["order_id"].as_str().expect("order");
    assert!(body.contains(order), "{body}");
    assert_eq!(mail.from, "payments@example.test");
    assert_eq!(mail.to, ["ops@example.test", "finance@example.test"]);
}

#[rstest]
#[tokio::test]
async fn a_succeeded_and_a_declined_payment_each_send_one_notice(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let sink = SmtpSink::start();
    let options = ServerOptions::config(&email_config(sink.port, ""));
    let server = TestServer::start_with(backend, options).await;
    let succeeded = pay(&server, "pm_card_visa").await;
    assert_eq!(succeeded["status"], "succeeded");
    let declined = pay(&server, "pm_card_declined").await;
    assert_eq!(declined["status"], "failed");
    sink.wait_for(2, ARRIVAL).await;
    tokio::time::sleep(QUIET).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 2, "{mails:#?}");
    assert_one_notice(&mails, &succeeded, "succeeded");
    assert_one_notice(&mails, &declined, "failed");
    let declined_body = about(&mails, declined["id"].as_str().expect("id"))[0].body();
    assert!(declined_body.contains("card_declined"), "{declined_body}");
    // Another request for the paid order is refused and mails nothing.
    let body = payment_body(
        succeeded["order_id"].as_str().expect("order"),
        "pm_card_visa",
    );
    let again = server.create("replayed-key", &body).await;
    assert_eq!(again.status, 409, "{}", again.text);
    tokio::time::sleep(QUIET).await;
    assert_eq!(sink.mails().len(), 2, "no second notice");
}

#[tokio::test]
async fn only_the_chosen_events_are_mailed() {
    let sink = SmtpSink::start();
    let config = email_config(sink.port, "events = [\"payment.failed\"]");
    let server = TestServer::start_with(Backend::Sqlite, ServerOptions::config(&config)).await;
    let succeeded = pay(&server, "pm_card_visa").await;
    let declined = pay(&server, "pm_card_expired").await;
    assert_eq!(declined["status"], "failed");
    sink.wait_for(1, ARRIVAL).await;
    tokio::time::sleep(QUIET).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_one_notice(&mails, &declined, "failed");
    assert!(about(&mails, succeeded["id"].as_str().expect("id")).is_empty());
}

#[tokio::test]
async fn a_disabled_notifier_sends_nothing() {
    let sink = SmtpSink::start();
    let config = email_config(sink.port, "").replace("enabled = true", "enabled = false");
    let server = TestServer::start_with(Backend::Sqlite, ServerOptions::config(&config)).await;
    pay(&server, "pm_card_visa").await;
    pay(&server, "pm_card_declined").await;
    tokio::time::sleep(QUIET).await;
    assert!(sink.mails().is_empty(), "{:#?}", sink.mails());
}

/// A relay that accepts and never answers (every try waits out
/// `timeout_ms`), and one that refuses connections: payments are answered
/// as fast as with no notifier at all.
#[tokio::test]
async fn an_unreachable_relay_delays_and_fails_no_payment() {
    let silent = SmtpSink::start_silent();
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    for port in [silent.port, closed_port] {
        let config = email_config(port, "").replace("timeout_ms = 2000", "timeout_ms = 5000");
        let server = TestServer::start_with(Backend::Sqlite, ServerOptions::config(&config)).await;
        let mut slowest = Duration::ZERO;
        for token in [
            "pm_card_visa",
            "pm_card_declined",
            "pm_card_visa",
            "pm_card_expired",
        ] {
            let started = Instant::now();
            let payment = pay(&server, token).await;
            slowest = slowest.max(started.elapsed());
            assert!(
                payment["status"] == "succeeded" || payment["status"] == "failed",
                "{payment}"
            );
        }
        assert!(
            slowest < Duration::from_secs(2),
            "relay on port {port}: a payment took {slowest:?}"
        );
    }
}

/// Recovery every 200 ms and no same-key retry of an unknown answer.
const RECOVERY: &str = r#"
[retry.unknown]
max_attempts = 1

[reconciler]
interval_secs = 0.2
max_recovery_attempts = 1
"#;

/// A charge whose answer was lost stays `pending` on the first server
/// (its look-ups are not due yet). The second server no longer has its
/// provider, so its look-up cannot tell: the payment needs review, and that
/// is mailed once.
#[tokio::test]
async fn a_payment_that_needs_review_sends_one_notice() {
    let sink = SmtpSink::start();
    let db = TestDb::new(Backend::Sqlite);
    let first = format!(
        "{}{RECOVERY}pending_age_secs = 3600\n\n{}",
        email_config(sink.port, ""),
        r#"
[[providers]]
name = "sandbox_a"
call_timeout_ms = 200
[providers.faults]
timeout_rate = 1.0

[[providers]]
name = "sandbox_b"
"#
    );
    let mut server = TestServer::start_on(&db, ServerOptions::config(&first)).await;
    let payment = pay(&server, "pm_card_visa").await;
    assert_eq!(payment["status"], "pending", "{payment}");
    let id = payment["id"].as_str().expect("id").to_string();
    assert!(server.terminate(), "the first server stops cleanly");
    assert!(sink.mails().is_empty(), "pending is not mailed");
    let second = format!(
        "{}{RECOVERY}pending_age_secs = 0\n\n[[providers]]\nname = \"sandbox_b\"\n",
        email_config(sink.port, "")
    );
    let server = TestServer::start_on(&db, ServerOptions::config(&second)).await;
    let reviewed = wait_for_status(&server, &id, "needs_review").await;
    sink.wait_for(1, ARRIVAL).await;
    tokio::time::sleep(QUIET).await;
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    assert_one_notice(&mails, &reviewed, "needs_review");
    assert!(mails[0].body().contains("a person must decide"));
}

/// Every write of a payment's state in the payment actor goes through the
/// wrapper that notifies (`PaymentDeps::save_payment`, `begin_payment`):
/// a direct store call would be a path whose final status is never mailed.
#[test]
fn payment_writes_go_through_the_notifying_wrapper() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/actors/payment");
    let mut direct = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("read src/actors/payment") {
        let path = entry.expect("entry").path();
        let text: String = std::fs::read_to_string(&path)
            .expect("read source")
            .split_whitespace()
            .collect();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        for call in ["store.save_payment(", "store.begin_payment("] {
            if text.contains(call) && name != "notify.rs" {
                direct.push(format!("{name}: {call}"));
            }
        }
    }
    assert!(direct.is_empty(), "direct store writes: {direct:?}");
}

/// `payments serve` refuses a half-written `[email]` before binding
/// anything, names the key, and never prints the relay's password.
#[test]
fn a_bad_email_section_is_refused_at_start_naming_the_key() {
    let cases = [
        ("to = []", "email.to"),
        ("to = [\"ops.example.test\"]", "email.to"),
        ("events = [\"payment.refunded\"]", "email.events"),
        (
            "password_env = \"PAYMENTS_TEST_SURELY_UNSET_SMTP\"",
            "email.password",
        ),
    ];
    for (line, key) in cases {
        let dir = tempfile::tempdir().expect("dir");
        let config = email_config(2525, "username = \"mailer\"\npassword = \"smtp-secret-42\"")
            .replace(
                "to = [\"ops@example.test\", \"Finance <finance@example.test>\"]",
                line,
            );
        let path = dir.path().join("payments.toml");
        std::fs::write(&path, config).expect("write config");
        let output = std::process::Command::new(crate::common::binary())
            .args(["serve", "--port", "0", "--config"])
            .arg(&path)
            .env("PAYMENTS_DATA_DIR", dir.path().join("data"))
            .env_remove("DATABASE_URL")
            .env_remove("PAYMENTS_CONFIG")
            .output()
            .expect("run payments");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{line}: started");
        assert!(stderr.contains(key), "{line}: {stderr}");
        assert!(!stderr.contains("smtp-secret-42"), "{line}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{line}: touched the data directory"
        );
    }
}
