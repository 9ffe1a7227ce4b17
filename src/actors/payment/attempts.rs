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

use super::call::{call_with_unknown_retries, Answer, Fence};
use super::decide::{self, Evidence};
use super::{postings, PaymentDeps};
use crate::actors::provider::ProviderEntry;
use crate::domain::{
    Attempt, AttemptId, AttemptOutcome, OutcomeClass, Payment, PaymentEvent, PaymentStatus,
    Timestamp,
};
use crate::error::EngineError;
use crate::messages::payment::CreatedPayment;
use crate::providers::wallet::INSUFFICIENT_BALANCE;
use crate::providers::{ChargeRequest, ProviderResponse};
use crate::store::{LeaseChange, PaymentWrite, StoreError, StoredResponse};
use serde_json::json;
use std::time::{Duration, Instant};

/// Stored provider answers are cut to this size.
const MAX_RAW_RESPONSE_BYTES: usize = 8 * 1024;

/// Makes attempts until the payment reaches a resting status, then stores
/// the idempotent response with that final state. Attempt numbers continue
/// after the payment's existing attempts (a scheduled retry).
pub(super) async fn run(
    deps: &PaymentDeps,
    mut payment: Payment,
    candidates: &[ProviderEntry],
    mut fence: Fence,
    first: FirstAttempt,
) -> Result<CreatedPayment, EngineError> {
    assert!(!candidates.is_empty(), "routing produced no candidate");
    let mut tries = Tries::default();
    let mut index = 0;
    // What the next attempt's write carries besides the attempt itself: the
    // reopening of a scheduled retry, or the previous attempt's answer when
    // the payment fails over at once (one write instead of two).
    let (mut written, mut carried) = match first {
        FirstAttempt::Written => (true, Carried::default()),
        FirstAttempt::Reopen(events) => (
            false,
            Carried {
                events,
                attempts: Vec::new(),
            },
        ),
    };
    loop {
        let entry = &candidates[index];
        let (request, started) = if std::mem::take(&mut written) {
            (current_request(&payment), Instant::now())
        } else {
            let carry = std::mem::take(&mut carried);
            start_attempt(deps, &mut payment, entry, &mut fence, carry).await?
        };
        if request.attempt_number == 1 {
            deps.retry_budget.record_first_attempt();
        }
        let mut answer =
            call_with_unknown_retries(deps, &payment, &mut fence, entry, &request).await?;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let now = deps.clock.now();
        let mut events = std::mem::take(&mut answer.events);
        events.extend(complete_attempt(
            &mut payment,
            &answer.response,
            latency_ms,
            now,
        ));
        tries.record(&entry.name, answer.refused);
        let (next, wait) = match next_move(deps, candidates, index, &tries, &answer) {
            Move::Stop { budget_exhausted } => {
                answer.budget_exhausted = budget_exhausted;
                return finish(deps, payment, &answer, events).await;
            }
            Move::Next { index, wait } => (index, wait),
        };
        carried = between_attempts(deps, &mut payment, &mut fence, events, wait).await?;
        // Nothing was charged, so moving on (to this or another provider) is safe.
        index = next;
    }
}

/// Between two attempts: with no wait, the answer is carried into the next
/// attempt's write; with one, it is written first, so a crash during the
/// wait leaves the attempt decided, not `processing`.
async fn between_attempts(
    deps: &PaymentDeps,
    payment: &mut Payment,
    fence: &mut Fence,
    events: Vec<PaymentEvent>,
    wait: Duration,
) -> Result<Carried, EngineError> {
    let attempts: Vec<Attempt> = payment.attempts.last().cloned().into_iter().collect();
    if wait.is_zero() {
        return Ok(Carried { events, attempts });
    }
    let now = deps.clock.now();
    payment.updated_at = now;
    let started_write = Instant::now();
    let lease = renew(deps, now);
    save(deps, payment, payment.status, attempts, events, None, lease).await?;
    *fence = Fence::from_write(deps, started_write);
    tokio::time::sleep(wait).await;
    Ok(Carried::default())
}

/// How a run's first attempt begins.
pub(super) enum FirstAttempt {
    /// Already written `processing`, with the new payment itself.
    Written,
    /// To be written with these events (a scheduled retry reopening).
    Reopen(Vec<PaymentEvent>),
}

/// Written with the next attempt rather than on their own.
#[derive(Default)]
struct Carried {
    events: Vec<PaymentEvent>,
    attempts: Vec<Attempt>,
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
    crate::telemetry::retry(OutcomeClass::TransientNotCharged.as_str());
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
    deps.save_payment(PaymentWrite {
        payment: payment.clone(),
        expected_status,
        attempts,
        events,
        response,
        lease,
        holder: deps.holder.clone(),
        posting: None,
    })
    .await?;
    Ok(())
}

/// A new attempt of `payment` at `entry`, `processing`, and its audit event.
pub(super) fn new_attempt(
    payment: &Payment,
    entry: &ProviderEntry,
    now: Timestamp,
) -> (Attempt, PaymentEvent) {
    let number = u32::try_from(payment.attempts.len())
        .unwrap_or(u32::MAX)
        .saturating_add(1);
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
    (attempt, event)
}

/// Writes the next attempt `processing` (durably, renewing the lease) with
/// what is carried, and builds its request. A payment back from
/// `retry_scheduled` becomes `processing` in the same write, so no crash
/// can leave one without the other.
async fn start_attempt(
    deps: &PaymentDeps,
    payment: &mut Payment,
    entry: &ProviderEntry,
    fence: &mut Fence,
    carried: Carried,
) -> Result<(ChargeRequest, Instant), EngineError> {
    let now = deps.clock.now();
    let (attempt, event) = new_attempt(payment, entry, now);
    let expected = payment.status;
    let mut events = reopen(payment, now)?;
    events.extend(carried.events);
    events.push(event);
    payment.provider = Some(entry.name.clone());
    payment.updated_at = now;
    payment.attempts.push(attempt.clone());
    let mut attempts = carried.attempts;
    attempts.push(attempt);
    let written = Instant::now();
    let lease = renew(deps, now);
    save(deps, payment, expected, attempts, events, None, lease).await?;
    *fence = Fence::from_write(deps, written);
    Ok((current_request(payment), Instant::now()))
}

/// Moves a `retry_scheduled` payment back to `processing` for its next
/// attempt; returns the audit event (none for a payment already processing).
fn reopen(payment: &mut Payment, now: Timestamp) -> Result<Vec<PaymentEvent>, EngineError> {
    if payment.status != PaymentStatus::RetryScheduled {
        return Ok(Vec::new());
    }
    let from = payment.status;
    payment.status = from.transition(PaymentStatus::Processing)?;
    payment.next_attempt_at = None;
    Ok(vec![PaymentEvent::status_change(
        payment.id,
        Some(from),
        payment.status,
        now,
        json!({ "by": "scheduled_retry" }),
    )])
}

/// The request of the payment's last attempt.
fn current_request(payment: &Payment) -> ChargeRequest {
    let number = payment.attempts.last().map_or(1, |a| a.number);
    ChargeRequest {
        payment_id: payment.id,
        attempt_number: number,
        idempotency_key: Attempt::provider_idempotency_key(payment.id, number),
        merchant_id: payment.merchant_id.clone(),
        order_id: payment.order_id.clone(),
        customer_id: payment.customer_id.clone(),
        amount: payment.amount,
        currency: payment.currency,
        payment_method: payment.payment_method.clone(),
        description: payment.description.clone(),
    }
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
/// with the stored idempotent response (and, on success, its ledger
/// posting). A wallet payment the wallet cannot cover is a hard decline.
async fn finish(
    deps: &PaymentDeps,
    payment: Payment,
    answer: &Answer,
    events: Vec<PaymentEvent>,
) -> Result<CreatedPayment, EngineError> {
    let response = &answer.response;
    if response.class == OutcomeClass::Invalid {
        tracing::error!(payment_id = %payment.id, code = ?response.code, "provider rejected our request as invalid: check configuration");
    }
    let evidence = Evidence::Answer {
        class: response.class,
        code: response.code.clone(),
        message: response.message.clone(),
        budget_exhausted: answer.budget_exhausted,
    };
    let reference = response.provider_payment_id.clone();
    match settle(deps, payment.clone(), &evidence, reference, events.clone()).await {
        Err(EngineError::Store(StoreError::InsufficientFunds(wallet))) => {
            tracing::info!(payment_id = %payment.id, %wallet, "wallet too poor: declined");
            let mut payment = payment;
            if let Some(attempt) = payment.attempts.last_mut() {
                attempt.outcome = AttemptOutcome::Completed(OutcomeClass::HardDecline);
                attempt.code = Some(INSUFFICIENT_BALANCE.into());
            }
            let declined = Evidence::Answer {
                class: OutcomeClass::HardDecline,
                code: Some(INSUFFICIENT_BALANCE.into()),
                message: Some("the customer's wallet holds too little".into()),
                budget_exhausted: false,
            };
            settle(deps, payment, &declined, None, events).await
        }
        settled => settled,
    }
}

/// Applies what `evidence` decides and writes it, in one write.
async fn settle(
    deps: &PaymentDeps,
    mut payment: Payment,
    evidence: &Evidence,
    reference: Option<String>,
    mut events: Vec<PaymentEvent>,
) -> Result<CreatedPayment, EngineError> {
    let now = deps.clock.now();
    let from = payment.status;
    let decision = decide::decide(evidence, decide::facts(&payment), &deps.limits(), now);
    let succeeded = decision.status == PaymentStatus::Succeeded;
    if succeeded {
        payment.provider_payment_id = reference;
    }
    decide::apply(&mut payment, &decision)?;
    payment.updated_at = now;
    let last = payment.attempts.last().cloned();
    let code = match evidence {
        Evidence::Answer { code, .. } => code.clone(),
        _ => None,
    };
    events.push(PaymentEvent::status_change(
        payment.id,
        Some(from),
        payment.status,
        now,
        json!({
            "attempt": last.as_ref().map(|a| a.number),
            "provider": last.as_ref().map(|a| a.provider.clone()),
            "code": code,
        }),
    ));
    let posting = succeeded
        .then(|| postings::success(deps, &payment, now))
        .transpose()?;
    let body = serde_json::to_string(&payment).map_err(|e| EngineError::Internal(e.to_string()))?;
    deps.save_payment(PaymentWrite {
        payment: payment.clone(),
        expected_status: from,
        attempts: last.into_iter().collect(),
        events,
        response: Some(StoredResponse { body: body.clone() }),
        lease: LeaseChange::Release,
        holder: deps.holder.clone(),
        posting,
    })
    .await?;
    tracing::info!(payment_id = %payment.id, status = %payment.status, provider = ?payment.provider, "payment finished");
    Ok(CreatedPayment {
        payment,
        body,
        replayed: false,
    })
}
