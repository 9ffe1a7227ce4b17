//! Invariant 5 under random input, over real HTTP.
//!
//! Each generated request breaks at most one thing (a body field, the
//! `Idempotency-Key` header, the JSON itself, the size limit) and records
//! which, so every answer is predicted, not merely classified: a 400 naming
//! exactly the broken parameter, a 413, or, for a request that breaks
//! nothing, what a small model of idempotency keys and the order guard says
//! (a new payment, a byte-identical replay, 409, 422). The rows of every
//! engine table are counted around each request: a refused request and a
//! replay change none of them. The generator is seeded: a failure names its
//! seed and request, and `FUZZ_SEED` replays it exactly.

use crate::common::{all_payments, all_sandbox_charges, Backend, Reply, TestServer};
use payments::domain::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};

const REQUESTS: usize = 300;
/// The seed when `FUZZ_SEED` does not name another.
const DEFAULT_SEED: u64 = 0x5eed;
/// The header the key travels in, and the `param` its errors name.
const KEY_PARAM: &str = "Idempotency-Key";

/// The generator's seed: `FUZZ_SEED` replays a failing run.
fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

fn pick<T: Clone>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())].clone()
}

// ---------------------------------------------------------------------------
// POST /v1/payments
// ---------------------------------------------------------------------------

/// What a generated request breaks; the answer it must get follows from it.
#[derive(Debug, Clone, PartialEq)]
enum Broken {
    /// Nothing: the model predicts the answer.
    Nothing,
    /// The body is not a JSON object: 400 `invalid_json`, no parameter.
    Json,
    /// The body is over the 64 KiB limit: 413.
    Size,
    /// One parameter (a body field or the key header): 400 naming it.
    Param(String),
}

#[derive(Debug, Clone)]
struct Request {
    key: Option<String>,
    body: String,
    broken: Broken,
}

/// The body fields a payment request has.
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

/// A metadata object of `n` legal entries.
fn metadata_of(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
}

/// A legal body: every required field, optional ones sometimes, often
/// with odd values that are still legal (limits reached exactly, unicode,
/// nulls for optional fields, unknown fields).
fn valid_body(rng: &mut StdRng) -> Map<String, Value> {
    let mut body = Map::new();
    let amounts = [1, 1999, rng.gen_range(1..100_000), 99_999_999_999_i64];
    let amount = pick(rng, &amounts);
    body.insert("amount".into(), json!(amount));
    body.insert(
        "currency".into(),
        json!(pick(rng, &["usd", "EUR", "Gbp", "jpy"])),
    );
    let customers = [
        format!("cus_{}", rng.gen_range(0..1_000_000)),
        "ünïcödé ✓ 🚀".to_string(),
        "x".repeat(255),
        "with space".to_string(),
    ];
    body.insert("customer_id".into(), json!(pick(rng, &customers)));
    // Few orders, so valid requests meet the order guard.
    body.insert(
        "order_id".into(),
        json!(format!("order-{}", rng.gen_range(0..40))),
    );
    body.insert(
        "payment_method".into(),
        json!(pick(rng, &["pm_card_visa", "pm_card_declined"])),
    );
    let descriptions = [
        Value::Null,
        json!(""),
        json!("ünïcödé ✓ 🚀"),
        json!("tab\there, bell \u{7}"),
        json!("d".repeat(1_000)),
    ];
    if rng.gen_bool(0.5) {
        body.insert("description".into(), pick(rng, &descriptions));
    }
    let metadata = [
        Value::Null,
        json!({}),
        json!({ "k": "v" }),
        metadata_of(50),
        json!({ "k".repeat(40): "v".repeat(500) }),
        json!({ "ü": "✓" }),
    ];
    if rng.gen_bool(0.5) {
        body.insert("metadata".into(), pick(rng, &metadata));
    }
    if rng.gen_bool(0.3) {
        let providers = [Value::Null, json!("sandbox_a"), json!("sandbox_b")];
        body.insert("provider".into(), pick(rng, &providers));
    }
    if rng.gen_bool(0.2) {
        body.insert("unknown_field".into(), json!({ "ignored": [1, 2] }));
    }
    body
}

/// Values that break `field`, each with the `param` its 400 must name.
/// `None` leaves the field out.
fn breakers(field: &str) -> Vec<(Option<Value>, String)> {
    let named = |values: Vec<Option<Value>>| -> Vec<(Option<Value>, String)> {
        values.into_iter().map(|v| (v, field.to_string())).collect()
    };
    let wrong_types = || vec![Some(json!(true)), Some(json!([])), Some(json!({}))];
    match field {
        "amount" => named(
            [
                None,
                Some(Value::Null),
                Some(json!("100")),
                Some(json!(-1)),
                Some(json!(0)),
                Some(json!(0.5)),
                Some(json!(1e300)),
                Some(json!(i64::MAX)),
                Some(json!(u64::MAX)),
                // One over DESIGN §3's maximum.
                Some(json!(100_000_000_000_i64)),
            ]
            .into_iter()
            .chain(wrong_types())
            .collect(),
        ),
        "currency" => named(
            [
                None,
                Some(Value::Null),
                Some(json!(840)),
                Some(json!("")),
                Some(json!("us")),
                Some(json!("usdd")),
                Some(json!("zzz")),
                Some(json!("ünï")),
            ]
            .into_iter()
            .chain(wrong_types())
            .collect(),
        ),
        "customer_id" | "order_id" | "payment_method" => named(
            [
                None,
                Some(Value::Null),
                Some(json!(1)),
                Some(json!("")),
                Some(json!("   ")),
                Some(json!("x".repeat(256))),
                Some(json!("bell \u{7}")),
                Some(json!("nul \u{0}")),
            ]
            .into_iter()
            .chain(wrong_types())
            .collect(),
        ),
        "description" => named(vec![
            Some(json!(1)),
            Some(json!(true)),
            Some(json!([])),
            Some(json!({})),
            Some(json!("nul \u{0} inside")),
            Some(json!("d".repeat(1_001))),
        ]),
        "metadata" => {
            let whole = |v: Value| (Some(v), "metadata".to_string());
            let entry = |v: Value, key: &str| (Some(v), format!("metadata[{key}]"));
            vec![
                whole(json!(1)),
                whole(json!("k=v")),
                whole(json!([])),
                whole(metadata_of(51)),
                whole(json!({ "": "v" })),
                whole(json!({ "k".repeat(41): "v" })),
                whole(json!({ "nul\u{0}": "v" })),
                entry(json!({ "k": 1 }), "k"),
                entry(json!({ "k": null }), "k"),
                entry(json!({ "nested": { "deep": [1, 2, 3] } }), "nested"),
                entry(json!({ "k": "v".repeat(501) }), "k"),
                entry(json!({ "k": "nul \u{0}" }), "k"),
            ]
        }
        "provider" => named(vec![
            Some(json!("nope")),
            Some(json!("")),
            Some(json!(1)),
            Some(json!(true)),
            Some(json!([])),
        ]),
        other => unreachable!("no breakers for {other}"),
    }
}

/// A request that breaks at most one thing; `key` is the key it uses
/// unless it breaks the key itself.
fn request(rng: &mut StdRng, key: String) -> Request {
    let mut body = valid_body(rng);
    let valid = |body: &Map<String, Value>| Value::Object(body.clone()).to_string();
    match rng.gen_range(0..100) {
        0..=39 => Request {
            key: Some(key),
            body: valid(&body),
            broken: Broken::Nothing,
        },
        40..=79 => {
            let field = pick(rng, &FIELDS);
            let (value, param) = pick(rng, &breakers(field));
            match value {
                Some(value) => body.insert(field.to_string(), value),
                None => body.remove(field),
            };
            Request {
                key: Some(key),
                body: valid(&body),
                broken: Broken::Param(param),
            }
        }
        80..=89 => {
            let key = pick(rng, &[None, Some(String::new()), Some("k".repeat(256))]);
            Request {
                key,
                body: valid(&body),
                broken: Broken::Param(KEY_PARAM.to_string()),
            }
        }
        90..=97 => Request {
            key: Some(key),
            body: pick(
                rng,
                &[
                    "{not json",
                    "[]",
                    "",
                    "null",
                    "42",
                    "\"amount\"",
                    "{\"amount\": 1,}",
                ],
            )
            .to_string(),
            broken: Broken::Json,
        },
        _ => {
            body.insert("description".into(), json!("d".repeat(70_000)));
            Request {
                key: Some(key),
                body: valid(&body),
                broken: Broken::Size,
            }
        }
    }
}

/// A valid request as the engine fingerprints it (parsed values), so that
/// field order, currency case, `null` for an absent optional field and
/// unknown fields do not make two requests differ.
fn canonical(body: &str) -> Value {
    let body: Map<String, Value> = serde_json::from_str(body).expect("a valid body");
    let optional = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
    let metadata = match optional("metadata") {
        Value::Null => json!({}),
        map => map,
    };
    json!({
        "amount": body["amount"],
        "currency": body["currency"].as_str().map(str::to_ascii_lowercase),
        "customer_id": body["customer_id"],
        "order_id": body["order_id"],
        "payment_method": body["payment_method"],
        "description": optional("description"),
        "metadata": metadata,
        "provider": optional("provider"),
    })
}

/// What the engine has stored, as far as answers to valid requests depend
/// on it (DESIGN §5).
#[derive(Default)]
struct Model {
    /// Keys that stored an answer: the request's canonical form and the
    /// body that was answered.
    keys: HashMap<String, (Value, String)>,
    /// Orders held by a payment that did not fail: its id and status.
    held: HashMap<String, (String, String)>,
    created: usize,
    succeeded: usize,
}

/// The answer a request that breaks nothing must get.
#[derive(Debug)]
enum Expected {
    /// A new payment: 201, not a replay.
    Created,
    /// 201 with `Idempotent-Replayed: true` and exactly this body.
    Replay(String),
    /// 422 `idempotency_key_reused`.
    KeyReused,
    /// 409 with this code, naming this payment.
    OrderHeld {
        code: &'static str,
        payment_id: String,
    },
}

impl Expected {
    fn kind(&self) -> &'static str {
        match self {
            Expected::Created => "created",
            Expected::Replay(_) => "replay",
            Expected::KeyReused => "key reused",
            Expected::OrderHeld { .. } => "order held",
        }
    }
}

impl Model {
    fn expect(&self, key: &str, body: &str) -> Expected {
        let request = canonical(body);
        if let Some((stored, answer)) = self.keys.get(key) {
            return if *stored == request {
                Expected::Replay(answer.clone())
            } else {
                Expected::KeyReused
            };
        }
        let order = request["order_id"].as_str().unwrap_or_default();
        match self.held.get(order) {
            Some((payment_id, status)) => Expected::OrderHeld {
                code: if status == "succeeded" {
                    "order_already_paid"
                } else {
                    "order_payment_in_progress"
                },
                payment_id: payment_id.clone(),
            },
            None => Expected::Created,
        }
    }

    /// Records a new payment answered `reply` for `key` and `body`.
    fn created(&mut self, key: &str, body: &str, reply: &Reply) {
        let payment = reply.json();
        let status = payment["status"].as_str().unwrap_or_default().to_string();
        let order = payment["order_id"].as_str().unwrap_or_default().to_string();
        self.created += 1;
        if status == "succeeded" {
            self.succeeded += 1;
        }
        if status != "failed" {
            let id = payment["id"].as_str().unwrap_or_default().to_string();
            self.held.insert(order, (id, status));
        }
        self.keys
            .insert(key.to_string(), (canonical(body), reply.text.clone()));
    }
}

/// The status a new payment paid with `body`'s method ends in.
fn outcome_of(body: &str) -> &'static str {
    match canonical(body)["payment_method"].as_str() {
        Some("pm_card_visa") => "succeeded",
        _ => "failed",
    }
}

/// Checks the error envelope of a 4xx and returns its `error` object.
fn error_of(reply: &Reply, context: &str) -> Value {
    let error = reply.json()["error"].clone();
    assert!(
        error["type"].is_string() && error["code"].is_string() && error["message"].is_string(),
        "an error envelope: {context}"
    );
    error
}

/// Row counts of every engine table that differ between two snapshots.
fn changed(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> Vec<String> {
    let tables: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    tables
        .into_iter()
        .filter(|t| before.get(*t) != after.get(*t))
        .map(|t| format!("{t}: {:?} -> {:?}", before.get(t), after.get(t)))
        .collect()
}

#[rstest]
#[tokio::test]
async fn random_malformed_requests_get_the_predicted_answer_and_write_nothing(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let server = TestServer::start(backend).await;
    let mut model = Model::default();
    let mut sent: Vec<Request> = Vec::new();
    let mut by_broken: BTreeMap<String, usize> = BTreeMap::new();
    let mut answers: BTreeMap<&str, usize> = BTreeMap::new();
    let mut rows = server.table_counts().await;
    for i in 0..REQUESTS {
        let request = if !sent.is_empty() && rng.gen_range(0..10) == 0 {
            // A client resending an earlier request as it was.
            pick(&mut rng, &sent)
        } else {
            let key = if rng.gen_range(0..10) == 0 {
                format!("fuzz-{seed}-shared")
            } else {
                format!("fuzz-{seed}-{i}")
            };
            request(&mut rng, key)
        };
        sent.push(request.clone());
        let reply = server
            .create_raw(
                request.key.as_deref(),
                Some(crate::common::DEV_KEY),
                request.body.clone(),
            )
            .await;
        let mut shown = request.body.clone();
        shown.truncate(300);
        let context = format!(
            "seed {seed}, request {i}, key {:?}, breaks {:?}: {shown} -> {} {}",
            request.key, request.broken, reply.status, reply.text
        );
        let label = match &request.broken {
            Broken::Param(param) => format!("param {param}"),
            other => format!("{other:?}"),
        };
        *by_broken.entry(label).or_default() += 1;
        let after = server.table_counts().await;
        let mut writes_nothing = true;
        match &request.broken {
            Broken::Param(param) => {
                assert_eq!(reply.status, 400, "{context}");
                let error = error_of(&reply, &context);
                assert_eq!(error["type"], "invalid_request_error", "{context}");
                assert_eq!(error["param"], param.as_str(), "{context}");
            }
            Broken::Json => {
                assert_eq!(reply.status, 400, "{context}");
                assert_eq!(
                    error_of(&reply, &context)["code"],
                    "invalid_json",
                    "{context}"
                );
            }
            Broken::Size => {
                assert_eq!(reply.status, 413, "{context}");
                error_of(&reply, &context);
            }
            Broken::Nothing => {
                let key = request.key.as_deref().expect("a valid request has a key");
                let expected = model.expect(key, &request.body);
                *answers.entry(expected.kind()).or_default() += 1;
                match expected {
                    Expected::Created => {
                        assert_eq!(reply.status, 201, "{context}");
                        assert_eq!(reply.header("Idempotent-Replayed"), None, "{context}");
                        assert_eq!(
                            reply.json()["status"],
                            outcome_of(&request.body),
                            "{context}"
                        );
                        model.created(key, &request.body, &reply);
                        writes_nothing = false;
                        for table in ["payments", "idempotency_keys"] {
                            assert_eq!(
                                after.get(table).copied(),
                                rows.get(table).map(|n| n + 1),
                                "one new row in {table}: {context}"
                            );
                        }
                    }
                    Expected::Replay(answer) => {
                        assert_eq!(reply.status, 201, "{context}");
                        assert_eq!(
                            reply.header("Idempotent-Replayed").as_deref(),
                            Some("true"),
                            "{context}"
                        );
                        assert_eq!(reply.text, answer, "a replay is byte-identical: {context}");
                    }
                    Expected::KeyReused => {
                        assert_eq!(reply.status, 422, "{context}");
                        assert_eq!(
                            error_of(&reply, &context)["code"],
                            "idempotency_key_reused",
                            "{context}"
                        );
                    }
                    Expected::OrderHeld { code, payment_id } => {
                        assert_eq!(reply.status, 409, "{context}");
                        let error = error_of(&reply, &context);
                        assert_eq!(error["code"], code, "{context}");
                        assert_eq!(error["payment_id"], payment_id.as_str(), "{context}");
                    }
                }
            }
        }
        if writes_nothing {
            let changed = changed(&rows, &after);
            assert!(
                changed.is_empty(),
                "an answer that stores nothing changed {changed:?}: {context}"
            );
        }
        rows = after;
    }
    eprintln!(
        "fuzz {backend:?} seed {seed}: requests by what they broke {by_broken:?}; \
         valid ones by answer {answers:?}; rows {rows:?}"
    );
    // The database holds exactly what the model says was created, and the
    // providers charged exactly the payments that succeeded.
    assert_eq!(all_payments(&server).await.len(), model.created);
    assert_eq!(rows.get("payments").copied(), Some(model.created as i64));
    assert_eq!(all_sandbox_charges(&server).await.len(), model.succeeded);
    // The run must exercise every kind of answer the model predicts, and
    // break every parameter, or some of the checks above never ran.
    assert!(model.succeeded > 0, "no payment succeeded (seed {seed})");
    for kind in ["created", "replay", "key reused", "order held"] {
        assert!(
            answers.contains_key(kind),
            "no valid request was answered {kind}: {answers:?} (seed {seed})"
        );
    }
    for param in FIELDS.iter().chain([&KEY_PARAM]) {
        let (exact, entry) = (format!("param {param}"), format!("param {param}["));
        assert!(
            by_broken
                .keys()
                .any(|label| *label == exact || label.starts_with(&entry)),
            "{param} was never broken: {by_broken:?} (seed {seed})"
        );
    }
}

// ---------------------------------------------------------------------------
// GET /v1/payments
// ---------------------------------------------------------------------------

/// Percent-encodes every byte that is not unreserved, so a value reaches
/// the server exactly as generated.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The payments seeded before the list fuzzer runs: what each query is
/// checked against.
struct Seeded {
    /// Newest first, as listed.
    payments: Vec<Value>,
}

impl Seeded {
    fn field(&self, rng: &mut StdRng, field: &str) -> String {
        let payment = pick(rng, &self.payments);
        payment[field].as_str().unwrap_or_default().to_string()
    }
}

/// A legal value for list parameter `name`.
fn valid_value(rng: &mut StdRng, seeded: &Seeded, name: &str) -> String {
    let options: Vec<String> = match name {
        "limit" => vec!["1".into(), "100".into(), rng.gen_range(1..=100).to_string()],
        "starting_after" => vec![
            seeded.field(rng, "id"),
            // Well-formed, names no payment: a cursor, not a look-up.
            "pay_00000000000000000000000000000000".into(),
            "pay_ffffffffffffffffffffffffffffffff".into(),
        ],
        "customer_id" => vec![
            seeded.field(rng, "customer_id"),
            "nobody".into(),
            "a b & c=d".into(),
            "ünï".into(),
            String::new(),
        ],
        "order_id" => vec![seeded.field(rng, "order_id"), "nope".into()],
        "status" => payments::domain::PaymentStatus::ALL
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
        "created_gte" | "created_lt" => vec![
            seeded.field(rng, "created_at"),
            "2020-01-01T00:00:00Z".into(),
            "2999-01-01T00:00:00+02:00".into(),
        ],
        // Unknown parameters are ignored.
        _ => vec!["1".into(), "x".into(), String::new()],
    };
    pick(rng, &options)
}

/// A value that breaks list parameter `name`.
fn broken_value(rng: &mut StdRng, name: &str) -> String {
    let values: &[&str] = match name {
        "limit" => &["0", "101", "-5", "abc", "", "1.5", "99999999999", " 5"],
        "starting_after" => &[
            "pay_zz",
            "abc",
            "",
            "pay_",
            "pay_0000000000000000000000000000000G",
            "PAY_00000000000000000000000000000000",
            "pay_FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
            "att_00000000000000000000000000000000",
        ],
        "status" => &["nope", "", "SUCCEEDED", "Succeeded", "succeeded "],
        "created_gte" | "created_lt" => &[
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01",
            "1700000000",
            // A '+' sent unencoded arrives as a space.
            "2026-01-01T00:00:00 00:00",
        ],
        "customer_id" | "order_id" => &["\u{0}", "a\u{0}b"],
        other => unreachable!("{other} cannot be broken"),
    };
    pick(rng, values).to_string()
}

const LIST_PARAMS: [&str; 7] = [
    "limit",
    "starting_after",
    "customer_id",
    "order_id",
    "status",
    "created_gte",
    "created_lt",
];

/// A query string of legal parameters (some unknown, some repeated) and,
/// half of the time, one broken one, whose name is returned.
fn list_query(rng: &mut StdRng, seeded: &Seeded) -> (Vec<(String, String)>, Option<String>) {
    let mut pairs: Vec<(String, String)> = (0..rng.gen_range(0..4))
        .map(|_| {
            let name = if rng.gen_range(0..8) == 0 {
                "bogus".to_string()
            } else {
                pick(rng, &LIST_PARAMS).to_string()
            };
            let value = valid_value(rng, seeded, &name);
            (name, value)
        })
        .collect();
    let broken = rng
        .gen_bool(0.5)
        .then(|| pick(rng, &LIST_PARAMS).to_string());
    if let Some(name) = &broken {
        let at = rng.gen_range(0..=pairs.len());
        pairs.insert(at, (name.clone(), broken_value(rng, name)));
    }
    (pairs, broken)
}

/// The page a legal query must return: the seeded payments filtered as the
/// query says (a repeated parameter: the last one counts), newest first,
/// cut at the limit. Returns (ids, has_more).
fn expected_page(seeded: &Seeded, pairs: &[(String, String)]) -> (Vec<String>, bool) {
    let last = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let micros = |text: &str| {
        Timestamp::parse_rfc3339(text)
            .expect("a legal timestamp")
            .as_micros()
    };
    let limit: usize = last("limit").map_or(10, |l| l.parse().expect("a legal limit"));
    let matching: Vec<String> = seeded
        .payments
        .iter()
        .filter(|p| {
            let text = |field: &str| p[field].as_str().unwrap_or_default();
            let created = micros(text("created_at"));
            ["customer_id", "order_id", "status"]
                .iter()
                .all(|field| last(field).is_none_or(|v| v == text(field)))
                && last("created_gte").is_none_or(|t| created >= micros(t))
                && last("created_lt").is_none_or(|t| created < micros(t))
                && last("starting_after").is_none_or(|cursor| text("id") < cursor)
        })
        .map(|p| p["id"].as_str().unwrap_or_default().to_string())
        .collect();
    let has_more = matching.len() > limit;
    (matching.into_iter().take(limit).collect(), has_more)
}

/// Payments of several customers, orders and statuses to list.
async fn seed_payments(server: &TestServer) -> Seeded {
    for i in 0..25 {
        let token = [
            "pm_card_visa",
            "pm_card_declined",
            "pm_card_insufficient_funds",
        ][i % 3];
        let mut body = crate::common::payment_body(&format!("list-order-{i}"), token);
        body["customer_id"] = json!(format!("cus_{}", i % 4));
        let reply = server.create(&format!("list-{i}"), &body).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    let payments = all_payments(server).await;
    assert_eq!(payments.len(), 25);
    Seeded { payments }
}

#[rstest]
#[tokio::test]
async fn random_list_queries_get_400_naming_the_broken_parameter_or_the_right_page(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let server = TestServer::start(backend).await;
    let seeded = seed_payments(&server).await;
    let (mut pages, mut refused, mut non_empty) = (0, 0, 0);
    for i in 0..REQUESTS {
        let (pairs, broken) = list_query(&mut rng, &seeded);
        let query: Vec<String> = pairs
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        let query = query.join("&");
        let reply = server.get(&format!("/v1/payments?{query}")).await;
        let context = format!(
            "seed {seed}, request {i}: ?{query} (breaks {broken:?}) -> {} {}",
            reply.status, reply.text
        );
        match broken {
            Some(param) => {
                assert_eq!(reply.status, 400, "{context}");
                let error = error_of(&reply, &context);
                assert_eq!(error["type"], "invalid_request_error", "{context}");
                assert_eq!(error["param"], param.as_str(), "{context}");
                refused += 1;
            }
            None => {
                assert_eq!(reply.status, 200, "{context}");
                let page = reply.json();
                let ids: Vec<String> = page["data"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no data: {context}"))
                    .iter()
                    .map(|p| p["id"].as_str().unwrap_or_default().to_string())
                    .collect();
                let (expected, has_more) = expected_page(&seeded, &pairs);
                assert_eq!(ids, expected, "{context}");
                assert_eq!(page["has_more"], has_more, "{context}");
                pages += 1;
                non_empty += usize::from(!ids.is_empty());
            }
        }
    }
    eprintln!(
        "list fuzz {backend:?} seed {seed}: {pages} pages ({non_empty} not empty), {refused} refused"
    );
    assert!(
        pages > 0 && non_empty > 0 && refused > 0,
        "the generator must produce legal queries that find payments, and broken ones (seed {seed})"
    );
}
