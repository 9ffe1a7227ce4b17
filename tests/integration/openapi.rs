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
