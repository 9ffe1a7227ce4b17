//! The sandbox's outgoing webhooks: `pm_card_async` charges confirmed a
//! moment after they were answered `pending` (DESIGN §7).
//!
//! The sandbox has no network, so it does not post its webhooks anywhere:
//! it hands each one, signed as it would be sent ([`sign_event`]), to a
//! [`WebhookSink`] the engine gives it with
//! [`SandboxProvider::set_webhook_sink`]; the engine feeds the sink to its
//! own `POST /v1/webhooks/{provider}` code path, so the event is verified
//! and applied exactly as a real provider's would be. Until a sink is set,
//! an event is only logged.
//!
//! [`SandboxProvider::set_webhook_sink`]: super::SandboxProvider::set_webhook_sink

use super::webhook::sign_event;
use super::{SandboxCharge, SandboxEventKind, SandboxRecord};
use crate::domain::Timestamp;
use crate::providers::WebhookHeaders;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;

/// One webhook request as the sandbox would send it: the name of the
/// provider it comes from (its `{provider}` in `/v1/webhooks/{provider}`),
/// its headers (with `Stripe-Signature`) and its raw body.
pub type WebhookDelivery = (String, WebhookHeaders, Vec<u8>);

/// Where a sandbox delivers its webhooks.
pub type WebhookSink = mpsc::Sender<WebhookDelivery>;

/// What one sandbox needs to sign and deliver its events, shared with the
/// tasks that deliver them later.
pub(super) struct Outbox {
    provider: String,
    /// Signs outgoing events and verifies incoming ones.
    pub(super) secret: String,
    /// How long a `pm_card_async` charge waits for its confirmation.
    confirm_delay: Duration,
    record: SandboxRecord,
    sink: RwLock<Option<WebhookSink>>,
}

impl Outbox {
    pub(super) fn new(
        provider: &str,
        secret: String,
        confirm_delay: Duration,
        record: SandboxRecord,
    ) -> Self {
        Outbox {
            provider: provider.to_string(),
            secret,
            confirm_delay,
            record,
            sink: RwLock::new(None),
        }
    }

    pub(super) fn set_sink(&self, sink: WebhookSink) {
        *self
            .sink
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sink);
    }

    fn sink(&self) -> Option<WebhookSink> {
        self.sink
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Whether `charge` (a `pm_card_async` one) is still within its
    /// confirmation delay. A charge whose time cannot be read is taken as
    /// confirmed: it is in the record, so it was charged.
    pub(super) fn awaits_confirmation(&self, charge: &SandboxCharge) -> bool {
        let delay_ms = i64::try_from(self.confirm_delay.as_millis()).unwrap_or(i64::MAX);
        let now = Timestamp::from_datetime(chrono::Utc::now());
        Timestamp::parse_rfc3339(&charge.created_at)
            .is_some_and(|created| created.plus_millis(delay_ms) > now)
    }

    /// Sends `charge.succeeded` for the charge `charge_id` once the
    /// confirmation delay has passed, on the current tokio runtime.
    pub(super) fn confirm_later(self: &Arc<Self>, charge_id: String) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(provider = %self.provider, charge = %charge_id, "no runtime to confirm an async charge on: no webhook will follow");
            return;
        };
        let outbox = Arc::clone(self);
        runtime.spawn(async move {
            tokio::time::sleep(outbox.confirm_delay).await;
            outbox.confirm(&charge_id).await;
        });
    }

    /// The charge as the record holds it now (an operator hook may have
    /// changed or deleted it since), signed and delivered.
    async fn confirm(&self, charge_id: &str) {
        let charge = match self.record.find_by_id(&self.provider, charge_id).await {
            Ok(Some(charge)) => charge,
            Ok(None) => {
                tracing::info!(provider = %self.provider, charge = %charge_id, "async charge deleted before its confirmation: no webhook");
                return;
            }
            Err(error) => {
                tracing::warn!(provider = %self.provider, charge = %charge_id, %error, "async charge unreadable: no webhook");
                return;
            }
        };
        let kind = SandboxEventKind::ChargeSucceeded;
        let now = Timestamp::from_datetime(chrono::Utc::now());
        let (headers, body) = sign_event(&self.secret, &kind, &charge, now);
        let Some(sink) = self.sink() else {
            tracing::info!(provider = %self.provider, charge = %charge_id, event = kind.event_type(), "no webhook sink: the confirmation is only logged");
            return;
        };
        if sink
            .send((self.provider.clone(), headers, body))
            .await
            .is_err()
        {
            tracing::warn!(provider = %self.provider, charge = %charge_id, "the webhook sink is closed: confirmation dropped");
        }
    }
}
