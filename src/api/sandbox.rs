//! `/v1/sandbox/{provider}/…`: the sandbox's own books, fault knobs and
//! operator hooks (DESIGN §7). Registered only when a sandbox provider is
//! configured.
//!
//! The books are readable with any key, each merchant its own charges and
//! the operator all of them; the knobs and the hooks are the operator's.
//! The hooks write the sandbox's record behind the engine's back, so that
//! tests can make the provider disagree with the engine:
//!
//! | route | body | answer |
//! |---|---|---|
//! | `PATCH …/charges/{id}` | any of `amount`, `currency`, `status` (`succeeded`, `partially_refunded`, `refunded`), `fee` | 200, the charge |
//! | `DELETE …/charges/{id}` | none | 200 `{id, object, deleted}` |
//! | `POST …/charges` | `order_id`, `amount`, `currency`, optional `merchant_id` | 201, the new charge |
//!
//! A value that does not fit, or a parameter a hook does not take, is a 400
//! naming it; a charge that does not exist is a 404.

use super::auth::{Caller, Operator};
use super::error::ApiError;
use super::openapi::books::{
    DeletedCharge, Faults, FaultsUpdate, SandboxCharge, SandboxChargeCreate, SandboxChargeList,
    SandboxChargeUpdate,
};
use super::openapi::params::Page;
use super::openapi::responses::*;
use super::{input, AppState};
use crate::config::DEVELOPMENT_MERCHANT;
use crate::domain::MerchantId;
use crate::engine::validate::MAX_ID_FIELD_CHARS;
use crate::error::EngineError;
use crate::providers::sandbox::{ChargeUpdate, UnsolicitedCharge, CHARGE_STATUSES};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map, Value};

fn unknown_provider() -> ApiError {
    ApiError::Engine(EngineError::NotFound {
        resource: "provider",
    })
}

/// `GET /v1/sandbox/{provider}/charges`: what the sandbox really charged,
/// newest first, paged (`limit`, `starting_after`), optionally for one
/// `order_id`. A merchant sees its own charges, the operator everyone's:
/// they carry customers and orders.
#[utoipa::path(
    get,
    operation_id = "list_sandbox_charges",
    path = "/v1/sandbox/{provider}/charges",
    tag = "sandbox",
    security(("bearer_auth" = ["any"])),
    params(("provider" = String, Path, example = "sandbox_a", description = "A sandbox provider's name"), Page, ("order_id" = Option<String>, Query)),
    responses(
        (status = 200, description = "Charges, newest first (default limit 100)", body = SandboxChargeList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
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
#[utoipa::path(
    get,
    operation_id = "get_sandbox_faults",
    path = "/v1/sandbox/{provider}/faults",
    tag = "sandbox",
    security(("bearer_auth" = ["operator"])),
    params(("provider" = String, Path, example = "sandbox_a", description = "A sandbox provider's name")),
    responses(
        (status = 200, description = "The fault knobs", body = Faults),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
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
#[utoipa::path(
    put,
    operation_id = "update_sandbox_faults",
    path = "/v1/sandbox/{provider}/faults",
    tag = "sandbox",
    security(("bearer_auth" = ["operator"])),
    params(("provider" = String, Path, example = "sandbox_a", description = "A sandbox provider's name")),
    request_body = FaultsUpdate,
    responses(
        (status = 200, description = "The fault knobs, changed", body = Faults),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
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

/// A parameter a hook does not take: refused rather than ignored, so a
/// typo cannot pass for a change that was made.
fn unknown_param(name: &str) -> ApiError {
    ApiError::BadRequest {
        code: "parameter_unknown",
        param: Some(name.to_string()),
        message: format!("unknown parameter: {name}"),
    }
}

/// An id-like string parameter, when sent: 1 to [`MAX_ID_FIELD_CHARS`]
/// characters, not blank, no control characters (as a payment's
/// `order_id`).
fn id_param(body: &Map<String, Value>, param: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = input::optional_string(body, param)? else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Err(ApiError::invalid(
            param,
            format!("{param} must not be empty"),
        ));
    }
    if value.chars().count() > MAX_ID_FIELD_CHARS {
        return Err(ApiError::invalid(
            param,
            format!("{param} must be at most {MAX_ID_FIELD_CHARS} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            param,
            format!("{param} must not contain control characters"),
        ));
    }
    Ok(Some(value))
}

/// The fields of a `PATCH …/charges/{id}` body.
fn charge_update(body: &Map<String, Value>) -> Result<ChargeUpdate, ApiError> {
    let mut update = ChargeUpdate::default();
    for (name, value) in body {
        match name.as_str() {
            "amount" => update.amount = Some(input::amount(body)?.minor_units()),
            "currency" => update.currency = Some(input::currency(body)?.code().to_string()),
            "status" => {
                let status = value
                    .as_str()
                    .filter(|status| CHARGE_STATUSES.contains(status))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            "status",
                            format!("status must be one of {}", CHARGE_STATUSES.join(", ")),
                        )
                    })?;
                update.status = Some(status.to_string());
            }
            "fee" => {
                let fee = value.as_i64().filter(|fee| *fee >= 0).ok_or_else(|| {
                    ApiError::invalid(
                        "fee",
                        "fee must be a non-negative integer number of minor units",
                    )
                })?;
                update.fee = Some(fee);
            }
            other => return Err(unknown_param(other)),
        }
    }
    Ok(update)
}

/// `PATCH /v1/sandbox/{provider}/charges/{id}`: overwrites any of
/// `amount`, `currency`, `status`, `fee` of a charge; the others keep
/// their value.
#[utoipa::path(
    patch,
    operation_id = "update_sandbox_charge",
    path = "/v1/sandbox/{provider}/charges/{id}",
    tag = "sandbox",
    security(("bearer_auth" = ["operator"])),
    params(("provider" = String, Path, example = "sandbox_a", description = "A sandbox provider's name"), ("id" = String, Path, description = "`ch_…`")),
    request_body = SandboxChargeUpdate,
    responses(
        (status = 200, description = "The charge, changed", body = SandboxCharge),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn update_charge(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (provider, id) = path.into_inner();
    let body = input::read_body(&req, payload).await?;
    let update = charge_update(&input::json_object(&body)?)?;
    let charge = state
        .handle
        .update_sandbox_charge(&provider, &id, &update)
        .await?;
    Ok(HttpResponse::Ok().json(charge))
}

/// `DELETE /v1/sandbox/{provider}/charges/{id}`: the provider forgets the
/// charge and its refunds.
#[utoipa::path(
    delete,
    operation_id = "delete_sandbox_charge",
    path = "/v1/sandbox/{provider}/charges/{id}",
    tag = "sandbox",
    security(("bearer_auth" = ["operator"])),
    params(("provider" = String, Path, example = "sandbox_a", description = "A sandbox provider's name"), ("id" = String, Path, description = "`ch_…`")),
    responses(
        (status = 200, description = "Deleted", body = DeletedCharge),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn delete_charge(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (provider, id) = path.into_inner();
    state.handle.delete_sandbox_charge(&provider, &id).await?;
    Ok(HttpResponse::Ok().json(json!({ "id": id, "object": "charge", "deleted": true })))
}

/// `POST /v1/sandbox/{provider}/charges`: a charge the engine never asked
/// for, of `amount` in `currency` for `order_id`, for `merchant_id` (by
/// default the operator key's own merchant, else `default`).
#[utoipa::path(
    post,
    operation_id = "create_sandbox_charge",
    path = "/v1/sandbox/{provider}/charges",
    tag = "sandbox",
    security(("bearer_auth" = ["operator"])),
    params(("provider" = String, Path, example = "sandbox_a", description = "A sandbox provider's name")),
    request_body = SandboxChargeCreate,
    responses(
        (status = 201, description = "The new charge", body = SandboxCharge,
            links(
                ("UpdateCharge" = (operation_id = "update_sandbox_charge", parameters(("provider" = "$request.path.provider"), ("id" = "$response.body#/id")))),
                ("DeleteCharge" = (operation_id = "delete_sandbox_charge", parameters(("provider" = "$request.path.provider"), ("id" = "$response.body#/id")))),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn create_charge(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = input::read_body(&req, payload).await?;
    let body = input::json_object(&body)?;
    if let Some(other) = body.keys().find(|name| {
        !matches!(
            name.as_str(),
            "order_id" | "amount" | "currency" | "merchant_id"
        )
    }) {
        return Err(unknown_param(other));
    }
    let order_id = id_param(&body, "order_id")?.ok_or_else(|| ApiError::missing("order_id"))?;
    let amount = input::amount(&body)?;
    let currency = input::currency(&body)?;
    let merchant_id = match id_param(&body, "merchant_id")? {
        Some(merchant) => MerchantId::new(merchant),
        None => operator
            .merchant
            .unwrap_or_else(|| MerchantId::new(DEVELOPMENT_MERCHANT)),
    };
    let unsolicited = UnsolicitedCharge {
        merchant_id,
        order_id,
        amount,
        currency,
    };
    let charge = state
        .handle
        .create_sandbox_charge(&path, &unsolicited)
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(charge))
}
