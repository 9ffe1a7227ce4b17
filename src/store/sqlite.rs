//! The SQLite backend: the embedded, zero-setup default.
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction
//! survives power loss. Concurrency: SQLite allows one writer at a time, so
//! every write goes through a single writer task that owns the only writing
//! connection; nothing ever waits on `SQLITE_BUSY`. The writer drains its
//! queue into one `BEGIN IMMEDIATE` transaction (group commit), runs each
//! operation under its own savepoint so one failed operation does not undo
//! the others, and replies to each caller only after `COMMIT` returned.
//! Reads use a separate pool of read-only connections, which WAL lets run
//! beside the writer.

use super::backend::SqlBackend;
use super::migrate;
use super::ops::{self, WriteOp, WriteReply};
use super::sql::{Arg, Conn};
use super::StoreError;
use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, Sqlite};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the writer. A full queue makes callers wait (back
/// pressure) rather than grow memory without bound.
const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Most operations committed in one transaction. Bounds the latency a single
/// batch adds and the work lost to one failed `COMMIT`.
const MAX_WRITE_BATCH: usize = 256;
/// Read-only connections for GETs and pre-checks.
const READ_POOL_SIZE: u32 = 8;
/// How long a connection waits for a lock held by another process (a second
/// engine on the same file, or an operator's sqlite3 shell).
const BUSY_TIMEOUT_MS: u64 = 10_000;

fn bind<'q>(
    mut query: Query<'q, Sqlite, SqliteArguments<'q>>,
    args: Vec<Arg>,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    for arg in args {
        query = match arg {
            Arg::Text(value) => query.bind(value),
            Arg::Int(value) => query.bind(value),
        };
    }
    query
}

#[async_trait]
impl Conn for SqliteConnection {
    type Row = SqliteRow;

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        Ok(bind(sqlx::query(sql), args)
            .execute(&mut *self)
            .await?
            .rows_affected())
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<SqliteRow>, StoreError> {
        Ok(bind(sqlx::query(sql), args).fetch_all(&mut *self).await?)
    }

    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        // A plain string without arguments runs as one script (several
        // statements), which a migration file is.
        sqlx::Executor::execute(&mut *self, sql).await?;
        Ok(())
    }
}

/// One write the writer task performs, and where its answer goes.
struct WriteJob {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteReply, StoreError>>,
}

/// [`Store`] on a SQLite file.
pub struct SqliteStore {
    reads: SqlitePool,
    writer: mpsc::Sender<WriteJob>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, e.g.
    /// `sqlite://data/payments.db`, and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Migration(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let mut writer_conn = SqliteConnection::connect_with(&options).await?;
        migrate::run_sqlite(&mut writer_conn).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .connect_with(options.read_only(true))
            .await?;
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        tokio::spawn(writer_loop(writer_conn, queue));
        Ok(SqliteStore { reads, writer })
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut queue: mpsc::Receiver<WriteJob>) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_WRITE_BATCH);
    while let Some(job) = queue.recv().await {
        batch.push(job);
        while batch.len() < MAX_WRITE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch).await;
        debug_assert!(batch.is_empty());
    }
    let _ = conn.close().await;
}

/// Applies `batch` in one transaction and answers every job in it.
async fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<WriteJob>) {
    let mut results = Vec::with_capacity(batch.len());
    let committed: Result<(), StoreError> = async {
        conn.execute("BEGIN IMMEDIATE", vec![]).await?;
        for job in batch.iter() {
            conn.execute("SAVEPOINT op", vec![]).await?;
            let result = ops::apply(conn, &job.op).await;
            // An operation that failed, or declined (key or order taken),
            // leaves nothing behind.
            if !result.as_ref().is_ok_and(WriteReply::keeps_writes) {
                conn.execute("ROLLBACK TO op", vec![]).await?;
            }
            conn.execute("RELEASE op", vec![]).await?;
            results.push(result);
        }
        conn.execute("COMMIT", vec![]).await?;
        Ok(())
    }
    .await;
    match committed {
        Ok(()) => {
            assert_eq!(results.len(), batch.len(), "one result per job");
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            // Nothing in this batch is durable; every caller learns so.
            tracing::error!(%error, jobs = batch.len(), "write batch failed; rolled back");
            let _ = conn.execute("ROLLBACK", vec![]).await;
            let message = error.to_string();
            for job in batch.drain(..) {
                let _ = job
                    .reply
                    .send(Err(StoreError::NotCommitted(message.clone())));
            }
        }
    }
}

#[async_trait]
impl SqlBackend for SqliteStore {
    type Read = PoolConnection<Sqlite>;

    async fn read(&self) -> Result<PoolConnection<Sqlite>, StoreError> {
        Ok(self.reads.acquire().await?)
    }

    async fn write(&self, op: WriteOp) -> Result<WriteReply, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    fn migrations(&self) -> &'static Migrator {
        &migrate::SQLITE_MIGRATIONS
    }

    async fn shutdown(&self) {
        // Everything queued before the barrier is durable once it answers.
        let _ = self.write(WriteOp::Barrier).await;
        self.reads.close().await;
    }
}
