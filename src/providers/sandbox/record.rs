//! The sandbox's own durable record of what it charged.
//!
//! It is deliberately a separate SQLite file, outside the engine's
//! transactions, committed before the sandbox answers: like a remote
//! provider's books, a `kill -9` of the engine can never roll a charge back.
//! Crash and concurrency tests count charges here and compare them with what
//! the engine recorded. Several engine processes may share one file.

use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use std::path::Path;
use std::time::Duration;

/// Connections to the record; writes serialize on SQLite's lock anyway.
const RECORD_POOL_SIZE: u32 = 4;
/// Another process may hold the write lock briefly; wait for it.
const RECORD_BUSY_TIMEOUT_MS: u64 = 30_000;
/// Most charges one listing returns.
pub const MAX_LISTED_CHARGES: i64 = 10_000;

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

/// Handle to the sandbox record file.
#[derive(Debug, Clone)]
pub struct SandboxRecord {
    pool: SqlitePool,
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
            .connect_with(options)
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
        Ok(SandboxRecord { pool })
    }

    /// Records `charge` unless one exists under its (provider, idempotency
    /// key); returns the stored charge and whether it is new.
    pub async fn charge_once(
        &self,
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
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        let stored = self
            .find(&charge.provider, &charge.idempotency_key)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        Ok((stored, inserted))
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

    /// Charges of `provider`, oldest first, optionally for one order.
    pub async fn list(
        &self,
        provider: &str,
        order_id: Option<&str>,
    ) -> Result<Vec<SandboxCharge>, sqlx::Error> {
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT * FROM sandbox_charges WHERE provider = ");
        query.push_bind(provider.to_string());
        if let Some(order) = order_id {
            query.push(" AND order_id = ").push_bind(order.to_string());
        }
        query
            .push(" ORDER BY created_at, id LIMIT ")
            .push_bind(MAX_LISTED_CHARGES);
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
