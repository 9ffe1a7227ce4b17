//! Rebuilding the windows at boot from the payments in the store (DESIGN
//! §10: a deploy opens no gap for an attacker to time).

use super::{AnomalyActor, WARM_MAX_PAYMENTS, WARM_PAGE_PAYMENTS};
use crate::config::AnomalySettings;
use crate::domain::Timestamp;
use crate::error::EngineError;
use crate::messages::anomaly::Warm;
use crate::store::Store;
use actix::Addr;

/// Reads the payments of the last `warm_horizon_secs` before `now`, oldest
/// first, a page of [`WARM_PAGE_PAYMENTS`] at a time, and sends each page
/// to the actor as a [`Warm`]; stops after [`WARM_MAX_PAYMENTS`] (logged).
/// Returns how many payments were replayed.
pub async fn warm_from_store(
    store: &dyn Store,
    actor: &Addr<AnomalyActor>,
    settings: &AnomalySettings,
    now: Timestamp,
) -> Result<usize, EngineError> {
    let horizon_secs = settings.warm_horizon_secs();
    if horizon_secs == 0 {
        return Ok(0);
    }
    let since = now.plus_millis(-i64::from(horizon_secs) * 1_000);
    let page = u32::try_from(WARM_PAGE_PAYMENTS).unwrap_or(u32::MAX);
    let (mut after, mut warmed) = (None, 0);
    let pages = WARM_MAX_PAYMENTS.div_ceil(WARM_PAGE_PAYMENTS);
    for _ in 0..pages {
        let rows = store.recent_payments(since, after.take(), page).await?;
        let full = rows.len() == WARM_PAGE_PAYMENTS;
        after = rows.last().map(|(id, _)| id.clone());
        let payments = rows.into_iter().map(|(_, payment)| payment).collect();
        warmed += actor.send(Warm(payments)).await.map_err(|_| {
            EngineError::Internal("the anomaly actor stopped during warm-up".into())
        })?;
        if !full {
            return Ok(warmed);
        }
    }
    tracing::warn!(
        warmed,
        "anomaly warm-up stopped at its cap; older payments of the window are not counted"
    );
    Ok(warmed)
}
