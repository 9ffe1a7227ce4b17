//! Throughput and latency of `POST /v1/payments`, beside two baselines
//! measured in the same run on the same machine (DESIGN §12):
//!
//! * **http floor**: `GET /healthz` on the same server, same client, same
//!   concurrency: what the HTTP stack and load generator allow at all.
//! * **durable insert**: one small row per autocommit transaction into a
//!   fresh SQLite file opened with the store's settings (WAL,
//!   `synchronous=FULL`, `busy_timeout`), sequentially, in this process: the
//!   raw durable-write rate that group commit is meant to beat.
//! * **payments**: `POST /v1/payments` with unique idempotency keys and
//!   orders; only `201` with `status: succeeded` counts as a success.
//!
//! Afterwards the sandbox's own charge record (`sandbox.db`) must hold
//! exactly one charge per succeeded payment ([`charge_check`], which
//! `cargo test` also runs on a short load: `tests/integration/bench_check.rs`).
//!
//! Run: `cargo bench --bench throughput`. Environment: `BENCH_SECONDS`
//! (default 10), `BENCH_CONCURRENCY` (64), `BENCH_WARMUP_SECONDS` (2, run
//! before each scenario and discarded).

#[path = "support/charge_check.rs"]
mod charge_check;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The development key the server accepts on loopback.
const DEV_KEY: &str = "sk_test_default";
/// How long the server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The store's `busy_timeout` (src/store/sqlite.rs, `BUSY_TIMEOUT_MS`).
const STORE_BUSY_TIMEOUT_MS: u64 = 10_000;
/// DESIGN §12's goal.
const GOAL_PAYMENTS_PER_SEC: f64 = 10_000.0;
const GOAL_P99_MS: f64 = 25.0;

struct Params {
    seconds: u64,
    concurrency: usize,
    warmup_seconds: u64,
}

impl Params {
    fn from_env() -> Params {
        fn var(name: &str, default: u64) -> u64 {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name} must be a whole number, got {v:?}")),
                _ => default,
            }
        }
        let params = Params {
            seconds: var("BENCH_SECONDS", 10),
            concurrency: var("BENCH_CONCURRENCY", 64) as usize,
            warmup_seconds: var("BENCH_WARMUP_SECONDS", 2),
        };
        assert!(params.seconds > 0, "BENCH_SECONDS must be > 0");
        assert!(params.concurrency > 0, "BENCH_CONCURRENCY must be > 0");
        params
    }
}

/// The `payments serve` process; killed when dropped, also on panic.
struct Server {
    child: Child,
    base_url: String,
    data_dir: PathBuf,
}

impl Server {
    fn start(data_dir: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_payments"))
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .env("PAYMENTS_DATA_DIR", data_dir)
            .env("RUST_LOG", "warn")
            .env_remove("DATABASE_URL")
            .env_remove("PAYMENTS_API_KEYS")
            .env_remove("PAYMENTS_CONFIG")
            .env_remove("PAYMENTS_PORT")
            .env_remove("PAYMENTS_HOST")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the payments binary");
        let stdout = child.stdout.take().expect("server stdout");
        // Construct the guard before waiting, so a timeout still kills it.
        let mut server = Server {
            child,
            base_url: String::new(),
            data_dir: data_dir.to_path_buf(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keeps draining stdout for the server's whole life.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        server.base_url = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("server did not print its address in {STARTUP_TIMEOUT:?}"));
        server
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one scenario measured.
#[derive(Default)]
struct Sample {
    ok: u64,
    errors: u64,
    /// Latency of each successful operation, in nanoseconds.
    latencies_ns: Vec<u64>,
    /// Error kind -> count.
    error_kinds: BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Sample {
    fn record(&mut self, outcome: Result<(), String>, took: Duration) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                self.latencies_ns.push(took.as_nanos() as u64);
            }
            Err(kind) => {
                self.errors += 1;
                *self.error_kinds.entry(kind).or_default() += 1;
            }
        }
    }

    fn merge(&mut self, other: Sample) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies_ns.extend(other.latencies_ns);
        for (kind, n) in other.error_kinds {
            *self.error_kinds.entry(kind).or_default() += n;
        }
    }

    fn requests(&self) -> u64 {
        self.ok + self.errors
    }

    /// Successful operations per second of wall time.
    fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile of successful latencies, in milliseconds.
    /// `latencies_ns` must be sorted.
    fn percentile_ms(&self, p: f64) -> f64 {
        let n = self.latencies_ns.len();
        if n == 0 {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        self.latencies_ns[rank.clamp(1, n) - 1] as f64 / 1e6
    }
}

type Operation =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// `concurrency` tasks, each issuing `op` back to back until `duration` has
/// passed. A request started before the deadline is awaited and counted;
/// `elapsed` runs until the last task finished.
async fn run_load(op: Operation, concurrency: usize, duration: Duration) -> Sample {
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut sample = Sample::default();
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let outcome = op().await;
                    sample.record(outcome, t0.elapsed());
                }
                sample
            })
        })
        .collect();
    let mut total = Sample::default();
    for task in tasks {
        total.merge(task.await.expect("load task panicked"));
    }
    total.elapsed = start.elapsed();
    total.latencies_ns.sort_unstable();
    total
}

fn healthz_op(client: reqwest::Client, url: String) -> Operation {
    Arc::new(move || {
        let client = client.clone();
        let url = url.clone();
        Box::pin(async move {
            let response = client
                .get(&url)
                .send()
                .await
                .map_err(|e| format!("transport: {}", short(&e)))?;
            let status = response.status().as_u16();
            let _ = response
                .bytes()
                .await
                .map_err(|e| format!("body: {}", short(&e)))?;
            if status == 200 {
                Ok(())
            } else {
                Err(format!("http {status}"))
            }
        })
    })
}

/// Unique idempotency keys and order ids across warm-up and measurement.
static NEXT_PAYMENT: AtomicU64 = AtomicU64::new(0);

fn payment_op(client: reqwest::Client, url: String, run_id: Arc<str>) -> Operation {
    Arc::new(move || {
        let client = client.clone();
        let url = url.clone();
        let run_id = run_id.clone();
        Box::pin(async move {
            let n = NEXT_PAYMENT.fetch_add(1, Ordering::Relaxed);
            let body = format!(
                r#"{{"amount":1000,"currency":"usd","customer_id":"cus_bench","order_id":"ord_{run_id}_{n}","payment_method":"pm_card_visa"}}"#
            );
            let response = client
                .post(&url)
                .bearer_auth(DEV_KEY)
                .header("Idempotency-Key", format!("bench_{run_id}_{n}"))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| format!("transport: {}", short(&e)))?;
            let status = response.status().as_u16();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| format!("body: {}", short(&e)))?;
            let json: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|_| format!("http {status}, body not JSON"))?;
            if status != 201 {
                let code = json["error"]["code"].as_str().unwrap_or("?");
                return Err(format!("http {status} {code}"));
            }
            match json["status"].as_str() {
                Some("succeeded") => Ok(()),
                other => Err(format!("201 with status {}", other.unwrap_or("?"))),
            }
        })
    })
}

fn short(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    s.truncate(80);
    s
}

/// Warm-up (discarded), then the measured run.
async fn scenario(op: Operation, params: &Params) -> (Sample, Sample) {
    let warmup = if params.warmup_seconds > 0 {
        run_load(
            op.clone(),
            params.concurrency,
            Duration::from_secs(params.warmup_seconds),
        )
        .await
    } else {
        Sample::default()
    };
    let measured = run_load(op, params.concurrency, Duration::from_secs(params.seconds)).await;
    (warmup, measured)
}

/// Baseline B: sequential autocommit inserts into a fresh file with the
/// store's durability settings.
async fn durable_inserts(path: &Path, params: &Params) -> Sample {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_millis(STORE_BUSY_TIMEOUT_MS))
        .foreign_keys(true)
        .connect()
        .await
        .expect("open baseline database");
    sqlx::query(
        "CREATE TABLE bench (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, amount INTEGER NOT NULL, created_at TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .expect("create baseline table");
    let mut n: u64 = 0;
    if params.warmup_seconds > 0 {
        timed_inserts(&mut conn, &mut n, params.warmup_seconds).await;
    }
    let sample = timed_inserts(&mut conn, &mut n, params.seconds).await;
    let _ = conn.close().await;
    sample
}

/// One autocommit INSERT after another for `seconds`.
async fn timed_inserts(conn: &mut sqlx::SqliteConnection, n: &mut u64, seconds: u64) -> Sample {
    let mut sample = Sample::default();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        *n += 1;
        let t0 = Instant::now();
        let outcome = sqlx::query("INSERT INTO bench (k, amount, created_at) VALUES (?, ?, ?)")
            .bind(format!("key_{n}"))
            .bind(1000_i64)
            .bind("2025-01-01T00:00:00Z")
            .execute(&mut *conn)
            .await
            .map(|_| ())
            .map_err(|e| format!("sqlite: {e}"));
        sample.record(outcome, t0.elapsed());
    }
    sample.elapsed = start.elapsed();
    sample.latencies_ns.sort_unstable();
    sample
}

/// The 1-minute load average (Linux), to show how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn print_table(rows: &[(&str, &Sample)]) {
    let header = format!(
        "{:<30} | {:>9} | {:>9} | {:>6} | {:>12} | {:>8} | {:>8} | {:>8} | {:>8}",
        "scenario",
        "requests",
        "ok",
        "errors",
        "throughput/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms"
    );
    println!("{header}");
    println!("{}", "-".repeat(header.len()));
    for (name, s) in rows {
        println!(
            "{:<30} | {:>9} | {:>9} | {:>6} | {:>12.1} | {:>8.3} | {:>8.3} | {:>8.3} | {:>8.3}",
            name,
            s.requests(),
            s.ok,
            s.errors,
            s.throughput(),
            s.percentile_ms(50.0),
            s.percentile_ms(90.0),
            s.percentile_ms(99.0),
            s.percentile_ms(100.0),
        );
    }
}

fn main() {
    let params = Params::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let ok = runtime.block_on(bench(&params));
    drop(runtime);
    if !ok {
        std::process::exit(1);
    }
}

/// Runs everything; false if the correctness check failed.
async fn bench(params: &Params) -> bool {
    let temp = tempfile::Builder::new()
        .prefix("payments-bench-")
        .tempdir()
        .expect("temp dir");
    let data_dir = temp.path().join("server");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_before = load_average();

    eprintln!(
        "throughput bench: concurrency {}, {} s measured after {} s warm-up per scenario, {} cores, data in {}",
        params.concurrency,
        params.seconds,
        params.warmup_seconds,
        cores,
        temp.path().display()
    );

    let server = Server::start(&data_dir);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(params.concurrency.max(1))
        .timeout(Duration::from_secs(60))
        .build()
        .expect("reqwest client");

    // Ready means the engine finished booting (store open, recovery done).
    let ready_deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match client.get(server.url("/readyz")).send().await {
            Ok(r) if r.status().is_success() => break,
            _ if Instant::now() < ready_deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => panic!(
                "server at {} never became ready: {other:?}",
                server.base_url
            ),
        }
    }
    eprintln!(
        "server pid {} listening on {}",
        server.pid(),
        server.base_url
    );

    eprintln!("[1/3] http floor: GET /healthz");
    let (_, http) = scenario(healthz_op(client.clone(), server.url("/healthz")), params).await;

    eprintln!("[2/3] durable insert: sequential autocommit INSERTs (WAL, synchronous=FULL)");
    let inserts = durable_inserts(&temp.path().join("baseline.db"), params).await;

    eprintln!("[3/3] payments: POST /v1/payments");
    let run_id: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
    let (pay_warmup, payments) = scenario(
        payment_op(client.clone(), server.url("/v1/payments"), run_id),
        params,
    )
    .await;

    // Every response is in, and the sandbox commits a charge before it
    // answers, so the record is complete now.
    let client_succeeded = (pay_warmup.ok + payments.ok) as usize;
    let check = charge_check::check_charges(&server.data_dir, client_succeeded).await;
    let client_errors = pay_warmup.errors + payments.errors;
    drop(server);
    let load_after = load_average();

    println!();
    println!(
        "concurrency {}, {} s measured (after {} s warm-up, discarded), {} cores shared by server and load generator",
        params.concurrency, params.seconds, params.warmup_seconds, cores
    );
    println!(
        "1-min load average: {load_before} before, {load_after} after (other work on the machine skews every row)"
    );
    println!(
        "(percentiles over successful operations; durable insert is sequential, one connection)"
    );
    println!();
    print_table(&[
        ("http floor (GET /healthz)", &http),
        ("durable insert (sqlite, seq.)", &inserts),
        ("payments (POST /v1/payments)", &payments),
    ]);
    println!();
    println!(
        "payments/s vs durable inserts/s: {:.2}×",
        payments.throughput() / inserts.throughput()
    );
    println!(
        "payments/s vs http floor: {:.2}%",
        100.0 * payments.throughput() / http.throughput()
    );
    println!(
        "DESIGN §12 goal ({} payments/s, p99 < {} ms): {:.1}% of the throughput goal, p99 {:.3} ms",
        GOAL_PAYMENTS_PER_SEC,
        GOAL_P99_MS,
        100.0 * payments.throughput() / GOAL_PAYMENTS_PER_SEC,
        payments.percentile_ms(99.0)
    );
    for (name, s) in [
        ("http floor", &http),
        ("durable insert", &inserts),
        ("payments", &payments),
    ] {
        for (kind, n) in &s.error_kinds {
            println!("errors in {name}: {n} × {kind}");
        }
    }
    for (kind, n) in &pay_warmup.error_kinds {
        println!("errors in payments warm-up: {n} × {kind}");
    }

    let consistent = check.is_consistent();
    println!("check (warm-up included): {check}");
    if !consistent && client_errors > 0 {
        println!(
            "  ({client_errors} requests errored; a payment may succeed after its client gave up)"
        );
    }
    consistent
}
