//! The SQLite writer: one thread, one connection, group commit.
//!
//! SQLite allows one writer at a time, so every write goes through this
//! thread; nothing ever waits on `SQLITE_BUSY` inside the engine. The thread
//! takes everything queued (up to [`MAX_WRITE_BATCH`]) into one
//! `BEGIN IMMEDIATE … COMMIT`, so many payments share one fsync, and
//! answers each caller only after `COMMIT` returned: nothing is
//! acknowledged before it is durable.
//!
//! A batch costs one hand-off to this thread and one back per write,
//! however many statements it runs: the statements run here, synchronously
//! (see `conn.rs`).
//!
//! Writes are refused cleanly, before they change anything (a key already
//! taken, a lease lost, a payment that changed), so ops need no savepoint.
//! A write that fails after changing something (a broken invariant, a
//! full disk) makes the whole batch roll back; its ops are then run again
//! one transaction each, so one bad write never takes the others down.

use crate::store::ops::{self, WriteOp, WriteReply};
use crate::store::StoreError;
use futures_util::FutureExt;
use tokio::sync::{mpsc, oneshot};

/// Most writes committed in one transaction. Bounds the latency one batch
/// adds and the work redone if it fails.
pub(super) const MAX_WRITE_BATCH: usize = 512;
/// A WAL restart that held the writer this long is logged: it is a latency
/// spike for every payment queued behind it.
const SLOW_RESTART_MS: u128 = 50;

/// One write and where its answer goes.
pub(super) struct Job {
    pub op: WriteOp,
    pub reply: oneshot::Sender<Result<WriteReply, StoreError>>,
}

/// Runs `op` on the writer's connection; the SQL never waits on anything.
fn apply(conn: &mut rusqlite::Connection, op: &WriteOp) -> Result<WriteReply, StoreError> {
    ops::apply(conn, op).now_or_never().unwrap_or_else(|| {
        Err(StoreError::Corrupt(
            "a synchronous write did not finish".into(),
        ))
    })
}

/// Whether `error` is a refusal that changed nothing (see the module doc).
fn refused_cleanly(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::LeaseLost(_) | StoreError::Conflict(_) | StoreError::InsufficientFunds(_)
    )
}

fn run(conn: &mut rusqlite::Connection, sql: &str) -> Result<(), StoreError> {
    conn.execute_batch(sql)
        .map_err(|e| StoreError::Sqlite(e.to_string()))
}

/// The writer thread's loop: until every sender is gone.
pub(super) fn writer_loop(
    mut conn: rusqlite::Connection,
    mut bound: super::checkpoint::WalBound,
    mut queue: mpsc::Receiver<Job>,
) {
    let mut batch = Vec::with_capacity(MAX_WRITE_BATCH);
    while let Some(job) = queue.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_WRITE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (size, started) = (batch.len(), std::time::Instant::now());
        commit_batch(&mut conn, &mut batch);
        crate::telemetry::store_commit(size, started.elapsed());
        assert!(batch.is_empty(), "every job of a batch is answered");
        // Between batches, holding no lock: the one moment a WAL restart
        // cannot be starved by this writer (see `checkpoint`).
        restart_if_long(&conn, &mut bound);
    }
}

/// Restarts a long WAL (see `checkpoint`), saying so when it held the
/// batches back noticeably: an operator chasing a latency spike finds it.
fn restart_if_long(conn: &rusqlite::Connection, bound: &mut super::checkpoint::WalBound) {
    let started = std::time::Instant::now();
    match bound.after_batch(conn) {
        Ok(super::checkpoint::Restart::NotNeeded) => {}
        Ok(done) => {
            let paused_ms = started.elapsed().as_millis();
            if paused_ms >= SLOW_RESTART_MS {
                tracing::info!(?done, paused_ms, "WAL restart held the writer");
            }
        }
        Err(error) => {
            tracing::warn!(%error, "WAL restart failed; tried again after a later batch")
        }
    }
}

/// Applies `batch` in one transaction and answers every job in it.
fn commit_batch(conn: &mut rusqlite::Connection, batch: &mut Vec<Job>) {
    match try_batch(conn, batch) {
        Ok(results) => {
            assert_eq!(results.len(), batch.len(), "one result per job");
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            let _ = run(conn, "ROLLBACK");
            tracing::warn!(%error, jobs = batch.len(), "write batch rolled back; writing its jobs one by one");
            for job in batch.drain(..) {
                let result = one_by_one(conn, &job.op);
                let _ = job.reply.send(result);
            }
        }
    }
}

/// The fast path: every op in one transaction, no savepoints. `Err` means
/// the transaction must be rolled back (nothing in it is durable).
fn try_batch(
    conn: &mut rusqlite::Connection,
    batch: &[Job],
) -> Result<Vec<Result<WriteReply, StoreError>>, StoreError> {
    run(conn, "BEGIN IMMEDIATE")?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match apply(conn, &job.op) {
            Ok(reply) => results.push(Ok(reply)),
            Err(error) if refused_cleanly(&error) => results.push(Err(error)),
            Err(error) => return Err(error),
        }
    }
    run(conn, "COMMIT")?;
    Ok(results)
}

/// The slow path: `op` alone in its own transaction.
fn one_by_one(conn: &mut rusqlite::Connection, op: &WriteOp) -> Result<WriteReply, StoreError> {
    run(conn, "BEGIN IMMEDIATE").map_err(|e| StoreError::NotCommitted(e.to_string()))?;
    match apply(conn, op) {
        Ok(reply) => {
            run(conn, "COMMIT").map_err(|e| {
                let _ = run(conn, "ROLLBACK");
                StoreError::NotCommitted(e.to_string())
            })?;
            Ok(reply)
        }
        Err(error) => {
            let _ = run(conn, "ROLLBACK");
            Err(error.unwound())
        }
    }
}
