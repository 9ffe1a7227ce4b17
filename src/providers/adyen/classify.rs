//! The one place an Adyen answer becomes an outcome: a class for a charge,
//! a status for a refund. What each code means is read from [`codes`];
//! this file only decides which table to read.
//!
//! Adyen answers a decline with HTTP 200 and a `resultCode`; only requests
//! it could not process get an HTTP error status.

use super::client::Answer;
use super::{codes, wire, AdyenProvider};
use crate::domain::OutcomeClass;
use crate::providers::{ProviderResponse, RefundResponse, RefundStatus};

impl AdyenProvider {
    /// An answer made up by the adapter (nothing usable came back, or
    /// nothing was sent), API key masked.
    pub(super) fn synthetic(
        &self,
        class: OutcomeClass,
        code: &str,
        message: &str,
    ) -> ProviderResponse {
        ProviderResponse::synthetic(class, code, &self.mask(message))
    }

    /// The outcome of a transport failure: refused before sending
    /// (connecting failed) is safe to retry anywhere; anything after the
    /// request may have left is unknown.
    fn classify_transport(&self, error: &reqwest::Error) -> ProviderResponse {
        let detail = crate::providers::transport::error_chain(error);
        let (class, code, message) = if error.is_builder() {
            (
                OutcomeClass::Invalid,
                "invalid_request",
                format!("the request to Adyen could not be built: {detail}"),
            )
        } else if error.is_connect() {
            (
                OutcomeClass::TransientNotCharged,
                "connection_failed",
                format!("could not connect to Adyen: {detail}"),
            )
        } else if error.is_timeout() {
            (
                OutcomeClass::Unknown,
                "timeout",
                format!("Adyen did not answer in time: {detail}"),
            )
        } else {
            (
                OutcomeClass::Unknown,
                "connection_error",
                format!("the call to Adyen failed after it was sent: {detail}"),
            )
        };
        self.synthetic(class, code, &message)
    }

    /// Every charge answer becomes an outcome here, and only here.
    pub(super) fn classify_charge(&self, answer: Answer) -> ProviderResponse {
        let (status, retry_after_ms, body) = match answer {
            Answer::Transport(error) => return self.classify_transport(&error),
            Answer::Http {
                status,
                retry_after_ms,
                body,
            } => (status, retry_after_ms, body),
        };
        let raw = self.raw(status, &body);
        if !(200..300).contains(&status) {
            return self.charge_error_status(status, retry_after_ms, &body, raw);
        }
        let payment = body
            .map_err(|error| {
                (
                    "response_unreadable",
                    format!("Adyen's answer could not be read: {error}"),
                )
            })
            .and_then(|bytes| {
                serde_json::from_slice::<wire::PaymentResponse>(&bytes).map_err(|error| {
                    (
                        "malformed_response",
                        format!("Adyen's answer is not a payment response: {error}"),
                    )
                })
            });
        match payment {
            Ok(payment) => self.charge_result(payment, raw),
            Err((code, message)) => self.unknown(code, &message, raw),
        }
    }

    /// An `unknown` charge outcome the adapter names.
    fn unknown(&self, code: &str, message: &str, raw: String) -> ProviderResponse {
        ProviderResponse {
            class: OutcomeClass::Unknown,
            provider_payment_id: None,
            code: Some(code.to_string()),
            message: Some(self.mask(message)),
            raw,
            retry_after_ms: None,
        }
    }

    /// A charge answered with an HTTP error status: Adyen could not process
    /// it; the status and `errorCode` decide.
    fn charge_error_status(
        &self,
        status: u16,
        retry_after_ms: Option<u64>,
        body: &Result<Vec<u8>, String>,
        raw: String,
    ) -> ProviderResponse {
        let error = error_response(body);
        let error_code = error.error_code.as_deref();
        let text = error.text().unwrap_or("no error message");
        let message = match (error_code, error.error_type.as_deref()) {
            (Some(code), Some(kind)) => format!("{text} (errorCode {code}, {kind})"),
            (Some(code), None) => format!("{text} (errorCode {code})"),
            _ => format!("{text} (HTTP {status})"),
        };
        ProviderResponse {
            class: codes::http_error_class(status, error_code),
            provider_payment_id: None,
            code: Some(codes::http_error_code(status, error_code)),
            message: Some(self.mask(&message)),
            raw,
            retry_after_ms,
        }
    }

    /// A payment response (HTTP 200): its `resultCode` and refusal reason
    /// decide. Authorised without a `pspReference` is unknown: there would
    /// be nothing to refund or reconcile by.
    fn charge_result(&self, payment: wire::PaymentResponse, raw: String) -> ProviderResponse {
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
                None => self.unknown(
                    "malformed_response",
                    "Adyen authorised the payment without a pspReference",
                    raw,
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
    pub(super) fn classify_refund(&self, answer: Answer) -> RefundResponse {
        let (status, body) = match answer {
            Answer::Transport(error) => return self.refund_transport(&error),
            Answer::Http { status, body, .. } => (status, body),
        };
        let raw = self.raw(status, &body);
        if !(200..300).contains(&status) {
            return self.refund_error_status(status, &body, raw);
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

    /// A refund that got no answer: failed only if it could not be built.
    fn refund_transport(&self, error: &reqwest::Error) -> RefundResponse {
        let outcome = self.classify_transport(error);
        let status = if outcome.class == OutcomeClass::Invalid {
            RefundStatus::Failed
        } else {
            RefundStatus::Unknown
        };
        RefundResponse {
            status,
            provider_refund_id: None,
            code: outcome.code,
            message: outcome.message,
            raw: outcome.raw,
        }
    }

    /// A refund answered with an HTTP error status.
    fn refund_error_status(
        &self,
        status: u16,
        body: &Result<Vec<u8>, String>,
        raw: String,
    ) -> RefundResponse {
        let error = error_response(body);
        let error_code = error.error_code.as_deref();
        let refund_status = match codes::http_error_class(status, error_code) {
            OutcomeClass::Invalid => RefundStatus::Failed,
            _ => RefundStatus::Unknown,
        };
        let text = error.text().unwrap_or("no error message");
        RefundResponse {
            status: refund_status,
            provider_refund_id: None,
            code: Some(codes::http_error_code(status, error_code)),
            message: Some(self.mask(&match error_code {
                Some(code) => format!("{text} (errorCode {code})"),
                None => format!("{text} (HTTP {status})"),
            })),
            raw,
        }
    }
}

/// The error body of an answer, or an empty one when it is not Adyen's (a
/// proxy's page): the status still classifies it.
fn error_response(body: &Result<Vec<u8>, String>) -> wire::ErrorResponse {
    body.as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<wire::ErrorResponse>(bytes).ok())
        .unwrap_or_default()
}
