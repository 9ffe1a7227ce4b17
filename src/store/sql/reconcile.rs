//! Reconciliation's statements (DESIGN §9): staging a run's provider
//! records, the checks as queries a page at a time, recording findings
//! once, and reading runs and discrepancies back.
//!
//! Every check is a keyset-paged query (ordered by its subject), so a run
//! over a window of any size holds one page in memory at a time.

use super::{int, opt_int, opt_text, placeholders, text, Arg, Conn};
use crate::domain::{
    Category, Discrepancy, DiscrepancyStatus, MerchantId, PaymentId, RunReport, Timestamp,
};
use crate::store::rows::RowExt;
use crate::store::{
    Check, DiscrepancyFilter, Finding, FindingQuery, MatchedRecord, StagedRecord, StoreError,
};
use std::fmt::Write;

/// Bound values per staged record in the multi-row insert.
const RECORD_COLUMNS: usize = 13;
/// The engine statuses of a payment that captured money.
const CAPTURED: &str = "('succeeded', 'partially_refunded', 'refunded')";

/// Stages one page of a provider's records for `run_id`, naming the
/// payment each belongs to where its reference says (the rest were named
/// by their idempotency key already, or are not the engine's).
pub(crate) async fn stage<C: Conn>(
    conn: &mut C,
    run_id: &str,
    records: &[StagedRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO reconciliation_records (run_id, provider, reference, kind, payment_id, merchant_id,
            order_id, amount, currency, fee, status, amount_refunded, created_at) VALUES ",
    );
    let mut args = Vec::with_capacity(records.len() * RECORD_COLUMNS);
    for (i, r) in records.iter().enumerate() {
        let _ = write!(
            sql,
            "{}({})",
            if i == 0 { "" } else { ", " },
            placeholders(i * RECORD_COLUMNS + 1, RECORD_COLUMNS)
        );
        args.extend([
            text(run_id),
            text(&r.provider),
            text(&r.reference),
            text(&r.kind),
            Arg::Text(r.payment_id.map(|id| id.to_string())),
            opt_text(&r.merchant_id),
            opt_text(&r.order_id),
            int(r.amount),
            text(&r.currency),
            int(r.fee),
            text(&r.status),
            int(r.amount_refunded),
            int(r.created_at.as_micros()),
        ]);
    }
    conn.execute(&sql, args).await?;
    conn.execute(
        "UPDATE reconciliation_records SET payment_id =
            (SELECT p.id FROM payments p WHERE p.provider_payment_id = reconciliation_records.reference
             AND p.provider = reconciliation_records.provider LIMIT 1)
         WHERE run_id = $1 AND payment_id IS NULL",
        vec![text(run_id)],
    )
    .await?;
    Ok(())
}

/// Drops a run's staged records (they served their run).
pub(crate) async fn unstage<C: Conn>(conn: &mut C, run_id: &str) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM reconciliation_records WHERE run_id = $1",
        vec![text(run_id)],
    )
    .await
}

/// The engine's payments created in the window.
pub(crate) async fn payments_in_window<C: Conn>(
    conn: &mut C,
    from: Timestamp,
    to: Timestamp,
) -> Result<u64, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM payments WHERE created_at >= $1 AND created_at < $2",
            vec![int(from.as_micros()), int(to.as_micros())],
        )
        .await?;
    Ok(row.map_or(Ok(0), |row| row.int("n"))? as u64)
}

/// One page of a check's findings, after `query.after` (by subject).
pub(crate) async fn findings<C: Conn>(
    conn: &mut C,
    query: &FindingQuery,
) -> Result<Vec<Finding>, StoreError> {
    let (sql, mut args) = check_statement(query);
    args.push(text(query.after.clone().unwrap_or_default()));
    args.push(int(i64::from(query.limit)));
    let n = args.len();
    let sql = format!(
        "SELECT * FROM ({sql}) f WHERE subject > ${} ORDER BY subject LIMIT ${n}",
        n - 1
    );
    let rows = conn.fetch_all(&sql, args).await?;
    rows.iter().map(|row| finding(row, query.check)).collect()
}

/// The query of one check: rows of (subject, merchant_id, payment_id,
/// provider, reference, expected, actual).
fn check_statement(q: &FindingQuery) -> (String, Vec<Arg>) {
    let window = vec![int(q.from.as_micros()), int(q.to.as_micros())];
    let select = "SELECT p.id AS subject, p.merchant_id, p.id AS payment_id, p.provider,
        p.provider_payment_id AS reference";
    match q.check {
        Check::MissingInternally => (
            "SELECT r.provider || ':' || r.reference AS subject, r.merchant_id, NULL AS payment_id,
                r.provider, r.reference, NULL AS expected,
                r.kind || ' of ' || r.amount || ' ' || r.currency AS actual
             FROM reconciliation_records r
             WHERE r.run_id = $3 AND r.kind = 'charge' AND r.created_at >= $1 AND r.created_at < $2
               AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = r.payment_id)
               -- A second charge of an order is a duplicate charge (its own,
               -- more telling finding), not a charge of no order.
               AND NOT EXISTS (SELECT 1 FROM reconciliation_records d
                               WHERE d.run_id = r.run_id AND d.kind = 'charge'
                                 AND d.merchant_id = r.merchant_id AND d.order_id = r.order_id
                                 AND d.reference <> r.reference)"
                .to_string(),
            [window, vec![text(&q.run_id)]].concat(),
        ),
        Check::MissingAtProvider => {
            let providers = q.providers.len();
            (
                format!(
                    "{select}, 'a charge of ' || p.amount || ' ' || p.currency AS expected,
                        NULL AS actual
                     FROM payments p
                     WHERE p.created_at >= $1 AND p.created_at < $2 AND p.status IN {CAPTURED}
                       AND p.provider IN ({})
                       AND NOT EXISTS (SELECT 1 FROM reconciliation_records r
                                       WHERE r.run_id = $3 AND r.payment_id = p.id AND r.kind = 'charge')",
                    placeholders(4, providers.max(1))
                ),
                [
                    window,
                    vec![text(&q.run_id)],
                    if providers == 0 {
                        vec![text("")]
                    } else {
                        q.providers.iter().map(text).collect()
                    },
                ]
                .concat(),
            )
        }
        Check::DuplicateCharge => (
            // Across providers: a failover that charged twice is the
            // duplicate that matters most.
            "SELECT COALESCE(r.merchant_id, '') || ':' || r.order_id AS subject,
                MIN(r.merchant_id) AS merchant_id, MIN(r.payment_id) AS payment_id,
                MIN(r.provider) AS provider, MAX(r.reference) AS reference,
                'one charge' AS expected, COUNT(*) || ' charges' AS actual
             FROM reconciliation_records r
             WHERE r.run_id = $3 AND r.kind = 'charge' AND r.order_id IS NOT NULL
               AND r.created_at >= $1 AND r.created_at < $2
             GROUP BY r.merchant_id, r.order_id HAVING COUNT(*) > 1"
                .to_string(),
            [window, vec![text(&q.run_id)]].concat(),
        ),
        Check::LedgerMissing => (
            format!(
                "{select}, 'a payment posting' AS expected, 'none' AS actual FROM payments p
                 WHERE p.created_at >= $1 AND p.created_at < $2 AND p.status IN {CAPTURED}
                   AND NOT EXISTS (SELECT 1 FROM ledger_transactions t
                                   WHERE t.payment_id = p.id AND t.kind = 'payment')
                 UNION ALL
                 SELECT r.id AS subject, r.merchant_id, r.payment_id, r.provider,
                    r.provider_refund_id AS reference, 'a refund reversal' AS expected, 'none' AS actual
                 FROM refunds r
                 WHERE r.created_at >= $1 AND r.created_at < $2 AND r.status = 'succeeded'
                   AND NOT EXISTS (SELECT 1 FROM ledger_transactions t WHERE t.refund_id = r.id)"
            ),
            window,
        ),
        Check::FailedButPosted => (
            format!(
                "{select}, 'no posting' AS expected, 'a payment posting' AS actual FROM payments p
                 WHERE p.created_at >= $1 AND p.created_at < $2 AND p.status = 'failed'
                   AND EXISTS (SELECT 1 FROM ledger_transactions t
                               WHERE t.payment_id = p.id AND t.kind = 'payment')"
            ),
            window,
        ),
        Check::Unbalanced => (
            "SELECT t.id || ':' || e.currency AS subject, MIN(t.merchant_id) AS merchant_id,
                MIN(t.payment_id) AS payment_id, NULL AS provider, NULL AS reference,
                'debits = credits' AS expected,
                SUM(CASE WHEN e.direction = 'debit' THEN e.amount ELSE 0 END) || ' debits, '
                    || SUM(CASE WHEN e.direction = 'credit' THEN e.amount ELSE 0 END) || ' credits' AS actual
             FROM ledger_transactions t JOIN ledger_entries e ON e.transaction_id = t.id
             WHERE t.created_at >= $1 AND t.created_at < $2
             GROUP BY t.id, e.currency
             HAVING SUM(CASE WHEN e.direction = 'debit' THEN e.amount ELSE -e.amount END) <> 0"
                .to_string(),
            window,
        ),
        Check::StuckPending => (
            format!(
                "{select}, 'resolved' AS expected, 'pending' AS actual FROM payments p
                 WHERE p.created_at >= $1 AND p.created_at < $2 AND p.status = 'pending'
                   AND p.updated_at < $3"
            ),
            [window, vec![int(q.pending_before.as_micros())]].concat(),
        ),
        Check::StuckProcessing => (
            format!(
                "{select}, 'resolved' AS expected, 'processing' AS actual FROM payments p
                 WHERE p.created_at >= $1 AND p.created_at < $2 AND p.status = 'processing'
                   AND p.updated_at < $3"
            ),
            [window, vec![int(q.processing_before.as_micros())]].concat(),
        ),
    }
}

fn finding(row: &impl RowExt, check: Check) -> Result<Finding, StoreError> {
    Ok(Finding {
        category: check.category(),
        subject: row.text("subject")?,
        merchant_id: row.opt_text("merchant_id")?.map(MerchantId::new),
        payment_id: row
            .opt_text("payment_id")?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt("payment id".into()))
            })
            .transpose()?,
        provider: row.opt_text("provider")?,
        provider_reference: row.opt_text("reference")?,
        expected: row.opt_text("expected")?,
        actual: row.opt_text("actual")?,
    })
}

/// One page of the run's records that name a payment, with what the
/// engine holds for it, after `after` (by reference).
pub(crate) async fn matched<C: Conn>(
    conn: &mut C,
    run_id: &str,
    after: &str,
    limit: u32,
) -> Result<Vec<MatchedRecord>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT r.*, p.merchant_id AS payment_merchant, p.status AS payment_status,
                p.amount AS payment_amount, p.currency AS payment_currency,
                p.amount_refunded AS payment_refunded,
                -- PostgreSQL sums BIGINT as NUMERIC: cast back (a no-op on SQLite).
                CAST((SELECT COALESCE(SUM(e.amount), 0) FROM ledger_transactions t
                 JOIN ledger_entries e ON e.transaction_id = t.id
                 WHERE t.payment_id = p.id AND t.kind = 'payment'
                   AND e.account = 'provider_fees:' || p.provider) AS BIGINT) AS booked_fee
             FROM reconciliation_records r JOIN payments p ON p.id = r.payment_id
             WHERE r.run_id = $1 AND r.kind = 'charge' AND r.reference > $2
             ORDER BY r.reference LIMIT $3",
            vec![text(run_id), text(after), int(i64::from(limit))],
        )
        .await?;
    rows.iter().map(matched_record).collect()
}

fn matched_record(row: &impl RowExt) -> Result<MatchedRecord, StoreError> {
    Ok(MatchedRecord {
        record: staged(row)?,
        merchant_id: MerchantId::new(row.text("payment_merchant")?),
        status: row
            .text("payment_status")?
            .parse()
            .map_err(|_| StoreError::Corrupt("payment status".into()))?,
        amount: row.int("payment_amount")?,
        currency: row.text("payment_currency")?,
        amount_refunded: row.int("payment_refunded")?,
        booked_fee: row.int("booked_fee")?,
    })
}

fn staged(row: &impl RowExt) -> Result<StagedRecord, StoreError> {
    Ok(StagedRecord {
        provider: row.text("provider")?,
        reference: row.text("reference")?,
        kind: row.text("kind")?,
        payment_id: row
            .opt_text("payment_id")?
            .map(|id| {
                id.parse()
                    .map_err(|_| StoreError::Corrupt("payment id".into()))
            })
            .transpose()?,
        merchant_id: row.opt_text("merchant_id")?,
        order_id: row.opt_text("order_id")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?,
        fee: row.int("fee")?,
        status: row.text("status")?,
        amount_refunded: row.int("amount_refunded")?,
        created_at: Timestamp::from_micros(row.int("created_at")?)
            .ok_or_else(|| StoreError::Corrupt("record time".into()))?,
    })
}

/// Records `finding` for `run_id` unless the same finding (category and
/// subject) is known already; true if it is new.
pub(crate) async fn record<C: Conn>(
    conn: &mut C,
    id: &str,
    run_id: &str,
    f: &Finding,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let inserted = conn
        .execute(
            "INSERT INTO discrepancies (id, run_id, category, severity, subject, merchant_id, payment_id,
                provider, provider_reference, expected, actual, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'open', $12)
             ON CONFLICT (category, subject) DO NOTHING",
            vec![
                text(id),
                text(run_id),
                text(f.category.as_str()),
                text(f.category.severity().as_str()),
                text(&f.subject),
                Arg::Text(f.merchant_id.as_ref().map(|m| m.to_string())),
                Arg::Text(f.payment_id.map(|id| id.to_string())),
                opt_text(&f.provider),
                opt_text(&f.provider_reference),
                opt_text(&f.expected),
                opt_text(&f.actual),
                int(now.as_micros()),
            ],
        )
        .await?;
    if inserted == 1 {
        super::outbox::append_discrepancy(conn, id, run_id, f, now).await?;
    }
    Ok(inserted == 1)
}

/// Stores a finished run's report.
pub(crate) async fn save_run<C: Conn>(conn: &mut C, r: &RunReport) -> Result<(), StoreError> {
    let by_category = serde_json::to_string(&r.by_category).unwrap_or_else(|_| "{}".into());
    conn.execute(
        "INSERT INTO reconciliation_runs (id, trigger, window_from, window_to, checked, matched, mismatched,
            by_category, duration_ms, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        vec![
            text(&r.id),
            text(&r.trigger),
            int(r.from.as_micros()),
            int(r.to.as_micros()),
            int(i64::try_from(r.checked).unwrap_or(i64::MAX)),
            int(i64::try_from(r.matched).unwrap_or(i64::MAX)),
            int(i64::try_from(r.mismatched).unwrap_or(i64::MAX)),
            text(by_category),
            int(i64::try_from(r.duration_ms).unwrap_or(i64::MAX)),
            int(r.created_at.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

/// Runs, newest first, after `starting_after`; or the one named `id`.
pub(crate) async fn runs<C: Conn>(
    conn: &mut C,
    id: Option<&str>,
    starting_after: Option<&str>,
    limit: u32,
) -> Result<Vec<RunReport>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT * FROM reconciliation_runs WHERE ($1 = '' OR id = $1) AND ($2 = '' OR id < $2)
             ORDER BY id DESC LIMIT $3",
            vec![
                text(id.unwrap_or_default()),
                text(starting_after.unwrap_or_default()),
                int(i64::from(limit)),
            ],
        )
        .await?;
    rows.iter().map(run).collect()
}

fn run(row: &impl RowExt) -> Result<RunReport, StoreError> {
    let time = |column: &str| -> Result<Timestamp, StoreError> {
        Timestamp::from_micros(row.int(column)?).ok_or_else(|| StoreError::Corrupt(column.into()))
    };
    let count = |column: &str| -> Result<u64, StoreError> { Ok(row.int(column)?.max(0) as u64) };
    Ok(RunReport {
        id: row.text("id")?,
        object: "reconciliation_run",
        from: time("window_from")?,
        to: time("window_to")?,
        checked: count("checked")?,
        matched: count("matched")?,
        mismatched: count("mismatched")?,
        by_category: serde_json::from_str(&row.text("by_category")?)
            .map_err(|_| StoreError::Corrupt("by_category".into()))?,
        discrepancies: Vec::new(),
        duration_ms: count("duration_ms")?,
        trigger: row.text("trigger")?,
        created_at: time("created_at")?,
    })
}

/// Discrepancies, newest first, narrowed by `filter`.
pub(crate) async fn discrepancies<C: Conn>(
    conn: &mut C,
    filter: &DiscrepancyFilter,
) -> Result<Vec<Discrepancy>, StoreError> {
    let mut sql = String::from("SELECT * FROM discrepancies WHERE 1 = 1");
    let mut args = Vec::new();
    let mut push = |clause: &str, arg: Arg| {
        args.push(arg);
        let _ = write!(sql, " AND {clause} ${}", args.len());
    };
    if let Some(id) = &filter.id {
        push("id =", text(id));
    }
    if let Some(merchant) = &filter.merchant_id {
        push("merchant_id =", text(merchant.as_str()));
    }
    if let Some(status) = filter.status {
        push("status =", text(status.as_str()));
    }
    if let Some(category) = filter.category {
        push("category =", text(category.as_str()));
    }
    if let Some(payment) = filter.payment_id {
        push("payment_id =", text(payment.to_string()));
    }
    if let Some(run) = &filter.run_id {
        push("run_id =", text(run));
    }
    if let Some(after) = &filter.starting_after {
        push("id <", text(after));
    }
    args.push(int(i64::from(filter.limit)));
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", args.len());
    let rows = conn.fetch_all(&sql, args).await?;
    rows.iter().map(discrepancy).collect()
}

fn discrepancy(row: &impl RowExt) -> Result<Discrepancy, StoreError> {
    let category: Category = row
        .text("category")?
        .parse()
        .map_err(|_| StoreError::Corrupt("category".into()))?;
    let time = |micros: i64| {
        Timestamp::from_micros(micros).ok_or_else(|| StoreError::Corrupt("time".into()))
    };
    Ok(Discrepancy {
        id: row.text("id")?,
        object: "discrepancy",
        run_id: row.text("run_id")?,
        category,
        severity: row
            .text("severity")?
            .parse()
            .map_err(|_| StoreError::Corrupt("severity".into()))?,
        merchant_id: row.opt_text("merchant_id")?.map(MerchantId::new),
        payment_id: row
            .opt_text("payment_id")?
            .map(|id| {
                id.parse::<PaymentId>()
                    .map_err(|_| StoreError::Corrupt("payment id".into()))
            })
            .transpose()?,
        provider: row.opt_text("provider")?,
        provider_reference: row.opt_text("provider_reference")?,
        expected: row.opt_text("expected")?,
        actual: row.opt_text("actual")?,
        status: row
            .text("status")?
            .parse::<DiscrepancyStatus>()
            .map_err(|_| StoreError::Corrupt("discrepancy status".into()))?,
        resolution: row.opt_text("resolution")?,
        created_at: time(row.int("created_at")?)?,
        resolved_at: row.opt_int("resolved_at")?.map(time).transpose()?,
    })
}

/// Marks discrepancy `id` resolved with `resolution`; false if there is no
/// such open one.
pub(crate) async fn resolve<C: Conn>(
    conn: &mut C,
    id: &str,
    resolution: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let resolved = conn
        .execute(
            "UPDATE discrepancies SET status = 'resolved', resolution = $1, resolved_at = $2
             WHERE id = $3 AND status = 'open'",
            vec![text(resolution), opt_int(Some(now.as_micros())), text(id)],
        )
        .await?;
    Ok(resolved == 1)
}
