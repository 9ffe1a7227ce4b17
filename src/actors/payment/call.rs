//! Calling a provider for one attempt: the fence, the call through the
//! provider actor, and the same-key retries after an `unknown` answer.
//!
//! Every call is fenced: it is made only while this process holds the
//! order's lease for at least as long as the call may take, so a process
//! that was frozen past its lease (and replaced by another instance's
//! recovery) never sends a late call. Each call, retried or not, leaves an
//! audit event.

use super::PaymentDeps;
use crate::actors::provider::ProviderEntry;
use crate::domain::{OutcomeClass, Payment, PaymentEvent, PaymentId, Timestamp};
use crate::error::EngineError;
use crate::messages::provider::Charge;
use crate::providers::{ChargeRequest, ProviderResponse};
use crate::resilience::CircuitChange;
use crate::store::StoreError;
use serde_json::json;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// This process's hold on an order's lease, as far as it knows: the lease
/// runs until `until` on the local monotonic clock (which keeps counting
/// while the process is frozen).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fence {
    until: Instant,
}

impl Fence {
    /// A lease written (or claimed) by a write that started at `written`.
    pub(super) fn from_write(deps: &PaymentDeps, written: Instant) -> Self {
        let ttl_ms = u64::try_from(deps.lease_ttl_ms).unwrap_or(0);
        Fence {
            until: written + Duration::from_millis(ttl_ms),
        }
    }

    /// Makes sure the lease outlasts a call of `entry`; renews it (a fenced
    /// write) if it may not, or if `always` (before a same-key retry).
    /// `LeaseLost` means another instance holds the order now: the caller
    /// must abandon the payment to it without calling.
    pub(super) async fn before_call(
        &mut self,
        deps: &PaymentDeps,
        payment: &Payment,
        entry: &ProviderEntry,
        always: bool,
    ) -> Result<(), EngineError> {
        let call = Duration::from_millis(entry.call_timeout_ms);
        if !always && Instant::now() + call < self.until {
            return Ok(());
        }
        let written = Instant::now();
        if !deps.store.renew_lease(deps.lease_claim(payment)).await? {
            tracing::warn!(payment_id = %payment.id, "lost the order's lease; abandoning the payment to its new holder");
            return Err(StoreError::LeaseLost(payment.id).into());
        }
        *self = Fence::from_write(deps, written);
        Ok(())
    }
}

/// One call through the provider actor.
struct Call {
    response: ProviderResponse,
    change: Option<CircuitChange>,
    /// The actor refused it (disabled, bulkhead, circuit): it never left.
    refused: bool,
}

/// One attempt's answer and what came with it.
pub(super) struct Answer {
    pub response: ProviderResponse,
    /// Audit events: every call made, and breaker state changes they caused.
    pub events: Vec<PaymentEvent>,
    /// The budget refused a retry that the policy allowed.
    pub budget_exhausted: bool,
    /// The provider actor refused the first call: the provider is not
    /// taking calls now, so it is not retried into.
    pub refused: bool,
}

/// One provider call through the provider actor. A refusal before the call
/// is `transient_not_charged`; a lost actor is `unknown` (the call may have
/// gone out).
async fn call(entry: &ProviderEntry, request: &ChargeRequest) -> Call {
    let span = tracing::info_span!(
        "attempt",
        payment_id = %request.payment_id,
        provider = %entry.name,
        attempt = request.attempt_number,
    );
    match entry
        .addr
        .send(Charge(request.clone()))
        .instrument(span)
        .await
    {
        Ok(Ok(reply)) => Call {
            response: reply.response,
            change: reply.circuit_change,
            refused: false,
        },
        Ok(Err(rejected)) => Call {
            response: ProviderResponse::synthetic(
                OutcomeClass::TransientNotCharged,
                rejected.code(),
                &rejected.to_string(),
            ),
            change: None,
            refused: true,
        },
        Err(error) => Call {
            response: ProviderResponse::synthetic(
                OutcomeClass::Unknown,
                "provider_actor_unavailable",
                &error.to_string(),
            ),
            change: None,
            refused: false,
        },
    }
}

/// Calls `entry` for `request`, then retries an `unknown` answer on the
/// same provider with the same key, as the `unknown` policy and the budget
/// allow, renewing the lease before each retry.
pub(super) async fn call_with_unknown_retries(
    deps: &PaymentDeps,
    payment: &Payment,
    fence: &mut Fence,
    entry: &ProviderEntry,
    request: &ChargeRequest,
) -> Result<Answer, EngineError> {
    let policy = entry.retry.unknown;
    fence.before_call(deps, payment, entry, false).await?;
    let first = call(entry, request).await;
    let mut events = call_events(deps, request, entry, &first, 1);
    let refused = first.refused;
    let mut response = first.response;
    let mut tries = 1;
    let mut budget_exhausted = false;
    while response.class == OutcomeClass::Unknown && tries < policy.max_attempts {
        if !deps.retry_budget.try_spend() {
            budget_exhausted = true;
            break;
        }
        crate::telemetry::retry(OutcomeClass::Unknown.as_str());
        tokio::time::sleep(policy.backoff(tries)).await;
        tries += 1;
        fence.before_call(deps, payment, entry, true).await?;
        tracing::info!(payment_id = %request.payment_id, provider = %entry.name, tries, "retrying unknown outcome with the same key");
        let next = call(entry, request).await;
        events.extend(call_events(deps, request, entry, &next, tries));
        // The first call may have charged: a retry that was refused, not
        // processed or called invalid says nothing about it, so the outcome
        // stays unknown (and the payment is never failed over or failed on
        // that basis).
        let class = next.response.class;
        if !class.settles_an_unknown() && class != OutcomeClass::Unknown {
            tracing::warn!(payment_id = %request.payment_id, provider = %entry.name, class = class.as_str(), code = ?next.response.code, "same-key retry answered inconclusively; outcome stays unknown");
            continue;
        }
        let reference = response.provider_payment_id.take();
        response = next.response;
        response.provider_payment_id = response.provider_payment_id.take().or(reference);
    }
    Ok(Answer {
        response,
        events,
        budget_exhausted,
        refused,
    })
}

/// The audit events of one call: what the provider said (every call,
/// retried or not), and the breaker change it caused.
fn call_events(
    deps: &PaymentDeps,
    request: &ChargeRequest,
    entry: &ProviderEntry,
    call: &Call,
    try_number: u32,
) -> Vec<PaymentEvent> {
    let now = deps.clock.now();
    let mut events = vec![PaymentEvent::new(
        request.payment_id,
        "provider.called",
        now,
        json!({
            "attempt": request.attempt_number,
            "try": try_number,
            "provider": entry.name,
            "provider_idempotency_key": request.idempotency_key,
            "outcome": call.response.class.as_str(),
            "code": call.response.code,
            "refused": call.refused,
        }),
    )];
    events.extend(
        call.change
            .map(|change| circuit_event(request.payment_id, &entry.name, change, now)),
    );
    events
}

fn circuit_event(
    payment_id: PaymentId,
    provider: &str,
    change: CircuitChange,
    now: Timestamp,
) -> PaymentEvent {
    PaymentEvent::new(
        payment_id,
        "provider.circuit_changed",
        now,
        json!({ "provider": provider, "from": change.from.as_str(), "to": change.to.as_str() }),
    )
}
