//! The built-in sandbox provider (DESIGN §7): deterministic, no network.
//!
//! Outcomes are chosen by the `payment_method` token; runtime fault knobs
//! (latency, failure rate, timeout rate, outage) let tests and operators
//! reproduce a misbehaving provider. Charges are kept in a [`SandboxRecord`]
//! that is durable and independent of the engine. Webhooks are in Stripe's
//! scheme (`webhook`): the sandbox signs events for its charges
//! ([`SandboxProvider::signed_event`]) and verifies them.

mod record;
mod record_writer;
#[cfg(test)]
mod tests;
mod webhook;

pub use record::{
    ChargeFilter, SandboxCharge, SandboxRecord, MAX_CHARGES_PER_PAGE, MAX_LISTED_CHARGES,
};
pub use webhook::{SandboxEventKind, DEFAULT_WEBHOOK_SECRET};

use super::{
    ChargeRequest, LookupResult, Provider, ProviderError, ProviderResponse, RefundRequest,
    RefundResponse, RefundStatus, SettlementRecord, WebhookError, WebhookEvent, WebhookHeaders,
};
use crate::domain::{OutcomeClass, Timestamp};
use async_trait::async_trait;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Tries `pm_card_rate_limited` answers 429 to, per payment: its attempts
/// 1 and 2, whichever provider each went to.
const RATE_LIMITED_TRIES: u32 = 2;
/// The `Retry-After` the sandbox sends with a 429.
const RATE_LIMIT_RETRY_AFTER_MS: u64 = 50;
/// The largest latency a knob may inject.
pub const MAX_INJECTED_LATENCY_MS: u64 = 60_000;

/// The runtime fault knobs of one sandbox provider.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxFaults {
    /// Added before every answer.
    pub latency_ms: u64,
    /// Share of calls refused with a 503 before anything is charged.
    pub failure_rate: f64,
    /// Share of charges made whose answer is then lost (the call times out).
    pub timeout_rate: f64,
    /// Every call is refused before it reaches the provider.
    pub outage: bool,
}

impl SandboxFaults {
    /// `Err(param)` naming the first knob out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.latency_ms > MAX_INJECTED_LATENCY_MS {
            return Err("latency_ms");
        }
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err("failure_rate");
        }
        if !(0.0..=1.0).contains(&self.timeout_rate) {
            return Err("timeout_rate");
        }
        Ok(())
    }
}

/// One sandbox provider (`sandbox_a`, `sandbox_b`...).
pub struct SandboxProvider {
    name: String,
    record: SandboxRecord,
    faults: RwLock<SandboxFaults>,
    /// A charge not committed this long after its call arrived is dropped,
    /// never committed later: the engine gave up on the call by then, and a
    /// late charge is exactly what a look-up's "not found" must not miss.
    call_timeout: Duration,
    /// Signs and verifies webhooks ([`DEFAULT_WEBHOOK_SECRET`] unless
    /// configured).
    webhook_secret: String,
}

/// What a payment method token asks the sandbox to do.
enum Token {
    Charge { lose_first_answer: bool },
    Decline(&'static Decline),
    ProviderError,
    RateLimited,
    Unknown,
}

/// A decline the sandbox answers for a payment method token.
struct Decline {
    token: &'static str,
    class: OutcomeClass,
    code: &'static str,
    message: &'static str,
}

/// The tokens that decline, and how: read for charges by token, and for
/// `charge.failed` webhooks by code.
const DECLINES: &[Decline] = &[
    Decline {
        token: "pm_card_declined",
        class: OutcomeClass::HardDecline,
        code: "card_declined",
        message: "Your card was declined.",
    },
    Decline {
        token: "pm_card_expired",
        class: OutcomeClass::HardDecline,
        code: "expired_card",
        message: "Your card has expired.",
    },
    Decline {
        token: "pm_card_insufficient_funds",
        class: OutcomeClass::SoftDecline,
        code: "insufficient_funds",
        message: "Your card has insufficient funds.",
    },
];

fn token(payment_method: &str) -> Token {
    if let Some(decline) = DECLINES.iter().find(|d| d.token == payment_method) {
        return Token::Decline(decline);
    }
    match payment_method {
        "pm_card_visa" => Token::Charge {
            lose_first_answer: false,
        },
        "pm_card_timeout_after_charge" => Token::Charge {
            lose_first_answer: true,
        },
        "pm_card_provider_error" => Token::ProviderError,
        "pm_card_rate_limited" => Token::RateLimited,
        _ => Token::Unknown,
    }
}

/// The class of a decline known by its code; a code the sandbox does not
/// answer with is a hard decline (never retry what is not understood).
fn decline_class(code: Option<&str>) -> OutcomeClass {
    code.and_then(|code| DECLINES.iter().find(|d| d.code == code))
        .map_or(OutcomeClass::HardDecline, |d| d.class)
}

/// A recorded charge as a look-up finds it.
fn charged(charge: SandboxCharge) -> LookupResult {
    LookupResult::Charged {
        provider_payment_id: charge.id,
        amount: charge.amount,
        currency: charge.currency,
    }
}

fn answer(
    class: OutcomeClass,
    http_status: u16,
    code: Option<&str>,
    message: Option<&str>,
    charge_id: Option<&str>,
) -> ProviderResponse {
    ProviderResponse {
        class,
        provider_payment_id: charge_id.map(str::to_string),
        code: code.map(str::to_string),
        message: message.map(str::to_string),
        raw: serde_json::json!({
            "http_status": http_status,
            "id": charge_id,
            "code": code,
            "message": message,
        })
        .to_string(),
        retry_after_ms: None,
    }
}

impl SandboxProvider {
    /// `webhook_secret`: the configured secret, `None` for
    /// [`DEFAULT_WEBHOOK_SECRET`].
    pub fn new(
        name: impl Into<String>,
        record: SandboxRecord,
        faults: SandboxFaults,
        call_timeout_ms: u64,
        webhook_secret: Option<String>,
    ) -> Self {
        SandboxProvider {
            name: name.into(),
            record,
            faults: RwLock::new(faults),
            call_timeout: Duration::from_millis(call_timeout_ms),
            webhook_secret: webhook_secret
                .filter(|secret| !secret.is_empty())
                .unwrap_or_else(|| DEFAULT_WEBHOOK_SECRET.to_string()),
        }
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

    async fn make_charge(
        &self,
        request: &ChargeRequest,
        lose_first_answer: bool,
        faults: &SandboxFaults,
        deadline: Instant,
    ) -> ProviderResponse {
        let charge = SandboxCharge {
            id: format!("ch_{}", uuid::Uuid::now_v7().simple()),
            provider: self.name.clone(),
            idempotency_key: request.idempotency_key.clone(),
            merchant_id: request.merchant_id.to_string(),
            order_id: request.order_id.clone(),
            customer_id: request.customer_id.clone(),
            amount: request.amount.minor_units(),
            currency: request.currency.code().to_string(),
            payment_method: request.payment_method.clone(),
            status: "succeeded".to_string(),
            created_at: Timestamp::from_datetime(chrono::Utc::now()).to_string(),
        };
        match self.record.charge_once(&charge, deadline).await {
            Ok((stored, true)) if lose_first_answer || Self::roll(faults.timeout_rate) => {
                tracing::debug!(provider = %self.name, charge = %stored.id, "sandbox charged and lost the answer");
                ProviderResponse::synthetic(
                    OutcomeClass::Unknown,
                    "timeout",
                    "the provider did not answer in time",
                )
            }
            Ok((stored, _)) => answer(OutcomeClass::Succeeded, 200, None, None, Some(&stored.id)),
            // The record could not be written: like a provider's 500, the
            // charge may or may not exist, so the engine must look it up.
            Err(error) => {
                tracing::warn!(provider = %self.name, %error, "sandbox record write failed");
                answer(
                    OutcomeClass::Unknown,
                    500,
                    Some("api_error"),
                    Some("internal error"),
                    None,
                )
            }
        }
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
        // A repeat of a key the sandbox already charged answers with that
        // charge, whatever the token: this is what makes retrying an unknown
        // outcome safe.
        match self.record.find(&self.name, &request.idempotency_key).await {
            Ok(Some(existing)) => {
                return answer(OutcomeClass::Succeeded, 200, None, None, Some(&existing.id))
            }
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
                self.make_charge(request, lose_first_answer, &faults, deadline)
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
            Token::RateLimited => self.make_charge(request, false, &faults, deadline).await,
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

    async fn settlements(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<SettlementRecord>, ProviderError> {
        let charges = self
            .record
            .charges_between(&self.name, &from.to_string(), &to.to_string())
            .await?;
        charges
            .into_iter()
            .map(|charge| {
                let created_at = Timestamp::parse_rfc3339(&charge.created_at).ok_or_else(|| {
                    ProviderError::Malformed(format!("charge {} has no valid time", charge.id))
                })?;
                Ok(SettlementRecord {
                    provider_payment_id: charge.id,
                    kind: "charge".into(),
                    amount: charge.amount,
                    currency: charge.currency,
                    fee: 0,
                    status: charge.status,
                    created_at,
                })
            })
            .collect()
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
