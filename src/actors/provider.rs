//! The provider actor: one per configured provider.
//!
//! It owns its provider's health: the circuit breaker, the bulkhead (calls in
//! flight), the call timeout and rolling statistics. Admission is decided
//! synchronously in the handler; the call itself runs as a future outside
//! the mailbox, so one slow call never serializes the provider, and its
//! result comes back through the actor to feed the breaker. What routing
//! needs (enabled, circuit state, success rate) is published to a shared
//! [`ProviderHealth`] so choosing a provider costs no message.

use super::breaker::{BreakerSettings, CallRecord, CircuitBreaker, CircuitChange, CircuitState};
use crate::clock::Clock;
use crate::domain::{Currency, OutcomeClass};
use crate::messages::provider::{
    CallRejected, Charge, ChargeReply, ForceOpen, GetSnapshot, Lookup, ProviderSnapshot, SetEnabled,
};
use crate::providers::{LookupResult, Provider, ProviderError, ProviderResponse};
use actix::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Messages waiting for a provider actor; senders wait when it is full.
const PROVIDER_MAILBOX_CAPACITY: usize = 1024;
/// Calls kept for latency percentiles and the rolling success rate.
const STATS_WINDOW_CALLS: usize = 1024;

/// Limits of one provider, from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderSettings {
    /// Calls in flight at once; more are refused (not queued).
    pub max_in_flight: u32,
    /// A call not answered in this time is treated as `unknown`: the request
    /// was sent and may have charged.
    pub call_timeout_ms: u64,
    pub breaker: BreakerSettings,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            max_in_flight: 256,
            call_timeout_ms: 10_000,
            breaker: BreakerSettings::default(),
        }
    }
}

/// What routing reads about a provider, written only by its actor.
#[derive(Debug)]
pub struct ProviderHealth {
    enabled: AtomicBool,
    circuit: AtomicU8,
    /// While OPEN: from when (ms) a probe may go through.
    open_until_ms: AtomicU64,
    /// Rolling success rate in basis points (10,000 = all calls succeeded).
    success_rate_bps: AtomicU32,
}

impl Default for ProviderHealth {
    fn default() -> Self {
        ProviderHealth {
            enabled: AtomicBool::new(true),
            circuit: AtomicU8::new(0),
            open_until_ms: AtomicU64::new(0),
            success_rate_bps: AtomicU32::new(10_000),
        }
    }
}

impl ProviderHealth {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn circuit(&self) -> CircuitState {
        match self.circuit.load(Ordering::Relaxed) {
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::ForcedOpen,
            _ => CircuitState::Closed,
        }
    }

    /// Whether routing should offer this provider calls at `now_ms`.
    /// HALF_OPEN counts, and so does OPEN once its wait is over: the probes
    /// must reach the actor, which itself limits how many go through.
    pub fn admits_calls(&self, now_ms: u64) -> bool {
        self.enabled()
            && match self.circuit() {
                CircuitState::Closed | CircuitState::HalfOpen => true,
                CircuitState::Open => now_ms >= self.open_until_ms.load(Ordering::Relaxed),
                CircuitState::ForcedOpen => false,
            }
    }

    pub fn success_rate(&self) -> f64 {
        f64::from(self.success_rate_bps.load(Ordering::Relaxed)) / 10_000.0
    }

    fn publish(&self, enabled: bool, circuit: CircuitState, open_until_ms: u64, success_rate: f64) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.open_until_ms.store(open_until_ms, Ordering::Relaxed);
        let code = match circuit {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::ForcedOpen => 3,
        };
        self.circuit.store(code, Ordering::Relaxed);
        self.success_rate_bps
            .store((success_rate * 10_000.0).round() as u32, Ordering::Relaxed);
    }
}

/// Counters and a window of recent calls for one provider.
#[derive(Debug, Default)]
struct ProviderStats {
    calls: u64,
    succeeded: u64,
    declined: u64,
    failed: u64,
    rejected: u64,
    /// (latency ms, succeeded) of the last calls.
    recent: VecDeque<(u64, bool)>,
}

impl ProviderStats {
    fn record(&mut self, class: OutcomeClass, latency_ms: u64) {
        self.calls += 1;
        match class {
            OutcomeClass::Succeeded => self.succeeded += 1,
            OutcomeClass::HardDecline | OutcomeClass::SoftDecline | OutcomeClass::Invalid => {
                self.declined += 1
            }
            OutcomeClass::TransientNotCharged | OutcomeClass::Unknown => self.failed += 1,
        }
        if self.recent.len() == STATS_WINDOW_CALLS {
            self.recent.pop_front();
        }
        // A decline is the provider working: for routing it counts as a
        // success of the provider, not of the payment.
        let healthy = !matches!(
            class,
            OutcomeClass::TransientNotCharged | OutcomeClass::Unknown
        );
        self.recent.push_back((latency_ms, healthy));
    }

    fn percentile(&self, p: f64) -> Option<u64> {
        if self.recent.is_empty() {
            return None;
        }
        let mut sorted: Vec<u64> = self.recent.iter().map(|(ms, _)| *ms).collect();
        sorted.sort_unstable();
        let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        Some(sorted[rank - 1])
    }

    fn success_rate(&self) -> f64 {
        if self.recent.is_empty() {
            return 1.0;
        }
        self.recent.iter().filter(|(_, ok)| *ok).count() as f64 / self.recent.len() as f64
    }
}

/// Owns one provider's admission decisions, breaker and statistics.
pub struct ProviderActor {
    provider: Arc<dyn Provider>,
    settings: ProviderSettings,
    clock: Arc<dyn Clock>,
    health: Arc<ProviderHealth>,
    breaker: CircuitBreaker,
    enabled: bool,
    in_flight: u32,
    stats: ProviderStats,
}

impl ProviderActor {
    pub fn new(
        provider: Arc<dyn Provider>,
        settings: ProviderSettings,
        clock: Arc<dyn Clock>,
        health: Arc<ProviderHealth>,
    ) -> Self {
        ProviderActor {
            provider,
            breaker: CircuitBreaker::new(settings.breaker),
            settings,
            clock,
            health,
            enabled: true,
            in_flight: 0,
            stats: ProviderStats::default(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.now().as_micros() / 1000).unwrap_or(0)
    }

    fn publish(&self) {
        self.health.publish(
            self.enabled,
            self.breaker.state(),
            self.breaker.open_until_ms(),
            self.stats.success_rate(),
        );
    }

    fn note(&self, change: Option<CircuitChange>) {
        if let Some(change) = change {
            tracing::warn!(
                provider = self.provider.name(),
                from = change.from.as_str(),
                to = change.to.as_str(),
                "circuit breaker changed state"
            );
        }
        self.publish();
    }

    /// Admits a call or says why not. The bulkhead is checked first so a
    /// refused call never uses up a half-open probe.
    fn admit(&mut self) -> Result<Option<CircuitChange>, CallRejected> {
        let refused = if !self.enabled {
            Some(CallRejected::Disabled)
        } else if self.in_flight >= self.settings.max_in_flight {
            Some(CallRejected::BulkheadFull)
        } else {
            None
        };
        if let Some(reason) = refused {
            self.stats.rejected += 1;
            return Err(reason);
        }
        let now_ms = self.now_ms();
        match self.breaker.try_acquire(now_ms) {
            Ok(change) => {
                self.in_flight += 1;
                self.note(change);
                Ok(change)
            }
            Err(state) => {
                self.stats.rejected += 1;
                Err(CallRejected::CircuitOpen(state))
            }
        }
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(PROVIDER_MAILBOX_CAPACITY);
        self.publish();
    }
}

impl Supervised for ProviderActor {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Calls that were in flight died with the old context.
        self.in_flight = 0;
    }
}

impl Handler<Charge> for ProviderActor {
    type Result = ResponseActFuture<Self, Result<ChargeReply, CallRejected>>;

    fn handle(&mut self, Charge(request): Charge, _ctx: &mut Self::Context) -> Self::Result {
        let admitted_change = match self.admit() {
            Ok(change) => change,
            Err(rejected) => return Box::pin(fut::ready(Err(rejected))),
        };
        let provider = self.provider.clone();
        let timeout = Duration::from_millis(self.settings.call_timeout_ms);
        let started_ms = self.now_ms();
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
            let now_ms = act.now_ms();
            let latency_ms = now_ms.saturating_sub(started_ms);
            act.stats.record(response.class, latency_ms);
            let record = CallRecord {
                failed: matches!(
                    response.class,
                    OutcomeClass::TransientNotCharged | OutcomeClass::Unknown
                ),
                slow: latency_ms >= act.breaker.settings().slow_call_duration_threshold_ms,
            };
            let change = act.breaker.on_result(now_ms, record);
            act.note(change);
            Ok(ChargeReply {
                response,
                circuit_change: change.or(admitted_change),
            })
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
        self.publish();
    }
}

impl Handler<ForceOpen> for ProviderActor {
    type Result = ();

    fn handle(&mut self, ForceOpen(forced): ForceOpen, _ctx: &mut Self::Context) {
        let now_ms = self.now_ms();
        let change = self.breaker.force_open(forced, now_ms);
        self.note(change);
    }
}

impl Handler<GetSnapshot> for ProviderActor {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _msg: GetSnapshot, _ctx: &mut Self::Context) -> Self::Result {
        let now_ms = self.now_ms();
        let (window_failure_rate, window_slow_call_rate) = self.breaker.rates(now_ms);
        let s = &self.stats;
        let completed = s.succeeded + s.declined + s.failed;
        MessageResult(ProviderSnapshot {
            name: self.provider.name().to_string(),
            enabled: self.enabled,
            circuit_state: self.breaker.state(),
            circuit_transitions: self.breaker.transitions,
            window_failure_rate,
            window_slow_call_rate,
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
            success_rate: s.success_rate(),
            latency_p50_ms: s.percentile(0.50),
            latency_p99_ms: s.percentile(0.99),
        })
    }
}

/// A fee: fixed part plus a percentage of the amount, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Fee {
    pub fixed: i64,
    /// Hundredths of a percent (290 = 2.90 %).
    pub percent_bps: i64,
}

impl Fee {
    /// The fee on `amount` minor units, rounded half up; `None` on overflow.
    pub fn on(&self, amount: i64) -> Option<i64> {
        let variable = amount.checked_mul(self.percent_bps)?.checked_add(5_000)? / 10_000;
        self.fixed.checked_add(variable)
    }
}

/// A configured provider as routing sees it.
#[derive(Clone)]
pub struct ProviderEntry {
    pub name: String,
    pub addr: Addr<ProviderActor>,
    /// `None`: every currency.
    pub currencies: Option<Vec<Currency>>,
    /// Lower first under the `priority` strategy (and on ties).
    pub priority: u32,
    /// Share of traffic under the `weighted` strategy.
    pub weight: u32,
    /// By lowercase currency code; `*` applies to the others.
    pub fees: BTreeMap<String, Fee>,
    pub health: Arc<ProviderHealth>,
    /// A look-up younger than this after the call may miss the charge.
    pub lookup_consistency_ms: u64,
    /// Retries after this provider's answers (its own rows, or the engine's).
    pub retry: crate::retry::RetryPolicy,
}

impl ProviderEntry {
    pub fn supports(&self, currency: Currency) -> bool {
        self.currencies
            .as_ref()
            .is_none_or(|list| list.contains(&currency))
    }

    /// What this provider charges for `amount` in `currency`.
    pub fn fee(&self, amount: i64, currency: Currency) -> Option<i64> {
        let fee = self
            .fees
            .get(currency.code())
            .or_else(|| self.fees.get("*"))
            .copied()
            .unwrap_or_default();
        fee.on(amount)
    }
}

/// The configured providers in configuration order.
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

    /// The providers that could take a payment in `currency` at all
    /// (configured for it; only `pinned` if the merchant pinned one),
    /// whatever their health: validation uses this.
    pub fn supporting(&self, currency: Currency, pinned: Option<&str>) -> Vec<ProviderEntry> {
        self.entries
            .iter()
            .filter(|entry| pinned.is_none_or(|name| entry.name == name))
            .filter(|entry| entry.supports(currency))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Fee;

    #[test]
    fn fees_round_half_up_and_never_overflow_silently() {
        let card = Fee {
            fixed: 30,
            percent_bps: 290,
        };
        assert_eq!(card.on(1_000), Some(59));
        assert_eq!(card.on(1), Some(30));
        assert_eq!(
            Fee {
                fixed: 0,
                percent_bps: 150
            }
            .on(100),
            Some(2)
        );
        assert_eq!(card.on(i64::MAX), None);
    }
}
