//! The SQLite backend: the embedded, zero-setup default.
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction
//! survives power loss. Writes go through one writer thread that commits
//! many payments' writes together (`writer.rs`); reads run right on the
//! caller's thread on a small pool of read-only connections, which WAL lets
//! run beside the writer. Both use `rusqlite`, synchronously (`conn.rs`):
//! a statement costs microseconds, and no statement crosses a thread.
//! (sqlx, which the PostgreSQL backend and the sandbox use, runs each
//! SQLite statement on a worker thread; on this hot path those hand-offs
//! cost more than the work.)

mod checkpoint;
mod conn;
mod staging;
mod writer;

pub use conn::OwnedRow;

use super::backend::SqlBackend;
use super::migrate;
use super::ops::{WriteOp, WriteReply};
use super::sql::reconcile;
use super::{StagedRecord, StoreError};
use async_trait::async_trait;
use rusqlite::OpenFlags;
use sqlx::migrate::Migrator;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the writer. A write that would start a new payment
/// is refused when it is full (the caller sheds the request with a 503);
/// others wait for room.
const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Read-only connections kept open for reuse; more are opened when busy
/// and closed when returned.
const READ_POOL_SIZE: usize = 16;
/// The writer's page cache. Each payment inserts into indexes keyed by
/// customer and by order, so a batch touches leaves all over them; with
/// SQLite's default 2 MiB most of those were read back from the file for
/// every batch (11 % of the writer's time in `getPageNormal`, measured at
/// 200,000 payments). Allocated as pages are read, so it fills during
/// warm-up and then stays.
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Each pooled read connection's page cache. Reads are point lookups and
/// short pages; the OS keeps the file cached. SQLite's default of 2 MiB a
/// connection let the pool's caches grow RSS by up to 32 MiB, slowly, as
/// the file grew past them (DESIGN §12: RSS flat after warm-up).
const READ_CACHE_KIB: u32 = 512;
/// How long a connection waits for a lock held by another process (a second
/// engine on the same file, or an operator's sqlite3 shell).
const BUSY_TIMEOUT_MS: u64 = 10_000;

/// [`super::Store`] on a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<writer::Job>,
    reads: Arc<Mutex<Vec<rusqlite::Connection>>>,
    /// The one connection whose `TEMP` table holds reconciliation's staged
    /// records (`staging.rs`); a run's calls take turns on it.
    staging: Arc<tokio::sync::Mutex<rusqlite::Connection>>,
    /// Dropping it stops the checkpoint thread.
    _checkpoints: std::sync::mpsc::Sender<()>,
}

/// The file a `sqlite://…` URL names.
/// The file a `sqlite:` URL names, if it names one.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    path_of(url).ok()
}

fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::UnsupportedUrl("not a sqlite: URL".into()))?;
    let path = rest.split('?').next().unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::UnsupportedUrl(
            "the engine needs a SQLite file, not memory".into(),
        ));
    }
    Ok(PathBuf::from(path))
}

fn open_connection(path: &Path, flags: OpenFlags) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Sqlite(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .and_then(|()| conn.execute_batch("PRAGMA foreign_keys = ON"))
        .map_err(|e| StoreError::Sqlite(e.to_string()))?;
    conn.set_prepared_statement_cache_capacity(conn::STATEMENT_CACHE_CAPACITY);
    Ok(conn)
}

/// Opens a read-only connection for the pool, with a small page cache.
fn open_read(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = open_connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{READ_CACHE_KIB}"))
        .map_err(|e| StoreError::Sqlite(e.to_string()))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, e.g.
    /// `sqlite://data/payments.db`, and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Migration(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let bound = checkpoint::WalBound::new(
            &path,
            checkpoint::WAL_RESTART_BYTES,
            Duration::from_millis(BUSY_TIMEOUT_MS),
        );
        // Only the writer thread uses it: no per-call mutex.
        let mut writer_conn = open_connection(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // WAL lets readers run beside the writer; FULL makes a commit
        // survive power loss (DESIGN §12: durability is never traded).
        writer_conn
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0;
                 PRAGMA cache_size = -{WRITER_CACHE_KIB};"
            ))
            .and_then(|()| bound.limit_file(&writer_conn))
            .map_err(|e| StoreError::Sqlite(e.to_string()))?;
        migrate::run_sqlite(&mut writer_conn).await?;
        let copying = bound.copying();
        let (sender, queue) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("payments-sqlite-writer".into())
            .spawn(move || writer::writer_loop(writer_conn, bound, queue))
            .map_err(|e| StoreError::Sqlite(format!("cannot start the writer thread: {e}")))?;
        let checkpoints = start_checkpoints(&path, copying)?;
        let staging = staging::open(&path)?;
        Ok(SqliteStore {
            path,
            writer: sender,
            reads: Arc::new(Mutex::new(Vec::new())),
            staging: Arc::new(tokio::sync::Mutex::new(staging)),
            _checkpoints: checkpoints,
        })
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteReply, StoreError> {
        let (reply, answer) = oneshot::channel();
        let sheddable = op.starts_work();
        let job = writer::Job { op, reply };
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
}

/// Starts the copying thread ([`checkpoint::copy_loop`]); it stops when
/// the store is dropped.
fn start_checkpoints(
    path: &Path,
    copying: Arc<std::sync::atomic::AtomicBool>,
) -> Result<std::sync::mpsc::Sender<()>, StoreError> {
    let conn = open_connection(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let interval = Duration::from_millis(checkpoint::CHECKPOINT_INTERVAL_MS);
    std::thread::Builder::new()
        .name("payments-sqlite-checkpoint".into())
        .spawn(move || checkpoint::copy_loop(conn, interval, copying, stopped))
        .map_err(|e| StoreError::Sqlite(format!("cannot start the checkpoint thread: {e}")))?;
    Ok(stop)
}

/// A read-only connection: borrowed from the pool (returned on drop), or
/// the staging connection, held until dropped.
pub struct PooledRead {
    lease: Lease,
}

enum Lease {
    Pooled {
        conn: Option<rusqlite::Connection>,
        pool: Arc<Mutex<Vec<rusqlite::Connection>>>,
    },
    Staging(tokio::sync::OwnedMutexGuard<rusqlite::Connection>),
}

impl Deref for PooledRead {
    type Target = rusqlite::Connection;
    fn deref(&self) -> &rusqlite::Connection {
        match &self.lease {
            Lease::Pooled { conn, .. } => conn.as_ref().expect("present until dropped"),
            Lease::Staging(conn) => conn,
        }
    }
}

impl DerefMut for PooledRead {
    fn deref_mut(&mut self) -> &mut rusqlite::Connection {
        match &mut self.lease {
            Lease::Pooled { conn, .. } => conn.as_mut().expect("present until dropped"),
            Lease::Staging(conn) => conn,
        }
    }
}

impl Drop for PooledRead {
    fn drop(&mut self) {
        let Lease::Pooled { conn, pool } = &mut self.lease else {
            return;
        };
        let (Some(conn), Ok(mut pool)) = (conn.take(), pool.lock()) else {
            return;
        };
        if pool.len() < READ_POOL_SIZE {
            pool.push(conn);
        }
    }
}

#[async_trait]
impl super::sql::Conn for PooledRead {
    type Row = OwnedRow;

    async fn execute(&mut self, sql: &str, args: Vec<super::sql::Arg>) -> Result<u64, StoreError> {
        super::sql::Conn::execute(&mut **self, sql, args).await
    }

    async fn fetch_all(
        &mut self,
        sql: &str,
        args: Vec<super::sql::Arg>,
    ) -> Result<Vec<OwnedRow>, StoreError> {
        super::sql::Conn::fetch_all(&mut **self, sql, args).await
    }

    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        super::sql::Conn::execute_script(&mut **self, sql).await
    }
}

#[async_trait]
impl SqlBackend for SqliteStore {
    type Read = PooledRead;

    async fn read(&self) -> Result<PooledRead, StoreError> {
        let pooled = self.reads.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => open_read(&self.path)?,
        };
        Ok(PooledRead {
            lease: Lease::Pooled {
                conn: Some(conn),
                pool: self.reads.clone(),
            },
        })
    }

    async fn write(&self, op: WriteOp) -> Result<WriteReply, StoreError> {
        self.submit(op).await
    }

    async fn stage(&self, run_id: &str, records: Vec<StagedRecord>) -> Result<(), StoreError> {
        reconcile::stage(&mut self.staged().await?, run_id, &records).await
    }

    async fn unstage(&self, run_id: &str) -> Result<(), StoreError> {
        reconcile::unstage(&mut self.staged().await?, run_id)
            .await
            .map(|_| ())
    }

    async fn staged(&self) -> Result<PooledRead, StoreError> {
        Ok(PooledRead {
            lease: Lease::Staging(self.staging.clone().lock_owned().await),
        })
    }

    fn migrations(&self) -> &'static Migrator {
        &migrate::SQLITE_MIGRATIONS
    }

    fn reads_inline(&self) -> bool {
        true
    }

    async fn shutdown(&self) {
        // Everything queued before the barrier is durable once it answers.
        let _ = self.submit(WriteOp::Barrier).await;
        if let Ok(mut pool) = self.reads.lock() {
            pool.clear();
        }
    }
}
