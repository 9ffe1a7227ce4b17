//! Inbound provider webhooks over HTTP (DESIGN §6): no API key (the
//! provider's signature authenticates the request), the raw body handed to
//! the engine untouched so the signature is checked over exactly the bytes
//! that were signed.

use super::error::ApiError;
use super::input;
use super::openapi::books::WebhookReceipt;
use super::openapi::responses::*;
use super::AppState;
use crate::providers::WebhookHeaders;
use actix_web::{web, HttpRequest, HttpResponse};

/// `POST /v1/webhooks/{provider}`: no API key; the provider's signature
/// (in its own header) authenticates the request.
#[utoipa::path(
    post,
    operation_id = "receive_webhook",
    path = "/v1/webhooks/{provider}",
    tag = "webhooks",
    params(("provider" = String, Path, example = "sandbox_a", description = "The configured provider's name")),
    request_body(content = Object, description = "The provider's event, exactly as it signed it", content_type = "application/json"),
    responses(
        (status = 200, description = "Applied, recorded without effect, or a duplicate. Adyen gets its `[accepted]` as text",
            content(
                (WebhookReceipt = "application/json"),
                (String = "text/plain"),
            )
        ),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 413, response = PayloadTooLarge),
        (status = 429, response = TooManyRequests),
        (status = 503, response = ServiceUnavailable),
    )
)]
pub async fn receive(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = input::read_body(&req, payload).await?;
    let headers = headers_of(&req);
    let received = state
        .handle
        .receive_webhook(path.as_str(), headers, body)
        .await?;
    Ok(match received.acknowledgement {
        Some(body) => HttpResponse::Ok().content_type("text/plain").body(body),
        None => HttpResponse::Ok().json(received),
    })
}

/// The request's headers whose values are text (a signature always is).
fn headers_of(req: &HttpRequest) -> WebhookHeaders {
    req.headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect()
}
