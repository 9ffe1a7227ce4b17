//! Refunds: reserving an amount, and settling it (DESIGN §6, §13.8).
//!
//! A refund never makes a payment's refunds add up to more than was
//! captured, whatever the concurrency and however many instances: its
//! amount is reserved by one conditional update of the payment row
//! (`amount_refunded + amount_refund_pending + amount <= amount`), and the
//! settlement moves it from pending to refunded with arithmetic in SQL, so
//! two instances settling two refunds of one payment never lose an update.
//! The payment's new status (`partially_refunded` or `refunded`) is the
//! database's answer to that arithmetic.
//!
//! Refusals change nothing (a key used before, too large an amount, a
//! payment that cannot be refunded), as every write here must (see
//! [`super::payments`]).

use super::{idempotency, int, ledger, opt_text, text, Conn};
use crate::domain::{
    MerchantId, PaymentEvent, PaymentId, PaymentStatus, Refund, RefundId, RefundState, Timestamp,
};
use crate::store::rows::{self, RowExt};
use crate::store::{
    FinishRefund, IdempotencyRecord, NewRefund, RefundBegin, RefundRef, StoreError,
};
use serde_json::json;

/// Claims the key, reserves the amount and writes the refund `pending`.
pub(crate) async fn begin<C: Conn>(
    conn: &mut C,
    new: &NewRefund,
) -> Result<RefundBegin, StoreError> {
    let r = &new.refund;
    if !claim_key(conn, new).await? {
        let record = existing_key(conn, &r.merchant_id, &new.idempotency_key).await?;
        return Ok(RefundBegin::KeyExists(record));
    }
    if !reserve(conn, r).await? {
        conn.execute(
            "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2",
            vec![text(r.merchant_id.as_str()), text(&new.idempotency_key)],
        )
        .await?;
        return refusal(conn, r).await;
    }
    insert_refund(conn, r).await?;
    super::payments::insert_events(conn, r.merchant_id.as_str(), &new.events).await?;
    Ok(RefundBegin::Started)
}

async fn existing_key<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    key: &str,
) -> Result<IdempotencyRecord, StoreError> {
    idempotency::record(conn, merchant, key)
        .await?
        .ok_or_else(|| StoreError::Corrupt("idempotency key vanished".into()))
}

async fn claim_key<C: Conn>(conn: &mut C, new: &NewRefund) -> Result<bool, StoreError> {
    let r = &new.refund;
    let claimed = conn
        .execute(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, payment_id, order_id,
                refund_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING",
            vec![
                text(r.merchant_id.as_str()),
                text(&new.idempotency_key),
                text(&new.fingerprint),
                text(r.payment_id.to_string()),
                text(&new.order_id),
                text(r.id.to_string()),
                int(r.created_at.as_micros()),
            ],
        )
        .await?;
    Ok(claimed != 0)
}

/// Reserves the refund's amount against the payment; false if it would
/// take the refunds past the amount captured (or the payment is not one
/// that can be refunded).
async fn reserve<C: Conn>(conn: &mut C, r: &Refund) -> Result<bool, StoreError> {
    let reserved = conn
        .execute(
            "UPDATE payments SET amount_refund_pending = amount_refund_pending + $1, updated_at = $2
             WHERE id = $3 AND merchant_id = $4 AND status IN ('succeeded', 'partially_refunded')
               AND amount_refunded + amount_refund_pending + $1 <= amount",
            vec![
                int(r.amount.minor_units()),
                int(r.created_at.as_micros()),
                text(r.payment_id.to_string()),
                text(r.merchant_id.as_str()),
            ],
        )
        .await?;
    Ok(reserved == 1)
}

/// Why a reservation was refused, read after the refusal.
async fn refusal<C: Conn>(conn: &mut C, r: &Refund) -> Result<RefundBegin, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT status, amount, amount_refunded, amount_refund_pending FROM payments
             WHERE id = $1 AND merchant_id = $2",
            vec![text(r.payment_id.to_string()), text(r.merchant_id.as_str())],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("refunded payment vanished".into()))?;
    let status: PaymentStatus = row
        .text("status")?
        .parse()
        .map_err(|_| StoreError::Corrupt("payment status".into()))?;
    if !matches!(
        status,
        PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
    ) {
        return Ok(RefundBegin::NotRefundable { status });
    }
    let available =
        row.int("amount")? - row.int("amount_refunded")? - row.int("amount_refund_pending")?;
    Ok(RefundBegin::TooLarge {
        available: available.max(0),
    })
}

async fn insert_refund<C: Conn>(conn: &mut C, r: &Refund) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO refunds (id, payment_id, merchant_id, amount, currency, reason, status, failure_code,
            provider, provider_refund_id, raw_response, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        vec![
            text(r.id.to_string()),
            text(r.payment_id.to_string()),
            text(r.merchant_id.as_str()),
            int(r.amount.minor_units()),
            text(r.currency.code()),
            opt_text(&r.reason.map(|reason| reason.as_str().to_string())),
            text(r.status.as_str()),
            opt_text(&r.failure_code),
            text(&r.provider),
            opt_text(&r.provider_refund_id),
            opt_text(&r.raw_response),
            int(r.created_at.as_micros()),
            int(r.updated_at.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

/// Settles a pending refund as `succeeded` or `failed`: the refund row, the
/// payment's amounts (and, on success, its status and its ledger
/// reversal), the audit events and the stored answer, in one transaction.
/// A refund already settled (a webhook and a retry racing) is refused with
/// [`StoreError::Conflict`], having changed nothing.
pub(crate) async fn finish<C: Conn>(conn: &mut C, f: &FinishRefund) -> Result<(), StoreError> {
    let r = &f.refund;
    assert!(
        r.status != RefundState::Pending,
        "only a decided refund settles"
    );
    settle_row(conn, r).await?;
    let mut events = f.events.clone();
    if r.status == RefundState::Succeeded {
        events.extend(move_refunded(conn, r).await?);
        if let Some(posting) = &f.posting {
            match ledger::post(conn, posting).await? {
                ledger::PostOutcome::Posted | ledger::PostOutcome::AlreadyPosted => {}
                ledger::PostOutcome::InsufficientFunds { account } => {
                    return Err(StoreError::Partial(Box::new(
                        StoreError::InsufficientFunds(account.to_string()),
                    )))
                }
            }
        }
    } else {
        release(conn, r).await?;
    }
    super::payments::insert_events(conn, r.merchant_id.as_str(), &events).await?;
    super::outbox::append_opt(conn, crate::domain::OutgoingEvent::for_refund(r)).await?;
    if let Some(body) = &f.response_body {
        store_response(conn, r, body).await?;
    }
    Ok(())
}

async fn settle_row<C: Conn>(conn: &mut C, r: &Refund) -> Result<(), StoreError> {
    let settled = conn
        .execute(
            "UPDATE refunds SET status = $1, failure_code = $2, provider_refund_id = $3, raw_response = $4,
                updated_at = $5
             WHERE id = $6 AND merchant_id = $7 AND status = 'pending'",
            vec![
                text(r.status.as_str()),
                opt_text(&r.failure_code),
                opt_text(&r.provider_refund_id),
                opt_text(&r.raw_response),
                int(r.updated_at.as_micros()),
                text(r.id.to_string()),
                text(r.merchant_id.as_str()),
            ],
        )
        .await?;
    if settled != 1 {
        return Err(StoreError::Conflict(r.payment_id));
    }
    Ok(())
}

/// Moves the refund's amount from pending to refunded; returns the
/// payment's status change for the audit trail.
async fn move_refunded<C: Conn>(conn: &mut C, r: &Refund) -> Result<Vec<PaymentEvent>, StoreError> {
    let amount = r.amount.minor_units();
    let row = conn
        .fetch_optional(
            "UPDATE payments SET amount_refunded = amount_refunded + $1,
                amount_refund_pending = amount_refund_pending - $1,
                status = CASE WHEN amount_refunded + $1 = amount THEN 'refunded' ELSE 'partially_refunded' END,
                updated_at = $2
             WHERE id = $3 AND merchant_id = $4 AND amount_refund_pending >= $1
             RETURNING status, amount_refunded, order_id",
            vec![
                int(amount),
                int(r.updated_at.as_micros()),
                text(r.payment_id.to_string()),
                text(r.merchant_id.as_str()),
            ],
        )
        .await?
        .ok_or_else(|| {
            StoreError::Partial(Box::new(StoreError::Corrupt(format!(
                "refund {} settles more than its payment holds",
                r.id
            ))))
        })?;
    let to: PaymentStatus = row
        .text("status")?
        .parse()
        .map_err(|_| StoreError::Corrupt("payment status".into()))?;
    let before = row.int("amount_refunded")? - amount;
    let from = if before == 0 {
        PaymentStatus::Succeeded
    } else {
        PaymentStatus::PartiallyRefunded
    };
    if from.transition(to).is_err() {
        return Err(StoreError::Partial(Box::new(StoreError::Corrupt(format!(
            "refund {} moved its payment {from} -> {to}",
            r.id
        )))));
    }
    conn.execute(
        "UPDATE orders SET status = $1, updated_at = $2 WHERE merchant_id = $3 AND order_id = $4 AND payment_id = $5",
        vec![
            text(to.as_str()),
            int(r.updated_at.as_micros()),
            text(r.merchant_id.as_str()),
            text(row.text("order_id")?),
            text(r.payment_id.to_string()),
        ],
    )
    .await?;
    Ok(vec![PaymentEvent::status_change(
        r.payment_id,
        Some(from),
        to,
        r.updated_at,
        json!({ "by": "refund", "refund_id": r.id, "amount": amount }),
    )])
}

/// Gives a failed refund's reservation back.
async fn release<C: Conn>(conn: &mut C, r: &Refund) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE payments SET amount_refund_pending = amount_refund_pending - $1, updated_at = $2
         WHERE id = $3 AND merchant_id = $4",
        vec![
            int(r.amount.minor_units()),
            int(r.updated_at.as_micros()),
            text(r.payment_id.to_string()),
            text(r.merchant_id.as_str()),
        ],
    )
    .await?;
    Ok(())
}

async fn store_response<C: Conn>(conn: &mut C, r: &Refund, body: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE idempotency_keys SET response_body = $1, completed_at = $2
         WHERE merchant_id = $3 AND payment_id = $4 AND refund_id = $5 AND response_body IS NULL",
        vec![
            text(body),
            int(r.updated_at.as_micros()),
            text(r.merchant_id.as_str()),
            text(r.payment_id.to_string()),
            text(r.id.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Records that a refund is still pending after an ask (so the reconciler
/// asks again only later), and stores the first answer under its key.
pub(crate) async fn still_pending<C: Conn>(
    conn: &mut C,
    r: &Refund,
    body: Option<&str>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE refunds SET updated_at = $1, provider_refund_id = COALESCE($2, provider_refund_id),
            raw_response = COALESCE($3, raw_response)
         WHERE id = $4 AND merchant_id = $5 AND status = 'pending'",
        vec![
            int(r.updated_at.as_micros()),
            opt_text(&r.provider_refund_id),
            opt_text(&r.raw_response),
            text(r.id.to_string()),
            text(r.merchant_id.as_str()),
        ],
    )
    .await?;
    if let Some(body) = body {
        store_response(conn, r, body).await?;
    }
    Ok(())
}

/// The merchant's refund `id`.
pub(crate) async fn refund<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    id: RefundId,
) -> Result<Option<Refund>, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT * FROM refunds WHERE id = $1 AND merchant_id = $2",
            vec![text(id.to_string()), text(merchant.as_str())],
        )
        .await?;
    row.as_ref().map(rows::refund).transpose()
}

/// The payment's refunds, oldest first, after `starting_after`.
pub(crate) async fn of_payment<C: Conn>(
    conn: &mut C,
    merchant: &MerchantId,
    payment_id: PaymentId,
    starting_after: Option<RefundId>,
    limit: u32,
) -> Result<Vec<Refund>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT * FROM refunds WHERE payment_id = $1 AND merchant_id = $2 AND id > $3
             ORDER BY id LIMIT $4",
            vec![
                text(payment_id.to_string()),
                text(merchant.as_str()),
                text(starting_after.map_or_else(String::new, |id| id.to_string())),
                int(i64::from(limit)),
            ],
        )
        .await?;
    rows.iter().map(rows::refund).collect()
}

/// Refunds still `pending` and untouched since `before`, oldest first: the
/// reconciler asks their provider again, under the same key.
pub(crate) async fn pending<C: Conn>(
    conn: &mut C,
    before: Timestamp,
    limit: u32,
) -> Result<Vec<RefundRef>, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT r.id, r.payment_id, r.merchant_id, p.order_id FROM refunds r
             JOIN payments p ON p.id = r.payment_id
             WHERE r.status = 'pending' AND r.updated_at < $1 ORDER BY r.updated_at LIMIT $2",
            vec![int(before.as_micros()), int(i64::from(limit))],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(RefundRef {
                refund_id: row
                    .text("id")?
                    .parse()
                    .map_err(|_| StoreError::Corrupt("refund id".into()))?,
                payment_id: row
                    .text("payment_id")?
                    .parse()
                    .map_err(|_| StoreError::Corrupt("payment id".into()))?,
                merchant_id: MerchantId::new(row.text("merchant_id")?),
                order_id: row.text("order_id")?,
            })
        })
        .collect()
}
