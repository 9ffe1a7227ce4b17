//! The benchmark's correctness check (DESIGN §12: provider charges ==
//! succeeded payments) on the data directory a `payments serve` on SQLite
//! left behind, so that `cargo test` runs it too
//! (`tests/integration/bench_check.rs`) and not only `cargo bench`.
//!
//! The matching itself is `payments bench`'s (`src/cli/bench/check.rs`,
//! included here as it is); this file only reads its two inputs from the
//! SQLite files.

#[allow(dead_code)]
#[path = "../../src/cli/bench/check.rs"]
mod check;

pub use check::ChargeCheck;

use check::ByOrder;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use std::path::Path;
use std::time::Duration;

/// The store's `busy_timeout` (src/store/sqlite.rs): the server may be
/// writing while the check reads.
const BUSY_TIMEOUT_MS: u64 = 10_000;

/// (merchant, order) -> the third column of each row of `sql` (whose
/// first two columns name the merchant and the order).
async fn by_order(path: &Path, sql: &str) -> ByOrder {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let rows = sqlx::query(sql)
        .fetch_all(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql} on {}: {e}", path.display()));
    let _ = conn.close().await;
    let mut grouped = ByOrder::new();
    for row in rows {
        let (merchant, order): (String, String) = (row.get(0), row.get(1));
        check::add(&mut grouped, &merchant, &order, row.get(2));
    }
    grouped
}

/// Compares what the sandbox charged (`data_dir/sandbox.db`) with what the
/// engine stored (`data_dir/payments.db`) and with `client_succeeded`, the
/// succeeded answers the clients got ([`check::compare`]).
pub async fn check_charges(data_dir: &Path, client_succeeded: usize) -> ChargeCheck {
    let charged = by_order(
        &data_dir.join("sandbox.db"),
        "SELECT merchant_id, order_id, idempotency_key FROM sandbox_charges",
    )
    .await;
    let succeeded = by_order(
        &data_dir.join("payments.db"),
        "SELECT merchant_id, order_id, id FROM payments WHERE status = 'succeeded'",
    )
    .await;
    check::compare(&charged, &succeeded, Some(client_succeeded))
}
