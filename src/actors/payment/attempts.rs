//! The attempt loop: write intent, call the provider, classify, act.
//!
//! Invariants kept here (DESIGN §13):
//! - every attempt is written `processing` and durable BEFORE its provider
//!   call, so a crash always leaves evidence for recovery;
//! - after an `unknown` answer the same provider is asked again with the
//!   same idempotency key, never another provider, and the payment is never
//!   reported `failed` (it becomes `pending` if the answer stays unknown);
//! - only `transient_not_charged` moves on to a new attempt, possibly on the
//!   next provider;
//! - every retry, of either kind, is paid for from the shared retry budget.

use super::decide::{self, Evidence};
use super::{PaymentDeps, CREATED_STATUS};
use crate::actors::provider::ProviderEntry;
use crate::domain::{
    Attempt, AttemptId, AttemptOutcome, OutcomeClass, Payment, PaymentEvent, PaymentStatus,
    Timestamp,
};
use crate::error::EngineError;
use crate::messages::payment::CreatedPayment;
use crate::messages::provider::Charge;
use crate::providers::{ChargeRequest, ProviderResponse};
use crate::resilience::CircuitChange;
use crate::store::{LeaseChange, PaymentWrite, StoredResponse};
use serde_json::json;
use std::time::{Duration, Instant};

/// Stored provider answers are cut to this size.
const MAX_RAW_RESPONSE_BYTES: usize = 8 * 1024;

/// One call through the provider actor.
struct Call {
    response: ProviderResponse,
    change: Option<CircuitChange>,
    /// The actor refused it (disabled, bulkhead, circuit): it never left.
    refused: bool,
}

/// One provider answer and what came with it.
struct Answer {
    response: ProviderResponse,
    /// Breaker state changes the calls caused, for the audit trail.
    circuit_changes: Vec<(String, CircuitChange)>,
    /// The budget refused a retry that the policy allowed.
    budget_exhausted: bool,
    /// The provider actor refused the first call: the provider is not
    /// taking calls now, so it is not retried into.
    refused: bool,
}

/// Makes attempts until the payment reaches a resting status, then stores
/// the idempotent response with that final state. Attempt numbers continue
/// after the payment's existing attempts (a scheduled retry).
pub(super) async fn run(
    deps: &PaymentDeps,
    mut payment: Payment,
    candidates: &[ProviderEntry],
) -> Result<CreatedPayment, EngineError> {
    assert!(!candidates.is_empty(), "routing produced no candidate");
    let mut tries = Tries::default();
    let mut index = 0;
    loop {
        let number = u32::try_from(payment.attempts.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if number == 1 {
            deps.retry_budget.record_first_attempt();
        }
        let entry = &candidates[index];
        let (request, started) = start_attempt(deps, &mut payment, entry, number).await?;
        let mut answer = call_with_unknown_retries(deps, entry, &request).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let now = deps.clock.now();
        let mut events = complete_attempt(&mut payment, &answer.response, latency_ms, now);
        events.extend(circuit_events(payment.id, &answer.circuit_changes, now));
        tries.record(&entry.name, answer.refused);
        let next = match next_move(deps, candidates, index, &tries, &answer) {
            Move::Stop { budget_exhausted } => {
                answer.budget_exhausted = budget_exhausted;
                return finish(deps, payment, &answer, events).await;
            }
            Move::Next { index, wait } => (index, wait),
        };
        payment.updated_at = now;
        let attempt = payment.attempts.last().cloned().into_iter().collect();
        let lease = renew(deps, now);
        save(deps, &payment, payment.status, attempt, events, None, lease).await?;
        tokio::time::sleep(next.1).await;
        // Nothing was charged, so moving on (to this or another provider) is safe.
        index = next.0;
    }
}

/// What this payment's attempts so far have been told.
#[derive(Default)]
struct Tries<'a> {
    count: u32,
    /// Providers this payment has called.
    called: Vec<&'a str>,
    /// Providers whose actor refused a call (circuit open, disabled): an
    /// open circuit is not retried into.
    refusing: Vec<&'a str>,
}

impl<'a> Tries<'a> {
    fn record(&mut self, provider: &'a str, refused: bool) {
        self.count += 1;
        if !self.called.contains(&provider) {
            self.called.push(provider);
        }
        if refused {
            self.refusing.push(provider);
        }
    }
}

/// After an attempt: make another, and where, or stop.
enum Move {
    Next { index: usize, wait: Duration },
    Stop { budget_exhausted: bool },
}

/// Only `transient_not_charged` moves on. A provider this payment has not
/// called yet is tried at once and for free: it is not a retry of anything,
/// so neither the budget nor the attempt limit holds it back (the list of
/// candidates bounds it). Asking a provider again is a retry: within the
/// class's attempts, after its backoff, paid from the shared budget.
fn next_move(
    deps: &PaymentDeps,
    candidates: &[ProviderEntry],
    index: usize,
    tries: &Tries,
    answer: &Answer,
) -> Move {
    if answer.response.class != OutcomeClass::TransientNotCharged {
        return Move::Stop {
            budget_exhausted: false,
        };
    }
    // The next provider down the list that is still taking calls.
    let next = (1..=candidates.len())
        .map(|step| (index + step) % candidates.len())
        .find(|&i| !tries.refusing.contains(&candidates[i].name.as_str()));
    let Some(next) = next else {
        return Move::Stop {
            budget_exhausted: false,
        };
    };
    if !tries.called.contains(&candidates[next].name.as_str()) {
        return Move::Next {
            index: next,
            wait: Duration::ZERO,
        };
    }
    // The provider that refused decides how (and whether) to retry.
    let policy = candidates[index].retry.transient_not_charged;
    if tries.count >= policy.max_attempts {
        return Move::Stop {
            budget_exhausted: false,
        };
    }
    if !deps.retry_budget.try_spend() {
        return Move::Stop {
            budget_exhausted: true,
        };
    }
    // A provider's Retry-After is honoured up to the backoff cap, so the
    // wait stays within what the lease was sized for.
    let asked_ms = answer
        .response
        .retry_after_ms
        .unwrap_or(0)
        .min(policy.cap_ms);
    Move::Next {
        index: next,
        wait: policy
            .backoff(tries.count)
            .max(Duration::from_millis(asked_ms)),
    }
}

fn renew(deps: &PaymentDeps, now: Timestamp) -> LeaseChange {
    LeaseChange::Renew {
        expires_at: now.plus_millis(deps.lease_ttl_ms),
    }
}

/// One atomic write of the payment's current state.
async fn save(
    deps: &PaymentDeps,
    payment: &Payment,
    expected_status: PaymentStatus,
    attempts: Vec<Attempt>,
    events: Vec<PaymentEvent>,
    response: Option<StoredResponse>,
    lease: LeaseChange,
) -> Result<(), EngineError> {
    deps.store
        .save_payment(PaymentWrite {
            payment: payment.clone(),
            expected_status,
            attempts,
            events,
            response,
            lease,
        })
        .await?;
    Ok(())
}

/// Writes the attempt `processing` (durably) and builds its request.
async fn start_attempt(
    deps: &PaymentDeps,
    payment: &mut Payment,
    entry: &ProviderEntry,
    number: u32,
) -> Result<(ChargeRequest, Instant), EngineError> {
    let now = deps.clock.now();
    let attempt = Attempt {
        id: AttemptId::new(),
        number,
        provider: entry.name.clone(),
        outcome: AttemptOutcome::Processing,
        code: None,
        latency_ms: None,
        provider_payment_id: None,
        raw_response: None,
        created_at: now,
        updated_at: None,
    };
    let key = Attempt::provider_idempotency_key(payment.id, number);
    let mut event = PaymentEvent::new(
        payment.id,
        "attempt.started",
        now,
        json!({ "number": number, "provider": entry.name, "provider_idempotency_key": key }),
    );
    event.attempt_id = Some(attempt.id);
    payment.provider = Some(entry.name.clone());
    payment.updated_at = now;
    payment.attempts.push(attempt.clone());
    save(
        deps,
        payment,
        payment.status,
        vec![attempt],
        vec![event],
        None,
        renew(deps, now),
    )
    .await?;
    let request = ChargeRequest {
        payment_id: payment.id,
        attempt_number: number,
        idempotency_key: key,
        merchant_id: payment.merchant_id.clone(),
        order_id: payment.order_id.clone(),
        customer_id: payment.customer_id.clone(),
        amount: payment.amount,
        currency: payment.currency,
        payment_method: payment.payment_method.clone(),
        description: payment.description.clone(),
    };
    Ok((request, Instant::now()))
}

/// One provider call through the provider actor. A refusal before the call
/// is `transient_not_charged`; a lost actor is `unknown` (the call may have
/// gone out).
async fn call(entry: &ProviderEntry, request: &ChargeRequest) -> Call {
    match entry.addr.send(Charge(request.clone())).await {
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

/// Retries an `unknown` answer on the same provider with the same key, as
/// the `unknown` policy and the budget allow.
async fn call_with_unknown_retries(
    deps: &PaymentDeps,
    entry: &ProviderEntry,
    request: &ChargeRequest,
) -> Answer {
    let policy = entry.retry.unknown;
    let first = call(entry, request).await;
    let refused = first.refused;
    let mut response = first.response;
    let mut circuit_changes: Vec<_> = first
        .change
        .map(|c| (entry.name.clone(), c))
        .into_iter()
        .collect();
    let mut tries = 1;
    let mut budget_exhausted = false;
    while response.class == OutcomeClass::Unknown && tries < policy.max_attempts {
        if !deps.retry_budget.try_spend() {
            budget_exhausted = true;
            break;
        }
        tokio::time::sleep(policy.backoff(tries)).await;
        tries += 1;
        tracing::info!(payment_id = %request.payment_id, provider = %entry.name, tries, "retrying unknown outcome with the same key");
        let next = call(entry, request).await;
        circuit_changes.extend(next.change.map(|c| (entry.name.clone(), c)));
        // The first call may have charged: a retry that was refused, not
        // processed or called invalid says nothing about it, so the outcome
        // stays unknown (and the payment is never failed over or failed on
        // that basis).
        if !next.response.class.settles_an_unknown() && next.response.class != OutcomeClass::Unknown
        {
            tracing::warn!(payment_id = %request.payment_id, provider = %entry.name, class = next.response.class.as_str(), code = ?next.response.code, "same-key retry answered inconclusively; outcome stays unknown");
            continue;
        }
        let reference = response.provider_payment_id.take();
        response = next.response;
        response.provider_payment_id = response.provider_payment_id.take().or(reference);
    }
    Answer {
        response,
        circuit_changes,
        budget_exhausted,
        refused,
    }
}

fn circuit_events(
    payment_id: crate::domain::PaymentId,
    changes: &[(String, CircuitChange)],
    now: Timestamp,
) -> Vec<PaymentEvent> {
    changes
        .iter()
        .map(|(provider, change)| {
            PaymentEvent::new(
                payment_id,
                "provider.circuit_changed",
                now,
                json!({ "provider": provider, "from": change.from.as_str(), "to": change.to.as_str() }),
            )
        })
        .collect()
}

/// Records the answer on the payment's last attempt; returns its audit event.
fn complete_attempt(
    payment: &mut Payment,
    response: &ProviderResponse,
    latency_ms: i64,
    now: Timestamp,
) -> Vec<PaymentEvent> {
    let payment_id = payment.id;
    let Some(attempt) = payment.attempts.last_mut() else {
        unreachable!("an attempt is always started before its call");
    };
    attempt.outcome = AttemptOutcome::Completed(response.class);
    attempt.code = response.code.clone();
    attempt.latency_ms = Some(latency_ms);
    if response.provider_payment_id.is_some() {
        attempt.provider_payment_id = response.provider_payment_id.clone();
    }
    attempt.raw_response = Some(truncate(&response.raw, MAX_RAW_RESPONSE_BYTES));
    let mut event = PaymentEvent::new(
        payment_id,
        "attempt.completed",
        now,
        json!({
            "number": attempt.number,
            "provider": attempt.provider,
            "outcome": attempt.outcome,
            "code": attempt.code,
            "latency_ms": latency_ms,
        }),
    );
    event.attempt_id = Some(attempt.id);
    vec![event]
}

fn truncate(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// Moves the payment to the status its last answer calls for, in one write
/// with the stored idempotent response.
async fn finish(
    deps: &PaymentDeps,
    mut payment: Payment,
    answer: &Answer,
    mut events: Vec<PaymentEvent>,
) -> Result<CreatedPayment, EngineError> {
    let response = &answer.response;
    let now = deps.clock.now();
    let from = payment.status;
    let evidence = Evidence::Answer {
        class: response.class,
        code: response.code.clone(),
        message: response.message.clone(),
        budget_exhausted: answer.budget_exhausted,
    };
    let decision = decide::decide(&evidence, decide::facts(&payment), &deps.limits(), now);
    if response.class == OutcomeClass::Invalid {
        tracing::error!(payment_id = %payment.id, code = ?response.code, "provider rejected our request as invalid: check configuration");
    }
    if decision.status == PaymentStatus::Succeeded {
        payment.provider_payment_id = response.provider_payment_id.clone();
    }
    decide::apply(&mut payment, &decision)?;
    payment.updated_at = now;
    let last = payment.attempts.last().cloned();
    events.push(PaymentEvent::status_change(
        payment.id,
        Some(from),
        payment.status,
        now,
        json!({
            "attempt": last.as_ref().map(|a| a.number),
            "provider": last.as_ref().map(|a| a.provider.clone()),
            "code": response.code,
        }),
    ));
    let body = serde_json::to_string(&payment).map_err(|e| EngineError::Internal(e.to_string()))?;
    let stored = StoredResponse {
        status: CREATED_STATUS,
        body: body.clone(),
    };
    save(
        deps,
        &payment,
        from,
        last.into_iter().collect(),
        events,
        Some(stored),
        LeaseChange::Release,
    )
    .await?;
    tracing::info!(payment_id = %payment.id, status = %payment.status, provider = ?payment.provider, "payment finished");
    Ok(CreatedPayment {
        payment,
        body,
        replayed: false,
    })
}
