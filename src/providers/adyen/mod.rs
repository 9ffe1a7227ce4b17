//! The Adyen adapter (DESIGN §7): Checkout API v71 over HTTPS with reqwest.
//!
//! - [`wire`]: the JSON Adyen sends and receives.
//! - [`codes`]: what each answer means, as tables (`resultCode`,
//!   `refusalReasonCode`, HTTP status).
//! - this module: the client, and the one place ([`AdyenProvider::classify_charge`],
//!   [`AdyenProvider::classify_refund`]) where an answer becomes an outcome.
//!
//! Adyen answers a decline with HTTP 200 and a `resultCode`; only requests it
//! could not process get an HTTP error status. Charges are stored-card,
//! merchant-initiated (`ContAuth`, `CardOnFile`): the engine has no shopper
//! to redirect, so any answer asking for one is a hard decline. Adyen has no
//! look-up by idempotency key and no settlement API (outcomes arrive by
//! webhook, settlements as report files): [`Provider::lookup`] and
//! [`Provider::settlements`] answer [`ProviderError::Unsupported`].

pub mod codes;
pub mod wire;

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementRecord,
};
use crate::domain::{OutcomeClass, Timestamp};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Url;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use wire::WireAmount;

/// Adyen's longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 64;
/// The most of an answer's body the adapter reads; a longer one is treated
/// as unreadable.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most of a body kept in `raw` when it is not JSON.
const MAX_RAW_TEXT_CHARS: usize = 4096;
/// What replaces the API key wherever it would be recorded.
const MASK: &str = "***";

/// How to reach one Adyen merchant account.
#[derive(Clone, Deserialize)]
pub struct AdyenConfig {
    /// E.g. `https://checkout-test.adyen.com/v71`, or
    /// `https://{prefix}-checkout-live.adyenpayments.com/checkout/v71`.
    pub base_url: String,
    /// Sent as `X-API-Key`; never logged or recorded.
    pub api_key: String,
    pub merchant_account: String,
    /// For the whole call: connecting, sending, and reading the answer.
    pub timeout_ms: u64,
}

impl fmt::Debug for AdyenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdyenConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &MASK)
            .field("merchant_account", &self.merchant_account)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// The `Idempotency-Key` Adyen gets for the engine's `key`: the key itself
/// when Adyen accepts it (at most 64 visible ASCII characters), else the
/// lowercase hex SHA-256 of it (64 characters). Deterministic, so a retry
/// of an attempt sends the same key.
pub fn idempotency_key(key: &str) -> Cow<'_, str> {
    let usable = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_CHARS
        && key.bytes().all(|b| b.is_ascii_graphic());
    if usable {
        return Cow::Borrowed(key);
    }
    let digest = Sha256::digest(key.as_bytes());
    Cow::Owned(digest.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// One Adyen merchant account.
pub struct AdyenProvider {
    name: String,
    config: AdyenConfig,
    base: Url,
    client: reqwest::Client,
}

/// What came back from one call, before it is classified.
enum Answer {
    /// An HTTP answer; `body` is `Err` when it could not be read whole.
    Http {
        status: u16,
        retry_after_ms: Option<u64>,
        body: Result<Vec<u8>, String>,
    },
    /// No HTTP answer.
    Transport(reqwest::Error),
}

impl AdyenProvider {
    /// Checks `config` and builds the HTTP client. Errors are
    /// [`ProviderError::Refused`]: the configuration is refused before any
    /// call is made.
    pub fn new(name: impl Into<String>, config: AdyenConfig) -> Result<Self, ProviderError> {
        let refuse = |why: String| ProviderError::Refused(format!("Adyen configuration: {why}"));
        let base = Url::parse(&config.base_url)
            .map_err(|error| refuse(format!("base_url is not a URL: {error}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(refuse("base_url must be an http(s) URL".into()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(refuse("base_url must not have a query or fragment".into()));
        }
        if config.api_key.trim().is_empty() || HeaderValue::from_str(&config.api_key).is_err() {
            return Err(refuse("api_key must be a non-empty header value".into()));
        }
        if config.merchant_account.trim().is_empty() {
            return Err(refuse("merchant_account must not be empty".into()));
        }
        if config.timeout_ms == 0 {
            return Err(refuse("timeout_ms must be positive".into()));
        }
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // A payment API never redirects; following one would resend a
            // charge somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| refuse(format!("HTTP client: {error}")))?;
        Ok(AdyenProvider {
            name: name.into(),
            config,
            base,
            client,
        })
    }

    /// `{base_url}/{segments...}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `text` with the API key masked.
    fn mask(&self, text: &str) -> String {
        if self.config.api_key.is_empty() {
            return text.to_string();
        }
        text.replace(&self.config.api_key, MASK)
    }

    async fn post(&self, url: Url, engine_key: &str, body: Vec<u8>) -> Answer {
        let sent = self
            .client
            .post(url)
            .header("X-API-Key", &self.config.api_key)
            .header("Idempotency-Key", idempotency_key(engine_key).as_ref())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Err(error) => Answer::Transport(error),
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after_ms = retry_after_ms(response.headers());
                let body = read_body(response).await;
                Answer::Http {
                    status,
                    retry_after_ms,
                    body,
                }
            }
        }
    }

    /// The raw record of an HTTP answer: its status and body (JSON kept as
    /// JSON), API key masked.
    fn raw(&self, status: u16, body: &Result<Vec<u8>, String>) -> String {
        let body = match body {
            Ok(bytes) => {
                let text = self.mask(&String::from_utf8_lossy(bytes));
                serde_json::from_str::<serde_json::Value>(&text).unwrap_or_else(|_| {
                    serde_json::Value::String(text.chars().take(MAX_RAW_TEXT_CHARS).collect())
                })
            }
            Err(error) => serde_json::json!({ "unreadable": self.mask(error) }),
        };
        serde_json::json!({ "http_status": status, "body": body }).to_string()
    }

    /// An answer made up by the adapter (nothing usable came back, or
    /// nothing was sent), API key masked.
    fn synthetic(&self, class: OutcomeClass, code: &str, message: &str) -> ProviderResponse {
        ProviderResponse::synthetic(class, code, &self.mask(message))
    }

    /// The outcome of a transport failure: refused before sending
    /// (connecting failed) is safe to retry anywhere; anything after the
    /// request may have left is unknown.
    fn classify_transport(&self, error: &reqwest::Error) -> ProviderResponse {
        let detail = error_chain(error);
        if error.is_builder() {
            self.synthetic(
                OutcomeClass::Invalid,
                "invalid_request",
                &format!("the request to Adyen could not be built: {detail}"),
            )
        } else if error.is_connect() {
            self.synthetic(
                OutcomeClass::TransientNotCharged,
                "connection_failed",
                &format!("could not connect to Adyen: {detail}"),
            )
        } else if error.is_timeout() {
            self.synthetic(
                OutcomeClass::Unknown,
                "timeout",
                &format!("Adyen did not answer in time: {detail}"),
            )
        } else {
            self.synthetic(
                OutcomeClass::Unknown,
                "connection_error",
                &format!("the call to Adyen failed after it was sent: {detail}"),
            )
        }
    }

    /// Every charge answer becomes an outcome here, and only here.
    fn classify_charge(&self, answer: Answer) -> ProviderResponse {
        let (status, retry_after_ms, body) = match answer {
            Answer::Transport(error) => return self.classify_transport(&error),
            Answer::Http {
                status,
                retry_after_ms,
                body,
            } => (status, retry_after_ms, body),
        };
        let raw = self.raw(status, &body);
        let unknown = |code: &str, message: String| ProviderResponse {
            class: OutcomeClass::Unknown,
            provider_payment_id: None,
            code: Some(code.to_string()),
            message: Some(self.mask(&message)),
            raw: raw.clone(),
            retry_after_ms: None,
        };
        if !(200..300).contains(&status) {
            let error = body
                .as_ref()
                .ok()
                .and_then(|bytes| serde_json::from_slice::<wire::ErrorResponse>(bytes).ok())
                .unwrap_or_default();
            let error_code = error.error_code.as_deref();
            let text = error.text().unwrap_or("no error message");
            let message = match (error_code, error.error_type.as_deref()) {
                (Some(code), Some(kind)) => format!("{text} (errorCode {code}, {kind})"),
                (Some(code), None) => format!("{text} (errorCode {code})"),
                _ => format!("{text} (HTTP {status})"),
            };
            return ProviderResponse {
                class: codes::http_error_class(status, error_code),
                provider_payment_id: None,
                code: Some(codes::http_error_code(status, error_code)),
                message: Some(self.mask(&message)),
                raw,
                retry_after_ms,
            };
        }
        let bytes = match &body {
            Ok(bytes) => bytes,
            Err(error) => {
                return unknown(
                    "response_unreadable",
                    format!("Adyen's answer could not be read: {error}"),
                )
            }
        };
        let payment: wire::PaymentResponse = match serde_json::from_slice(bytes) {
            Ok(payment) => payment,
            Err(error) => {
                return unknown(
                    "malformed_response",
                    format!("Adyen's answer is not a payment response: {error}"),
                )
            }
        };
        let psp_reference = payment.psp_reference.filter(|psp| !psp.trim().is_empty());
        let class =
            codes::result_class(&payment.result_code, payment.refusal_reason_code.as_deref());
        if class == OutcomeClass::Succeeded {
            return match psp_reference {
                Some(psp) => ProviderResponse {
                    class,
                    provider_payment_id: Some(psp),
                    code: None,
                    message: None,
                    raw,
                    retry_after_ms: None,
                },
                None => unknown(
                    "malformed_response",
                    "Adyen authorised the payment without a pspReference".to_string(),
                ),
            };
        }
        let code = codes::result_code_name(
            &payment.result_code,
            payment.refusal_reason.as_deref(),
            payment.refusal_reason_code.as_deref(),
        );
        let message = if code == codes::AUTHENTICATION_REQUIRED {
            format!(
                "Adyen asked for the shopper ({}); stored-card charges have no shopper to ask",
                payment.result_code
            )
        } else {
            payment
                .refusal_reason
                .clone()
                .unwrap_or_else(|| format!("resultCode {}", payment.result_code))
        };
        ProviderResponse {
            class,
            provider_payment_id: psp_reference,
            code: Some(code),
            message: Some(self.mask(&message)),
            raw,
            retry_after_ms: None,
        }
    }

    /// Every refund answer becomes a refund status here, and only here.
    ///
    /// Adyen accepts a refund with 201 `received` and confirms it by webhook:
    /// `Pending`. An error status Adyen classifies as our request's fault
    /// (the charge's `invalid` statuses: 4xx) is `Failed`, nothing moved;
    /// anything else (5xx, 429, an idempotency key still in flight, no
    /// answer) is `Unknown`: retry with the same key.
    fn classify_refund(&self, answer: Answer) -> RefundResponse {
        let (status, body) = match answer {
            Answer::Transport(error) => {
                let outcome = self.classify_transport(&error);
                let status = if outcome.class == OutcomeClass::Invalid {
                    RefundStatus::Failed
                } else {
                    RefundStatus::Unknown
                };
                return RefundResponse {
                    status,
                    provider_refund_id: None,
                    code: outcome.code,
                    message: outcome.message,
                    raw: outcome.raw,
                };
            }
            Answer::Http { status, body, .. } => (status, body),
        };
        let raw = self.raw(status, &body);
        if !(200..300).contains(&status) {
            let error = body
                .as_ref()
                .ok()
                .and_then(|bytes| serde_json::from_slice::<wire::ErrorResponse>(bytes).ok())
                .unwrap_or_default();
            let error_code = error.error_code.as_deref();
            let refund_status = match codes::http_error_class(status, error_code) {
                OutcomeClass::Invalid => RefundStatus::Failed,
                _ => RefundStatus::Unknown,
            };
            let text = error.text().unwrap_or("no error message");
            return RefundResponse {
                status: refund_status,
                provider_refund_id: None,
                code: Some(codes::http_error_code(status, error_code)),
                message: Some(self.mask(&match error_code {
                    Some(code) => format!("{text} (errorCode {code})"),
                    None => format!("{text} (HTTP {status})"),
                })),
                raw,
            };
        }
        let accepted = body
            .as_ref()
            .ok()
            .and_then(|bytes| serde_json::from_slice::<wire::RefundResponse>(bytes).ok())
            .filter(|refund| !refund.psp_reference.trim().is_empty());
        match accepted {
            Some(refund) => RefundResponse {
                status: RefundStatus::Pending,
                code: refund.status.as_deref().map(codes::snake_case),
                provider_refund_id: Some(refund.psp_reference),
                message: None,
                raw,
            },
            None => RefundResponse {
                status: RefundStatus::Unknown,
                provider_refund_id: None,
                code: Some("malformed_response".into()),
                message: Some("Adyen's answer is not a refund response".into()),
                raw,
            },
        }
    }
}

#[async_trait]
impl Provider for AdyenProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        let Some(amount) = WireAmount::from_engine(request.amount, request.currency) else {
            return self.synthetic(
                OutcomeClass::Invalid,
                "amount_not_representable",
                &format!(
                    "{} {} cannot be expressed in Adyen's minor unit",
                    request.amount, request.currency
                ),
            );
        };
        let reference = request.payment_id.to_string();
        let merchant_id = request.merchant_id.to_string();
        let metadata = BTreeMap::from([
            ("order_id", truncate(&request.order_id)),
            ("merchant_id", truncate(&merchant_id)),
        ]);
        let body = wire::PaymentRequest {
            amount,
            reference: &reference,
            merchant_account: &self.config.merchant_account,
            payment_method: wire::StoredPaymentMethod {
                kind: wire::SCHEME,
                stored_payment_method_id: &request.payment_method,
            },
            shopper_reference: &request.customer_id,
            shopper_interaction: wire::SHOPPER_INTERACTION,
            recurring_processing_model: wire::RECURRING_PROCESSING_MODEL,
            metadata,
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                return self.synthetic(
                    OutcomeClass::Invalid,
                    "invalid_request",
                    &format!("the payment request could not be encoded: {error}"),
                )
            }
        };
        let answer = self
            .post(self.url(&["payments"]), &request.idempotency_key, body)
            .await;
        let response = self.classify_charge(answer);
        tracing::debug!(
            provider = %self.name,
            payment_id = %request.payment_id,
            class = response.class.as_str(),
            code = ?response.code,
            "adyen charge answered"
        );
        response
    }

    async fn lookup(&self, _idempotency_key: &str) -> Result<LookupResult, ProviderError> {
        Err(ProviderError::Unsupported(
            "Adyen has no look-up by idempotency key; outcomes arrive by webhook",
        ))
    }

    async fn refund(&self, request: &RefundRequest) -> RefundResponse {
        let failed = |code: &str, message: String| RefundResponse {
            status: RefundStatus::Failed,
            provider_refund_id: None,
            code: Some(code.to_string()),
            message: Some(message.clone()),
            raw: serde_json::json!({ "engine": code, "message": message }).to_string(),
        };
        let Some(amount) = WireAmount::from_engine(request.amount, request.currency) else {
            return failed(
                "amount_not_representable",
                format!(
                    "{} {} cannot be expressed in Adyen's minor unit",
                    request.amount, request.currency
                ),
            );
        };
        if request.provider_payment_id.trim().is_empty() {
            return failed(
                "invalid_request",
                "the charge has no Adyen pspReference".into(),
            );
        }
        let body = wire::RefundRequest {
            merchant_account: &self.config.merchant_account,
            amount,
            reference: &request.idempotency_key,
        };
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(error) => {
                return failed(
                    "invalid_request",
                    format!("the refund request could not be encoded: {error}"),
                )
            }
        };
        let url = self.url(&["payments", &request.provider_payment_id, "refunds"]);
        let answer = self.post(url, &request.idempotency_key, body).await;
        self.classify_refund(answer)
    }

    async fn settlements(
        &self,
        _from: Timestamp,
        _to: Timestamp,
    ) -> Result<Vec<SettlementRecord>, ProviderError> {
        Err(ProviderError::Unsupported(
            "Adyen reports settlements as report files, not through an API call",
        ))
    }
}

/// A `metadata` value Adyen accepts: at most 80 characters.
fn truncate(value: &str) -> String {
    value.chars().take(wire::MAX_METADATA_VALUE_CHARS).collect()
}

/// The body, read whole, up to [`MAX_BODY_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(format!("body longer than {MAX_BODY_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err(error_chain(&error)),
        }
    }
}

/// `Retry-After` in milliseconds: delay-seconds or an HTTP date.
fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(u64::try_from(wait.num_milliseconds()).unwrap_or(0))
}

/// An error and its causes, `: `-separated (reqwest's own message alone
/// rarely says what happened).
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_are_sent_as_they_are() {
        let key = "pay_0190a5b2c3d4e5f60718293a4b5c6d7e-1";
        assert_eq!(idempotency_key(key), key);
        let exactly_64 = "k".repeat(64);
        assert_eq!(idempotency_key(&exactly_64), exactly_64.as_str());
    }

    #[test]
    fn long_keys_are_hashed_to_64_characters() {
        let long = format!("pay_{}-1", "a".repeat(80));
        let derived = idempotency_key(&long);
        assert_eq!(derived.len(), MAX_IDEMPOTENCY_KEY_CHARS);
        assert!(derived
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(derived, idempotency_key(&long), "deterministic");
        assert_ne!(derived, idempotency_key(&format!("{long}x")));
        // SHA-256 of "a" * 65, independently known.
        assert_eq!(
            idempotency_key(&"a".repeat(65)),
            "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"
        );
        // Keys Adyen would refuse as header values are hashed too.
        assert_eq!(idempotency_key("key with spaces").len(), 64);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after_ms(&headers), Some(3000));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_ms(&headers), Some(0), "a past date: now");
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).expect("header"));
        let wait = retry_after_ms(&headers).expect("date");
        assert!((100_000..=120_000).contains(&wait), "{wait}");
    }

    #[test]
    fn configuration_is_checked() {
        let config = AdyenConfig {
            base_url: "https://checkout-test.adyen.com/v71".into(),
            api_key: "AQE_secret".into(),
            merchant_account: "TestMerchant".into(),
            timeout_ms: 1000,
        };
        let provider = AdyenProvider::new("adyen", config.clone()).expect("valid");
        assert_eq!(
            provider.url(&["payments"]).as_str(),
            "https://checkout-test.adyen.com/v71/payments"
        );
        assert_eq!(
            provider.url(&["payments", "AB/C", "refunds"]).as_str(),
            "https://checkout-test.adyen.com/v71/payments/AB%2FC/refunds"
        );
        assert!(!format!("{config:?}").contains("AQE_secret"));
        for broken in [
            AdyenConfig {
                base_url: "not a url".into(),
                ..config.clone()
            },
            AdyenConfig {
                base_url: "ftp://example.com".into(),
                ..config.clone()
            },
            AdyenConfig {
                api_key: " ".into(),
                ..config.clone()
            },
            AdyenConfig {
                merchant_account: String::new(),
                ..config.clone()
            },
            AdyenConfig {
                timeout_ms: 0,
                ..config.clone()
            },
        ] {
            assert!(matches!(
                AdyenProvider::new("adyen", broken),
                Err(ProviderError::Refused(_))
            ));
        }
    }
}
