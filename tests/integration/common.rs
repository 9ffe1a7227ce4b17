//! Shared test harness: the real `payments` binary on a loopback port, with
//! a fresh data directory, and a small HTTP client for its API.

#![allow(dead_code)]

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The development key the server accepts when no keys are configured.
pub const DEV_KEY: &str = "sk_test_default";
/// How long a server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `payments serve` process, killed on drop.
pub struct TestServer {
    pub base_url: String,
    pub data_dir: PathBuf,
    child: Child,
    // Keeps the directory alive as long as the server (and removes it after).
    _temp: Option<tempfile::TempDir>,
    pub client: reqwest::Client,
}

/// How to start a test server.
#[derive(Default, Clone)]
pub struct ServerOptions {
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Use this data directory instead of a fresh one (restart tests).
    pub data_dir: Option<PathBuf>,
    /// TOML written to a config file and passed with --config.
    pub config_toml: Option<String>,
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
    pub async fn start() -> TestServer {
        Self::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> TestServer {
        let (temp, data_dir) = match &options.data_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir().expect("temp dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        let mut command = Command::new(binary());
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .env("PAYMENTS_DATA_DIR", &data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("PAYMENTS_API_KEYS")
            .env_remove("PAYMENTS_CONFIG")
            .env_remove("PAYMENTS_PORT")
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(toml) = &options.config_toml {
            let path = data_dir.join("test-config.toml");
            std::fs::create_dir_all(&data_dir).expect("data dir");
            std::fs::write(&path, toml).expect("config file");
            command.arg("--config").arg(&path);
        }
        for (name, value) in &options.env {
            command.env(name, value);
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
        let base_url = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("server did not start within {STARTUP_TIMEOUT:?}"));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        TestServer {
            base_url,
            data_dir,
            child,
            _temp: temp,
            client,
        }
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

    /// Charges the sandbox `provider` really made for `order_id`.
    pub async fn sandbox_charges(&self, provider: &str, order_id: &str) -> Vec<Value> {
        let reply = self
            .get(&format!(
                "/v1/sandbox/{provider}/charges?order_id={order_id}"
            ))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.json()["data"].as_array().cloned().unwrap_or_default()
    }

    /// Charges across both default sandboxes for `order_id`.
    pub async fn total_charges(&self, order_id: &str) -> usize {
        self.sandbox_charges("sandbox_a", order_id).await.len()
            + self.sandbox_charges("sandbox_b", order_id).await.len()
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("payments.db")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Rows in `table` of the SQLite database at `path` (read-only).
pub async fn count_rows(path: &Path, table: &str) -> i64 {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Row};
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .expect("open database");
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .get::<i64, _>("n")
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
