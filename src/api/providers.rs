//! `/v1/providers`: each provider's health, and draining one without a deploy.

use super::auth::{Caller, Operator};
use super::error::ApiError;
use super::openapi::responses::*;
use super::openapi::schemas::{Provider, ProviderList, ProviderUpdate};
use super::{input, AppState, ListBody};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

/// `GET /v1/providers`: any key; it shows no merchant's data.
#[utoipa::path(
    get,
    operation_id = "list_providers",
    path = "/v1/providers",
    tag = "providers",
    security(("bearer_auth" = ["any"])),
    responses(
        (status = 200, description = "Every provider", body = ProviderList),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list(state: web::Data<AppState>, _caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ListBody::complete(state.handle.providers().await?)))
}

fn optional_bool(
    body: &serde_json::Map<String, Value>,
    param: &str,
) -> Result<Option<bool>, ApiError> {
    match body.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(value)) => Ok(Some(*value)),
        Some(_) => Err(ApiError::invalid(
            param,
            format!("{param} must be true or false"),
        )),
    }
}

/// `PATCH /v1/providers/{name}` with `enabled` and/or `force_open`: an
/// operator action, since it changes routing for every merchant.
#[utoipa::path(
    patch,
    operation_id = "update_provider",
    path = "/v1/providers/{name}",
    tag = "providers",
    security(("bearer_auth" = ["operator"])),
    params(("name" = String, Path, description = "The provider's name")),
    request_body = ProviderUpdate,
    responses(
        (status = 200, description = "The provider, changed", body = Provider),
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
pub async fn update(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = input::read_body(&req, payload).await?;
    let body = input::json_object(&body)?;
    let enabled = optional_bool(&body, "enabled")?;
    let force_open = optional_bool(&body, "force_open")?;
    let view = state
        .handle
        .update_provider(&path, enabled, force_open)
        .await?;
    tracing::info!(provider = %path, ?enabled, ?force_open, merchant = ?operator.merchant, "provider updated by an operator");
    Ok(HttpResponse::Ok().json(view))
}
