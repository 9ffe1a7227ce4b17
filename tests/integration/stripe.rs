//! The Stripe adapter against a local fake Stripe (wiremock) answering as
//! Stripe documents: every outcome class of a charge, and for each the exact
//! request on the wire; then look-up, refunds and settlements.

use payments::domain::{Amount, Currency, MerchantId, OutcomeClass, PaymentId, Timestamp};
use payments::providers::stripe::wire::decode_form;
use payments::providers::stripe::{StripeConfig, StripeProvider};
use payments::providers::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundStatus, SettlementRecord,
};
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const API_KEY: &str = "sk_test_51HxFakeKeyForTheAdapterTests";
const TIMEOUT_MS: u64 = 2_000;

fn provider_at(base_url: &str, timeout_ms: u64) -> StripeProvider {
    StripeProvider::new(
        "stripe_test",
        StripeConfig {
            base_url: base_url.to_string(),
            api_key: API_KEY.to_string(),
            timeout_ms,
            webhook_secret: None,
            webhook_tolerance_secs: payments::providers::stripe::DEFAULT_WEBHOOK_TOLERANCE_SECS,
        },
    )
    .expect("valid configuration")
}

fn provider(server: &MockServer) -> StripeProvider {
    provider_at(&server.uri(), TIMEOUT_MS)
}

fn charge_request() -> ChargeRequest {
    let payment_id = PaymentId::new();
    ChargeRequest {
        idempotency_key: format!("{payment_id}-1"),
        payment_id,
        attempt_number: 1,
        merchant_id: MerchantId::new("merchant_1"),
        order_id: "order 42/A".to_string(),
        customer_id: "cus_7".to_string(),
        amount: Amount::new(2000).expect("valid amount"),
        currency: Currency::parse("USD").expect("known currency"),
        payment_method: "pm_card_visa".to_string(),
        description: Some("Order #42 & co".to_string()),
    }
}

/// The form fields a charge must send, in order.
fn expected_charge_form(request: &ChargeRequest) -> Vec<(String, String)> {
    [
        ("amount", "2000".to_string()),
        ("currency", "usd".to_string()),
        ("payment_method", "pm_card_visa".to_string()),
        ("confirm", "true".to_string()),
        ("automatic_payment_methods[enabled]", "true".to_string()),
        (
            "automatic_payment_methods[allow_redirects]",
            "never".to_string(),
        ),
        ("description", "Order #42 & co".to_string()),
        ("metadata[payment_id]", request.payment_id.to_string()),
        ("metadata[order_id]", "order 42/A".to_string()),
        ("metadata[customer_id]", "cus_7".to_string()),
        ("metadata[merchant_id]", "merchant_1".to_string()),
        ("metadata[idempotency_key]", request.idempotency_key.clone()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect()
}

fn header_of<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
}

fn body_of(request: &Request) -> String {
    String::from_utf8(request.body.clone()).expect("the adapter sends UTF-8")
}

/// Asserts `received` is exactly one POST of `path` with our key, `key` as
/// the idempotency key, and `form` as the body.
fn assert_post(received: &[Request], path: &str, key: &str, form: &[(String, String)]) {
    assert_eq!(received.len(), 1, "exactly one request reached the fake");
    let request = &received[0];
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), path);
    assert_eq!(request.url.query(), None);
    let bearer = format!("Bearer {API_KEY}");
    assert_eq!(header_of(request, "authorization"), Some(bearer.as_str()));
    assert_eq!(header_of(request, "idempotency-key"), Some(key));
    assert_eq!(
        header_of(request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let body = body_of(request);
    assert_eq!(decode_form(&body), form, "body: {body}");
}

/// Charges once against a fake that answers `answer` to exactly the
/// documented request, and checks the request on the wire.
async fn charge_answered(answer: ResponseTemplate) -> ProviderResponse {
    let server = MockServer::start().await;
    let request = charge_request();
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .and(header("idempotency-key", request.idempotency_key.as_str()))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let response = provider(&server).charge(&request).await;
    let received = server.received_requests().await.expect("recording is on");
    assert_post(
        &received,
        "/v1/payment_intents",
        &request.idempotency_key,
        &expected_charge_form(&request),
    );
    let body = body_of(&received[0]);
    assert!(
        body.contains("metadata[order_id]=order+42%2FA"),
        "nested keys keep literal brackets: {body}"
    );
    response
}

fn payment_intent(id: &str, status: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": 2000,
        "amount_received": if status == "succeeded" { 2000 } else { 0 },
        "capture_method": "automatic",
        "confirmation_method": "automatic",
        "currency": "usd",
        "last_payment_error": null,
        "latest_charge": if status == "succeeded" { json!("ch_3Mtw") } else { Value::Null },
        "livemode": false,
        "metadata": {},
        "next_action": null,
        "payment_method": "pm_1Mtw",
        "status": status,
    })
}

/// A `402` card error as Stripe sends it on a failed confirmation.
fn card_error(
    code: &str,
    decline_code: Option<&str>,
    advice_code: Option<&str>,
) -> ResponseTemplate {
    let mut intent = payment_intent("pi_declined", "requires_payment_method");
    intent["last_payment_error"] =
        json!({ "code": code, "decline_code": decline_code, "type": "card_error" });
    ResponseTemplate::new(402).set_body_json(json!({
        "error": {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "advice_code": advice_code,
            "message": "Your card was declined.",
            "doc_url": format!("https://stripe.com/docs/error-codes/{code}"),
            "request_log_url": "https://dashboard.stripe.com/test/logs/req_1",
            "payment_intent": intent,
        }
    }))
}

fn api_error(status: u16, kind: &str, code: Option<&str>, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": { "type": kind, "code": code, "message": message }
    }))
}

// ---- charge: success and declines ----

#[tokio::test]
async fn success_is_succeeded_with_the_payment_intent_id() {
    let body = payment_intent("pi_3MtwBwLkdIwHu7ix28a3tqPa", "succeeded");
    let response = charge_answered(ResponseTemplate::new(200).set_body_json(&body)).await;
    assert_eq!(response.class, OutcomeClass::Succeeded);
    assert_eq!(
        response.provider_payment_id.as_deref(),
        Some("pi_3MtwBwLkdIwHu7ix28a3tqPa")
    );
    assert_eq!(response.code, None);
    assert_eq!(response.retry_after_ms, None);
    let raw: Value = serde_json::from_str(&response.raw).expect("raw is the body");
    assert_eq!(raw, body);
}

#[tokio::test]
async fn insufficient_funds_is_a_soft_decline() {
    let response = charge_answered(card_error(
        "card_declined",
        Some("insufficient_funds"),
        None,
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::SoftDecline);
    assert_eq!(response.code.as_deref(), Some("insufficient_funds"));
    assert_eq!(response.message.as_deref(), Some("Your card was declined."));
    assert_eq!(response.provider_payment_id.as_deref(), Some("pi_declined"));
    assert!(response.raw.contains("insufficient_funds"));
}

#[tokio::test]
async fn generic_decline_is_a_hard_decline() {
    let response =
        charge_answered(card_error("card_declined", Some("generic_decline"), None)).await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
    assert_eq!(response.code.as_deref(), Some("generic_decline"));
}

#[tokio::test]
async fn card_declined_without_a_decline_code_is_a_hard_decline() {
    let response = charge_answered(card_error("card_declined", None, None)).await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
    assert_eq!(response.code.as_deref(), Some("card_declined"));
}

#[tokio::test]
async fn expired_card_is_a_hard_decline() {
    let response = charge_answered(card_error("expired_card", Some("expired_card"), None)).await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
    assert_eq!(response.code.as_deref(), Some("expired_card"));
}

#[tokio::test]
async fn an_unknown_decline_code_is_a_hard_decline() {
    let response = charge_answered(card_error(
        "card_declined",
        Some("brand_new_issuer_reason"),
        None,
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
    assert_eq!(response.code.as_deref(), Some("brand_new_issuer_reason"));
}

#[tokio::test]
async fn advice_try_again_later_makes_a_decline_soft() {
    let response = charge_answered(card_error(
        "card_declined",
        Some("do_not_honor"),
        Some("try_again_later"),
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::SoftDecline);
    assert_eq!(response.code.as_deref(), Some("do_not_honor"));
}

#[tokio::test]
async fn advice_do_not_try_again_makes_a_decline_hard() {
    let response = charge_answered(card_error(
        "card_declined",
        Some("insufficient_funds"),
        Some("do_not_try_again"),
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
}

#[tokio::test]
async fn processing_is_unknown() {
    let response = charge_answered(
        ResponseTemplate::new(200).set_body_json(payment_intent("pi_processing", "processing")),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(
        response.provider_payment_id.as_deref(),
        Some("pi_processing")
    );
    assert_eq!(response.code.as_deref(), Some("processing"));
}

#[tokio::test]
async fn requires_action_is_a_hard_decline() {
    let mut body = payment_intent("pi_3ds", "requires_action");
    body["next_action"] = json!({ "type": "use_stripe_sdk", "use_stripe_sdk": {} });
    let response = charge_answered(ResponseTemplate::new(200).set_body_json(body)).await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
    assert_eq!(response.code.as_deref(), Some("authentication_required"));
    assert_eq!(response.provider_payment_id.as_deref(), Some("pi_3ds"));
}

#[tokio::test]
async fn requires_payment_method_is_a_hard_decline_with_the_last_error_code() {
    let mut body = payment_intent("pi_rpm", "requires_payment_method");
    body["last_payment_error"] = json!({
        "type": "card_error", "code": "card_declined", "decline_code": "lost_card",
        "message": "Your card was declined."
    });
    let response = charge_answered(ResponseTemplate::new(200).set_body_json(body)).await;
    assert_eq!(response.class, OutcomeClass::HardDecline);
    assert_eq!(response.code.as_deref(), Some("lost_card"));
}

/// A PaymentIntent as Stripe really answers it: with the `client_secret` a
/// browser would use to confirm it, also inside a 3DS return URL.
fn payment_intent_with_secret(id: &str, status: &str) -> (Value, String) {
    let secret = format!("{id}_secret_Kx8bQz0YvTn4rWc2");
    let mut body = payment_intent(id, status);
    body["client_secret"] = json!(secret);
    body["next_action"] = json!({ "type": "redirect_to_url", "redirect_to_url": {
        "url": format!("https://hooks.stripe.com/3ds?payment_intent_client_secret={secret}"),
        "return_url": "https://shop.example/done",
    }});
    (body, secret)
}

#[tokio::test]
async fn the_client_secret_never_reaches_raw() {
    let (body, secret) = payment_intent_with_secret("pi_3MtwSecret", "succeeded");
    let response = charge_answered(ResponseTemplate::new(200).set_body_json(&body)).await;
    assert_eq!(response.class, OutcomeClass::Succeeded);
    assert_eq!(
        response.provider_payment_id.as_deref(),
        Some("pi_3MtwSecret")
    );
    assert!(!response.raw.contains(&secret), "{}", response.raw);
    let raw: Value = serde_json::from_str(&response.raw).expect("raw is still JSON");
    assert_eq!(raw["client_secret"], "[REDACTED]");
    assert_eq!(raw["id"], "pi_3MtwSecret");
    assert_eq!(raw["amount"], 2000);
}

#[tokio::test]
async fn the_client_secret_of_a_declined_intent_never_reaches_raw() {
    let (intent, secret) = payment_intent_with_secret("pi_declined", "requires_payment_method");
    let response = charge_answered(ResponseTemplate::new(402).set_body_json(json!({
        "error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": intent,
        }
    })))
    .await;
    assert_eq!(response.class, OutcomeClass::SoftDecline);
    assert_eq!(response.provider_payment_id.as_deref(), Some("pi_declined"));
    assert!(!response.raw.contains(&secret), "{}", response.raw);
    assert!(response.raw.contains("insufficient_funds"));
}

// ---- charge: HTTP errors ----

fn rate_limited() -> ResponseTemplate {
    api_error(
        429,
        "invalid_request_error",
        Some("rate_limit"),
        "Too many requests hit the API too quickly.",
    )
}

#[tokio::test]
async fn rate_limited_with_retry_after_is_transient_with_a_delay() {
    let response = charge_answered(rate_limited().insert_header("Retry-After", "2")).await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.retry_after_ms, Some(2_000));
    assert_eq!(response.code.as_deref(), Some("rate_limit"));
}

#[tokio::test]
async fn rate_limited_without_retry_after_is_transient_without_a_delay() {
    let response = charge_answered(rate_limited()).await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.retry_after_ms, None);
}

#[tokio::test]
async fn server_errors_are_unknown() {
    for status in [500, 502, 504] {
        let response = charge_answered(api_error(
            status,
            "api_error",
            None,
            "An unknown error occurred",
        ))
        .await;
        assert_eq!(response.class, OutcomeClass::Unknown, "HTTP {status}");
        assert_eq!(response.code.as_deref(), Some("api_error"), "HTTP {status}");
    }
}

#[tokio::test]
async fn an_empty_502_is_unknown_and_names_its_status() {
    let response = charge_answered(ResponseTemplate::new(502)).await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("http_502"));
    assert!(response.raw.contains("502"), "{}", response.raw);
}

fn unavailable() -> ResponseTemplate {
    api_error(503, "api_error", None, "Stripe is temporarily unavailable.")
}

#[tokio::test]
async fn unavailable_with_should_retry_true_is_transient() {
    let response = charge_answered(
        unavailable()
            .insert_header("Stripe-Should-Retry", "true")
            .insert_header("Retry-After", "1"),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.retry_after_ms, Some(1_000));
}

#[tokio::test]
async fn unavailable_with_should_retry_false_is_unknown() {
    let response =
        charge_answered(unavailable().insert_header("Stripe-Should-Retry", "false")).await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.retry_after_ms, None);
}

#[tokio::test]
async fn unavailable_without_should_retry_is_unknown() {
    let response = charge_answered(unavailable()).await;
    assert_eq!(response.class, OutcomeClass::Unknown);
}

#[tokio::test]
async fn a_500_with_should_retry_false_is_unknown() {
    let response = charge_answered(
        api_error(500, "api_error", None, "internal").insert_header("Stripe-Should-Retry", "false"),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::Unknown);
}

#[tokio::test]
async fn invalid_request_is_invalid() {
    let response = charge_answered(ResponseTemplate::new(400).set_body_json(json!({
        "error": {
            "type": "invalid_request_error",
            "code": "parameter_missing",
            "param": "amount",
            "message": "Missing required param: amount.",
        }
    })))
    .await;
    assert_eq!(response.class, OutcomeClass::Invalid);
    assert_eq!(response.code.as_deref(), Some("parameter_missing"));
    assert_eq!(
        response.message.as_deref(),
        Some("Missing required param: amount.")
    );
}

#[tokio::test]
async fn bad_credentials_are_invalid_and_the_key_is_masked() {
    let response = charge_answered(api_error(
        401,
        "invalid_request_error",
        None,
        &format!("Invalid API Key provided: {API_KEY}"),
    ))
    .await;
    assert_eq!(response.class, OutcomeClass::Invalid);
    assert_eq!(response.code.as_deref(), Some("invalid_request_error"));
    assert!(!response.raw.contains(API_KEY), "{}", response.raw);
    assert!(response.raw.contains("[REDACTED]"), "{}", response.raw);
    let message = response.message.unwrap_or_default();
    assert!(!message.contains(API_KEY), "{message}");
}

#[tokio::test]
async fn idempotency_conflict_is_unknown() {
    let response = charge_answered(
        api_error(
            409,
            "idempotency_error",
            Some("idempotency_key_in_use"),
            "There is currently another in-progress request using this Idempotent Key (that probably means you submitted twice, and the other request is still going through): pay_1-1. Please try again later.",
        )
        .insert_header("Stripe-Should-Retry", "true"),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("idempotency_key_in_use"));
}

// ---- charge: transport ----

#[tokio::test]
async fn timeout_after_the_request_was_sent_is_unknown() {
    let server = MockServer::start().await;
    let request = charge_request();
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(payment_intent("pi_late", "succeeded"))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let response = provider_at(&server.uri(), 300).charge(&request).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the client timeout applies"
    );
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("timeout"));
    assert_eq!(response.provider_payment_id, None);
    let received = server.received_requests().await.expect("recording is on");
    assert_post(
        &received,
        "/v1/payment_intents",
        &request.idempotency_key,
        &expected_charge_form(&request),
    );
}

#[tokio::test]
async fn connection_refused_is_transient_not_charged() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("bound address")
    };
    let response = provider_at(&format!("http://{closed}"), TIMEOUT_MS)
        .charge(&charge_request())
        .await;
    assert_eq!(response.class, OutcomeClass::TransientNotCharged);
    assert_eq!(response.code.as_deref(), Some("connection_failed"));
    assert!(!response.raw.contains(API_KEY));
}

#[tokio::test]
async fn a_malformed_200_is_unknown() {
    let response = charge_answered(
        ResponseTemplate::new(200).set_body_raw("<html>gateway says hi</html>", "text/html"),
    )
    .await;
    assert_eq!(response.class, OutcomeClass::Unknown);
    assert_eq!(response.code.as_deref(), Some("malformed_response"));
    assert_eq!(response.raw, "<html>gateway says hi</html>");
}

// ---- look-up ----

fn search_result(data: Vec<Value>) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "object": "search_result",
        "url": "/v1/payment_intents/search",
        "has_more": false,
        "next_page": null,
        "data": data,
    }))
}

async fn lookup_answered(
    key: &str,
    answer: ResponseTemplate,
) -> Result<LookupResult, ProviderError> {
    let server = MockServer::start().await;
    let query = format!("metadata['idempotency_key']:'{key}'");
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/search"))
        .and(query_param("query", query.as_str()))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let result = provider(&server).lookup(key).await;
    let received = server.received_requests().await.expect("recording is on");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method.as_str(), "GET");
    assert_eq!(header_of(&received[0], "idempotency-key"), None);
    result
}

#[tokio::test]
async fn lookup_finds_a_succeeded_charge() {
    let result = lookup_answered(
        "pay_1-1",
        search_result(vec![payment_intent("pi_found", "succeeded")]),
    )
    .await;
    match result {
        Ok(LookupResult::Charged {
            provider_payment_id,
            amount,
            currency,
        }) => {
            assert_eq!(provider_payment_id, "pi_found");
            assert_eq!(amount, 2000);
            assert_eq!(currency, "usd");
        }
        other => panic!("expected a charge, got {other:?}"),
    }
}

#[tokio::test]
async fn lookup_finds_nothing() {
    let result = lookup_answered("pay_1-1", search_result(vec![])).await;
    assert!(matches!(result, Ok(LookupResult::NotFound)), "{result:?}");
}

#[tokio::test]
async fn lookup_of_a_failed_charge_is_not_found() {
    let result = lookup_answered(
        "pay_1-1",
        search_result(vec![payment_intent("pi_failed", "requires_payment_method")]),
    )
    .await;
    assert!(matches!(result, Ok(LookupResult::NotFound)), "{result:?}");
}

#[tokio::test]
async fn lookup_of_a_processing_charge_is_not_final() {
    let result = lookup_answered(
        "pay_1-1",
        search_result(vec![payment_intent("pi_busy", "processing")]),
    )
    .await;
    assert!(
        matches!(result, Err(ProviderError::Unreachable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn lookup_on_a_server_error_is_unreachable() {
    let result = lookup_answered("pay_1-1", api_error(500, "api_error", None, "oops")).await;
    assert!(
        matches!(result, Err(ProviderError::Unreachable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn lookup_with_bad_credentials_is_refused() {
    let result = lookup_answered(
        "pay_1-1",
        api_error(401, "invalid_request_error", None, "no"),
    )
    .await;
    assert!(
        matches!(result, Err(ProviderError::Refused(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn lookup_when_stripe_is_down_is_unreachable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("bound address")
    };
    let result = provider_at(&format!("http://{closed}"), TIMEOUT_MS)
        .lookup("pay_1-1")
        .await;
    assert!(
        matches!(result, Err(ProviderError::Unreachable(_))),
        "{result:?}"
    );
}

// ---- look-up by PaymentIntent id ----

async fn lookup_reference_answered(
    id: &str,
    answer: ResponseTemplate,
) -> Result<LookupResult, ProviderError> {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("/v1/payment_intents/{id}")))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let result = provider(&server).lookup_reference(id).await;
    let received = server.received_requests().await.expect("recording is on");
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method.as_str(), "GET");
    assert_eq!(received[0].url.query(), None);
    assert_eq!(header_of(&received[0], "idempotency-key"), None);
    result
}

#[tokio::test]
async fn lookup_reference_finds_a_succeeded_charge() {
    let (body, _) = payment_intent_with_secret("pi_found", "succeeded");
    let result =
        lookup_reference_answered("pi_found", ResponseTemplate::new(200).set_body_json(body)).await;
    assert_eq!(
        result.expect("a charge"),
        LookupResult::Charged {
            provider_payment_id: "pi_found".into(),
            amount: 2000,
            currency: "usd".into(),
        }
    );
}

#[tokio::test]
async fn lookup_reference_of_a_processing_charge_is_not_final() {
    let result = lookup_reference_answered(
        "pi_busy",
        ResponseTemplate::new(200).set_body_json(payment_intent("pi_busy", "processing")),
    )
    .await;
    assert!(
        matches!(result, Err(ProviderError::Unreachable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn lookup_reference_of_a_failed_charge_is_not_found() {
    let result = lookup_reference_answered(
        "pi_failed",
        ResponseTemplate::new(200)
            .set_body_json(payment_intent("pi_failed", "requires_payment_method")),
    )
    .await;
    assert!(matches!(result, Ok(LookupResult::NotFound)), "{result:?}");
}

#[tokio::test]
async fn lookup_reference_of_a_missing_intent_is_not_found() {
    let result = lookup_reference_answered(
        "pi_missing",
        ResponseTemplate::new(404).set_body_json(json!({
            "error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "intent",
                "message": "No such payment_intent: 'pi_missing'",
            }
        })),
    )
    .await;
    assert!(matches!(result, Ok(LookupResult::NotFound)), "{result:?}");
}

#[tokio::test]
async fn lookup_reference_of_a_404_that_is_not_stripes_is_refused() {
    // A wrong base URL answers 404 too; that must not pass for "nothing
    // was charged".
    let result = lookup_reference_answered(
        "pi_elsewhere",
        ResponseTemplate::new(404).set_body_raw("<html>Not Found</html>", "text/html"),
    )
    .await;
    assert!(
        matches!(result, Err(ProviderError::Refused(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn lookup_reference_on_a_server_error_is_unreachable() {
    let result = lookup_reference_answered("pi_1", api_error(500, "api_error", None, "oops")).await;
    assert!(
        matches!(result, Err(ProviderError::Unreachable(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn lookup_reference_escapes_the_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(payment_intent("x", "succeeded")))
        .mount(&server)
        .await;
    let _ = provider(&server)
        .lookup_reference("pi_1/../refunds?x=1")
        .await;
    let received = server.received_requests().await.expect("recording is on");
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].url.path(),
        "/v1/payment_intents/pi_1%2F..%2Frefunds%3Fx%3D1"
    );
    assert_eq!(received[0].url.query(), None);
}

// ---- refunds ----

fn refund_request(reason: Option<&str>) -> RefundRequest {
    RefundRequest {
        provider_payment_id: "pi_3MtwBwLkdIwHu7ix28a3tqPa".to_string(),
        amount: Amount::new(500).expect("valid amount"),
        currency: Currency::parse("usd").expect("known currency"),
        idempotency_key: "ref_0193abc".to_string(),
        reason: reason.map(str::to_string),
    }
}

fn refund_body(status: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "re_1Nispe2eZvKYlo2Cd31jOCgZ",
        "object": "refund",
        "amount": 500,
        "charge": "ch_1NirD82eZvKYlo2CIvbtLWuY",
        "currency": "usd",
        "payment_intent": "pi_3MtwBwLkdIwHu7ix28a3tqPa",
        "reason": "requested_by_customer",
        "status": status,
    }))
}

async fn refund_answered(
    request: &RefundRequest,
    expected_form: &[(&str, &str)],
    answer: ResponseTemplate,
) -> payments::providers::RefundResponse {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .and(header("idempotency-key", request.idempotency_key.as_str()))
        .respond_with(answer)
        .expect(1)
        .mount(&server)
        .await;
    let response = provider(&server).refund(request).await;
    let received = server.received_requests().await.expect("recording is on");
    let form: Vec<(String, String)> = expected_form
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    assert_post(&received, "/v1/refunds", &request.idempotency_key, &form);
    response
}

#[tokio::test]
async fn refund_succeeded() {
    let request = refund_request(Some("requested_by_customer"));
    let response = refund_answered(
        &request,
        &[
            ("payment_intent", "pi_3MtwBwLkdIwHu7ix28a3tqPa"),
            ("amount", "500"),
            ("reason", "requested_by_customer"),
        ],
        refund_body("succeeded"),
    )
    .await;
    assert_eq!(response.status, RefundStatus::Succeeded);
    assert_eq!(
        response.provider_refund_id.as_deref(),
        Some("re_1Nispe2eZvKYlo2Cd31jOCgZ")
    );
}

#[tokio::test]
async fn refund_pending_and_a_reason_stripe_does_not_know_is_not_sent() {
    let request = refund_request(Some("customer changed their mind"));
    let response = refund_answered(
        &request,
        &[
            ("payment_intent", "pi_3MtwBwLkdIwHu7ix28a3tqPa"),
            ("amount", "500"),
        ],
        refund_body("pending"),
    )
    .await;
    assert_eq!(response.status, RefundStatus::Pending);
}

#[tokio::test]
async fn refund_refused_is_failed_with_the_code() {
    let request = refund_request(None);
    let response = refund_answered(
        &request,
        &[
            ("payment_intent", "pi_3MtwBwLkdIwHu7ix28a3tqPa"),
            ("amount", "500"),
        ],
        api_error(
            400,
            "invalid_request_error",
            Some("charge_already_refunded"),
            "Charge ch_1 has already been refunded.",
        ),
    )
    .await;
    assert_eq!(response.status, RefundStatus::Failed);
    assert_eq!(response.code.as_deref(), Some("charge_already_refunded"));
    assert_eq!(response.provider_refund_id, None);
}

#[tokio::test]
async fn refund_on_a_server_error_is_unknown() {
    let request = refund_request(None);
    let response = refund_answered(
        &request,
        &[
            ("payment_intent", "pi_3MtwBwLkdIwHu7ix28a3tqPa"),
            ("amount", "500"),
        ],
        api_error(500, "api_error", None, "oops"),
    )
    .await;
    assert_eq!(response.status, RefundStatus::Unknown);
}

// ---- settlements ----

fn balance_transaction(
    id: &str,
    kind: &str,
    amount: i64,
    fee: i64,
    created: i64,
    source: Value,
) -> Value {
    json!({
        "id": id,
        "object": "balance_transaction",
        "amount": amount,
        "available_on": created + 86_400 * 2,
        "created": created,
        "currency": "usd",
        "description": null,
        "fee": fee,
        "fee_details": [],
        "net": amount - fee,
        "reporting_category": kind,
        "source": source,
        "status": "available",
        "type": kind,
    })
}

#[tokio::test]
async fn settlements_come_a_page_at_a_time() {
    let server = MockServer::start().await;
    let from_secs = 1_700_000_000_i64;
    let to_secs = from_secs + 86_400;
    let from = Timestamp::from_micros(from_secs * 1_000_000).expect("valid time");
    let to = Timestamp::from_micros(to_secs * 1_000_000).expect("valid time");
    let window = || {
        Mock::given(method("GET"))
            .and(path("/v1/balance_transactions"))
            .and(header(
                "authorization",
                format!("Bearer {API_KEY}").as_str(),
            ))
            .and(query_param("created[gte]", from_secs.to_string().as_str()))
            .and(query_param("created[lt]", to_secs.to_string().as_str()))
            .and(query_param("limit", "100"))
            .and(query_param("expand[]", "data.source"))
    };
    window()
        .and(query_param_is_missing("starting_after"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "url": "/v1/balance_transactions",
            "has_more": true,
            "data": [
                balance_transaction("txn_3", "refund", -500, 0, from_secs + 300,
                    json!({"id": "re_1", "object": "refund", "charge": "ch_1", "payment_intent": "pi_1", "amount": 500})),
                balance_transaction("txn_2", "payout", -10_000, 0, from_secs + 200,
                    json!({"id": "po_1", "object": "payout"})),
            ],
        })))
        .expect(1)
        .mount(&server)
        .await;
    window()
        .and(query_param("starting_after", "txn_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "object": "list",
            "url": "/v1/balance_transactions",
            "has_more": false,
            "data": [
                balance_transaction("txn_1", "charge", 2000, 88, from_secs + 100,
                    json!({"id": "ch_1", "object": "charge", "payment_intent": "pi_1", "amount": 2000,
                        "amount_refunded": 500,
                        "metadata": {"idempotency_key": "pay_1-1", "merchant_id": "acme", "order_id": "order_1"}})),
            ],
        })))
        .expect(1)
        .mount(&server)
        .await;

    let provider = provider(&server);
    let first = provider
        .settlements(from, to, None)
        .await
        .expect("first page");
    assert_eq!(
        first.next.as_deref(),
        Some("txn_2"),
        "the cursor is the page's last transaction, payout included"
    );
    let second = provider
        .settlements(from, to, first.next.clone())
        .await
        .expect("second page");
    assert_eq!(second.next, None, "the last page");

    let at = |secs: i64| Timestamp::from_micros(secs * 1_000_000).expect("valid time");
    assert_eq!(
        first.records,
        vec![SettlementRecord {
            provider_payment_id: "pi_1".into(),
            kind: "refund".into(),
            amount: -500,
            currency: "usd".into(),
            fee: 0,
            status: "available".into(),
            created_at: at(from_secs + 300),
            idempotency_key: None,
            merchant_id: None,
            order_id: None,
            amount_refunded: 0,
        }],
        "the payout is left out"
    );
    assert_eq!(
        second.records,
        vec![SettlementRecord {
            provider_payment_id: "pi_1".into(),
            kind: "charge".into(),
            amount: 2000,
            currency: "usd".into(),
            fee: 88,
            status: "available".into(),
            created_at: at(from_secs + 100),
            idempotency_key: Some("pay_1-1".into()),
            merchant_id: Some("acme".into()),
            order_id: Some("order_1".into()),
            amount_refunded: 500,
        }],
        "a charge line carries what the PaymentIntent's metadata and the charge say"
    );
    let received = server.received_requests().await.expect("recording is on");
    assert_eq!(received.len(), 2);
    for request in &received {
        assert_eq!(request.method.as_str(), "GET");
        assert_eq!(header_of(request, "idempotency-key"), None);
    }
}

#[tokio::test]
async fn settlements_on_a_server_error_are_unreachable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/balance_transactions"))
        .respond_with(api_error(500, "api_error", None, "oops"))
        .mount(&server)
        .await;
    let from = Timestamp::from_micros(0).expect("valid time");
    let to = Timestamp::from_micros(1_000_000).expect("valid time");
    let result = provider(&server).settlements(from, to, None).await;
    assert!(
        matches!(result, Err(ProviderError::Unreachable(_))),
        "{result:?}"
    );
}
