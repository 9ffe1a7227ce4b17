//! Invariant 5 under random input: hundreds of malformed payment requests
//! (wrong types, extreme numbers, odd strings, missing fields) over real
//! HTTP. Every answer is a documented status with the error envelope, never
//! a 5xx, and only the requests that were answered 201 wrote anything.
//! The generator is seeded: a failure names its seed and replays exactly.

use crate::common::{Backend, TestServer, DEV_KEY};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use serde_json::{json, Map, Value};
use std::collections::HashSet;

const REQUESTS: usize = 300;
/// The seed when `FUZZ_SEED` does not name another.
const DEFAULT_SEED: u64 = 0x5eed;

/// The generator's seed: `FUZZ_SEED` replays a failing run.
fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}
const FIELDS: [&str; 8] = [
    "amount",
    "currency",
    "customer_id",
    "order_id",
    "payment_method",
    "description",
    "metadata",
    "provider",
];

/// A value for `field`: valid most of the time, otherwise something hostile.
fn value(rng: &mut StdRng, field: &str) -> Option<Value> {
    let hostile = [
        Value::Null,
        json!(true),
        json!([]),
        json!({}),
        json!(""),
        json!(-1),
        json!(0),
        json!(0.5),
        json!(1e300),
        json!(i64::MAX),
        json!(u64::MAX),
        json!("x".repeat(300)),
        json!("\u{0}\u{7}tab\there"),
        json!("ünïcödé ✓ 🚀"),
        json!({ "nested": { "deep": [1, 2, 3] } }),
    ];
    match rng.gen_range(0..20) {
        0 => None,
        1 => Some(hostile[rng.gen_range(0..hostile.len())].clone()),
        _ => Some(match field {
            "amount" => json!(rng.gen_range(1..100_000)),
            "currency" => json!(["usd", "EUR", "Gbp", "jpy"][rng.gen_range(0..4)]),
            "metadata" => json!({ "k": "v" }),
            "provider" => json!(["sandbox_a", "sandbox_b"][rng.gen_range(0..2)]),
            "payment_method" => json!(["pm_card_visa", "pm_card_declined"][rng.gen_range(0..2)]),
            // Few orders, so some requests meet the order guard (409).
            "order_id" => json!(format!("order-{}", rng.gen_range(0..40))),
            _ => json!(format!("{field}-{}", rng.gen_range(0..1_000_000))),
        }),
    }
}

fn body(rng: &mut StdRng) -> String {
    match rng.gen_range(0..20) {
        0 => "{not json".to_string(),
        1 => "[]".to_string(),
        2 => String::new(),
        _ => {
            let mut object = Map::new();
            for field in FIELDS {
                if let Some(v) = value(rng, field) {
                    object.insert(field.to_string(), v);
                }
            }
            if rng.gen_bool(0.2) {
                object.insert("unknown_field".into(), json!("ignored"));
            }
            Value::Object(object).to_string()
        }
    }
}

#[rstest]
#[tokio::test]
async fn random_malformed_requests_get_documented_4xx_and_write_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let server = TestServer::start(backend).await;
    let mut created = HashSet::new();
    let mut statuses: std::collections::BTreeMap<u16, usize> = std::collections::BTreeMap::new();
    for i in 0..REQUESTS {
        let body = body(&mut rng);
        let key = match rng.gen_range(0..10) {
            0 => None,
            1 => Some("k".repeat(300)),
            // A shared key: replays (201) or a different body under it (422).
            2 => Some(format!("fuzz-{seed}-shared")),
            _ => Some(format!("fuzz-{seed}-{i}")),
        };
        let reply = server
            .create_raw(key.as_deref(), Some(DEV_KEY), body.clone())
            .await;
        let context = format!(
            "seed {seed}, request {i}: {body} -> {} {}",
            reply.status, reply.text
        );
        *statuses.entry(reply.status).or_insert(0) += 1;
        match reply.status {
            201 => {
                let id = reply.json()["id"].as_str().map(str::to_string);
                created.insert(id.unwrap_or_else(|| panic!("201 without an id: {context}")));
            }
            400 | 409 | 413 | 422 => {
                let error = &reply.json()["error"];
                assert!(
                    error["type"].is_string()
                        && error["code"].is_string()
                        && error["message"].is_string(),
                    "{context}"
                );
                if reply.status == 400 && error["code"] != "invalid_json" {
                    assert!(
                        error["param"].is_string(),
                        "a 400 names its parameter: {context}"
                    );
                }
            }
            _ => panic!("undocumented answer: {context}"),
        }
    }
    eprintln!("fuzz {backend:?} seed {seed}: answers by status {statuses:?}");
    assert_eq!(
        server.count_rows("payments").await,
        created.len() as i64,
        "only accepted requests wrote payments"
    );
    assert_eq!(
        server.count_rows("idempotency_keys").await,
        created.len() as i64
    );
    assert!(
        !created.is_empty(),
        "the generator must also produce valid requests (seed {seed})"
    );
}

/// A random query string for `GET /v1/payments`, often broken.
fn query(rng: &mut StdRng) -> String {
    const NAMES: [&str; 9] = [
        "limit",
        "starting_after",
        "customer_id",
        "order_id",
        "status",
        "created_gte",
        "created_lt",
        "bogus",
        "",
    ];
    const VALUES: [&str; 16] = [
        "1",
        "100",
        "101",
        "0",
        "-5",
        "abc",
        "succeeded",
        "nope",
        "2026-01-01T00:00:00Z",
        "yesterday",
        "pay_00000000000000000000000000000000",
        "pay_zz",
        "%ZZ",
        "%00",
        "a%20b",
        "",
    ];
    (0..rng.gen_range(0..5))
        .map(|_| {
            format!(
                "{}={}",
                NAMES[rng.gen_range(0..NAMES.len())],
                VALUES[rng.gen_range(0..VALUES.len())]
            )
        })
        .collect::<Vec<_>>()
        .join(if rng.gen_bool(0.9) { "&" } else { "&&=" })
}

#[rstest]
#[tokio::test]
async fn random_list_queries_never_fail_the_server(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let server = TestServer::start(backend).await;
    let mut ok = 0;
    for i in 0..REQUESTS {
        let query = query(&mut rng);
        let reply = server.get(&format!("/v1/payments?{query}")).await;
        let context = format!(
            "seed {seed}, request {i}: ?{query} -> {} {}",
            reply.status, reply.text
        );
        match reply.status {
            200 => {
                ok += 1;
                assert!(reply.json()["data"].is_array(), "{context}");
            }
            400 => assert!(
                reply.json()["error"]["type"] == "invalid_request_error",
                "{context}"
            ),
            _ => panic!("undocumented answer: {context}"),
        }
    }
    assert!(ok > 0, "some queries must be valid (seed {seed})");
}
