//! The attempt loop: write intent, call the provider, classify, act.
//!
//! Invariants kept here (DESIGN §13):
//! - every attempt is written `processing` and durable BEFORE its provider
//!   call, so a crash always leaves evidence for recovery;
//! - after an `unknown` answer the same provider is asked again with the
//!   same idempotency key, never another provider, and the payment is never
//!   reported `failed` (it becomes `pending` if the answer stays unknown);
//! - only `transient_not_charged` moves on to a new attempt, possibly on the
//!   next provider.

use super::PaymentDeps;
use crate::actors::provider::ProviderEntry;
use crate::domain::{
    Attempt, AttemptId, AttemptOutcome, OutcomeClass, Payment, PaymentEvent, PaymentStatus,
    Timestamp,
};
use crate::error::EngineError;
use crate::messages::payment::CreatedPayment;
use crate::messages::provider::Charge;
use crate::providers::{ChargeRequest, ProviderResponse};
use crate::store::{LeaseChange, PaymentWrite, StoredResponse};
use serde_json::json;
use std::time::{Duration, Instant};

/// The HTTP status of a created payment, whatever its outcome.
const CREATED_STATUS: u16 = 201;
/// Stored provider answers are cut to this size.
const MAX_RAW_RESPONSE_BYTES: usize = 8 * 1024;

/// Makes attempts until the payment reaches a resting status, then stores
/// the idempotent response with that final state.
pub(super) async fn run(
    deps: &PaymentDeps,
    mut payment: Payment,
    candidates: &[ProviderEntry],
) -> Result<CreatedPayment, EngineError> {
    assert!(!candidates.is_empty(), "routing produced no candidate");
    let max_attempts = deps.policy.max_attempts;
    let mut provider_index = 0;
    for number in 1..=max_attempts {
        let entry = &candidates[provider_index % candidates.len()];
        let (request, started) = start_attempt(deps, &mut payment, entry, number).await?;
        let response = call_with_unknown_retries(deps, entry, &request).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let completed = complete_attempt(&mut payment, &response, latency_ms, deps.clock.now());

        if response.class == OutcomeClass::TransientNotCharged && number < max_attempts {
            let now = deps.clock.now();
            payment.updated_at = now;
            let write = PaymentWrite {
                expected_status: payment.status,
                attempts: vec![completed.0],
                events: vec![completed.1],
                response: None,
                lease: LeaseChange::Renew {
                    expires_at: now.plus_millis(deps.lease_ttl_ms),
                },
                payment: payment.clone(),
            };
            deps.store.save_payment(write).await?;
            // A provider's Retry-After is honoured up to the backoff cap, so
            // the wait stays within what the lease was sized for.
            let backoff = deps.policy.backoff(number);
            let asked = Duration::from_millis(
                response
                    .retry_after_ms
                    .unwrap_or(0)
                    .min(deps.policy.backoff_cap_ms),
            );
            tokio::time::sleep(backoff.max(asked)).await;
            // Nothing was charged, so moving on to the next provider is safe.
            provider_index += 1;
            continue;
        }
        return finish(deps, payment, &response, completed).await;
    }
    unreachable!("the last attempt always finishes the payment")
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
    deps.store
        .save_payment(PaymentWrite {
            expected_status: payment.status,
            attempts: vec![attempt],
            events: vec![event],
            response: None,
            lease: LeaseChange::Renew {
                expires_at: now.plus_millis(deps.lease_ttl_ms),
            },
            payment: payment.clone(),
        })
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
async fn call(entry: &ProviderEntry, request: &ChargeRequest) -> ProviderResponse {
    match entry.addr.send(Charge(request.clone())).await {
        Ok(Ok(response)) => response,
        Ok(Err(rejected)) => ProviderResponse::synthetic(
            OutcomeClass::TransientNotCharged,
            rejected.code(),
            &rejected.to_string(),
        ),
        Err(error) => ProviderResponse::synthetic(
            OutcomeClass::Unknown,
            "provider_actor_unavailable",
            &error.to_string(),
        ),
    }
}

/// Retries an `unknown` answer on the same provider with the same key.
async fn call_with_unknown_retries(
    deps: &PaymentDeps,
    entry: &ProviderEntry,
    request: &ChargeRequest,
) -> ProviderResponse {
    let mut response = call(entry, request).await;
    let mut retry = 0;
    while response.class == OutcomeClass::Unknown && retry < deps.policy.unknown_retries {
        retry += 1;
        tokio::time::sleep(deps.policy.backoff(retry)).await;
        tracing::info!(payment_id = %request.payment_id, provider = %entry.name, retry, "retrying unknown outcome with the same key");
        response = call(entry, request).await;
    }
    response
}

/// Records the answer on the payment's last attempt; returns the attempt and
/// its audit event.
fn complete_attempt(
    payment: &mut Payment,
    response: &ProviderResponse,
    latency_ms: i64,
    now: Timestamp,
) -> (Attempt, PaymentEvent) {
    let payment_id = payment.id;
    let attempt = payment
        .attempts
        .last_mut()
        .expect("an attempt was started before the call");
    attempt.outcome = AttemptOutcome::Completed(response.class);
    attempt.code = response.code.clone();
    attempt.latency_ms = Some(latency_ms);
    attempt.provider_payment_id = response.provider_payment_id.clone();
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
    (attempt.clone(), event)
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
    response: &ProviderResponse,
    (attempt, attempt_event): (Attempt, PaymentEvent),
) -> Result<CreatedPayment, EngineError> {
    let now = deps.clock.now();
    let from = payment.status;
    let to = match response.class {
        OutcomeClass::Succeeded => {
            payment.provider_payment_id = response.provider_payment_id.clone();
            PaymentStatus::Succeeded
        }
        OutcomeClass::HardDecline | OutcomeClass::Invalid => {
            if response.class == OutcomeClass::Invalid {
                tracing::error!(payment_id = %payment.id, code = ?response.code, "provider rejected our request as invalid: check configuration");
            }
            payment.failure_code = Some(
                response
                    .code
                    .clone()
                    .unwrap_or_else(|| "card_declined".into()),
            );
            payment.failure_message = response.message.clone();
            PaymentStatus::Failed
        }
        OutcomeClass::SoftDecline => {
            payment.failure_code = response.code.clone();
            payment.failure_message = response.message.clone();
            payment.next_attempt_at =
                Some(now.plus_millis(deps.policy.soft_decline_delay_secs.saturating_mul(1000)));
            PaymentStatus::RetryScheduled
        }
        OutcomeClass::TransientNotCharged => {
            payment.failure_code = Some("provider_unavailable".into());
            payment.failure_message = Some(format!(
                "no provider could take the payment; last answer: {}",
                response.code.as_deref().unwrap_or("none")
            ));
            PaymentStatus::Failed
        }
        OutcomeClass::Unknown => PaymentStatus::Pending,
    };
    payment.status = from
        .transition(to)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    payment.updated_at = now;
    let status_event = PaymentEvent::status_change(
        payment.id,
        Some(from),
        to,
        now,
        json!({ "attempt": attempt.number, "provider": attempt.provider, "code": response.code }),
    );
    let body = serde_json::to_string(&payment).map_err(|e| EngineError::Internal(e.to_string()))?;
    let stored = StoredResponse {
        status: CREATED_STATUS,
        body: body.clone(),
    };
    deps.store
        .save_payment(PaymentWrite {
            expected_status: from,
            attempts: vec![attempt],
            events: vec![attempt_event, status_event],
            response: Some(stored),
            lease: LeaseChange::Release,
            payment: payment.clone(),
        })
        .await?;
    tracing::info!(payment_id = %payment.id, status = %payment.status, provider = ?payment.provider, "payment finished");
    Ok(CreatedPayment {
        payment,
        status: CREATED_STATUS,
        body,
        replayed: false,
    })
}
