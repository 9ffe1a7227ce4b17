//! The sandbox's webhooks: its own events verify, forged ones do not.

use super::*;
use crate::providers::signature::signature_header;
use crate::providers::webhook::timestamp_from_unix_secs;
use crate::providers::{WebhookError, WebhookHeaders, WebhookKind};

const SIGNED_AT: i64 = 1_700_000_000;

fn at(seconds: i64) -> Timestamp {
    timestamp_from_unix_secs(seconds).expect("representable")
}

async fn sandbox(name: &str, secret: Option<&str>) -> (tempfile::TempDir, SandboxProvider) {
    let options = SandboxOptions {
        webhook_secret: secret.map(str::to_string),
        ..SandboxOptions::default()
    };
    super::sandbox(name, options).await
}

fn charge(provider: &str) -> SandboxCharge {
    SandboxCharge {
        id: "ch_1".into(),
        provider: provider.into(),
        idempotency_key: "pay_0190abc-2".into(),
        merchant_id: "merchant_1".into(),
        order_id: "order_1".into(),
        customer_id: "cus_1".into(),
        amount: 1500,
        currency: "eur".into(),
        payment_method: "pm_card_async".into(),
        status: "succeeded".into(),
        amount_refunded: 0,
        fee: 0,
        created_at: "2023-11-14T22:13:20.000000Z".into(),
    }
}

#[tokio::test]
async fn its_own_signed_events_verify_and_name_the_payment() {
    let (_dir, sandbox) = sandbox("sandbox_a", None).await;
    let (headers, body) = sandbox.signed_event(
        &SandboxEventKind::ChargeSucceeded,
        &charge("sandbox_a"),
        at(SIGNED_AT),
    );
    let events = sandbox
        .verify_webhook(&headers, &body, at(SIGNED_AT + 2))
        .expect("verified");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert!(event.id.starts_with("evt_"), "{}", event.id);
    assert_eq!(event.kind, WebhookKind::ChargeSucceeded);
    assert_eq!(event.provider_payment_id.as_deref(), Some("ch_1"));
    assert_eq!(event.idempotency_key.as_deref(), Some("pay_0190abc-2"));
    assert_eq!(event.payment_id.as_deref(), Some("pay_0190abc"));
    assert_eq!(event.merchant_id.as_deref(), Some("merchant_1"));
    assert_eq!(event.order_id.as_deref(), Some("order_1"));
    assert_eq!(
        (event.amount, event.currency.as_deref()),
        (Some(1500), Some("eur"))
    );
    assert_eq!(event.created, at(SIGNED_AT));
    assert_eq!(event.raw["data"]["object"]["order_id"], "order_1");

    let (headers, body) = sandbox.signed_event(
        &SandboxEventKind::ChargeFailed {
            code: "insufficient_funds".into(),
            message: "Your card has insufficient funds.".into(),
        },
        &charge("sandbox_a"),
        at(SIGNED_AT),
    );
    let failed = sandbox
        .verify_webhook(&headers, &body, at(SIGNED_AT))
        .expect("verified");
    assert_eq!(
        failed[0].kind,
        WebhookKind::ChargeFailed {
            class: OutcomeClass::SoftDecline,
            code: Some("insufficient_funds".into()),
            message: Some("Your card has insufficient funds.".into()),
        }
    );
    let (headers, body) = sandbox.signed_event(
        &SandboxEventKind::ChargeRefunded {
            amount_refunded: 400,
        },
        &charge("sandbox_a"),
        at(SIGNED_AT),
    );
    let refunded = sandbox
        .verify_webhook(&headers, &body, at(SIGNED_AT))
        .expect("verified");
    assert_eq!(
        refunded[0].kind,
        WebhookKind::ChargeRefunded {
            amount_refunded: 400
        }
    );
}

#[tokio::test]
async fn forged_missing_and_mistimed_signatures_are_refused() {
    let (_dir, sandbox) = sandbox("sandbox_a", Some("whsec_configured")).await;
    let (headers, body) = sandbox.signed_event(
        &SandboxEventKind::ChargeSucceeded,
        &charge("sandbox_a"),
        at(SIGNED_AT),
    );
    let tampered = String::from_utf8_lossy(&body).replace("1500", "150000");
    let default_secret: WebhookHeaders = [(
        "Stripe-Signature",
        signature_header(DEFAULT_WEBHOOK_SECRET, SIGNED_AT, &body),
    )]
    .into_iter()
    .collect();
    let bad = |headers: &WebhookHeaders, body: &[u8], now: i64| {
        sandbox.verify_webhook(headers, body, at(now))
    };
    assert!(matches!(
        bad(&headers, tampered.as_bytes(), SIGNED_AT),
        Err(WebhookError::BadSignature(_))
    ));
    assert!(matches!(
        bad(&default_secret, &body, SIGNED_AT),
        Err(WebhookError::BadSignature(_))
    ));
    assert!(matches!(
        bad(&WebhookHeaders::new(), &body, SIGNED_AT),
        Err(WebhookError::BadSignature(_))
    ));
    assert!(matches!(
        bad(&headers, &body, SIGNED_AT + 301),
        Err(WebhookError::Stale { .. })
    ));
    assert!(matches!(
        bad(&headers, &body, SIGNED_AT - 301),
        Err(WebhookError::Stale { .. })
    ));
}

#[tokio::test]
async fn one_matching_signature_among_rotated_ones_is_enough() {
    let (_dir, sandbox) = sandbox("sandbox_a", None).await;
    let (headers, body) = sandbox.signed_event(
        &SandboxEventKind::ChargeSucceeded,
        &charge("sandbox_a"),
        at(SIGNED_AT),
    );
    let current = headers.get("stripe-signature").expect("signed");
    let current_v1 = current.rsplit("v1=").next().expect("a v1");
    let old = signature_header("whsec_old", SIGNED_AT, &body);
    let rotated: WebhookHeaders = [("Stripe-Signature", format!("{old},v1={current_v1}"))]
        .into_iter()
        .collect();
    assert!(sandbox
        .verify_webhook(&rotated, &body, at(SIGNED_AT))
        .is_ok());
}

#[tokio::test]
async fn another_sandboxs_charge_is_refused() {
    let (_dir, sandbox_b) = sandbox("sandbox_b", None).await;
    let (_dir_a, sandbox_a) = sandbox("sandbox_a", None).await;
    let (headers, body) = sandbox_a.signed_event(
        &SandboxEventKind::ChargeSucceeded,
        &charge("sandbox_a"),
        at(SIGNED_AT),
    );
    assert!(matches!(
        sandbox_b.verify_webhook(&headers, &body, at(SIGNED_AT)),
        Err(WebhookError::Malformed(_))
    ));
}
