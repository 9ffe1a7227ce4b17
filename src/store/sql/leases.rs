//! The order lease: which instance works on an order, and until when.
//!
//! The lease lives on the `orders` row and names its holder as (instance
//! id, incarnation) (DESIGN §5). It is first given with the order claim in
//! [`super::payments::begin`]; here it is taken over by recovery
//! ([`claim_lease`]), renewed before a provider call ([`renew_lease`]), and
//! renewed or released with each save ([`update_order`]), always inside
//! the caller's transaction. Every one of these but the claim is fenced:
//! it changes the row only if the writer still holds the lease.

use super::{int, opt_int, text, Conn};
use crate::domain::{Payment, Timestamp};
use crate::store::rows::RowExt;
use crate::store::{LeaseChange, LeaseClaim, LeaseHolder, StoreError};

/// Takes the order's lease for `claim.holder` if nobody holds a live one.
/// The conditional update is the cross-instance arbiter of who recovers
/// what. A lease held by an earlier incarnation of the claimant's own
/// instance is dead whatever its expiry: that process was replaced.
pub(crate) async fn claim_lease<C: Conn>(
    conn: &mut C,
    claim: &LeaseClaim,
) -> Result<bool, StoreError> {
    let claimed = conn
        .execute(
            "UPDATE orders SET lease_owner = $1, lease_incarnation = $2, lease_expires_at = $3, updated_at = $4
             WHERE merchant_id = $5 AND order_id = $6 AND payment_id = $7
               AND (lease_owner IS NULL OR lease_expires_at < $4
                    OR (lease_owner = $1 AND lease_incarnation <= $2))",
            vec![
                text(&claim.holder.instance_id),
                int(claim.holder.incarnation),
                int(claim.expires_at.as_micros()),
                int(claim.now.as_micros()),
                text(claim.merchant_id.as_str()),
                text(&claim.order_id),
                text(claim.payment_id.to_string()),
            ],
        )
        .await?;
    Ok(claimed == 1)
}

/// Moves the lease's expiry, only if `claim.holder` still holds it.
pub(crate) async fn renew_lease<C: Conn>(
    conn: &mut C,
    claim: &LeaseClaim,
) -> Result<bool, StoreError> {
    let renewed = conn
        .execute(
            "UPDATE orders SET lease_expires_at = $1, updated_at = $2
             WHERE merchant_id = $3 AND order_id = $4 AND payment_id = $5
               AND lease_owner = $6 AND lease_incarnation = $7",
            vec![
                int(claim.expires_at.as_micros()),
                int(claim.now.as_micros()),
                text(claim.merchant_id.as_str()),
                text(&claim.order_id),
                text(claim.payment_id.to_string()),
                text(&claim.holder.instance_id),
                int(claim.holder.incarnation),
            ],
        )
        .await?;
    Ok(renewed == 1)
}

/// Mirrors a saved payment's status onto its order row and renews or
/// releases the lease, as part of [`super::payments::save`]; refused with
/// [`StoreError::LeaseLost`] unless `holder` holds the lease.
///
/// A release keeps nothing of the lease, so the recovery scan sees the
/// order as free at once; a renewal keeps the holder and moves the expiry.
pub(crate) async fn update_order<C: Conn>(
    conn: &mut C,
    p: &Payment,
    lease: LeaseChange,
    holder: &LeaseHolder,
) -> Result<(), StoreError> {
    let (keep, lease_expires_at) = match lease {
        LeaseChange::Renew { expires_at } => (1, Some(expires_at.as_micros())),
        LeaseChange::Release => (0, None),
    };
    let updated = conn
        .execute(
            "UPDATE orders SET status = $1,
                lease_owner = CASE WHEN $2 = 1 THEN lease_owner ELSE NULL END,
                lease_incarnation = CASE WHEN $2 = 1 THEN lease_incarnation ELSE NULL END,
                lease_expires_at = $3, updated_at = $4
             WHERE merchant_id = $5 AND order_id = $6 AND payment_id = $7
               AND lease_owner = $8 AND lease_incarnation = $9",
            vec![
                text(p.status.as_str()),
                int(keep),
                opt_int(lease_expires_at),
                int(p.updated_at.as_micros()),
                text(p.merchant_id.as_str()),
                text(&p.order_id),
                text(p.id.to_string()),
                text(&holder.instance_id),
                int(holder.incarnation),
            ],
        )
        .await?;
    if updated != 1 {
        return Err(StoreError::LeaseLost(p.id));
    }
    Ok(())
}

/// Whether `holder` holds the lease of `p`'s order.
pub(crate) async fn holds<C: Conn>(
    conn: &mut C,
    p: &Payment,
    holder: &LeaseHolder,
) -> Result<bool, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT lease_owner, lease_incarnation FROM orders
             WHERE merchant_id = $1 AND order_id = $2 AND payment_id = $3",
            vec![
                text(p.merchant_id.as_str()),
                text(&p.order_id),
                text(p.id.to_string()),
            ],
        )
        .await?;
    let Some(row) = row else { return Ok(false) };
    Ok(
        row.opt_text("lease_owner")?.as_deref() == Some(holder.instance_id.as_str())
            && row.opt_int("lease_incarnation")? == Some(holder.incarnation),
    )
}

/// Records a boot of `instance_id`; returns its incarnation.
pub(crate) async fn register_instance<C: Conn>(
    conn: &mut C,
    instance_id: &str,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let row = conn
        .fetch_optional(
            "INSERT INTO instances (instance_id, incarnation, started_at) VALUES ($1, 1, $2)
             ON CONFLICT (instance_id) DO UPDATE
                SET incarnation = instances.incarnation + 1, started_at = excluded.started_at
             RETURNING incarnation",
            vec![text(instance_id), int(now.as_micros())],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("instance registration returned nothing".into()))?;
    let incarnation = row.int("incarnation")?;
    assert!(incarnation > 0, "incarnations start at 1");
    Ok(incarnation)
}
