//! The outbox's SQL: appending events (inside the writes that change
//! payments, refunds and discrepancies), listing them, and their webhook
//! deliveries under a lease (see `store::outbox`).

use super::{int, placeholders, text, Arg, Conn};
use crate::domain::{Discrepancy, DiscrepancyStatus, EventId, OutgoingEvent, Timestamp};
use crate::store::outbox::{
    ClaimedDelivery, DeliveryOutcome, EndpointRoute, EventFilter, FinishedDelivery, OutboxOp,
    OutboxReply,
};
use crate::store::rows::RowExt;
use crate::store::{Finding, StoreError};
use std::fmt::Write;

/// The columns an event is read from.
const EVENT_COLUMNS: &str = "id, merchant_id, type, payment_id, refund_id, data, created_at";
/// Columns of one delivery row as fan-out inserts it.
const DELIVERY_COLUMNS: usize = 7;

/// Appends `event`; called inside the write that made the change it
/// reports, so the two commit or roll back together.
pub(crate) async fn append<C: Conn>(conn: &mut C, event: &OutgoingEvent) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO events (id, merchant_id, type, payment_id, refund_id, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        vec![
            text(event.id.to_string()),
            text(event.merchant_id.as_str()),
            text(event.kind.as_str()),
            Arg::Text(event.payment_id.map(|id| id.to_string())),
            Arg::Text(event.refund_id.map(|id| id.to_string())),
            text(event.object.to_string()),
            int(event.created.as_micros()),
        ],
    )
    .await?;
    Ok(())
}

/// Appends `event` if there is one (a change that is no merchant's news
/// has none).
pub(crate) async fn append_opt<C: Conn>(
    conn: &mut C,
    event: Option<OutgoingEvent>,
) -> Result<(), StoreError> {
    match event {
        Some(event) => append(conn, &event).await,
        None => Ok(()),
    }
}

/// The event of the discrepancy `record` just inserted, as the API shows it.
pub(crate) async fn append_discrepancy<C: Conn>(
    conn: &mut C,
    id: &str,
    run_id: &str,
    f: &Finding,
    now: Timestamp,
) -> Result<(), StoreError> {
    let discrepancy = Discrepancy {
        id: id.to_string(),
        object: "discrepancy",
        run_id: run_id.to_string(),
        category: f.category,
        severity: f.category.severity(),
        merchant_id: f.merchant_id.clone(),
        payment_id: f.payment_id,
        provider: f.provider.clone(),
        provider_reference: f.provider_reference.clone(),
        expected: f.expected.clone(),
        actual: f.actual.clone(),
        status: DiscrepancyStatus::Open,
        resolution: None,
        created_at: now,
        resolved_at: None,
    };
    append_opt(conn, OutgoingEvent::for_discrepancy(&discrepancy)).await
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("events.{what}"))
}

fn parse_opt<T: std::str::FromStr>(
    value: Option<String>,
    what: &str,
) -> Result<Option<T>, StoreError> {
    value
        .map(|v| v.parse().map_err(|_| corrupt(what)))
        .transpose()
}

fn event(row: &impl RowExt) -> Result<OutgoingEvent, StoreError> {
    Ok(OutgoingEvent {
        id: row.text("id")?.parse().map_err(|_| corrupt("id"))?,
        merchant_id: crate::domain::MerchantId::new(row.text("merchant_id")?),
        kind: row.text("type")?.parse().map_err(|_| corrupt("type"))?,
        payment_id: parse_opt(row.opt_text("payment_id")?, "payment_id")?,
        refund_id: parse_opt(row.opt_text("refund_id")?, "refund_id")?,
        object: serde_json::from_str(&row.text("data")?).map_err(|_| corrupt("data"))?,
        created: Timestamp::from_micros(row.int("created_at")?)
            .ok_or_else(|| corrupt("created"))?,
    })
}

/// Events matching `filter`, newest first.
pub(crate) async fn list<C: Conn>(
    conn: &mut C,
    filter: &EventFilter,
) -> Result<Vec<OutgoingEvent>, StoreError> {
    let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
    let mut args = Vec::new();
    let mut push = |sql: &mut String, condition: &str, arg: Arg| {
        args.push(arg);
        let _ = write!(sql, " AND {condition} ${}", args.len());
    };
    if let Some(merchant) = &filter.merchant_id {
        push(&mut sql, "merchant_id =", text(merchant.as_str()));
    }
    if let Some(id) = filter.id {
        push(&mut sql, "id =", text(id.to_string()));
    }
    if let Some(kind) = filter.kind {
        push(&mut sql, "type =", text(kind.as_str()));
    }
    if let Some(cursor) = filter.starting_after {
        push(&mut sql, "id <", text(cursor.to_string()));
    }
    args.push(int(i64::from(filter.limit)));
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", args.len());
    let rows = conn.fetch_all(&sql, args).await?;
    rows.iter().map(event).collect()
}

/// Events JetStream has not acknowledged yet, oldest first.
pub(crate) async fn unpublished<C: Conn>(
    conn: &mut C,
    limit: u32,
) -> Result<Vec<OutgoingEvent>, StoreError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE published_at IS NULL
         ORDER BY created_at, id LIMIT $1"
    );
    let rows = conn.fetch_all(&sql, vec![int(i64::from(limit))]).await?;
    rows.iter().map(event).collect()
}

/// Runs one outbox write inside the caller's transaction.
pub(crate) async fn apply<C: Conn>(conn: &mut C, op: &OutboxOp) -> Result<OutboxReply, StoreError> {
    match op {
        OutboxOp::FanOut { routes, now, limit } => fan_out(conn, routes, *now, *limit).await,
        OutboxOp::Claim {
            holder,
            now,
            lease_until,
            limit,
        } => claim(conn, holder, *now, *lease_until, *limit)
            .await
            .map(OutboxReply::Claimed),
        OutboxOp::Finish(finished) => finish(conn, finished).await,
        OutboxOp::Redeliver {
            event_id,
            routes,
            now,
        } => redeliver(conn, *event_id, routes, *now).await,
        OutboxOp::MarkPublished { ids, now } => mark_published(conn, ids, *now).await,
    }
}

/// Makes the deliveries of up to `limit` new events (none for an event no
/// endpoint wants) and marks them fanned out. Two instances fanning out
/// the same event make its rows once: the key refuses the second.
async fn fan_out<C: Conn>(
    conn: &mut C,
    routes: &[EndpointRoute],
    now: Timestamp,
    limit: u32,
) -> Result<OutboxReply, StoreError> {
    let rows = conn
        .fetch_all(
            "SELECT id, merchant_id, type FROM events WHERE fanned_out = 0
             ORDER BY created_at, id LIMIT $1",
            vec![int(i64::from(limit))],
        )
        .await?;
    if rows.is_empty() {
        return Ok(OutboxReply::Count(0));
    }
    let mut ids = Vec::with_capacity(rows.len());
    let mut deliveries = Vec::new();
    for row in &rows {
        let (id, merchant, kind) = (row.text("id")?, row.text("merchant_id")?, row.text("type")?);
        for route in routes.iter().filter(|r| r.wants(&merchant, &kind)) {
            deliveries.push((id.clone(), route, merchant.clone()));
        }
        ids.push(id);
    }
    for chunk in deliveries.chunks(100) {
        insert_deliveries(conn, chunk, now).await?;
    }
    let sql = format!(
        "UPDATE events SET fanned_out = 1 WHERE id IN ({})",
        placeholders(1, ids.len())
    );
    conn.execute(&sql, ids.iter().map(text).collect()).await?;
    Ok(OutboxReply::Count(ids.len() as u64))
}

async fn insert_deliveries<C: Conn>(
    conn: &mut C,
    deliveries: &[(String, &EndpointRoute, String)],
    now: Timestamp,
) -> Result<(), StoreError> {
    let mut sql = String::from(
        "INSERT INTO webhook_deliveries (event_id, endpoint_id, endpoint_url, merchant_id, status,
            next_attempt_at, created_at, updated_at) VALUES ",
    );
    let mut args = Vec::with_capacity(deliveries.len() * DELIVERY_COLUMNS);
    for (i, (event_id, route, merchant)) in deliveries.iter().enumerate() {
        let first = i * DELIVERY_COLUMNS + 1;
        let _ = write!(
            sql,
            "{}(${}, ${}, ${}, ${}, 'pending', ${}, ${}, ${})",
            if i == 0 { "" } else { ", " },
            first,
            first + 1,
            first + 2,
            first + 3,
            first + 4,
            first + 5,
            first + 6,
        );
        args.extend([
            text(event_id),
            text(&route.id),
            text(&route.url),
            text(merchant),
            int(now.as_micros()),
            int(now.as_micros()),
            int(now.as_micros()),
        ]);
    }
    sql.push_str(" ON CONFLICT (event_id, endpoint_id) DO NOTHING");
    conn.execute(&sql, args).await?;
    Ok(())
}

/// The condition of a delivery anyone may take now.
const CLAIMABLE: &str = "status = 'pending' AND next_attempt_at <= $3
    AND (lease_until IS NULL OR lease_until < $3)";

/// Takes the lease of up to `limit` due deliveries. The condition is
/// repeated outside the subquery: on PostgreSQL a row another instance
/// claimed meanwhile is re-checked after its lock is released and
/// skipped, so each delivery has one holder at a time.
async fn claim<C: Conn>(
    conn: &mut C,
    holder: &str,
    now: Timestamp,
    lease_until: Timestamp,
    limit: u32,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    let sql = format!(
        "UPDATE webhook_deliveries SET lease_holder = $1, lease_until = $2
         WHERE {CLAIMABLE} AND (event_id, endpoint_id) IN (
             SELECT event_id, endpoint_id FROM webhook_deliveries WHERE {CLAIMABLE}
             ORDER BY next_attempt_at LIMIT $4)
         RETURNING event_id, endpoint_id, endpoint_url, attempts"
    );
    let args = vec![
        text(holder),
        int(lease_until.as_micros()),
        int(now.as_micros()),
        int(i64::from(limit)),
    ];
    let rows = conn.fetch_all(&sql, args).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut claimed = Vec::with_capacity(rows.len());
    let mut event_ids = Vec::with_capacity(rows.len());
    for row in &rows {
        event_ids.push(row.text("event_id")?);
    }
    event_ids.sort();
    event_ids.dedup();
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE id IN ({})",
        placeholders(1, event_ids.len())
    );
    let events = conn
        .fetch_all(&sql, event_ids.iter().map(text).collect())
        .await?
        .iter()
        .map(event)
        .collect::<Result<Vec<_>, _>>()?;
    for row in &rows {
        let event_id = row.text("event_id")?;
        let Some(event) = events.iter().find(|e| e.id.to_string() == event_id) else {
            return Err(StoreError::Corrupt(format!(
                "delivery of missing event {event_id}"
            )));
        };
        claimed.push(ClaimedDelivery {
            event: event.clone(),
            endpoint_id: row.text("endpoint_id")?,
            endpoint_url: row.text("endpoint_url")?,
            attempts: u32::try_from(row.int("attempts")?).unwrap_or(u32::MAX),
        });
    }
    Ok(claimed)
}

/// Records a try's end and gives the lease back; a holder whose lease was
/// taken over (it outlived it) changes nothing.
async fn finish<C: Conn>(conn: &mut C, f: &FinishedDelivery) -> Result<OutboxReply, StoreError> {
    let (status, next, error) = match &f.outcome {
        DeliveryOutcome::Delivered => ("delivered", None, None),
        DeliveryOutcome::Retry { at, error } => ("pending", Some(at.as_micros()), Some(error)),
        DeliveryOutcome::Dead { error } => ("dead", None, Some(error)),
    };
    let updated = conn
        .execute(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1,
                next_attempt_at = COALESCE($2, next_attempt_at), last_error = $3,
                lease_holder = NULL, lease_until = NULL, updated_at = $4
             WHERE event_id = $5 AND endpoint_id = $6 AND lease_holder = $7",
            vec![
                text(status),
                Arg::Int(next),
                Arg::Text(error.cloned()),
                int(f.now.as_micros()),
                text(f.event_id.to_string()),
                text(&f.endpoint_id),
                text(&f.holder),
            ],
        )
        .await?;
    Ok(OutboxReply::Count(updated))
}

/// Queues `event_id` again, from its first try, for every endpoint that
/// wants it; a delivery row that does not exist yet is made.
async fn redeliver<C: Conn>(
    conn: &mut C,
    event_id: EventId,
    routes: &[EndpointRoute],
    now: Timestamp,
) -> Result<OutboxReply, StoreError> {
    let Some(row) = conn
        .fetch_optional(
            "SELECT merchant_id, type FROM events WHERE id = $1",
            vec![text(event_id.to_string())],
        )
        .await?
    else {
        return Ok(OutboxReply::Count(0));
    };
    let (merchant, kind) = (row.text("merchant_id")?, row.text("type")?);
    let mut queued = 0;
    for route in routes.iter().filter(|r| r.wants(&merchant, &kind)) {
        queued += conn
            .execute(
                "INSERT INTO webhook_deliveries (event_id, endpoint_id, endpoint_url, merchant_id,
                    status, next_attempt_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'pending', $5, $5, $5)
                 ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending',
                    attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = NULL,
                    lease_holder = NULL, lease_until = NULL, updated_at = excluded.updated_at",
                vec![
                    text(event_id.to_string()),
                    text(&route.id),
                    text(&route.url),
                    text(&merchant),
                    int(now.as_micros()),
                ],
            )
            .await?;
    }
    Ok(OutboxReply::Count(queued))
}

async fn mark_published<C: Conn>(
    conn: &mut C,
    ids: &[EventId],
    now: Timestamp,
) -> Result<OutboxReply, StoreError> {
    if ids.is_empty() {
        return Ok(OutboxReply::Count(0));
    }
    let sql = format!(
        "UPDATE events SET published_at = $1 WHERE id IN ({})",
        placeholders(2, ids.len())
    );
    let mut args = vec![int(now.as_micros())];
    args.extend(ids.iter().map(|id| text(id.to_string())));
    Ok(OutboxReply::Count(conn.execute(&sql, args).await?))
}
