//! Publishing the outbox to NATS JetStream (`[events.nats]`, cargo
//! feature `nats`): a durable log for consumers that outgrow webhooks.
//!
//! Events are published oldest first, one at a time, each awaited until
//! JetStream acknowledged it, then marked published: a payment's events
//! reach the stream in the order they were written. Each message carries
//! `Nats-Msg-Id` = the event id, so JetStream's duplicate window drops a
//! second publication (two instances, or a crash between the ack and the
//! mark): each event is in the stream once.

use crate::config::NatsSettings;
use crate::store::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events published per round.
const PUBLISH_BATCH: u32 = 100;
/// Rounds per pass: a backlog is worked through over several passes.
const MAX_PUBLISH_ROUNDS: u32 = 10;
/// Longest wait for a connection or one acknowledgement.
const NATS_TIMEOUT_MS: u64 = 5_000;

/// The JetStream connection, made on first use and again after a failure.
pub(super) struct Publisher {
    settings: Option<NatsSettings>,
    context: tokio::sync::Mutex<Option<async_nats::jetstream::Context>>,
}

impl Publisher {
    pub(super) fn new(settings: Option<NatsSettings>) -> Self {
        Publisher {
            settings,
            context: tokio::sync::Mutex::new(None),
        }
    }

    /// Publishes what is not published yet; returns how many were.
    pub(super) async fn publish_pending(
        &self,
        store: &Arc<dyn Store>,
        stopping: &AtomicBool,
    ) -> u64 {
        let Some(settings) = &self.settings else {
            return 0;
        };
        let mut context = self.context.lock().await;
        if context.is_none() {
            match connect(settings).await {
                Ok(connected) => *context = Some(connected),
                Err(error) => {
                    tracing::warn!(error, "cannot reach NATS; events stay queued");
                    return 0;
                }
            }
        }
        let Some(js) = context.as_ref() else {
            return 0;
        };
        let mut published = 0;
        for _ in 0..MAX_PUBLISH_ROUNDS {
            if stopping.load(Ordering::Acquire) {
                break;
            }
            match publish_round(js, settings, store).await {
                Ok((count, full)) => {
                    published += count;
                    if !full {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(error, "publishing events to NATS failed; retried next pass");
                    *context = None;
                    break;
                }
            }
        }
        published
    }
}

async fn connect(settings: &NatsSettings) -> Result<async_nats::jetstream::Context, String> {
    let timeout = Duration::from_millis(NATS_TIMEOUT_MS);
    let client = tokio::time::timeout(timeout, async_nats::connect(settings.url.as_str()))
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let js = async_nats::jetstream::new(client);
    let config = async_nats::jetstream::stream::Config {
        name: settings.stream.clone(),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        ..Default::default()
    };
    js.get_or_create_stream(config)
        .await
        .map_err(|e| format!("stream {}: {e}", settings.stream))?;
    Ok(js)
}

/// One batch: published in order, marked once acknowledged. Returns the
/// count and whether the batch was full (more may wait).
async fn publish_round(
    js: &async_nats::jetstream::Context,
    settings: &NatsSettings,
    store: &Arc<dyn Store>,
) -> Result<(u64, bool), String> {
    let events = store
        .outbox()
        .unpublished_events(PUBLISH_BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let full = events.len() == PUBLISH_BATCH as usize;
    let mut acked = Vec::with_capacity(events.len());
    let mut failure = None;
    for event in &events {
        if let Err(error) = publish_one(js, settings, event).await {
            failure = Some(error);
            break;
        }
        acked.push(event.id);
    }
    let count = acked.len() as u64;
    if !acked.is_empty() {
        let now = crate::clock::Clock::now(&crate::clock::SystemClock);
        store
            .outbox()
            .mark_published(acked, now)
            .await
            .map_err(|e| e.to_string())?;
    }
    match failure {
        Some(error) => Err(error),
        None => Ok((count, full)),
    }
}

async fn publish_one(
    js: &async_nats::jetstream::Context,
    settings: &NatsSettings,
    event: &crate::domain::OutgoingEvent,
) -> Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let subject = format!("{}.{}", settings.subject_prefix, event.kind.as_str());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
    let timeout = Duration::from_millis(NATS_TIMEOUT_MS);
    let ack = js
        .publish_with_headers(subject, headers, body.into())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(timeout, ack)
        .await
        .map_err(|_| "acknowledgement timed out".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(())
}
