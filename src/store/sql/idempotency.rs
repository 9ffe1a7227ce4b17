//! The idempotency key's record: read, answered, pruned.
//!
//! The key itself is claimed by [`super::payments::begin`], in the same
//! statement order as the order claim that depends on it; what lives here
//! is everything done to a key once it exists.

use super::{int, text, Conn};
use crate::domain::{MerchantId, Payment, Timestamp};
use crate::store::rows;
use crate::store::{IdempotencyRecord, StoreError, StoredResponse};

/// The record `key` maps to for `merchant`, if the key was ever claimed.
pub(crate) async fn record<C: Conn>(
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

/// Stores the final answer under the key that created `payment`, stamped
/// with the payment's `updated_at`. Only the first final answer is stored:
/// a replay never changes.
pub(crate) async fn store_response<C: Conn>(
    conn: &mut C,
    payment: &Payment,
    response: &StoredResponse,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE idempotency_keys SET response_body = $1, completed_at = $2
             WHERE merchant_id = $3 AND payment_id = $4 AND refund_id IS NULL AND response_body IS NULL",
        vec![
            text(&response.body),
            int(payment.updated_at.as_micros()),
            text(payment.merchant_id.as_str()),
            text(payment.id.to_string()),
        ],
    )
    .await?;
    Ok(())
}

/// Deletes answered idempotency records created before `before`.
///
/// Unanswered ones are kept whatever their age: their request may still be
/// running, and a retry must find the key taken.
pub(crate) async fn prune<C: Conn>(conn: &mut C, before: Timestamp) -> Result<u64, StoreError> {
    conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < $1 AND response_body IS NOT NULL",
        vec![int(before.as_micros())],
    )
    .await
}
