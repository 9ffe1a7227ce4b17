//! Building the engine inside its own actix system.

use super::webhooks::{WebhookIntake, SANDBOX_WEBHOOK_QUEUE};
use crate::actors::{
    Notifier, PanicHook, PaymentDeps, PaymentRegistry, ProviderActor, ProviderDirectory,
    ProviderEntry, ProviderSettings, Reconciler, Supervisor,
};
use crate::clock::Clock;
use crate::clock::SystemClock;
use crate::config::{mask_urls, Config, ProviderKind};
use crate::domain::Currency;
use crate::error::EngineError;
use crate::messages::provider::SetEnabled;
use crate::providers::adyen::{AdyenConfig, AdyenProvider};
use crate::providers::sandbox::{SandboxOptions, SandboxProvider, SandboxRecord};
use crate::providers::stripe::{StripeConfig, StripeProvider, DEFAULT_WEBHOOK_TOLERANCE_SECS};
use crate::providers::wallet::WalletProvider;
use crate::providers::Provider;
use crate::resilience::RetryBudget;
use crate::routing::ProviderHealth;
use crate::store::{self, LeaseHolder, Store};
use actix::{Actor, Addr, Arbiter, ArbiterHandle, System};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What booting hands back to the handle.
pub(super) struct Parts {
    pub store: Arc<dyn Store>,
    pub webhooks: WebhookIntake,
    pub registry: PaymentRegistry,
    pub providers: ProviderDirectory,
    pub sandboxes: HashMap<String, Arc<SandboxProvider>>,
    pub supervisor: Addr<Supervisor>,
    pub reconciler: Addr<Reconciler>,
    pub arbiter: ArbiterHandle,
    pub system: System,
    /// Keeps this process's instance id its own while the engine runs.
    pub instance_lock: Option<std::fs::File>,
}

/// Runs inside the engine's `System`: opens the store, starts the actors.
pub(super) async fn boot(config: Config) -> Result<Parts, EngineError> {
    let instance = super::instance::claim(&config)?;
    let store = store::open(&config.database_url(), &config.database_schema).await?;
    let incarnation = store
        .register_instance(&instance.id, SystemClock.now())
        .await?;
    let holder = LeaseHolder {
        instance_id: instance.id.clone(),
        incarnation,
    };
    let mut sandboxes = HashMap::new();
    let mut entries = Vec::new();
    let mut record = None;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    for (position, provider_config) in config.providers.iter().enumerate() {
        let webhook_secret = provider_config
            .resolved_webhook_secret()
            .map_err(|e| EngineError::Config(format!("provider {}: {e}", provider_config.name)))?;
        let provider: Arc<dyn Provider> = match provider_config.kind {
            ProviderKind::Sandbox => {
                if record.is_none() {
                    let opened = SandboxRecord::open(&config.sandbox_database_path())
                        .await
                        .map_err(|e| EngineError::Config(format!("sandbox record: {e}")))?;
                    record = Some(opened);
                }
                let Some(record) = record.clone() else {
                    unreachable!("opened just above")
                };
                let sandbox = Arc::new(SandboxProvider::new(
                    &provider_config.name,
                    record,
                    SandboxOptions {
                        faults: provider_config.faults,
                        call_timeout_ms: provider_config.call_timeout_ms,
                        webhook_secret: webhook_secret
                            .or_else(|| config.sandbox.webhook_secret.clone()),
                        fees: provider_config.fees.clone(),
                        async_confirm_ms: config.sandbox.async_confirm_ms,
                    },
                ));
                sandboxes.insert(provider_config.name.clone(), sandbox.clone());
                sandbox
            }
            ProviderKind::Stripe | ProviderKind::Adyen => {
                external_provider(provider_config, webhook_secret)?
            }
            ProviderKind::Wallet => Arc::new(WalletProvider::new(&provider_config.name)),
        };
        let settings = ProviderSettings {
            max_in_flight: provider_config.max_in_flight,
            call_timeout_ms: provider_config.call_timeout_ms,
            breaker: provider_config.breaker,
        };
        let health = Arc::new(ProviderHealth::default());
        let (actor_clock, actor_health) = (clock.clone(), health.clone());
        let addr = actix::Supervisor::start(move |_ctx| {
            ProviderActor::new(provider, settings, actor_clock, actor_health)
        });
        if !provider_config.enabled {
            addr.do_send(SetEnabled(false));
        }
        let currencies = (!provider_config.currencies.is_empty()).then(|| {
            provider_config
                .currencies
                .iter()
                .filter_map(|code| Currency::parse(code))
                .collect()
        });
        entries.push(ProviderEntry {
            name: provider_config.name.clone(),
            addr,
            currencies,
            priority: provider_config.priority.unwrap_or(position as u32),
            weight: provider_config.weight,
            fees: provider_config.fees.clone(),
            health,
            lookup_consistency_ms: provider_config.lookup_consistency_ms(),
            call_timeout_ms: provider_config.call_timeout_ms,
            wallet: provider_config.kind == ProviderKind::Wallet,
            retry: provider_config.retry_policy(&config.retry),
        });
    }
    let providers = ProviderDirectory::new(entries);
    let anomaly = super::anomaly::start(&config, store.clone(), clock.clone()).await?;
    let arbiters = payment_arbiters(config.engine.worker_threads);
    let deps = PaymentDeps {
        store: store.clone(),
        providers: providers.clone(),
        clock,
        policy: config.retry,
        strategy: config.routing.strategy,
        retry_budget: Arc::new(RetryBudget::new(config.retry.budget)),
        holder,
        lease_ttl_ms: i64::try_from(config.engine.lease_ttl_ms).unwrap_or(i64::MAX),
        idle_timeout: Duration::from_millis(config.engine.payment_idle_timeout_ms),
        max_recovery_attempts: config.reconciler.max_recovery_attempts,
        in_progress: Arc::default(),
        panic_on_order: PanicHook::new(config.engine.fault_panic_on_order.clone()),
        notifier: Notifier::start(&config.email)?,
        anomaly,
    };
    tracing::info!(instance = %deps.holder.instance_id, incarnation = deps.holder.incarnation, database = %mask_urls(&config.database_url()), "engine started");
    let clock = deps.clock.clone();
    let deliverer =
        super::events::start_deliverer(&config, store.clone(), clock.clone(), &deps.holder)?;
    let registry = PaymentRegistry::new(Arc::new(deps), arbiters, config.engine.max_payment_actors);
    let reconciler = Reconciler::new(
        registry.clone(),
        providers.clone(),
        store.clone(),
        clock,
        config.reconciler.clone(),
        config.engine.idempotency_retention_hours,
    );
    // A thread of its own: a reconciliation run's checks read a whole
    // window, and SQLite reads run on the caller's thread. On the engine's
    // thread they stalled the provider and payment actors there (payments/s
    // fell from about 1,700 to 400 during every run, measured).
    let reconciler = Reconciler::start_in_arbiter(&Arbiter::new().handle(), |_| reconciler);
    let supervisor = Supervisor::new(registry.clone(), store.clone(), reconciler.clone())
        .with_deliverer(deliverer)
        .start();
    let webhooks = WebhookIntake {
        providers: providers.clone(),
        store: store.clone(),
        registry: registry.clone(),
    };
    deliver_sandbox_webhooks(&sandboxes, &webhooks);
    Ok(Parts {
        store,
        webhooks,
        registry,
        providers,
        sandboxes,
        supervisor,
        reconciler,
        arbiter: Arbiter::current(),
        system: System::current(),
        instance_lock: instance._lock,
    })
}

/// Feeds what the sandboxes send (`pm_card_async` confirmations) into the
/// engine's webhook path, on the engine's runtime: verified and applied as
/// if it had come over HTTP, embedded engines included.
fn deliver_sandbox_webhooks(
    sandboxes: &HashMap<String, Arc<SandboxProvider>>,
    intake: &WebhookIntake,
) {
    if sandboxes.is_empty() {
        return;
    }
    let (sink, deliveries) = tokio::sync::mpsc::channel(SANDBOX_WEBHOOK_QUEUE);
    for sandbox in sandboxes.values() {
        sandbox.set_webhook_sink(sink.clone());
    }
    actix::spawn(intake.clone().consume(deliveries));
}

/// The arbiters payment actors run on: `threads` of them (0: one per core),
/// the engine's own thread counting as the first, so with one core nothing
/// crosses a thread.
fn payment_arbiters(threads: usize) -> Vec<ArbiterHandle> {
    let wanted = match threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    std::iter::once(Arbiter::current())
        .chain((1..wanted).map(|_| Arbiter::new().handle()))
        .collect()
}

/// Public API base URLs, used when the configuration names none.
const STRIPE_BASE_URL: &str = "https://api.stripe.com";
const ADYEN_BASE_URL: &str = "https://checkout-test.adyen.com/v71";

/// A provider reached over the network, its API key read from the
/// environment variable the configuration names.
fn external_provider(
    config: &crate::config::ProviderConfig,
    webhook_secret: Option<String>,
) -> Result<Arc<dyn Provider>, EngineError> {
    let fail = |what: String| EngineError::Config(format!("provider {}: {what}", config.name));
    let variable = config
        .api_key_env
        .as_deref()
        .ok_or_else(|| fail("api_key_env is required".into()))?;
    let api_key = std::env::var(variable)
        .ok()
        .filter(|key| !key.is_empty())
        .ok_or_else(|| fail(format!("environment variable {variable} holds no API key")))?;
    let provider: Arc<dyn Provider> = match config.kind {
        ProviderKind::Stripe => Arc::new(
            StripeProvider::new(
                &config.name,
                StripeConfig {
                    base_url: config
                        .base_url
                        .clone()
                        .unwrap_or_else(|| STRIPE_BASE_URL.into()),
                    api_key,
                    timeout_ms: config.call_timeout_ms,
                    webhook_secret,
                    webhook_tolerance_secs: DEFAULT_WEBHOOK_TOLERANCE_SECS,
                },
            )
            .map_err(|e| fail(e.to_string()))?,
        ),
        ProviderKind::Adyen => Arc::new(
            AdyenProvider::new(
                &config.name,
                AdyenConfig {
                    base_url: config
                        .base_url
                        .clone()
                        .unwrap_or_else(|| ADYEN_BASE_URL.into()),
                    api_key,
                    merchant_account: config
                        .merchant_account
                        .clone()
                        .ok_or_else(|| fail("merchant_account is required".into()))?,
                    timeout_ms: config.call_timeout_ms,
                    hmac_key: webhook_secret,
                },
            )
            .map_err(|e| fail(e.to_string()))?,
        ),
        ProviderKind::Sandbox | ProviderKind::Wallet => {
            unreachable!("built-in providers are built in boot")
        }
    };
    Ok(provider)
}
