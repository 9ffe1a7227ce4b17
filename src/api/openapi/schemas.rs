//! The OpenAPI schemas of payments, refunds, audit events, providers and the
//! error envelope.
//!
//! Handlers answer domain types with their own `Serialize` (or
//! `serde_json::Value`), so these structs exist only to describe that JSON
//! for the document: each mirrors one answer field by field. They are never
//! built; `tests/integration/openapi.rs` and the fuzzer in `.ci/run` check
//! them against what the server really sends.
#![allow(dead_code)]

use std::collections::BTreeMap;
use utoipa::ToSchema;

/// The error envelope of every 4xx and 5xx answer (DESIGN §6).
#[derive(ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

/// What went wrong, and which parameter caused it.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// The class of error; it fixes the status code.
    #[schema(inline)]
    pub r#type: ErrorType,
    /// A stable, machine-readable code (`parameter_missing`, `resource_missing`...).
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// The request parameter (body field, query parameter, header or path
    /// segment) that caused the error, if one did.
    pub param: Option<String>,
    /// On `order_already_paid` and `order_payment_in_progress`: the payment
    /// that holds the order.
    pub payment_id: Option<String>,
}

/// The `type` of an error.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ErrorType {
    InvalidRequestError,
    AuthenticationError,
    PermissionError,
    NotFound,
    Conflict,
    IdempotencyError,
    RateLimitError,
    ApiError,
}

/// The body of `POST /v1/payments`. Unknown fields are ignored.
#[derive(ToSchema)]
pub struct PaymentCreate {
    /// Minor units (cents), 1 to 99 999 999 999.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: i64,
    /// ISO 4217 code, any case.
    #[schema(example = "usd", pattern = "^[A-Za-z]{3}$")]
    pub currency: String,
    #[schema(min_length = 1, max_length = 255)]
    pub customer_id: String,
    /// At most one successful payment per order.
    #[schema(min_length = 1, max_length = 255)]
    pub order_id: String,
    /// A sandbox token (`pm_card_visa`, `pm_card_declined`...) or a provider's.
    #[schema(example = "pm_card_visa", min_length = 1, max_length = 255)]
    pub payment_method: String,
    pub description: Option<String>,
    /// String values, at most 50 keys.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Pin one provider by name.
    pub provider: Option<String>,
}

/// Where a payment is in its lifecycle (DESIGN §4).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum PaymentStatus {
    Processing,
    Succeeded,
    Failed,
    Pending,
    RetryScheduled,
    NeedsReview,
    PartiallyRefunded,
    Refunded,
}

/// A payment, with its attempts.
#[derive(ToSchema)]
pub struct Payment {
    /// `pay_…`
    pub id: String,
    /// Always `payment`.
    pub object: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub customer_id: String,
    pub order_id: String,
    pub payment_method: String,
    pub description: Option<String>,
    pub provider: Option<String>,
    pub provider_payment_id: Option<String>,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    /// RFC 3339; set while `retry_scheduled`.
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<Attempt>,
    /// The anomaly rules that flagged the payment.
    pub anomaly_flags: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One call of one provider for a payment.
#[derive(ToSchema)]
pub struct Attempt {
    /// `att_…`
    pub id: String,
    pub number: u32,
    pub provider: String,
    /// `processing`, `succeeded`, `hard_decline`, `soft_decline`,
    /// `transient_not_charged`, `unknown` or `invalid`.
    pub outcome: String,
    pub code: Option<String>,
    pub latency_ms: Option<u64>,
    /// Whatever the provider told us, on every attempt.
    pub provider_payment_id: Option<String>,
    pub created_at: String,
}

/// A page of payments, newest first.
#[derive(ToSchema)]
pub struct PaymentList {
    pub data: Vec<Payment>,
    pub has_more: bool,
}

/// One entry of a payment's audit trail.
#[derive(ToSchema)]
pub struct PaymentEvent {
    /// `evt_…`
    pub id: String,
    pub payment_id: String,
    /// `payment.created`, `attempt.started`, `provider.called`...
    pub r#type: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub attempt_id: Option<String>,
    /// Details of the event; their shape depends on `type`.
    pub data: serde_json::Value,
    pub created_at: String,
}

/// A payment's audit trail, oldest first (always complete).
#[derive(ToSchema)]
pub struct PaymentEventList {
    pub data: Vec<PaymentEvent>,
    pub has_more: bool,
}

/// Why a refund is made.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RefundReason {
    Duplicate,
    Fraudulent,
    RequestedByCustomer,
}

/// Where a refund is.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
    Failed,
}

/// The body of `POST /v1/payments/{id}/refunds`; an empty body refunds
/// all that remains.
#[derive(ToSchema)]
pub struct RefundCreate {
    /// Minor units; default: all that remains.
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: Option<i64>,
    pub reason: Option<RefundReason>,
}

/// A refund of (part of) a payment.
#[derive(ToSchema)]
pub struct Refund {
    /// `re_…`
    pub id: String,
    /// Always `refund`.
    pub object: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<RefundReason>,
    pub status: RefundStatus,
    pub failure_code: Option<String>,
    pub provider: Option<String>,
    pub provider_refund_id: Option<String>,
    pub created_at: String,
    pub updated_at: Option<String>,
}

/// A page of a payment's refunds, oldest first.
#[derive(ToSchema)]
pub struct RefundList {
    pub data: Vec<Refund>,
    pub has_more: bool,
}

/// A provider's fee: fixed part plus a percentage.
#[derive(ToSchema)]
pub struct Fee {
    pub fixed: i64,
    /// Hundredths of a percent (290 = 2.90 %).
    pub percent_bps: i64,
}

/// A provider's configuration and live health.
#[derive(ToSchema)]
pub struct Provider {
    /// Always `provider`.
    pub object: String,
    /// `sandbox`, `stripe`, `adyen` or `wallet`.
    pub kind: String,
    /// The currencies it takes; `null`: every one.
    pub currencies: Option<Vec<String>>,
    pub priority: u32,
    pub weight: u32,
    /// Fees by currency.
    pub fees: BTreeMap<String, Fee>,
    pub name: String,
    pub enabled: bool,
    /// `closed`, `open`, `half_open` or `forced_open`.
    pub circuit_state: String,
    pub circuit_transitions: u64,
    pub window_failure_rate: f64,
    pub window_slow_call_rate: f64,
    pub in_flight: u32,
    pub max_in_flight: u32,
    pub calls: u64,
    pub succeeded: u64,
    pub declined: u64,
    pub failed: u64,
    pub rejected: u64,
    pub failure_rate: f64,
    pub success_rate: f64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
}

/// Every configured provider.
#[derive(ToSchema)]
pub struct ProviderList {
    pub data: Vec<Provider>,
    pub has_more: bool,
}

/// The body of `PATCH /v1/providers/{name}`: the switches to change.
#[derive(ToSchema)]
pub struct ProviderUpdate {
    /// `false` drains the provider: no new attempts are routed to it.
    pub enabled: Option<bool>,
    /// Holds its circuit open.
    pub force_open: Option<bool>,
}

/// What `/healthz` and `/readyz` answer when all is well.
#[derive(ToSchema)]
pub struct ProbeStatus {
    /// `ok` (liveness) or `ready` (readiness).
    pub status: String,
}
