//! The `payments` command: `serve` runs the HTTP API on the engine;
//! `migrate` applies the database migrations and exits; `bench` measures
//! an engine started as a separate process (see [`cli::bench`]).
//!
//! Whatever it prints (errors, log lines) passes through
//! [`payments::config::mask_urls`]: a database URL's password must not
//! reach a terminal or a log collector, whichever message carried it.

mod cli;

use clap::{Args, Parser, Subcommand};
use payments::clock::{Clock, SystemClock};
use payments::config::mask_urls;
use payments::domain::Timestamp;
use payments::{Config, Engine};
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Every variable the engine reads, for `--help`: flags win over the
/// environment, the environment over the file.
const ENVIRONMENT_HELP: &str = "\
Environment:
  PAYMENTS_CONFIG      the TOML configuration file (as --config)
  DATABASE_URL         sqlite://… or postgres://… (default: SQLite under ./data/)
  PAYMENTS_HOST        address to listen on (default 127.0.0.1)
  PAYMENTS_PORT        port to listen on (default 8080)
  PAYMENTS_API_KEYS    merchant keys as merchant:key,merchant:key (turns off the development key)
  PAYMENTS_ADMIN_KEYS  operator keys, comma-separated
  RUST_LOG             log filter, e.g. info or payments=debug (wins over log.level)
  OTEL_EXPORTER_OTLP_HEADERS
                       headers for log.otlp_endpoint's collector, as key=value,key=value
                       (builds with --features otlp)
  <provider api_key_env>, <provider webhook_secret_env>
                       the variables your [[providers]] name for their credentials";

#[derive(Parser)]
#[command(
    name = "payments",
    version,
    about = "An actor-based payment engine",
    after_help = ENVIRONMENT_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP API (default 127.0.0.1:8080, SQLite under ./data/).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(CommonArgs),
    /// Run one recovery pass (stuck and pending payments, due scheduled
    /// retries, key pruning) and one reconciliation run over [--from, --to)
    /// (default: the last `window_secs`), print the run's report as JSON
    /// (as `POST /v1/reconciliation/runs` answers, plus the pass's report
    /// under `recovery`), and exit.
    Reconcile(ReconcileArgs),
    /// Measure payments/s and latency against engines started for the
    /// purpose, beside this machine's fsync and HTTP floors, and check
    /// afterwards that the provider's charges match the succeeded payments.
    Bench(cli::bench::BenchArgs),
}

#[derive(Args)]
#[command(after_help = ENVIRONMENT_HELP)]
struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, env = "PAYMENTS_CONFIG")]
    config: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…` (overrides DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args)]
#[command(after_help = ENVIRONMENT_HELP)]
struct ReconcileArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Start of the window, RFC 3339 (e.g. 2026-11-30T00:00:00Z).
    #[arg(long, requires = "to")]
    from: Option<String>,
    /// End of the window (excluded), RFC 3339.
    #[arg(long, requires = "from")]
    to: Option<String>,
}

#[derive(Args)]
#[command(after_help = ENVIRONMENT_HELP)]
struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on (overrides PAYMENTS_HOST).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one (overrides PAYMENTS_PORT).
    #[arg(long)]
    port: Option<u16>,
}

/// File, then environment, then flags: each later source wins.
fn load(common: &CommonArgs) -> Result<Config, String> {
    let mut config = match &common.config {
        Some(path) => Config::from_toml_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    config
        .apply_env(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .map_err(|e| e.to_string())?;
    if let Some(url) = &common.database_url {
        config.database_url = Some(url.clone());
    }
    // Every command checks the whole configuration, and what it needs of
    // this machine, before opening or binding anything.
    config.validate().map_err(|e| e.to_string())?;
    config
        .check_environment(|name| std::env::var(name).ok())
        .map_err(|e| e.to_string())?;
    Ok(config)
}

/// Standard error with the URLs of each write masked. The formatter writes
/// each event whole, so a URL is never split between two writes.
struct MaskedStderr;

impl Write for MaskedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let masked = mask_urls(&String::from_utf8_lossy(buf));
        std::io::stderr().lock().write_all(masked.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for MaskedStderr {
    type Writer = MaskedStderr;

    fn make_writer(&'a self) -> MaskedStderr {
        MaskedStderr
    }
}

/// What [`init_tracing`] leaves running until the command ends: the OTLP
/// export of the spans, when `log.otlp_endpoint` is set (cargo feature
/// `otlp`); nothing otherwise.
#[derive(Default)]
struct Tracing {
    #[cfg(feature = "otlp")]
    otlp: Option<payments::otlp::OtlpExport>,
}

impl Tracing {
    /// Sends the spans still queued, so the last ones leave before exit.
    fn finish(self) {
        #[cfg(feature = "otlp")]
        if let Some(otlp) = self.otlp {
            otlp.shutdown();
        }
    }
}

fn init_tracing(config: &Config) -> Result<Tracing, String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    // Colour codes only where a person reads them: a log file or collector
    // would store them as noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(MaskedStderr);
    #[cfg(feature = "otlp")]
    if let Some(endpoint) = &config.log.otlp_endpoint {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let otlp = payments::otlp::OtlpExport::start(endpoint, &config.log.otlp_service_name)
            .map_err(|e| e.to_string())?;
        // The log's filter applies to the export too: the spans it exports
        // are the ones the log shows (the engine's are at `info`).
        if config.log.format == "json" {
            builder.json().finish().with(otlp.layer()).init();
        } else {
            builder.finish().with(otlp.layer()).init();
        }
        tracing::info!(
            endpoint = %endpoint,
            service_name = %config.log.otlp_service_name,
            "exporting spans over OTLP"
        );
        return Ok(Tracing { otlp: Some(otlp) });
    }
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(Tracing::default())
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = load(&args.common)?;
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    let traces = init_tracing(&config)?;
    let listener = payments::api::bind(&config)
        .await
        .map_err(|e| e.to_string())?;
    let handle = Engine::start(config).await.map_err(|e| e.to_string())?;
    let served = payments::api::serve(handle.clone(), listener).await;
    // The server returns after SIGINT/SIGTERM (or on a bind error): finish
    // in-flight payments and flush before exiting, then send the spans
    // of that work.
    handle.shutdown().await;
    traces.finish();
    served.map_err(|e| e.to_string())
}

async fn migrate(args: CommonArgs) -> Result<(), String> {
    let config = load(&args)?;
    let traces = init_tracing(&config)?;
    let url = config.database_url();
    let store = payments::store::open(&url, &config.database_schema)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    traces.finish();
    println!("migrations applied to {}", mask_urls(&url));
    Ok(())
}

/// The window `[from, to)` asked for, read before anything starts.
fn window(args: &ReconcileArgs) -> Result<Option<(Timestamp, Timestamp)>, String> {
    let parse = |flag: &str, text: &str| {
        Timestamp::parse_rfc3339(text)
            .ok_or_else(|| format!("--{flag}: {text:?} is not an RFC 3339 time"))
    };
    match (&args.from, &args.to) {
        (Some(from), Some(to)) => Ok(Some((parse("from", from)?, parse("to", to)?))),
        _ => Ok(None),
    }
}

async fn reconcile(args: ReconcileArgs) -> Result<(), String> {
    let asked = window(&args)?;
    let mut config = load(&args.common)?;
    let traces = init_tracing(&config)?;
    // Exactly one pass, ours, so the report covers everything it did.
    config.reconciler.run_at_startup = false;
    let window = config.reconciler.window;
    let handle = Engine::start(config).await.map_err(|e| e.to_string())?;
    let report = async {
        let recovery = handle.run_recovery().await?;
        let (from, to) = asked.unwrap_or_else(|| {
            let to = SystemClock.now();
            let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            (to.plus_millis(-window_ms), to)
        });
        let run = handle.run_reconciliation(from, to).await?;
        let mut json = serde_json::to_value(run).unwrap_or_default();
        json["recovery"] = serde_json::to_value(recovery).unwrap_or_default();
        Ok::<_, payments::EngineError>(json)
    }
    .await
    .map_err(|e| e.to_string());
    handle.shutdown().await;
    traces.finish();
    println!(
        "{}",
        serde_json::to_string_pretty(&report?).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Runs one of the engine's commands on an actix system, what
/// `#[actix_web::main]` sets up.
fn on_actix(command: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    actix_web::rt::System::new().block_on(command)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => on_actix(serve(args)),
        Command::Migrate(args) => on_actix(migrate(args)),
        Command::Reconcile(args) => on_actix(reconcile(args)),
        // The bench builds a multi-threaded runtime of its own.
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("payments: {}", mask_urls(&message));
            ExitCode::FAILURE
        }
    }
}
