//! Bad input gets a clear 4xx with the error envelope and changes nothing
//! (DESIGN §6 and §13.5).

use crate::common::Backend;
use crate::common::{payment_body, unique, Reply, TestServer, DEV_KEY};
use rstest::rstest;
use serde_json::{json, Value};

/// The tables a payment writes to; none may gain a row from a bad request.
const TABLES: [&str; 5] = [
    "payments",
    "attempts",
    "idempotency_keys",
    "orders",
    "payment_events",
];

/// Asserts `reply` is `status` with a well-formed error envelope of `kind`
/// whose `param` is `param`; returns the error object.
fn assert_error(what: &str, reply: &Reply, status: u16, kind: &str, param: Option<&str>) -> Value {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    let body: Value = serde_json::from_str(&reply.text)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", reply.text));
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("{what}: no error envelope: {}", reply.text))
        .clone();
    assert_eq!(error["type"], kind, "{what}: {}", reply.text);
    assert!(
        error["code"].as_str().is_some_and(|c| !c.is_empty()),
        "{what}: code: {}",
        reply.text
    );
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: message: {}",
        reply.text
    );
    let expected = param.map_or(Value::Null, |p| json!(p));
    assert_eq!(
        error.get("param"),
        Some(&expected),
        "{what}: param: {}",
        reply.text
    );
    error
}

/// A valid body for a fresh order, with `edit` applied.
fn body_with(edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let mut body = payment_body(&unique("ord"), "pm_card_visa");
    edit(body.as_object_mut().expect("payment_body is an object"));
    body.to_string()
}

/// POSTs `body` with the development key under `key`; expects a 400 on `param`.
async fn expect_400(
    server: &TestServer,
    what: &str,
    key: &str,
    body: String,
    param: Option<&str>,
) -> Value {
    let reply = server.create_raw(Some(key), Some(DEV_KEY), body).await;
    assert_error(what, &reply, 400, "invalid_request_error", param)
}

async fn assert_nothing_written(server: &TestServer) {
    for table in TABLES {
        assert_eq!(
            server.count_rows(table).await,
            0,
            "rows in {table} after bad requests"
        );
    }
    for provider in ["sandbox_a", "sandbox_b"] {
        let reply = server.get(&format!("/v1/sandbox/{provider}/charges")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let charges = reply.json()["data"].as_array().cloned().unwrap_or_default();
        assert!(
            charges.is_empty(),
            "{provider} charged after bad requests: {charges:?}"
        );
    }
}

#[rstest]
#[tokio::test]
async fn bad_payment_requests_are_refused_and_write_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    // Every bad request below uses this one key: a rejected request must not
    // claim it, which the last step checks.
    let key = unique("bad");

    // amount
    let amounts: [(&str, Value); 7] = [
        ("negative", json!(-1)),
        ("zero", json!(0)),
        ("huge", json!(100_000_000_000_i64)),
        ("exponent", json!(1e20)),
        ("fraction", json!(10.5)),
        ("string", json!("100")),
        ("null", Value::Null),
    ];
    for (why, amount) in amounts {
        let body = body_with(|b| {
            b.insert("amount".into(), amount.clone());
        });
        expect_400(
            &server,
            &format!("amount {why}"),
            &key,
            body,
            Some("amount"),
        )
        .await;
    }
    // 1e20 written literally (not as serde_json renders a float).
    let literal = body_with(|_| {}).replace("1999", "1e20");
    expect_400(
        &server,
        "amount 1e20 literal",
        &key,
        literal,
        Some("amount"),
    )
    .await;
    let body = body_with(|b| {
        b.remove("amount");
    });
    let error = expect_400(&server, "amount missing", &key, body, Some("amount")).await;
    assert_eq!(error["code"], "parameter_missing");

    // currency
    for (why, currency) in [
        ("unknown", json!("XYZ")),
        ("number", json!(840)),
        ("object", json!({"code": "usd"})),
    ] {
        let body = body_with(|b| {
            b.insert("currency".into(), currency.clone());
        });
        expect_400(
            &server,
            &format!("currency {why}"),
            &key,
            body,
            Some("currency"),
        )
        .await;
    }

    // each missing required field names itself
    for field in ["currency", "customer_id", "order_id", "payment_method"] {
        let body = body_with(|b| {
            b.remove(field);
        });
        let error = expect_400(
            &server,
            &format!("{field} missing"),
            &key,
            body,
            Some(field),
        )
        .await;
        assert_eq!(error["code"], "parameter_missing", "{field}");
        let body = body_with(|b| {
            b.insert(field.into(), Value::Null);
        });
        expect_400(&server, &format!("{field} null"), &key, body, Some(field)).await;
    }

    // empty and blank id fields
    for field in ["customer_id", "order_id", "payment_method"] {
        for value in ["", "   "] {
            let body = body_with(|b| {
                b.insert(field.into(), json!(value));
            });
            expect_400(
                &server,
                &format!("{field} = {value:?}"),
                &key,
                body,
                Some(field),
            )
            .await;
        }
    }

    // metadata
    let body = body_with(|b| {
        b.insert("metadata".into(), json!({"ok": "fine", "k": 1}));
    });
    expect_400(
        &server,
        "metadata non-string value",
        &key,
        body,
        Some("metadata[k]"),
    )
    .await;
    let too_many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let body = body_with(|b| {
        b.insert("metadata".into(), Value::Object(too_many));
    });
    expect_400(
        &server,
        "metadata with 51 keys",
        &key,
        body,
        Some("metadata"),
    )
    .await;
    let body = body_with(|b| {
        b.insert("metadata".into(), json!(["a"]));
    });
    expect_400(
        &server,
        "metadata not an object",
        &key,
        body,
        Some("metadata"),
    )
    .await;

    // pinned provider that does not exist
    let body = body_with(|b| {
        b.insert("provider".into(), json!("no_such_provider"));
    });
    expect_400(&server, "unknown provider", &key, body, Some("provider")).await;

    // malformed JSON: the parser's reason is in the message
    let error = expect_400(
        &server,
        "malformed JSON",
        &key,
        r#"{"amount": 100,"#.into(),
        None,
    )
    .await;
    assert_eq!(error["code"], "invalid_json");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("EOF") || message.contains("line 1"),
        "the parser's reason: {message}"
    );
    let error = expect_400(
        &server,
        "trailing garbage",
        &key,
        r#"{"amount": 100} x"#.into(),
        None,
    )
    .await;
    assert_eq!(error["code"], "invalid_json");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("trailing"),
        "{error}"
    );
    let error = expect_400(&server, "empty body", &key, String::new(), None).await;
    assert_eq!(error["code"], "invalid_json");

    // a JSON value that is not an object
    for body in [r#"[{"amount": 100}]"#, "100", r#""a string""#, "null"] {
        let error = expect_400(&server, &format!("body {body}"), &key, body.into(), None).await;
        assert_eq!(error["code"], "invalid_json", "{body}");
    }

    // more than 64 KiB
    let big = body_with(|b| {
        b.insert("description".into(), json!("x".repeat(100 * 1024)));
    });
    let reply = server.create_raw(Some(&key), Some(DEV_KEY), big).await;
    assert_error("100 KiB body", &reply, 413, "invalid_request_error", None);

    // Idempotency-Key: missing, too long, not printable
    let reply = server
        .create_raw(None, Some(DEV_KEY), body_with(|_| {}))
        .await;
    assert_error(
        "no Idempotency-Key",
        &reply,
        400,
        "invalid_request_error",
        Some("Idempotency-Key"),
    );
    let reply = server
        .create_raw(Some(&"k".repeat(300)), Some(DEV_KEY), body_with(|_| {}))
        .await;
    assert_error(
        "300-character key",
        &reply,
        400,
        "invalid_request_error",
        Some("Idempotency-Key"),
    );
    let reply = server
        .create_raw(Some("tab\tkey"), Some(DEV_KEY), body_with(|_| {}))
        .await;
    assert_error(
        "key with a tab",
        &reply,
        400,
        "invalid_request_error",
        Some("Idempotency-Key"),
    );

    // authentication
    let reply = server.create_raw(Some(&key), None, body_with(|_| {})).await;
    assert_error(
        "no Authorization",
        &reply,
        401,
        "authentication_error",
        None,
    );
    let reply = server
        .create_raw(Some(&key), Some("sk_test_wrong"), body_with(|_| {}))
        .await;
    assert_error("invalid API key", &reply, 401, "authentication_error", None);
    let basic = server
        .send(
            server
                .client
                .post(server.url("/v1/payments"))
                .header("Idempotency-Key", &key)
                .header("Authorization", format!("Basic {DEV_KEY}"))
                .body(body_with(|_| {})),
        )
        .await;
    assert_error(
        "not a Bearer header",
        &basic,
        401,
        "authentication_error",
        None,
    );

    assert_nothing_written(&server).await;

    // The server still works, and the key every rejected request used is free.
    let order = unique("ord");
    let reply = server
        .create(&key, &payment_body(&order, "pm_card_visa"))
        .await;
    assert_eq!(
        reply.status, 201,
        "a valid request under the rejected requests' key: {}",
        reply.text
    );
    assert_eq!(
        reply.header("Idempotent-Replayed"),
        None,
        "nothing was stored under the key"
    );
    assert_eq!(reply.json()["status"], "succeeded", "{}", reply.text);
    assert_eq!(server.total_charges(&order).await, 1);
    assert_eq!(server.count_rows("payments").await, 1);
    assert_eq!(server.count_rows("idempotency_keys").await, 1);
}

#[rstest]
#[tokio::test]
async fn bad_list_parameters_are_named(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let cases = [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("status=bogus", "status"),
        ("created_gte=yesterday", "created_gte"),
        ("created_lt=2024-13-45", "created_lt"),
        ("starting_after=garbage", "starting_after"),
        (
            "starting_after=att_0190a0b0c0d07e8f9a0b1c2d3e4f5a6b",
            "starting_after",
        ),
    ];
    for (query, param) in cases {
        let reply = server.get(&format!("/v1/payments?{query}")).await;
        assert_error(query, &reply, 400, "invalid_request_error", Some(param));
    }
    // The bounds themselves are fine.
    for query in [
        "limit=1",
        "limit=100",
        "status=failed",
        "created_gte=2024-01-01T00:00:00Z",
    ] {
        let reply = server.get(&format!("/v1/payments?{query}")).await;
        assert_eq!(reply.status, 200, "{query}: {}", reply.text);
    }
    // Reads need a key too.
    let reply = server
        .send(server.client.get(server.url("/v1/payments")))
        .await;
    assert_error(
        "list without a key",
        &reply,
        401,
        "authentication_error",
        None,
    );
    assert_nothing_written(&server).await;
}
