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

/// The store a test runs against. Every HTTP and actor test runs on both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL URL tests use: `TEST_DATABASE_URL` when set (a server of
/// the developer's own), else a throwaway cluster this test process starts
/// on first use and removes when it exits ([`throwaway_postgres`]), so
/// `cargo test` needs PostgreSQL installed, never running or configured.
pub fn postgres_url() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        // Empty counts as unset: CI configurations often define a variable
        // with no value.
        Ok(url) if !url.is_empty() => url,
        _ => throwaway_postgres::url(),
    }
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
                let own_server =
                    std::env::var_os("TEST_DATABASE_URL").is_some_and(|url| !url.is_empty());
                let hint = if own_server {
                    "start the server at TEST_DATABASE_URL, or unset it to have the tests start \
                     their own"
                } else {
                    "the tests' own cluster stopped answering: see its log"
                };
                panic!(
                    "PostgreSQL is required at {} ({error}); {hint}",
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
    /// Runs `sql` on the engine's database behind the server's back (to
    /// make the books disagree); on PostgreSQL in the test's schema.
    pub async fn execute(&self, sql: &str) {
        use sqlx::{ConnectOptions, Connection};
        match self.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.data_dir.join("payments.db"))
                    .busy_timeout(std::time::Duration::from_secs(10))
                    .connect()
                    .await
                    .expect("open database");
                sqlx::raw_sql(sql).execute(&mut conn).await.expect(sql);
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&postgres_url())
                    .await
                    .expect("connect");
                let sql = format!("SET search_path = \"{}\"; {sql}", self.schema);
                sqlx::raw_sql(&sql).execute(&mut conn).await.expect(&sql);
            }
        }
    }

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

    /// Runs `sql` on the engine's database ([`TestDb::execute`]), when
    /// this server owns it.
    pub async fn execute_sql(&self, sql: &str) {
        self.owned_db().execute(sql).await
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

/// The PostgreSQL cluster the tests start for themselves when
/// `TEST_DATABASE_URL` is not set: `initdb` in a fresh temporary directory,
/// `postgres` on a free loopback port with its socket in that directory,
/// trust authentication, one database `test`. It belongs to this test
/// process alone and touches nothing of the machine's own server (its port,
/// `/var/run/postgresql`, its roles).
///
/// It is started once per test process (a `OnceLock`), on first use, so
/// runs that touch no PostgreSQL test pay nothing; the integration tests
/// are one binary, so that is once per `cargo test`.
///
/// Cleanup at exit. Rust runs no destructor of a `static` at exit, there is
/// no `atexit` without a crate (`libc`, `ctor`), and a test process may die
/// of a signal or a timeout anyway. So a watchdog, `sh`, is started first,
/// with a pipe as its stdin whose write end only this process holds (std
/// opens pipes close-on-exec, so no other child inherits it). When this
/// process ends, however it ends, the kernel closes that end, the
/// watchdog's `read` returns, and it stops the server (SIGQUIT: immediate
/// shutdown) and removes the directory. Nothing polls while the tests run.
/// Should that ever miss, the postmaster checks its `postmaster.pid` every
/// minute and shuts itself down once the directory is gone.
///
/// The server runs under a small `sh` that waits for it ([`LAUNCHER_SCRIPT`]),
/// so that once this process is gone something still reaps the postmaster:
/// orphans go to PID 1, which in some containers (this project's CI
/// machines among them) reaps late or never, and a postmaster left a zombie
/// would look alive to `pgrep` and to the watchdog.
pub mod throwaway_postgres {
    use std::ffi::OsString;
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    use std::os::unix::process::CommandExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, ChildStdin, Command, Stdio};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// The one command that installs the server binaries (Debian, Ubuntu).
    pub const INSTALL_COMMAND: &str = "apt-get install -y postgresql";
    /// Where Debian and Ubuntu keep each installed major version's
    /// binaries (`/usr/lib/postgresql/15/bin`), none of them in PATH.
    const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";
    /// The system user PostgreSQL runs as when the tests run as root (it
    /// refuses to run as root).
    const SERVER_USER: &str = "postgres";
    /// The superuser `initdb` creates, and the one the tests connect as.
    const SUPERUSER: &str = "postgres";
    /// The database the tests use, as on a developer's server.
    const DATABASE: &str = "test";
    /// A stock server's limit, so what passes here passes on one.
    const MAX_CONNECTIONS: u32 = 100;
    /// How long the fresh server may take to accept connections (generous:
    /// the machines running this are small and shared).
    const READY_TIMEOUT: Duration = Duration::from_secs(60);
    /// Pause between two connection attempts while it starts.
    const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);
    /// Ports tried: between finding a port free and the server binding it,
    /// another process may take it.
    const PORT_ATTEMPTS: u32 = 5;
    /// Lines of the server's log quoted when it fails to start.
    const LOG_TAIL_LINES: usize = 20;
    /// How long the watchdog waits for the postmaster to go after SIGQUIT
    /// before SIGKILL, in tenths of a second (PostgreSQL itself SIGKILLs
    /// backends still there after 5 s).
    const WATCHDOG_STOP_WAIT_DECISECONDS: u32 = 100;
    /// The watchdog (see the module's comment). `$1` is the cluster's
    /// directory, `$2` [`WATCHDOG_STOP_WAIT_DECISECONDS`]. `read` returns
    /// when this process has exited; the postmaster's pid comes from its
    /// lock file, checked against `/proc/<pid>/comm` so that a reused pid
    /// is never signalled.
    const WATCHDOG_SCRIPT: &str = r#"
read -r _ || :
is_postmaster() { [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = postgres ]; }
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
if is_postmaster; then
    kill -QUIT "$pid" 2>/dev/null
    tries=0
    while is_postmaster && [ "$tries" -lt "$2" ]; do
        sleep 0.1
        tries=$((tries + 1))
    done
    is_postmaster && kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$1"
"#;
    /// Runs its arguments (`postgres ...`) and waits for them, with the
    /// server's exit status as its own: the postmaster's parent stays alive
    /// to reap it (see the module's comment). `; exit` keeps shells that
    /// `exec` a lone last command from doing so.
    const LAUNCHER_SCRIPT: &str = r#""$@"; exit $?"#;

    struct Cluster {
        url: String,
        /// Never written: held so that its closing, at exit, is what
        /// tells the watchdog to clean up.
        _watchdog_stdin: ChildStdin,
        /// The server's launcher. Held, never waited for: the server lives
        /// as long as the tests.
        _server: Child,
    }

    /// The cluster, or why it could not be started: a failure is kept, so
    /// every PostgreSQL test fails at once with the same message rather
    /// than each trying again.
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();

    /// The URL of this process's cluster, started on first call. Panics,
    /// with what to do, when it cannot be started.
    pub fn url() -> String {
        match CLUSTER.get_or_init(start) {
            Ok(cluster) => cluster.url.clone(),
            Err(message) => panic!("{message}"),
        }
    }

    /// The message when no server binaries are installed.
    pub fn missing_binaries_message() -> String {
        format!(
            "PostgreSQL is not installed (no initdb and postgres in PATH nor in \
             {DEBIAN_LIB_DIR}/*/bin): install it with `{INSTALL_COMMAND}`, or set \
             TEST_DATABASE_URL to a server of your own"
        )
    }

    fn start() -> Result<Cluster, String> {
        let started = Instant::now();
        let bin_dir = find_bin_dir(std::env::var_os("PATH"), Path::new(DEBIAN_LIB_DIR))
            .ok_or_else(missing_binaries_message)?;
        let dir = std::env::temp_dir().join(format!(
            "payments-test-pg-{}",
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("test PostgreSQL: cannot create {}: {e}", dir.display()))?;
        // First, so that from here on the directory goes whatever happens.
        let watchdog_stdin = spawn_watchdog(&dir)?;
        let owner = server_owner(&dir)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .map_err(|e| format!("test PostgreSQL: cannot chown {}: {e}", dir.display()))?;
        }
        let data = dir.join("data");
        let initdb = server_command(&bin_dir.join("initdb"), owner, &dir)
            .arg("-D")
            .arg(&data)
            .args(["-U", SUPERUSER, "--auth=trust", "--no-locale", "-E", "UTF8"])
            // Throwaway data: no fsync of every file it writes.
            .arg("--no-sync")
            .output()
            .map_err(|e| format!("test PostgreSQL: cannot run initdb: {e}"))?;
        if !initdb.status.success() {
            return Err(format!(
                "test PostgreSQL: initdb {} failed ({}): {}{}",
                data.display(),
                initdb.status,
                String::from_utf8_lossy(&initdb.stdout),
                String::from_utf8_lossy(&initdb.stderr),
            ));
        }
        let initdb_took = started.elapsed();
        let mut attempt = 1;
        let (server, port, log) = loop {
            let port = free_port()?;
            match launch(&bin_dir, &dir, port, owner) {
                Ok((child, log)) => break (child, port, log),
                Err(Launch::PortTaken) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(Launch::PortTaken) => {
                    return Err(format!(
                        "test PostgreSQL: {PORT_ATTEMPTS} free ports were taken before \
                         the server could bind them"
                    ))
                }
                Err(Launch::Failed(message)) => return Err(message),
            }
        };
        let admin_url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
        let create = format!("CREATE DATABASE \"{DATABASE}\"");
        super::block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(&create).execute(&mut conn).await.map(|_| ())
        })
        .map_err(|e| format!("test PostgreSQL: cannot create database {DATABASE}: {e}"))?;
        // Straight to stderr, past the test harness's output capture: the
        // one line that says where the tests' database is and what it cost.
        let _ = writeln!(
            std::io::stderr(),
            "test PostgreSQL: own cluster ({}) on 127.0.0.1:{port}, ready in {:.2?} \
             (initdb {:.2?}); log {}; removed at exit",
            bin_dir.display(),
            started.elapsed(),
            initdb_took,
            log.display(),
        );
        Ok(Cluster {
            url: format!("postgres://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"),
            _watchdog_stdin: watchdog_stdin,
            _server: server,
        })
    }

    /// The first directory holding both `initdb` and `postgres`: PATH in
    /// order, then `debian_lib_dir/<version>/bin`, newest version first.
    pub fn find_bin_dir(path: Option<OsString>, debian_lib_dir: &Path) -> Option<PathBuf> {
        let in_path: Vec<PathBuf> = path
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir(debian_lib_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                // "15", or "9.6" before PostgreSQL 10: compared as numbers.
                let name = entry.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(|part| part.parse().ok())
                    .collect::<Option<Vec<u32>>>()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        versions.sort_by(|a, b| b.0.cmp(&a.0));
        in_path
            .into_iter()
            .chain(versions.into_iter().map(|(_, dir)| dir))
            .find(|dir| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres")))
    }

    fn is_executable(path: &Path) -> bool {
        std::fs::metadata(path)
            .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }

    /// The uid and gid to run the server as: `None` (this process's own)
    /// unless this process is root, which PostgreSQL refuses to run as;
    /// then the `postgres` system user's. `dir` was just created by this
    /// process, so its owner is the effective uid (`geteuid` needs `libc`).
    fn server_owner(dir: &Path) -> Result<Option<(u32, u32)>, String> {
        let meta = std::fs::metadata(dir)
            .map_err(|e| format!("test PostgreSQL: cannot stat {}: {e}", dir.display()))?;
        if meta.uid() != 0 {
            return Ok(None);
        }
        let id = |flag: &str| -> Option<u32> {
            let output = Command::new("id").args([flag, SERVER_USER]).output().ok()?;
            if !output.status.success() {
                return None;
            }
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => Ok(Some((uid, gid))),
            _ => Err(format!(
                "test PostgreSQL: the tests run as root, which PostgreSQL refuses to run as, \
                 and there is no `{SERVER_USER}` system user to run it as: create one \
                 (`useradd --system {SERVER_USER}`; installing the postgresql package \
                 does), or set TEST_DATABASE_URL to a server of your own"
            )),
        }
    }

    /// `program` as the server's user, from inside `dir` (as that user, the
    /// tests' working directory may not be readable).
    ///
    /// Root drops to the `postgres` user with `Command::uid`/`gid` (std
    /// clears the supplementary groups too) rather than `runuser -u
    /// postgres --`: `runuser` stays in between as the server's parent, so
    /// the child this process holds would not be the postmaster.
    fn server_command(program: &Path, owner: Option<(u32, u32)>, dir: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(dir).stdin(Stdio::null());
        if let Some((uid, gid)) = owner {
            command.uid(uid).gid(gid);
        }
        command
    }

    /// A port nothing listens on now, on loopback.
    fn free_port() -> Result<u16, String> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|e| format!("test PostgreSQL: no free loopback port: {e}"))
    }

    enum Launch {
        /// Another process bound the port first: try another.
        PortTaken,
        Failed(String),
    }

    /// Starts `postgres` on `port` and waits until it accepts connections.
    /// Returns the server's launcher and its log file.
    fn launch(
        bin_dir: &Path,
        dir: &Path,
        port: u16,
        owner: Option<(u32, u32)>,
    ) -> Result<(Child, PathBuf), Launch> {
        let log_path = dir.join(format!("postgres-{port}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| {
            Launch::Failed(format!(
                "test PostgreSQL: cannot create {}: {e}",
                log_path.display()
            ))
        })?;
        let log_err = log
            .try_clone()
            .map_err(|e| Launch::Failed(format!("test PostgreSQL: log file: {e}")))?;
        let mut child = server_command(Path::new("sh"), owner, dir)
            .arg("-c")
            .arg(LAUNCHER_SCRIPT)
            .arg("payments-test-pg")
            .arg(bin_dir.join("postgres"))
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-p", &port.to_string()])
            // The socket in our directory, never /var/run/postgresql.
            .arg("-k")
            .arg(dir)
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("max_connections={MAX_CONNECTIONS}")])
            // Throwaway data, and a server that never crashes under the
            // tests (they kill the engine, not PostgreSQL): no fsync, which
            // also spares the shared disk.
            .args(["-c", "fsync=off"])
            // Output to a file: a server holding the test process's stdout
            // would keep whoever reads it (cargo's caller) waiting.
            .stdout(log)
            .stderr(log_err)
            // Its own process group (the launcher's pid): Ctrl-C at the
            // terminal stops the tests; the watchdog, not the signal, stops
            // the server.
            .process_group(0)
            .spawn()
            .map_err(|e| Launch::Failed(format!("test PostgreSQL: cannot start postgres: {e}")))?;
        let url = format!("postgres://{SUPERUSER}@127.0.0.1:{port}/postgres");
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                if log.contains("Address already in use") {
                    return Err(Launch::PortTaken);
                }
                return Err(Launch::Failed(format!(
                    "test PostgreSQL: postgres exited ({status}) before accepting connections; \
                     the end of {}:\n{}",
                    log_path.display(),
                    tail(&log)
                )));
            }
            let probe = url.clone();
            let ready = super::block_on(async move {
                use sqlx::Connection;
                sqlx::PgConnection::connect(&probe).await.is_ok()
            });
            if ready {
                return Ok((child, log_path));
            }
            if Instant::now() >= deadline {
                // The whole group, launcher and server: killing the
                // launcher alone would leave the server running.
                let _ = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.wait();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                return Err(Launch::Failed(format!(
                    "test PostgreSQL: not accepting connections on port {port} after \
                     {READY_TIMEOUT:?}; the end of {}:\n{}",
                    log_path.display(),
                    tail(&log)
                )));
            }
            std::thread::sleep(READY_POLL_INTERVAL);
        }
    }

    fn tail(log: &str) -> String {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    /// Starts the watchdog on `dir` and returns the end of its stdin that
    /// must stay open as long as the cluster is wanted.
    fn spawn_watchdog(dir: &Path) -> Result<ChildStdin, String> {
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG_SCRIPT)
            .arg("payments-test-pg-watchdog")
            .arg(dir)
            .arg(WATCHDOG_STOP_WAIT_DECISECONDS.to_string())
            .stdin(Stdio::piped())
            // Nothing of ours held open: see the server's stdout.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Ctrl-C must not stop it before it has cleaned up.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("test PostgreSQL: cannot start the cleanup watchdog (sh): {e}"))?;
        watchdog
            .stdin
            .take()
            .ok_or_else(|| "test PostgreSQL: the watchdog has no stdin".to_string())
    }

    #[test]
    fn binaries_are_found_in_path_first_then_the_newest_debian_version() {
        let root = tempfile::tempdir().expect("temp dir");
        let install = |dir: &Path, programs: &[&str]| {
            std::fs::create_dir_all(dir).expect("bin dir");
            for program in programs {
                let path = dir.join(program);
                std::fs::write(&path, "#!/bin/sh\n").expect("program");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        };
        let lib = root.path().join("lib");
        install(&lib.join("9.6/bin"), &["initdb", "postgres"]);
        install(&lib.join("15/bin"), &["initdb", "postgres"]);
        install(&lib.join("16/bin"), &["initdb", "postgres"]);
        // Newest, but only half installed: skipped.
        install(&lib.join("17/bin"), &["initdb"]);
        let no_path = Some(OsString::from(root.path().join("empty")));
        assert_eq!(find_bin_dir(no_path, &lib), Some(lib.join("16/bin")));

        let in_path = root.path().join("local/bin");
        install(&in_path, &["initdb", "postgres"]);
        let path = std::env::join_paths([root.path().join("empty"), in_path.clone()]).ok();
        assert_eq!(find_bin_dir(path, &lib), Some(in_path));

        let nowhere = root.path().join("nowhere");
        assert_eq!(find_bin_dir(None, &nowhere), None);
    }

    #[test]
    fn without_binaries_the_message_is_the_command_that_installs_them() {
        let message = missing_binaries_message();
        assert!(
            message.contains("`apt-get install -y postgresql`"),
            "{message}"
        );
        assert!(!message.contains('\n'), "one line: {message}");
    }
}
