//! The provider actor: one per configured provider.
//!
//! It decides synchronously whether a call may go out (enabled, bulkhead),
//! then runs the call as a future outside its mailbox, so one slow call never
//! serializes the provider; the result comes back through the actor to update
//! its statistics. The circuit breaker will live here too: the actor is the
//! one place that sees every call to its provider.

use crate::domain::{Currency, OutcomeClass};
use crate::messages::provider::{
    CallRejected, Charge, GetSnapshot, Lookup, ProviderSnapshot, SetEnabled,
};
use crate::providers::{LookupResult, Provider, ProviderError, ProviderResponse};
use actix::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages waiting for a provider actor; senders wait when it is full.
const PROVIDER_MAILBOX_CAPACITY: usize = 1024;
/// Latency samples kept for the percentiles (a sliding window of calls).
const LATENCY_WINDOW_CALLS: usize = 1024;

/// Limits of one provider, from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderSettings {
    /// Calls in flight at once; more are refused (not queued).
    pub max_in_flight: u32,
    /// A call not answered in this time is treated as `unknown`: the request
    /// was sent and may have charged.
    pub call_timeout_ms: u64,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            max_in_flight: 256,
            call_timeout_ms: 10_000,
        }
    }
}

/// Counters and a latency window for one provider.
#[derive(Debug, Default)]
struct ProviderStats {
    calls: u64,
    succeeded: u64,
    declined: u64,
    failed: u64,
    rejected: u64,
    latencies_ms: VecDeque<u64>,
}

impl ProviderStats {
    fn record(&mut self, class: OutcomeClass, latency: Duration) {
        self.calls += 1;
        match class {
            OutcomeClass::Succeeded => self.succeeded += 1,
            OutcomeClass::HardDecline | OutcomeClass::SoftDecline | OutcomeClass::Invalid => {
                self.declined += 1
            }
            OutcomeClass::TransientNotCharged | OutcomeClass::Unknown => self.failed += 1,
        }
        if self.latencies_ms.len() == LATENCY_WINDOW_CALLS {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms
            .push_back(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX));
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        if self.latencies_ms.is_empty() {
            return None;
        }
        let mut sorted: Vec<u64> = self.latencies_ms.iter().copied().collect();
        sorted.sort_unstable();
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }
}

/// Owns one provider's admission decisions and statistics.
pub struct ProviderActor {
    provider: Arc<dyn Provider>,
    settings: ProviderSettings,
    enabled: bool,
    in_flight: u32,
    stats: ProviderStats,
}

impl ProviderActor {
    pub fn new(provider: Arc<dyn Provider>, settings: ProviderSettings) -> Self {
        ProviderActor {
            provider,
            settings,
            enabled: true,
            in_flight: 0,
            stats: ProviderStats::default(),
        }
    }

    fn admit(&mut self) -> Result<(), CallRejected> {
        if !self.enabled {
            self.stats.rejected += 1;
            return Err(CallRejected::Disabled);
        }
        if self.in_flight >= self.settings.max_in_flight {
            self.stats.rejected += 1;
            return Err(CallRejected::BulkheadFull);
        }
        self.in_flight += 1;
        Ok(())
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(PROVIDER_MAILBOX_CAPACITY);
    }
}

impl Supervised for ProviderActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Calls that were in flight died with the old context.
        self.in_flight = 0;
    }
}

impl Handler<Charge> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<ProviderResponse, CallRejected>>;

    fn handle(&mut self, Charge(request): Charge, _ctx: &mut Self::Context) -> Self::Result {
        if let Err(rejected) = self.admit() {
            return Box::pin(fut::ready(Err(rejected)));
        }
        let provider = self.provider.clone();
        let timeout = Duration::from_millis(self.settings.call_timeout_ms);
        let started = Instant::now();
        let call = async move {
            match tokio::time::timeout(timeout, provider.charge(&request)).await {
                Ok(response) => response,
                Err(_) => ProviderResponse::synthetic(
                    OutcomeClass::Unknown,
                    "timeout",
                    "the provider did not answer in time",
                ),
            }
        };
        Box::pin(call.into_actor(self).map(move |response, act, _ctx| {
            assert!(act.in_flight > 0, "a call finished that was never admitted");
            act.in_flight -= 1;
            act.stats.record(response.class, started.elapsed());
            Ok(response)
        }))
    }
}

impl Handler<Lookup> for ProviderActor {
    type Result = ResponseFuture<Result<LookupResult, ProviderError>>;

    fn handle(&mut self, msg: Lookup, _ctx: &mut Self::Context) -> Self::Result {
        let provider = self.provider.clone();
        let timeout = Duration::from_millis(self.settings.call_timeout_ms);
        Box::pin(async move {
            tokio::time::timeout(timeout, provider.lookup(&msg.idempotency_key))
                .await
                .unwrap_or_else(|_| Err(ProviderError::Unreachable("look-up timed out".into())))
        })
    }
}

impl Handler<SetEnabled> for ProviderActor {
    type Result = ();

    fn handle(&mut self, SetEnabled(enabled): SetEnabled, _ctx: &mut Self::Context) {
        tracing::info!(
            provider = self.provider.name(),
            enabled,
            "provider enabled state changed"
        );
        self.enabled = enabled;
    }
}

impl Handler<GetSnapshot> for ProviderActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        let s = &self.stats;
        let completed = s.succeeded + s.declined + s.failed;
        MessageResult(ProviderSnapshot {
            name: self.provider.name().to_string(),
            enabled: self.enabled,
            in_flight: self.in_flight,
            max_in_flight: self.settings.max_in_flight,
            calls: s.calls,
            succeeded: s.succeeded,
            declined: s.declined,
            failed: s.failed,
            rejected: s.rejected,
            failure_rate: if completed == 0 {
                0.0
            } else {
                s.failed as f64 / completed as f64
            },
            latency_p50_ms: s.percentile(0.50),
            latency_p99_ms: s.percentile(0.99),
        })
    }
}

/// A configured provider as routing sees it.
#[derive(Clone)]
pub struct ProviderEntry {
    pub name: String,
    pub addr: Addr<ProviderActor>,
    /// `None`: every currency.
    pub currencies: Option<Vec<Currency>>,
}

impl ProviderEntry {
    pub fn supports(&self, currency: Currency) -> bool {
        self.currencies
            .as_ref()
            .is_none_or(|list| list.contains(&currency))
    }
}

/// The configured providers in priority order.
#[derive(Clone, Default)]
pub struct ProviderDirectory {
    entries: Vec<ProviderEntry>,
}

impl ProviderDirectory {
    pub fn new(entries: Vec<ProviderEntry>) -> Self {
        ProviderDirectory { entries }
    }

    pub fn get(&self, name: &str) -> Option<&ProviderEntry> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    pub fn entries(&self) -> &[ProviderEntry] {
        &self.entries
    }

    /// The providers a payment in `currency` may use, best first; only
    /// `pinned` if the merchant pinned one.
    pub fn candidates(&self, currency: Currency, pinned: Option<&str>) -> Vec<ProviderEntry> {
        self.entries
            .iter()
            .filter(|entry| pinned.is_none_or(|name| entry.name == name))
            .filter(|entry| entry.supports(currency))
            .cloned()
            .collect()
    }
}
