//! The PostgreSQL backend: production, and several engine instances on one
//! database.
//!
//! The engine's tables live in a schema of their own (default `payments`,
//! set as each connection's `search_path`), with their own migration history,
//! so a host application's tables and sqlx migrations in the same database
//! are untouched. Each write is one short transaction on a pooled connection
//! (PostgreSQL merges concurrent commits' WAL flushes itself); a write the
//! database aborted to break a deadlock is retried. No transaction is ever
//! held across a provider call: the engine writes before and after it.

use super::backend::SqlBackend;
use super::ops::{self, WriteOp, WriteReply};
use super::sql::{Arg, Conn};
use super::{is_transient, migrate, StoreError};
use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, Postgres};
use std::str::FromStr;
use std::time::Duration;

/// Connections per engine instance.
const POOL_SIZE: u32 = 16;
/// How long a caller waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT_MS: u64 = 10_000;
/// Tries of one write aborted by a deadlock or serialization conflict.
const MAX_WRITE_TRIES: u32 = 3;
/// Longest schema name PostgreSQL accepts.
const MAX_SCHEMA_NAME_CHARS: usize = 63;

fn bind<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    args: Vec<Arg>,
) -> Query<'q, Postgres, PgArguments> {
    for arg in args {
        query = match arg {
            Arg::Text(value) => query.bind(value),
            Arg::Int(value) => query.bind(value),
        };
    }
    query
}

#[async_trait]
impl Conn for PgConnection {
    type Row = PgRow;

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        Ok(bind(sqlx::query(sql), args)
            .execute(&mut *self)
            .await?
            .rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<PgRow>, StoreError> {
        Ok(bind(sqlx::query(sql), args).fetch_all(&mut *self).await?)
    }

    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        // A plain string without arguments runs as one script (several
        // statements), which a migration file is.
        sqlx::Executor::execute(&mut *self, sql).await?;
        Ok(())
    }
}

/// Whether `name` is a plain lowercase identifier (so it needs no quoting
/// rules beyond double quotes and cannot inject SQL).
pub fn valid_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_SCHEMA_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// [`Store`] on a PostgreSQL database.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url`, creates `schema` if needed and applies the migrations there.
    pub async fn open(url: &str, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema_name(schema) {
            return Err(StoreError::Migration(format!(
                "invalid schema name {schema:?}: use lowercase letters, digits and _"
            )));
        }
        let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
        let mut conn = PgConnection::connect_with(&options).await?;
        migrate::run_postgres(&mut conn, schema).await?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .connect_with(options)
            .await?;
        Ok(PostgresStore { pool })
    }
}

#[async_trait]
impl SqlBackend for PostgresStore {
    type Read = PoolConnection<Postgres>;

    async fn read(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    /// Runs `op` in its own transaction, retrying it if the database aborted
    /// it to resolve a conflict. A failed `COMMIT` is not retried: whether it
    /// took effect is unknown, and recovery will find out.
    async fn write(&self, op: WriteOp) -> Result<WriteReply, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut tx = self.pool.begin().await?;
            match ops::apply(&mut *tx, &op).await {
                Ok(reply) if reply.keeps_writes() => {
                    tx.commit().await?;
                    return Ok(reply);
                }
                Ok(reply) => {
                    tx.rollback().await?;
                    return Ok(reply);
                }
                Err(error) if is_transient(&error) && tries < MAX_WRITE_TRIES => {
                    tracing::debug!(%error, tries, "retrying a write aborted by the database");
                    let _ = tx.rollback().await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn migrations(&self) -> &'static Migrator {
        &migrate::POSTGRES_MIGRATIONS
    }

    async fn shutdown(&self) {
        // Every write answered before this point is committed already.
        self.pool.close().await;
    }
}
