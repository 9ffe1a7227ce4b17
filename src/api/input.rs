//! Reading request bodies and query strings into validated values, with
//! errors that name the offending parameter.

use super::error::ApiError;
use super::AppState;
use crate::config::DEFAULT_BODY_TIMEOUT_MS;
use crate::domain::{Amount, AmountError, Currency, PaymentStatus, Timestamp};
use crate::messages::payment::PaymentRequest;
use crate::providers::sandbox::{ChargeFilter, MAX_CHARGES_PER_PAGE};
use crate::store::PaymentFilter;
use actix_web::http::header::HeaderValue;
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest request body accepted (DESIGN §6); larger is a 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Default and largest page size of list endpoints.
pub const DEFAULT_PAGE_LIMIT: u32 = 10;
pub const MAX_PAGE_LIMIT: u32 = 100;

/// Page size of the sandbox's charge listing when none is asked for: the
/// largest, so a test or operator counting an order's charges needs one.
pub const DEFAULT_CHARGE_PAGE_LIMIT: u32 = MAX_CHARGES_PER_PAGE;

/// The one value of header `name`, if sent. Sent twice it is a 400 naming
/// it: which copy counts would be a guess (and two `Authorization` headers
/// are a classic way to confuse a proxy and a server about who is asking).
pub fn single_header<'a>(
    req: &'a HttpRequest,
    name: &str,
) -> Result<Option<&'a HeaderValue>, ApiError> {
    let mut values = req.headers().get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(ApiError::BadRequest {
            code: "duplicate_header",
            param: Some(name.to_string()),
            message: format!("send the {name} header once"),
        });
    }
    Ok(first)
}

/// The body, refusing more than [`MAX_BODY_BYTES`] without reading it all,
/// and a body that takes longer than `server.body_timeout_ms` to arrive
/// (408): a client trickling bytes would otherwise hold a connection and
/// a worker's buffer for as long as it likes.
pub async fn read_body(req: &HttpRequest, payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    let timeout_ms = req
        .app_data::<web::Data<AppState>>()
        .map_or(DEFAULT_BODY_TIMEOUT_MS, |state| {
            state.handle.config().server.body_timeout_ms
        });
    tokio::time::timeout(
        Duration::from_millis(timeout_ms),
        read_body_unbounded(req, payload),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout { timeout_ms })?
}

/// [`read_body`] without the time bound.
async fn read_body_unbounded(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Vec<u8>, ApiError> {
    let too_large = ApiError::BodyTooLarge {
        limit_bytes: MAX_BODY_BYTES,
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(1024).min(MAX_BODY_BYTES));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest {
            code: "invalid_body",
            param: None,
            message: format!("could not read the request body: {e}"),
        })?;
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses a JSON object body.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body).map_err(ApiError::malformed_json)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::malformed_json("expected a JSON object")),
    }
}

pub(crate) fn required_string(body: &Map<String, Value>, param: &str) -> Result<String, ApiError> {
    match body.get(param) {
        None | Some(Value::Null) => Err(ApiError::missing(param)),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(ApiError::invalid(
            param,
            format!("{param} must be a string"),
        )),
    }
}

pub(crate) fn optional_string(
    body: &Map<String, Value>,
    param: &str,
) -> Result<Option<String>, ApiError> {
    match body.get(param) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid(
            param,
            format!("{param} must be a string"),
        )),
    }
}

/// `amount`: a JSON integer in minor units, 1 to `MAX_AMOUNT`.
pub(crate) fn amount(body: &Map<String, Value>) -> Result<Amount, ApiError> {
    const PARAM: &str = "amount";
    let value = match body.get(PARAM) {
        None | Some(Value::Null) => return Err(ApiError::missing(PARAM)),
        Some(value) => value,
    };
    let Value::Number(number) = value else {
        return Err(ApiError::invalid(
            PARAM,
            "amount must be an integer number of minor units",
        ));
    };
    let Some(minor_units) = number.as_i64() else {
        // Fractions, exponents and numbers beyond i64 all land here.
        let message = if number.is_f64() && number.as_f64().is_some_and(|f| f.fract() != 0.0) {
            "amount must be an integer number of minor units, not a fraction"
        } else {
            "amount is out of range"
        };
        return Err(ApiError::invalid(PARAM, message));
    };
    Amount::new(minor_units).map_err(|error| {
        ApiError::invalid(
            PARAM,
            match error {
                AmountError::NotPositive => "amount must be greater than 0".to_string(),
                other => other.to_string(),
            },
        )
    })
}

fn metadata(body: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
    match body.get("metadata") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(text) => Ok((key.clone(), text.clone())),
                _ => Err(ApiError::invalid(
                    &format!("metadata[{key}]"),
                    "metadata values must be strings",
                )),
            })
            .collect(),
        Some(_) => Err(ApiError::invalid(
            "metadata",
            "metadata must be an object of strings",
        )),
    }
}

/// `currency`: an ISO 4217 code, any case.
pub(crate) fn currency(body: &Map<String, Value>) -> Result<Currency, ApiError> {
    let code = required_string(body, "currency")?;
    Currency::parse(&code)
        .ok_or_else(|| ApiError::invalid("currency", format!("unknown currency: {code:?}")))
}

/// The `Idempotency-Key` header, required and well formed.
pub fn idempotency_key(req: &HttpRequest) -> Result<String, ApiError> {
    use crate::engine::validate::IDEMPOTENCY_KEY_PARAM;
    let key = match single_header(req, IDEMPOTENCY_KEY_PARAM)? {
        None => return Err(ApiError::missing(IDEMPOTENCY_KEY_PARAM)),
        Some(value) => value
            .to_str()
            .map_err(|_| ApiError::invalid(IDEMPOTENCY_KEY_PARAM, "must be printable ASCII"))?
            .to_string(),
    };
    crate::engine::validate::idempotency_key(&key)?;
    Ok(key)
}

/// The body of `POST /v1/payments`. Unknown fields are ignored.
pub fn payment_request(body: &[u8]) -> Result<PaymentRequest, ApiError> {
    let body = json_object(body)?;
    let amount = amount(&body)?;
    let currency = currency(&body)?;
    Ok(PaymentRequest {
        amount,
        currency,
        customer_id: required_string(&body, "customer_id")?,
        order_id: required_string(&body, "order_id")?,
        payment_method: required_string(&body, "payment_method")?,
        description: optional_string(&body, "description")?,
        metadata: metadata(&body)?,
        provider: optional_string(&body, "provider")?,
    })
}

/// The query string as pairs; a malformed one is a 400.
pub fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest {
            code: "invalid_query",
            param: None,
            message: format!("malformed query string: {e}"),
        })
}

pub(crate) fn timestamp(param: &str, value: &str) -> Result<Timestamp, ApiError> {
    Timestamp::parse_rfc3339(value)
        .ok_or_else(|| ApiError::invalid(param, format!("{param} must be an RFC 3339 timestamp")))
}

/// A free-text filter. NUL cannot be stored (creation refuses it), and
/// PostgreSQL cannot even compare with it: refuse it by name.
pub(crate) fn text_filter(param: &str, value: String) -> Result<String, ApiError> {
    if value.contains('\0') {
        return Err(ApiError::invalid(
            param,
            format!("{param} must not contain NUL characters"),
        ));
    }
    Ok(value)
}

/// `limit`: 1 to [`MAX_PAGE_LIMIT`].
pub(crate) fn page_limit(value: &str) -> Result<u32, ApiError> {
    value
        .parse::<u32>()
        .ok()
        .filter(|limit| (1..=MAX_PAGE_LIMIT).contains(limit))
        .ok_or_else(|| {
            ApiError::invalid(
                "limit",
                format!("limit must be an integer from 1 to {MAX_PAGE_LIMIT}"),
            )
        })
}

/// The filters of `GET /v1/sandbox/{provider}/charges`: `limit` (default
/// [`DEFAULT_CHARGE_PAGE_LIMIT`]), `starting_after` (a charge id),
/// `order_id`. Whose charges is for the handler to say. Unknown parameters
/// are ignored.
pub fn charge_filter(req: &HttpRequest) -> Result<ChargeFilter, ApiError> {
    let mut filter = ChargeFilter {
        limit: DEFAULT_CHARGE_PAGE_LIMIT,
        ..ChargeFilter::default()
    };
    for (name, value) in query_pairs(req)? {
        match name.as_str() {
            "limit" => filter.limit = page_limit(&value)?,
            "starting_after" => filter.starting_after = Some(text_filter("starting_after", value)?),
            "order_id" => filter.order_id = Some(text_filter("order_id", value)?),
            _ => {}
        }
    }
    Ok(filter)
}

/// The filters of `GET /v1/payments`. Unknown parameters are ignored.
pub fn payment_filter(req: &HttpRequest) -> Result<PaymentFilter, ApiError> {
    let mut filter = PaymentFilter {
        limit: DEFAULT_PAGE_LIMIT,
        ..PaymentFilter::default()
    };
    for (name, value) in query_pairs(req)? {
        match name.as_str() {
            "limit" => filter.limit = page_limit(&value)?,
            "starting_after" => {
                filter.starting_after = Some(value.parse().map_err(|_| {
                    ApiError::invalid("starting_after", "starting_after must be a payment id")
                })?);
            }
            "customer_id" => filter.customer_id = Some(text_filter("customer_id", value)?),
            "order_id" => filter.order_id = Some(text_filter("order_id", value)?),
            "status" => {
                filter.status = Some(value.parse::<PaymentStatus>().map_err(|_| {
                    ApiError::invalid("status", format!("unknown status {value:?}"))
                })?);
            }
            "created_gte" => filter.created_gte = Some(timestamp("created_gte", &value)?),
            "created_lt" => filter.created_lt = Some(timestamp("created_lt", &value)?),
            _ => {}
        }
    }
    Ok(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(body: &str) -> Option<String> {
        match payment_request(body.as_bytes()) {
            Err(ApiError::BadRequest { param, .. }) => param,
            other => panic!("expected a 400 for {body}, got {other:?}"),
        }
    }

    const GOOD: &str = r#"{"amount":100,"currency":"USD","customer_id":"c","order_id":"o","payment_method":"pm_card_visa"}"#;

    #[test]
    fn good_request_parses() {
        let request = payment_request(GOOD.as_bytes()).unwrap();
        assert_eq!(request.amount.minor_units(), 100);
        assert_eq!(request.currency.code(), "usd");
    }

    #[test]
    fn each_bad_field_is_named() {
        for (amount, why) in [
            ("-1", "negative"),
            ("0", "zero"),
            ("100000000000", "huge"),
            ("1e20", "exponent"),
            ("10.5", "fraction"),
            ("\"100\"", "string"),
            ("null", "null"),
        ] {
            let body = GOOD.replace("100", amount);
            assert_eq!(param_of(&body).as_deref(), Some("amount"), "{why}");
        }
        assert_eq!(
            param_of(&GOOD.replace("USD", "XYZ")).as_deref(),
            Some("currency")
        );
        assert_eq!(
            param_of(&GOOD.replace(r#","order_id":"o""#, "")).as_deref(),
            Some("order_id")
        );
        assert_eq!(param_of(r#"{"amount":1}"#).as_deref(), Some("currency"));
        assert_eq!(param_of("{not json").as_deref(), None);
        assert_eq!(param_of("[1,2]").as_deref(), None);
        assert_eq!(
            param_of(&GOOD.replace("}", r#","metadata":{"k":1}}"#)).as_deref(),
            Some("metadata[k]")
        );
    }
}

#[cfg(test)]
mod header_and_charge_tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_header_sent_twice_is_named() {
        let req = TestRequest::default()
            .append_header(("Idempotency-Key", "a"))
            .append_header(("idempotency-key", "b"))
            .to_http_request();
        match single_header(&req, "Idempotency-Key") {
            Err(ApiError::BadRequest { code, param, .. }) => {
                assert_eq!(code, "duplicate_header");
                assert_eq!(param.as_deref(), Some("Idempotency-Key"));
            }
            other => panic!("expected a 400, got {other:?}"),
        }
        let once = TestRequest::default()
            .append_header(("Idempotency-Key", "a"))
            .to_http_request();
        assert_eq!(
            single_header(&once, "Idempotency-Key").unwrap(),
            Some(&HeaderValue::from_static("a"))
        );
        assert_eq!(single_header(&once, "Authorization").unwrap(), None);
    }

    #[test]
    fn charge_pages_default_to_the_largest() {
        let req = TestRequest::with_uri("/x?order_id=o1&starting_after=ch_1").to_http_request();
        let filter = charge_filter(&req).unwrap();
        assert_eq!(filter.limit, DEFAULT_CHARGE_PAGE_LIMIT);
        assert_eq!(DEFAULT_CHARGE_PAGE_LIMIT, MAX_PAGE_LIMIT);
        assert_eq!(filter.order_id.as_deref(), Some("o1"));
        assert_eq!(filter.starting_after.as_deref(), Some("ch_1"));
        assert_eq!(filter.merchant_id, None, "the handler says whose");
        let too_many = TestRequest::with_uri("/x?limit=101").to_http_request();
        assert!(charge_filter(&too_many).is_err());
    }
}
