//! The supervisor: owns graceful shutdown.
//!
//! Provider actors are started under actix's `Supervisor`, which restarts
//! them if they stop; payment actors are started on demand by the registry
//! and hold no state worth restarting. What is left for this actor is the
//! ordered stop: refuse new payments, let in-flight attempts finish within a
//! bounded grace period, then make every accepted write durable.

use super::registry::PaymentRegistry;
use crate::messages::supervisor::Shutdown;
use crate::store::Store;
use actix::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often shutdown checks whether in-flight work has drained.
const DRAIN_POLL_MS: u64 = 10;

/// Coordinates the engine's shutdown.
pub struct Supervisor {
    registry: PaymentRegistry,
    store: Arc<dyn Store>,
}

impl Supervisor {
    pub fn new(registry: PaymentRegistry, store: Arc<dyn Store>) -> Self {
        Supervisor { registry, store }
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

impl Handler<Shutdown> for Supervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, msg: Shutdown, _ctx: &mut Self::Context) -> Self::Result {
        let registry = self.registry.clone();
        let store = self.store.clone();
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
            store.close().await;
            tracing::info!("engine drained and store flushed");
        })
    }
}
