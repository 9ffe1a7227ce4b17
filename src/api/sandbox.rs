//! `/v1/sandbox/{provider}/…`: the sandbox's own books and fault knobs.
//! Registered only when a sandbox provider is configured.
//!
//! The books are readable with any key, each merchant its own charges and
//! the operator all of them; the knobs are the operator's.

use super::auth::{Caller, Operator};
use super::error::ApiError;
use super::{input, AppState};
use crate::error::EngineError;
use actix_web::{web, HttpRequest, HttpResponse};

fn unknown_provider() -> ApiError {
    ApiError::Engine(EngineError::NotFound {
        resource: "provider",
    })
}

/// `GET /v1/sandbox/{provider}/charges`: what the sandbox really charged,
/// newest first, paged (`limit`, `starting_after`), optionally for one
/// `order_id`. A merchant sees its own charges, the operator everyone's:
/// they carry customers and orders.
pub async fn charges(
    state: web::Data<AppState>,
    Caller(principal): Caller,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = input::charge_filter(&req)?;
    filter.merchant_id = match (principal.operator, principal.merchant) {
        (true, _) => None,
        (false, Some(merchant)) => Some(merchant.as_str().to_string()),
        // Every key is a merchant's or the operator's; should one ever be
        // neither, it gets nothing rather than everyone's.
        (false, None) => {
            return Err(ApiError::Forbidden {
                code: "merchant_key_required",
                message: "this key reaches no merchant's charges",
            })
        }
    };
    let page = state.handle.sandbox_charges(&path, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/sandbox/{provider}/faults`.
pub async fn get_faults(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sandbox = state.handle.sandbox(&path).ok_or_else(unknown_provider)?;
    Ok(HttpResponse::Ok().json(sandbox.faults()))
}

/// `PUT /v1/sandbox/{provider}/faults`: any of `latency_ms`, `failure_rate`,
/// `timeout_rate`, `outage`; the knobs not named keep their value.
pub async fn put_faults(
    state: web::Data<AppState>,
    _operator: Operator,
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
