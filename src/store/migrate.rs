//! Applies the embedded migrations, recording them in a table of our own.
//!
//! sqlx's own runner records migrations in `_sqlx_migrations`, which a host
//! application embedding the engine in its database uses too; two migration
//! histories in one table corrupt each other. The engine therefore keeps its
//! history in `payments_schema_migrations` and applies sqlx's embedded
//! migration files itself.

use super::StoreError;
use sqlx::migrate::Migrator;
use sqlx::{Connection, SqliteConnection};

/// The engine's migration history table.
pub const MIGRATIONS_TABLE: &str = "payments_schema_migrations";

/// The SQLite migrations, embedded in the binary at compile time.
pub static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

fn checksum_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Applies every migration not yet recorded, each in its own transaction.
/// `BEGIN IMMEDIATE` takes SQLite's write lock first, so two processes
/// starting together apply each migration once.
pub async fn run_sqlite(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query(&format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version INTEGER PRIMARY KEY,
            description TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at INTEGER NOT NULL)"
    ))
    .execute(&mut *conn)
    .await?;
    for migration in SQLITE_MIGRATIONS.iter() {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = apply_one_sqlite(conn, migration).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        sqlx::query(end).execute(&mut *conn).await?;
        result?;
    }
    Ok(())
}

async fn apply_one_sqlite(
    conn: &mut SqliteConnection,
    migration: &sqlx::migrate::Migration,
) -> Result<(), StoreError> {
    let checksum = checksum_hex(&migration.checksum);
    let applied: Option<String> = sqlx::query_scalar(&format!(
        "SELECT checksum FROM {MIGRATIONS_TABLE} WHERE version = ?"
    ))
    .bind(migration.version)
    .fetch_optional(&mut *conn)
    .await?;
    match applied {
        Some(found) if found == checksum => Ok(()),
        Some(_) => Err(StoreError::Migration(format!(
            "migration {} was changed after it was applied",
            migration.version
        ))),
        None => {
            sqlx::raw_sql(&migration.sql).execute(&mut *conn).await?;
            sqlx::query(&format!(
                "INSERT INTO {MIGRATIONS_TABLE} (version, description, checksum, applied_at) VALUES (?, ?, ?, ?)"
            ))
            .bind(migration.version)
            .bind(migration.description.as_ref())
            .bind(checksum)
            .bind(crate::clock::now_micros())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    }
}

/// Whether every embedded migration is recorded as applied (readiness).
pub async fn all_applied_sqlite(conn: &mut SqliteConnection) -> Result<bool, StoreError> {
    let applied: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {MIGRATIONS_TABLE}"))
        .fetch_one(&mut *conn)
        .await?;
    let _ = conn.ping().await;
    Ok(applied as usize >= SQLITE_MIGRATIONS.iter().count())
}
