//! The two payment writes: creating one (`begin`) and changing one (`save`).
//!
//! These are the engine's units of atomicity (DESIGN §4): each runs inside
//! one transaction the caller owns, so the statements below, and those it
//! borrows from [`idempotency`] and [`leases`], commit or roll back together.
//!
//! A write that is refused (key taken, order busy, lease lost, payment
//! changed) is refused before it has changed anything, or undoes what it
//! changed itself: the SQLite writer batches many writes in one
//! transaction without a savepoint each, so a refusal must leave nothing.

use super::ledger::{self, PostOutcome};
use super::{idempotency, int, json, leases, opt_int, opt_text, placeholders, text, Arg, Conn};
use crate::domain::{
    Attempt, OutgoingEvent, Payment, PaymentEvent, PaymentId, PaymentStatus, Posting, Timestamp,
};
use crate::store::rows::RowExt;
use crate::store::{BeginOutcome, NewPayment, PaymentWrite, StoreError};

/// Claims the key and the order and writes the new payment. On any outcome
/// but `Started` the caller must roll back: writes may have been made.
pub(crate) async fn begin<C: Conn>(
    conn: &mut C,
    new: &NewPayment,
) -> Result<BeginOutcome, StoreError> {
    let p = &new.payment;
    if !claim_key(conn, new).await? {
        let record = idempotency::record(conn, &p.merchant_id, &new.idempotency_key)
            .await?
            .ok_or_else(|| StoreError::Corrupt("idempotency key vanished".into()))?;
        return Ok(BeginOutcome::KeyExists(record));
    }
    if !claim_order(conn, new).await? {
        // The key was claimed for nothing: give it back, so the refusal
        // leaves no trace (and the client may reuse the key).
        conn.execute(
            "DELETE FROM idempotency_keys WHERE merchant_id = $1 AND idempotency_key = $2",
            vec![text(p.merchant_id.as_str()), text(&new.idempotency_key)],
        )
        .await?;
        let (payment_id, status) = order_holder(conn, p).await?;
        debug_assert!(
            status.blocks_new_payment(),
            "a failed order is always claimable"
        );
        return Ok(BeginOutcome::OrderBusy { payment_id, status });
    }
    insert_payment(conn, p).await?;
    super::anomaly::insert_flags(conn, p, &new.flags).await?;
    for attempt in &p.attempts {
        upsert_attempt(conn, p.id, attempt, p.updated_at).await?;
    }
    insert_events(conn, p.merchant_id.as_str(), &new.events).await?;
    // A payment created in a status that is news (refused at once) raises
    // its outgoing event in this same write (DESIGN §11: the outbox).
    super::outbox::append_opt(conn, OutgoingEvent::for_payment(p)).await?;
    Ok(BeginOutcome::Started)
}

/// Inserts the idempotency key; false if the merchant already used it.
///
/// The key is claimed first: a concurrent claim of the same key waits here
/// for the first to commit, then sees it.
async fn claim_key<C: Conn>(conn: &mut C, new: &NewPayment) -> Result<bool, StoreError> {
    let p = &new.payment;
    let claimed = conn
        .execute(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, payment_id, order_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING",
            vec![
                text(p.merchant_id.as_str()),
                text(&new.idempotency_key),
                text(&new.fingerprint),
                text(p.id.to_string()),
                text(&p.order_id),
                int(p.created_at.as_micros()),
            ],
        )
        .await?;
    Ok(claimed != 0)
}

/// Points the order at the new payment and gives it the lease; false if
/// the order's current payment blocks a new one.
///
/// The order is taken only if it is new or its payment failed. The
/// conditional upsert is atomic, across instances too.
async fn claim_order<C: Conn>(conn: &mut C, new: &NewPayment) -> Result<bool, StoreError> {
    let p = &new.payment;
    let claimed = conn
        .execute(
            "INSERT INTO orders (merchant_id, order_id, payment_id, status, lease_owner, lease_incarnation,
                lease_expires_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (merchant_id, order_id) DO UPDATE SET
                payment_id = excluded.payment_id, status = excluded.status, lease_owner = excluded.lease_owner,
                lease_incarnation = excluded.lease_incarnation, lease_expires_at = excluded.lease_expires_at,
                updated_at = excluded.updated_at
             WHERE orders.status = 'failed'",
            vec![
                text(p.merchant_id.as_str()),
                text(&p.order_id),
                text(p.id.to_string()),
                text(p.status.as_str()),
                text(&new.holder.instance_id),
                int(new.holder.incarnation),
                int(new.lease_expires_at.as_micros()),
                int(p.created_at.as_micros()),
            ],
        )
        .await?;
    Ok(claimed != 0)
}

/// The payment holding the order `p` could not claim, and its status.
async fn order_holder<C: Conn>(
    conn: &mut C,
    p: &Payment,
) -> Result<(PaymentId, PaymentStatus), StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT payment_id, status FROM orders WHERE merchant_id = $1 AND order_id = $2",
            vec![text(p.merchant_id.as_str()), text(&p.order_id)],
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
    Ok((payment_id, status))
}

/// Inserts the new payment's row, every column as `p` has it.
async fn insert_payment<C: Conn>(conn: &mut C, p: &Payment) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO payments (id, merchant_id, order_id, customer_id, status, amount, amount_refunded,
            currency, payment_method, description, provider, provider_payment_id, failure_code,
            failure_message, next_attempt_at, anomaly_flags, metadata, recovery_attempts, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
        vec![
            text(p.id.to_string()),
            text(p.merchant_id.as_str()),
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
    Ok(())
}

/// Applies one change to a payment, refusing it unless the writer still
/// holds the order's lease ([`StoreError::LeaseLost`]) and the payment's
/// status is still `write.expected_status` ([`StoreError::Conflict`]).
pub(crate) async fn save<C: Conn>(conn: &mut C, write: &PaymentWrite) -> Result<(), StoreError> {
    let p = &write.payment;
    // A wallet payment's debit goes first: the wallet's conditional update
    // is the one check that can refuse it, and it refuses before anything
    // is written. Every other posting follows the checks below.
    let debits_wallet = write.posting.as_ref().is_some_and(debits_a_wallet);
    if debits_wallet {
        post(conn, write.posting.as_ref()).await?;
    }
    // Both checks in the first statement: a refused save changes nothing
    // (but a wallet debit made above must then be rolled back).
    update_payment(conn, write).await.map_err(|error| {
        if debits_wallet {
            StoreError::Partial(Box::new(error))
        } else {
            error
        }
    })?;
    if !debits_wallet {
        post(conn, write.posting.as_ref()).await?;
    }
    leases::update_order(conn, p, write.lease, &write.holder).await?;
    for attempt in &write.attempts {
        upsert_attempt(conn, p.id, attempt, p.updated_at).await?;
    }
    insert_events(conn, p.merchant_id.as_str(), &write.events).await?;
    if p.status != write.expected_status {
        super::outbox::append_opt(conn, OutgoingEvent::for_payment(p)).await?;
    }
    if let Some(response) = &write.response {
        idempotency::store_response(conn, p, response).await?;
    }
    Ok(())
}

/// Whether `posting` takes money out of a customer's wallet.
fn debits_a_wallet(posting: &Posting) -> bool {
    posting
        .account_totals()
        .iter()
        .any(|total| total.account.is_customer_wallet() && total.debits > total.credits)
}

/// Writes `posting`, if any. Posted twice (a replayed write) is the same
/// as posted once; a wallet too poor for it refuses the write.
pub(crate) async fn post<C: Conn>(
    conn: &mut C,
    posting: Option<&Posting>,
) -> Result<(), StoreError> {
    let Some(posting) = posting else {
        return Ok(());
    };
    match ledger::post(conn, posting).await? {
        PostOutcome::Posted | PostOutcome::AlreadyPosted => Ok(()),
        PostOutcome::InsufficientFunds { account } => {
            Err(StoreError::InsufficientFunds(account.to_string()))
        }
    }
}

/// The update of the payment's row, made only if the payment still has the
/// expected status and the writer still holds its order's lease; otherwise
/// nothing changes and the answer says which check failed.
async fn update_payment<C: Conn>(conn: &mut C, write: &PaymentWrite) -> Result<(), StoreError> {
    let p = &write.payment;
    let updated = conn
        .execute(
            // Never `amount_refunded`: refunds own it, and change it with
            // arithmetic of their own (`sql::refunds`).
            "UPDATE payments SET status = $1, provider = $2, provider_payment_id = $3,
                failure_code = $4, failure_message = $5, next_attempt_at = $6, anomaly_flags = $7,
                recovery_attempts = $8, updated_at = $9
             WHERE id = $10 AND merchant_id = $11 AND status = $12
               AND EXISTS (SELECT 1 FROM orders o WHERE o.merchant_id = $11 AND o.order_id = $13
                           AND o.payment_id = $10 AND o.lease_owner = $14 AND o.lease_incarnation = $15)",
            vec![
                text(p.status.as_str()),
                opt_text(&p.provider),
                opt_text(&p.provider_payment_id),
                opt_text(&p.failure_code),
                opt_text(&p.failure_message),
                opt_int(p.next_attempt_at.map(|t| t.as_micros())),
                text(json(&p.anomaly_flags)),
                int(i64::from(p.recovery_attempts)),
                int(p.updated_at.as_micros()),
                text(p.id.to_string()),
                text(p.merchant_id.as_str()),
                text(write.expected_status.as_str()),
                text(&p.order_id),
                text(&write.holder.instance_id),
                int(write.holder.incarnation),
            ],
        )
        .await?;
    if updated == 1 {
        return Ok(());
    }
    // Refused: say why (a rare path, so a read is fine here).
    let held = leases::holds(conn, p, &write.holder).await?;
    Err(if held {
        StoreError::Conflict(p.id)
    } else {
        StoreError::LeaseLost(p.id)
    })
}

/// Inserts an attempt, or updates the fields its outcome fills in.
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

/// Columns of one audit event row.
const EVENT_COLUMNS: usize = 9;

/// Appends audit events, all of them in one multi-row statement (the
/// trail is append-only).
pub(crate) async fn insert_events<C: Conn>(
    conn: &mut C,
    merchant: &str,
    events: &[PaymentEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO payment_events (id, payment_id, merchant_id, type, from_status, to_status, attempt_id, data, created_at) VALUES ",
    );
    let mut args = Vec::with_capacity(events.len() * EVENT_COLUMNS);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&placeholders(i * EVENT_COLUMNS + 1, EVENT_COLUMNS));
        sql.push(')');
        args.extend([
            text(event.id.to_string()),
            text(event.payment_id.to_string()),
            text(merchant),
            text(&event.kind),
            Arg::Text(event.from_status.map(|s| s.as_str().to_string())),
            Arg::Text(event.to_status.map(|s| s.as_str().to_string())),
            Arg::Text(event.attempt_id.map(|id| id.to_string())),
            text(event.data.to_string()),
            int(event.created_at.as_micros()),
        ]);
    }
    conn.execute(&sql, args).await?;
    Ok(())
}
