//! Reconciliation's scratch space on SQLite.
//!
//! A reconciliation run stages every provider record of its window, pages
//! through comparisons of them with the engine's tables, and drops them at
//! the end (`store::sql::reconcile`). Those rows are scratch: a crash loses
//! nothing the next run does not read again. Staged in the database itself
//! they went through the payments' single writer and its fsyncs: tens of
//! thousands of inserts, then as many deletes, queued between payments,
//! and a run over a minute of traffic at full load held payments back for
//! 20–30 s (p99 above 2 s, measured; docs/benchmarks.md).
//!
//! So on SQLite the records live in a `TEMP` table of one dedicated
//! connection. Unqualified names look in `temp` first, so the shared SQL
//! runs unchanged on it and joins the staged rows with the engine's tables
//! in `main`. A write that touches only `temp` takes no lock on the
//! database file and never syncs: the writer does not see it. The
//! connection opens the database read-only, so nothing written through it
//! can reach the engine's data. The temporary database is a file (not
//! memory), so a wide window costs disk, not RSS.

use super::{open_connection, StoreError};
use rusqlite::OpenFlags;
use std::path::Path;

/// The staging table and its indexes, as migration 0005 had them in the
/// database (it is per connection now; 0012 drops the old one).
const STAGING_SCHEMA: &str = "
PRAGMA temp_store = FILE;
CREATE TEMP TABLE reconciliation_records (
    run_id          TEXT NOT NULL,
    provider        TEXT NOT NULL,
    reference       TEXT NOT NULL,
    kind            TEXT NOT NULL,
    payment_id      TEXT,
    merchant_id     TEXT,
    order_id        TEXT,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    fee             INTEGER NOT NULL,
    status          TEXT NOT NULL,
    amount_refunded INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX temp.reconciliation_records_by_run ON reconciliation_records (run_id, reference);
CREATE INDEX temp.reconciliation_records_by_payment ON reconciliation_records (run_id, payment_id);
CREATE INDEX temp.reconciliation_records_by_order ON reconciliation_records (run_id, merchant_id, order_id);
";

/// Opens the staging connection on the database at `path`.
pub(super) fn open(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = open_connection(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.execute_batch(STAGING_SCHEMA)
        .map_err(|e| StoreError::Sqlite(format!("cannot create the staging table: {e}")))?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use crate::domain::Timestamp;
    use crate::store::{Check, FindingQuery, SqliteStore, StagedRecord, Store};

    /// Records staged in one test run: enough pages that staging them
    /// through the writer would be many commits.
    const RECORDS: usize = 1_200;

    fn record(i: usize, at: Timestamp) -> StagedRecord {
        StagedRecord {
            provider: "sandbox_a".into(),
            reference: format!("ch_{i:06}"),
            kind: "charge".into(),
            payment_id: None,
            merchant_id: Some("default".into()),
            // Two charges per order: each pair is a duplicate charge.
            order_id: Some(format!("ord_{}", i / 2)),
            amount: 1999,
            currency: "usd".into(),
            fee: 0,
            status: "succeeded".into(),
            amount_refunded: 0,
            created_at: at,
        }
    }

    fn query(run_id: &str, check: Check, at: Timestamp, after: Option<String>) -> FindingQuery {
        FindingQuery {
            run_id: run_id.into(),
            check,
            from: at.plus_millis(-1_000),
            to: at.plus_millis(1_000),
            providers: vec!["sandbox_a".into()],
            pending_before: at,
            processing_before: at,
            after,
            limit: 500,
        }
    }

    async fn count(store: &SqliteStore, run_id: &str, check: Check, at: Timestamp) -> usize {
        let mut after = None;
        let mut seen = 0;
        loop {
            let page = store
                .findings(&query(run_id, check, at, after))
                .await
                .expect("findings");
            seen += page.len();
            match page.last() {
                Some(last) => after = Some(last.subject.clone()),
                None => return seen,
            }
        }
    }

    /// The run's checks see its staged records, and staging them commits
    /// nothing to the database: another connection sees no change at all.
    #[tokio::test]
    async fn staged_records_reach_the_checks_without_touching_the_database() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("payments.db");
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .expect("open");
        let observer = rusqlite::Connection::open(&path).expect("observer");
        let version = || -> i64 {
            observer
                .query_row("PRAGMA data_version", [], |row| row.get(0))
                .expect("data_version")
        };
        let before = version();

        let at = Timestamp::from_micros(1_800_000_000_000_000).expect("time");
        let records: Vec<_> = (0..RECORDS).map(|i| record(i, at)).collect();
        for page in records.chunks(500) {
            store
                .stage_records("recon_test", page.to_vec())
                .await
                .expect("stage");
        }
        assert_eq!(version(), before, "staging committed to the database");
        let missing = count(&store, "recon_test", Check::MissingInternally, at).await;
        let duplicates = count(&store, "recon_test", Check::DuplicateCharge, at).await;
        // Every record is a duplicate of its pair, so none counts as a
        // charge of no order; every pair is one duplicate finding.
        assert_eq!((missing, duplicates), (0, RECORDS / 2));
        assert_eq!(
            count(&store, "recon_other", Check::DuplicateCharge, at).await,
            0,
            "another run sees none of them"
        );

        store.unstage_records("recon_test").await.expect("unstage");
        assert_eq!(version(), before, "unstaging committed to the database");
        assert_eq!(
            count(&store, "recon_test", Check::DuplicateCharge, at).await,
            0
        );
    }
}
