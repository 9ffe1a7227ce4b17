//! The sandbox record's hot path: recording a charge, and finding one by
//! its idempotency key, on plain `rusqlite` connections.
//!
//! A charge is on every payment's path, so it must cost what a remote
//! provider's commit would and no more: one thread commits many charges in
//! one transaction (one fsync for many), and each charge crosses threads
//! twice (to the writer and back), not once per statement as sqlx's SQLite
//! driver would. Look-ups by key run on the caller's thread.

use super::record::SandboxCharge;
use dashmap::DashMap;
use rusqlite::{params, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Charges waiting for the writer; callers wait when it is full.
const CHARGE_QUEUE_CAPACITY: usize = 4096;
/// Most charges committed in one transaction.
const MAX_CHARGE_BATCH: usize = 512;
/// Read connections kept for reuse.
const READ_POOL_SIZE: usize = 8;
/// Another process may hold the write lock briefly; wait for it.
pub(super) const RECORD_BUSY_TIMEOUT_MS: u64 = 30_000;

/// Charges being processed, by (provider, idempotency key).
pub(super) type InFlightKeys = Arc<DashMap<(String, String), u32>>;

/// Counts one charge in flight under its key for as long as it lives.
pub(super) struct InFlight {
    keys: InFlightKeys,
    key: (String, String),
}

impl InFlight {
    pub(super) fn enter(keys: &InFlightKeys, provider: &str, idempotency_key: &str) -> Self {
        let key = (provider.to_string(), idempotency_key.to_string());
        *keys.entry(key.clone()).or_insert(0) += 1;
        InFlight {
            keys: keys.clone(),
            key,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.keys.remove_if_mut(&self.key, |_, count| {
            *count -= 1;
            *count == 0
        });
    }
}

/// A charge to record, and where the stored charge goes.
pub(super) struct ChargeJob {
    pub charge: SandboxCharge,
    /// Past this the caller gave up: the charge is dropped, not committed.
    pub deadline: Instant,
    pub reply: oneshot::Sender<Result<(SandboxCharge, bool), String>>,
    /// Marks the key in flight until the writer is done with the job, even
    /// if the caller gave up waiting.
    pub _in_flight: InFlight,
}

impl ChargeJob {
    /// Ends the job: the key leaves the in-flight set first, then the
    /// caller gets `answer`. In that order, a look-up the caller makes
    /// once answered finds the committed charge, not "still in progress".
    fn answer(self, answer: Result<(SandboxCharge, bool), String>) {
        let ChargeJob {
            reply, _in_flight, ..
        } = self;
        drop(_in_flight);
        let _ = reply.send(answer);
    }
}

fn open(path: &Path, flags: OpenFlags) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_millis(RECORD_BUSY_TIMEOUT_MS))?;
    Ok(conn)
}

/// Starts the writer thread on the record at `path`.
pub(super) fn spawn_writer(path: &Path) -> std::io::Result<mpsc::Sender<ChargeJob>> {
    let conn = open(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .and_then(|conn| {
            conn.execute_batch("PRAGMA synchronous = FULL")?;
            Ok(conn)
        })
        .map_err(std::io::Error::other)?;
    let (sender, queue) = mpsc::channel(CHARGE_QUEUE_CAPACITY);
    std::thread::Builder::new()
        .name("sandbox-record-writer".into())
        .spawn(move || writer_loop(conn, queue))?;
    Ok(sender)
}

fn writer_loop(mut conn: rusqlite::Connection, mut queue: mpsc::Receiver<ChargeJob>) {
    let mut batch = Vec::with_capacity(MAX_CHARGE_BATCH);
    while let Some(job) = queue.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_CHARGE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit(&mut conn, &mut batch);
    }
}

/// Records `batch` in one transaction and answers every job.
fn commit(conn: &mut rusqlite::Connection, batch: &mut Vec<ChargeJob>) {
    let mut stored = Vec::with_capacity(batch.len());
    let committed = (|| -> rusqlite::Result<()> {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        // Checked with the write lock held, right before the insert: a
        // charge whose caller gave up (the lock was held elsewhere, or the
        // process was frozen) never commits late.
        for job in batch.iter() {
            stored.push(if Instant::now() > job.deadline {
                None
            } else {
                Some(insert_charge(conn, &job.charge)?)
            });
        }
        conn.execute_batch("COMMIT")
    })();
    match committed {
        Ok(()) => {
            for (job, result) in batch.drain(..).zip(stored) {
                let answer =
                    result.ok_or_else(|| "the call's deadline passed: nothing charged".to_string());
                job.answer(answer);
            }
        }
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            for job in batch.drain(..) {
                job.answer(Err(format!("charge not recorded: {error}")));
            }
        }
    }
}

/// Inserts `charge` unless its key exists; returns the stored charge and
/// whether it is new.
fn insert_charge(
    conn: &rusqlite::Connection,
    charge: &SandboxCharge,
) -> rusqlite::Result<(SandboxCharge, bool)> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO sandbox_charges (id, provider, idempotency_key, merchant_id, order_id, customer_id,
                amount, currency, payment_method, status, amount_refunded, fee, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (provider, idempotency_key) DO NOTHING",
        )?
        .execute(params![
            charge.id,
            charge.provider,
            charge.idempotency_key,
            charge.merchant_id,
            charge.order_id,
            charge.customer_id,
            charge.amount,
            charge.currency,
            charge.payment_method,
            charge.status,
            charge.amount_refunded,
            charge.fee,
            charge.created_at,
        ])?
        == 1;
    if inserted {
        return Ok((charge.clone(), true));
    }
    let existing = find_on(conn, &charge.provider, &charge.idempotency_key)?;
    existing
        .map(|found| (found, false))
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

fn find_on(
    conn: &rusqlite::Connection,
    provider: &str,
    idempotency_key: &str,
) -> rusqlite::Result<Option<SandboxCharge>> {
    let mut statement = conn.prepare_cached(
        "SELECT id, provider, idempotency_key, merchant_id, order_id, customer_id, amount, currency,
            payment_method, status, amount_refunded, fee, created_at
         FROM sandbox_charges WHERE provider = ?1 AND idempotency_key = ?2",
    )?;
    let mut rows = statement.query(params![provider, idempotency_key])?;
    let Some(row) = rows.next()? else {
        return Ok(None);
    };
    Ok(Some(SandboxCharge {
        id: row.get(0)?,
        provider: row.get(1)?,
        idempotency_key: row.get(2)?,
        merchant_id: row.get(3)?,
        order_id: row.get(4)?,
        customer_id: row.get(5)?,
        amount: row.get(6)?,
        currency: row.get(7)?,
        payment_method: row.get(8)?,
        status: row.get(9)?,
        amount_refunded: row.get(10)?,
        fee: row.get(11)?,
        created_at: row.get(12)?,
    }))
}

/// Read-only connections for look-ups by key, used on the caller's thread.
pub(super) struct FastReads {
    path: PathBuf,
    pool: Mutex<Vec<rusqlite::Connection>>,
}

impl FastReads {
    pub(super) fn new(path: &Path) -> Self {
        FastReads {
            path: path.to_path_buf(),
            pool: Mutex::new(Vec::new()),
        }
    }

    /// The charge `provider` made under `idempotency_key`, if any.
    pub(super) fn find(
        &self,
        provider: &str,
        idempotency_key: &str,
    ) -> Result<Option<SandboxCharge>, String> {
        let pooled = self.pool.lock().ok().and_then(|mut pool| pool.pop());
        let conn = match pooled {
            Some(conn) => conn,
            None => open(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(|e| e.to_string())?,
        };
        let found = find_on(&conn, provider, idempotency_key).map_err(|e| e.to_string());
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < READ_POOL_SIZE {
                pool.push(conn);
            }
        }
        found
    }
}
