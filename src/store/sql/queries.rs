//! Every read: payments, their attempts and events, and the scans that
//! find work for the reconciler.
//!
//! Reads run on a connection from the backend's `read()`, outside any
//! write transaction, so each statement sees committed state only.

use super::{int, placeholders, text, Arg, Conn};
use crate::domain::{MerchantId, Payment, PaymentEvent, PaymentId, Timestamp};
use crate::store::rows::{self, RowExt};
use crate::store::{LeaseHolder, PaymentFilter, PaymentRef, StoreError};
use std::fmt::Write;

/// The payment with its attempts, if it exists and belongs to `merchant`.
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

/// The merchant's payments matching `filter`, newest first, with attempts.
pub(crate) async fn list_payments<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    filter: &PaymentFilter,
) -> Result<Vec<Payment>, StoreError> {
    let (sql, args) = list_statement(merchant, filter);
    let rows = conn.fetch_all(&sql, args).await?;
    let mut payments = rows
        .iter()
        .map(rows::payment)
        .collect::<Result<Vec<_>, _>>()?;
    attach_attempts(conn, &mut payments).await?;
    Ok(payments)
}

/// The `SELECT` for `filter`: one `AND` clause per filter set, each bound
/// to the next placeholder, then the page size.
fn list_statement(merchant: &MerchantId, filter: &PaymentFilter) -> (String, Vec<Arg>) {
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
    (sql, args)
}

/// Fills each payment's attempts, in order, with one query for them all.
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

/// The audit trail, oldest first; `None` if the payment is not the merchant's.
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
    holder: &LeaseHolder,
    limit: u32,
) -> Result<Vec<PaymentRef>, StoreError> {
    // A lease is dead when nobody holds it, when it expired, or when an
    // earlier incarnation of this very instance held it (that process is
    // gone: this one replaced it), whatever its expiry.
    let rows = conn
        .fetch_all(
            "SELECT p.id, p.merchant_id, p.order_id, p.status FROM payments p
             JOIN orders o ON o.merchant_id = p.merchant_id AND o.order_id = p.order_id AND o.payment_id = p.id
             WHERE (p.status = 'processing' OR (p.status = 'pending' AND p.updated_at < $2))
               AND (o.lease_owner IS NULL OR o.lease_expires_at < $1
                    OR (o.lease_owner = $3 AND o.lease_incarnation < $4))
             ORDER BY p.id LIMIT $5",
            vec![
                int(now.as_micros()),
                int(pending_before.as_micros()),
                text(&holder.instance_id),
                int(holder.incarnation),
                int(i64::from(limit)),
            ],
        )
        .await?;
    rows.iter().map(to_payment_ref).collect()
}

/// `retry_scheduled` payments whose `next_attempt_at` has come, oldest first.
pub(crate) async fn due_retries<C: Conn>(
    conn: &mut C,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<PaymentRef>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT id, merchant_id, order_id, status FROM payments
             WHERE status = 'retry_scheduled' AND next_attempt_at <= $1
             ORDER BY next_attempt_at LIMIT $2",
            vec![int(now.as_micros()), int(i64::from(limit))],
        )
        .await?;
    rows.iter().map(to_payment_ref).collect()
}

/// The payment `id`, whoever's it is (an inbound webhook names a payment
/// without naming its merchant; its signature vouches for it).
pub(crate) async fn payment_ref<C: Conn>(
    conn: &mut C,
    id: PaymentId,
) -> Result<Option<PaymentRef>, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT id, merchant_id, order_id, status FROM payments WHERE id = $1",
            vec![text(id.to_string())],
        )
        .await?;
    row.as_ref().map(to_payment_ref).transpose()
}

/// The payment `provider` knows as `reference` (its id of the charge).
pub(crate) async fn payment_ref_by_reference<C: Conn>(
    conn: &mut C,
    provider: &str,
    reference: &str,
) -> Result<Option<PaymentRef>, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT id, merchant_id, order_id, status FROM payments
             WHERE provider_payment_id = $1 AND provider = $2 ORDER BY id LIMIT 1",
            vec![text(reference), text(provider)],
        )
        .await?;
    row.as_ref().map(to_payment_ref).transpose()
}

/// A scan's row (`id, merchant_id, order_id, status`) as a [`PaymentRef`].
fn to_payment_ref<R: RowExt>(row: &R) -> Result<PaymentRef, StoreError> {
    Ok(PaymentRef {
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
