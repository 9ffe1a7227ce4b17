//! `/v1/payments` handlers.

use super::auth::Merchant;
use super::error::ApiError;
use super::openapi::params::{IdempotencyKey, Page};
use super::openapi::responses::*;
use super::openapi::schemas::{
    Payment, PaymentCreate, PaymentEventList, PaymentList, PaymentStatus,
};
use super::{input, AppState, ListBody};
use crate::domain::PaymentId;
use crate::error::EngineError;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// The header that marks a replayed answer.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// A path id that cannot be a payment id names no payment: 404, like a
/// foreign or missing one.
pub(crate) fn payment_id(raw: &str) -> Result<PaymentId, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::Engine(EngineError::NotFound {
            resource: "payment",
        })
    })
}

/// `POST /v1/payments`: create and confirm.
#[utoipa::path(
    post,
    operation_id = "create_payment",
    path = "/v1/payments",
    tag = "payments",
    security(("bearer_auth" = ["merchant"])),
    params(IdempotencyKey),
    request_body = PaymentCreate,
    responses(
        (status = 201, description = "The payment, whatever its status: a decline is `status: failed`. \
            A replayed answer carries `Idempotent-Replayed: true`", body = Payment,
            links(
                ("GetPayment" = (operation_id = "get_payment", parameters(("id" = "$response.body#/id")))),
                ("ListPaymentEvents" = (operation_id = "list_payment_events", parameters(("id" = "$response.body#/id")))),
                ("CreateRefund" = (operation_id = "create_refund", parameters(("id" = "$response.body#/id")))),
                ("ListRefunds" = (operation_id = "list_refunds", parameters(("id" = "$response.body#/id")))),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn create(
    state: web::Data<AppState>,
    merchant: Merchant,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = input::idempotency_key(&req)?;
    let body = input::read_body(&req, payload).await?;
    let request = input::payment_request(&body)?;
    let created = state
        .handle
        .create_payment(&merchant, &key, request)
        .await?;
    // A created payment is 201 whatever its outcome: a decline is a payment
    // with `status: failed`, not an HTTP error (DESIGN §6).
    let mut response = HttpResponse::build(StatusCode::CREATED);
    response.content_type("application/json");
    if created.replayed {
        response.insert_header((REPLAYED_HEADER, "true"));
    }
    Ok(response.body(created.body))
}

/// `GET /v1/payments/{id}`.
#[utoipa::path(
    get,
    operation_id = "get_payment",
    path = "/v1/payments/{id}",
    tag = "payments",
    security(("bearer_auth" = ["merchant"])),
    params(("id" = String, Path, description = "The payment's id, `pay_…`")),
    responses(
        (status = 200, description = "The payment, with its attempts", body = Payment),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn get(
    state: web::Data<AppState>,
    merchant: Merchant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = payment_id(&path)?;
    let payment = state.handle.payment(&merchant, id).await?;
    Ok(HttpResponse::Ok().json(payment))
}

/// `GET /v1/payments`.
#[utoipa::path(
    get,
    operation_id = "list_payments",
    path = "/v1/payments",
    tag = "payments",
    security(("bearer_auth" = ["merchant"])),
    params(
        Page,
        ("customer_id" = Option<String>, Query),
        ("order_id" = Option<String>, Query),
        ("status" = Option<PaymentStatus>, Query),
        ("created_gte" = Option<String>, Query, format = DateTime, description = "RFC 3339"),
        ("created_lt" = Option<String>, Query, format = DateTime, description = "RFC 3339"),
    ),
    responses(
        (status = 200, description = "Payments, newest first", body = PaymentList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list(
    state: web::Data<AppState>,
    merchant: Merchant,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let filter = input::payment_filter(&req)?;
    let page = state.handle.list_payments(&merchant, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/payments/{id}/events`: the audit trail, oldest first.
#[utoipa::path(
    get,
    operation_id = "list_payment_events",
    path = "/v1/payments/{id}/events",
    tag = "payments",
    security(("bearer_auth" = ["merchant"])),
    params(("id" = String, Path, description = "The payment's id, `pay_…`")),
    responses(
        (status = 200, description = "The audit trail, oldest first", body = PaymentEventList),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn events(
    state: web::Data<AppState>,
    merchant: Merchant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = payment_id(&path)?;
    let events = state.handle.payment_events(&merchant, id).await?;
    Ok(HttpResponse::Ok().json(ListBody::complete(events)))
}
