//! The provider actor: one per configured provider.
//!
//! It owns its provider's health: the circuit breaker, the bulkhead (calls in
//! flight), the call timeout and rolling statistics. Admission is decided
//! synchronously in the handler; the call itself runs as a future outside
//! the mailbox, so one slow call never serializes the provider, and its
//! result comes back through the actor to feed the breaker. What routing
//! needs (enabled, circuit state, success rate) is published to a shared
//! [`ProviderHealth`] so choosing a provider costs no message.

use crate::clock::Clock;
use crate::domain::OutcomeClass;
use crate::messages::provider::{
    CallRejected, Charge, ChargeReply, ForceOpen, GetSnapshot, Lookup, ProviderSnapshot, Refund,
    SetEnabled, Settlements, VerifyWebhook,
};
use crate::providers::{
    LookupResult, Provider, ProviderError, ProviderResponse, RefundResponse, RefundStatus,
    SettlementPage, VerifiedWebhook, WebhookError,
};
use crate::resilience::breaker::{
    BreakerSettings, CallRecord, CircuitBreaker, CircuitChange, CircuitState,
};
use crate::routing::ProviderHealth;
use actix::prelude::*;
use std::collections::VecDeque;
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
            // Only on a change: `note` runs twice per call, and the
            // gauge's lookup and label would be paid on every payment.
            crate::telemetry::circuit_state(self.provider.name(), circuit_gauge(change.to));
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
        crate::telemetry::circuit_state(self.provider.name(), circuit_gauge(self.breaker.state()));
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
            crate::telemetry::attempt(
                act.provider.name(),
                response.class.as_str(),
                Duration::from_millis(latency_ms),
            );
            // An unknown outcome that names the provider's charge is an
            // answer (accepted, confirmed later: Stripe's `processing`, the
            // sandbox's `pm_card_async`): the provider is up.
            let accepted_async =
                response.class == OutcomeClass::Unknown && response.provider_payment_id.is_some();
            let record = CallRecord {
                failed: matches!(
                    response.class,
                    OutcomeClass::TransientNotCharged | OutcomeClass::Unknown
                ) && !accepted_async,
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
            let look = async {
                if let Some(reference) = &msg.provider_payment_id {
                    match provider.lookup_reference(reference).await {
                        Err(ProviderError::Unsupported(_)) => {}
                        answer => return answer,
                    }
                }
                provider.lookup(&msg.idempotency_key).await
            };
            tokio::time::timeout(timeout, look)
                .await
                .unwrap_or_else(|_| Err(ProviderError::Unreachable("look-up timed out".into())))
        })
    }
}

impl Handler<Refund> for ProviderActor {
    type Result = ResponseFuture<RefundResponse>;

    fn handle(&mut self, Refund(request): Refund, _ctx: &mut Self::Context) -> Self::Result {
        let provider = self.provider.clone();
        let timeout = Duration::from_millis(self.settings.call_timeout_ms);
        Box::pin(async move {
            tokio::time::timeout(timeout, provider.refund(&request))
                .await
                .unwrap_or_else(|_| RefundResponse {
                    status: RefundStatus::Unknown,
                    provider_refund_id: None,
                    code: Some("timeout".into()),
                    message: Some("the provider did not answer in time".into()),
                    raw: serde_json::json!({ "engine": "timeout" }).to_string(),
                })
        })
    }
}

impl Handler<Settlements> for ProviderActor {
    type Result = ResponseFuture<Result<SettlementPage, ProviderError>>;

    /// Runs outside the mailbox like a look-up, bounded by the call
    /// timeout: a page is one request to the provider.
    fn handle(&mut self, msg: Settlements, _ctx: &mut Self::Context) -> Self::Result {
        let provider = self.provider.clone();
        let timeout = Duration::from_millis(self.settings.call_timeout_ms);
        Box::pin(async move {
            tokio::time::timeout(timeout, provider.settlements(msg.from, msg.to, msg.cursor))
                .await
                .unwrap_or_else(|_| {
                    Err(ProviderError::Unreachable(
                        "the settlement page did not arrive in time".into(),
                    ))
                })
        })
    }
}

impl Handler<VerifyWebhook> for ProviderActor {
    type Result = Result<VerifiedWebhook, WebhookError>;

    fn handle(&mut self, msg: VerifyWebhook, _ctx: &mut Self::Context) -> Self::Result {
        let events = self
            .provider
            .verify_webhook(&msg.headers, &msg.body, self.clock.now())?;
        Ok(VerifiedWebhook {
            events,
            acknowledgement: self.provider.webhook_acknowledgement(),
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

/// A configured provider with the address of its actor.
pub type ProviderEntry = crate::routing::ProviderEntry<Addr<ProviderActor>>;
/// Every configured provider with the address of its actor.
pub type ProviderDirectory = crate::routing::ProviderDirectory<Addr<ProviderActor>>;

/// The value of `payments_circuit_state` for `state`.
fn circuit_gauge(state: CircuitState) -> f64 {
    match state {
        CircuitState::Closed => 0.0,
        CircuitState::HalfOpen => 1.0,
        CircuitState::Open => 2.0,
        CircuitState::ForcedOpen => 3.0,
    }
}
