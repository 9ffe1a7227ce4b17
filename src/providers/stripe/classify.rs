//! The one place a Stripe answer becomes an outcome: a class for a charge
//! (the table in the adapter's docs), a status for a refund, a result for a
//! look-up, a record for a settlement line. Every opinion about a code is
//! read from [`codes`]; this file only decides which table to read.

use super::client::{Answer, CallError};
use super::codes;
use super::wire::{BalanceTransaction, PaymentIntent};
use super::StripeProvider;
use crate::domain::{OutcomeClass, Timestamp};
use crate::providers::{
    LookupResult, ProviderError, ProviderResponse, RefundResponse, RefundStatus, SettlementRecord,
};

impl StripeProvider {
    /// The class of a charge answer (see the adapter's table).
    pub(super) fn classify_charge(&self, answer: Result<Answer, CallError>) -> ProviderResponse {
        match answer {
            Err(error) => charge_call_error(&error),
            Ok(answer) if answer.status.is_success() => charge_success(&answer),
            Ok(answer) => charge_error_status(&answer),
        }
    }

    /// The status of a refund answer: a refund that may have run (no
    /// answer, `409`, `5xx`) or was only deferred (`429`) is unknown, to be
    /// retried with the same key; other refusals moved nothing.
    pub(super) fn classify_refund(&self, answer: Result<Answer, CallError>) -> RefundResponse {
        match answer {
            Err(error) => refund_call_error(&error),
            Ok(answer) if answer.status.is_success() => refund_success(&answer),
            Ok(answer) => refund_error_status(&answer),
        }
    }

    /// What the PaymentIntents found for a look-up say: one succeeded is a
    /// charge; one still in flight (or in a status we do not know) may yet
    /// charge, so "not found" would be a lie and the caller must ask again
    /// later; anything else charged nothing.
    pub(super) fn lookup_result(
        &self,
        intents: &[PaymentIntent],
    ) -> Result<LookupResult, ProviderError> {
        let in_class = |class: OutcomeClass| {
            intents.iter().find(move |intent| {
                codes::PAYMENT_INTENT_STATUSES.classify(&intent.status) == class
            })
        };
        if let Some(intent) = in_class(OutcomeClass::Succeeded) {
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
        if let Some(intent) = in_class(OutcomeClass::Unknown) {
            return Err(ProviderError::Unreachable(format!(
                "stripe provider {}: payment intent {} is {}: outcome not final",
                self.name, intent.id, intent.status
            )));
        }
        Ok(LookupResult::NotFound)
    }

    /// A non-`2xx` answer to a read (look-up, settlements) as an error.
    pub(super) fn read_error(&self, answer: &Answer) -> ProviderError {
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

    /// A read that got no answer.
    pub(super) fn unreachable(&self, error: CallError) -> ProviderError {
        ProviderError::Unreachable(format!("stripe provider {}: {}", self.name, error.detail()))
    }

    /// The settlement line of a balance transaction, or `None` for the
    /// kinds the reconciler does not compare (payouts, fees...).
    pub(super) fn settlement_record(
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
        // Only a charge line's source is the charge: its metadata is the
        // PaymentIntent's, copied by Stripe at confirmation.
        let charge = source.charge().filter(|_| kind == "charge");
        let metadata = |key: &str| {
            charge
                .and(source.metadata(key))
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        };
        Ok(Some(SettlementRecord {
            provider_payment_id,
            kind: kind.to_string(),
            amount: transaction.amount,
            currency: transaction.currency.to_ascii_lowercase(),
            fee: transaction.fee,
            status: transaction.status,
            created_at,
            idempotency_key: metadata("idempotency_key"),
            merchant_id: metadata("merchant_id"),
            order_id: metadata("order_id"),
            amount_refunded: charge.and_then(|c| c.amount_refunded).unwrap_or(0),
        }))
    }
}

/// A charge that got no answer: safe to retry elsewhere only if it never
/// left.
fn charge_call_error(error: &CallError) -> ProviderResponse {
    let (class, code) = match error {
        CallError::NotSent(_) => (OutcomeClass::TransientNotCharged, "connection_failed"),
        CallError::Lost { timeout: true, .. } => (OutcomeClass::Unknown, "timeout"),
        CallError::Lost { .. } => (OutcomeClass::Unknown, "connection_lost"),
        CallError::Unbuildable(_) => (OutcomeClass::Invalid, "invalid_request"),
    };
    ProviderResponse::synthetic(class, code, error.detail())
}

/// A `2xx` charge answer: the PaymentIntent's status decides.
fn charge_success(answer: &Answer) -> ProviderResponse {
    let status = answer.status.as_u16();
    match serde_json::from_str::<PaymentIntent>(&answer.body) {
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
    }
}

/// A non-`2xx` charge answer: a `402` is a card error, read by its codes;
/// anything else by its status.
fn charge_error_status(answer: &Answer) -> ProviderResponse {
    let status = answer.status.as_u16();
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
        message: Some(error.message.unwrap_or_else(|| format!("HTTP {status}"))),
        raw: answer.raw(),
        // Only a wait before retrying means anything: Stripe's delay is
        // about when it will take the call again, not about an outcome.
        retry_after_ms: if class == OutcomeClass::TransientNotCharged {
            answer.retry_after_ms
        } else {
            None
        },
    }
}

/// The code and message of a PaymentIntent that did not succeed: its last
/// payment error's, else one naming its status.
pub(super) fn intent_reason(intent: &PaymentIntent) -> (Option<String>, Option<String>) {
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

/// A refund that got no answer: only one that could not be built is known
/// not to have run.
fn refund_call_error(error: &CallError) -> RefundResponse {
    let (status, code) = match error {
        CallError::Unbuildable(_) => (RefundStatus::Failed, "invalid_request"),
        CallError::NotSent(_) => (RefundStatus::Unknown, "connection_failed"),
        CallError::Lost { timeout: true, .. } => (RefundStatus::Unknown, "timeout"),
        CallError::Lost { .. } => (RefundStatus::Unknown, "connection_lost"),
    };
    let message = error.detail().to_string();
    RefundResponse {
        status,
        provider_refund_id: None,
        code: Some(code.into()),
        raw: serde_json::json!({ "engine": code, "message": message }).to_string(),
        message: Some(message),
    }
}

/// A `2xx` refund answer: the Refund's status decides.
fn refund_success(answer: &Answer) -> RefundResponse {
    match serde_json::from_str::<super::wire::Refund>(&answer.body) {
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
    }
}

/// A non-`2xx` refund answer, by its status's class.
fn refund_error_status(answer: &Answer) -> RefundResponse {
    let status_code = answer.status.as_u16();
    let error = answer.error().unwrap_or_default();
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
