//! The Stripe adapter (DESIGN §7): PaymentIntents over HTTPS with reqwest.
//!
//! Split as Hyperswitch splits its connectors:
//!
//! - `client`: the HTTP calls (building requests, sending them, reading
//!   answers, saying whether a request may have reached Stripe);
//! - [`wire`]: Stripe's request encoding and response types;
//! - [`codes`]: every code-to-class opinion, as data;
//! - `classify`: the one place an answer becomes an [`OutcomeClass`];
//! - `webhook`: inbound events, `Stripe-Signature` verified first;
//! - this file: the configuration and the [`Provider`] implementation.
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
//! Every response carries the body as `raw`, with the API key masked and
//! secret fields (a PaymentIntent's `client_secret`) redacted.
//!
//! ## Settlements
//!
//! [`Provider::settlements`] reads one page of balance transactions
//! (`GET /v1/balance_transactions`, `created` in the window, newest first,
//! the source charge or refund expanded) per call; the cursor is Stripe's
//! `starting_after`, the page's last transaction. Charge lines (`charge`,
//! `payment`) and refund lines (`refund`, `payment_refund`) become
//! settlement records; the others (payouts, transfers, adjustments) are
//! left out, so a page may hold no record and still have a next one.
//!
//! What a line can be compared with the engine on:
//!
//! | field | from | comparable |
//! |---|---|---|
//! | `provider_payment_id` | the source's PaymentIntent (the id the engine holds), else the source's own id | yes |
//! | `fee` | the balance transaction's `fee` (every fee Stripe took, in the settlement currency) | yes, when the payment's currency is the account's settlement currency |
//! | `amount`, `currency` | the balance transaction's, i.e. after conversion to the settlement currency | only when no conversion happened (then they are the charge's) |
//! | `amount_refunded` | the expanded charge's `amount_refunded`, as of the read; 0 on refund lines | yes, on charge lines |
//! | `idempotency_key`, `merchant_id`, `order_id` | the expanded charge's `metadata`, which Stripe copies from the PaymentIntent when it is confirmed | on charge lines; refund lines have none |
//! | `status` | the balance transaction's `pending`/`available`: when the money settles, not the payment's status | no: a charge line means the charge succeeded, refunds show as `amount_refunded` and refund lines |
//! | `created_at` | the balance transaction's | not to the microsecond: Stripe counts seconds |
//!
//! [`OutcomeClass`]: crate::domain::OutcomeClass

mod classify;
mod client;
pub mod codes;
mod webhook;
pub mod wire;

#[cfg(test)]
mod tests;

pub use super::signature::DEFAULT_WEBHOOK_TOLERANCE_SECS;

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, SettlementPage, WebhookError, WebhookEvent, WebhookHeaders,
};
use crate::domain::Timestamp;
use async_trait::async_trait;
use client::{path_segment, search_quoted, unix_seconds};
use reqwest::header::HeaderValue;
use reqwest::Method;
use std::fmt;
use wire::{BalanceTransaction, Form, List, PaymentIntent, SearchResult};

/// Balance transactions asked for per page (Stripe's maximum).
const SETTLEMENT_PAGE_SIZE: u32 = 100;
/// What replaces the API key wherever it appears in an answer.
const MASKED_KEY: &str = "[REDACTED]";

/// Where and how to reach Stripe (or a Stripe-compatible server).
#[derive(Clone)]
pub struct StripeConfig {
    /// `https://api.stripe.com`, without `/v1`.
    pub base_url: String,
    /// The secret key (`sk_live_…`, `sk_test_…`, or a restricted `rk_…`).
    pub api_key: String,
    /// The whole-call timeout: connect, send and read the answer.
    pub timeout_ms: u64,
    /// The signing secret of the webhook endpoint (`whsec_…`). `None`: no
    /// endpoint is configured, and webhooks are refused as unsupported.
    pub webhook_secret: Option<String>,
    /// How far a webhook's signing time may be from now, either way
    /// ([`DEFAULT_WEBHOOK_TOLERANCE_SECS`] unless there is a reason).
    pub webhook_tolerance_secs: u64,
}

impl fmt::Debug for StripeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &MASKED_KEY)
            .field("timeout_ms", &self.timeout_ms)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| MASKED_KEY),
            )
            .field("webhook_tolerance_secs", &self.webhook_tolerance_secs)
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
    webhook_secret: Option<String>,
    webhook_tolerance_secs: u64,
}

impl fmt::Debug for StripeProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StripeProvider")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl StripeProvider {
    /// Checks `config` and builds the HTTP client. Errors are
    /// [`ProviderError::Refused`]: the configuration is refused before any
    /// call is made.
    pub fn new(name: impl Into<String>, config: StripeConfig) -> Result<Self, ProviderError> {
        let name = name.into();
        let refuse = |why: String| ProviderError::Refused(format!("stripe provider {name}: {why}"));
        let base_url = config.base_url.trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
            _ => {
                return Err(refuse(format!(
                    "base_url {base_url:?} is not an http(s) URL"
                )))
            }
        }
        if config.api_key.trim().is_empty() {
            return Err(refuse("api_key is empty".into()));
        }
        if config.timeout_ms == 0 {
            return Err(refuse("timeout_ms must be positive".into()));
        }
        if config
            .webhook_secret
            .as_deref()
            .is_some_and(|secret| secret.trim().is_empty())
        {
            return Err(refuse("webhook_secret is empty".into()));
        }
        if config.webhook_tolerance_secs == 0 {
            return Err(refuse("webhook_tolerance_secs must be positive".into()));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.api_key))
            .map_err(|_| refuse("api_key is not a valid header value".into()))?;
        authorization.set_sensitive(true);
        let client = client::http_client(config.timeout_ms)
            .map_err(|error| refuse(format!("cannot build the HTTP client: {error}")))?;
        Ok(StripeProvider {
            name,
            base_url,
            api_key: config.api_key,
            authorization,
            client,
            webhook_secret: config.webhook_secret,
            webhook_tolerance_secs: config.webhook_tolerance_secs,
        })
    }

    /// `GET path?form`, for the reads (look-ups, settlements): no answer
    /// at all is [`ProviderError::Unreachable`].
    async fn get(&self, path: &str, form: &Form) -> Result<client::Answer, ProviderError> {
        self.call(Method::GET, path, form, None)
            .await
            .map_err(|error| self.unreachable(error))
    }

    /// `body` parsed as `T`, or a [`ProviderError::Malformed`] naming `what`.
    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        body: &str,
        what: &str,
    ) -> Result<T, ProviderError> {
        serde_json::from_str(body).map_err(|error| {
            ProviderError::Malformed(format!("stripe provider {}: {what}: {error}", self.name))
        })
    }

    /// One page of balance transactions after `starting_after`.
    async fn settlement_page(
        &self,
        from: Timestamp,
        to: Timestamp,
        starting_after: Option<String>,
    ) -> Result<List<BalanceTransaction>, ProviderError> {
        let mut form = Form::new();
        form.push_nested("created", "gte", unix_seconds(from).to_string())
            .push_nested("created", "lt", unix_seconds(to).to_string())
            .push("limit", SETTLEMENT_PAGE_SIZE.to_string())
            .push("expand[]", "data.source")
            .push_opt("starting_after", starting_after);
        let answer = self.get("/v1/balance_transactions", &form).await?;
        if !answer.status.is_success() {
            return Err(self.read_error(&answer));
        }
        self.parse(&answer.body, "balance transactions page")
    }
}

#[async_trait]
impl Provider for StripeProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        let form = client::charge_form(request);
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
        let answer = self.get("/v1/payment_intents/search", &form).await?;
        if !answer.status.is_success() {
            return Err(self.read_error(&answer));
        }
        let found: SearchResult<PaymentIntent> = self.parse(&answer.body, "search answer")?;
        self.lookup_result(&found.data)
    }

    /// `GET /v1/payment_intents/{id}`: the statuses mean what they mean to
    /// [`Provider::lookup`]; a `404 resource_missing` is
    /// [`LookupResult::NotFound`] (any other `404` is not: a wrong base URL
    /// must not pass for "nothing was charged").
    async fn lookup_reference(
        &self,
        provider_payment_id: &str,
    ) -> Result<LookupResult, ProviderError> {
        // Percent-encoding cannot stop a URL parser from resolving a dot
        // segment, so those are refused with the empty id.
        if matches!(provider_payment_id, "" | "." | "..") {
            return Err(ProviderError::Refused(format!(
                "stripe provider {}: {provider_payment_id:?} is not a payment intent id",
                self.name
            )));
        }
        let path = format!("/v1/payment_intents/{}", path_segment(provider_payment_id));
        let answer = self.get(&path, &Form::new()).await?;
        if answer.is_resource_missing() {
            return Ok(LookupResult::NotFound);
        }
        if !answer.status.is_success() {
            return Err(self.read_error(&answer));
        }
        let intent: PaymentIntent = self.parse(&answer.body, "payment intent")?;
        self.lookup_result(std::slice::from_ref(&intent))
    }

    async fn refund(&self, request: &RefundRequest) -> RefundResponse {
        let answer = self
            .call(
                Method::POST,
                "/v1/refunds",
                &client::refund_form(request),
                Some(&request.idempotency_key),
            )
            .await;
        self.classify_refund(answer)
    }

    /// One page of balance transactions: Stripe's own page, with the
    /// lines the engine does not reconcile (payouts, transfers...) left
    /// out, and `starting_after` as the cursor.
    async fn settlements(
        &self,
        from: Timestamp,
        to: Timestamp,
        cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        let page = self.settlement_page(from, to, cursor).await?;
        let last = page.data.last().map(|transaction| transaction.id.clone());
        let mut records = Vec::with_capacity(page.data.len());
        for transaction in page.data {
            if let Some(record) = self.settlement_record(transaction)? {
                records.push(record);
            }
        }
        let next = match (page.has_more, last) {
            (false, _) => None,
            (true, Some(last)) => Some(last),
            (true, None) => {
                return Err(ProviderError::Malformed(format!(
                    "stripe provider {}: an empty page of balance transactions says it has more",
                    self.name
                )))
            }
        };
        Ok(SettlementPage { records, next })
    }

    /// One Event per request, verified with the configured
    /// `webhook_secret` (see `webhook` for what each type becomes).
    fn verify_webhook(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        webhook::verify(
            self.webhook_secret.as_deref(),
            self.webhook_tolerance_secs,
            headers,
            body,
            now,
        )
    }
}
