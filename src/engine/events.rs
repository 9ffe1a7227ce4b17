//! Outgoing events (DESIGN §6, §11): the deliverer started at boot, and
//! the handle's listing and redelivery.

use super::{EngineHandle, Page};
use crate::actors::deliverer::{DeliveryPlan, EndpointTarget};
use crate::actors::Deliverer;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::domain::{EventId, MerchantId, OutgoingEvent};
use crate::error::EngineError;
use crate::store::outbox::{EndpointRoute, EventFilter};
use crate::store::{LeaseHolder, Store};
use actix::{Actor, Addr};
use std::sync::Arc;
use std::time::Duration;

/// The `[[webhooks]]` endpoints as the store routes events to them.
fn routes(config: &Config) -> Arc<Vec<EndpointRoute>> {
    Arc::new(targets(config).into_iter().map(|t| t.route).collect())
}

fn targets(config: &Config) -> Vec<EndpointTarget> {
    config
        .webhooks
        .iter()
        .map(|endpoint| EndpointTarget {
            route: EndpointRoute {
                id: endpoint.id(),
                url: endpoint.url.clone(),
                merchant_id: endpoint.merchant_id(),
                events: endpoint.event_types(),
            },
            secret: endpoint.secret.expose().to_string(),
        })
        .collect()
}

/// Starts the deliverer on the engine's arbiter.
pub(super) fn start_deliverer(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    holder: &LeaseHolder,
) -> Result<Addr<Deliverer>, EngineError> {
    let delivery = &config.webhook_delivery;
    let plan = DeliveryPlan {
        endpoints: targets(config),
        max_attempts: delivery.max_attempts,
        backoff_base: delivery.backoff_base,
        timeout: Duration::from_millis(delivery.timeout_ms),
        poll_interval: Duration::from_millis(delivery.poll_interval_ms),
        holder: format!("{}#{}", holder.instance_id, holder.incarnation),
        #[cfg(feature = "nats")]
        nats: config.events.nats.clone(),
    };
    let deliverer = Deliverer::new(store, clock, plan).map_err(EngineError::Config)?;
    Ok(deliverer.start())
}

impl EngineHandle {
    /// The merchant's outgoing events, newest first (`filter.merchant_id`
    /// is set from `merchant`).
    pub async fn events(
        &self,
        merchant: &MerchantId,
        filter: EventFilter,
    ) -> Result<Page<OutgoingEvent>, EngineError> {
        let store = self.inner.store.clone();
        let limit = filter.limit;
        let asked = EventFilter {
            merchant_id: Some(merchant.clone()),
            limit: limit.saturating_add(1),
            ..filter
        };
        let mut data = self
            .on_engine(async move { store.outbox().events(&asked).await })
            .await??;
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(Page { data, has_more })
    }

    /// Queues event `id` (any merchant's: an operator acts) for delivery
    /// again to every endpoint that wants it, dead-lettered ones included.
    pub async fn redeliver_event(&self, id: EventId) -> Result<OutgoingEvent, EngineError> {
        let store = self.inner.store.clone();
        let filter = EventFilter {
            id: Some(id),
            limit: 1,
            ..EventFilter::default()
        };
        let event = self
            .on_engine(async move { store.outbox().events(&filter).await })
            .await??
            .pop()
            .ok_or(EngineError::NotFound { resource: "event" })?;
        let (store, routes) = (self.inner.store.clone(), routes(&self.inner.config));
        let now = SystemClock.now();
        let queued = self
            .on_engine(async move { store.outbox().redeliver(id, routes, now).await })
            .await??;
        tracing::info!(event_id = %id, deliveries = queued, "event queued for redelivery");
        Ok(event)
    }
}
