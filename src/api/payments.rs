//! `/v1/payments` handlers.

use super::auth::Merchant;
use super::error::ApiError;
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
pub async fn events(
    state: web::Data<AppState>,
    merchant: Merchant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = payment_id(&path)?;
    let events = state.handle.payment_events(&merchant, id).await?;
    Ok(HttpResponse::Ok().json(ListBody::complete(events)))
}
