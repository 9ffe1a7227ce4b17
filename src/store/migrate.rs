//! Applies the embedded migrations, recording them in a table of our own.
//!
//! sqlx's own runner records migrations in `_sqlx_migrations`, which a host
//! application embedding the engine in its database uses too; two migration
//! histories in one table corrupt each other. The engine therefore keeps its
//! history in `payments_schema_migrations` (on PostgreSQL inside the engine's
//! own schema) and applies sqlx's embedded migration files itself.

use super::sql::{Arg, Conn};
use super::StoreError;
use crate::clock::now_micros;
use sqlx::migrate::{Migration, Migrator};
use sqlx::PgConnection;

/// The engine's migration history table.
pub const MIGRATIONS_TABLE: &str = "payments_schema_migrations";

/// The SQLite migrations, embedded in the binary at compile time.
pub static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
/// The PostgreSQL migrations, embedded in the binary at compile time.
pub static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// An arbitrary, fixed key for `pg_advisory_lock`: engines starting together
/// on one database migrate one at a time.
const PG_MIGRATION_LOCK_KEY: i64 = 0x7061_796d_656e_7473;

fn checksum_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn create_table_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at BIGINT NOT NULL)"
    )
}

/// Applies `migration` unless recorded; refuses one whose file changed.
async fn apply_one<C: Conn>(conn: &mut C, migration: &Migration) -> Result<(), StoreError> {
    let checksum = checksum_hex(&migration.checksum);
    let applied = conn
        .fetch_optional(
            &format!("SELECT checksum FROM {MIGRATIONS_TABLE} WHERE version = $1"),
            vec![Arg::Int(Some(migration.version))],
        )
        .await?;
    if let Some(row) = applied {
        use super::rows::RowExt;
        return if row.text("checksum")? == checksum {
            Ok(())
        } else {
            Err(StoreError::Migration(format!(
                "migration {} was changed after it was applied",
                migration.version
            )))
        };
    }
    conn.execute_script(&migration.sql).await?;
    conn.execute(
        &format!("INSERT INTO {MIGRATIONS_TABLE} (version, description, checksum, applied_at) VALUES ($1, $2, $3, $4)"),
        vec![
            Arg::Int(Some(migration.version)),
            Arg::Text(Some(migration.description.to_string())),
            Arg::Text(Some(checksum)),
            Arg::Int(Some(now_micros())),
        ],
    )
    .await?;
    tracing::info!(version = migration.version, description = %migration.description, "migration applied");
    Ok(())
}

/// Applies every migration of `migrator` not yet recorded, each in its own
/// transaction opened with `begin`.
async fn run<C: Conn>(conn: &mut C, migrator: &Migrator, begin: &str) -> Result<(), StoreError> {
    conn.execute(&create_table_sql(), vec![]).await?;
    for migration in migrator.iter() {
        conn.execute(begin, vec![]).await?;
        let result = apply_one(conn, migration).await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        conn.execute(end, vec![]).await?;
        result?;
    }
    Ok(())
}

/// SQLite: `BEGIN IMMEDIATE` takes the write lock first, so two processes
/// starting together apply each migration once.
pub async fn run_sqlite<C: Conn>(conn: &mut C) -> Result<(), StoreError> {
    run(conn, &SQLITE_MIGRATIONS, "BEGIN IMMEDIATE").await
}

/// PostgreSQL: the connection's `search_path` is the engine's schema; an
/// advisory lock serializes engines migrating the same database.
pub async fn run_postgres(conn: &mut PgConnection, schema: &str) -> Result<(), StoreError> {
    conn.execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""), vec![])
        .await
        .or_else(|error| match &error {
            // Two engines creating the schema at once: one wins, fine.
            StoreError::Database(sqlx::Error::Database(db))
                if db.code().as_deref() == Some("23505") =>
            {
                Ok(0)
            }
            _ => Err(error),
        })?;
    conn.execute(
        "SELECT pg_advisory_lock($1)",
        vec![Arg::Int(Some(PG_MIGRATION_LOCK_KEY))],
    )
    .await?;
    let result = run(conn, &POSTGRES_MIGRATIONS, "BEGIN").await;
    conn.execute(
        "SELECT pg_advisory_unlock($1)",
        vec![Arg::Int(Some(PG_MIGRATION_LOCK_KEY))],
    )
    .await?;
    result
}

/// Whether every migration of `migrator` is recorded as applied (readiness).
pub async fn all_applied<C: Conn>(conn: &mut C, migrator: &Migrator) -> Result<bool, StoreError> {
    use super::rows::RowExt;
    let row = conn
        .fetch_optional(
            &format!("SELECT COUNT(*) AS applied FROM {MIGRATIONS_TABLE}"),
            vec![],
        )
        .await?
        .ok_or_else(|| StoreError::Migration("no migration history".into()))?;
    Ok(row.int("applied")? as usize >= migrator.iter().count())
}
