//! `GET /v1/anomalies` (DESIGN §6, §10): the flags the anomaly rules
//! raised, newest first. A merchant sees its own; an operator key sees
//! every merchant's (as with discrepancies).

use super::auth::Caller;
use super::error::ApiError;
use super::input::{self, DEFAULT_PAGE_LIMIT};
use super::AppState;
use crate::domain::Rule;
use crate::store::AnomalyFilter;
use actix_web::{web, HttpRequest, HttpResponse};

/// Flag ids are the engine's own (`af_` + 32 hex digits): printable, short.
const MAX_FLAG_ID_CHARS: usize = 64;

/// `GET /v1/anomalies`: filters `customer_id`, `rule`, `since` (RFC 3339);
/// `limit` 1-100 (default 10) and cursor `starting_after`.
#[utoipa::path(
    get,
    operation_id = "list_anomalies",
    path = "/v1/anomalies",
    tag = "signals",
    security(("bearer_auth" = ["any"])),
    params(
        super::openapi::params::Page,
        ("customer_id" = Option<String>, Query),
        ("rule" = Option<String>, Query, description = "`velocity`, `large_amount`, `failed_streak`, `duplicate_amount` or `card_testing`"),
        ("since" = Option<String>, Query, description = "RFC 3339"),
    ),
    responses(
        (status = 200, description = "Flags, newest first", body = super::openapi::signals::AnomalyFlagList),
        (status = 400, response = super::openapi::responses::BadRequest),
        (status = 401, response = super::openapi::responses::Unauthorized),
        (status = 429, response = super::openapi::responses::TooManyRequests),
        (status = 503, response = super::openapi::responses::ServiceUnavailable),
    )
)]
pub async fn list(
    state: web::Data<AppState>,
    caller: Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = AnomalyFilter {
        limit: DEFAULT_PAGE_LIMIT,
        ..AnomalyFilter::default()
    };
    if !caller.0.operator {
        filter.merchant_id = caller.0.merchant.clone();
    }
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "limit" => filter.limit = input::page_limit(&value)?,
            "starting_after" => filter.starting_after = Some(flag_id(&value)?),
            "customer_id" => filter.customer_id = Some(input::text_filter("customer_id", value)?),
            "rule" => {
                filter.rule =
                    Some(value.parse::<Rule>().map_err(|_| {
                        ApiError::invalid("rule", format!("unknown rule {value:?}"))
                    })?)
            }
            "since" => filter.since = Some(input::timestamp("since", &value)?),
            _ => {}
        }
    }
    let page = state.handle.anomalies(filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// A cursor must look like a flag id: anything else names no flag.
fn flag_id(value: &str) -> Result<String, ApiError> {
    let printable = value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if value.is_empty() || value.len() > MAX_FLAG_ID_CHARS || !printable {
        return Err(ApiError::invalid(
            "starting_after",
            "starting_after is not an anomaly flag id",
        ));
    }
    Ok(value.to_string())
}
