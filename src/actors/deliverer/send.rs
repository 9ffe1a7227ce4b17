//! One try of one delivery: sign, POST, record what happened.

use super::{next_try, PassDeps};
use crate::config::mask_urls;
use crate::domain::{sign, EVENT_ID_HEADER, SIGNATURE_HEADER};
use crate::store::outbox::{ClaimedDelivery, DeliveryOutcome, FinishedDelivery};
use std::sync::Arc;

/// Longest error kept with a delivery: enough to say what went wrong.
const MAX_ERROR_CHARS: usize = 300;

/// What one try came to.
pub(super) enum Sent {
    Delivered,
    Retried,
    Dead,
    /// Its end could not be recorded (lease lost, store error): the
    /// delivery is tried again once its lease expires.
    Lost,
}

pub(super) async fn deliver(deps: Arc<PassDeps>, delivery: ClaimedDelivery) -> Sent {
    let target = deps
        .plan
        .endpoints
        .iter()
        .find(|e| e.route.id == delivery.endpoint_id);
    let result = match target {
        Some(target) => post(&deps, &delivery, &target.secret).await,
        None => Err(Failure::Permanent(
            "endpoint no longer configured".to_string(),
        )),
    };
    let now = deps.clock.now();
    let tries_made = delivery.attempts.saturating_add(1);
    let (outcome, sent) = match result {
        Ok(()) => (DeliveryOutcome::Delivered, Sent::Delivered),
        Err(Failure::Permanent(error)) => (DeliveryOutcome::Dead { error }, Sent::Dead),
        Err(Failure::Retry(error)) if tries_made >= deps.plan.max_attempts => {
            (DeliveryOutcome::Dead { error }, Sent::Dead)
        }
        Err(Failure::Retry(error)) => {
            let at = next_try(&deps, now, tries_made);
            (DeliveryOutcome::Retry { at, error }, Sent::Retried)
        }
    };
    log(&delivery, &outcome, tries_made);
    let finished = FinishedDelivery {
        event_id: delivery.event.id,
        endpoint_id: delivery.endpoint_id.clone(),
        holder: deps.plan.holder.clone(),
        outcome,
        now,
    };
    match deps.store.outbox().finish_delivery(finished).await {
        Ok(true) => sent,
        Ok(false) => {
            tracing::warn!(event_id = %delivery.event.id, endpoint = %delivery.endpoint_id, "webhook delivery lease lost before its end was recorded");
            Sent::Lost
        }
        Err(error) => {
            tracing::warn!(%error, event_id = %delivery.event.id, "recording a webhook delivery failed");
            Sent::Lost
        }
    }
}

fn log(delivery: &ClaimedDelivery, outcome: &DeliveryOutcome, tries: u32) {
    let (event_id, endpoint) = (&delivery.event.id, &delivery.endpoint_id);
    match outcome {
        DeliveryOutcome::Delivered => {
            tracing::debug!(%event_id, endpoint, tries, "webhook delivered")
        }
        DeliveryOutcome::Retry { at, error } => {
            tracing::info!(%event_id, endpoint, tries, %at, error, "webhook delivery failed; retry scheduled")
        }
        DeliveryOutcome::Dead { error } => {
            tracing::warn!(%event_id, endpoint, tries, error, "webhook delivery dead-lettered")
        }
    }
}

/// Why a try failed.
enum Failure {
    /// Worth another try (an error answer, a timeout, a refused connection).
    Retry(String),
    /// Never worth another try.
    Permanent(String),
}

async fn post(deps: &PassDeps, delivery: &ClaimedDelivery, secret: &str) -> Result<(), Failure> {
    let body = serde_json::to_vec(&delivery.event)
        .map_err(|e| Failure::Permanent(format!("event does not serialize: {e}")))?;
    let signed_at = deps.clock.now().as_datetime().timestamp();
    let signature = sign(secret, signed_at, &body);
    let response = deps
        .client
        .post(&delivery.endpoint_url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(EVENT_ID_HEADER, delivery.event.id.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| Failure::Retry(short(&mask_urls(&e.to_string()))))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(Failure::Retry(format!(
            "endpoint answered HTTP {}",
            status.as_u16()
        )))
    }
}

fn short(text: &str) -> String {
    text.chars().take(MAX_ERROR_CHARS).collect()
}
