//! The sandbox's own durable record of what it charged.
//!
//! It is deliberately a separate SQLite file, outside the engine's
//! transactions, committed before the sandbox answers: like a remote
//! provider's books, a `kill -9` of the engine can never roll a charge back.
//! Crash and concurrency tests count charges here and compare them with what
//! the engine recorded. Several engine processes may share one file.

use dashmap::DashMap;
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Connections to the record; writes serialize on SQLite's lock anyway.
const RECORD_POOL_SIZE: u32 = 4;
/// Another process may hold the write lock briefly; wait for it.
const RECORD_BUSY_TIMEOUT_MS: u64 = 30_000;
/// Most charges one settlement listing returns.
pub const MAX_LISTED_CHARGES: i64 = 10_000;

/// Most charges one page holds, whoever asks: a page is one bounded query.
pub const MAX_CHARGES_PER_PAGE: u32 = 100;

/// Which charges a page of the record holds (`GET /v1/sandbox/{provider}/charges`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargeFilter {
    /// Only this merchant's charges; `None`: every merchant's (operators).
    pub merchant_id: Option<String>,
    pub order_id: Option<String>,
    /// Charges older than this one (the last id of the previous page).
    pub starting_after: Option<String>,
    /// Rows to return (at most [`MAX_CHARGES_PER_PAGE`] are).
    pub limit: u32,
}

/// One charge the sandbox made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SandboxCharge {
    pub id: String,
    pub provider: String,
    pub idempotency_key: String,
    pub merchant_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    pub status: String,
    pub created_at: String,
}

/// Charges waiting for the record's writer; callers wait when it is full.
const CHARGE_QUEUE_CAPACITY: usize = 4096;
/// Most charges committed in one transaction.
const MAX_CHARGE_BATCH: usize = 256;

/// A charge to record, and where the stored charge goes.
struct ChargeJob {
    charge: SandboxCharge,
    /// Past this the caller gave up: the charge is dropped, not committed.
    deadline: Instant,
    reply: oneshot::Sender<Result<(SandboxCharge, bool), sqlx::Error>>,
    /// Marks the key in flight until the writer is done with the job, even
    /// if the caller gave up waiting (a timed-out call still lands, as at a
    /// real provider).
    _in_flight: InFlight,
}

/// Charges being processed, by (provider, idempotency key).
type InFlightKeys = Arc<DashMap<(String, String), u32>>;

/// Counts one charge in flight under its key for as long as it lives.
struct InFlight {
    keys: InFlightKeys,
    key: (String, String),
}

impl InFlight {
    fn enter(keys: &InFlightKeys, provider: &str, idempotency_key: &str) -> Self {
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

/// Handle to the sandbox record file.
///
/// Charges are written by one task that batches concurrent ones into a
/// single transaction, like a provider's own ledger would: one fsync for
/// many charges, no connections fighting over SQLite's write lock, and
/// still every charge durable before the sandbox answers.
#[derive(Clone)]
pub struct SandboxRecord {
    pool: SqlitePool,
    charges: mpsc::Sender<ChargeJob>,
    in_flight: InFlightKeys,
}

async fn charge_writer(mut conn: SqliteConnection, mut queue: mpsc::Receiver<ChargeJob>) {
    let mut batch = Vec::with_capacity(MAX_CHARGE_BATCH);
    while let Some(job) = queue.recv().await {
        batch.push(job);
        while batch.len() < MAX_CHARGE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut stored = Vec::with_capacity(batch.len());
        let committed: Result<(), sqlx::Error> = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
            // Checked with the write lock held, right before the insert: a
            // charge whose caller gave up (the lock was held elsewhere, or
            // the process was frozen) never commits late.
            for job in &batch {
                stored.push(if Instant::now() > job.deadline {
                    None
                } else {
                    Some(insert_charge(&mut conn, &job.charge).await?)
                });
            }
            sqlx::query("COMMIT").execute(&mut conn).await?;
            Ok(())
        }
        .await;
        match committed {
            Ok(()) => {
                for (job, result) in batch.drain(..).zip(stored) {
                    let _ = job.reply.send(result.ok_or_else(|| {
                        sqlx::Error::Protocol("the call's deadline passed: nothing charged".into())
                    }));
                }
            }
            Err(error) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
                let message = error.to_string();
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(sqlx::Error::Protocol(format!(
                        "charge not recorded: {message}"
                    ))));
                }
            }
        }
    }
}

/// Inserts `charge` unless its key exists; returns the stored charge and
/// whether it is new.
async fn insert_charge(
    conn: &mut SqliteConnection,
    charge: &SandboxCharge,
) -> Result<(SandboxCharge, bool), sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO sandbox_charges (id, provider, idempotency_key, merchant_id, order_id, customer_id,
            amount, currency, payment_method, status, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (provider, idempotency_key) DO NOTHING",
    )
    .bind(&charge.id)
    .bind(&charge.provider)
    .bind(&charge.idempotency_key)
    .bind(&charge.merchant_id)
    .bind(&charge.order_id)
    .bind(&charge.customer_id)
    .bind(charge.amount)
    .bind(&charge.currency)
    .bind(&charge.payment_method)
    .bind(&charge.status)
    .bind(&charge.created_at)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let row =
        sqlx::query("SELECT * FROM sandbox_charges WHERE provider = ? AND idempotency_key = ?")
            .bind(&charge.provider)
            .bind(&charge.idempotency_key)
            .fetch_one(&mut *conn)
            .await?;
    Ok((decode(&row)?, inserted))
}

impl SandboxRecord {
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(RECORD_BUSY_TIMEOUT_MS));
        let pool = SqlitePoolOptions::new()
            .max_connections(RECORD_POOL_SIZE)
            .connect_with(options.clone())
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS sandbox_charges (
                id TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                merchant_id TEXT NOT NULL,
                order_id TEXT NOT NULL,
                customer_id TEXT NOT NULL,
                amount INTEGER NOT NULL,
                currency TEXT NOT NULL,
                payment_method TEXT NOT NULL,
                status TEXT NOT NULL,
                created_at TEXT NOT NULL,
                UNIQUE (provider, idempotency_key))",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS sandbox_charges_by_order ON sandbox_charges (provider, order_id)")
            .execute(&pool)
            .await?;
        // Pages walk charges newest first; without this each page sorts the
        // provider's whole history.
        sqlx::query("CREATE INDEX IF NOT EXISTS sandbox_charges_by_time ON sandbox_charges (provider, created_at, id)")
            .execute(&pool)
            .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS sandbox_refunds (
                id TEXT PRIMARY KEY,
                provider TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                charge_id TEXT NOT NULL,
                amount INTEGER NOT NULL,
                currency TEXT NOT NULL,
                created_at TEXT NOT NULL,
                UNIQUE (provider, idempotency_key))",
        )
        .execute(&pool)
        .await?;
        let writer = SqliteConnection::connect_with(&options).await?;
        let (charges, queue) = mpsc::channel(CHARGE_QUEUE_CAPACITY);
        tokio::spawn(charge_writer(writer, queue));
        Ok(SandboxRecord {
            pool,
            charges,
            in_flight: InFlightKeys::default(),
        })
    }

    /// Records `charge` unless one exists under its (provider, idempotency
    /// key); returns the stored charge and whether it is new. Answers only
    /// once the charge is durable.
    pub async fn charge_once(
        &self,
        charge: &SandboxCharge,
        deadline: Instant,
    ) -> Result<(SandboxCharge, bool), sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let job = ChargeJob {
            charge: charge.clone(),
            deadline,
            reply,
            _in_flight: InFlight::enter(&self.in_flight, &charge.provider, &charge.idempotency_key),
        };
        self.charges
            .send(job)
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        answer.await.map_err(|_| sqlx::Error::PoolClosed)?
    }

    /// Records a refund of `amount` against `charge_id` unless one exists
    /// under the key, and only while refunds stay within the charge: one
    /// statement, so concurrent refunds cannot overdraw it. Returns the
    /// refund id, or `None` if it would exceed the charge (or no charge).
    pub async fn refund_once(
        &self,
        provider: &str,
        idempotency_key: &str,
        charge_id: &str,
        amount: i64,
        currency: &str,
        created_at: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let id = format!("re_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(
            "INSERT INTO sandbox_refunds (id, provider, idempotency_key, charge_id, amount, currency, created_at)
             SELECT ?, ?, ?, c.id, ?, ?, ? FROM sandbox_charges c
             WHERE c.provider = ? AND c.id = ? AND c.currency = ?
               AND (SELECT COALESCE(SUM(r.amount), 0) FROM sandbox_refunds r WHERE r.charge_id = c.id) + ? <= c.amount
             ON CONFLICT (provider, idempotency_key) DO NOTHING",
        )
        .bind(&id)
        .bind(provider)
        .bind(idempotency_key)
        .bind(amount)
        .bind(currency)
        .bind(created_at)
        .bind(provider)
        .bind(charge_id)
        .bind(currency)
        .bind(amount)
        .execute(&self.pool)
        .await?;
        sqlx::query_scalar(
            "SELECT id FROM sandbox_refunds WHERE provider = ? AND idempotency_key = ?",
        )
        .bind(provider)
        .bind(idempotency_key)
        .fetch_optional(&self.pool)
        .await
    }

    /// Charges of `provider` created in `[from, to)` (RFC 3339 strings in
    /// the record's fixed UTC format sort as time).
    pub async fn charges_between(
        &self,
        provider: &str,
        from: &str,
        to: &str,
    ) -> Result<Vec<SandboxCharge>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM sandbox_charges WHERE provider = ? AND created_at >= ? AND created_at < ?
             ORDER BY created_at, id LIMIT ?",
        )
        .bind(provider)
        .bind(from)
        .bind(to)
        .bind(MAX_LISTED_CHARGES)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Whether a charge under this key is still being processed in this
    /// process: until it is, "not found" would not mean "not charged".
    pub fn in_flight(&self, provider: &str, idempotency_key: &str) -> bool {
        self.in_flight
            .contains_key(&(provider.to_string(), idempotency_key.to_string()))
    }

    pub async fn find(
        &self,
        provider: &str,
        idempotency_key: &str,
    ) -> Result<Option<SandboxCharge>, sqlx::Error> {
        let row =
            sqlx::query("SELECT * FROM sandbox_charges WHERE provider = ? AND idempotency_key = ?")
                .bind(provider)
                .bind(idempotency_key)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(decode).transpose()
    }

    /// The charge of `provider` with this id (the id the sandbox answered a
    /// charge with). Another sandbox's charge is not found, as another
    /// provider's would not be.
    pub async fn find_by_id(
        &self,
        provider: &str,
        id: &str,
    ) -> Result<Option<SandboxCharge>, sqlx::Error> {
        let row = sqlx::query("SELECT * FROM sandbox_charges WHERE provider = ? AND id = ?")
            .bind(provider)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// One page of `provider`'s charges, newest first (by creation time,
    /// then id), narrowed by `filter`. A cursor naming no charge of this
    /// provider (and merchant, when narrowed to one) gives an empty page
    /// rather than someone else's position.
    pub async fn page(
        &self,
        provider: &str,
        filter: &ChargeFilter,
    ) -> Result<Vec<SandboxCharge>, sqlx::Error> {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT * FROM sandbox_charges WHERE provider = ");
        query.push_bind(provider.to_string());
        if let Some(merchant) = &filter.merchant_id {
            query
                .push(" AND merchant_id = ")
                .push_bind(merchant.clone());
        }
        if let Some(order) = &filter.order_id {
            query.push(" AND order_id = ").push_bind(order.clone());
        }
        if let Some(after) = &filter.starting_after {
            query
                .push(" AND (created_at, id) < (SELECT created_at, id FROM sandbox_charges WHERE provider = ")
                .push_bind(provider.to_string())
                .push(" AND id = ")
                .push_bind(after.clone());
            if let Some(merchant) = &filter.merchant_id {
                query
                    .push(" AND merchant_id = ")
                    .push_bind(merchant.clone());
            }
            query.push(")");
        }
        query
            .push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .push_bind(i64::from(filter.limit.min(MAX_CHARGES_PER_PAGE + 1)));
        let rows: Vec<SqliteRow> = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(decode).collect()
    }
}

fn decode(row: &SqliteRow) -> Result<SandboxCharge, sqlx::Error> {
    Ok(SandboxCharge {
        id: row.try_get("id")?,
        provider: row.try_get("provider")?,
        idempotency_key: row.try_get("idempotency_key")?,
        merchant_id: row.try_get("merchant_id")?,
        order_id: row.try_get("order_id")?,
        customer_id: row.try_get("customer_id")?,
        amount: row.try_get("amount")?,
        currency: row.try_get("currency")?,
        payment_method: row.try_get("payment_method")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
    })
}
