//! `GET /openapi.json` (issue 13, DESIGN §6): the OpenAPI 3.1 document is
//! served with no key, lists every route the server registers with the
//! same methods (and no other), describes each error answer with the error
//! envelope, and every `$ref` in it resolves. The route list is the one
//! `payments::api::routes` serves (`route_table`), so a route added without
//! its `#[utoipa::path]` fails here. The structural validation against the
//! OpenAPI 3.1 meta-schema and the fuzzing against a live server are in
//! `.ci/schemathesis.sh`.

use crate::common::{Backend, TestServer};
use serde_json::Value;
use std::collections::BTreeSet;

/// The HTTP methods an OpenAPI path item can hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// `(path, method)` of every operation in `document`.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths is an object");
    paths
        .iter()
        .flat_map(|(path, item)| {
            let item = item.as_object().expect("a path item is an object");
            item.keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(|method| (path.clone(), method.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// `(path, method)` of every route the server registers, sandbox included.
fn registered() -> BTreeSet<(String, String)> {
    payments::api::route_table(true)
        .into_iter()
        .map(|(path, method)| (path.to_string(), method.as_str().to_lowercase()))
        .collect()
}

/// Every `$ref` string in `value`.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

/// What a local `$ref` (`#/a/b`) points at, if anything.
fn resolve<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    document.pointer(pointer)
}

async fn served_document() -> (TestServer, Value) {
    let server = TestServer::start(Backend::Sqlite).await;
    // No key: the document carries no merchant data.
    let reply = server
        .send(server.client.get(server.url("/openapi.json")))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "served as JSON"
    );
    let document = reply.json();
    (server, document)
}

#[tokio::test]
async fn the_document_lists_every_registered_route_and_nothing_else() {
    let (_server, document) = served_document().await;
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "OpenAPI 3.1, got {}",
        document["openapi"]
    );
    let registered = registered();
    let documented = documented(&document);
    let missing: Vec<_> = registered.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "registered but not documented: {missing:?}"
    );
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
    // The served document is the one the crate builds.
    assert_eq!(&document, payments::api::openapi::document());
    // Both lists really are the server's: a route with and without the
    // sandbox, and the document's own route.
    assert!(registered.contains(&("/openapi.json".into(), "get".into())));
    assert!(registered.contains(&("/v1/sandbox/{provider}/faults".into(), "put".into())));
    assert!(!payments::api::route_table(false)
        .iter()
        .any(|(path, _)| path.starts_with("/v1/sandbox/")));
}

#[tokio::test]
async fn every_ref_resolves_and_every_error_is_the_envelope() {
    let (_server, document) = served_document().await;
    let mut found = Vec::new();
    refs(&document, &mut found);
    assert!(found.len() > 20, "the document uses components: {found:?}");
    for reference in &found {
        assert!(
            resolve(&document, reference).is_some(),
            "unresolved $ref {reference}"
        );
    }
    let envelope = &document["components"]["schemas"]["ErrorEnvelope"];
    assert!(
        envelope["properties"]["error"].is_object(),
        "the error envelope: {envelope}"
    );
    let body = &document["components"]["schemas"]["ErrorBody"]["properties"];
    for field in ["type", "code", "message", "param"] {
        assert!(body[field].is_object(), "ErrorBody.{field}: {body}");
    }
    for (path, method) in documented(&document) {
        let operation = &document["paths"][&path][&method];
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let Some(reference) = response["$ref"].as_str() else {
                assert!(
                    status.starts_with('2'),
                    "{method} {path}: {status} is not a reusable error answer"
                );
                continue;
            };
            let error = resolve(&document, reference).expect("resolves");
            let schema = &error["content"]["application/json"]["schema"]["$ref"];
            assert_eq!(
                schema, "#/components/schemas/ErrorEnvelope",
                "{method} {path} {status}"
            );
        }
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} documents its success"
        );
        // Routes with a key document 401 and name the bearer scheme; the
        // probes, the document and webhooks need none.
        let open = ["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(&path.as_str())
            || path.starts_with("/v1/webhooks/");
        assert_eq!(
            responses.contains_key("401"),
            !open,
            "{method} {path}: 401 iff a key is needed"
        );
        assert_eq!(operation["security"].is_array(), !open, "{method} {path}");
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer_auth"]["scheme"],
        "bearer"
    );
    links_name_operations(&document);
}

/// Every response link names (as `operationId`, OpenAPI's spelling) an
/// operation of the document.
fn links_name_operations(document: &Value) {
    let operations: BTreeSet<String> = documented(document)
        .into_iter()
        .filter_map(|(path, method)| {
            document["paths"][&path][&method]["operationId"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    let mut linked = 0;
    for (path, method) in documented(document) {
        let responses = document["paths"][&path][&method]["responses"]
            .as_object()
            .expect("responses");
        for response in responses.values() {
            let Some(links) = response["links"].as_object() else {
                continue;
            };
            for (name, link) in links {
                let target = link["operationId"].as_str().unwrap_or_else(|| {
                    panic!("{method} {path}: link {name} has no operationId: {link}")
                });
                assert!(operations.contains(target), "link {name} -> {target}");
                linked += 1;
            }
        }
    }
    assert!(linked >= 7, "the create routes link to their reads");
}

#[tokio::test]
async fn a_documented_answer_matches_the_real_one() {
    // One round trip by the document: the error envelope's fields and a
    // payment's required fields are what the server sends.
    let (server, document) = served_document().await;
    let reply = server.get("/v1/payments/pay_missing").await;
    assert_eq!(reply.status, 404);
    let error = reply.json();
    let body = document["components"]["schemas"]["ErrorBody"]["properties"]
        .as_object()
        .expect("properties");
    for field in error["error"].as_object().expect("envelope").keys() {
        assert!(body.contains_key(field), "undocumented error field {field}");
    }
    let payment = server
        .create(
            "openapi-1",
            &crate::common::payment_body("openapi-o1", "pm_card_visa"),
        )
        .await
        .json();
    let schema = &document["components"]["schemas"]["Payment"];
    let properties = schema["properties"].as_object().expect("properties");
    for field in payment.as_object().expect("payment").keys() {
        assert!(
            properties.contains_key(field),
            "undocumented payment field {field}"
        );
    }
    for field in schema["required"].as_array().expect("required") {
        let field = field.as_str().expect("a name");
        assert!(
            payment.get(field).is_some(),
            "required field {field} missing"
        );
    }
}

// ---------------------------------------------------------------------------
// docs/api.md against the document, and the document's roles against the
// server
// ---------------------------------------------------------------------------

/// One row of docs/api.md's route table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct DocumentedRoute {
    path: String,
    method: String,
    operation: String,
    /// `merchant`, `operator`, `any` or `none`.
    key: String,
}

fn api_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md");
    std::fs::read_to_string(path).expect("docs/api.md")
}

/// The text between backticks, or the text itself.
fn unquote(cell: &str) -> String {
    cell.trim().trim_matches('`').to_string()
}

/// The rows of the route table (`| method | path | operation | key |`).
fn api_md_routes(text: &str) -> BTreeSet<DocumentedRoute> {
    let header = "| method | path | operation | key |";
    let start = text.find(header).expect("docs/api.md has the route table");
    text[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 4, "a route row has 4 cells: {line}");
            DocumentedRoute {
                method: unquote(cells[0]).to_lowercase(),
                path: unquote(cells[1]),
                operation: unquote(cells[2]),
                key: cells[3].split_whitespace().next().unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// The route table the document describes: each operation's id and the
/// role its `security` names (`none` without one).
fn document_routes(document: &Value) -> BTreeSet<DocumentedRoute> {
    documented(document)
        .into_iter()
        .map(|(path, method)| {
            let operation = &document["paths"][&path][&method];
            let key = match operation["security"][0]["bearer_auth"].as_array() {
                None => "none".to_string(),
                Some(roles) => {
                    assert_eq!(roles.len(), 1, "{method} {path} names one role: {roles:?}");
                    roles[0].as_str().expect("a role name").to_string()
                }
            };
            DocumentedRoute {
                operation: operation["operationId"].as_str().expect("id").to_string(),
                path,
                method,
                key,
            }
        })
        .collect()
}

#[tokio::test]
async fn docs_api_md_is_checked_against_the_document() {
    let (_server, document) = served_document().await;
    let text = api_md();
    let written = api_md_routes(&text);
    let generated = document_routes(&document);
    let missing: Vec<_> = generated.difference(&written).collect();
    let stale: Vec<_> = written.difference(&generated).collect();
    assert!(missing.is_empty() && stale.is_empty(), "docs/api.md's route table differs from /openapi.json:\n  missing or different in the docs: {missing:?}\n  in the docs only: {stale:?}");
    for route in &generated {
        assert!(
            ["merchant", "operator", "any", "none"].contains(&route.key.as_str()),
            "{route:?}"
        );
    }

    // Every `METHOD /path` the prose names is a route of the document.
    let routes: BTreeSet<(String, String)> = documented(&document);
    let mut named = 0;
    for span in text.split('`').skip(1).step_by(2) {
        let Some((method, path)) = span.split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) || !path.starts_with('/') {
            continue;
        }
        let path = path.split('?').next().unwrap_or(path);
        assert!(
            routes.contains(&(path.to_string(), method.to_lowercase())),
            "docs/api.md names `{span}`, which /openapi.json does not have"
        );
        named += 1;
    }
    assert!(named >= 10, "the prose names routes: {named}");

    // Every error status an operation documents is in the errors table.
    let errors_at = text.find("## Errors").expect("docs/api.md has ## Errors");
    let table_statuses: BTreeSet<String> = text[errors_at..]
        .lines()
        .filter(|line| line.starts_with("| "))
        .filter_map(|line| line.trim_matches('|').split('|').next())
        .map(|cell| cell.trim().to_string())
        .collect();
    for (path, method) in documented(&document) {
        let responses = document["paths"][&path][&method]["responses"]
            .as_object()
            .expect("responses");
        for status in responses.keys().filter(|s| !s.starts_with('2')) {
            assert!(
                table_statuses.contains(status),
                "{method} {path} answers {status}, which docs/api.md's errors table lacks"
            );
        }
    }
}

const ROLE_MERCHANT_KEY: &str = "sk_roles_merchant_0001";
const ROLE_OPERATOR_KEY: &str = "sk_roles_operator_0001";

/// `path` with every `{parameter}` filled: the sandbox routes need a real
/// provider to get past their lookup; other ids need not exist.
fn concrete(path: &str) -> String {
    path.replace("{provider}", "sandbox_a")
        .replace("{name}", "sandbox_a")
        .replace("{customer_id}", "cus_roles")
        .replace("{id}", "x_roles_1")
}

async fn call_as(
    server: &TestServer,
    route: &DocumentedRoute,
    key: Option<&str>,
) -> crate::common::Reply {
    let method = reqwest::Method::from_bytes(route.method.to_uppercase().as_bytes())
        .expect("an HTTP method");
    let mut request = server
        .client
        .request(method, server.url(&concrete(&route.path)))
        .header("Idempotency-Key", crate::common::unique("roles"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    if ["post", "put", "patch"].contains(&route.method.as_str()) {
        request = request
            .header("content-type", "application/json")
            .body("{}");
    }
    server.send(request).await
}

#[tokio::test]
async fn every_route_takes_the_key_the_document_names() {
    // The document's roles are not only words: each route, called with the
    // kind of key its role excludes, is refused for that reason, and the
    // kinds it admits get past authentication.
    let document = payments::api::openapi::document();
    let server = TestServer::start_with(
        Backend::Sqlite,
        crate::common::ServerOptions {
            env: vec![
                (
                    "PAYMENTS_API_KEYS".into(),
                    format!("acme:{ROLE_MERCHANT_KEY}"),
                ),
                ("PAYMENTS_ADMIN_KEYS".into(), ROLE_OPERATOR_KEY.into()),
            ],
            ..Default::default()
        },
    )
    .await;
    let routes = document_routes(document);
    assert!(routes.len() >= 30, "{}", routes.len());
    for route in &routes {
        let refused = |key: &str, code: &str| (key.to_string(), code.to_string());
        let (admitted, excluded): (Vec<&str>, Option<(String, String)>) = match route.key.as_str() {
            "merchant" => (
                vec![ROLE_MERCHANT_KEY],
                Some(refused(ROLE_OPERATOR_KEY, "merchant_key_required")),
            ),
            "operator" => (
                vec![ROLE_OPERATOR_KEY],
                Some(refused(ROLE_MERCHANT_KEY, "operator_key_required")),
            ),
            "any" => (vec![ROLE_MERCHANT_KEY, ROLE_OPERATOR_KEY], None),
            _ => (vec![], None),
        };
        if let Some((key, code)) = excluded {
            let reply = call_as(&server, route, Some(&key)).await;
            assert_eq!(reply.status, 403, "{route:?}: {}", reply.text);
            assert_eq!(reply.error_code(), code, "{route:?}");
        }
        for key in admitted {
            let reply = call_as(&server, route, Some(key)).await;
            assert!(
                ![401, 403].contains(&reply.status),
                "{route:?} refused an admitted key: {} {}",
                reply.status,
                reply.text
            );
        }
        let anonymous = call_as(&server, route, None).await;
        if route.key == "none" {
            assert!(
                ![401, 403].contains(&anonymous.status),
                "{route:?} needs no key: {} {}",
                anonymous.status,
                anonymous.text
            );
        } else {
            assert_eq!(anonymous.status, 401, "{route:?}: {}", anonymous.text);
        }
    }
}
