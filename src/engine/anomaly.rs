//! The anomaly actor's place in the engine (DESIGN §10): started and
//! warmed at boot, before the engine takes payments; its flags read back
//! for `GET /v1/anomalies`.

use super::{EngineHandle, Page};
use crate::actors::{AnomalyActor, AnomalyGate};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::AnomalyFlagRecord;
use crate::error::EngineError;
use crate::store::{AnomalyFilter, Store};
use actix::Actor;
use std::sync::Arc;
use std::time::Instant;

/// Starts the anomaly actor, rebuilds its windows from the store's recent
/// payments, and returns the gate the payment path checks.
pub(super) async fn start(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<AnomalyGate, EngineError> {
    let settings = &config.anomaly;
    let actor = AnomalyActor::new(settings.clone(), clock.clone());
    let detector = actor.detector();
    let addr = actor.start();
    let started = Instant::now();
    let warmed =
        crate::actors::anomaly::warm_from_store(store.as_ref(), &addr, settings, clock.now())
            .await?;
    tracing::info!(
        warmed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        scope = ?settings.scope,
        "anomaly windows warmed from the store"
    );
    Ok(AnomalyGate::new(addr, detector, settings, store))
}

impl EngineHandle {
    /// Anomaly flags matching `filter`, newest first (narrow it by
    /// `merchant_id` for a merchant: its own only).
    pub async fn anomalies(
        &self,
        filter: AnomalyFilter,
    ) -> Result<Page<AnomalyFlagRecord>, EngineError> {
        let store = self.inner.store.clone();
        let limit = filter.limit;
        let asked = AnomalyFilter {
            limit: limit.saturating_add(1),
            ..filter
        };
        let mut data = self
            .on_engine(async move { store.anomaly_flags(&asked).await })
            .await??;
        let has_more = data.len() > limit as usize;
        data.truncate(limit as usize);
        Ok(Page { data, has_more })
    }
}
