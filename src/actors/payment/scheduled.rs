//! Scheduled retries: the next attempt of a soft-declined payment.
//!
//! The schedule is durable (`next_attempt_at` in the payment row), so it
//! survives restarts; the reconciler finds due payments and sends each to
//! its order's actor, which claims the order's lease (one instance only)
//! and makes a new attempt, numbered after the earlier ones, through the
//! normal attempt loop. The move back to `processing` is written with that
//! attempt, in one write.

use super::call::Fence;
use super::{attempts, PaymentDeps};
use crate::domain::{PaymentEvent, PaymentStatus};
use crate::error::EngineError;
use crate::messages::payment::RetryDue;
use std::time::Instant;

/// Returns the payment's new status, or `None` if it was not due (already
/// retried, cancelled, or another instance holds the order).
pub(super) async fn retry(
    deps: &PaymentDeps,
    msg: RetryDue,
) -> Result<Option<PaymentStatus>, EngineError> {
    let now = deps.clock.now();
    let Some(payment) = deps.store.payment(&msg.merchant_id, msg.payment_id).await? else {
        return Err(EngineError::NotFound {
            resource: "payment",
        });
    };
    let due = payment.status == PaymentStatus::RetryScheduled
        && payment.next_attempt_at.is_some_and(|at| at <= now);
    if !due {
        return Ok(None);
    }
    let written = Instant::now();
    if !deps.store.claim_lease(deps.lease_claim(&payment)).await? {
        return Ok(None);
    }
    let fence = Fence::from_write(deps, written);
    let route = crate::routing::route(
        &deps.providers,
        deps.strategy,
        payment.amount,
        payment.currency,
        None,
        &payment.payment_method,
        now,
    );
    if route.candidates.is_empty() {
        return Err(EngineError::Internal(
            "no provider supports the payment's currency any more".into(),
        ));
    }
    let routed = PaymentEvent::new(payment.id, "payment.routed", now, route.reason.clone());
    let first = attempts::FirstAttempt::Reopen(vec![routed]);
    let finished = attempts::run(deps, payment, &route.candidates, fence, first).await?;
    Ok(Some(finished.payment.status))
}
