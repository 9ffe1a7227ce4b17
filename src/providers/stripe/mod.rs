//! The Stripe adapter (DESIGN §7): PaymentIntents over HTTPS with reqwest.
//!
//! Split as Hyperswitch splits its connectors: this file is the client (the
//! calls, and the one place an answer becomes an [`OutcomeClass`]),
//! [`wire`] holds Stripe's request encoding and response types, and
//! [`codes`] holds every code-to-class opinion as data.
//!
//! How a charge answer is classified, in order:
//!
//! | answer | class |
//! |---|---|
//! | request never sent (connection refused, DNS, TLS) | `transient_not_charged` |
//! | sent, then timeout or reset, or the body could not be read | `unknown` |
//! | `2xx`, PaymentIntent status per [`codes::PAYMENT_INTENT_STATUSES`] | `succeeded`, `unknown` (`processing`), `hard_decline` (`requires_action`, `requires_payment_method`) |
//! | `2xx` whose body is not a PaymentIntent | `unknown` |
//! | `402` card error | [`codes::card_error_class`]: advice code, else decline code, else code |
//! | `503` with `Stripe-Should-Retry: true` | `transient_not_charged` |
//! | any other status | [`codes::http_class`] (`429` transient, `409`/`5xx` unknown, `4xx` invalid) |
//!
//! Every response carries the body as `raw`, with the API key masked.

pub mod codes;
pub mod wire;

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementRecord,
};
use crate::domain::{OutcomeClass, Timestamp};
use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use std::fmt;
use std::time::Duration;
use wire::{ApiError, BalanceTransaction, ErrorEnvelope, Form, List, PaymentIntent, SearchResult};

/// The largest response body read; a longer one is treated as unreadable.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Balance transactions asked for per page (Stripe's maximum).
const SETTLEMENT_PAGE_SIZE: u32 = 100;
/// Pages of balance transactions read for one window before giving up.
pub const MAX_SETTLEMENT_PAGES: usize = 100;
/// The longest `Retry-After` honoured (one day).
const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
/// What replaces the API key wherever it appears in an answer.
const MASKED_KEY: &str = "[REDACTED]";
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const SHOULD_RETRY: &str = "stripe-should-retry";
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Where and how to reach Stripe (or a Stripe-compatible server).
#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, without `/v1`.
    pub base_url: String,
    /// The secret key (`sk_live_…`, `sk_test_…`, or a restricted `rk_…`).
    pub api_key: String,
    /// The whole-call timeout: connect, send and read the answer.
    pub timeout_ms: u64,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &MASKED_KEY)
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

/// One Stripe account, as a [`Provider`].
pub struct StripeProvider {
    name: String,
    /// Without a trailing slash.
    base_url: String,
    api_key: String,
    /// `Bearer {api_key}`, marked sensitive so it is never logged.
    authorization: HeaderValue,
    client: reqwest::Client,
}

impl fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// One HTTP answer, read off the wire with the API key masked.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    /// `Stripe-Should-Retry`, when sent.
    should_retry: Option<bool>,
    retry_after_ms: Option<u64>,
    body: String,
}

impl Answer {
    /// The error envelope, if the body is one.
    fn error(&self) -> Option<ApiError> {
        serde_json::from_str::<ErrorEnvelope>(&self.body)
            .ok()
            .map(|envelope| envelope.error)
    }

    /// The body, or a stand-in naming the status when there was none.
    fn raw(&self) -> String {
        if self.body.is_empty() {
            serde_json::json!({ "http_status": self.status.as_u16(), "body": "" }).to_string()
        } else {
            self.body.clone()
        }
    }
}

/// A call that produced no answer.
#[derive(Debug)]
enum CallError {
    /// The request never left: nothing can have happened at Stripe.
    NotSent(String),
    /// The request may have reached Stripe; the answer was lost.
    Lost { timeout: bool, detail: String },
    /// The request could not be built (our configuration or input).
    Unbuildable(String),
}

impl CallError {
    fn detail(&self) -> &str {
        match self {
            CallError::NotSent(detail)
            | CallError::Lost { detail, .. }
            | CallError::Unbuildable(detail) => detail,
        }
    }
}

impl StripeProvider {
    pub fn new(name: impl Into<String>, config: StripeConfig) -> Result<Self, ProviderError> {
        let name = name.into();
        let base_url = config.base_url.trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(ProviderError::Refused(format!(
                    "stripe provider {name}: base_url {base_url:?} is not an http(s) URL"
                )))
            }
        }
        if config.api_key.trim().is_empty() {
            return Err(ProviderError::Refused(format!(
                "stripe provider {name}: api_key is empty"
            )));
        }
        if config.timeout_ms == 0 {
            return Err(ProviderError::Refused(format!(
                "stripe provider {name}: timeout_ms must be positive"
            )));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.api_key))
            .map_err(|_| {
                ProviderError::Refused(format!(
                    "stripe provider {name}: api_key is not a valid header value"
                ))
            })?;
        authorization.set_sensitive(true);
        let timeout = Duration::from_millis(config.timeout_ms);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            // A connection not made within half the budget is reported as a
            // connect error (nothing sent), not as a lost answer.
            .connect_timeout(timeout / 2)
            // Stripe never redirects; a redirect means the base URL is not
            // the API, and following it would turn a POST into a GET.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("payments/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| {
                ProviderError::Refused(format!(
                    "stripe provider {name}: cannot build the HTTP client: {error}"
                ))
            })?;
        Ok(StripeProvider {
            name,
            base_url,
            api_key: config.api_key,
            authorization,
            client,
        })
    }

    /// `text` with the API key masked.
    fn mask(&self, text: &str) -> String {
        if self.api_key.is_empty() || !text.contains(&self.api_key) {
            return text.to_string();
        }
        text.replace(&self.api_key, MASKED_KEY)
    }

    /// Sends one request and reads its answer. `form` is the body of a POST
    /// or the query string of a GET.
    async fn call(
        &self,
        method: Method,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, CallError> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.authorization.clone());
        if let Some(key) = idempotency_key {
            let value = HeaderValue::from_str(key).map_err(|_| {
                CallError::Unbuildable(format!("idempotency key {key:?} is not a header value"))
            })?;
            headers.insert(IDEMPOTENCY_KEY, value);
        }
        let builder = if method == Method::GET {
            let query = form.encode();
            let url = if query.is_empty() {
                format!("{}{path}", self.base_url)
            } else {
                format!("{}{path}?{query}", self.base_url)
            };
            self.client.get(url)
        } else {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
            self.client
                .request(method, format!("{}{path}", self.base_url))
                .body(form.encode())
        };
        let response = builder
            .headers(headers)
            .send()
            .await
            .map_err(|error| self.transport_error(&ReadError::Http(error)))?;
        let status = response.status();
        let should_retry = header_text(response.headers(), SHOULD_RETRY).and_then(parse_bool);
        let retry_after_ms =
            header_text(response.headers(), RETRY_AFTER.as_str()).and_then(parse_retry_after);
        let body = read_body(response)
            .await
            .map_err(|error| self.transport_error(&error))?;
        Ok(Answer {
            status,
            should_retry,
            retry_after_ms,
            body: self.mask(&String::from_utf8_lossy(&body)),
        })
    }

    /// What a reqwest error says about whether the request left.
    fn transport_error(&self, error: &ReadError) -> CallError {
        let detail = self.mask(&error.to_string());
        match error {
            ReadError::TooLarge => CallError::Lost {
                timeout: false,
                detail,
            },
            ReadError::Http(error) if error.is_builder() => CallError::Unbuildable(detail),
            // Checked before timeouts: a connect timeout never sent anything.
            ReadError::Http(error) if error.is_connect() => CallError::NotSent(detail),
            ReadError::Http(error) => CallError::Lost {
                timeout: error.is_timeout(),
                detail,
            },
        }
    }

    /// The one place a charge answer becomes a class (see the module table).
    fn classify_charge(&self, answer: Result<Answer, CallError>) -> ProviderResponse {
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let (class, code) = match &error {
                    CallError::NotSent(_) => {
                        (OutcomeClass::TransientNotCharged, "connection_failed")
                    }
                    CallError::Lost { timeout: true, .. } => (OutcomeClass::Unknown, "timeout"),
                    CallError::Lost { .. } => (OutcomeClass::Unknown, "connection_lost"),
                    CallError::Unbuildable(_) => (OutcomeClass::Invalid, "invalid_request"),
                };
                return ProviderResponse::synthetic(class, code, error.detail());
            }
        };
        let status = answer.status.as_u16();
        if answer.status.is_success() {
            return match serde_json::from_str::<PaymentIntent>(&answer.body) {
                Ok(intent) => {
                    let class = codes::PAYMENT_INTENT_STATUSES.classify(&intent.status);
                    let (code, message) = if class == OutcomeClass::Succeeded {
                        (None, None)
                    } else {
                        intent_reason(&intent)
                    };
                    ProviderResponse {
                        class,
                        provider_payment_id: Some(intent.id),
                        code,
                        message,
                        raw: answer.raw(),
                        retry_after_ms: None,
                    }
                }
                Err(error) => ProviderResponse {
                    class: OutcomeClass::Unknown,
                    provider_payment_id: None,
                    code: Some("malformed_response".into()),
                    message: Some(format!(
                        "HTTP {status} body is not a PaymentIntent: {error}"
                    )),
                    raw: answer.raw(),
                    retry_after_ms: None,
                },
            };
        }
        let error = answer.error().unwrap_or_default();
        let class = match status {
            402 => codes::card_error_class(
                error.advice_code.as_deref(),
                error.decline_code.as_deref(),
                error.code.as_deref(),
            ),
            503 if answer.should_retry == Some(true) => OutcomeClass::TransientNotCharged,
            _ => codes::http_class(status),
        };
        let code = match status {
            402 => error
                .decline_code
                .clone()
                .or_else(|| error.code.clone())
                .unwrap_or_else(|| "card_declined".into()),
            _ => error
                .code
                .clone()
                .or_else(|| error.kind.clone())
                .unwrap_or_else(|| format!("http_{status}")),
        };
        ProviderResponse {
            class,
            provider_payment_id: error.payment_intent_id(),
            code: Some(code),
            message: Some(
                error
                    .message
                    .clone()
                    .unwrap_or_else(|| format!("HTTP {status}")),
            ),
            raw: answer.raw(),
            retry_after_ms: if class == OutcomeClass::TransientNotCharged {
                answer.retry_after_ms
            } else {
                None
            },
        }
    }

    /// A non-`2xx` answer to a read (look-up, settlements) as an error.
    fn read_error(&self, answer: &Answer) -> ProviderError {
        let status = answer.status.as_u16();
        let error = answer.error().unwrap_or_default();
        let detail = format!(
            "stripe provider {}: HTTP {status} {}: {}",
            self.name,
            error.code.or(error.kind).unwrap_or_default(),
            error.message.unwrap_or_default()
        );
        match codes::http_class(status) {
            OutcomeClass::Invalid => ProviderError::Refused(detail),
            _ => ProviderError::Unreachable(detail),
        }
    }

    fn unreachable(&self, error: CallError) -> ProviderError {
        ProviderError::Unreachable(format!("stripe provider {}: {}", self.name, error.detail()))
    }
}

/// The code and message of a PaymentIntent that did not succeed: its last
/// payment error's, else one naming its status.
fn intent_reason(intent: &PaymentIntent) -> (Option<String>, Option<String>) {
    let error = intent.last_payment_error.clone().unwrap_or_default();
    let code = error
        .decline_code
        .or(error.code)
        .unwrap_or_else(|| match intent.status.as_str() {
            "requires_action" => "authentication_required".to_string(),
            other => other.to_string(),
        });
    let message = error.message.unwrap_or_else(|| {
        let action = intent
            .next_action
            .as_ref()
            .and_then(|action| action.kind.as_deref());
        match action {
            Some(action) => format!("payment intent is {} ({action})", intent.status),
            None => format!("payment intent is {}", intent.status),
        }
    });
    (Some(code), Some(message))
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("{}", error_chain(.0))]
    Http(#[from] reqwest::Error),
    #[error("response body larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// An error and its sources, `: `-separated (reqwest's own message rarely
/// says what went wrong: "error sending request").
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// `Retry-After` in milliseconds: delay-seconds (fractions accepted) or an
/// HTTP date, capped at [`MAX_RETRY_AFTER_MS`].
fn parse_retry_after(text: &str) -> Option<u64> {
    let text = text.trim();
    let millis = if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        (seconds * 1000.0).min(MAX_RETRY_AFTER_MS as f64) as u64
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
        let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
        u64::try_from(wait.num_milliseconds().max(0)).ok()?
    };
    Some(millis.min(MAX_RETRY_AFTER_MS))
}

/// A value quoted for Stripe's search query language (quotes escaped with
/// a backslash).
fn search_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn unix_seconds(at: Timestamp) -> i64 {
    at.as_datetime().timestamp()
}

impl StripeProvider {
    fn charge_form(request: &ChargeRequest) -> Form {
        let mut form = Form::new();
        form.push("amount", request.amount.minor_units().to_string())
            .push("currency", request.currency.code().to_ascii_lowercase())
            .push("payment_method", request.payment_method.clone())
            .push("confirm", "true")
            .push_nested("automatic_payment_methods", "enabled", "true")
            .push_nested("automatic_payment_methods", "allow_redirects", "never")
            .push_opt("description", request.description.clone())
            .push_nested("metadata", "payment_id", request.payment_id.to_string())
            .push_nested("metadata", "order_id", request.order_id.clone())
            .push_nested("metadata", "customer_id", request.customer_id.clone())
            .push_nested("metadata", "merchant_id", request.merchant_id.to_string())
            .push_nested(
                "metadata",
                "idempotency_key",
                request.idempotency_key.clone(),
            );
        form
    }

    fn settlement_record(
        &self,
        transaction: BalanceTransaction,
    ) -> Result<Option<SettlementRecord>, ProviderError> {
        let Some(kind) = codes::settlement_kind(&transaction.kind) else {
            return Ok(None);
        };
        let Some(source) = transaction.source.as_ref() else {
            tracing::warn!(provider = %self.name, transaction = %transaction.id, "balance transaction without a source: left out");
            return Ok(None);
        };
        // A charge made outside PaymentIntents has none: its own id is the
        // best the reconciler can get.
        let provider_payment_id = source
            .payment_intent_id()
            .unwrap_or_else(|| source.id())
            .to_string();
        let created_at = transaction
            .created
            .checked_mul(1_000_000)
            .and_then(Timestamp::from_micros)
            .ok_or_else(|| {
                ProviderError::Malformed(format!(
                    "balance transaction {} has an invalid created time {}",
                    transaction.id, transaction.created
                ))
            })?;
        Ok(Some(SettlementRecord {
            provider_payment_id,
            kind: kind.to_string(),
            amount: transaction.amount,
            currency: transaction.currency.to_ascii_lowercase(),
            fee: transaction.fee,
            status: transaction.status,
            created_at,
        }))
    }
}

#[async_trait]
impl Provider for StripeProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        let form = Self::charge_form(request);
        let answer = self
            .call(
                Method::POST,
                "/v1/payment_intents",
                &form,
                Some(&request.idempotency_key),
            )
            .await;
        let response = self.classify_charge(answer);
        tracing::debug!(
            provider = %self.name,
            idempotency_key = %request.idempotency_key,
            class = response.class.as_str(),
            code = ?response.code,
            "stripe charge answered"
        );
        response
    }

    async fn lookup(&self, idempotency_key: &str) -> Result<LookupResult, ProviderError> {
        let mut form = Form::new();
        form.push(
            "query",
            format!(
                "metadata['idempotency_key']:{}",
                search_quoted(idempotency_key)
            ),
        );
        let answer = self
            .call(Method::GET, "/v1/payment_intents/search", &form, None)
            .await
            .map_err(|error| self.unreachable(error))?;
        if !answer.status.is_success() {
            return Err(self.read_error(&answer));
        }
        let found: SearchResult<PaymentIntent> =
            serde_json::from_str(&answer.body).map_err(|error| {
                ProviderError::Malformed(format!(
                    "stripe provider {}: search answer: {error}",
                    self.name
                ))
            })?;
        if let Some(intent) = found.data.iter().find(|intent| {
            codes::PAYMENT_INTENT_STATUSES.classify(&intent.status) == OutcomeClass::Succeeded
        }) {
            let amount = intent.amount_received.or(intent.amount);
            let (Some(amount), Some(currency)) = (amount, intent.currency.clone()) else {
                return Err(ProviderError::Malformed(format!(
                    "stripe provider {}: payment intent {} has no amount or currency",
                    self.name, intent.id
                )));
            };
            return Ok(LookupResult::Charged {
                provider_payment_id: intent.id.clone(),
                amount,
                currency: currency.to_ascii_lowercase(),
            });
        }
        // Still in flight (or in a status we do not know): it may yet charge,
        // so "not found" would be a lie. The caller tries again later.
        if let Some(intent) = found.data.iter().find(|intent| {
            codes::PAYMENT_INTENT_STATUSES.classify(&intent.status) == OutcomeClass::Unknown
        }) {
            return Err(ProviderError::Unreachable(format!(
                "stripe provider {}: payment intent {} is {}: outcome not final",
                self.name, intent.id, intent.status
            )));
        }
        Ok(LookupResult::NotFound)
    }

    async fn refund(&self, request: &RefundRequest) -> RefundResponse {
        let mut form = Form::new();
        form.push("payment_intent", request.provider_payment_id.clone())
            .push("amount", request.amount.minor_units().to_string())
            .push_opt(
                "reason",
                request
                    .reason
                    .as_deref()
                    .filter(|reason| codes::REFUND_REASONS.contains(reason)),
            );
        let answer = self
            .call(
                Method::POST,
                "/v1/refunds",
                &form,
                Some(&request.idempotency_key),
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let (status, code) = match error {
                    CallError::Unbuildable(_) => (RefundStatus::Failed, "invalid_request"),
                    CallError::NotSent(_) => (RefundStatus::Unknown, "connection_failed"),
                    CallError::Lost { timeout: true, .. } => (RefundStatus::Unknown, "timeout"),
                    CallError::Lost { .. } => (RefundStatus::Unknown, "connection_lost"),
                };
                let message = error.detail().to_string();
                return RefundResponse {
                    status,
                    provider_refund_id: None,
                    code: Some(code.into()),
                    raw: serde_json::json!({ "engine": code, "message": message }).to_string(),
                    message: Some(message),
                };
            }
        };
        if answer.status.is_success() {
            return match serde_json::from_str::<wire::Refund>(&answer.body) {
                Ok(refund) => {
                    let status = codes::refund_status(&refund.status);
                    let code = match status {
                        RefundStatus::Failed => {
                            Some(refund.failure_reason.clone().unwrap_or(refund.status))
                        }
                        _ => None,
                    };
                    RefundResponse {
                        status,
                        provider_refund_id: Some(refund.id),
                        code,
                        message: None,
                        raw: answer.raw(),
                    }
                }
                Err(error) => RefundResponse {
                    status: RefundStatus::Unknown,
                    provider_refund_id: None,
                    code: Some("malformed_response".into()),
                    message: Some(format!("body is not a Refund: {error}")),
                    raw: answer.raw(),
                },
            };
        }
        let status_code = answer.status.as_u16();
        let error = answer.error().unwrap_or_default();
        // A refund that may have run (409, 5xx) or was only deferred (429)
        // is unknown: retry with the same key. Other refusals moved nothing.
        let status = match codes::http_class(status_code) {
            OutcomeClass::Invalid | OutcomeClass::HardDecline | OutcomeClass::SoftDecline => {
                RefundStatus::Failed
            }
            _ => RefundStatus::Unknown,
        };
        RefundResponse {
            status,
            provider_refund_id: None,
            code: Some(
                error
                    .code
                    .or(error.kind)
                    .unwrap_or_else(|| format!("http_{status_code}")),
            ),
            message: Some(
                error
                    .message
                    .unwrap_or_else(|| format!("HTTP {status_code}")),
            ),
            raw: answer.raw(),
        }
    }

    async fn settlements(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<SettlementRecord>, ProviderError> {
        let mut records = Vec::new();
        let mut starting_after: Option<String> = None;
        for _ in 0..MAX_SETTLEMENT_PAGES {
            let mut form = Form::new();
            form.push_nested("created", "gte", unix_seconds(from).to_string())
                .push_nested("created", "lt", unix_seconds(to).to_string())
                .push("limit", SETTLEMENT_PAGE_SIZE.to_string())
                .push("expand[]", "data.source")
                .push_opt("starting_after", starting_after.take());
            let answer = self
                .call(Method::GET, "/v1/balance_transactions", &form, None)
                .await
                .map_err(|error| self.unreachable(error))?;
            if !answer.status.is_success() {
                return Err(self.read_error(&answer));
            }
            let page: List<BalanceTransaction> =
                serde_json::from_str(&answer.body).map_err(|error| {
                    ProviderError::Malformed(format!(
                        "stripe provider {}: balance transactions page: {error}",
                        self.name
                    ))
                })?;
            let last = page.data.last().map(|transaction| transaction.id.clone());
            for transaction in page.data {
                if let Some(record) = self.settlement_record(transaction)? {
                    records.push(record);
                }
            }
            if !page.has_more {
                return Ok(records);
            }
            match last {
                Some(last) => starting_after = Some(last),
                None => {
                    return Err(ProviderError::Malformed(format!(
                    "stripe provider {}: an empty page of balance transactions says it has more",
                    self.name
                )))
                }
            }
        }
        Err(ProviderError::Malformed(format!(
            "stripe provider {}: more than {} pages of balance transactions in [{from}, {to}): narrow the window",
            self.name, MAX_SETTLEMENT_PAGES
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(2000));
        assert_eq!(parse_retry_after(" 0.5 "), Some(500));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "a date in the past means now"
        );
    }

    #[test]
    fn should_retry_is_a_boolean() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("False"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn search_values_are_quoted() {
        assert_eq!(search_quoted("pay_1-1"), "'pay_1-1'");
        assert_eq!(search_quoted("a'b\\c"), r"'a\'b\\c'");
    }

    #[test]
    fn configuration_is_validated() {
        let config = |base_url: &str, api_key: &str, timeout_ms| StripeConfig {
            base_url: base_url.into(),
            api_key: api_key.into(),
            timeout_ms,
        };
        assert!(
            StripeProvider::new("s", config("https://api.stripe.com/", "sk_test_1", 1000)).is_ok()
        );
        assert!(StripeProvider::new("s", config("api.stripe.com", "sk_test_1", 1000)).is_err());
        assert!(StripeProvider::new("s", config("ftp://x", "sk_test_1", 1000)).is_err());
        assert!(StripeProvider::new("s", config("https://x", "", 1000)).is_err());
        assert!(StripeProvider::new("s", config("https://x", "sk\n", 1000)).is_err());
        assert!(StripeProvider::new("s", config("https://x", "sk_test_1", 0)).is_err());
        let provider = StripeProvider::new("s", config("https://x//", "sk_test_1", 1000))
            .expect("valid configuration");
        assert_eq!(provider.base_url, "https://x");
        assert_eq!(provider.mask("key sk_test_1!"), "key [REDACTED]!");
        let debug = format!("{:?}", config("https://x", "sk_test_secret", 1));
        assert!(!debug.contains("sk_test_secret"), "{debug}");
    }
}
