//! `/v1/events` (DESIGN §6, §11): a merchant's outgoing events, and an
//! operator's redelivery of one.

use super::auth::{Merchant, Operator};
use super::error::ApiError;
use super::input::{self, DEFAULT_PAGE_LIMIT};
use super::AppState;
use crate::domain::{EventId, OutgoingEventType};
use crate::error::EngineError;
use crate::store::outbox::EventFilter;
use actix_web::{web, HttpRequest, HttpResponse};

/// `GET /v1/events`: newest first; `type`, `limit`, `starting_after`.
#[utoipa::path(
    get,
    operation_id = "list_events",
    path = "/v1/events",
    tag = "signals",
    security(("bearer_auth" = ["merchant"])),
    params(
        super::openapi::params::Page,
        ("type" = Option<String>, Query, description = "one event type, e.g. `payment.succeeded`"),
    ),
    responses(
        (status = 200, description = "The merchant's events, newest first", body = super::openapi::signals::EventList),
        (status = 400, response = super::openapi::responses::BadRequest),
        (status = 401, response = super::openapi::responses::Unauthorized),
        (status = 403, response = super::openapi::responses::Forbidden),
        (status = 429, response = super::openapi::responses::TooManyRequests),
        (status = 503, response = super::openapi::responses::ServiceUnavailable),
    )
)]
pub async fn list(
    state: web::Data<AppState>,
    merchant: Merchant,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut filter = EventFilter {
        limit: DEFAULT_PAGE_LIMIT,
        ..EventFilter::default()
    };
    for (name, value) in input::query_pairs(&req)? {
        match name.as_str() {
            "limit" => filter.limit = input::page_limit(&value)?,
            "starting_after" => {
                filter.starting_after = Some(value.parse::<EventId>().map_err(|_| {
                    ApiError::invalid("starting_after", "starting_after must be an event id")
                })?)
            }
            "type" => {
                filter.kind = Some(value.parse::<OutgoingEventType>().map_err(|_| {
                    ApiError::invalid("type", format!("unknown event type {value:?}"))
                })?)
            }
            _ => {}
        }
    }
    let page = state.handle.events(&merchant, filter).await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `POST /v1/events/{id}/redeliver` (operator): queues the event again for
/// every endpoint that wants it; answers the event.
#[utoipa::path(
    post,
    operation_id = "redeliver_event",
    path = "/v1/events/{id}/redeliver",
    tag = "signals",
    security(("bearer_auth" = ["operator"])),
    params(("id" = String, Path, description = "`evt_…`")),
    responses(
        (status = 200, description = "The event, queued again for every endpoint that wants it", body = super::openapi::signals::Event),
        (status = 401, response = super::openapi::responses::Unauthorized),
        (status = 403, response = super::openapi::responses::Forbidden),
        (status = 404, response = super::openapi::responses::NotFound),
        (status = 429, response = super::openapi::responses::TooManyRequests),
        (status = 503, response = super::openapi::responses::ServiceUnavailable),
    )
)]
pub async fn redeliver(
    state: web::Data<AppState>,
    _operator: Operator,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path
        .parse::<EventId>()
        .map_err(|_| ApiError::Engine(EngineError::NotFound { resource: "event" }))?;
    let event = state.handle.redeliver_event(id).await?;
    Ok(HttpResponse::Ok().json(event))
}
