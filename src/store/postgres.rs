//! The PostgreSQL backend: production, and several engine instances on one
//! database.
//!
//! The engine's tables live in a schema of their own (default `payments`,
//! set as each connection's `search_path`), with their own migration history,
//! so a host application's tables and sqlx migrations in the same database
//! are untouched. Writes are group-committed: a few writer connections each
//! take whatever writes are queued into one short transaction, so many
//! payments share one commit and its round trips (DESIGN §12); a batch the
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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Read connections per engine instance.
const POOL_SIZE: u32 = 16;
/// Writer connections, each committing its own batches: more than one so a
/// batch's round trips overlap another's commit.
const WRITER_CONNECTIONS: usize = 4;
/// Most writes in one transaction.
const MAX_WRITE_BATCH: usize = 256;
/// Writes waiting for a writer connection; new payments are shed when full.
const WRITE_QUEUE_CAPACITY: usize = 4096;
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
    writer: mpsc::Sender<Job>,
    /// When partitions were last ensured (µs since the epoch).
    partitions_checked_us: AtomicI64,
}

/// Tables partitioned by month of `created_at` (migration 0009).
const PARTITIONED_TABLES: &[&str] = &["payment_events", "ledger_entries"];
/// Months of partitions kept ready beyond the current one: a quarter, so
/// an engine stopped for weeks still finds its month on restart.
const PARTITION_MONTHS_AHEAD: i32 = 3;
/// How often partitions are ensured at most (µs): the months change
/// slowly, and each check is a few catalogue reads.
const PARTITION_CHECK_INTERVAL_US: i64 = 3_600_000_000;

/// One write and where its answer goes.
struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteReply, StoreError>>,
}

/// The writers' shared queue: each writer takes a batch under the lock.
type Queue = Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>;

impl PostgresStore {
    /// Connects to `url`, creates `schema` if needed and applies the migrations there.
    pub async fn open(url: &str, schema: &str) -> Result<Self, StoreError> {
        if !valid_schema_name(schema) {
            return Err(StoreError::Migration(format!(
                "invalid schema name {schema:?}: use lowercase letters, digits and _"
            )));
        }
        let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|error| unreachable_server(&options, error))?;
        migrate::run_postgres(&mut conn, schema).await?;
        let _ = conn.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_millis(ACQUIRE_TIMEOUT_MS))
            .connect_with(options.clone())
            .await?;
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let queue: Queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..WRITER_CONNECTIONS {
            let conn = PgConnection::connect_with(&options).await?;
            tokio::spawn(writer_loop(conn, queue.clone()));
        }
        let store = PostgresStore {
            pool,
            writer,
            partitions_checked_us: AtomicI64::new(i64::MIN),
        };
        // The wall clock, not the engine's: partitions follow real months.
        let now = crate::domain::Timestamp::from_datetime(chrono::Utc::now());
        store.ensure_partitions(now).await?;
        Ok(store)
    }

    /// Creates the month partitions from this month to
    /// [`PARTITION_MONTHS_AHEAD`] ahead, where missing.
    async fn ensure_partitions(&self, now: crate::domain::Timestamp) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        for table in PARTITIONED_TABLES {
            let created: i32 =
                sqlx::query_scalar("SELECT payments_ensure_partitions($1, $2, $2, $3)")
                    .bind(table)
                    .bind(now.as_micros())
                    .bind(PARTITION_MONTHS_AHEAD)
                    .fetch_one(&mut *conn)
                    .await?;
            if created > 0 {
                tracing::info!(table, created, "month partitions created");
            }
        }
        self.partitions_checked_us
            .store(now.as_micros(), Ordering::Relaxed);
        Ok(())
    }
}

/// A connection that failed, naming the server it was for: "connection
/// refused" alone does not say which host or port was tried.
fn unreachable_server(options: &PgConnectOptions, error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            StoreError::Unreachable(format!(
                "cannot reach PostgreSQL at {}:{} (database {}): {error}",
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or("(default)")
            ))
        }
        other => StoreError::Database(other),
    }
}

#[async_trait]
impl SqlBackend for PostgresStore {
    type Read = PoolConnection<Postgres>;

    async fn read(&self) -> Result<PoolConnection<Postgres>, StoreError> {
        Ok(self.pool.acquire().await?)
    }

    async fn write(&self, op: WriteOp) -> Result<WriteReply, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sheddable = op.starts_work();
        let job = Job { op, reply };
        if sheddable {
            self.writer.try_send(job).map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => StoreError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
            })?;
        } else {
            self.writer
                .send(job)
                .await
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn migrations(&self) -> &'static Migrator {
        &migrate::POSTGRES_MIGRATIONS
    }

    async fn maintain(&self, now: crate::domain::Timestamp) -> Result<(), StoreError> {
        let last_us = self.partitions_checked_us.load(Ordering::Relaxed);
        if now.as_micros().saturating_sub(last_us) < PARTITION_CHECK_INTERVAL_US {
            return Ok(());
        }
        self.ensure_partitions(now).await
    }

    async fn shutdown(&self) {
        // Every write answered before this point is committed already.
        self.pool.close().await;
    }
}

/// One writer connection's loop: take a batch, commit it, answer it.
async fn writer_loop(mut conn: PgConnection, queue: Queue) {
    let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
    loop {
        {
            let mut queue = queue.lock().await;
            let Some(job) = queue.recv().await else {
                return;
            };
            batch.push(job);
            while batch.len() < MAX_WRITE_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        let (size, started) = (batch.len(), std::time::Instant::now());
        commit_batch(&mut conn, &mut batch).await;
        crate::telemetry::store_commit(size, started.elapsed());
        assert!(batch.is_empty(), "every job of a batch is answered");
    }
}

/// Whether `error` is a refusal that changed nothing (see `sql::payments`).
fn refused_cleanly(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::LeaseLost(_) | StoreError::Conflict(_) | StoreError::InsufficientFunds(_)
    )
}

/// Commits `batch` in one transaction, retrying it after a deadlock or
/// serialization abort; a write that fails after changing something makes
/// its batch run again one transaction per write.
async fn commit_batch(conn: &mut PgConnection, batch: &mut Vec<Job>) {
    let mut tries = 0;
    let outcome = loop {
        tries += 1;
        match try_batch(conn, batch).await {
            Err(error) if is_transient(&error) && tries < MAX_WRITE_TRIES => {
                tracing::debug!(%error, tries, "retrying a write batch aborted by the database");
            }
            other => break other,
        }
    };
    match outcome {
        Ok(results) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            tracing::warn!(%error, jobs = batch.len(), "write batch rolled back; writing its jobs one by one");
            for job in batch.drain(..) {
                let result = one_by_one(conn, &job.op).await;
                let _ = job.reply.send(result);
            }
        }
    }
}

async fn try_batch(
    conn: &mut PgConnection,
    batch: &[Job],
) -> Result<Vec<Result<WriteReply, StoreError>>, StoreError> {
    conn.execute("BEGIN", vec![]).await?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match ops::apply(conn, &job.op).await {
            Ok(reply) => results.push(Ok(reply)),
            Err(error) if refused_cleanly(&error) => results.push(Err(error)),
            Err(error) => {
                let _ = conn.execute("ROLLBACK", vec![]).await;
                return Err(error);
            }
        }
    }
    if let Err(error) = conn.execute("COMMIT", vec![]).await {
        let _ = conn.execute("ROLLBACK", vec![]).await;
        return Err(error);
    }
    Ok(results)
}

/// `op` alone in its own transaction, retried after an abort.
async fn one_by_one(conn: &mut PgConnection, op: &WriteOp) -> Result<WriteReply, StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        conn.execute("BEGIN", vec![]).await?;
        let applied = ops::apply(conn, op).await;
        let ended = match &applied {
            Ok(_) => conn.execute("COMMIT", vec![]).await,
            Err(_) => conn.execute("ROLLBACK", vec![]).await,
        };
        match (applied, ended) {
            (Err(error), _) if is_transient(&error) && tries < MAX_WRITE_TRIES => continue,
            (Ok(_), Err(error)) => {
                let _ = conn.execute("ROLLBACK", vec![]).await;
                return Err(StoreError::NotCommitted(error.to_string()));
            }
            (applied, _) => return applied.map_err(StoreError::unwound),
        }
    }
}
