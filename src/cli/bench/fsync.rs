//! The fsync floor: how many durable single-row transactions this disk
//! takes per second, measured beside each scenario (DESIGN §12). A store
//! that committed every write on its own could not beat it; group commit
//! exists to.

use rusqlite::Connection;
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens a fresh SQLite file in `dir` as the store opens its own (WAL,
/// `synchronous=FULL`) and inserts one small row per transaction, one
/// after another, for `duration`. Returns the transactions per second.
pub fn floor(dir: &Path, duration: Duration) -> Result<f64, String> {
    measure(dir, duration).map_err(|e| format!("fsync floor: {e}"))
}

fn measure(dir: &Path, duration: Duration) -> rusqlite::Result<f64> {
    let conn = Connection::open(dir.join("fsync-floor.db"))?;
    conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
        row.get::<_, String>(0)
    })?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE floor (id INTEGER PRIMARY KEY, k TEXT NOT NULL, amount INTEGER NOT NULL);",
    )?;
    let mut insert = conn.prepare("INSERT INTO floor (k, amount) VALUES (?1, 1999)")?;
    let started = Instant::now();
    let mut rows: u64 = 0;
    while started.elapsed() < duration {
        // Autocommit: each insert is its own transaction, durable on return.
        insert.execute([format!("key_{rows}")])?;
        rows += 1;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}
