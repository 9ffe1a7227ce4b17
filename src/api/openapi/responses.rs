//! The error answers, one reusable OpenAPI response per status, each with
//! the error envelope as its body. A route's `#[utoipa::path]` lists the
//! ones it can answer; the codes behind each are [`super::super::error`]'s.
#![allow(dead_code)]

use super::schemas::ErrorEnvelope;
use utoipa::ToResponse;

/// `invalid_request_error`: a parameter is missing or invalid (named in
/// `param`), the JSON is malformed, or a header is sent twice. Nothing
/// changed.
#[derive(ToResponse)]
pub struct BadRequest(ErrorEnvelope);

/// `authentication_error`: no API key, or an unknown one.
#[derive(ToResponse)]
pub struct Unauthorized(ErrorEnvelope);

/// `permission_error`: the key is valid but not for this (an operator
/// action with a merchant key, `operator_key_required`; a merchant's
/// resources with an operator-only key, `merchant_key_required`).
#[derive(ToResponse)]
pub struct Forbidden(ErrorEnvelope);

/// `not_found`: no such resource, or another merchant's (`resource_missing`).
#[derive(ToResponse)]
pub struct NotFound(ErrorEnvelope);

/// `invalid_request_error` / `request_timeout`: the body did not arrive in
/// time (`server.body_timeout_ms`).
#[derive(ToResponse)]
pub struct RequestTimeout(ErrorEnvelope);

/// `conflict`: the order is already paid or has a payment in progress
/// (`payment_id` names it), the `Idempotency-Key` is in flight elsewhere
/// (retry after `Retry-After`), or the discrepancy is already resolved.
#[derive(ToResponse)]
pub struct Conflict(ErrorEnvelope);

/// `invalid_request_error` / `body_too_large`: the body exceeds 64 KiB.
#[derive(ToResponse)]
pub struct PayloadTooLarge(ErrorEnvelope);

/// `idempotency_error`: the `Idempotency-Key` was used with another request.
#[derive(ToResponse)]
pub struct UnprocessableEntity(ErrorEnvelope);

/// `rate_limit_error`: the key is over its rate; retry after `Retry-After`.
/// Nothing was stored.
#[derive(ToResponse)]
pub struct TooManyRequests(ErrorEnvelope);

/// `api_error`: shutting down, overloaded or not ready; retry after
/// `Retry-After`.
#[derive(ToResponse)]
pub struct ServiceUnavailable(ErrorEnvelope);
