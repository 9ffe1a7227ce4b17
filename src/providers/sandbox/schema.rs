//! The record's schema: created when the file is new, brought up to date in
//! place when an older engine wrote it.
//!
//! The record is not one of the engine's databases and has no migration
//! history: its tables are created with `CREATE TABLE IF NOT EXISTS`, and
//! columns added since are added with `ALTER TABLE` when missing. Several
//! engine processes may open one file at once, so the check and the change
//! run in one `BEGIN IMMEDIATE` transaction: the second process waits, then
//! finds the columns there.

use sqlx::sqlite::SqlitePool;
use sqlx::{Row, SqliteConnection};

/// Columns `sandbox_charges` gained after its first version, with their
/// definitions. A record written before them reads as fee 0 and nothing
/// refunded, then [`BACKFILL_REFUNDS`] counts the refunds it already holds.
const ADDED_CHARGE_COLUMNS: &[(&str, &str)] = &[
    ("fee", "INTEGER NOT NULL DEFAULT 0"),
    ("amount_refunded", "INTEGER NOT NULL DEFAULT 0"),
];

/// Sets `amount_refunded` and `status` of every charge from its refunds,
/// for a record that kept refunds before charges tracked them.
const BACKFILL_REFUNDS: &[&str] = &[
    "UPDATE sandbox_charges SET amount_refunded =
        (SELECT COALESCE(SUM(r.amount), 0) FROM sandbox_refunds r WHERE r.charge_id = sandbox_charges.id)",
    "UPDATE sandbox_charges
        SET status = CASE WHEN amount_refunded >= amount THEN 'refunded' ELSE 'partially_refunded' END
        WHERE amount_refunded > 0",
];

const CREATE: &[&str] = &[
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
        fee INTEGER NOT NULL DEFAULT 0,
        amount_refunded INTEGER NOT NULL DEFAULT 0,
        UNIQUE (provider, idempotency_key))",
    "CREATE INDEX IF NOT EXISTS sandbox_charges_by_order ON sandbox_charges (provider, order_id)",
    // Pages walk charges by time (listings newest first, settlements
    // oldest first); without this each page sorts the provider's history.
    "CREATE INDEX IF NOT EXISTS sandbox_charges_by_time ON sandbox_charges (provider, created_at, id)",
    "CREATE TABLE IF NOT EXISTS sandbox_refunds (
        id TEXT PRIMARY KEY,
        provider TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        charge_id TEXT NOT NULL,
        amount INTEGER NOT NULL,
        currency TEXT NOT NULL,
        created_at TEXT NOT NULL,
        UNIQUE (provider, idempotency_key))",
];

/// Creates the record's tables, or brings older ones up to date.
pub(super) async fn create_or_migrate(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    match migrate(&mut conn).await {
        Ok(()) => {
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok(())
        }
        Err(error) => {
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            Err(error)
        }
    }
}

async fn migrate(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    for statement in CREATE {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    let present: Vec<String> = sqlx::query("SELECT name FROM pragma_table_info('sandbox_charges')")
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get("name"))
        .collect::<Result<_, _>>()?;
    let mut added_any = false;
    for (column, definition) in ADDED_CHARGE_COLUMNS {
        if present.iter().any(|name| name == column) {
            continue;
        }
        tracing::info!(column, "sandbox record: adding a column to sandbox_charges");
        sqlx::query(&format!(
            "ALTER TABLE sandbox_charges ADD COLUMN {column} {definition}"
        ))
        .execute(&mut *conn)
        .await?;
        added_any = true;
    }
    if added_any {
        for statement in BACKFILL_REFUNDS {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
    }
    Ok(())
}
