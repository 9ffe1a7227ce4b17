//! The benchmark's correctness check (DESIGN §12: provider charges ==
//! succeeded payments), as a function of the data directory a `payments
//! serve` on SQLite left behind, so that `cargo test` runs it too
//! (`tests/integration/bench_check.rs`) and not only `cargo bench`.
//!
//! Equal totals are not enough: one order charged twice and another never
//! charged add up to the same count. So the check matches charges to
//! payments order by order, and also compares the totals with what the
//! clients were told.

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// The store's `busy_timeout` (src/store/sqlite.rs): the server may be
/// writing while the check reads.
const BUSY_TIMEOUT_MS: u64 = 10_000;
/// Problems listed in full; the rest are counted.
const PROBLEMS_SHOWN: usize = 10;

/// What the check found.
#[derive(Debug, Default)]
pub struct ChargeCheck {
    /// Charges in the sandbox's own record (`sandbox.db`).
    pub charges: usize,
    /// Payments the engine stored as `succeeded` (`payments.db`).
    pub stored_succeeded: usize,
    /// `201 succeeded` answers the clients received.
    pub client_succeeded: usize,
    /// Everything that does not match, one line each.
    pub problems: Vec<String>,
}

impl ChargeCheck {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for ChargeCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sandbox charges {}, succeeded payments stored {}, succeeded responses {}: {}",
            self.charges,
            self.stored_succeeded,
            self.client_succeeded,
            if self.is_consistent() {
                "OK"
            } else {
                "MISMATCH"
            }
        )?;
        for problem in self.problems.iter().take(PROBLEMS_SHOWN) {
            write!(f, "\n  {problem}")?;
        }
        if self.problems.len() > PROBLEMS_SHOWN {
            write!(
                f,
                "\n  ... and {} more",
                self.problems.len() - PROBLEMS_SHOWN
            )?;
        }
        Ok(())
    }
}

/// (merchant, order) -> the rows of `sql` (first two columns) that name it,
/// the third column of each.
async fn by_order(path: &Path, sql: &str) -> BTreeMap<(String, String), Vec<String>> {
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
    let mut grouped: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for row in rows {
        grouped
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push(row.get(2));
    }
    grouped
}

/// Compares what the sandbox charged (`data_dir/sandbox.db`) with what the
/// engine stored (`data_dir/payments.db`) and with `client_succeeded`, the
/// succeeded answers the clients got. Every order with a succeeded payment
/// must have exactly one charge, made under that payment's key, and no
/// other order any; the three totals must agree. Call it once every
/// response is in: the sandbox commits a charge before it answers.
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
    let mut check = ChargeCheck {
        charges: charged.values().map(Vec::len).sum(),
        stored_succeeded: succeeded.values().map(Vec::len).sum(),
        client_succeeded,
        problems: Vec::new(),
    };
    for ((merchant, order), payments) in &succeeded {
        let keys = charged
            .get(&(merchant.clone(), order.clone()))
            .map_or(&[][..], Vec::as_slice);
        let of = format!("order {order} of {merchant}");
        if payments.len() > 1 {
            check
                .problems
                .push(format!("{of}: {} succeeded payments", payments.len()));
        }
        match keys {
            [] => check.problems.push(format!(
                "{of}: succeeded ({}) but never charged",
                payments[0]
            )),
            // The provider key is `{payment_id}-{attempt}` (DESIGN §4).
            [key] if !payments.iter().any(|p| key.starts_with(&format!("{p}-"))) => check
                .problems
                .push(format!("{of}: charged under {key}, not by {payments:?}")),
            [_] => {}
            keys => check
                .problems
                .push(format!("{of}: charged {} times ({keys:?})", keys.len())),
        }
    }
    for ((merchant, order), keys) in &charged {
        if !succeeded.contains_key(&(merchant.clone(), order.clone())) {
            check.problems.push(format!(
                "order {order} of {merchant}: charged ({keys:?}) but no payment succeeded"
            ));
        }
    }
    if check.charges != client_succeeded || check.stored_succeeded != client_succeeded {
        check.problems.push(format!(
            "totals differ: {} charges, {} succeeded stored, {client_succeeded} succeeded answered",
            check.charges, check.stored_succeeded
        ));
    }
    check
}
