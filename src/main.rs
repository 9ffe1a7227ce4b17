//! The `payments` command: `serve` runs the HTTP API on the engine;
//! `migrate` applies the database migrations and exits.

use clap::{Args, Parser, Subcommand};
use payments::{Config, Engine};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "payments", version, about = "An actor-based payment engine")]
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
    /// Run one recovery pass now (stuck and pending payments, due scheduled
    /// retries, key pruning), print its report as JSON, and exit.
    Reconcile(CommonArgs),
}

#[derive(Args)]
struct CommonArgs {
    /// TOML configuration file.
    #[arg(long, env = "PAYMENTS_CONFIG")]
    config: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…` (overrides DATABASE_URL).
    #[arg(long)]
    database_url: Option<String>,
}

#[derive(Args)]
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
    Ok(config)
}

fn init_tracing(config: &Config) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let mut config = load(&args.common)?;
    if let Some(host) = args.host {
        config.server.host = host;
    }
    if let Some(port) = args.port {
        config.server.port = port;
    }
    init_tracing(&config);
    let handle = Engine::start(config).await.map_err(|e| e.to_string())?;
    let served = payments::api::serve(handle.clone()).await;
    // The server returns after SIGINT/SIGTERM (or on a bind error): finish
    // in-flight payments and flush before exiting.
    handle.shutdown().await;
    served.map_err(|e| e.to_string())
}

async fn migrate(args: CommonArgs) -> Result<(), String> {
    let config = load(&args)?;
    init_tracing(&config);
    let url = config.database_url();
    let store = payments::store::open(&url, &config.database_schema)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    println!(
        "migrations applied to {}",
        url.split('@').next_back().unwrap_or(&url)
    );
    Ok(())
}

async fn reconcile(args: CommonArgs) -> Result<(), String> {
    let mut config = load(&args)?;
    init_tracing(&config);
    // Exactly one pass, ours, so the report covers everything it did.
    config.reconciler.run_at_startup = false;
    let handle = Engine::start(config).await.map_err(|e| e.to_string())?;
    let report = handle.run_recovery().await.map_err(|e| e.to_string());
    handle.shutdown().await;
    println!(
        "{}",
        serde_json::to_string(&report?).map_err(|e| e.to_string())?
    );
    Ok(())
}

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Migrate(args) => migrate(args).await,
        Command::Reconcile(args) => reconcile(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("payments: {message}");
            ExitCode::FAILURE
        }
    }
}
