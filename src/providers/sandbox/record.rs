//! The sandbox's own durable record of what it charged.
//!
//! It is deliberately a separate SQLite file, outside the engine's
//! transactions, committed before the sandbox answers: like a remote
//! provider's books, a `kill -9` of the engine can never roll a charge back.
//! Crash and concurrency tests count charges here and compare them with what
//! the engine recorded. Several engine processes may share one file.

use super::record_writer::{
    spawn_writer, ChargeJob, FastReads, InFlight, InFlightKeys, RECORD_BUSY_TIMEOUT_MS,
};
use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Connections to the record; writes serialize on SQLite's lock anyway.
const RECORD_POOL_SIZE: u32 = 4;
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
    /// `succeeded`, `partially_refunded` or `refunded` (kept by refunds;
    /// an operator hook may set it to any of them).
    pub status: String,
    /// Minor units refunded so far.
    pub amount_refunded: i64,
    /// The provider's fee, from its configured fees when charged.
    pub fee: i64,
    pub created_at: String,
}

/// Handle to the sandbox record file.
///
/// Charges are written by one task that batches concurrent ones into a
/// single transaction, like a provider's own ledger would: one fsync for
/// many charges, no connections fighting over SQLite's write lock, and
/// still every charge durable before the sandbox answers.
#[derive(Clone)]
pub struct SandboxRecord {
    pub(super) pool: SqlitePool,
    charges: mpsc::Sender<ChargeJob>,
    fast: Arc<FastReads>,
    in_flight: InFlightKeys,
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
        super::schema::create_or_migrate(&pool).await?;
        let charges = spawn_writer(path)?;
        Ok(SandboxRecord {
            pool,
            charges,
            fast: Arc::new(FastReads::new(path)),
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
        answer
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?
            .map_err(sqlx::Error::Protocol)
    }

    /// Records a refund of `amount` against `charge_id` unless one exists
    /// under the key, and only while refunds stay within the charge; in the
    /// same transaction, the charge's `amount_refunded` grows by `amount`
    /// and its status becomes `partially_refunded` or `refunded`. The
    /// insert's condition is checked by the insert itself, so concurrent
    /// refunds cannot overdraw the charge. Returns the refund id, or `None`
    /// if it would exceed the charge (or there is no such charge).
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
        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO sandbox_refunds (id, provider, idempotency_key, charge_id, amount, currency, created_at)
             SELECT ?, ?, ?, c.id, ?, ?, ? FROM sandbox_charges c
             WHERE c.provider = ? AND c.id = ? AND c.currency = ? AND c.amount_refunded + ? <= c.amount
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
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            // SET reads the row as it was: both sides see the old total.
            sqlx::query(
                "UPDATE sandbox_charges SET amount_refunded = amount_refunded + ?,
                    status = CASE WHEN amount_refunded + ? >= amount THEN 'refunded' ELSE 'partially_refunded' END
                 WHERE provider = ? AND id = ?",
            )
            .bind(amount)
            .bind(amount)
            .bind(provider)
            .bind(charge_id)
            .execute(&mut *tx)
            .await?;
        }
        let refund = sqlx::query_scalar(
            "SELECT id FROM sandbox_refunds WHERE provider = ? AND idempotency_key = ?",
        )
        .bind(provider)
        .bind(idempotency_key)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(refund)
    }

    /// Whether a charge under this key is still being processed in this
    /// process: until it is, "not found" would not mean "not charged".
    pub fn in_flight(&self, provider: &str, idempotency_key: &str) -> bool {
        self.in_flight
            .contains_key(&(provider.to_string(), idempotency_key.to_string()))
    }

    /// The charge `provider` made under `idempotency_key`, if any. Read on
    /// the caller's thread: it is on every charge's path.
    pub async fn find(
        &self,
        provider: &str,
        idempotency_key: &str,
    ) -> Result<Option<SandboxCharge>, sqlx::Error> {
        self.fast
            .find(provider, idempotency_key)
            .map_err(sqlx::Error::Protocol)
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

pub(super) fn decode(row: &SqliteRow) -> Result<SandboxCharge, sqlx::Error> {
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
        amount_refunded: row.try_get("amount_refunded")?,
        fee: row.try_get("fee")?,
        created_at: row.try_get("created_at")?,
    })
}
