//! `/v1/sandbox/{provider}/…`: the sandbox's own books and fault knobs.
//! Registered only when a sandbox provider is configured.

use super::auth::Merchant;
use super::error::ApiError;
use super::{input, AppState, ListBody};
use crate::error::EngineError;
use actix_web::{web, HttpRequest, HttpResponse};

fn unknown_provider() -> ApiError {
    ApiError::Engine(EngineError::NotFound {
        resource: "provider",
    })
}

/// `GET /v1/sandbox/{provider}/charges?order_id=`: what the sandbox really
/// charged. Open without a key: it is the provider's view, not a merchant's,
/// and exists so anyone can count charges.
pub async fn charges(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let order_id = input::query_pairs(&req)?
        .into_iter()
        .find(|(name, _)| name == "order_id")
        .map(|(_, value)| value);
    let charges = state.handle.sandbox_charges(&path, order_id).await?;
    Ok(HttpResponse::Ok().json(ListBody::complete(charges)))
}

/// `GET /v1/sandbox/{provider}/faults`.
pub async fn get_faults(
    state: web::Data<AppState>,
    _merchant: Merchant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sandbox = state.handle.sandbox(&path).ok_or_else(unknown_provider)?;
    Ok(HttpResponse::Ok().json(sandbox.faults()))
}

/// `PUT /v1/sandbox/{provider}/faults`: any of `latency_ms`, `failure_rate`,
/// `timeout_rate`, `outage`; the knobs not named keep their value.
pub async fn put_faults(
    state: web::Data<AppState>,
    _merchant: Merchant,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let sandbox = state.handle.sandbox(&path).ok_or_else(unknown_provider)?;
    let body = input::read_body(&req, payload).await?;
    let changes = input::json_object(&body)?;
    let mut faults = sandbox.faults();
    for (name, value) in &changes {
        let wrong = |what: &str| ApiError::invalid(name, format!("{name} must be {what}"));
        match name.as_str() {
            "latency_ms" => {
                faults.latency_ms = value
                    .as_u64()
                    .ok_or_else(|| wrong("a non-negative integer"))?
            }
            "failure_rate" => {
                faults.failure_rate = value
                    .as_f64()
                    .ok_or_else(|| wrong("a number from 0 to 1"))?
            }
            "timeout_rate" => {
                faults.timeout_rate = value
                    .as_f64()
                    .ok_or_else(|| wrong("a number from 0 to 1"))?
            }
            "outage" => faults.outage = value.as_bool().ok_or_else(|| wrong("true or false"))?,
            _ => {}
        }
    }
    state.handle.set_sandbox_faults(&path, faults)?;
    Ok(HttpResponse::Ok().json(faults))
}
