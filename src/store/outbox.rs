//! The outbox's store interface (DESIGN §11): outgoing events, their
//! webhook deliveries and their NATS publication.
//!
//! Events themselves are written by the payment, refund and reconciliation
//! writes (`sql::outbox::append`, called inside those writes' transaction),
//! so nothing here creates one. What is here serves the deliverer (fan-out,
//! claim under a lease, finish) and the API (list, redeliver).
//!
//! Delivery rows are made lazily: the deliverer's fan-out turns each new
//! event into one row per matching `[[webhooks]]` endpoint. The payment
//! write then needs no knowledge of the configuration and adds one row,
//! and an endpoint added later receives events from then on, not history.

use super::ops::{WriteOp, WriteReply};
use super::sql::outbox as sql;
use super::{SqlBackend, StoreError};
use crate::domain::{EventId, MerchantId, OutgoingEvent, OutgoingEventType, Timestamp};
use async_trait::async_trait;
use std::sync::Arc;

/// Filters of `GET /v1/events` (and the look-up of one event).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this merchant's; `None`: every merchant's (operators).
    pub merchant_id: Option<MerchantId>,
    pub id: Option<EventId>,
    pub kind: Option<OutgoingEventType>,
    pub starting_after: Option<EventId>,
    pub limit: u32,
}

/// Which events one webhook endpoint receives.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRoute {
    /// Stable across restarts and instances (derived from merchant and URL).
    pub id: String,
    pub url: String,
    pub merchant_id: MerchantId,
    /// `None`: every type.
    pub events: Option<Vec<OutgoingEventType>>,
}

impl EndpointRoute {
    pub fn wants(&self, merchant: &str, kind: &str) -> bool {
        self.merchant_id.as_str() == merchant
            && self
                .events
                .as_ref()
                .is_none_or(|events| events.iter().any(|e| e.as_str() == kind))
    }
}

/// A delivery this instance holds the lease of, with what to send.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub event: OutgoingEvent,
    pub endpoint_id: String,
    pub endpoint_url: String,
    /// Tries made before this one.
    pub attempts: u32,
}

/// What became of one try.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    Delivered,
    /// Failed; try again at `at`.
    Retry {
        at: Timestamp,
        error: String,
    },
    /// Failed for the last time: dead-lettered (an operator may redeliver).
    Dead {
        error: String,
    },
}

/// The end of one try, written only while `holder` still holds the lease.
#[derive(Debug, Clone)]
pub struct FinishedDelivery {
    pub event_id: EventId,
    pub endpoint_id: String,
    pub holder: String,
    pub outcome: DeliveryOutcome,
    pub now: Timestamp,
}

/// The outbox's writes, as one [`WriteOp`] variant.
#[derive(Debug, Clone)]
pub enum OutboxOp {
    /// Makes delivery rows for up to `limit` events not fanned out yet.
    FanOut {
        routes: Arc<Vec<EndpointRoute>>,
        now: Timestamp,
        limit: u32,
    },
    /// Takes the lease of up to `limit` due deliveries.
    Claim {
        holder: String,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    },
    Finish(FinishedDelivery),
    /// Queues `event_id` again for each matching endpoint, dead or not.
    Redeliver {
        event_id: EventId,
        routes: Arc<Vec<EndpointRoute>>,
        now: Timestamp,
    },
    MarkPublished {
        ids: Vec<EventId>,
        now: Timestamp,
    },
}

/// What an [`OutboxOp`] answers.
#[derive(Debug)]
pub enum OutboxReply {
    Count(u64),
    Claimed(Vec<ClaimedDelivery>),
}

/// The outbox as the engine uses it; implemented for every backend.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn events(&self, filter: &EventFilter) -> Result<Vec<OutgoingEvent>, StoreError>;
    async fn fan_out(
        &self,
        routes: Arc<Vec<EndpointRoute>>,
        now: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError>;
    async fn claim_deliveries(
        &self,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    async fn finish_delivery(&self, finished: FinishedDelivery) -> Result<bool, StoreError>;
    async fn redeliver(
        &self,
        event_id: EventId,
        routes: Arc<Vec<EndpointRoute>>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;
    /// Events not yet published to NATS, oldest first.
    async fn unpublished_events(&self, limit: u32) -> Result<Vec<OutgoingEvent>, StoreError>;
    async fn mark_published(&self, ids: Vec<EventId>, now: Timestamp) -> Result<u64, StoreError>;
}

async fn outbox_write<B: SqlBackend + ?Sized>(
    backend: &B,
    op: OutboxOp,
) -> Result<OutboxReply, StoreError> {
    match backend.write(WriteOp::Outbox(Box::new(op))).await? {
        WriteReply::Outbox(reply) => Ok(reply),
        _ => Err(StoreError::Corrupt(
            "an outbox write answered wrongly".into(),
        )),
    }
}

fn count(reply: OutboxReply) -> Result<u64, StoreError> {
    match reply {
        OutboxReply::Count(n) => Ok(n),
        OutboxReply::Claimed(_) => Err(StoreError::Corrupt("outbox reply kind".into())),
    }
}

#[async_trait]
impl<B: SqlBackend> OutboxStore for B {
    async fn events(&self, filter: &EventFilter) -> Result<Vec<OutgoingEvent>, StoreError> {
        sql::list(&mut self.read().await?, filter).await
    }

    async fn fan_out(
        &self,
        routes: Arc<Vec<EndpointRoute>>,
        now: Timestamp,
        limit: u32,
    ) -> Result<u64, StoreError> {
        count(outbox_write(self, OutboxOp::FanOut { routes, now, limit }).await?)
    }

    async fn claim_deliveries(
        &self,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let op = OutboxOp::Claim {
            holder: holder.to_string(),
            now,
            lease_until,
            limit,
        };
        match outbox_write(self, op).await? {
            OutboxReply::Claimed(claimed) => Ok(claimed),
            OutboxReply::Count(_) => Err(StoreError::Corrupt("outbox reply kind".into())),
        }
    }

    async fn finish_delivery(&self, finished: FinishedDelivery) -> Result<bool, StoreError> {
        Ok(count(outbox_write(self, OutboxOp::Finish(finished)).await?)? == 1)
    }

    async fn redeliver(
        &self,
        event_id: EventId,
        routes: Arc<Vec<EndpointRoute>>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let op = OutboxOp::Redeliver {
            event_id,
            routes,
            now,
        };
        count(outbox_write(self, op).await?)
    }

    async fn unpublished_events(&self, limit: u32) -> Result<Vec<OutgoingEvent>, StoreError> {
        sql::unpublished(&mut self.read().await?, limit).await
    }

    async fn mark_published(&self, ids: Vec<EventId>, now: Timestamp) -> Result<u64, StoreError> {
        count(outbox_write(self, OutboxOp::MarkPublished { ids, now }).await?)
    }
}
