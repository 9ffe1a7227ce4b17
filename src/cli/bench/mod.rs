//! `payments bench`: throughput and latency of `POST /v1/payments` as a
//! user would measure it, beside the floors of the same machine measured
//! in the same run, and checked for correctness afterwards (DESIGN §12).
//!
//! For each scenario (backend × connections × sandbox latency) the bench
//! starts a fresh engine as a separate process (`payments serve` from this
//! executable, on a free loopback port, with a fresh data directory and,
//! on PostgreSQL, a fresh schema), waits for `/readyz`, and measures:
//!
//! 1. the **HTTP floor**: `GET /healthz` with the same generator and the
//!    same number of connections;
//! 2. the **fsync floor**: durable single-row SQLite transactions on the
//!    same disk ([`fsync`]);
//! 3. **payments**: a closed loop of N keep-alive connections, each sending
//!    `POST /v1/payments` with a new idempotency key and order as soon as
//!    its previous request is answered ([`load`], [`http`]), warmed up for
//!    a second before the measured window;
//! 4. the server's memory, then the **check**: every sandbox charge belongs
//!    to a succeeded payment of its order and every succeeded payment has
//!    exactly one charge, read through the API ([`books`], [`check`]).
//!
//! `--embedded` adds the same load through the embedded handle in this
//! process ([`embedded`]). The bench exits non-zero if any check failed.

mod books;
mod check;
mod embedded;
mod fsync;
mod histogram;
mod http;
mod load;
mod report;
mod seed;
mod server;
mod setup;

use clap::{Args, ValueEnum};
use load::{Client, Tally, Window};
use payments::providers::sandbox::MAX_INJECTED_LATENCY_MS;
use payments::Engine;
use report::{RunReport, ScenarioReport};
use serde::Serialize;
use setup::Setup;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Warm-up before each measured window, discarded.
const WARMUP: Duration = Duration::from_secs(1);
/// Length of each floor's measurement.
const FLOOR_DURATION: Duration = Duration::from_secs(3);
/// Threads of the load generator, as `wrk -t2` in tools/throughput.sh.
const LOAD_WORKER_THREADS: usize = 2;
/// Most connections one scenario may open.
const MAX_CONNECTIONS: usize = 16_384;
/// Open files the bench needs beyond its connections (databases, pipes).
const SPARE_FILES: u64 = 64;

/// `payments bench`'s options.
#[derive(Args)]
pub struct BenchArgs {
    /// Stores to run against, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sqlite")]
    backend: Vec<Backend>,
    /// PostgreSQL URL for `--backend postgres`; each scenario gets a fresh
    /// schema in it, dropped afterwards. (Its value is never printed: it
    /// may hold a password.)
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Concurrent keep-alive connections, comma-separated: one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "64,256,1024")]
    connections: Vec<usize>,
    /// Sandbox latency in milliseconds, comma-separated: one scenario each.
    #[arg(long, value_delimiter = ',', default_value = "0,50")]
    latency_ms: Vec<u64>,
    /// Measured seconds per scenario (after a 1 s warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also run each scenario through the embedded handle, in this process.
    #[arg(long)]
    embedded: bool,
    /// Fill each scenario's fresh store with this many settled payments
    /// (spread over the last 30 days) before the engine starts.
    #[arg(long, default_value_t = 0)]
    seed_payments: u64,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Test hook: delete one sandbox charge before each check, which must
    /// then fail.
    #[arg(long, hide = true)]
    fault_drop_charge: bool,
}

/// The store a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How the load reaches the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A separate `payments serve` process, over loopback HTTP.
    Http,
    /// `Engine::start` in this process.
    Embedded,
}

/// One measured configuration.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Scenario {
    pub mode: Mode,
    pub backend: Backend,
    pub connections: usize,
    pub sandbox_latency_ms: u64,
}

impl Scenario {
    /// For people: `http sqlite c64 0ms`.
    pub fn label(&self) -> String {
        format!(
            "{} {} c{} {}ms",
            self.mode.as_str(),
            self.backend.as_str(),
            self.connections,
            self.sandbox_latency_ms
        )
    }

    /// For file names: `http-sqlite-c64-0ms`.
    pub fn slug(&self) -> String {
        self.label().replace(' ', "-")
    }
}

impl Backend {
    fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Http => "http",
            Mode::Embedded => "embedded",
        }
    }
}

impl BenchArgs {
    fn validate(&self) -> Result<(), String> {
        if self.seed_payments > seed::MAX_SEED_PAYMENTS {
            return Err(format!(
                "--seed-payments {}: at most {}",
                self.seed_payments,
                seed::MAX_SEED_PAYMENTS
            ));
        }
        if self.seconds == 0 {
            return Err("--seconds must be at least 1".into());
        }
        if let Some(bad) = self
            .connections
            .iter()
            .find(|&&n| n == 0 || n > MAX_CONNECTIONS)
        {
            return Err(format!(
                "--connections {bad}: each must be 1 to {MAX_CONNECTIONS}"
            ));
        }
        if let Some(bad) = self
            .latency_ms
            .iter()
            .find(|&&ms| ms > MAX_INJECTED_LATENCY_MS)
        {
            return Err(format!(
                "--latency-ms {bad}: each must be 0 to {MAX_INJECTED_LATENCY_MS}"
            ));
        }
        if self.backend.contains(&Backend::Postgres) && self.database_url.is_none() {
            return Err("--backend postgres needs --database-url (or DATABASE_URL)".into());
        }
        let most = self.connections.iter().copied().max().unwrap_or(0);
        check_open_files(most)
    }

    /// Every scenario, in the order they run.
    fn scenarios(&self) -> Vec<Scenario> {
        let mut modes = vec![Mode::Http];
        if self.embedded {
            modes.push(Mode::Embedded);
        }
        let mut all = Vec::new();
        for &backend in &self.backend {
            for &connections in &self.connections {
                for &sandbox_latency_ms in &self.latency_ms {
                    for &mode in &modes {
                        all.push(Scenario {
                            mode,
                            backend,
                            connections,
                            sandbox_latency_ms,
                        });
                    }
                }
            }
        }
        all
    }
}

/// Refuses to start when the open-file limit cannot hold `connections`
/// sockets (the server, a child, inherits the same limit).
fn check_open_files(connections: usize) -> Result<(), String> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < connections as u64 + SPARE_FILES => Err(format!(
            "{connections} connections need {} open files, and the limit is {soft}: raise it (ulimit -n)",
            connections as u64 + SPARE_FILES
        )),
        _ => Ok(()),
    }
}

/// Runs `payments bench`; an error if a scenario could not run or a check
/// failed.
pub fn run(args: BenchArgs) -> Result<(), String> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(LOAD_WORKER_THREADS)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the load generator's runtime: {e}"))?;
    let report = runtime.block_on(run_all(&args))?;
    runtime.shutdown_timeout(Duration::from_secs(1));
    report.print(args.json)?;
    match report.failed_checks() {
        0 => Ok(()),
        n => Err(format!(
            "the check FAILED in {n} of {} scenarios",
            report.scenarios.len()
        )),
    }
}

async fn run_all(args: &BenchArgs) -> Result<RunReport, String> {
    let scenarios = args.scenarios();
    let mut report = RunReport::start(args.seconds, WARMUP, FLOOR_DURATION);
    for (i, scenario) in scenarios.iter().enumerate() {
        eprintln!("[{}/{}] {}", i + 1, scenarios.len(), scenario.label());
        let setup = Setup::new(scenario, args.database_url.as_deref())?;
        let since = if args.seed_payments > 0 {
            let took = seed::seed(&setup, scenario.backend, args.seed_payments).await?;
            eprintln!("  seeded {} payments in {took:.1?}", args.seed_payments);
            Some(payments::domain::Timestamp::from_datetime(
                chrono::Utc::now(),
            ))
        } else {
            None
        };
        let result = match scenario.mode {
            Mode::Http => http_scenario(scenario, &setup, args, since).await,
            Mode::Embedded => embedded_scenario(scenario, &setup, args, since).await,
        };
        setup.cleanup().await;
        report.scenarios.push(result?);
    }
    report.finish();
    Ok(report)
}

/// A run id: keeps this run's keys and orders apart from any other's.
fn run_id() -> Arc<str> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:x}{:x}", std::process::id()).into()
}

/// The load of `clients` for `measured`, after the warm-up.
async fn measure<C: Client>(clients: Vec<C>, measured: Duration) -> Tally {
    load::run(clients, Window::starting_now(WARMUP, measured)).await
}

async fn fsync_floor(setup: &Setup) -> Result<f64, String> {
    let dir = setup.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || fsync::floor(&dir, FLOOR_DURATION))
        .await
        .map_err(|e| format!("fsync floor: {e}"))?
}

async fn http_scenario(
    s: &Scenario,
    setup: &Setup,
    args: &BenchArgs,
    since: Option<payments::domain::Timestamp>,
) -> Result<ScenarioReport, String> {
    let server = server::Server::start(setup).await?;
    let clients = |workload: &http::Workload| {
        (0..s.connections)
            .map(|id| http::HttpClient::new(server.addr, workload.clone(), id))
            .collect::<Vec<_>>()
    };
    let health = measure(clients(&http::Workload::Health), FLOOR_DURATION).await;
    let fsync = fsync_floor(setup).await?;
    let workload = http::Workload::Payments { run: run_id() };
    let payments = measure(clients(&workload), Duration::from_secs(args.seconds)).await;
    let memory = server.memory();
    if args.fault_drop_charge {
        books::drop_one_charge(&setup.data_dir())?;
    }
    let books = books::from_api(&server.base_url(), since).await?;
    let check = checked(&books, &payments);
    Ok(ScenarioReport::new(
        *s,
        &payments,
        fsync,
        Some(health.rate()),
        memory,
        check,
    ))
}

async fn embedded_scenario(
    s: &Scenario,
    setup: &Setup,
    args: &BenchArgs,
    since: Option<payments::domain::Timestamp>,
) -> Result<ScenarioReport, String> {
    let fsync = fsync_floor(setup).await?;
    let handle = Engine::start(setup.config()?)
        .await
        .map_err(|e| e.to_string())?;
    let run = run_id();
    let clients = (0..s.connections)
        .map(|id| embedded::EmbeddedClient::new(handle.clone(), run.clone(), id))
        .collect();
    let payments = measure(clients, Duration::from_secs(args.seconds)).await;
    let memory = server::memory(std::process::id());
    let dropped = if args.fault_drop_charge {
        books::drop_one_charge(&setup.data_dir())
    } else {
        Ok(())
    };
    let books = books::from_engine(&handle, since).await;
    handle.shutdown().await;
    dropped?;
    let check = checked(&books?, &payments);
    Ok(ScenarioReport::new(
        *s, &payments, fsync, None, memory, check,
    ))
}

/// The check, given the books and what the clients were answered (unknown
/// if any request went unanswered).
fn checked(books: &books::Books, payments: &Tally) -> check::ChargeCheck {
    let answered = (payments.lost_total == 0).then_some(payments.ok_total as usize);
    check::compare(&books.charged, &books.succeeded, answered)
}
