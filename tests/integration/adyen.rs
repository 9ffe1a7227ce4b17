//! The Adyen adapter against a local fake Adyen (wiremock) answering what
//! Adyen's Checkout API v71 documents: every answer must land in the right
//! outcome class, and every request must be exactly what Adyen expects.

use payments::domain::{Amount, Attempt, Currency, MerchantId, OutcomeClass, PaymentId, Timestamp};
use payments::providers::adyen::{idempotency_key, AdyenConfig, AdyenProvider};
use payments::providers::{
    ChargeRequest, Provider, ProviderError, ProviderResponse, RefundRequest, RefundStatus,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const API_KEY: &str = "AQEyhmfxLI3MaBFLw0m_test_key";
const MERCHANT_ACCOUNT: &str = "PaymentsEngineECOM";
const STORED_CARD: &str = "8416038790273850";
const PSP: &str = "V4HZ4RBFJGXXGN82";
const TIMEOUT_MS: u64 = 400;

fn config(base_url: String) -> AdyenConfig {
    AdyenConfig {
        base_url,
        api_key: API_KEY.into(),
        merchant_account: MERCHANT_ACCOUNT.into(),
        timeout_ms: TIMEOUT_MS,
        hmac_key: None,
    }
}

fn provider(server: &MockServer) -> AdyenProvider {
    AdyenProvider::new("adyen", config(format!("{}/v71", server.uri()))).expect("adyen provider")
}

fn charge_request() -> ChargeRequest {
    let payment_id = PaymentId::new();
    ChargeRequest {
        payment_id,
        attempt_number: 1,
        idempotency_key: Attempt::provider_idempotency_key(payment_id, 1),
        merchant_id: MerchantId::new("merch_1"),
        order_id: "order_42".into(),
        customer_id: "cus_123".into(),
        amount: Amount::new(1999).expect("amount"),
        currency: Currency::parse("usd").expect("currency"),
        payment_method: STORED_CARD.into(),
        description: Some("two books".into()),
    }
}

/// The one request the fake Adyen received.
async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.expect("recording on");
    assert_eq!(requests.len(), 1, "exactly one call to Adyen");
    requests.remove(0)
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

/// The request is exactly Adyen's `POST /payments` for `charge`.
fn assert_payment_wire(request: &Request, charge: &ChargeRequest, amount: Value) {
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/v71/payments");
    assert_eq!(header(request, "x-api-key"), Some(API_KEY));
    assert_eq!(
        header(request, "idempotency-key"),
        Some(charge.idempotency_key.as_str())
    );
    assert_eq!(header(request, "content-type"), Some("application/json"));
    let body: Value = request.body_json().expect("JSON body");
    assert_eq!(
        body,
        json!({
            "amount": amount,
            "reference": charge.payment_id.to_string(),
            "merchantAccount": MERCHANT_ACCOUNT,
            "paymentMethod": { "type": "scheme", "storedPaymentMethodId": STORED_CARD },
            "shopperReference": "cus_123",
            "shopperInteraction": "ContAuth",
            "recurringProcessingModel": "CardOnFile",
            "metadata": { "order_id": "order_42", "merchant_id": "merch_1" },
        })
    );
}

/// Charges once against a fake Adyen answering `answer`, checks the wire
/// request, and returns the classified answer.
async fn charge_with(answer: ResponseTemplate) -> ProviderResponse {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v71/payments"))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let charge = charge_request();
    let response = provider(&server).charge(&charge).await;
    assert_payment_wire(
        &only_request(&server).await,
        &charge,
        json!({ "value": 1999, "currency": "USD" }),
    );
    assert!(!response.raw.contains(API_KEY), "raw must mask the API key");
    response
}

fn ok(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

fn refused(code: &str, reason: &str) -> ResponseTemplate {
    ok(json!({
        "additionalData": { "refusalReasonRaw": format!("{code} : {reason}") },
        "pspReference": PSP,
        "refusalReason": reason,
        "refusalReasonCode": code,
        "resultCode": "Refused",
        "merchantReference": "pay_ref",
    }))
}

fn error_body(status: u16, error_code: &str, message: &str, error_type: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "status": status,
        "errorCode": error_code,
        "message": message,
        "errorType": error_type,
        "pspReference": "8816178914079738",
    }))
}

#[tokio::test]
async fn authorised_succeeds_with_the_psp_reference() {
    let response = charge_with(ok(json!({
        "additionalData": { "cardSummary": "1111" },
        "amount": { "currency": "USD", "value": 1999 },
        "merchantReference": "pay_ref",
        "pspReference": PSP,
        "resultCode": "Authorised",
    })))
    .await;
    assert_eq!(response.class, OutcomeClass::Succeeded);
    assert_eq!(response.provider_payment_id.as_deref(), Some(PSP));
    assert_eq!(response.code, None);
    let raw: Value = serde_json::from_str(&response.raw).expect("raw is JSON");
    assert_eq!(raw["http_status"], 200);
    assert_eq!(raw["body"]["resultCode"], "Authorised");
}

#[tokio::test]
async fn refusals_follow_the_refusal_reason_table() {
    for (code, reason, class, engine_code) in [
        ("2", "Refused", OutcomeClass::HardDecline, "refused"),
        (
            "5",
            "Blocked Card",
            OutcomeClass::HardDecline,
            "blocked_card",
        ),
        (
            "6",
            "Expired Card",
            OutcomeClass::HardDecline,
            "expired_card",
        ),
        (
            "24",
            "CVC Declined",
            OutcomeClass::HardDecline,
            "cvc_declined",
        ),
        ("20", "FRAUD", OutcomeClass::HardDecline, "fraud"),
        (
            "22",
            "FRAUD-CANCELLED",
            OutcomeClass::HardDecline,
            "fraud_cancelled",
        ),
        (
            "12",
            "Not enough balance",
            OutcomeClass::SoftDecline,
            "not_enough_balance",
        ),
        (
            "29",
            "Withdrawal count exceeded",
            OutcomeClass::SoftDecline,
            "withdrawal_count_exceeded",
        ),
        (
            "9",
            "Issuer Unavailable",
            OutcomeClass::TransientNotCharged,
            "issuer_unavailable",
        ),
        (
            "7",
            "Invalid Amount",
            OutcomeClass::Invalid,
            "invalid_amount",
        ),
        (
            "999",
            "A Reason Adyen Added Later",
            OutcomeClass::HardDecline,
            "a_reason_adyen_added_later",
        ),
    ] {
        let response = charge_with(refused(code, reason)).await;
        assert_eq!(response.class, class, "refusalReasonCode {code}");
        assert_eq!(response.code.as_deref(), Some(engine_code), "{code}");
        assert_eq!(response.message.as_deref(), Some(reason));
        assert_eq!(response.provider_payment_id.as_deref(), Some(PSP));
        assert_eq!(response.retry_after_ms, None);
    }
}

#[tokio::test]
async fn a_refusal_without_a_reason_text_uses_its_code() {
    let response = charge_with(ok(json!({
        "pspReference": PSP,
        "refusalReasonCode": "12",
        "resultCode": "Refused",
    })))
    .await;
    assert_eq!(response.class, OutcomeClass::SoftDecline);
    assert_eq!(response.code.as_deref(), Some("12"));
}

#[tokio::test]
async fn other_result_codes_map() {
    for (result_code, class, code) in [
        ("Cancelled", OutcomeClass::HardDecline, "cancelled"),
        ("Error", OutcomeClass::Unknown, "error"),
        ("Received", OutcomeClass::Unknown, "received"),
        ("Pending", OutcomeClass::Unknown, "pending"),
        (
            "PartiallyAuthorised",
            OutcomeClass::Unknown,
            "partially_authorised",
        ),
    ] {
        let response = charge_with(ok(json!({
            "pspReference": PSP,
            "resultCode": result_code,
            "merchantReference": "pay_ref",
        })))
        .await;
        assert_eq!(response.class, class, "{result_code}");
        assert_eq!(response.code.as_deref(), Some(code), "{result_code}");
        // Kept so the webhook or the reconciler can match it.
        assert_eq!(response.provider_payment_id.as_deref(), Some(PSP));
    }
}

#[tokio::test]
async fn shopper_actions_are_hard_declines() {
    for result_code in [
        "RedirectShopper",
        "IdentifyShopper",
        "ChallengeShopper",
        "PresentToShopper",
    ] {
        let response = charge_with(ok(json!({
            "resultCode": result_code,
            "action": {
                "paymentMethodType": "scheme",
                "url": "https://checkoutshopper-test.adyen.com/checkoutshopper/threeDS/redirect",
                "method": "GET",
                "type": "redirect",
            },
        })))
        .await;
        assert_eq!(response.class, OutcomeClass::HardDecline, "{result_code}");
        assert_eq!(response.code.as_deref(), Some("authentication_required"));
        assert!(response
            .message
            .as_deref()
            .is_some_and(|m| m.contains(result_code)));
    }
}

#[tokio::test]
async fn validation_errors_are_invalid() {
    let response = charge_with(error_body(
        422,
        "130",
        "Required field 'reference' is not provided.",
        "validation",
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::Invalid);
    assert_eq!(response.code.as_deref(), Some("validation_error"));
    assert_eq!(
        response.message.as_deref(),
        Some("Required field 'reference' is not provided. (errorCode 130, validation)")
    );
    let raw: Value = serde_json::from_str(&response.raw).expect("raw is JSON");
    assert_eq!(raw["http_status"], 422);
    assert_eq!(raw["body"]["errorCode"], "130");

    let response = charge_with(error_body(400, "702", "Unexpected input: }", "validation")).await;
    assert_eq!(response.class, OutcomeClass::Invalid);
    assert_eq!(response.code.as_deref(), Some("invalid_request"));
}

#[tokio::test]
async fn credential_and_routing_errors_are_invalid() {
    for (status, error_code, message, error_type, code) in [
        (
            401,
            "000",
            "HTTP Status Response - Unauthorized",
            "security",
            "authentication_failed",
        ),
        (403, "010", "Not allowed", "security", "permission_denied"),
        (
            404,
            "000",
            "HTTP Status Response - Not Found",
            "validation",
            "not_found",
        ),
    ] {
        let response = charge_with(error_body(status, error_code, message, error_type)).await;
        assert_eq!(response.class, OutcomeClass::Invalid, "HTTP {status}");
        assert_eq!(response.code.as_deref(), Some(code));
    }
}

#[tokio::test]
async fn the_api_key_is_masked_where_adyen_echoes_it() {
    let response = charge_with(error_body(
        403,
        "010",
        &format!("Not allowed for API key {API_KEY}"),
        "security",
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::Invalid);
    assert!(response.raw.contains("***"));
    assert!(!response.message.unwrap_or_default().contains(API_KEY));
}

#[tokio::test]
async fn rate_limits_are_transient_and_carry_retry_after() {
    let limited = error_body(429, "000", "Too many requests", "internal");
    let response = charge_with(limited.clone().insert_header("Retry-After", "2")).await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.code.as_deref(), Some("rate_limited"));
    assert_eq!(response.retry_after_ms, Some(2000));

    let response = charge_with(limited).await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.retry_after_ms, None);
}

#[tokio::test]
async fn server_errors_are_unknown_and_unavailability_is_transient() {
    let response = charge_with(error_body(500, "000", "Internal error", "internal")).await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("api_error"));

    let response = charge_with(
        error_body(503, "000", "Service unavailable", "internal").insert_header("Retry-After", "1"),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.code.as_deref(), Some("provider_unavailable"));
    assert_eq!(response.retry_after_ms, Some(1000));

    // A proxy's page instead of Adyen's body: the status still decides.
    let response = charge_with(
        ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html"),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("bad_gateway"));
}

#[tokio::test]
async fn a_request_with_the_same_key_in_flight_is_unknown() {
    // Adyen: 409 or 422 with errorCode 704, "request already processed or
    // in progress". The first request may charge: never fail over.
    for status in [409, 422] {
        let response = charge_with(error_body(
            status,
            "704",
            "request already processed or in progress",
            "validation",
        ))
        .await;
        assert_eq!(response.class, OutcomeClass::Unknown, "HTTP {status}");
        assert_eq!(response.code.as_deref(), Some("request_in_progress"));
    }
}

#[tokio::test]
async fn a_timeout_after_the_request_was_accepted_is_unknown() {
    let response = charge_with(
        ok(json!({ "pspReference": PSP, "resultCode": "Authorised" }))
            .set_delay(Duration::from_millis(TIMEOUT_MS * 5)),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("timeout"));
    assert_eq!(response.provider_payment_id, None);
}

#[tokio::test]
async fn a_refused_connection_is_transient_not_charged() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let provider = AdyenProvider::new("adyen", config(format!("http://127.0.0.1:{port}/v71")))
        .expect("adyen provider");
    let response = provider.charge(&charge_request()).await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.code.as_deref(), Some("connection_failed"));
    assert!(!response.raw.contains(API_KEY));
}

#[tokio::test]
async fn malformed_success_answers_are_unknown() {
    for answer in [
        ResponseTemplate::new(200).set_body_raw("<html>maintenance</html>", "text/html"),
        ResponseTemplate::new(200).set_body_raw("{\"resultCode\":", "application/json"),
        ok(json!({ "pspReference": PSP })),
        // Authorised, but nothing to identify the charge by.
        ok(json!({ "resultCode": "Authorised" })),
    ] {
        let response = charge_with(answer).await;
        assert_eq!(response.class, OutcomeClass::Unknown);
        assert_eq!(response.code.as_deref(), Some("malformed_response"));
    }
}

#[tokio::test]
async fn amounts_are_sent_in_adyen_minor_units() {
    // CLP has no decimals in ISO 4217 but two at Adyen.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v71/payments"))
        .respond_with(ok(
            json!({ "pspReference": PSP, "resultCode": "Authorised" }),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let charge = ChargeRequest {
        amount: Amount::new(15_000).expect("amount"),
        currency: Currency::parse("CLP").expect("currency"),
        ..charge_request()
    };
    let response = provider(&server).charge(&charge).await;
    assert_eq!(response.class, OutcomeClass::Succeeded);
    assert_payment_wire(
        &only_request(&server).await,
        &charge,
        json!({ "value": 1_500_000, "currency": "CLP" }),
    );

    // IDR has two decimals in ISO 4217 and none at Adyen: a fraction of a
    // rupiah cannot be sent, and nothing is.
    let server = MockServer::start().await;
    let charge = ChargeRequest {
        amount: Amount::new(150_050).expect("amount"),
        currency: Currency::parse("idr").expect("currency"),
        ..charge_request()
    };
    let response = provider(&server).charge(&charge).await;
    assert_eq!(response.class, OutcomeClass::Invalid);
    assert_eq!(response.code.as_deref(), Some("amount_not_representable"));
    assert!(server
        .received_requests()
        .await
        .expect("recording on")
        .is_empty());
}

#[tokio::test]
async fn idempotency_keys_longer_than_64_characters_are_derived() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v71/payments"))
        .respond_with(ok(
            json!({ "pspReference": PSP, "resultCode": "Authorised" }),
        ))
        .expect(2)
        .mount(&server)
        .await;
    let mut charge = charge_request();
    charge.idempotency_key = format!("{}-{}", charge.payment_id, "x".repeat(64));
    assert!(charge.idempotency_key.len() > 64);
    let provider = provider(&server);
    provider.charge(&charge).await;
    provider.charge(&charge).await;

    let expected: String = Sha256::digest(charge.idempotency_key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    assert_eq!(expected.len(), 64);
    assert_eq!(idempotency_key(&charge.idempotency_key), expected.as_str());
    let requests = server.received_requests().await.expect("recording on");
    assert_eq!(requests.len(), 2);
    for request in &requests {
        // The same derived key on every retry: Adyen deduplicates on it.
        assert_eq!(header(request, "idempotency-key"), Some(expected.as_str()));
    }
}

fn refund_request() -> RefundRequest {
    RefundRequest {
        provider_payment_id: PSP.into(),
        amount: Amount::new(500).expect("amount"),
        currency: Currency::parse("eur").expect("currency"),
        idempotency_key: "ref_0190a5b2c3d4e5f6".into(),
        reason: Some("requested_by_customer".into()),
    }
}

async fn refund_with(answer: ResponseTemplate) -> payments::providers::RefundResponse {
    let server = MockServer::start().await;
    let refund_path = format!("/v71/payments/{PSP}/refunds");
    Mock::given(method("POST"))
        .and(path(refund_path.as_str()))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let refund = refund_request();
    let response = provider(&server).refund(&refund).await;
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), refund_path);
    assert_eq!(header(&request, "x-api-key"), Some(API_KEY));
    assert_eq!(
        header(&request, "idempotency-key"),
        Some(refund.idempotency_key.as_str())
    );
    assert_eq!(header(&request, "content-type"), Some("application/json"));
    let body: Value = request.body_json().expect("JSON body");
    assert_eq!(
        body,
        json!({
            "merchantAccount": MERCHANT_ACCOUNT,
            "amount": { "value": 500, "currency": "EUR" },
            "reference": refund.idempotency_key,
        })
    );
    assert!(!response.raw.contains(API_KEY));
    response
}

#[tokio::test]
async fn a_refund_is_pending_until_adyen_confirms_it() {
    let response = refund_with(ResponseTemplate::new(201).set_body_json(json!({
        "merchantAccount": MERCHANT_ACCOUNT,
        "paymentPspReference": PSP,
        "pspReference": "JDD6LKT8MBLZNN84",
        "reference": "ref_0190a5b2c3d4e5f6",
        "status": "received",
        "amount": { "currency": "EUR", "value": 500 },
    })))
    .await;
    assert_eq!(response.status, RefundStatus::Pending);
    assert_eq!(
        response.provider_refund_id.as_deref(),
        Some("JDD6LKT8MBLZNN84")
    );
    assert_eq!(response.code.as_deref(), Some("received"));
}

#[tokio::test]
async fn refund_errors_are_failed_or_unknown() {
    let response = refund_with(error_body(
        422,
        "167",
        "Original pspReference required for this operation",
        "validation",
    ))
    .await;
    assert_eq!(response.status, RefundStatus::Failed);
    assert_eq!(response.provider_refund_id, None);

    let response = refund_with(error_body(500, "000", "Internal error", "internal")).await;
    assert_eq!(response.status, RefundStatus::Unknown);

    let response = refund_with(error_body(
        422,
        "704",
        "request already processed or in progress",
        "validation",
    ))
    .await;
    assert_eq!(response.status, RefundStatus::Unknown);

    let response = refund_with(ResponseTemplate::new(201).set_body_raw("oops", "text/plain")).await;
    assert_eq!(response.status, RefundStatus::Unknown);
}

#[tokio::test]
async fn lookup_and_settlements_are_unsupported() {
    let server = MockServer::start().await;
    let provider = provider(&server);
    assert!(matches!(
        provider.lookup("pay_x-1").await,
        Err(ProviderError::Unsupported(_))
    ));
    let now = Timestamp::from_datetime(chrono::Utc::now());
    assert!(matches!(
        provider.settlements(now, now, None).await,
        Err(ProviderError::Unsupported(_))
    ));
    assert!(server
        .received_requests()
        .await
        .expect("recording on")
        .is_empty());
}

#[tokio::test]
async fn lookup_by_psp_reference_is_unsupported_and_calls_nothing() {
    let server = MockServer::start().await;
    let result = provider(&server).lookup_reference(PSP).await;
    assert!(
        matches!(result, Err(ProviderError::Unsupported(_))),
        "{result:?}"
    );
    assert!(server
        .received_requests()
        .await
        .expect("recording on")
        .is_empty());
}

#[tokio::test]
async fn additional_data_is_recorded_with_the_api_key_masked() {
    let response = charge_with(ok(json!({
        "additionalData": {
            "cardSummary": "1111",
            "recurring.recurringDetailReference": STORED_CARD,
            "echo": format!("key {API_KEY}"),
        },
        "pspReference": PSP,
        "resultCode": "Authorised",
    })))
    .await;
    assert_eq!(response.class, OutcomeClass::Succeeded);
    let raw: Value = serde_json::from_str(&response.raw).expect("raw is JSON");
    assert_eq!(raw["body"]["additionalData"]["cardSummary"], "1111");
    assert_eq!(raw["body"]["additionalData"]["echo"], "key ***");
}
