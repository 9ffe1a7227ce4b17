//! The supervisor: owns graceful shutdown.
//!
//! Provider actors are started under actix's `Supervisor`, which restarts
//! them if they stop; payment actors are started on demand by the registry
//! and hold no state worth restarting. What is left for this actor is the
//! ordered stop: refuse new payments, let in-flight attempts finish within a
//! bounded grace period, then make every accepted write durable.

use super::reconciler::Reconciler;
use super::registry::PaymentRegistry;
use crate::messages::reconciler::StopPasses;
use crate::messages::supervisor::Shutdown;
use crate::store::Store;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often shutdown checks whether in-flight work has drained.
const DRAIN_POLL_MS: u64 = 10;
/// How often idle payment actors are looked for and retired.
const SWEEP_INTERVAL_MS: u64 = 1_000;

/// Coordinates the engine's shutdown.
pub struct Supervisor {
    registry: PaymentRegistry,
    store: Arc<dyn Store>,
    reconciler: Addr<Reconciler>,
    /// Stopped before the store closes, like the reconciler.
    deliverer: Option<Addr<super::deliverer::Deliverer>>,
}

impl Supervisor {
    /// Has shutdown stop `deliverer` before the store closes.
    pub fn with_deliverer(mut self, deliverer: Addr<super::deliverer::Deliverer>) -> Self {
        self.deliverer = Some(deliverer);
        self
    }

    pub fn new(
        registry: PaymentRegistry,
        store: Arc<dyn Store>,
        reconciler: Addr<Reconciler>,
    ) -> Self {
        Supervisor {
            registry,
            store,
            reconciler,
            deliverer: None,
        }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // One sweeper for every payment actor, instead of a timer each.
        ctx.run_interval(Duration::from_millis(SWEEP_INTERVAL_MS), |act, _ctx| {
            let retired = act.registry.sweep();
            if retired > 0 {
                tracing::debug!(
                    retired,
                    live = act.registry.live_actors(),
                    "idle payment actors retired"
                );
            }
        });
    }
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let registry = self.registry.clone();
        let store = self.store.clone();
        let reconciler = self.reconciler.clone();
        let deliverer = self.deliverer.clone();
        Box::pin(async move {
            registry.stop_accepting();
            let deadline = Instant::now() + Duration::from_millis(msg.grace_ms);
            while registry.in_flight() > 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(DRAIN_POLL_MS)).await;
            }
            let abandoned = registry.in_flight();
            if abandoned > 0 {
                // Their attempts are durable as `processing`; recovery at the
                // next start finishes them.
                tracing::warn!(
                    abandoned,
                    "shutdown grace period over with payments in flight"
                );
            }
            // The reconciler lets go of the store before it closes, so no
            // connection outlives the runtime that owns it.
            let _ = reconciler.send(StopPasses).await;
            if let Some(deliverer) = deliverer {
                let _ = deliverer
                    .send(crate::messages::deliverer::StopDelivery)
                    .await;
            }
            store.close().await;
            tracing::info!("engine drained and store flushed");
        })
    }
}
