//! The built-in sandbox provider (DESIGN §7): deterministic, no network.
//!
//! Outcomes are chosen by the `payment_method` token (`tokens`); runtime
//! fault knobs (latency, failure rate, timeout rate, outage) let tests and
//! operators reproduce a misbehaving provider. Charges are kept in a
//! [`SandboxRecord`] that is durable and independent of the engine, each
//! with its status, refunded amount and fee. Split by concern:
//!
//! - this file: the [`Provider`] implementation;
//! - `charging`: recording a charge and answering it, repeats included;
//! - `options`: the fault knobs and the options fixed at boot (fees);
//! - `tokens`: what each token does, and the answers as one table;
//! - `record`, `schema`, `record_writer`: the record, its schema and
//!   migration, and the hot path that commits charges;
//! - `hooks`: operator hooks that make the provider disagree with the
//!   engine;
//! - `settlements`: the record as settlement pages;
//! - `webhook`: events in Stripe's scheme, signed
//!   ([`SandboxProvider::signed_event`]) and verified;
//! - `confirm`: `pm_card_async` confirmations, delivered to the
//!   [`WebhookSink`] the engine sets.

mod charging;
mod confirm;
mod hooks;
mod options;
mod record;
mod record_writer;
mod schema;
mod settlements;
#[cfg(test)]
mod tests;
mod tokens;
mod webhook;

pub use confirm::{WebhookDelivery, WebhookSink};
pub use hooks::{ChargeUpdate, UnsolicitedCharge, CHARGE_STATUSES, UNSOLICITED_PAYMENT_METHOD};
pub use options::{
    SandboxFaults, SandboxOptions, ANY_CURRENCY_FEE, DEFAULT_ASYNC_CONFIRM_MS,
    MAX_INJECTED_LATENCY_MS,
};
pub use record::{ChargeFilter, SandboxCharge, SandboxRecord, MAX_CHARGES_PER_PAGE};
pub use settlements::SETTLEMENT_PAGE_CHARGES;
pub use tokens::PENDING_CODE;
pub use webhook::{SandboxEventKind, DEFAULT_WEBHOOK_SECRET};

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementPage, WebhookError, WebhookEvent, WebhookHeaders,
};
use crate::domain::{Fee, OutcomeClass, Timestamp};
use async_trait::async_trait;
use charging::Answering;
use confirm::Outbox;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokens::{answer, charged, token, Token};

/// Tries `pm_card_rate_limited` answers 429 to, per payment: its attempts
/// 1 and 2, whichever provider each went to.
const RATE_LIMITED_TRIES: u32 = 2;
/// The `Retry-After` the sandbox sends with a 429.
const RATE_LIMIT_RETRY_AFTER_MS: u64 = 50;

/// One sandbox provider (`sandbox_a`, `sandbox_b`...).
pub struct SandboxProvider {
    name: String,
    record: SandboxRecord,
    faults: RwLock<SandboxFaults>,
    /// A charge not committed this long after its call arrived is dropped,
    /// never committed later: the engine gave up on the call by then, and a
    /// late charge is exactly what a look-up's "not found" must not miss.
    call_timeout: Duration,
    /// Fees by currency, for each charge's `fee`.
    fees: BTreeMap<String, Fee>,
    /// The webhook secret ([`DEFAULT_WEBHOOK_SECRET`] unless configured)
    /// and where confirmations go.
    outbox: Arc<Outbox>,
}

impl SandboxProvider {
    /// A sandbox called `name` keeping its charges in `record`.
    pub fn new(name: impl Into<String>, record: SandboxRecord, options: SandboxOptions) -> Self {
        let name = name.into();
        let secret = options
            .webhook_secret
            .filter(|secret| !secret.is_empty())
            .unwrap_or_else(|| DEFAULT_WEBHOOK_SECRET.to_string());
        let outbox = Outbox::new(
            &name,
            secret,
            Duration::from_millis(options.async_confirm_ms),
            record.clone(),
        );
        SandboxProvider {
            name,
            record,
            faults: RwLock::new(options.faults),
            call_timeout: Duration::from_millis(options.call_timeout_ms),
            fees: options.fees,
            outbox: Arc::new(outbox),
        }
    }

    /// From now on, delivers this sandbox's webhooks (`pm_card_async`
    /// confirmations) to `sink`, replacing any sink set before. Without
    /// one, they are only logged.
    pub fn set_webhook_sink(&self, sink: WebhookSink) {
        self.outbox.set_sink(sink);
    }

    pub fn faults(&self) -> SandboxFaults {
        *self
            .faults
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_faults(&self, faults: SandboxFaults) {
        *self
            .faults
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = faults;
    }

    /// A page of the charges this provider made, newest first.
    pub async fn charges(&self, filter: &ChargeFilter) -> Result<Vec<SandboxCharge>, sqlx::Error> {
        self.record.page(&self.name, filter).await
    }

    fn roll(rate: f64) -> bool {
        rate > 0.0 && rand::thread_rng().gen_bool(rate.min(1.0))
    }

    /// Whether a `pm_card_rate_limited` charge should still get a 429.
    ///
    /// Decided by the payment's attempt number, not by counting calls here:
    /// the engine fails over after a 429, so a payment's tries are spread
    /// over several sandboxes, and a per-provider count would answer 429 to
    /// the third try too (attempts 1 and 3 both land on the first sandbox),
    /// failing a payment that DESIGN §7 says succeeds. It also keeps no
    /// state, so nothing grows with the number of payments.
    fn still_rate_limited(request: &ChargeRequest) -> bool {
        request.attempt_number <= RATE_LIMITED_TRIES
    }
}

#[async_trait]
impl Provider for SandboxProvider {
    fn name(&self) -> &str {
        &self.name
    }

    async fn charge(&self, request: &ChargeRequest) -> ProviderResponse {
        let deadline = Instant::now() + self.call_timeout;
        let faults = self.faults();
        if faults.outage {
            return answer(
                OutcomeClass::TransientNotCharged,
                503,
                Some("provider_outage"),
                Some("the provider is unavailable"),
                None,
            );
        }
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        match self.record.find(&self.name, &request.idempotency_key).await {
            Ok(Some(existing)) => return self.repeat(&existing),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(provider = %self.name, %error, "sandbox record read failed");
                return answer(
                    OutcomeClass::TransientNotCharged,
                    503,
                    Some("provider_unavailable"),
                    Some("record unavailable"),
                    None,
                );
            }
        }
        if Self::roll(faults.failure_rate) {
            return answer(
                OutcomeClass::TransientNotCharged,
                503,
                Some("provider_unavailable"),
                Some("injected failure"),
                None,
            );
        }
        match token(&request.payment_method) {
            Token::Charge { lose_first_answer } => {
                let answering = if lose_first_answer {
                    Answering::LoseFirst
                } else {
                    Answering::Now
                };
                self.make_charge(request, answering, &faults, deadline)
                    .await
            }
            Token::Async => {
                self.make_charge(request, Answering::Later, &faults, deadline)
                    .await
            }
            Token::Decline(decline) => answer(
                decline.class,
                402,
                Some(decline.code),
                Some(decline.message),
                None,
            ),
            Token::ProviderError => answer(
                OutcomeClass::TransientNotCharged,
                503,
                Some("provider_unavailable"),
                Some("the provider is unavailable"),
                None,
            ),
            Token::RateLimited if Self::still_rate_limited(request) => ProviderResponse {
                retry_after_ms: Some(RATE_LIMIT_RETRY_AFTER_MS),
                ..answer(
                    OutcomeClass::TransientNotCharged,
                    429,
                    Some("rate_limited"),
                    Some("too many requests"),
                    None,
                )
            },
            Token::RateLimited => {
                self.make_charge(request, Answering::Now, &faults, deadline)
                    .await
            }
            Token::Unknown => answer(
                OutcomeClass::Invalid,
                400,
                Some("invalid_payment_method"),
                Some("unknown sandbox payment method token"),
                None,
            ),
        }
    }

    async fn lookup(&self, idempotency_key: &str) -> Result<LookupResult, ProviderError> {
        if self.record.in_flight(&self.name, idempotency_key) {
            return Err(ProviderError::InProgress(
                "a charge under this key is still being processed".into(),
            ));
        }
        let found = self.record.find(&self.name, idempotency_key).await?;
        Ok(found.map_or(LookupResult::NotFound, charged))
    }

    /// By the charge id the sandbox answered with. No in-flight check: an
    /// id exists only once its charge is recorded.
    async fn lookup_reference(
        &self,
        provider_payment_id: &str,
    ) -> Result<LookupResult, ProviderError> {
        let found = self
            .record
            .find_by_id(&self.name, provider_payment_id)
            .await?;
        Ok(found.map_or(LookupResult::NotFound, charged))
    }

    async fn refund(&self, request: &RefundRequest) -> RefundResponse {
        let now = Timestamp::from_datetime(chrono::Utc::now()).to_string();
        let refunded = self
            .record
            .refund_once(
                &self.name,
                &request.idempotency_key,
                &request.provider_payment_id,
                request.amount.minor_units(),
                request.currency.code(),
                &now,
            )
            .await;
        let (status, id, code) = match refunded {
            Ok(Some(id)) => (RefundStatus::Succeeded, Some(id), None),
            Ok(None) => (RefundStatus::Failed, None, Some("refund_exceeds_charge")),
            Err(error) => {
                tracing::warn!(provider = %self.name, %error, "sandbox refund record failed");
                (RefundStatus::Unknown, None, Some("api_error"))
            }
        };
        RefundResponse {
            status,
            provider_refund_id: id.clone(),
            code: code.map(str::to_string),
            message: None,
            raw: serde_json::json!({ "id": id, "status": status, "code": code }).to_string(),
        }
    }

    /// One page of the record's charges (see `settlements`).
    async fn settlements(
        &self,
        from: Timestamp,
        to: Timestamp,
        cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        self.settlement_page(from, to, cursor).await
    }

    /// One event per request, in Stripe's scheme with this sandbox's
    /// secret (see `webhook`).
    fn verify_webhook(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        self.verify_event(headers, body, now)
    }
}
