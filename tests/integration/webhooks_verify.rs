//! Webhook verification through the public API (DESIGN §6, §7): each
//! adapter built from a plain configuration, fed requests signed here with
//! the algorithms as the providers document them, written out again in
//! this file (and checked against published or `openssl`-computed values),
//! so the code under test never signs what it verifies.
//!
//! - Stripe: `Stripe-Signature: t={unix},v1={hex HMAC-SHA256(secret, "{t}.{body}")}`,
//!   300 s tolerance either way, several `v1` while a secret rolls.
//! - Adyen: per notification item, base64 HMAC-SHA256 keyed with the
//!   hex-decoded key over
//!   `pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success`,
//!   in `additionalData.hmacSignature`.
//! - Sandbox: Stripe's scheme with its `webhook_secret` (`whsec_sandbox`
//!   by default).

use async_trait::async_trait;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use payments::domain::{OutcomeClass, Timestamp};
use payments::providers::adyen::{AdyenConfig, AdyenProvider};
use payments::providers::sandbox::{
    SandboxCharge, SandboxEventKind, SandboxOptions, SandboxProvider, SandboxRecord,
};
use payments::providers::stripe::{StripeConfig, StripeProvider};
use payments::providers::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementPage, WebhookError, WebhookEvent, WebhookHeaders,
    WebhookKind,
};
use serde_json::{json, Value};
use sha2::Sha256;

const STRIPE_SECRET: &str = "whsec_integration";
const SIGNED_AT: i64 = 1_700_000_000;
const TOLERANCE_SECS: i64 = 300;
/// Adyen's published example ("Verify HMAC signatures"): key, and the
/// signature of its example item, reproduced with
/// `openssl dgst -sha256 -mac HMAC -macopt hexkey:{key} -binary | base64`.
pub(crate) const ADYEN_KEY: &str =
    "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
const ADYEN_EXAMPLE_SIGNATURE: &str = "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=";

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros(seconds * 1_000_000).expect("representable")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Stripe's `v1`: lowercase hex HMAC-SHA256 of `{t}.{body}`.
pub(crate) fn stripe_v1(secret: &str, t: i64, body: &[u8]) -> String {
    hex(&hmac_sha256(
        secret.as_bytes(),
        &[t.to_string().as_bytes(), b".", body],
    ))
}

fn stripe_headers(value: String) -> WebhookHeaders {
    [
        ("Stripe-Signature", value),
        ("Content-Type", "application/json".to_string()),
    ]
    .into_iter()
    .collect()
}

fn stripe_signed(secret: &str, t: i64, body: &[u8]) -> WebhookHeaders {
    stripe_headers(format!("t={t},v1={}", stripe_v1(secret, t, body)))
}

fn stripe(secret: Option<&str>) -> StripeProvider {
    StripeProvider::new(
        "stripe",
        StripeConfig {
            base_url: "http://127.0.0.1:9".into(),
            api_key: "sk_test_webhooks".into(),
            timeout_ms: 1_000,
            webhook_secret: secret.map(str::to_string),
            webhook_tolerance_secs: TOLERANCE_SECS as u64,
        },
    )
    .expect("valid configuration")
}

fn stripe_event(kind: &str, object: Value) -> Vec<u8> {
    json!({
        "id": "evt_1NxYz", "object": "event", "api_version": "2024-06-20",
        "created": SIGNED_AT, "livemode": false, "pending_webhooks": 1,
        "type": kind, "data": { "object": object },
    })
    .to_string()
    .into_bytes()
}

pub(crate) fn payment_intent(status: &str) -> Value {
    json!({
        "id": "pi_3Nx", "object": "payment_intent", "status": status,
        "amount": 2000, "amount_received": 2000, "currency": "usd",
        "client_secret": "pi_3Nx_secret_topsecretvalue",
        "metadata": {
            "payment_id": "pay_0190", "idempotency_key": "pay_0190-1",
            "order_id": "order_42", "merchant_id": "merchant_1",
        },
    })
}

#[test]
fn the_independent_stripe_signer_matches_openssl() {
    // printf '1700000000.{"id":"evt_1","type":"charge.succeeded"}' \
    //   | openssl dgst -sha256 -hmac whsec_test_secret
    assert_eq!(
        stripe_v1(
            "whsec_test_secret",
            SIGNED_AT,
            br#"{"id":"evt_1","type":"charge.succeeded"}"#
        ),
        "c0475716eb2200f1fe97fcf35a3c05d1fd4f8ba9a07a596730c8d18bb87c0672"
    );
}

#[test]
fn stripe_accepts_a_signed_event_and_names_the_payment() {
    let body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"));
    let events = stripe(Some(STRIPE_SECRET))
        .verify_webhook(
            &stripe_signed(STRIPE_SECRET, SIGNED_AT, &body),
            &body,
            at(SIGNED_AT + 5),
        )
        .expect("a valid signature");
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.id, "evt_1NxYz");
    assert_eq!(event.kind, WebhookKind::ChargeSucceeded);
    assert_eq!(event.provider_payment_id.as_deref(), Some("pi_3Nx"));
    assert_eq!(event.payment_id.as_deref(), Some("pay_0190"));
    assert_eq!(event.idempotency_key.as_deref(), Some("pay_0190-1"));
    assert_eq!(event.order_id.as_deref(), Some("order_42"));
    assert_eq!(event.merchant_id.as_deref(), Some("merchant_1"));
    assert_eq!(event.amount, Some(2000));
    assert_eq!(event.currency.as_deref(), Some("usd"));
    assert_eq!(event.created, at(SIGNED_AT));
    assert!(
        !event.raw.to_string().contains("topsecretvalue"),
        "client_secret is redacted from raw"
    );
}

#[test]
fn stripe_maps_failures_and_refunds() {
    let mut failed = payment_intent("requires_payment_method");
    failed["last_payment_error"] = json!({
        "type": "card_error", "code": "expired_card", "message": "Your card has expired.",
    });
    let refund = json!({
        "id": "re_1", "object": "refund", "amount": 500, "currency": "usd",
        "status": "succeeded", "payment_intent": "pi_3Nx", "charge": "ch_1",
    });
    let charge = json!({
        "id": "ch_1", "object": "charge", "amount": 2000, "amount_refunded": 2000,
        "currency": "usd", "payment_intent": "pi_3Nx", "refunded": true,
    });
    let cases = [
        (
            "payment_intent.payment_failed",
            failed,
            WebhookKind::ChargeFailed {
                class: OutcomeClass::HardDecline,
                code: Some("expired_card".into()),
                message: Some("Your card has expired.".into()),
            },
        ),
        (
            "charge.refunded",
            charge,
            WebhookKind::ChargeRefunded {
                amount_refunded: 2000,
            },
        ),
        (
            "refund.updated",
            refund.clone(),
            WebhookKind::RefundSucceeded {
                provider_refund_id: "re_1".into(),
                amount: 500,
            },
        ),
        (
            "charge.refund.updated",
            refund,
            WebhookKind::RefundSucceeded {
                provider_refund_id: "re_1".into(),
                amount: 500,
            },
        ),
        (
            "invoice.paid",
            json!({ "id": "in_1" }),
            WebhookKind::Other("invoice.paid".into()),
        ),
    ];
    let provider = stripe(Some(STRIPE_SECRET));
    for (kind, object, expected) in cases {
        let body = stripe_event(kind, object);
        let events = provider
            .verify_webhook(
                &stripe_signed(STRIPE_SECRET, SIGNED_AT, &body),
                &body,
                at(SIGNED_AT),
            )
            .expect("a valid signature");
        assert_eq!(events[0].kind, expected, "{kind}");
        if kind != "invoice.paid" {
            assert_eq!(
                events[0].provider_payment_id.as_deref(),
                Some("pi_3Nx"),
                "{kind}"
            );
        }
    }
}

#[test]
fn stripe_refuses_forged_missing_stale_and_future_signatures() {
    let provider = stripe(Some(STRIPE_SECRET));
    let body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"));
    let valid = stripe_signed(STRIPE_SECRET, SIGNED_AT, &body);
    let tampered = String::from_utf8_lossy(&body).replace("2000", "1");
    let bad_signature = |headers: &WebhookHeaders, body: &[u8]| {
        matches!(
            provider.verify_webhook(headers, body, at(SIGNED_AT)),
            Err(WebhookError::BadSignature(_))
        )
    };
    assert!(bad_signature(&valid, tampered.as_bytes()), "tampered body");
    assert!(
        bad_signature(&stripe_signed("whsec_wrong", SIGNED_AT, &body), &body),
        "wrong secret"
    );
    assert!(bad_signature(&WebhookHeaders::new(), &body), "no header");
    assert!(
        bad_signature(
            &stripe_headers(format!(
                "t={SIGNED_AT},v0={}",
                stripe_v1(STRIPE_SECRET, SIGNED_AT, &body)
            )),
            &body
        ),
        "only another scheme"
    );
    for now in [
        SIGNED_AT + TOLERANCE_SECS + 1,
        SIGNED_AT - TOLERANCE_SECS - 1,
    ] {
        let result = provider.verify_webhook(&valid, &body, at(now));
        assert!(
            matches!(result, Err(WebhookError::Stale { .. })),
            "signed at {SIGNED_AT}, now {now}: {result:?}"
        );
    }
    for now in [SIGNED_AT + TOLERANCE_SECS, SIGNED_AT - TOLERANCE_SECS] {
        assert!(provider.verify_webhook(&valid, &body, at(now)).is_ok());
    }
    // Nothing is read from an unverified body: garbage with a bad signature
    // is a signature error, not a parse error.
    assert!(bad_signature(&valid, b"\xff not json"));
}

#[test]
fn stripe_accepts_any_matching_signature_while_a_secret_rolls() {
    let body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"));
    let header = format!(
        "t={SIGNED_AT},v1={},v1={}",
        stripe_v1("whsec_previous", SIGNED_AT, &body),
        stripe_v1(STRIPE_SECRET, SIGNED_AT, &body)
    );
    let events = stripe(Some(STRIPE_SECRET))
        .verify_webhook(&stripe_headers(header.clone()), &body, at(SIGNED_AT))
        .expect("one signature matches");
    assert_eq!(events.len(), 1);
    let result = stripe(Some("whsec_unrelated")).verify_webhook(
        &stripe_headers(header),
        &body,
        at(SIGNED_AT),
    );
    assert!(
        matches!(result, Err(WebhookError::BadSignature(_))),
        "{result:?}"
    );
}

#[test]
fn stripe_without_a_webhook_secret_takes_no_webhooks() {
    let body = stripe_event("payment_intent.succeeded", payment_intent("succeeded"));
    let result = stripe(None).verify_webhook(
        &stripe_signed(STRIPE_SECRET, SIGNED_AT, &body),
        &body,
        at(SIGNED_AT),
    );
    assert!(
        matches!(result, Err(WebhookError::Unsupported(_))),
        "{result:?}"
    );
}

fn adyen(key: Option<&str>) -> AdyenProvider {
    AdyenProvider::new(
        "adyen",
        AdyenConfig {
            base_url: "https://checkout-test.adyen.com/v71".into(),
            api_key: "AQE_webhooks".into(),
            merchant_account: "TestMerchant".into(),
            timeout_ms: 1_000,
            hmac_key: key.map(str::to_string),
        },
    )
    .expect("valid configuration")
}

/// Adyen's signature of `item`, from its fields in the documented order.
pub(crate) fn adyen_signature(key_hex: &str, item: &Value) -> String {
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let signing = [
        text(&item["pspReference"]),
        text(&item["originalReference"]),
        text(&item["merchantAccountCode"]),
        text(&item["merchantReference"]),
        item["amount"]["value"].to_string(),
        text(&item["amount"]["currency"]),
        text(&item["eventCode"]),
        text(&item["success"]),
    ]
    .join(":");
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha256(&unhex(key_hex), &[signing.as_bytes()]))
}

pub(crate) fn adyen_signed(mut item: Value) -> Value {
    item["additionalData"]["hmacSignature"] = json!(adyen_signature(ADYEN_KEY, &item));
    item
}

pub(crate) fn adyen_request(items: &[Value]) -> Vec<u8> {
    let items: Vec<Value> = items
        .iter()
        .map(|item| json!({ "NotificationRequestItem": item }))
        .collect();
    json!({ "live": "false", "notificationItems": items })
        .to_string()
        .into_bytes()
}

pub(crate) fn adyen_example_item() -> Value {
    json!({
        "additionalData": { "hmacSignature": ADYEN_EXAMPLE_SIGNATURE },
        "amount": { "value": 1130, "currency": "EUR" },
        "pspReference": "7914073381342284",
        "eventCode": "AUTHORISATION",
        "eventDate": "2019-05-06T17:15:34.121+02:00",
        "merchantAccountCode": "TestMerchant",
        "merchantReference": "TestPayment-1407325143704",
        "operations": ["CANCEL", "CAPTURE", "REFUND"],
        "paymentMethod": "visa",
        "success": "true",
    })
}

fn adyen_refund(success: &str) -> Value {
    adyen_signed(json!({
        "amount": { "value": 500, "currency": "EUR" },
        "pspReference": "QFQTPCQ8HXSKGK82",
        "originalReference": "7914073381342284",
        "eventCode": "REFUND",
        "eventDate": "2024-01-02T03:04:05+00:00",
        "merchantAccountCode": "TestMerchant",
        "merchantReference": "re_0190",
        "success": success,
    }))
}

#[test]
fn the_independent_adyen_signer_reproduces_adyens_example() {
    assert_eq!(
        adyen_signature(ADYEN_KEY, &adyen_example_item()),
        ADYEN_EXAMPLE_SIGNATURE
    );
}

#[test]
fn adyen_accepts_its_published_example_and_signed_refunds() {
    let body = adyen_request(&[adyen_example_item(), adyen_refund("true")]);
    let events = adyen(Some(ADYEN_KEY))
        .verify_webhook(&WebhookHeaders::new(), &body, at(SIGNED_AT))
        .expect("every item verifies");
    assert_eq!(events.len(), 2);
    let (authorised, refunded) = (&events[0], &events[1]);
    assert_eq!(authorised.kind, WebhookKind::ChargeSucceeded);
    assert_eq!(authorised.id, "7914073381342284:AUTHORISATION:true");
    assert_eq!(
        authorised.provider_payment_id.as_deref(),
        Some("7914073381342284")
    );
    assert_eq!(
        authorised.payment_id.as_deref(),
        Some("TestPayment-1407325143704")
    );
    assert_eq!(authorised.amount, Some(1130));
    assert_eq!(authorised.currency.as_deref(), Some("eur"));
    assert_eq!(
        refunded.kind,
        WebhookKind::RefundSucceeded {
            provider_refund_id: "QFQTPCQ8HXSKGK82".into(),
            amount: 500,
        }
    );
    assert_eq!(
        refunded.provider_payment_id.as_deref(),
        Some("7914073381342284")
    );
    assert_eq!(refunded.idempotency_key.as_deref(), Some("re_0190"));
    assert_eq!(
        refunded.created,
        Timestamp::parse_rfc3339("2024-01-02T03:04:05Z").expect("time")
    );
}

#[test]
fn adyen_refuses_the_whole_request_for_one_bad_item() {
    let mut tampered = adyen_refund("true");
    tampered["amount"]["value"] = json!(50_000);
    let body = adyen_request(&[adyen_example_item(), tampered]);
    let result =
        adyen(Some(ADYEN_KEY)).verify_webhook(&WebhookHeaders::new(), &body, at(SIGNED_AT));
    assert!(
        matches!(result, Err(WebhookError::BadSignature(_))),
        "{result:?}"
    );

    let mut flipped = adyen_refund("true");
    flipped["success"] = json!("false");
    let body = adyen_request(&[flipped]);
    let result =
        adyen(Some(ADYEN_KEY)).verify_webhook(&WebhookHeaders::new(), &body, at(SIGNED_AT));
    assert!(
        matches!(result, Err(WebhookError::BadSignature(_))),
        "{result:?}"
    );

    let body = adyen_request(&[adyen_example_item()]);
    let other_key = "00112233445566778899AABBCCDDEEFF00112233445566778899AABBCCDDEEFF";
    let result =
        adyen(Some(other_key)).verify_webhook(&WebhookHeaders::new(), &body, at(SIGNED_AT));
    assert!(
        matches!(result, Err(WebhookError::BadSignature(_))),
        "{result:?}"
    );

    let result = adyen(None).verify_webhook(&WebhookHeaders::new(), &body, at(SIGNED_AT));
    assert!(
        matches!(result, Err(WebhookError::Unsupported(_))),
        "{result:?}"
    );
}

#[test]
fn adyen_maps_a_failed_refund() {
    let body = adyen_request(&[adyen_refund("false")]);
    let events = adyen(Some(ADYEN_KEY))
        .verify_webhook(&WebhookHeaders::new(), &body, at(SIGNED_AT))
        .expect("verified");
    assert_eq!(
        events[0].kind,
        WebhookKind::RefundFailed {
            provider_refund_id: "QFQTPCQ8HXSKGK82".into(),
            amount: Some(500),
            code: None,
        }
    );
}

async fn sandbox(secret: Option<&str>) -> (tempfile::TempDir, SandboxProvider) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let record = SandboxRecord::open(&dir.path().join("sandbox.db"))
        .await
        .expect("sandbox record");
    let options = SandboxOptions {
        webhook_secret: secret.map(str::to_string),
        ..SandboxOptions::default()
    };
    let provider = SandboxProvider::new("sandbox_a", record, options);
    (dir, provider)
}

fn sandbox_charge() -> SandboxCharge {
    SandboxCharge {
        id: "ch_0190".into(),
        provider: "sandbox_a".into(),
        idempotency_key: "pay_0190-1".into(),
        merchant_id: "merchant_1".into(),
        order_id: "order_42".into(),
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

/// The `t` and `v1` of a `Stripe-Signature` header, read here.
fn stripe_elements(header: &str) -> (i64, Vec<String>) {
    let mut t = None;
    let mut v1 = Vec::new();
    for element in header.split(',') {
        match element.split_once('=') {
            Some(("t", value)) => t = Some(value.parse().expect("a number")),
            Some(("v1", value)) => v1.push(value.to_string()),
            _ => {}
        }
    }
    (t.expect("a timestamp"), v1)
}

#[tokio::test]
async fn the_sandbox_signs_in_stripes_scheme_with_its_secret() {
    for (configured, secret) in [
        (None, "whsec_sandbox"),
        (Some("whsec_from_config"), "whsec_from_config"),
    ] {
        let (_dir, sandbox) = sandbox(configured).await;
        let (headers, body) = sandbox.signed_event(
            &SandboxEventKind::ChargeSucceeded,
            &sandbox_charge(),
            at(SIGNED_AT),
        );
        let (t, v1) = stripe_elements(headers.get("stripe-signature").expect("signed"));
        assert_eq!(t, SIGNED_AT);
        assert_eq!(v1, [stripe_v1(secret, t, &body)], "signed with {secret}");
        let event: Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(event["type"], "charge.succeeded");
        assert_eq!(event["created"], SIGNED_AT);
        assert!(event["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("evt_")));
        assert_eq!(event["data"]["object"]["id"], "ch_0190");
        assert_eq!(event["data"]["object"]["idempotency_key"], "pay_0190-1");
    }
}

#[tokio::test]
async fn the_sandbox_verifies_independently_signed_events() {
    let (_dir, sandbox) = sandbox(None).await;
    let body = json!({
        "id": "evt_outside", "object": "event", "type": "charge.failed", "created": SIGNED_AT,
        "data": { "object": {
            "id": "ch_0190", "object": "charge", "provider": "sandbox_a",
            "idempotency_key": "pay_0190-3", "merchant_id": "merchant_1", "order_id": "order_42",
            "amount": 1500, "currency": "eur", "status": "failed",
            "failure_code": "card_declined", "failure_message": "Your card was declined.",
        }},
    })
    .to_string()
    .into_bytes();
    let events = sandbox
        .verify_webhook(
            &stripe_signed("whsec_sandbox", SIGNED_AT, &body),
            &body,
            at(SIGNED_AT + 1),
        )
        .expect("verified");
    let event = &events[0];
    assert_eq!(
        event.kind,
        WebhookKind::ChargeFailed {
            class: OutcomeClass::HardDecline,
            code: Some("card_declined".into()),
            message: Some("Your card was declined.".into()),
        }
    );
    assert_eq!(event.provider_payment_id.as_deref(), Some("ch_0190"));
    assert_eq!(event.payment_id.as_deref(), Some("pay_0190"));
    assert_eq!(event.idempotency_key.as_deref(), Some("pay_0190-3"));
    assert_eq!(event.order_id.as_deref(), Some("order_42"));
}

#[tokio::test]
async fn the_sandbox_refuses_forged_and_stale_events() {
    let (_dir, sandbox) = sandbox(None).await;
    let (headers, body) = sandbox.signed_event(
        &SandboxEventKind::ChargeRefunded {
            amount_refunded: 1500,
        },
        &sandbox_charge(),
        at(SIGNED_AT),
    );
    let events = sandbox
        .verify_webhook(&headers, &body, at(SIGNED_AT))
        .expect("its own event");
    assert_eq!(
        events[0].kind,
        WebhookKind::ChargeRefunded {
            amount_refunded: 1500
        }
    );
    let forged = String::from_utf8_lossy(&body).replace("\"amount\":1500", "\"amount\":1");
    assert_ne!(forged.as_bytes(), body.as_slice());
    let refused = |headers: &WebhookHeaders, body: &[u8], now: i64| {
        sandbox.verify_webhook(headers, body, at(now))
    };
    assert!(matches!(
        refused(&headers, forged.as_bytes(), SIGNED_AT),
        Err(WebhookError::BadSignature(_))
    ));
    assert!(matches!(
        refused(
            &stripe_signed("whsec_guess", SIGNED_AT, &body),
            &body,
            SIGNED_AT
        ),
        Err(WebhookError::BadSignature(_))
    ));
    assert!(matches!(
        refused(&WebhookHeaders::new(), &body, SIGNED_AT),
        Err(WebhookError::BadSignature(_))
    ));
    assert!(matches!(
        refused(&headers, &body, SIGNED_AT + TOLERANCE_SECS + 1),
        Err(WebhookError::Stale { .. })
    ));
    assert!(matches!(
        refused(&headers, &body, SIGNED_AT - TOLERANCE_SECS - 1),
        Err(WebhookError::Stale { .. })
    ));
}

/// A provider that says nothing about webhooks gets the trait's default.
struct Silent;

#[async_trait]
impl Provider for Silent {
    fn name(&self) -> &str {
        "silent"
    }

    async fn charge(&self, _request: &ChargeRequest) -> ProviderResponse {
        ProviderResponse::synthetic(OutcomeClass::Invalid, "unused", "unused")
    }

    async fn lookup(&self, _key: &str) -> Result<LookupResult, ProviderError> {
        Ok(LookupResult::NotFound)
    }

    async fn refund(&self, _request: &RefundRequest) -> RefundResponse {
        RefundResponse {
            status: RefundStatus::Failed,
            provider_refund_id: None,
            code: None,
            message: None,
            raw: String::new(),
        }
    }

    async fn settlements(
        &self,
        _from: Timestamp,
        _to: Timestamp,
        _cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        Ok(SettlementPage::empty())
    }
}

#[test]
fn providers_take_no_webhooks_by_default() {
    let result: Result<Vec<WebhookEvent>, WebhookError> =
        Silent.verify_webhook(&WebhookHeaders::new(), b"{}", at(SIGNED_AT));
    assert!(
        matches!(result, Err(WebhookError::Unsupported(_))),
        "{result:?}"
    );
}
