//! The OpenAPI 3.1 document of the API, served at `GET /openapi.json`
//! (DESIGN §6).
//!
//! It is generated from the code so that it cannot drift: every handler
//! carries a `#[utoipa::path]` attribute (method, path, parameters, body,
//! every answer), and [`ApiDoc`] lists the handlers. The JSON that handlers
//! answer is described by [`schemas`] and [`books`], and the error answers
//! by [`responses`]. `tests/integration/openapi.rs` checks that every
//! route of [`super::route_table`] is in the document with its methods,
//! and `.ci/schemathesis.sh` fuzzes a live server against it.
//!
//! Adding a route: put `#[utoipa::path(...)]` on its handler, and its
//! path (`super::module::handler`) in the `paths(...)` list below.

pub mod books;
pub mod params;
pub mod responses;
pub mod schemas;
pub mod signals;

use actix_web::HttpResponse;
use serde_json::Value;
use std::sync::LazyLock;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The name of the bearer-key security scheme that paths refer to.
pub const BEARER_AUTH: &str = "bearer_auth";

/// The document: every route's handler, and the reusable error answers.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "payments",
        description = "An actor-based, in-process payment engine: exactly-once charges, \
            crash recovery, an append-only ledger. Errors are `{\"error\": {\"type\", \"code\", \
            \"message\", \"param\"}}`. Keys travel as `Authorization: Bearer <key>`."
    ),
    paths(
        super::healthz,
        super::readyz,
        super::metrics,
        serve,
        super::payments::create,
        super::payments::list,
        super::payments::get,
        super::payments::events,
        super::money::create_refund,
        super::money::list_refunds,
        super::money::balances,
        super::money::transactions,
        super::money::wallet,
        super::money::top_up,
        super::providers::list,
        super::providers::update,
        super::reconciliation::create_run,
        super::reconciliation::list_runs,
        super::reconciliation::get_run,
        super::reconciliation::list_discrepancies,
        super::reconciliation::resolve,
        super::webhooks::receive,
        super::sandbox::charges,
        super::sandbox::create_charge,
        super::sandbox::update_charge,
        super::sandbox::delete_charge,
        super::sandbox::get_faults,
        super::sandbox::put_faults,
        super::anomalies::list,
        super::events::list,
        super::events::redeliver,
    ),
    components(
        // The error answers name the envelope only through `responses`,
        // which utoipa does not follow to collect schemas.
        schemas(schemas::ErrorEnvelope, schemas::ErrorBody),
        responses(
        responses::BadRequest,
        responses::Unauthorized,
        responses::Forbidden,
        responses::NotFound,
        responses::RequestTimeout,
        responses::Conflict,
        responses::PayloadTooLarge,
        responses::UnprocessableEntity,
        responses::TooManyRequests,
        responses::ServiceUnavailable,
    ),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "payments", description = "Create, read and list payments, and their audit trail"),
        (name = "money", description = "Refunds, the ledger and wallets"),
        (name = "providers", description = "Provider health, and draining one"),
        (name = "reconciliation", description = "Runs and discrepancies"),
        (name = "webhooks", description = "Inbound provider events, signature-verified"),
        (name = "signals", description = "Anomaly flags and outgoing events"),
        (name = "sandbox", description = "The sandbox provider's books, fault knobs and hooks"),
        (name = "operations", description = "Probes, metrics and this document; no key"),
    )
)]
pub struct ApiDoc;

/// Adds the bearer-key security scheme the authenticated paths name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_AUTH,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as served: utoipa's, with its links' field names fixed.
pub fn document() -> &'static Value {
    static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
        let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|error| {
            // A tree of strings and maps always serializes; should it ever
            // fail, the route answers an empty object rather than panic.
            tracing::error!(%error, "cannot serialize the OpenAPI document");
            Value::Object(Default::default())
        });
        camel_case_links(&mut document);
        document
    });
    &DOCUMENT
}

/// utoipa 5 serializes a Link object's fields in snake case
/// (`operation_id`), where OpenAPI names them `operationId`,
/// `operationRef` and `requestBody`; validators and schemathesis then
/// reject every link. Renames them in each response's `links`.
fn camel_case_links(document: &mut Value) {
    const RENAMES: [(&str, &str); 3] = [
        ("operation_id", "operationId"),
        ("operation_ref", "operationRef"),
        ("request_body", "requestBody"),
    ];
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(Value::as_object_mut);
    for link in links {
        for (from, to) in RENAMES {
            if let Some(value) = link.remove(from) {
                link.insert(to.to_string(), value);
            }
        }
    }
}

/// The order of the document's top-level fields as the specification
/// lists them, so that a reader (and `head -c`) sees `openapi` and `info`
/// first; `serde_json` would sort them.
const TOP_LEVEL_ORDER: [&str; 8] = [
    "openapi",
    "info",
    "jsonSchemaDialect",
    "servers",
    "paths",
    "components",
    "security",
    "tags",
];

/// The document as JSON text, top-level fields in [`TOP_LEVEL_ORDER`]
/// (then any other), serialized once.
fn document_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let Some(fields) = document().as_object() else {
            return document().to_string();
        };
        let rank = |key: &str| {
            TOP_LEVEL_ORDER
                .iter()
                .position(|known| *known == key)
                .unwrap_or(TOP_LEVEL_ORDER.len())
        };
        let mut ordered: Vec<(&String, &Value)> = fields.iter().collect();
        ordered.sort_by_key(|(key, _)| rank(key));
        let members: Vec<String> = ordered
            .into_iter()
            .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
            .collect();
        format!("{{{}}}", members.join(","))
    });
    &JSON
}

/// `GET /openapi.json`: this document. No key: it carries no merchant data.
#[utoipa::path(
    get,
    operation_id = "openapi_document",
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API", body = Object, content_type = "application/json"),
    )
)]
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(document_json())
}
