//! Shared test harness: the real `payments` binary on a loopback port, with
//! a fresh data directory, and a small HTTP client for its API.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The development key the server accepts when no keys are configured.
pub const DEV_KEY: &str = "sk_test_default";
/// The operator key the harness adds when a test configures merchant keys
/// and no operator key, so the helpers that read the sandbox's books
/// (an operator's view) keep working.
pub const HARNESS_OPERATOR_KEY: &str = "sk_harness_operator_0000";
/// How long a server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// PostgreSQL used when `TEST_DATABASE_URL` is not set: the local server
/// these machines run (and `.ci/run` starts).
const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The store a test runs against. Every HTTP and actor test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL tests use.
pub fn postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// Runs `future` to completion on a private runtime (usable from `Drop` and
/// from sync tests).
pub fn block_on<F: std::future::Future + Send + 'static>(future: F) -> F::Output
where
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    })
    .join()
    .expect("helper thread")
}

/// The durable side of a test: a data directory (SQLite files, the sandbox
/// record) and, on PostgreSQL, a schema of its own. It outlives the server
/// processes started on it, so restart and crash tests can start several.
/// Dropping it removes both.
pub struct TestDb {
    pub backend: Backend,
    pub data_dir: PathBuf,
    /// The PostgreSQL schema (unique per `TestDb`).
    pub schema: String,
    _temp: tempfile::TempDir,
}

impl TestDb {
    /// A fresh one. On PostgreSQL this checks the server is reachable and
    /// fails loudly if not: a test that needs PostgreSQL never skips.
    pub fn new(backend: Backend) -> TestDb {
        let temp = tempfile::tempdir().expect("temp dir");
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        if backend == Backend::Postgres {
            let url = postgres_url();
            let reachable = block_on(async move {
                use sqlx::Connection;
                sqlx::PgConnection::connect(&url).await.map(|_| ())
            });
            if let Err(error) = reachable {
                panic!(
                    "PostgreSQL is required at {} ({error}); start it or set TEST_DATABASE_URL",
                    postgres_url()
                );
            }
        }
        TestDb {
            backend,
            data_dir: temp.path().to_path_buf(),
            schema,
            _temp: temp,
        }
    }

    /// The environment a server on this database runs with.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "PAYMENTS_DATA_DIR".to_string(),
            self.data_dir.display().to_string(),
        )];
        if self.backend == Backend::Postgres {
            env.push(("DATABASE_URL".into(), postgres_url()));
            env.push(("PAYMENTS_DATABASE_SCHEMA".into(), self.schema.clone()));
        }
        env
    }

    /// Rows in every table of the engine's database, by table name. The
    /// tables are read from the schema itself (`sqlite_master`,
    /// `information_schema`), so a table added by a later migration is
    /// counted without anyone remembering to list it.
    pub async fn table_counts(&self) -> BTreeMap<String, i64> {
        use sqlx::{ConnectOptions, Connection, Row};
        let mut counts = BTreeMap::new();
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.data_dir.join("payments.db"))
                    .read_only(true)
                    .connect()
                    .await
                    .expect("open database");
                let tables: Vec<String> = sqlx::query(
                    "SELECT name FROM sqlite_master
                     WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list tables")
                .iter()
                .map(|row| row.get("name"))
                .collect();
                for table in tables {
                    let sql = format!("SELECT COUNT(*) AS n FROM \"{table}\"");
                    let n = sqlx::query(&sql)
                        .fetch_one(&mut conn)
                        .await
                        .expect("count")
                        .get::<i64, _>("n");
                    counts.insert(table, n);
                }
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&postgres_url())
                    .await
                    .expect("connect");
                let tables: Vec<String> = sqlx::query(
                    "SELECT table_name::text AS name FROM information_schema.tables
                     WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1",
                )
                .bind(&self.schema)
                .fetch_all(&mut conn)
                .await
                .expect("list tables")
                .iter()
                .map(|row| row.get("name"))
                .collect();
                for table in tables {
                    let sql = format!("SELECT COUNT(*) AS n FROM \"{}\".\"{table}\"", self.schema);
                    let n = sqlx::query(&sql)
                        .fetch_one(&mut conn)
                        .await
                        .expect("count")
                        .get::<i64, _>("n");
                    counts.insert(table, n);
                }
            }
        }
        // An empty map would make every "nothing changed" check pass.
        assert!(
            counts.contains_key("payments"),
            "no engine tables found: {counts:?}"
        );
        counts
    }

    /// Rows in the engine's `table`.
    pub async fn count_rows(&self, table: &str) -> i64 {
        use sqlx::{ConnectOptions, Connection, Row};
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.data_dir.join("payments.db"))
                    .read_only(true)
                    .connect()
                    .await
                    .expect("open database");
                sqlx::query(&sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("count")
                    .get::<i64, _>("n")
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&postgres_url())
                    .await
                    .expect("connect");
                let sql = format!("SELECT COUNT(*) AS n FROM \"{}\".{table}", self.schema);
                sqlx::query(&sql)
                    .fetch_one(&mut conn)
                    .await
                    .expect("count")
                    .get::<i64, _>("n")
            }
        }
    }
}

impl TestDb {
    /// Drops the engine's `table` behind the server's back (to break it).
    pub async fn drop_table(&self, table: &str) {
        use sqlx::{ConnectOptions, Connection};
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.data_dir.join("payments.db"))
                    .connect()
                    .await
                    .expect("open database");
                sqlx::query(&format!("DROP TABLE {table}"))
                    .execute(&mut conn)
                    .await
                    .expect("drop table");
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&postgres_url())
                    .await
                    .expect("connect");
                let sql = format!("DROP TABLE \"{}\".{table}", self.schema);
                sqlx::query(&sql)
                    .execute(&mut conn)
                    .await
                    .expect("drop table");
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.backend == Backend::Postgres {
            let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema);
            let _ = block_on(async move {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&postgres_url()).await?;
                sqlx::query(&sql).execute(&mut conn).await.map(|_| ())
            });
        }
    }
}

/// A running `payments serve` process, killed on drop.
pub struct TestServer {
    pub base_url: String,
    pub data_dir: PathBuf,
    child: Child,
    /// The database, when this server owns it (`start`); `None` when the
    /// test owns it (`start_on`).
    owned_db: Option<TestDb>,
    pub client: reqwest::Client,
    /// A key that may take operator actions on this server: the
    /// development key, the first of the test's `PAYMENTS_ADMIN_KEYS`, or
    /// [`HARNESS_OPERATOR_KEY`].
    pub operator_key: String,
}

/// How to start a test server.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// TOML written to a config file and passed with --config.
    pub config_toml: Option<String>,
}

impl ServerOptions {
    /// Options that pass `toml` as the server's configuration file.
    pub fn config(toml: &str) -> Self {
        ServerOptions {
            config_toml: Some(toml.to_string()),
            ..ServerOptions::default()
        }
    }
}

/// A response, read whole.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `error.param` of an error envelope.
    pub fn error_param(&self) -> Value {
        self.json()["error"]["param"].clone()
    }

    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_payments")
}

impl TestServer {
    /// A server on a fresh database of `backend`.
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, ServerOptions::default()).await
    }

    pub async fn start_with(backend: Backend, options: ServerOptions) -> TestServer {
        let db = TestDb::new(backend);
        let mut server = Self::start_on(&db, options).await;
        server.owned_db = Some(db);
        server
    }

    /// A server on `db`, which the caller keeps (restarts, several instances).
    pub async fn start_on(db: &TestDb, options: ServerOptions) -> TestServer {
        let data_dir = db.data_dir.clone();
        let mut command = Command::new(binary());
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .env_remove("DATABASE_URL")
            .env_remove("PAYMENTS_API_KEYS")
            .env_remove("PAYMENTS_ADMIN_KEYS")
            .env_remove("PAYMENTS_CONFIG")
            .env_remove("PAYMENTS_PORT")
            .env_remove("PAYMENTS_DATABASE_SCHEMA")
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in db.env() {
            command.env(name, value);
        }
        if let Some(toml) = &options.config_toml {
            let path = data_dir.join(format!("config-{}.toml", uuid::Uuid::now_v7().simple()));
            std::fs::write(&path, toml).expect("config file");
            command.arg("--config").arg(&path);
        }
        for (name, value) in &options.env {
            command.env(name, value);
        }
        let operator_key = operator_key(&options);
        if operator_key == HARNESS_OPERATOR_KEY {
            command.env("PAYMENTS_ADMIN_KEYS", HARNESS_OPERATOR_KEY);
        }
        let mut child = command.spawn().expect("spawn payments");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let base_url = match rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("server did not start within {STARTUP_TIMEOUT:?}");
            }
        };
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        TestServer {
            base_url,
            data_dir,
            child,
            owned_db: None,
            client,
            operator_key,
        }
    }

    /// The server's process id (to signal it: SIGSTOP, SIGCONT...).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `STOP`, `CONT`) to the server.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// `kill -9` through a shared reference (the child is reaped on drop).
    pub fn kill_9(&self) {
        let _ = Command::new("kill")
            .arg("-9")
            .arg(self.child.id().to_string())
            .status();
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the process to exit; returns its exit success.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        Reply {
            status,
            headers,
            text,
        }
    }

    /// `POST /v1/payments` with the development key.
    pub async fn create(&self, key: &str, body: &Value) -> Reply {
        self.create_raw(Some(key), Some(DEV_KEY), body.to_string())
            .await
    }

    pub async fn create_raw(
        &self,
        key: Option<&str>,
        api_key: Option<&str>,
        body: String,
    ) -> Reply {
        let mut request = self
            .client
            .post(self.url("/v1/payments"))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(api_key) = api_key {
            request = request.bearer_auth(api_key);
        }
        self.send(request).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.get_as(path, DEV_KEY).await
    }

    pub async fn get_as(&self, path: &str, api_key: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(api_key))
            .await
    }

    /// Charges the sandbox `provider` really made for `order_id` (one page
    /// of 100: an order has a charge or two).
    pub async fn sandbox_charges(&self, provider: &str, order_id: &str) -> Vec<Value> {
        let reply = self
            .get_as(
                &format!("/v1/sandbox/{provider}/charges?order_id={order_id}"),
                &self.operator_key,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["data"].as_array().cloned().unwrap_or_default()
    }

    /// Every charge the sandbox `provider` made, as `api_key` sees them,
    /// newest first, following the cursor through all pages.
    pub async fn all_charges_as(&self, provider: &str, api_key: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let mut path = format!("/v1/sandbox/{provider}/charges?limit=100");
            if let Some(last) = all.last().and_then(|c| c["id"].as_str()) {
                path.push_str(&format!("&starting_after={last}"));
            }
            let reply = self.get_as(&path, api_key).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            let page = reply.json();
            all.extend(page["data"].as_array().cloned().unwrap_or_default());
            if page["has_more"] != Value::Bool(true) {
                return all;
            }
        }
    }

    /// Charges across both default sandboxes for `order_id`.
    pub async fn total_charges(&self, order_id: &str) -> usize {
        self.sandbox_charges("sandbox_a", order_id).await.len()
            + self.sandbox_charges("sandbox_b", order_id).await.len()
    }

    /// Rows in the engine's `table`, when this server owns its database.
    pub async fn count_rows(&self, table: &str) -> i64 {
        self.owned_db().count_rows(table).await
    }

    /// Rows in every engine table ([`TestDb::table_counts`]), when this
    /// server owns its database.
    pub async fn table_counts(&self) -> BTreeMap<String, i64> {
        self.owned_db().table_counts().await
    }

    fn owned_db(&self) -> &TestDb {
        self.owned_db
            .as_ref()
            .expect("needs a server started with start/start_with")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every payment of the development merchant, newest first, following
/// the cursor through all pages.
pub async fn all_payments(server: &TestServer) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(after) => format!("/v1/payments?limit=100&starting_after={after}"),
            None => "/v1/payments?limit=100".to_string(),
        };
        let page = server.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        let data = page["data"].as_array().cloned().unwrap_or_default();
        cursor = data
            .last()
            .and_then(|p| p["id"].as_str())
            .map(str::to_string);
        all.extend(data);
        if page["has_more"] != Value::Bool(true) {
            return all;
        }
    }
}

/// Every charge both default sandboxes made, page after page.
pub async fn all_sandbox_charges(server: &TestServer) -> Vec<Value> {
    let mut charges = Vec::new();
    for provider in ["sandbox_a", "sandbox_b"] {
        charges.extend(server.all_charges_as(provider, &server.operator_key).await);
    }
    charges
}

/// The operator key a server started with `options` accepts (see
/// [`TestServer::operator_key`]).
fn operator_key(options: &ServerOptions) -> String {
    let var = |name: &str| {
        options
            .env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    if let Some(admin) = var("PAYMENTS_ADMIN_KEYS") {
        return admin
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    if var("PAYMENTS_API_KEYS").is_some() {
        return HARNESS_OPERATOR_KEY.to_string();
    }
    DEV_KEY.to_string()
}

/// Waits until no payment is `processing` or `pending` (recovery finished),
/// or panics after `timeout`.
pub async fn wait_until_settled(server: &TestServer, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut open = 0;
        for status in ["processing", "pending"] {
            let reply = server
                .get(&format!("/v1/payments?status={status}&limit=100"))
                .await;
            // An error page has no `data`: read as "nothing open", it would
            // end the wait early and pass whatever the server does.
            assert_eq!(
                reply.status, 200,
                "polling {status} payments: {}",
                reply.text
            );
            let page = reply.json();
            let data = page["data"]
                .as_array()
                .unwrap_or_else(|| panic!("a list without data: {}", reply.text));
            open += data.len();
        }
        if open == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} payments still processing or pending after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `GET /v1/payments/{id}` until its status is `wanted` (15 s at most).
pub async fn wait_for_status(server: &TestServer, id: &str, wanted: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let payment = server.get(&format!("/v1/payments/{id}")).await.json();
        if payment["status"] == wanted {
            return payment;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after 15 s, wanted {wanted}",
            payment["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `PATCH /v1/providers/{name}` with the development key.
pub async fn patch_provider(server: &TestServer, name: &str, body: &Value) -> Reply {
    let request = server
        .client
        .patch(server.url(&format!("/v1/providers/{name}")))
        .bearer_auth(DEV_KEY)
        .json(body);
    server.send(request).await
}

/// A valid payment body for `order_id` paying with `token`.
pub fn payment_body(order_id: &str, token: &str) -> Value {
    json!({
        "amount": 1999,
        "currency": "usd",
        "customer_id": "cus_test",
        "order_id": order_id,
        "payment_method": token,
    })
}

/// A key unique to this test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// DESIGN §4's lifecycle, every legal `(from, to)` pair of payment statuses,
/// written out from the prose (not read from the engine's own table, which
/// is what is being checked). Tests that observe status changes (the audit
/// trail over HTTP, recovery after a crash) check each one against it with
/// [`assert_legal_transition`].
pub const DESIGN_TRANSITIONS: &[(&str, &str)] = &[
    ("processing", "succeeded"),
    ("processing", "failed"),
    ("processing", "pending"),
    ("processing", "retry_scheduled"),
    ("pending", "succeeded"),
    ("pending", "failed"),
    ("pending", "needs_review"),
    ("retry_scheduled", "processing"),
    ("retry_scheduled", "failed"),
    ("needs_review", "succeeded"),
    ("needs_review", "failed"),
    ("succeeded", "partially_refunded"),
    ("succeeded", "refunded"),
    ("partially_refunded", "partially_refunded"),
    ("partially_refunded", "refunded"),
];

/// The status every payment is created in (DESIGN §4).
pub const DESIGN_INITIAL_STATUS: &str = "processing";

/// Panics unless `from -> to` is one of [`DESIGN_TRANSITIONS`]. `from` may
/// be a status (`"pending"`) or an audit event's `from_status` as an
/// `Option` (`event["from_status"].as_str()`), where `None` is the creation
/// of the payment, legal only into [`DESIGN_INITIAL_STATUS`].
#[track_caller]
pub fn assert_legal_transition<'a>(from: impl Into<Option<&'a str>>, to: &str) {
    match from.into() {
        None => assert_eq!(
            to, DESIGN_INITIAL_STATUS,
            "a payment is created in {DESIGN_INITIAL_STATUS}, not {to} (DESIGN §4)"
        ),
        Some(from) => assert!(
            DESIGN_TRANSITIONS.contains(&(from, to)),
            "illegal status change {from} -> {to}: not in DESIGN §4's lifecycle"
        ),
    }
}

#[test]
fn the_engine_allows_exactly_the_design_transitions() {
    use payments::domain::PaymentStatus;
    // Guards this copy of the table as much as the engine: the two were
    // written separately, so a slip in either shows here.
    for from in PaymentStatus::ALL {
        for to in PaymentStatus::ALL {
            let in_design = DESIGN_TRANSITIONS.contains(&(from.as_str(), to.as_str()));
            assert_eq!(from.transition(to).is_ok(), in_design, "{from} -> {to}");
        }
    }
    assert_eq!(PaymentStatus::INITIAL.as_str(), DESIGN_INITIAL_STATUS);
}

#[test]
fn assert_legal_transition_refuses_what_design_does_not_allow() {
    assert_legal_transition("pending", "succeeded");
    assert_legal_transition(None, "processing");
    for (from, to) in [
        (Some("failed"), "succeeded"),
        (Some("pending"), "retry_scheduled"),
        (Some("refunded"), "succeeded"),
        (None, "succeeded"),
    ] {
        let refused = std::panic::catch_unwind(|| assert_legal_transition(from, to));
        assert!(refused.is_err(), "{from:?} -> {to} must be refused");
    }
}
