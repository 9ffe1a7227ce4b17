//! Reconciliation over HTTP (DESIGN §6, §9): runs (operators: a run spans
//! every merchant) and discrepancies (a merchant sees its own payments',
//! an operator every one; resolving is an operator's act).

use super::auth::{Caller, Operator};
use super::error::ApiError;
use super::input::{self, DEFAULT_PAGE_LIMIT};
use super::openapi::books::{
    Discrepancy, DiscrepancyList, ReconciliationRun, ReconciliationRunList, Resolution, RunCreate,
};
use super::openapi::params::Page;
use super::openapi::responses::*;
use super::AppState;
use crate::domain::{Category, DiscrepancyStatus};
use crate::store::DiscrepancyFilter;
use actix_web::{web, HttpRequest, HttpResponse};

/// Ids of discrepancies and runs are the engine's own: printable, short.
const MAX_ID_CHARS: usize = 64;

fn id_param(param: &str, value: &str) -> Result<String, ApiError> {
    let printable = value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if value.is_empty() || value.len() > MAX_ID_CHARS || !printable {
        return Err(ApiError::invalid(param, format!("{param} is not an id")));
    }
    Ok(value.to_string())
}

/// `GET /v1/reconciliation/discrepancies`: a merchant's own, or every one for an operator.
#[utoipa::path(
    get,
    operation_id = "list_discrepancies",
    path = "/v1/reconciliation/discrepancies",
    tag = "reconciliation",
    security(("bearer_auth" = ["any"])),
    params(Page, ("status" = Option<String>, Query, description = "`open` or `resolved`"), ("category" = Option<String>, Query), ("payment_id" = Option<String>, Query), ("run_id" = Option<String>, Query)),
    responses(
        (status = 200, description = "Discrepancies, newest first", body = DiscrepancyList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list_discrepancies(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = DiscrepancyFilter {
        limit: DEFAULT_PAGE_LIMIT,
        ..DiscrepancyFilter::default()
    };
    if !caller.0.operator {
        filter.merchant_id = caller.0.merchant.clone();
    }
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "limit" => filter.limit = input::page_limit(&value)?,
            "starting_after" => filter.starting_after = Some(id_param("starting_after", &value)?),
            "run_id" => filter.run_id = Some(id_param("run_id", &value)?),
            "status" => {
                filter.status =
                    Some(value.parse::<DiscrepancyStatus>().map_err(|_| {
                        ApiError::invalid("status", "status must be open or resolved")
                    })?)
            }
            "category" => {
                filter.category = Some(value.parse::<Category>().map_err(|_| {
                    ApiError::invalid("category", format!("unknown category {value:?}"))
                })?)
            }
            "payment_id" => {
                filter.payment_id = Some(value.parse().map_err(|_| {
                    ApiError::invalid("payment_id", "payment_id must be a payment id")
                })?)
            }
            _ => {}
        }
    }
    let page = state.handle.discrepancies(filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `POST /v1/reconciliation/discrepancies/{id}/resolve` (operator):
/// `{resolution}`.
#[utoipa::path(
    post,
    operation_id = "resolve_discrepancy",
    path = "/v1/reconciliation/discrepancies/{id}/resolve",
    tag = "reconciliation",
    security(("bearer_auth" = ["operator"])),
    params(("id" = String, Path, description = "`disc_…`")),
    request_body = Resolution,
    responses(
        (status = 200, description = "The discrepancy, now resolved", body = Discrepancy),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn resolve(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = id_param("id", &path)?;
    let body = input::read_body(&req, payload).await?;
    let body = input::json_object(&body)?;
    let resolution = input::required_string(&body, "resolution")?;
    let resolved = state.handle.resolve_discrepancy(&id, &resolution).await?;
    Ok(HttpResponse::Ok().json(resolved))
}

/// `POST /v1/reconciliation/runs` (operator): `{from, to}` in RFC 3339.
#[utoipa::path(
    post,
    operation_id = "create_reconciliation_run",
    path = "/v1/reconciliation/runs",
    tag = "reconciliation",
    security(("bearer_auth" = ["operator"])),
    request_body = RunCreate,
    responses(
        (status = 201, description = "The run's report", body = ReconciliationRun,
            links(("GetRun" = (operation_id = "get_reconciliation_run", parameters(("id" = "$response.body#/id")))))
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn create_run(
    state: web::Data<AppState>,
    _operator: Operator,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = input::read_body(&req, payload).await?;
    let body = input::json_object(&body)?;
    let from = input::timestamp("from", &input::required_string(&body, "from")?)?;
    let to = input::timestamp("to", &input::required_string(&body, "to")?)?;
    let report = state.handle.run_reconciliation(from, to).await?;
    Ok(HttpResponse::Created().json(report))
}

/// `GET /v1/reconciliation/runs` (operator): newest first.
#[utoipa::path(
    get,
    operation_id = "list_reconciliation_runs",
    path = "/v1/reconciliation/runs",
    tag = "reconciliation",
    security(("bearer_auth" = ["operator"])),
    params(Page),
    responses(
        (status = 200, description = "Runs, newest first, without their discrepancies", body = ReconciliationRunList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list_runs(
    state: web::Data<AppState>,
    _operator: Operator,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut limit = DEFAULT_PAGE_LIMIT;
    let mut starting_after = None;
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "limit" => limit = input::page_limit(&value)?,
            "starting_after" => starting_after = Some(id_param("starting_after", &value)?),
            _ => {}
        }
    }
    let page = state
        .handle
        .reconciliation_runs(starting_after, limit)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/reconciliation/runs/{id}` (operator).
#[utoipa::path(
    get,
    operation_id = "get_reconciliation_run",
    path = "/v1/reconciliation/runs/{id}",
    tag = "reconciliation",
    security(("bearer_auth" = ["operator"])),
    params(("id" = String, Path, description = "`recon_…`")),
    responses(
        (status = 200, description = "The run's report", body = ReconciliationRun),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn get_run(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id_param("id", &path)?;
    Ok(HttpResponse::Ok().json(state.handle.reconciliation_run(&id).await?))
}
