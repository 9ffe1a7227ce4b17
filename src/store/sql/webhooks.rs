//! Inbound webhook receipts: each provider event is acted on once.

use super::payments::insert_events;
use super::{int, opt_text, reconcile, text, Arg, Conn};
use crate::store::{StoreError, WebhookRecord};

/// Discrepancies an inbound webhook raises carry this in place of a run id.
pub(crate) const WEBHOOK_RUN_ID: &str = "webhook";

/// Whether `provider`'s event `event_id` was received before.
pub(crate) async fn seen<C: Conn>(
    conn: &mut C,
    provider: &str,
    event_id: &str,
) -> Result<bool, StoreError> {
    let row = conn
        .fetch_optional(
            "SELECT 1 AS seen FROM webhook_receipts WHERE provider = $1 AND event_id = $2",
            vec![text(provider), text(event_id)],
        )
        .await?;
    Ok(row.is_some())
}

/// Stores the receipt and, only if it is the first for this event, the
/// audit events and the finding that go with it: a redelivery racing the
/// first delivery adds nothing. True if the receipt is new.
pub(crate) async fn record<C: Conn>(
    conn: &mut C,
    record: &WebhookRecord,
) -> Result<bool, StoreError> {
    let r = &record.receipt;
    let inserted = conn
        .execute(
            "INSERT INTO webhook_receipts (provider, event_id, kind, payment_id, refund_id, result, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (provider, event_id) DO NOTHING",
            vec![
                text(&r.provider),
                text(&r.event_id),
                text(&r.kind),
                Arg::Text(r.payment_id.map(|id| id.to_string())),
                opt_text(&r.refund_id.map(|id| id.to_string())),
                text(r.result.as_str()),
                int(r.received_at.as_micros()),
            ],
        )
        .await?;
    if inserted == 0 {
        return Ok(false);
    }
    if let Some(merchant) = &record.merchant_id {
        insert_events(conn, merchant.as_str(), &record.events).await?;
    }
    if let Some((id, finding)) = &record.finding {
        reconcile::record(conn, id, WEBHOOK_RUN_ID, finding, r.received_at).await?;
    }
    Ok(true)
}
