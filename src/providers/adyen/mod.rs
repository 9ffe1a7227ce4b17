//! The Adyen adapter (DESIGN §7): Checkout API v71 over HTTPS with reqwest.
//!
//! Split as Hyperswitch splits its connectors:
//!
//! - `client`: the HTTP calls (building requests, sending them, reading
//!   and recording answers);
//! - [`wire`]: the JSON Adyen sends and receives;
//! - [`codes`]: what each answer means, as tables (`resultCode`,
//!   `refusalReasonCode`, HTTP status);
//! - `classify`: the one place where an answer becomes an outcome;
//! - [`webhook`]: inbound notifications, each item HMAC-verified, and what
//!   they can and cannot tell the engine;
//! - this file: the configuration and the [`Provider`] implementation.
//!
//! Adyen answers a decline with HTTP 200 and a `resultCode`; only requests it
//! could not process get an HTTP error status. Charges are stored-card,
//! merchant-initiated (`ContAuth`, `CardOnFile`): the engine has no shopper
//! to redirect, so any answer asking for one is a hard decline. Adyen has no
//! look-up by idempotency key and no settlement API (outcomes arrive by
//! webhook, settlements as report files), and no look-up of a payment by
//! its `pspReference`: [`Provider::lookup`], [`Provider::lookup_reference`]
//! and [`Provider::settlements`] answer [`ProviderError::Unsupported`].
//!
//! ## Settlements
//!
//! Adyen has no API to list settled payments: it writes reports (the
//! *Settlement details report*, the *Payment accounting report*) as CSV
//! files, generated per settlement batch or day, announced by a
//! `REPORT_AVAILABLE` webhook and downloaded from the Customer Area or its
//! report URL with a report user's credentials. The engine does not fetch
//! them: [`Provider::settlements`] is unsupported, so reconciliation
//! against Adyen (DESIGN §9) compares nothing with the provider and relies
//! on the webhooks (`AUTHORISATION`, `REFUND`) that confirm each outcome.
//!
//! **Not built: an importer.** There is no command or endpoint to feed a
//! report in, and a `REPORT_AVAILABLE` notification reads as
//! `Other("REPORT_AVAILABLE:true")`, like any event the engine does not act
//! on. An operator reconciles Adyen by hand, from
//! the report against `GET /v1/payments`. Were an importer built, a
//! Settlement details report row would map to a [`SettlementRecord`] so:
//! `Psp Reference` is `provider_payment_id`; `Merchant Reference` is the
//! engine's payment id (the adapter sends it as `reference`); `Type`
//! (`Settled`, `Refunded`, `Chargeback`...) is the kind; `Gross Currency`
//! and `Gross Credit (GC)`/`Gross Debit (GC)` are the amount as charged,
//! comparable with the payment; `Commission`, `Markup`, `Scheme Fees` and
//! `Interchange` (in the net currency) sum to the fee, comparable only when
//! no conversion happened; the merchant and order are not among the
//! report's standard columns (the payment id leads to them).
//!
//! [`SettlementRecord`]: crate::providers::SettlementRecord

mod classify;
mod client;
pub mod codes;
pub mod webhook;
pub mod wire;

#[cfg(test)]
mod tests;

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementPage, WebhookError, WebhookEvent, WebhookHeaders,
};
use crate::domain::{OutcomeClass, Timestamp};
use async_trait::async_trait;
use reqwest::header::HeaderValue;
use reqwest::Url;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use wire::WireAmount;

/// Adyen's longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 64;
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
    /// The webhook endpoint's HMAC key, in hex as the Customer Area shows
    /// it. `None`: no endpoint is configured, and webhooks are refused as
    /// unsupported.
    #[serde(default)]
    pub hmac_key: Option<String>,
}

impl fmt::Debug for AdyenConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdyenConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &MASK)
            .field("merchant_account", &self.merchant_account)
            .field("timeout_ms", &self.timeout_ms)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| MASK))
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
    /// `config.hmac_key`, hex-decoded.
    hmac_key: Option<Vec<u8>>,
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
        let hmac_key = match config.hmac_key.as_deref() {
            None => None,
            Some(hex) => Some(
                super::signature::decode_hex(hex.trim())
                    .filter(|key| !key.is_empty())
                    .ok_or_else(|| refuse("hmac_key must be non-empty hex".into()))?,
            ),
        };
        let client = client::http_client(config.timeout_ms)
            .map_err(|error| refuse(format!("HTTP client: {error}")))?;
        Ok(AdyenProvider {
            name: name.into(),
            config,
            base,
            client,
            hmac_key,
        })
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

    async fn lookup_reference(
        &self,
        _provider_payment_id: &str,
    ) -> Result<LookupResult, ProviderError> {
        Err(ProviderError::Unsupported(
            "Adyen has no look-up of a payment by pspReference; outcomes arrive by webhook",
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

    /// Unsupported: see "Settlements" in the module documentation.
    async fn settlements(
        &self,
        _from: Timestamp,
        _to: Timestamp,
        _cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        Err(ProviderError::Unsupported(
            "Adyen reports settlements as report files, not through an API call",
        ))
    }

    fn webhook_acknowledgement(&self) -> Option<&'static str> {
        Some(webhook::ACCEPTED_BODY)
    }

    /// Every item of a notification request, each verified with the
    /// configured `hmac_key` (see [`webhook`]); the headers carry nothing
    /// Adyen signs. Acknowledge with [`webhook::ACCEPTED_BODY`].
    fn verify_webhook(
        &self,
        _headers: &WebhookHeaders,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        webhook::verify(self.hmac_key.as_deref(), body, now)
    }
}

/// A `metadata` value Adyen accepts: at most 80 characters.
fn truncate(value: &str) -> String {
    value.chars().take(wire::MAX_METADATA_VALUE_CHARS).collect()
}
