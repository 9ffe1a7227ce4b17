//! The embedding API: [`Engine::start`] and the [`EngineHandle`] it returns.
//!
//! The engine runs its actix `System` on a dedicated thread. The handle
//! only sends messages and spawns futures onto that system, so it is
//! `Send + Sync + Clone` and works from any tokio runtime, a host's
//! `#[tokio::main]` included, without the host knowing about actix.

mod anomaly;
mod boot;
mod events;
mod instance;
mod money;
mod reconciliation;
mod sandbox;
mod webhooks;

pub use money::{Page, ToppedUp, Wallet};
pub use reconciliation::{MAX_RESOLUTION_CHARS, MAX_RUN_WINDOW_DAYS, RUN_DISCREPANCIES_LISTED};
pub use sandbox::SandboxChargePage;
pub use webhooks::{ReceivedEvent, WebhookReceived, MAX_EVENTS_PER_WEBHOOK};
pub mod validate;

use crate::actors::{PaymentRegistry, ProviderDirectory, Reconciler, Supervisor};
use crate::config::Config;
use crate::domain::{MerchantId, Payment, PaymentEvent, PaymentId};
use crate::error::EngineError;
use crate::messages::payment::{CreatePayment, CreatedPayment, PaymentRequest};
use crate::messages::provider::{ForceOpen, GetSnapshot, ProviderSnapshot, SetEnabled};
use crate::messages::reconciler::{RecoveryReport, RunRecovery};
use crate::messages::supervisor::Shutdown;
use crate::providers::sandbox::SandboxProvider;
use crate::store::{PaymentFilter, Store};
use actix::{Addr, ArbiterHandle, System};
use serde::Serialize;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Starts engines.
pub struct Engine;

/// A page of `GET /v1/payments`.
#[derive(Debug, Clone, Serialize)]
pub struct PaymentPage {
    pub data: Vec<Payment>,
    pub has_more: bool,
}

/// A provider as `GET /v1/providers` shows it: configuration and live state.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderView {
    pub object: &'static str,
    pub kind: crate::config::ProviderKind,
    /// `None`: every currency.
    pub currencies: Option<Vec<&'static str>>,
    pub priority: u32,
    pub weight: u32,
    pub fees: std::collections::BTreeMap<String, crate::domain::Fee>,
    #[serde(flatten)]
    pub snapshot: ProviderSnapshot,
}

/// A cheap, cloneable handle to a running engine.
#[derive(Clone)]
pub struct EngineHandle {
    inner: Arc<Inner>,
}

/// What the handle shares between its clones.
struct Inner {
    config: Config,
    store: Arc<dyn Store>,
    /// Applies inbound provider webhooks.
    webhooks: webhooks::WebhookIntake,
    registry: PaymentRegistry,
    providers: ProviderDirectory,
    sandboxes: HashMap<String, Arc<SandboxProvider>>,
    supervisor: Addr<Supervisor>,
    reconciler: Addr<Reconciler>,
    /// Runs store reads on the engine's own runtime.
    arbiter: ArbiterHandle,
    system: System,
    /// Fires when the engine thread has exited.
    exited: Mutex<Option<oneshot::Receiver<()>>>,
    /// Keeps this process's instance id its own while the handle lives.
    _instance_lock: Option<std::fs::File>,
    /// Room for new payments in flight (`engine.max_in_flight_payments`).
    admission: tokio::sync::Semaphore,
}

impl Engine {
    /// Validates `config`, opens the store (applying migrations), starts the
    /// actors on the engine's own thread, and returns a handle once the
    /// engine is ready to take payments.
    pub async fn start(config: Config) -> Result<EngineHandle, EngineError> {
        config
            .validate()
            .map_err(|e| EngineError::Config(e.to_string()))?;
        // Before anything runs, so every series exists from the start.
        crate::telemetry::install();
        let names: Vec<String> = config.providers.iter().map(|p| p.name.clone()).collect();
        crate::telemetry::register_families(&names);
        let (ready_tx, ready_rx) = oneshot::channel();
        let (exit_tx, exit_rx) = oneshot::channel();
        let boot_config = config.clone();
        std::thread::Builder::new()
            .name("payments-engine".into())
            .spawn(move || {
                let runner = System::new();
                match runner.block_on(boot::boot(boot_config)) {
                    Ok(parts) => {
                        let _ = ready_tx.send(Ok(parts));
                        if let Err(error) = runner.run() {
                            tracing::error!(%error, "engine system exited with an error");
                        }
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                    }
                }
                let _ = exit_tx.send(());
            })
            .map_err(|e| EngineError::Internal(format!("cannot start engine thread: {e}")))?;
        let parts = ready_rx
            .await
            .map_err(|_| EngineError::Internal("engine thread died while starting".into()))??;
        let admission = tokio::sync::Semaphore::new(config.engine.max_in_flight_payments);
        Ok(EngineHandle {
            inner: Arc::new(Inner {
                config,
                store: parts.store,
                webhooks: parts.webhooks,
                registry: parts.registry,
                providers: parts.providers,
                sandboxes: parts.sandboxes,
                supervisor: parts.supervisor,
                reconciler: parts.reconciler,
                arbiter: parts.arbiter,
                system: parts.system,
                exited: Mutex::new(Some(exit_rx)),
                _instance_lock: parts.instance_lock,
                admission,
            }),
        })
    }
}

impl EngineHandle {
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Runs a store read and returns its output: right here when the store
    /// reads on the caller's thread (SQLite: no hand-off at all), else on
    /// the engine's runtime, which owns the store's pooled connections.
    async fn on_engine<T, F>(&self, future: F) -> Result<T, EngineError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        if self.inner.store.reads_inline() {
            return Ok(future.await);
        }
        let (tx, rx) = oneshot::channel();
        let spawned = self.inner.arbiter.spawn(async move {
            let _ = tx.send(future.await);
        });
        if !spawned {
            return Err(EngineError::ShuttingDown);
        }
        rx.await.map_err(|_| EngineError::ShuttingDown)
    }

    /// Creates a payment for `request.order_id` and confirms it, exactly once
    /// per `(merchant, idempotency_key)` and at most one live payment per order.
    pub async fn create_payment(
        &self,
        merchant: &MerchantId,
        idempotency_key: &str,
        request: PaymentRequest,
    ) -> Result<CreatedPayment, EngineError> {
        validate::idempotency_key(idempotency_key)?;
        validate::payment_request(&request, &self.inner.providers)?;
        let fingerprint = validate::fingerprint(&request);
        // A key used before is answered here, from a read, without starting
        // (or waking) the order's actor: replays cost no actor, so a client
        // replaying one key under many order ids cannot grow the registry.
        let (store, owner, key) = (
            self.inner.store.clone(),
            merchant.clone(),
            idempotency_key.to_string(),
        );
        let record = self
            .on_engine(async move { store.idempotency_record(&owner, &key).await })
            .await??;
        if let Some(record) =
            record.filter(|r| r.response.is_some() || r.fingerprint != fingerprint)
        {
            return CreatedPayment::replay(record, merchant, &fingerprint);
        }
        let msg = CreatePayment {
            merchant_id: merchant.clone(),
            idempotency_key: idempotency_key.to_string(),
            fingerprint,
            request,
            span: tracing::Span::current(),
        };
        let _room = self.admit().await?;
        self.inner.registry.create_payment(msg).await
    }

    /// Room for one more payment in flight, waiting at most
    /// `engine.admission_wait_ms` for it; else the payment is shed.
    async fn admit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, EngineError> {
        let wait = std::time::Duration::from_millis(self.inner.config.engine.admission_wait_ms);
        let overloaded = EngineError::Overloaded {
            what: "payments in flight",
        };
        match tokio::time::timeout(wait, self.inner.admission.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(EngineError::ShuttingDown),
            Err(_elapsed) => Err(overloaded),
        }
    }

    /// The merchant's payment `id`, with its attempts.
    pub async fn payment(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Payment, EngineError> {
        let (store, merchant) = (self.inner.store.clone(), merchant.clone());
        self.on_engine(async move { store.payment(&merchant, id).await })
            .await??
            .ok_or(EngineError::NotFound {
                resource: "payment",
            })
    }

    /// The merchant's payments, newest first.
    pub async fn list_payments(
        &self,
        merchant: &MerchantId,
        mut filter: PaymentFilter,
    ) -> Result<PaymentPage, EngineError> {
        let limit = filter.limit as usize;
        // One extra row tells whether another page exists.
        filter.limit = filter.limit.saturating_add(1);
        let (store, merchant) = (self.inner.store.clone(), merchant.clone());
        let mut data = self
            .on_engine(async move { store.list_payments(&merchant, &filter).await })
            .await??;
        let has_more = data.len() > limit;
        data.truncate(limit);
        Ok(PaymentPage { data, has_more })
    }

    /// The audit trail of the merchant's payment `id`, oldest first.
    pub async fn payment_events(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Vec<PaymentEvent>, EngineError> {
        let (store, merchant) = (self.inner.store.clone(), merchant.clone());
        self.on_engine(async move { store.payment_events(&merchant, id).await })
            .await??
            .ok_or(EngineError::NotFound {
                resource: "payment",
            })
    }

    /// Each provider's configuration and live state, in configuration order.
    pub async fn providers(&self) -> Result<Vec<ProviderView>, EngineError> {
        let mut views = Vec::new();
        for entry in self.inner.providers.entries() {
            views.push(self.provider_view(entry).await?);
        }
        Ok(views)
    }

    async fn provider_view(
        &self,
        entry: &crate::actors::ProviderEntry,
    ) -> Result<ProviderView, EngineError> {
        let snapshot = entry
            .addr
            .send(GetSnapshot)
            .await
            .map_err(|_| EngineError::ShuttingDown)?;
        let kind = self
            .inner
            .config
            .providers
            .iter()
            .find(|p| p.name == entry.name)
            .map(|p| p.kind)
            .unwrap_or(crate::config::ProviderKind::Sandbox);
        Ok(ProviderView {
            object: "provider",
            kind,
            currencies: entry
                .currencies
                .as_ref()
                .map(|list| list.iter().map(|c| c.code()).collect()),
            priority: entry.priority,
            weight: entry.weight,
            fees: entry.fees.clone(),
            snapshot,
        })
    }

    /// Enables or disables a provider, or forces its circuit open (drain
    /// without a deploy) or releases it. Returns its new state.
    pub async fn update_provider(
        &self,
        name: &str,
        enabled: Option<bool>,
        force_open: Option<bool>,
    ) -> Result<ProviderView, EngineError> {
        let entry = self
            .inner
            .providers
            .get(name)
            .ok_or(EngineError::NotFound {
                resource: "provider",
            })?;
        if let Some(enabled) = enabled {
            entry
                .addr
                .send(SetEnabled(enabled))
                .await
                .map_err(|_| EngineError::ShuttingDown)?;
        }
        if let Some(forced) = force_open {
            entry
                .addr
                .send(ForceOpen(forced))
                .await
                .map_err(|_| EngineError::ShuttingDown)?;
        }
        self.provider_view(entry).await
    }

    /// Database reachable and migrations applied.
    pub async fn ready(&self) -> Result<(), EngineError> {
        let store = self.inner.store.clone();
        Ok(self.on_engine(async move { store.ready().await }).await??)
    }

    /// Runs a recovery pass now (one also runs at startup and on a timer).
    pub async fn run_recovery(&self) -> Result<RecoveryReport, EngineError> {
        self.inner
            .reconciler
            .send(RunRecovery)
            .await
            .map_err(|_| EngineError::ShuttingDown)
    }

    /// Orders with a live payment actor now (bounded by
    /// `engine.max_payment_actors`).
    pub fn live_payment_actors(&self) -> usize {
        self.inner.registry.live_actors()
    }

    /// Refuses new payments from now on (503 + Retry-After); accepted ones
    /// go on. The first step of a graceful stop.
    pub fn stop_intake(&self) {
        self.inner.registry.stop_accepting();
    }

    /// Graceful stop: refuse new payments, let in-flight ones finish (within
    /// `engine.shutdown_grace_ms`), flush the store, stop the engine thread.
    /// Safe to call more than once.
    pub async fn shutdown(&self) {
        let grace_ms = self.inner.config.engine.shutdown_grace_ms;
        let _ = self.inner.supervisor.send(Shutdown { grace_ms }).await;
        self.inner.system.stop();
        let exited = self
            .inner
            .exited
            .lock()
            .ok()
            .and_then(|mut slot| slot.take());
        if let Some(exited) = exited {
            let _ = exited.await;
        }
    }
}
