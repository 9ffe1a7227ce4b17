//! The durable side of one scenario: a fresh temporary directory (data
//! directory, sandbox record, configuration file, the fsync floor's file),
//! on PostgreSQL a fresh schema, and the configuration both the server
//! process and the embedded engine start from.

use super::{Backend, Scenario};
use payments::config::{mask_urls, MAX_RATE_LIMIT};
use payments::Config;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The sandbox providers every scenario configures.
pub const SANDBOXES: [&str; 2] = ["sandbox_a", "sandbox_b"];
/// Live payment actors allowed. The bench's orders are all new and an
/// actor idles 30 s (`payment_idle_timeout_ms`) after its payment is
/// final, so at DESIGN §12's 10,000 payments/s an 11 s run (warm-up
/// included) holds about 110,000 of them; the default bound (100,000)
/// would shed new orders with `503`s that measure the bound, not the
/// engine.
const BENCH_MAX_PAYMENT_ACTORS: usize = 1_000_000;
/// The default bulkhead of a provider (`providers.max_in_flight`); raised
/// to the number of connections, so that with a slow sandbox the bulkhead
/// does not fail payments the engine could carry.
const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// A directory under the system's temporary directory, removed on drop.
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> Result<ScratchDir, String> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("payments-bench-{}-{nanos}-{label}", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(ScratchDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// One scenario's files, store and configuration.
pub struct Setup {
    pub dir: ScratchDir,
    /// `DATABASE_URL` (PostgreSQL only; SQLite uses the data directory).
    database_url: Option<String>,
    /// `PAYMENTS_DATABASE_SCHEMA` (PostgreSQL only).
    schema: Option<String>,
}

impl Setup {
    /// A fresh directory (and schema name) with the scenario's config file.
    pub fn new(scenario: &Scenario, database_url: Option<&str>) -> Result<Setup, String> {
        let dir = ScratchDir::new(&scenario.slug())?;
        let (database_url, schema) = match scenario.backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let url = database_url
                    .ok_or("--backend postgres needs --database-url (or DATABASE_URL)")?;
                let schema = format!("bench_{}_{}", std::process::id(), unique_suffix());
                (Some(url.to_string()), Some(schema))
            }
        };
        let setup = Setup {
            dir,
            database_url,
            schema,
        };
        std::fs::write(setup.config_path(), config_toml(scenario))
            .map_err(|e| format!("cannot write the configuration: {e}"))?;
        std::fs::create_dir_all(setup.data_dir())
            .map_err(|e| format!("cannot create the data directory: {e}"))?;
        Ok(setup)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("bench.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The environment that completes the configuration file.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("PAYMENTS_DATA_DIR", self.data_dir().display().to_string())];
        if let Some(url) = &self.database_url {
            env.push(("DATABASE_URL", url.clone()));
        }
        if let Some(schema) = &self.schema {
            env.push(("PAYMENTS_DATABASE_SCHEMA", schema.clone()));
        }
        env
    }

    /// The configuration the server process reads: the file, then
    /// [`Setup::env`] (for the embedded engine).
    pub fn config(&self) -> Result<Config, String> {
        let mut config = Config::from_toml_file(&self.config_path()).map_err(|e| e.to_string())?;
        let env = self.env();
        config
            .apply_env(|name| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Drops the scenario's PostgreSQL schema (its directory goes on drop).
    pub async fn cleanup(self) {
        let (Some(url), Some(schema)) = (&self.database_url, &self.schema) else {
            return;
        };
        if let Err(error) = drop_schema(url, schema).await {
            eprintln!(
                "payments bench: could not drop schema {schema}: {}",
                mask_urls(&error.to_string())
            );
        }
    }
}

async fn drop_schema(url: &str, schema: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    // The name is ours: `bench_`, digits and `_` only.
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await?;
    conn.close().await
}

/// Distinguishes the schemas of one run's scenarios.
fn unique_suffix() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// The scenario's configuration file: quiet logs, two sandboxes at the
/// scenario's latency, and bounds that do not shed what it offers (the
/// load comes from one API key: the per-key rate limit is lifted to its
/// maximum, so the bench measures the engine, not the limit).
fn config_toml(scenario: &Scenario) -> String {
    let mut text = format!(
        "# Written by `payments bench` for {}.\n\n[log]\nlevel = \"warn\"\n\n[engine]\nmax_payment_actors = {BENCH_MAX_PAYMENT_ACTORS}\n\n[server.rate_limit]\nrequests_per_second = {MAX_RATE_LIMIT}\nburst = {MAX_RATE_LIMIT}\n",
        scenario.label()
    );
    let max_in_flight = scenario.connections.max(DEFAULT_MAX_IN_FLIGHT);
    for name in SANDBOXES {
        let _ = write!(
            text,
            "\n[[providers]]\nname = \"{name}\"\nmax_in_flight = {max_in_flight}\n\n[providers.faults]\nlatency_ms = {}\n",
            scenario.sandbox_latency_ms
        );
    }
    text
}
