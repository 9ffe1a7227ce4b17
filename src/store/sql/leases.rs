//! The order lease: which instance works on an order, and until when.
//!
//! The lease lives on the `orders` row. It is first given with the order
//! claim in [`super::payments::begin`]; here it is taken over by recovery
//! ([`claim_lease`]) and renewed or released with each save
//! ([`update_order`]), always inside the caller's transaction.

use super::{int, opt_int, text, Conn};
use crate::domain::{MerchantId, Payment, PaymentId, Timestamp};
use crate::store::{LeaseChange, StoreError};

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

/// Mirrors a saved payment's status onto its order row and renews or
/// releases the lease, as part of [`super::payments::save`].
///
/// A release keeps nothing of the lease, so the recovery scan sees the
/// order as free at once; a renewal keeps the owner and moves the expiry.
pub(crate) async fn update_order<C: Conn>(
    conn: &mut C,
    p: &Payment,
    lease: LeaseChange,
) -> Result<(), StoreError> {
    let (keep_owner, lease_expires_at) = match lease {
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
            text(p.merchant_id.as_str()),
            text(&p.order_id),
            text(p.id.to_string()),
        ],
    )
    .await?;
    Ok(())
}
