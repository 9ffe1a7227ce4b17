//! Anomaly flags and the payment reads the anomaly rules need (DESIGN §10).
//!
//! - `insert_flags`: a payment's flags, inside the transaction that
//!   creates the payment (`payments::begin`), so a payment and its flags
//!   are durable together or not at all;
//! - `list`: `GET /v1/anomalies`, newest first, keyset-paged by id;
//! - `recent_payments`: the warm-up after a restart, oldest first, a page
//!   at a time;
//! - `customer_counts`: `scope = "cluster"`, a customer's counts over every
//!   instance's payments, in two statements.

use super::{int, text, Arg, Conn};
use crate::domain::{
    AnomalyFlagRecord, Currency, CustomerCounts, Flag, MerchantId, PastPayment, Payment,
    PaymentFacts, PaymentStatus, Rule, Timestamp, BLOCKED_BY_RULE,
};
use crate::store::rows::RowExt;
use crate::store::StoreError;
use std::fmt::Write;

/// What `GET /v1/anomalies` asks for.
#[derive(Debug, Clone, Default)]
pub struct AnomalyFilter {
    /// Only this merchant's flags (a merchant sees its own; `None`: an
    /// operator, every merchant's).
    pub merchant_id: Option<MerchantId>,
    pub customer_id: Option<String>,
    pub rule: Option<Rule>,
    /// Flags created at or after this time.
    pub since: Option<Timestamp>,
    /// The last id of the previous page.
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// What `scope = "cluster"` counts for one payment: its customer, and the
/// start of each rule's window.
#[derive(Debug, Clone)]
pub struct CountsQuery {
    pub facts: PaymentFacts,
    pub velocity_since: Timestamp,
    pub duplicate_since: Timestamp,
    pub card_since: Timestamp,
    /// Most recent finished payments read for `failed_streak` (the maximum
    /// plus one is enough to know it is exceeded).
    pub streak_rows: u32,
}

/// Writes one row per flag of the new payment `p`.
pub(crate) async fn insert_flags<C: Conn>(
    conn: &mut C,
    p: &Payment,
    flags: &[Flag],
) -> Result<(), StoreError> {
    for flag in flags {
        let record = AnomalyFlagRecord {
            id: format!("af_{}", uuid::Uuid::now_v7().simple()),
            object: "anomaly_flag",
            merchant_id: p.merchant_id.clone(),
            rule: flag.rule,
            action: flag.action,
            customer_id: p.customer_id.clone(),
            payment_id: p.id.to_string(),
            detail: flag.detail.clone(),
            created_at: p.created_at,
        };
        conn.execute(
            "INSERT INTO anomaly_flags (id, merchant_id, rule, action, customer_id, payment_id, detail, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text(&record.id),
                text(p.merchant_id.as_str()),
                text(flag.rule.as_str()),
                text(flag.action.as_str()),
                text(&p.customer_id),
                text(p.id.to_string()),
                text(flag.detail.to_string()),
                int(p.created_at.as_micros()),
            ],
        )
        .await?;
        // `anomaly.flagged` (DESIGN §11), in the same write as the flag.
        let event = crate::domain::OutgoingEvent::for_anomaly_flag(
            &p.merchant_id,
            Some(p.id),
            serde_json::to_value(&record).unwrap_or_default(),
            p.created_at,
        );
        super::outbox::append(conn, &event).await?;
    }
    Ok(())
}

/// Flags matching `filter`, newest first, at most `filter.limit`.
pub(crate) async fn list<C: Conn>(
    conn: &mut C,
    filter: &AnomalyFilter,
) -> Result<Vec<AnomalyFlagRecord>, StoreError> {
    let mut sql = String::from("SELECT * FROM anomaly_flags WHERE 1 = 1");
    let mut args = Vec::new();
    let mut push = |clause: &str, arg: Arg| {
        args.push(arg);
        let _ = write!(sql, " AND {clause} ${}", args.len());
    };
    if let Some(merchant) = &filter.merchant_id {
        push("merchant_id =", text(merchant.as_str()));
    }
    if let Some(customer) = &filter.customer_id {
        push("customer_id =", text(customer));
    }
    if let Some(rule) = filter.rule {
        push("rule =", text(rule.as_str()));
    }
    if let Some(since) = filter.since {
        push("created_at >=", int(since.as_micros()));
    }
    if let Some(after) = &filter.starting_after {
        push("id <", text(after));
    }
    args.push(int(i64::from(filter.limit)));
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", args.len());
    let rows = conn.fetch_all(&sql, args).await?;
    rows.iter().map(flag_record).collect()
}

fn flag_record(row: &impl RowExt) -> Result<AnomalyFlagRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("anomaly flag {what}"));
    let detail = row.text("detail")?;
    Ok(AnomalyFlagRecord {
        id: row.text("id")?,
        object: "anomaly_flag",
        merchant_id: MerchantId::new(row.text("merchant_id")?),
        rule: row.text("rule")?.parse().map_err(|_| corrupt("rule"))?,
        action: row.text("action")?.parse().map_err(|_| corrupt("action"))?,
        customer_id: row.text("customer_id")?,
        payment_id: row.text("payment_id")?,
        detail: serde_json::from_str(&detail).map_err(|_| corrupt("detail"))?,
        created_at: Timestamp::from_micros(row.int("created_at")?)
            .ok_or_else(|| corrupt("created_at"))?,
    })
}

/// Payments created at or after `since`, oldest first (by id, which is
/// time order), after the payment `after` (the last of the previous page);
/// each with its id, the next page's cursor.
pub(crate) async fn recent_payments<C: Conn>(
    conn: &mut C,
    since: Timestamp,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<(String, PastPayment)>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT id, merchant_id, customer_id, amount, currency, payment_method, status,
                failure_code, created_at
             FROM payments WHERE created_at >= $1 AND id > $2 ORDER BY id LIMIT $3",
            vec![
                int(since.as_micros()),
                text(after.unwrap_or("")),
                int(i64::from(limit)),
            ],
        )
        .await?;
    rows.iter()
        .map(|row| Ok((row.text("id")?, past_payment(row)?)))
        .collect()
}

fn past_payment(row: &impl RowExt) -> Result<PastPayment, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("warm-up payment {what}"));
    let currency = Currency::parse(&row.text("currency")?).ok_or_else(|| corrupt("currency"))?;
    let amount = crate::domain::Amount::new(row.int("amount")?).map_err(|_| corrupt("amount"))?;
    let status: PaymentStatus = row.text("status")?.parse().map_err(|_| corrupt("status"))?;
    let failure_code = row.opt_text("failure_code")?;
    Ok(PastPayment {
        facts: PaymentFacts {
            merchant: MerchantId::new(row.text("merchant_id")?),
            customer_id: row.text("customer_id")?,
            amount,
            currency,
            payment_method: row.text("payment_method")?,
        },
        at: Timestamp::from_micros(row.int("created_at")?).ok_or_else(|| corrupt("time"))?,
        succeeded: outcome(status, failure_code.as_deref()),
    })
}

/// What a stored payment tells `failed_streak`: `Some(true)` a success,
/// `Some(false)` a decline, `None` nothing (unfinished, or blocked by a
/// rule: nothing was tried).
pub fn outcome(status: PaymentStatus, failure_code: Option<&str>) -> Option<bool> {
    match status {
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded => {
            Some(true)
        }
        PaymentStatus::Failed if failure_code == Some(BLOCKED_BY_RULE) => None,
        PaymentStatus::Failed | PaymentStatus::RetryScheduled => Some(false),
        _ => None,
    }
}

/// The customer's counts over every instance's stored payments.
pub(crate) async fn customer_counts<C: Conn>(
    conn: &mut C,
    q: &CountsQuery,
) -> Result<CustomerCounts, StoreError> {
    let f = &q.facts;
    let oldest = q
        .velocity_since
        .min(q.duplicate_since)
        .min(q.card_since)
        .as_micros();
    let row = conn
        .fetch_optional(
            "SELECT
                COALESCE(SUM(CASE WHEN created_at >= $3 THEN 1 ELSE 0 END), 0) AS velocity,
                COALESCE(SUM(CASE WHEN created_at >= $4 AND amount = $6 AND currency = $7 THEN 1 ELSE 0 END), 0) AS same_amount,
                COUNT(DISTINCT CASE WHEN created_at >= $5 THEN payment_method END) AS methods,
                COALESCE(SUM(CASE WHEN created_at >= $5 AND payment_method = $8 THEN 1 ELSE 0 END), 0) AS this_method
             FROM payments
             WHERE merchant_id = $1 AND customer_id = $2 AND created_at >= $9",
            vec![
                text(f.merchant.as_str()),
                text(&f.customer_id),
                int(q.velocity_since.as_micros()),
                int(q.duplicate_since.as_micros()),
                int(q.card_since.as_micros()),
                int(f.amount.minor_units()),
                text(f.currency.code()),
                text(&f.payment_method),
                int(oldest),
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("an aggregate answered no row".into()))?;
    let count = |column: &str| -> Result<u32, StoreError> {
        Ok(u32::try_from(row.int(column)?.max(0)).unwrap_or(u32::MAX))
    };
    Ok(CustomerCounts {
        in_velocity_window: count("velocity")?,
        same_amount: count("same_amount")?,
        distinct_methods: count("methods")?,
        method_seen: count("this_method")? > 0,
        failures: streak(conn, q).await?,
    })
}

/// Consecutive declines among the customer's newest finished payments.
async fn streak<C: Conn>(conn: &mut C, q: &CountsQuery) -> Result<u32, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT status, failure_code FROM payments
             WHERE merchant_id = $1 AND customer_id = $2
               AND status IN ('succeeded', 'partially_refunded', 'refunded', 'failed', 'retry_scheduled')
               AND (failure_code IS NULL OR failure_code <> $3)
             ORDER BY created_at DESC LIMIT $4",
            vec![
                text(q.facts.merchant.as_str()),
                text(&q.facts.customer_id),
                text(BLOCKED_BY_RULE),
                int(i64::from(q.streak_rows)),
            ],
        )
        .await?;
    let mut failures = 0;
    for row in &rows {
        let status: PaymentStatus = row
            .text("status")?
            .parse()
            .map_err(|_| StoreError::Corrupt("payment status".into()))?;
        match outcome(status, row.opt_text("failure_code")?.as_deref()) {
            Some(false) => failures += 1,
            _ => break,
        }
    }
    Ok(failures)
}
