//! Refunds, the ledger and wallets over HTTP (DESIGN §6).

use super::auth::{Merchant, Operator};
use super::error::ApiError;
use super::input::{self, DEFAULT_PAGE_LIMIT};
use super::openapi::books::{BalanceList, TopUp, TopUpCreate, TransactionList, Wallet};
use super::openapi::params::{IdempotencyKey, Page};
use super::openapi::responses::*;
use super::openapi::schemas::{Refund, RefundCreate, RefundList};
use super::payments::{payment_id, REPLAYED_HEADER};
use super::{AppState, ListBody};
use crate::domain::{Account, MerchantId, RefundReason};
use crate::messages::payment::RefundRequest;
use crate::store::ledger::{BalanceFilter, TransactionFilter};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

/// A 201 carrying a stored answer, marked when it is a replay.
fn created(body: String, replayed: bool) -> HttpResponse {
    let mut response = HttpResponse::build(StatusCode::CREATED);
    response.content_type("application/json");
    if replayed {
        response.insert_header((REPLAYED_HEADER, "true"));
    }
    response.body(body)
}

/// The body of `POST /v1/payments/{id}/refunds`.
fn refund_request(body: &[u8]) -> Result<RefundRequest, ApiError> {
    // An empty body refunds all that remains.
    let body: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        input::json_object(body)?
    };
    let amount = match body.get("amount") {
        None | Some(Value::Null) => None,
        Some(_) => Some(input::amount(&body)?),
    };
    let reason = input::optional_string(&body, "reason")?
        .map(|text| {
            text.parse::<RefundReason>().map_err(|_| {
                ApiError::invalid(
                    "reason",
                    "reason must be duplicate, fraudulent or requested_by_customer",
                )
            })
        })
        .transpose()?;
    Ok(RefundRequest { amount, reason })
}

/// `POST /v1/payments/{id}/refunds`.
#[utoipa::path(
    post,
    operation_id = "create_refund",
    path = "/v1/payments/{id}/refunds",
    tag = "money",
    security(("bearer_auth" = ["merchant"])),
    params(("id" = String, Path, description = "The payment's id, `pay_…`"), IdempotencyKey),
    request_body = RefundCreate,
    responses(
        (status = 201, description = "The refund. A replayed answer carries `Idempotent-Replayed: true`", body = Refund),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = UnprocessableEntity),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn create_refund(
    state: web::Data<AppState>,
    merchant: Merchant,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = payment_id(&path)?;
    let key = input::idempotency_key(&req)?;
    let body = input::read_body(&req, payload).await?;
    let request = refund_request(&body)?;
    let refunded = state.handle.refund(&merchant, id, &key, request).await?;
    Ok(created(refunded.body, refunded.replayed))
}

/// `GET /v1/payments/{id}/refunds`: oldest first, paginated.
#[utoipa::path(
    get,
    operation_id = "list_refunds",
    path = "/v1/payments/{id}/refunds",
    tag = "money",
    security(("bearer_auth" = ["merchant"])),
    params(("id" = String, Path, description = "The payment's id, `pay_…`"), Page),
    responses(
        (status = 200, description = "The payment's refunds, oldest first", body = RefundList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn list_refunds(
    state: web::Data<AppState>,
    merchant: Merchant,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = payment_id(&path)?;
    let mut limit = DEFAULT_PAGE_LIMIT;
    let mut starting_after = None;
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "limit" => limit = input::page_limit(&value)?,
            "starting_after" => {
                starting_after = Some(value.parse().map_err(|_| {
                    ApiError::invalid("starting_after", "starting_after must be a refund id")
                })?)
            }
            _ => {}
        }
    }
    let page = state
        .handle
        .refunds(&merchant, id, starting_after, limit)
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `GET /v1/ledger/balances`: the merchant's accounts.
#[utoipa::path(
    get,
    operation_id = "list_balances",
    path = "/v1/ledger/balances",
    tag = "money",
    security(("bearer_auth" = ["merchant"])),
    params(("account" = Option<String>, Query, description = "An account, `kind:owner`"), ("currency" = Option<String>, Query), ("as_of" = Option<String>, Query, format = DateTime, description = "The balances at this time, RFC 3339")),
    responses(
        (status = 200, description = "The merchant's balances", body = BalanceList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn balances(
    state: web::Data<AppState>,
    merchant: Merchant,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = BalanceFilter::default();
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "account" => {
                filter.account = Some(value.parse::<Account>().map_err(|e| {
                    ApiError::invalid("account", format!("not an account name: {e}"))
                })?)
            }
            "currency" => {
                filter.currency = Some(crate::domain::Currency::parse(&value).ok_or_else(|| {
                    ApiError::invalid("currency", format!("unknown currency: {value:?}"))
                })?)
            }
            "as_of" => filter.as_of = Some(input::timestamp("as_of", &value)?),
            _ => {}
        }
    }
    let data = state.handle.ledger_balances(&merchant, filter).await?;
    Ok(HttpResponse::Ok().json(ListBody::complete(data)))
}

/// `GET /v1/ledger/transactions`: the merchant's postings, newest first.
#[utoipa::path(
    get,
    operation_id = "list_transactions",
    path = "/v1/ledger/transactions",
    tag = "money",
    security(("bearer_auth" = ["merchant"])),
    params(Page, ("payment_id" = Option<String>, Query, description = "Only this payment's postings")),
    responses(
        (status = 200, description = "Postings, newest first", body = TransactionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn transactions(
    state: web::Data<AppState>,
    merchant: Merchant,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = TransactionFilter {
        limit: DEFAULT_PAGE_LIMIT,
        ..TransactionFilter::default()
    };
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "limit" => filter.limit = input::page_limit(&value)?,
            "payment_id" => filter.payment_id = Some(payment_id_param(&value)?),
            "starting_after" => {
                filter.starting_after = Some(value.parse().map_err(|_| {
                    ApiError::invalid("starting_after", "starting_after must be a transaction id")
                })?)
            }
            _ => {}
        }
    }
    let page = state.handle.ledger_transactions(&merchant, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

fn payment_id_param(value: &str) -> Result<crate::domain::PaymentId, ApiError> {
    value
        .parse()
        .map_err(|_| ApiError::invalid("payment_id", "payment_id must be a payment id"))
}

/// A wallet's customer id, from the path: the same rules as everywhere.
fn customer(path: &str) -> Result<String, ApiError> {
    let customer = input::text_filter("customer_id", path.to_string())?;
    if customer.trim().is_empty() || customer.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "customer_id",
            "customer_id must be printable and not empty",
        ));
    }
    Ok(customer)
}

/// `POST /v1/wallets/{customer_id}/top_ups` (operator): `{amount,
/// currency}`, and `merchant` when the operator's key belongs to none.
#[utoipa::path(
    post,
    operation_id = "create_wallet_top_up",
    path = "/v1/wallets/{customer_id}/top_ups",
    tag = "money",
    security(("bearer_auth" = ["operator"])),
    params(("customer_id" = String, Path), IdempotencyKey),
    request_body = TopUpCreate,
    responses(
        (status = 201, description = "The top-up. A replayed answer carries `Idempotent-Replayed: true`", body = TopUp),
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
pub async fn top_up(
    state: web::Data<AppState>,
    operator: Operator,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let customer_id = customer(&path)?;
    let key = input::idempotency_key(&req)?;
    let body = input::read_body(&req, payload).await?;
    let body = input::json_object(&body)?;
    let amount = input::amount(&body)?;
    let currency = input::currency(&body)?;
    let merchant = match (
        input::optional_string(&body, "merchant")?,
        operator.merchant,
    ) {
        (Some(named), _) => MerchantId::new(input::text_filter("merchant", named)?),
        (None, Some(own)) => own,
        (None, None) => return Err(ApiError::missing("merchant")),
    };
    let topped = state
        .handle
        .wallet_top_up(&merchant, &customer_id, &key, amount, currency)
        .await?;
    Ok(created(topped.body, topped.replayed))
}

/// `GET /v1/wallets/{customer_id}`.
#[utoipa::path(
    get,
    operation_id = "get_wallet",
    path = "/v1/wallets/{customer_id}",
    tag = "money",
    security(("bearer_auth" = ["merchant"])),
    params(("customer_id" = String, Path)),
    responses(
        (status = 200, description = "The customer's wallet", body = Wallet),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn wallet(
    state: web::Data<AppState>,
    merchant: Merchant,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let customer_id = customer(&path)?;
    let wallet = state.handle.wallet(&merchant, &customer_id).await?;
    Ok(HttpResponse::Ok().json(wallet))
}
