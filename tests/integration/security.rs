//! Who may call what, and what leaks: operator keys, the sandbox's books
//! per merchant, slow bodies, duplicated headers, `/readyz`, and secrets
//! (API keys, database passwords) kept out of messages and logs.

use crate::common::{
    binary, payment_body, postgres_url, unique, Backend, Reply, ServerOptions, TestDb, TestServer,
    DEV_KEY,
};
use payments::config::Config;
use payments::domain::{Amount, Currency, MerchantId};
use payments::providers::sandbox::ChargeFilter;
use payments::{Engine, PaymentRequest};
use rstest::rstest;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ACME: &str = "sk_acme_12345678";
const GLOBEX: &str = "sk_globex_12345678";
const OPS: &str = "sk_ops_12345678";

/// Merchants acme and globex, and an operator key of its own.
fn keyed_options() -> ServerOptions {
    ServerOptions {
        env: vec![
            (
                "PAYMENTS_API_KEYS".into(),
                format!("acme:{ACME},globex:{GLOBEX}"),
            ),
            ("PAYMENTS_ADMIN_KEYS".into(), OPS.into()),
        ],
        ..ServerOptions::default()
    }
}

fn assert_error(reply: &Reply, status: u16, kind: &str, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let error = &reply.json()["error"];
    assert_eq!(error["type"], kind, "{}", reply.text);
    assert_eq!(error["code"], code, "{}", reply.text);
}

async fn patch_provider_as(server: &TestServer, api_key: &str, body: Value) -> Reply {
    let request = server
        .client
        .patch(server.url("/v1/providers/sandbox_a"))
        .bearer_auth(api_key)
        .json(&body);
    server.send(request).await
}

async fn put_faults_as(server: &TestServer, api_key: &str, body: Value) -> Reply {
    let request = server
        .client
        .put(server.url("/v1/sandbox/sandbox_a/faults"))
        .bearer_auth(api_key)
        .json(&body);
    server.send(request).await
}

/// A payment for `order_id` pinned to sandbox_a, as `api_key`.
async fn pay_as(server: &TestServer, api_key: &str, order_id: &str) -> Reply {
    let mut body = payment_body(order_id, "pm_card_visa");
    body["provider"] = json!("sandbox_a");
    server
        .create_raw(Some(&unique("key")), Some(api_key), body.to_string())
        .await
}

// ---------------------------------------------------------------------------
// The operator role
// ---------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn operator_actions_need_an_operator_key(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, keyed_options()).await;
    let forbidden = [
        patch_provider_as(&server, ACME, json!({ "force_open": true })).await,
        put_faults_as(&server, ACME, json!({ "outage": true })).await,
        server.get_as("/v1/sandbox/sandbox_a/faults", ACME).await,
    ];
    for reply in &forbidden {
        assert_error(reply, 403, "permission_error", "operator_key_required");
    }
    let providers = server.get_as("/v1/providers", ACME).await;
    assert_eq!(providers.status, 200, "{}", providers.text);
    assert_eq!(
        providers.json()["data"][0]["circuit_state"],
        json!("closed"),
        "the refused PATCH changed nothing: {}",
        providers.text
    );
    let unauthenticated = patch_provider_as(&server, DEV_KEY, json!({ "enabled": true })).await;
    assert_error(
        &unauthenticated,
        401,
        "authentication_error",
        "invalid_api_key",
    );

    let patched = patch_provider_as(&server, OPS, json!({ "enabled": true })).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let faults = put_faults_as(&server, OPS, json!({ "latency_ms": 0 })).await;
    assert_eq!(faults.status, 200, "{}", faults.text);
    let read = server.get_as("/v1/sandbox/sandbox_a/faults", OPS).await;
    assert_eq!(read.status, 200, "{}", read.text);
}

#[rstest]
#[tokio::test]
async fn an_operator_key_reaches_no_merchant_resources(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, keyed_options()).await;
    let create = pay_as(&server, OPS, &unique("ord")).await;
    assert_error(&create, 403, "permission_error", "merchant_key_required");
    let list = server.get_as("/v1/payments", OPS).await;
    assert_error(&list, 403, "permission_error", "merchant_key_required");
    assert_eq!(server.count_rows("payments").await, 0);
}

#[rstest]
#[tokio::test]
async fn the_development_key_is_the_operator_in_development_mode(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let patched = patch_provider_as(&server, DEV_KEY, json!({ "enabled": true })).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let faults = put_faults_as(&server, DEV_KEY, json!({ "latency_ms": 0 })).await;
    assert_eq!(faults.status, 200, "{}", faults.text);
    let paid = pay_as(&server, DEV_KEY, &unique("ord")).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
}

#[rstest]
#[tokio::test]
async fn admin_keys_alone_keep_the_development_merchant_but_not_as_operator(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let options = ServerOptions {
        env: vec![("PAYMENTS_ADMIN_KEYS".into(), OPS.into())],
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(backend, options).await;
    let paid = pay_as(&server, DEV_KEY, &unique("ord")).await;
    assert_eq!(
        paid.status, 201,
        "merchant default still pays: {}",
        paid.text
    );
    let refused = patch_provider_as(&server, DEV_KEY, json!({ "enabled": true })).await;
    assert_error(&refused, 403, "permission_error", "operator_key_required");
    let patched = patch_provider_as(&server, OPS, json!({ "enabled": true })).await;
    assert_eq!(patched.status, 200, "{}", patched.text);
}

// ---------------------------------------------------------------------------
// The sandbox's books
// ---------------------------------------------------------------------------

fn ids(charges: &[Value]) -> Vec<String> {
    charges
        .iter()
        .map(|c| c["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn orders(charges: &[Value]) -> Vec<String> {
    charges
        .iter()
        .map(|c| c["order_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[rstest]
#[tokio::test]
async fn sandbox_charges_are_per_merchant_newest_first_and_paged(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start_with(backend, keyed_options()).await;
    let mut acme_orders = Vec::new();
    let mut globex_orders = Vec::new();
    for i in 0..5 {
        let (key, orders) = if i % 2 == 0 {
            (ACME, &mut acme_orders)
        } else {
            (GLOBEX, &mut globex_orders)
        };
        let order = unique(&format!("ord{i}"));
        let paid = pay_as(&server, key, &order).await;
        assert_eq!(paid.status, 201, "{}", paid.text);
        orders.push(order);
    }
    acme_orders.reverse();
    globex_orders.reverse();

    let keyless = server
        .send(
            server
                .client
                .get(server.url("/v1/sandbox/sandbox_a/charges")),
        )
        .await;
    assert_error(&keyless, 401, "authentication_error", "missing_api_key");

    let acme = server.all_charges_as("sandbox_a", ACME).await;
    assert_eq!(orders(&acme), acme_orders, "acme's own, newest first");
    let globex = server.all_charges_as("sandbox_a", GLOBEX).await;
    assert_eq!(orders(&globex), globex_orders, "globex's own, newest first");
    let everyone = server.all_charges_as("sandbox_a", OPS).await;
    assert_eq!(everyone.len(), 5, "the operator sees all");

    // Pages of two walk the same list, without gaps or repeats.
    let mut paged: Vec<Value> = Vec::new();
    let mut pages = 0;
    loop {
        let mut path = "/v1/sandbox/sandbox_a/charges?limit=2".to_string();
        if let Some(last) = paged.last().and_then(|c| c["id"].as_str()) {
            path.push_str(&format!("&starting_after={last}"));
        }
        let page = server.get_as(&path, OPS).await.json();
        let data = page["data"].as_array().cloned().unwrap_or_default();
        assert!(data.len() <= 2, "{page}");
        paged.extend(data);
        pages += 1;
        if page["has_more"] != json!(true) {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(ids(&paged), ids(&everyone));

    // Another merchant's charge is neither a filter result nor a cursor.
    let foreign = server
        .get_as(
            &format!(
                "/v1/sandbox/sandbox_a/charges?order_id={}",
                globex_orders[0]
            ),
            ACME,
        )
        .await;
    assert_eq!(foreign.json()["data"], json!([]), "{}", foreign.text);
    let own = server
        .get_as(
            &format!("/v1/sandbox/sandbox_a/charges?order_id={}", acme_orders[0]),
            ACME,
        )
        .await;
    assert_eq!(
        orders(own.json()["data"].as_array().expect("data")),
        [acme_orders[0].clone()]
    );
    let globex_id = globex[0]["id"].as_str().expect("id");
    let cursor = server
        .get_as(
            &format!("/v1/sandbox/sandbox_a/charges?starting_after={globex_id}"),
            ACME,
        )
        .await;
    assert_eq!(cursor.json()["data"], json!([]), "{}", cursor.text);

    for limit in ["0", "101", "ten"] {
        let reply = server
            .get_as(&format!("/v1/sandbox/sandbox_a/charges?limit={limit}"), OPS)
            .await;
        assert_error(&reply, 400, "invalid_request_error", "parameter_invalid");
        assert_eq!(reply.error_param(), json!("limit"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_listing_runs_on_the_callers_runtime() {
    let dir = tempfile::tempdir().expect("dir");
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let engine = Engine::start(config).await.expect("start");
    let request = PaymentRequest {
        amount: Amount::new(700).expect("amount"),
        currency: Currency::parse("usd").expect("usd"),
        customer_id: "cus_host".into(),
        order_id: "order_listed".into(),
        payment_method: "pm_card_visa".into(),
        description: None,
        metadata: BTreeMap::new(),
        provider: Some("sandbox_a".into()),
    };
    engine
        .create_payment(&MerchantId::new("host"), "k1", request)
        .await
        .expect("pay");
    // With the engine's thread gone, work sent to it cannot run: a listing
    // that still answers never needed it.
    engine.shutdown().await;
    let filter = ChargeFilter {
        limit: 10,
        ..ChargeFilter::default()
    };
    let page = engine
        .sandbox_charges("sandbox_a", filter)
        .await
        .expect("listing without the engine thread");
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.data[0].order_id, "order_listed");
    assert!(!page.has_more);
}

// ---------------------------------------------------------------------------
// Slow bodies
// ---------------------------------------------------------------------------

/// Bytes the slow client promises; it sends one a second, so never all.
const SLOW_BODY_BYTES: usize = 60;
/// How long the slow client waits for more of a response once it started.
const RESPONSE_TAIL: Duration = Duration::from_secs(2);

/// Sends a valid head for `POST /v1/payments`, then the body one byte a
/// second. Returns the raw response and when its first byte arrived,
/// counted from the end of the head.
async fn trickle_a_body(server: &TestServer) -> (String, Duration) {
    let addr = server.base_url.trim_start_matches("http://").to_string();
    let stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /v1/payments HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {DEV_KEY}\r\n\
         Idempotency-Key: {}\r\nContent-Type: application/json\r\nContent-Length: {SLOW_BODY_BYTES}\r\n\r\n",
        unique("slow")
    );
    writer.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..SLOW_BODY_BYTES {
            if writer.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let mut response = Vec::new();
    let mut first_byte = None;
    let mut buf = [0u8; 4096];
    loop {
        let wait = if first_byte.is_some() {
            RESPONSE_TAIL
        } else {
            Duration::from_secs(SLOW_BODY_BYTES as u64)
        };
        match tokio::time::timeout(wait, reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                first_byte.get_or_insert_with(|| started.elapsed());
                response.extend_from_slice(&buf[..n]);
            }
            _ => break,
        }
    }
    trickle.abort();
    let first_byte = first_byte.expect("no response at all");
    (String::from_utf8_lossy(&response).into_owned(), first_byte)
}

fn assert_request_timeout(response: &str) {
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let body: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    assert_eq!(body["error"]["type"], "invalid_request_error", "{response}");
    assert_eq!(body["error"]["code"], "request_timeout", "{response}");
    assert!(
        response.to_ascii_lowercase().contains("connection: close"),
        "{response}"
    );
}

#[rstest]
#[tokio::test]
async fn a_body_sent_slowly_is_timed_out_with_408(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let (response, after) = trickle_a_body(&server).await;
    assert_request_timeout(&response);
    assert!(
        after >= Duration::from_millis(9_500) && after <= Duration::from_millis(11_500),
        "408 after {after:?}, expected about 10 s"
    );
    assert_eq!(server.count_rows("payments").await, 0);
}

#[tokio::test]
async fn the_body_timeout_is_configurable() {
    let options = ServerOptions::config("[server]\nbody_timeout_ms = 1000\n");
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let (response, after) = trickle_a_body(&server).await;
    assert_request_timeout(&response);
    assert!(after < Duration::from_secs(3), "408 after {after:?}");
}

// ---------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn authorization_and_idempotency_headers_are_read_strictly(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let server = TestServer::start(backend).await;
    let body = payment_body(&unique("ord"), "pm_card_visa");
    let post = || {
        server
            .client
            .post(server.url("/v1/payments"))
            .header("Content-Type", "application/json")
            .body(body.to_string())
    };
    let bearer = format!("Bearer {DEV_KEY}");
    let two_keys = server
        .send(
            post()
                .header("Authorization", &bearer)
                .header("Authorization", "Bearer sk_other_key_1234")
                .header("Idempotency-Key", unique("k")),
        )
        .await;
    assert_error(&two_keys, 400, "invalid_request_error", "duplicate_header");
    assert_eq!(two_keys.error_param(), json!("Authorization"));
    let two_idempotency_keys = server
        .send(
            post()
                .header("Authorization", &bearer)
                .header("Idempotency-Key", unique("k"))
                .header("Idempotency-Key", unique("k")),
        )
        .await;
    assert_error(
        &two_idempotency_keys,
        400,
        "invalid_request_error",
        "duplicate_header",
    );
    assert_eq!(two_idempotency_keys.error_param(), json!("Idempotency-Key"));
    assert_eq!(server.count_rows("payments").await, 0);

    for scheme in ["bearer", "BEARER", "bEaReR"] {
        let reply = server
            .send(
                server
                    .client
                    .get(server.url("/v1/payments"))
                    .header("Authorization", format!("{scheme} {DEV_KEY}")),
            )
            .await;
        assert_eq!(reply.status, 200, "{scheme}: {}", reply.text);
    }
}

// ---------------------------------------------------------------------------
// What leaks
// ---------------------------------------------------------------------------

#[rstest]
#[tokio::test]
async fn readyz_tells_nothing_of_the_store(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    let server = TestServer::start_on(&db, ServerOptions::default()).await;
    let ready = server.send(server.client.get(server.url("/readyz"))).await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    db.drop_table("payments_schema_migrations").await;
    let reply = server.send(server.client.get(server.url("/readyz"))).await;
    assert_error(&reply, 503, "api_error", "not_ready");
    for internal in [
        "payments_schema_migrations",
        "relation",
        "table",
        db.schema.as_str(),
    ] {
        assert!(
            !reply.text.contains(internal),
            "{internal:?} in {}",
            reply.text
        );
    }
}

/// Runs `payments serve` on loopback with `env` and `RUST_LOG=info` until
/// it listens, stops it, and returns what it logged.
fn serve_and_capture_log(env: &[(String, String)]) -> String {
    let mut child = Command::new(binary())
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .env_remove("DATABASE_URL")
        .env_remove("PAYMENTS_API_KEYS")
        .env_remove("PAYMENTS_ADMIN_KEYS")
        .env_remove("PAYMENTS_CONFIG")
        .env_remove("PAYMENTS_DATABASE_SCHEMA")
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn payments");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening on") {
                let _ = tx.send(());
            }
        }
    });
    let listened = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let log = log.join().expect("stderr reader");
    assert!(listened, "the server did not start: {log}");
    log
}

/// `url` with its password (if any) moved into `?password=`, or a made-up
/// one there: what an operator may write, and what the log must mask.
fn with_password_in_query(url: &str) -> (String, String) {
    let scheme_end = url.find("://").map_or(0, |at| at + 3);
    let (scheme, rest) = url.split_at(scheme_end);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (userinfo, host) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => (Some(userinfo), host),
        None => (None, authority),
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        Some((user, password)) if !password.is_empty() => (Some(user), password.to_string()),
        Some((user, _)) => (Some(user), "hunter2_never_logged".to_string()),
        None => (None, "hunter2_never_logged".to_string()),
    };
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    let separator = if path.contains('?') { '&' } else { '?' };
    (
        format!("{scheme}{user}{host}{path}{separator}password={password}"),
        password,
    )
}

#[test]
fn the_log_names_merchants_and_never_keys_nor_passwords() {
    let db = TestDb::new(Backend::Postgres);
    let (url, password) = with_password_in_query(&postgres_url());
    let keys = [
        "sk_acme_secret_0001",
        "sk_globex_secret_0002",
        "sk_ops_secret_0003",
    ];
    let log = serve_and_capture_log(&[
        (
            "PAYMENTS_DATA_DIR".into(),
            db.data_dir.display().to_string(),
        ),
        ("DATABASE_URL".into(), url),
        ("PAYMENTS_DATABASE_SCHEMA".into(), db.schema.clone()),
        (
            "PAYMENTS_API_KEYS".into(),
            format!("acme:{},globex:{}", keys[0], keys[1]),
        ),
        ("PAYMENTS_ADMIN_KEYS".into(), keys[2].into()),
    ]);
    assert!(
        log.contains("acme") && log.contains("globex"),
        "merchants: {log}"
    );
    assert!(log.contains("engine started"), "{log}");
    assert!(log.contains("password=***"), "{log}");
    assert!(!log.contains(&format!("password={password}")), "{log}");
    for key in keys {
        assert!(!log.contains(key), "{key} in the log: {log}");
    }
}

#[test]
fn a_mistyped_database_url_never_prints_its_password() {
    let dir = tempfile::tempdir().expect("dir");
    for command in ["migrate", "serve"] {
        let output = Command::new(binary())
            .arg(command)
            .args([
                "--database-url",
                "postgress://app:hunter2@127.0.0.1/payments",
            ])
            .env("PAYMENTS_DATA_DIR", dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("PAYMENTS_API_KEYS")
            .env_remove("PAYMENTS_ADMIN_KEYS")
            .output()
            .expect("run payments");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(stderr.contains("database_url"), "{command}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{command}: {stderr}");
    }
}

/// Runs `payments serve` with `keys` as `PAYMENTS_API_KEYS`; returns
/// whether it refused to start (exited with a failure within 20 s; one
/// still running then is stopped and counts as started) and its stderr.
fn serve_refuses(dir: &std::path::Path, keys: &str) -> (bool, String) {
    let mut child = Command::new(binary())
        .args(["serve", "--host", "127.0.0.1", "--port", "0"])
        .env("PAYMENTS_DATA_DIR", dir)
        .env("PAYMENTS_API_KEYS", keys)
        .env_remove("DATABASE_URL")
        .env_remove("PAYMENTS_ADMIN_KEYS")
        .env_remove("PAYMENTS_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn payments");
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        match child.try_wait() {
            Ok(Some(status)) => break !status.success(),
            _ if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (refused, stderr)
}

#[test]
fn malformed_api_keys_are_refused_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    for (keys, why) in [
        (
            "acme:sk_acme_12345678;globex:sk_globex_12345678",
            "';' between pairs",
        ),
        ("acme:sk_acme 12345678", "a space in the key"),
        (
            "acme:sk_same_12345678,globex:sk_same_12345678",
            "one key, two merchants",
        ),
    ] {
        let (refused, stderr) = serve_refuses(dir.path(), keys);
        assert!(refused, "{why}: started anyway: {stderr}");
        assert!(
            stderr.contains("PAYMENTS_API_KEYS") || stderr.contains("api_keys"),
            "{why}: {stderr}"
        );
        assert!(
            !stderr.contains("12345678"),
            "{why}: the key is printed: {stderr}"
        );
    }
}
