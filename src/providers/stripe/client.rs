//! Stripe's HTTP client: building requests, sending them, reading answers.
//!
//! Everything here is about getting bytes to and from Stripe and saying
//! whether a request may have reached it. What an answer means is decided
//! in `classify`, never here.

use super::wire::{ApiError, ErrorEnvelope, Form};
use super::{StripeProvider, MASKED_KEY};
use crate::domain::Timestamp;
use crate::providers::transport::{self, ReadError};
use crate::providers::{ChargeRequest, RefundRequest};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::time::Duration;

/// The largest response body read; a longer one is treated as unreadable.
/// Generous: a page of 100 expanded balance transactions is the largest
/// answer Stripe sends the adapter.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";
const SHOULD_RETRY: &str = "stripe-should-retry";
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Fields of Stripe's answers that are credentials, redacted from `raw`: a
/// PaymentIntent's (or SetupIntent's) `client_secret` lets whoever holds it
/// confirm the payment from a browser; `secret` is an ephemeral key's or a
/// webhook endpoint's signing secret, in case a Stripe-compatible server
/// echoes one.
pub(super) const SECRET_FIELDS: &[&str] = &["client_secret", "secret"];
/// The error code of a `404` for an object that does not exist.
const RESOURCE_MISSING: &str = "resource_missing";

/// One HTTP answer, read off the wire with the API key masked.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: StatusCode,
    /// `Stripe-Should-Retry`, when sent.
    pub(super) should_retry: Option<bool>,
    pub(super) retry_after_ms: Option<u64>,
    pub(super) body: String,
}

impl Answer {
    /// The error envelope, if the body is one.
    pub(super) fn error(&self) -> Option<ApiError> {
        serde_json::from_str::<ErrorEnvelope>(&self.body)
            .ok()
            .map(|envelope| envelope.error)
    }

    /// A `404` saying the object does not exist (not merely "no such
    /// route", which a wrong base URL also answers).
    pub(super) fn is_resource_missing(&self) -> bool {
        self.status == StatusCode::NOT_FOUND
            && self.error().and_then(|error| error.code).as_deref() == Some(RESOURCE_MISSING)
    }

    /// The body as it may be recorded: secret fields redacted, or a
    /// stand-in naming the status when there was no body.
    pub(super) fn raw(&self) -> String {
        if self.body.is_empty() {
            serde_json::json!({ "http_status": self.status.as_u16(), "body": "" }).to_string()
        } else {
            transport::redact_json_fields(&self.body, SECRET_FIELDS).into_owned()
        }
    }
}

/// A call that produced no answer.
#[derive(Debug)]
pub(super) enum CallError {
    /// The request never left: nothing can have happened at Stripe.
    NotSent(String),
    /// The request may have reached Stripe; the answer was lost.
    Lost { timeout: bool, detail: String },
    /// The request could not be built (our configuration or input).
    Unbuildable(String),
}

impl CallError {
    pub(super) fn detail(&self) -> &str {
        match self {
            CallError::NotSent(detail)
            | CallError::Lost { detail, .. }
            | CallError::Unbuildable(detail) => detail,
        }
    }
}

/// The HTTP client for one Stripe account.
pub(super) fn http_client(timeout_ms: u64) -> reqwest::Result<reqwest::Client> {
    let timeout = Duration::from_millis(timeout_ms);
    reqwest::Client::builder()
        .timeout(timeout)
        // A connection not made within half the budget is reported as a
        // connect error (nothing sent), not as a lost answer.
        .connect_timeout(timeout / 2)
        // Stripe never redirects; a redirect means the base URL is not the
        // API, and following it would turn a POST into a GET.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("payments/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl StripeProvider {
    /// `text` with the API key masked.
    pub(super) fn mask(&self, text: &str) -> String {
        transport::mask(text, &self.api_key, MASKED_KEY).into_owned()
    }

    /// Sends one request and reads its answer. `form` is the body of a POST
    /// or the query string of a GET.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, CallError> {
        let response = self
            .request(method, path, form, idempotency_key)?
            .send()
            .await
            .map_err(|error| self.transport_error(&ReadError::Http(error)))?;
        let status = response.status();
        let should_retry =
            transport::header_text(response.headers(), SHOULD_RETRY).and_then(parse_bool);
        let retry_after_ms = transport::retry_after_ms(response.headers());
        let body = transport::read_body(response, MAX_BODY_BYTES)
            .await
            .map_err(|error| self.transport_error(&error))?;
        Ok(Answer {
            status,
            should_retry,
            retry_after_ms,
            body: self.mask(&String::from_utf8_lossy(&body)),
        })
    }

    /// The request, with our credentials and, for writes, the idempotency
    /// key that makes a repeat safe.
    fn request(
        &self,
        method: Method,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<reqwest::RequestBuilder, CallError> {
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
        Ok(builder.headers(headers))
    }

    /// What a transport error says about whether the request left.
    fn transport_error(&self, error: &ReadError) -> CallError {
        let detail = self.mask(&error.to_string());
        match error {
            ReadError::TooLarge { .. } => CallError::Lost {
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
}

/// The form of `POST /v1/payment_intents`: confirmed at once, without
/// redirects (the engine has no shopper to send anywhere), with the
/// engine's ids as metadata so a search can find it by idempotency key.
pub(super) fn charge_form(request: &ChargeRequest) -> Form {
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

/// The form of `POST /v1/refunds`. A reason Stripe does not know is left
/// out rather than sent: Stripe would refuse the whole refund for it.
pub(super) fn refund_form(request: &RefundRequest) -> Form {
    let mut form = Form::new();
    form.push("payment_intent", request.provider_payment_id.clone())
        .push("amount", request.amount.minor_units().to_string())
        .push_opt(
            "reason",
            request
                .reason
                .as_deref()
                .filter(|reason| super::codes::REFUND_REASONS.contains(reason)),
        );
    form
}

pub(super) fn parse_bool(text: &str) -> Option<bool> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") => Some(true),
        t if t.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// A value quoted for Stripe's search query language (quotes escaped with
/// a backslash).
pub(super) fn search_quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `segment` percent-encoded for use as one URL path segment: an id from
/// outside must not be able to add segments (`../`) or a query (`?`).
pub(super) fn path_segment(segment: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0F)]));
            }
        }
    }
    out
}

pub(super) fn unix_seconds(at: Timestamp) -> i64 {
    at.as_datetime().timestamp()
}
