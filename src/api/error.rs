//! The one place where errors become HTTP responses.
//!
//! Every error leaves as DESIGN §6's envelope:
//! `{"error": {"type", "code", "message", "param"}}`, plus `payment_id` on the
//! order-level conflicts so a client can find the payment that blocks it.

use crate::domain::PaymentId;
use crate::error::EngineError;
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
    /// No credentials, or wrong ones.
    Unauthenticated {
        code: &'static str,
        message: &'static str,
    },
    /// No such route.
    RouteNotFound,
    /// The path exists, the method does not; `allow` lists the methods.
    MethodNotAllowed { allow: String },
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
        write!(f, "{}", self.body().message)
    }
}

/// The inside of the error envelope.
#[derive(Debug, Serialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: &'static str,
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

fn body(
    kind: &'static str,
    code: &'static str,
    message: String,
    param: Option<String>,
) -> ErrorBody {
    ErrorBody {
        kind,
        code,
        message,
        param,
        payment_id: None,
    }
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Engine(error) => match error {
                EngineError::InvalidParam { .. } => StatusCode::BAD_REQUEST,
                EngineError::NotFound { .. } => StatusCode::NOT_FOUND,
                EngineError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
                EngineError::IdempotencyKeyInUse
                | EngineError::OrderAlreadyPaid { .. }
                | EngineError::OrderPaymentInProgress { .. } => StatusCode::CONFLICT,
                EngineError::ShuttingDown | EngineError::Store(StoreError::Closed) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                EngineError::Config(_)
                | EngineError::Store(_)
                | EngineError::Provider(_)
                | EngineError::Internal(_)
                | EngineError::ActorRetired => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }

    fn body(&self) -> ErrorBody {
        const INVALID: &str = "invalid_request_error";
        match self {
            ApiError::BadRequest {
                code,
                param,
                message,
            } => body(INVALID, code, message.clone(), param.clone()),
            ApiError::BodyTooLarge { limit_bytes } => body(
                INVALID,
                "body_too_large",
                format!("the request body exceeds {limit_bytes} bytes"),
                None,
            ),
            ApiError::Unauthenticated { code, message } => {
                body("authentication_error", code, message.to_string(), None)
            }
            ApiError::MethodNotAllowed { allow } => body(
                INVALID,
                "method_not_allowed",
                format!("this path accepts {allow}"),
                None,
            ),
            ApiError::RouteNotFound => {
                body("not_found", "route_not_found", "no such route".into(), None)
            }
            ApiError::Engine(error) => match error {
                EngineError::InvalidParam { param, message } => body(
                    INVALID,
                    "parameter_invalid",
                    message.clone(),
                    Some(param.clone()),
                ),
                EngineError::NotFound { resource } => body(
                    "not_found",
                    "resource_missing",
                    format!("no such {resource}"),
                    Some("id".into()),
                ),
                EngineError::IdempotencyKeyReused => body(
                    "idempotency_error",
                    "idempotency_key_reused",
                    error.to_string(),
                    Some("Idempotency-Key".into()),
                ),
                EngineError::IdempotencyKeyInUse => body(
                    "conflict",
                    "idempotency_key_in_use",
                    error.to_string(),
                    Some("Idempotency-Key".into()),
                ),
                EngineError::OrderAlreadyPaid { payment_id } => ErrorBody {
                    payment_id: Some(*payment_id),
                    ..body(
                        "conflict",
                        "order_already_paid",
                        format!("order already paid by payment {payment_id}"),
                        Some("order_id".into()),
                    )
                },
                EngineError::OrderPaymentInProgress { payment_id } => ErrorBody {
                    payment_id: Some(*payment_id),
                    ..body(
                        "conflict",
                        "order_payment_in_progress",
                        format!("order has payment {payment_id} in progress"),
                        Some("order_id".into()),
                    )
                },
                EngineError::ShuttingDown | EngineError::Store(StoreError::Closed) => body(
                    "api_error",
                    "service_unavailable",
                    "the engine is shutting down; retry".into(),
                    None,
                ),
                EngineError::Config(_)
                | EngineError::Store(_)
                | EngineError::Provider(_)
                | EngineError::Internal(_)
                | EngineError::ActorRetired => body(
                    "api_error",
                    "internal_error",
                    "an internal error occurred".into(),
                    None,
                ),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status();
        if status.is_server_error() {
            // The client gets a generic message; the details go to the log.
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = HttpResponse::build(status);
        // Answers that mean "try again shortly" say when.
        let retryable = matches!(
            self,
            ApiError::Engine(EngineError::IdempotencyKeyInUse | EngineError::ShuttingDown)
        ) || status == StatusCode::SERVICE_UNAVAILABLE;
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.clone()));
        }
        if retryable {
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                RETRY_AFTER_SECS.to_string(),
            ));
        }
        response.json(Envelope { error: self.body() })
    }
}
