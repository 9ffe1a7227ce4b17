//! The engine's SQL, written once for every backend.
//!
//! Both schemas use only text and 64-bit integer columns and both drivers
//! accept `$N` placeholders, so each statement and each decision (claim the
//! key, check the order, renew the lease) lives here exactly once. A
//! backend contributes a [`Conn`] (how to run a statement) and its
//! transaction handling (group commit for SQLite, PostgreSQL's own for
//! PostgreSQL), nothing else.

use super::rows::{self, RowExt};
use super::{
    BeginOutcome, IdempotencyRecord, LeaseChange, NewPayment, PaymentFilter, PaymentWrite,
    StoreError, StuckPayment,
};
use crate::domain::{
    Attempt, MerchantId, Payment, PaymentEvent, PaymentId, PaymentStatus, Timestamp,
};
use async_trait::async_trait;
use std::fmt::Write;

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

fn text(value: impl Into<String>) -> Arg {
    Arg::Text(Some(value.into()))
}

fn opt_text(value: &Option<String>) -> Arg {
    Arg::Text(value.clone())
}

fn int(value: i64) -> Arg {
    Arg::Int(Some(value))
}

fn opt_int(value: Option<i64>) -> Arg {
    Arg::Int(value)
}

/// How a backend runs one statement.
#[async_trait]
pub trait Conn: Send {
    type Row: RowExt + Send + Sync;
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError>;
    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, StoreError>;

    /// Runs a multi-statement script (a migration) without arguments.
    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError>;

    async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<Self::Row>, StoreError> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }
}

/// `$first, $first+1, …` for `count` values, for `IN (…)` lists.
fn placeholders(first: usize, count: usize) -> String {
    let mut list = String::new();
    for i in 0..count {
        let _ = write!(list, "{}${}", if i == 0 { "" } else { ", " }, first + i);
    }
    list
}

fn json(value: &impl serde::Serialize) -> String {
    // Maps and vectors of strings always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// Claims the key and the order and writes the new payment. On any outcome
/// but `Started` the caller must roll back: writes may have been made.
pub(crate) async fn begin<C: Conn>(
    conn: &mut C,
    new: &NewPayment,
) -> Result<BeginOutcome, StoreError> {
    let p = &new.payment;
    let merchant = p.merchant_id.as_str();
    // The key first: a concurrent claim of the same key waits here for the
    // first to commit, then sees it.
    let claimed = conn
        .execute(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, payment_id, order_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING",
            vec![
                text(merchant),
                text(&new.idempotency_key),
                text(&new.fingerprint),
                text(p.id.to_string()),
                text(&p.order_id),
                int(p.created_at.as_micros()),
            ],
        )
        .await?;
    if claimed == 0 {
        let record = idempotency_record(conn, &p.merchant_id, &new.idempotency_key)
            .await?
            .ok_or_else(|| StoreError::Corrupt("idempotency key vanished".into()))?;
        return Ok(BeginOutcome::KeyExists(record));
    }
    // The order: taken only if it is new or its payment failed. The
    // conditional upsert is atomic, across instances too.
    let order_claimed = conn
        .execute(
            "INSERT INTO orders (merchant_id, order_id, payment_id, status, lease_owner, lease_expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (merchant_id, order_id) DO UPDATE SET
                payment_id = excluded.payment_id, status = excluded.status, lease_owner = excluded.lease_owner,
                lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at
             WHERE orders.status = 'failed'",
            vec![
                text(merchant),
                text(&p.order_id),
                text(p.id.to_string()),
                text(p.status.as_str()),
                text(&new.lease_owner),
                int(new.lease_expires_at.as_micros()),
                int(p.created_at.as_micros()),
            ],
        )
        .await?;
    if order_claimed == 0 {
        let row = conn
            .fetch_optional(
                "SELECT payment_id, status FROM orders WHERE merchant_id = $1 AND order_id = $2",
                vec![text(merchant), text(&p.order_id)],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("order row vanished".into()))?;
        let status: PaymentStatus = row
            .text("status")?
            .parse()
            .map_err(|_| StoreError::Corrupt("order status".into()))?;
        let payment_id = row
            .text("payment_id")?
            .parse()
            .map_err(|_| StoreError::Corrupt("order payment_id".into()))?;
        debug_assert!(
            status.blocks_new_payment(),
            "a failed order is always claimable"
        );
        return Ok(BeginOutcome::OrderBusy { payment_id, status });
    }
    conn.execute(
        "INSERT INTO payments (id, merchant_id, order_id, customer_id, status, amount, amount_refunded,
            currency, payment_method, description, provider, provider_payment_id, failure_code,
            failure_message, next_attempt_at, anomaly_flags, metadata, recovery_attempts, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        vec![
            text(p.id.to_string()),
            text(merchant),
            text(&p.order_id),
            text(&p.customer_id),
            text(p.status.as_str()),
            int(p.amount.minor_units()),
            int(p.amount_refunded),
            text(p.currency.code()),
            text(&p.payment_method),
            opt_text(&p.description),
            opt_text(&p.provider),
            opt_text(&p.provider_payment_id),
            opt_text(&p.failure_code),
            opt_text(&p.failure_message),
            opt_int(p.next_attempt_at.map(|t| t.as_micros())),
            text(json(&p.anomaly_flags)),
            text(json(&p.metadata)),
            int(i64::from(p.recovery_attempts)),
            int(p.created_at.as_micros()),
            int(p.updated_at.as_micros()),
        ],
    )
    .await?;
    insert_events(conn, merchant, &new.events).await?;
    Ok(BeginOutcome::Started)
}

/// Applies one change to a payment, refusing it if the payment's status is
/// no longer `write.expected_status`.
pub(crate) async fn save<C: Conn>(conn: &mut C, write: &PaymentWrite) -> Result<(), StoreError> {
    let p = &write.payment;
    let merchant = p.merchant_id.as_str();
    let updated = conn
        .execute(
            "UPDATE payments SET status = $1, amount_refunded = $2, provider = $3, provider_payment_id = $4,
                failure_code = $5, failure_message = $6, next_attempt_at = $7, anomaly_flags = $8,
                recovery_attempts = $9, updated_at = $10
             WHERE id = $11 AND merchant_id = $12 AND status = $13",
            vec![
                text(p.status.as_str()),
                int(p.amount_refunded),
                opt_text(&p.provider),
                opt_text(&p.provider_payment_id),
                opt_text(&p.failure_code),
                opt_text(&p.failure_message),
                opt_int(p.next_attempt_at.map(|t| t.as_micros())),
                text(json(&p.anomaly_flags)),
                int(i64::from(p.recovery_attempts)),
                int(p.updated_at.as_micros()),
                text(p.id.to_string()),
                text(merchant),
                text(write.expected_status.as_str()),
            ],
        )
        .await?;
    if updated != 1 {
        return Err(StoreError::Conflict(p.id));
    }
    for attempt in &write.attempts {
        upsert_attempt(conn, p.id, attempt, p.updated_at).await?;
    }
    insert_events(conn, merchant, &write.events).await?;
    if let Some(response) = &write.response {
        // Only the first final answer is stored: a replay never changes.
        conn.execute(
            "UPDATE idempotency_keys SET response_status = $1, response_body = $2, completed_at = $3
             WHERE merchant_id = $4 AND payment_id = $5 AND response_status IS NULL",
            vec![
                int(i64::from(response.status)),
                text(&response.body),
                int(p.updated_at.as_micros()),
                text(merchant),
                text(p.id.to_string()),
            ],
        )
        .await?;
    }
    let (keep_owner, lease_expires_at) = match write.lease {
        LeaseChange::Renew { expires_at } => (1, Some(expires_at.as_micros())),
        LeaseChange::Release => (0, None),
    };
    conn.execute(
        "UPDATE orders SET status = $1, lease_owner = CASE WHEN $2 = 1 THEN lease_owner ELSE NULL END,
            lease_expires_at = $3, updated_at = $4
         WHERE merchant_id = $5 AND order_id = $6 AND payment_id = $7",
        vec![
            text(p.status.as_str()),
            int(keep_owner),
            opt_int(lease_expires_at),
            int(p.updated_at.as_micros()),
            text(merchant),
            text(&p.order_id),
            text(p.id.to_string()),
        ],
    )
    .await?;
    Ok(())
}

async fn upsert_attempt<C: Conn>(
    conn: &mut C,
    payment_id: PaymentId,
    attempt: &Attempt,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO attempts (id, payment_id, number, provider, provider_idempotency_key, outcome, code,
            latency_ms, provider_payment_id, raw_response, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, code = excluded.code,
            latency_ms = excluded.latency_ms, provider_payment_id = excluded.provider_payment_id,
            raw_response = excluded.raw_response, updated_at = excluded.updated_at",
        vec![
            text(attempt.id.to_string()),
            text(payment_id.to_string()),
            int(i64::from(attempt.number)),
            text(&attempt.provider),
            text(Attempt::provider_idempotency_key(payment_id, attempt.number)),
            text(attempt.outcome.as_str()),
            opt_text(&attempt.code),
            opt_int(attempt.latency_ms),
            opt_text(&attempt.provider_payment_id),
            opt_text(&attempt.raw_response),
            int(attempt.created_at.as_micros()),
            int(now.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

async fn insert_events<C: Conn>(
    conn: &mut C,
    merchant: &str,
    events: &[PaymentEvent],
) -> Result<(), StoreError> {
    for event in events {
        conn.execute(
            "INSERT INTO payment_events (id, payment_id, merchant_id, type, from_status, to_status, attempt_id, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                text(event.id.to_string()),
                text(event.payment_id.to_string()),
                text(merchant),
                text(&event.kind),
                Arg::Text(event.from_status.map(|s| s.as_str().to_string())),
                Arg::Text(event.to_status.map(|s| s.as_str().to_string())),
                Arg::Text(event.attempt_id.map(|id| id.to_string())),
                text(event.data.to_string()),
                int(event.created_at.as_micros()),
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn idempotency_record<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    key: &str,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT * FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2",
            vec![text(merchant.as_str()), text(key)],
        )
        .await?;
    row.as_ref().map(rows::idempotency).transpose()
}

async fn attach_attempts<C: Conn>(
    conn: &mut C,
    payments: &mut [Payment],
) -> Result<(), StoreError> {
    if payments.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT * FROM attempts WHERE payment_id IN ({}) ORDER BY payment_id, number",
        placeholders(1, payments.len())
    );
    let args = payments.iter().map(|p| text(p.id.to_string())).collect();
    for row in conn.fetch_all(&sql, args).await? {
        let payment_id: PaymentId = row
            .text("payment_id")?
            .parse()
            .map_err(|_| StoreError::Corrupt("attempt payment_id".into()))?;
        let attempt = rows::attempt(&row)?;
        if let Some(payment) = payments.iter_mut().find(|p| p.id == payment_id) {
            payment.attempts.push(attempt);
        }
    }
    Ok(())
}

pub(crate) async fn payment<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    id: PaymentId,
) -> Result<Option<Payment>, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT * FROM payments WHERE id = $1 AND merchant_id = $2",
            vec![text(id.to_string()), text(merchant.as_str())],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    let mut payments = [rows::payment(&row)?];
    attach_attempts(conn, &mut payments).await?;
    let [payment] = payments;
    Ok(Some(payment))
}

pub(crate) async fn list_payments<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    filter: &PaymentFilter,
) -> Result<Vec<Payment>, StoreError> {
    let mut sql = String::from("SELECT * FROM payments WHERE merchant_id = $1");
    let mut args = vec![text(merchant.as_str())];
    let mut push = |clause: &str, arg: Arg| {
        args.push(arg);
        let _ = write!(sql, " AND {clause} ${}", args.len());
    };
    if let Some(customer) = &filter.customer_id {
        push("customer_id =", text(customer));
    }
    if let Some(order) = &filter.order_id {
        push("order_id =", text(order));
    }
    if let Some(status) = filter.status {
        push("status =", text(status.as_str()));
    }
    if let Some(gte) = filter.created_gte {
        push("created_at >=", int(gte.as_micros()));
    }
    if let Some(lt) = filter.created_lt {
        push("created_at <", int(lt.as_micros()));
    }
    if let Some(cursor) = filter.starting_after {
        push("id <", text(cursor.to_string()));
    }
    args.push(int(i64::from(filter.limit)));
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", args.len());
    let rows = conn.fetch_all(&sql, args).await?;
    let mut payments = rows
        .iter()
        .map(rows::payment)
        .collect::<Result<Vec<_>, _>>()?;
    attach_attempts(conn, &mut payments).await?;
    Ok(payments)
}

pub(crate) async fn payment_events<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    id: PaymentId,
) -> Result<Option<Vec<PaymentEvent>>, StoreError> {
    let owned = conn
        .fetch_optional(
            "SELECT id FROM payments WHERE id = $1 AND merchant_id = $2",
            vec![text(id.to_string()), text(merchant.as_str())],
        )
        .await?;
    if owned.is_none() {
        return Ok(None);
    }
    let rows = conn
        .fetch_all(
            "SELECT * FROM payment_events WHERE payment_id = $1 ORDER BY created_at, id",
            vec![text(id.to_string())],
        )
        .await?;
    rows.iter()
        .map(rows::event)
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Payments needing recovery: `processing` with no live lease (their
/// instance died), or `pending` (the outcome is unknown) and not touched
/// since `pending_before`.
pub(crate) async fn stuck_payments<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    pending_before: Timestamp,
    limit: u32,
) -> Result<Vec<StuckPayment>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT p.id, p.merchant_id, p.order_id, p.status FROM payments p
             JOIN orders o ON o.merchant_id = p.merchant_id AND o.order_id = p.order_id AND o.payment_id = p.id
             WHERE (p.status = 'processing' AND (o.lease_owner IS NULL OR o.lease_expires_at < $1))
                OR (p.status = 'pending' AND p.updated_at < $2 AND (o.lease_owner IS NULL OR o.lease_expires_at < $1))
             ORDER BY p.id LIMIT $3",
            vec![int(now.as_micros()), int(pending_before.as_micros()), int(i64::from(limit))],
        )
        .await?;
    rows.iter().map(stuck_payment).collect()
}

/// Takes the order's lease for `owner` if nobody holds a live one. The
/// conditional update is the cross-instance arbiter of who recovers what.
pub(crate) async fn claim_lease<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    order_id: &str,
    payment_id: PaymentId,
    owner: &str,
    now: Timestamp,
    expires_at: Timestamp,
) -> Result<bool, StoreError> {
    let claimed = conn
        .execute(
            "UPDATE orders SET lease_owner = $1, lease_expires_at = $2, updated_at = $3
             WHERE merchant_id = $4 AND order_id = $5 AND payment_id = $6
               AND (lease_owner IS NULL OR lease_owner = $1 OR lease_expires_at < $3)",
            vec![
                text(owner),
                int(expires_at.as_micros()),
                int(now.as_micros()),
                text(merchant.as_str()),
                text(order_id),
                text(payment_id.to_string()),
            ],
        )
        .await?;
    Ok(claimed == 1)
}

/// Deletes answered idempotency records created before `before`.
pub(crate) async fn prune_idempotency<C: Conn>(
    conn: &mut C,
    before: Timestamp,
) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < $1 AND response_status IS NOT NULL",
        vec![int(before.as_micros())],
    )
    .await
}

/// `retry_scheduled` payments whose `next_attempt_at` has come, oldest first.
pub(crate) async fn due_retries<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<StuckPayment>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT id, merchant_id, order_id, status FROM payments
             WHERE status = 'retry_scheduled' AND next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT $2",
            vec![int(now.as_micros()), int(i64::from(limit))],
        )
        .await?;
    rows.iter().map(stuck_payment).collect()
}

fn stuck_payment<R: RowExt>(row: &R) -> Result<StuckPayment, StoreError> {
    Ok(StuckPayment {
        payment_id: row
            .text("id")?
            .parse()
            .map_err(|_| StoreError::Corrupt("payment id".into()))?,
        merchant_id: MerchantId::new(row.text("merchant_id")?),
        order_id: row.text("order_id")?,
        status: row
            .text("status")?
            .parse()
            .map_err(|_| StoreError::Corrupt("status".into()))?,
    })
}
