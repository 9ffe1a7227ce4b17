//! Inbound provider webhooks (`POST /v1/webhooks/{provider}`, DESIGN §6).
//!
//! The provider's adapter verifies the signature over the raw body before
//! anything in it is read; a refusal refuses the whole request and changes
//! nothing. Each verified event is then routed to the actor of the order it
//! concerns (found by the engine's ids the provider echoes, else by the
//! provider's reference of the charge), which applies it once.

use super::EngineHandle;
use crate::actors::{PaymentRegistry, ProviderDirectory};
use crate::clock::{Clock, SystemClock};
use crate::domain::{PaymentId, WebhookResult};
use crate::error::EngineError;
use crate::messages::payment::ApplyWebhook;
use crate::messages::provider::VerifyWebhook;
use crate::providers::sandbox::WebhookDelivery;
use crate::providers::{WebhookEvent, WebhookHeaders};
use crate::store::{PaymentRef, Store, WebhookReceipt, WebhookRecord};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events one webhook request may carry (Adyen batches notification items;
/// Stripe and the sandbox send one). More is refused whole, unread.
pub const MAX_EVENTS_PER_WEBHOOK: usize = 100;

/// What one webhook request did, event by event.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookReceived {
    pub received: bool,
    pub events: Vec<ReceivedEvent>,
    /// The body the provider expects instead of this receipt (Adyen's
    /// `[accepted]`).
    #[serde(skip)]
    pub acknowledgement: Option<&'static str>,
}

/// What one event did.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedEvent {
    pub id: String,
    pub result: WebhookResult,
}

/// What applying a webhook needs: cheap to clone, so the HTTP path (through
/// the handle) and the sandbox's own deliveries (a task on the engine's
/// runtime) run the same code.
#[derive(Clone)]
pub(super) struct WebhookIntake {
    pub providers: ProviderDirectory,
    pub store: Arc<dyn Store>,
    pub registry: PaymentRegistry,
}

/// Webhooks a sandbox may have queued for the engine before it applies
/// them; a full queue makes the sandbox drop (and log) the event, as a
/// real provider's delivery failing would, and the reconciler still
/// settles the payment.
pub(super) const SANDBOX_WEBHOOK_QUEUE: usize = 1_024;

impl WebhookIntake {
    /// Verifies and applies one inbound webhook request of `provider`.
    pub async fn receive(
        &self,
        provider: &str,
        headers: WebhookHeaders,
        body: Vec<u8>,
    ) -> Result<WebhookReceived, EngineError> {
        let entry = self.providers.get(provider).ok_or(EngineError::NotFound {
            resource: "provider",
        })?;
        let verified = entry
            .addr
            .send(VerifyWebhook { headers, body })
            .await
            .map_err(|_| EngineError::ShuttingDown)??;
        let events = verified.events;
        if events.len() > MAX_EVENTS_PER_WEBHOOK {
            return Err(EngineError::invalid(
                "body",
                format!("a webhook may carry at most {MAX_EVENTS_PER_WEBHOOK} events"),
            ));
        }
        let mut received = Vec::with_capacity(events.len());
        for event in events {
            let id = event.id.clone();
            let result = self.apply_event(provider, event).await?;
            tracing::info!(
                provider,
                event_id = id,
                result = result.as_str(),
                "webhook event"
            );
            received.push(ReceivedEvent { id, result });
        }
        Ok(WebhookReceived {
            received: true,
            events: received,
            acknowledgement: verified.acknowledgement,
        })
    }

    async fn apply_event(
        &self,
        provider: &str,
        event: WebhookEvent,
    ) -> Result<WebhookResult, EngineError> {
        let Some(payment) = locate(self.store.as_ref(), provider, &event).await? else {
            return self.unmatched(provider, event).await;
        };
        self.registry
            .apply_webhook(ApplyWebhook {
                merchant_id: payment.merchant_id,
                order_id: payment.order_id,
                payment_id: payment.payment_id,
                provider: provider.to_string(),
                event,
            })
            .await
    }

    /// Records an event about no payment the engine knows (once).
    async fn unmatched(
        &self,
        provider: &str,
        event: WebhookEvent,
    ) -> Result<WebhookResult, EngineError> {
        let receipt = WebhookReceipt {
            provider: provider.to_string(),
            event_id: event.id,
            kind: event.kind.name().to_string(),
            payment_id: None,
            refund_id: None,
            result: WebhookResult::Unmatched,
            received_at: SystemClock.now(),
        };
        let record = WebhookRecord {
            receipt,
            merchant_id: None,
            events: Vec::new(),
            finding: None,
        };
        Ok(if self.store.record_webhook(record).await? {
            WebhookResult::Unmatched
        } else {
            WebhookResult::Duplicate
        })
    }

    /// Applies what the sandboxes deliver (their `pm_card_async`
    /// confirmations) until every sandbox is gone. Runs on the engine's
    /// runtime.
    pub async fn consume(self, mut deliveries: mpsc::Receiver<WebhookDelivery>) {
        while let Some((provider, headers, body)) = deliveries.recv().await {
            if let Err(error) = self.receive(&provider, headers, body).await {
                tracing::warn!(provider, %error, "a sandbox webhook was not applied; the reconciler will settle its payment");
            }
        }
    }
}

impl EngineHandle {
    /// Verifies and applies one inbound webhook request of `provider`.
    pub async fn receive_webhook(
        &self,
        provider: &str,
        headers: WebhookHeaders,
        body: Vec<u8>,
    ) -> Result<WebhookReceived, EngineError> {
        let intake = self.inner.webhooks.clone();
        let provider = provider.to_string();
        self.on_engine(async move { intake.receive(&provider, headers, body).await })
            .await?
    }
}

/// The payment an event is about: by the engine's payment id it echoes,
/// else by the engine's charge key (`{payment_id}-{attempt}`), else by the
/// provider's reference of the charge.
async fn locate(
    store: &dyn Store,
    provider: &str,
    event: &WebhookEvent,
) -> Result<Option<PaymentRef>, EngineError> {
    let echoed = event
        .payment_id
        .as_deref()
        .and_then(|id| id.parse::<PaymentId>().ok())
        .or_else(|| {
            let key = event.idempotency_key.as_deref()?;
            key.rsplit_once('-')?.0.parse::<PaymentId>().ok()
        });
    if let Some(id) = echoed {
        if let Some(found) = store.payment_ref(id).await? {
            return Ok(Some(found));
        }
    }
    match &event.provider_payment_id {
        Some(reference) => Ok(store.payment_ref_by_reference(provider, reference).await?),
        None => Ok(None),
    }
}
