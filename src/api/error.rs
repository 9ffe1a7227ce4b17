//! The one place where errors become HTTP responses.
//!
//! Every error leaves as DESIGN §6's envelope:
//! `{"error": {"type", "code", "message", "param"}}`, plus `payment_id` on the
//! order-level conflicts so a client can find the payment that blocks it.

use crate::domain::PaymentId;
use crate::error::EngineError;
use crate::providers::WebhookError;
use crate::store::StoreError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use std::fmt;

/// What `Retry-After` says on answers that mean "try again shortly" (a key
/// in flight elsewhere, an instance shutting down).
const RETRY_AFTER_SECS: u64 = 1;

/// An error of the HTTP layer.
#[derive(Debug)]
pub enum ApiError {
    /// Anything the engine refused or failed at.
    Engine(EngineError),
    /// A 400 decided by the HTTP layer (missing field, wrong JSON type...).
    BadRequest {
        code: &'static str,
        param: Option<String>,
        message: String,
    },
    /// The body exceeds the limit.
    BodyTooLarge { limit_bytes: usize },
    /// The body did not arrive within `server.body_timeout_ms`.
    RequestTimeout { timeout_ms: u64 },
    /// No credentials, or wrong ones.
    Unauthenticated {
        code: &'static str,
        message: &'static str,
    },
    /// A valid key used beyond its role (a merchant key on an operator
    /// action, an operator-only key on a merchant's resources).
    Forbidden {
        code: &'static str,
        message: &'static str,
    },
    /// `/readyz`: the store is unreachable or not migrated. The cause is
    /// logged, never answered: it may name hosts, schemas or tables.
    NotReady,
    /// No such route.
    RouteNotFound,
    /// The path exists, the method does not; `allow` lists the methods.
    MethodNotAllowed { allow: String },
    /// The key is over `[server.rate_limit]`; it may try again after
    /// `retry_after_secs` (at least 1), the answer's `Retry-After`.
    RateLimited { retry_after_secs: u64 },
}

impl ApiError {
    pub fn missing(param: &str) -> Self {
        ApiError::BadRequest {
            code: "parameter_missing",
            param: Some(param.to_string()),
            message: format!("missing required parameter: {param}"),
        }
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code: "parameter_invalid",
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    pub fn malformed_json(reason: impl fmt::Display) -> Self {
        ApiError::BadRequest {
            code: "invalid_json",
            param: None,
            message: format!("the request body is not valid JSON: {reason}"),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        ApiError::Engine(error)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.describe().message)
    }
}

/// The `type` of an error (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    NotFound,
    Conflict,
    IdempotencyError,
    RateLimitError,
    #[serde(rename = "api_error")]
    Server,
}

/// Everything an error answers: one row of the table in
/// [`ApiError::describe`].
struct Described {
    status: StatusCode,
    kind: ErrorType,
    code: &'static str,
    message: String,
    param: Option<String>,
    payment_id: Option<PaymentId>,
    /// "Try again shortly": the answer carries `Retry-After`.
    retry_after: bool,
}

fn row(
    status: StatusCode,
    kind: ErrorType,
    code: &'static str,
    message: impl Into<String>,
    param: Option<&str>,
) -> Described {
    Described {
        status,
        kind,
        code,
        message: message.into(),
        param: param.map(str::to_string),
        payment_id: None,
        retry_after: false,
    }
}

/// The inside of the error envelope.
#[derive(Debug, Serialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: ErrorType,
    code: &'static str,
    message: String,
    param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_id: Option<PaymentId>,
}

#[derive(Serialize)]
struct Envelope {
    error: ErrorBody,
}

impl ApiError {
    /// The one table: status, type, code, message and parameter of every
    /// error the API can answer.
    fn describe(&self) -> Described {
        use ErrorType::*;
        use StatusCode as S;
        match self {
            ApiError::BadRequest {
                code,
                param,
                message,
            } => row(
                S::BAD_REQUEST,
                InvalidRequestError,
                code,
                message,
                param.as_deref(),
            ),
            ApiError::BodyTooLarge { limit_bytes } => row(
                S::PAYLOAD_TOO_LARGE,
                InvalidRequestError,
                "body_too_large",
                format!("the request body exceeds {limit_bytes} bytes"),
                None,
            ),
            ApiError::RequestTimeout { timeout_ms } => row(
                S::REQUEST_TIMEOUT,
                InvalidRequestError,
                "request_timeout",
                format!("the request body did not arrive within {timeout_ms} ms"),
                None,
            ),
            ApiError::Unauthenticated { code, message } => {
                row(S::UNAUTHORIZED, AuthenticationError, code, *message, None)
            }
            ApiError::Forbidden { code, message } => {
                row(S::FORBIDDEN, PermissionError, code, *message, None)
            }
            ApiError::NotReady => row(
                S::SERVICE_UNAVAILABLE,
                Server,
                "not_ready",
                "not ready to serve: the database is unreachable or not migrated",
                None,
            ),
            ApiError::RouteNotFound => row(
                S::NOT_FOUND,
                NotFound,
                "route_not_found",
                "no such route",
                None,
            ),
            ApiError::MethodNotAllowed { allow } => row(
                S::METHOD_NOT_ALLOWED,
                InvalidRequestError,
                "method_not_allowed",
                format!("this path accepts {allow}"),
                None,
            ),
            ApiError::RateLimited { retry_after_secs } => row(
                S::TOO_MANY_REQUESTS,
                RateLimitError,
                "rate_limit_exceeded",
                format!("too many requests for this API key; retry in {retry_after_secs} s"),
                None,
            ),
            ApiError::Engine(error) => describe_engine(error),
        }
    }
}

fn describe_engine(error: &EngineError) -> Described {
    use ErrorType::*;
    use StatusCode as S;
    let retry_later = |code, message: &str| Described {
        retry_after: true,
        ..row(S::SERVICE_UNAVAILABLE, Server, code, message, None)
    };
    match error {
        EngineError::InvalidParam { param, message } => row(
            S::BAD_REQUEST,
            InvalidRequestError,
            "parameter_invalid",
            message.clone(),
            Some(param),
        ),
        EngineError::NotFound { resource } => row(
            S::NOT_FOUND,
            NotFound,
            "resource_missing",
            format!("no such {resource}"),
            Some("id"),
        ),
        EngineError::AmountTooLarge { .. } => row(
            S::BAD_REQUEST,
            InvalidRequestError,
            "amount_too_large",
            error.to_string(),
            Some("amount"),
        ),
        EngineError::NotRefundable { .. } => row(
            S::BAD_REQUEST,
            InvalidRequestError,
            "payment_not_refundable",
            error.to_string(),
            Some("id"),
        ),
        EngineError::IdempotencyKeyReused => row(
            S::UNPROCESSABLE_ENTITY,
            IdempotencyError,
            "idempotency_key_reused",
            error.to_string(),
            Some("Idempotency-Key"),
        ),
        EngineError::IdempotencyKeyInUse => Described {
            retry_after: true,
            ..row(
                S::CONFLICT,
                Conflict,
                "idempotency_key_in_use",
                error.to_string(),
                Some("Idempotency-Key"),
            )
        },
        EngineError::OrderAlreadyPaid { payment_id } => Described {
            payment_id: Some(*payment_id),
            ..row(
                S::CONFLICT,
                Conflict,
                "order_already_paid",
                format!("order already paid by payment {payment_id}"),
                Some("order_id"),
            )
        },
        EngineError::OrderPaymentInProgress { payment_id } => Described {
            payment_id: Some(*payment_id),
            ..row(
                S::CONFLICT,
                Conflict,
                "order_payment_in_progress",
                format!("order has payment {payment_id} in progress"),
                Some("order_id"),
            )
        },
        EngineError::ShuttingDown | EngineError::Store(StoreError::Closed) => {
            retry_later("service_unavailable", "the engine is shutting down; retry")
        }
        EngineError::Overloaded { .. } => retry_later("overloaded", &error.to_string()),
        EngineError::Store(StoreError::Overloaded) => retry_later(
            "overloaded",
            "the engine is at capacity (store writes); retry shortly",
        ),
        EngineError::OrderBusy => retry_later("order_busy", &error.to_string()),
        EngineError::AlreadyResolved => row(
            S::CONFLICT,
            Conflict,
            "discrepancy_already_resolved",
            error.to_string(),
            Some("id"),
        ),
        EngineError::Webhook(WebhookError::Unsupported(_)) => row(
            S::NOT_FOUND,
            NotFound,
            "webhooks_unsupported",
            error.to_string(),
            Some("provider"),
        ),
        EngineError::Webhook(refused) => row(
            S::BAD_REQUEST,
            InvalidRequestError,
            match refused {
                WebhookError::BadSignature(_) => "webhook_signature_invalid",
                WebhookError::Stale { .. } => "webhook_timestamp_stale",
                _ => "webhook_malformed",
            },
            error.to_string(),
            None,
        ),
        EngineError::Config(_)
        | EngineError::Store(_)
        | EngineError::Provider(_)
        | EngineError::IllegalTransition(_)
        | EngineError::Internal(_) => row(
            S::INTERNAL_SERVER_ERROR,
            Server,
            "internal_error",
            "an internal error occurred",
            None,
        ),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.describe().status
    }

    fn error_response(&self) -> HttpResponse {
        let described = self.describe();
        // The client gets a generic message; the details go to the log
        // (`/readyz` logs its own cause, once per probe, as a warning).
        if described.status.is_server_error() && !matches!(self, ApiError::NotReady) {
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = HttpResponse::build(described.status);
        if let ApiError::RequestTimeout { .. } = self {
            // The rest of the body may still be on its way: the connection
            // cannot carry another request.
            response.force_close();
        }
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.clone()));
        }
        if let ApiError::RateLimited { retry_after_secs } = self {
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                retry_after_secs.to_string(),
            ));
        }
        if described.retry_after {
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                RETRY_AFTER_SECS.to_string(),
            ));
        }
        response.json(Envelope {
            error: ErrorBody {
                kind: described.kind,
                code: described.code,
                message: described.message,
                param: described.param,
                payment_id: described.payment_id,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(error: ApiError) -> (u16, ErrorType, &'static str) {
        let described = error.describe();
        (described.status.as_u16(), described.kind, described.code)
    }

    #[test]
    fn roles_timeouts_and_readiness_have_their_rows() {
        use ErrorType::*;
        assert_eq!(
            answer(ApiError::Forbidden {
                code: "operator_key_required",
                message: "",
            }),
            (403, PermissionError, "operator_key_required")
        );
        assert_eq!(
            answer(ApiError::RequestTimeout { timeout_ms: 10 }),
            (408, InvalidRequestError, "request_timeout")
        );
        assert_eq!(answer(ApiError::NotReady), (503, Server, "not_ready"));
        let kind = serde_json::to_value(PermissionError).unwrap();
        assert_eq!(kind, "permission_error");
    }

    #[test]
    fn a_timed_out_body_closes_the_connection() {
        let response = ApiError::RequestTimeout { timeout_ms: 10 }.error_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(!response.head().keep_alive());
    }
}
