//! Scheduled retries: the next attempt of a soft-declined payment.
//!
//! The schedule is durable (`next_attempt_at` in the payment row), so it
//! survives restarts; the reconciler finds due payments and sends each to
//! its order's actor, which claims the order's lease (one instance only),
//! moves the payment back to `processing` and makes a new attempt, numbered
//! after the earlier ones, through the normal attempt loop.

use super::{attempts, PaymentDeps};
use crate::domain::{Payment, PaymentEvent, PaymentStatus, Timestamp};
use crate::error::EngineError;
use crate::messages::payment::RetryDue;
use crate::store::{LeaseChange, PaymentWrite};
use serde_json::json;

/// Returns the payment's new status, or `None` if it was not due (already
/// retried, cancelled, or another instance holds the order).
pub(super) async fn retry(
    deps: &PaymentDeps,
    msg: RetryDue,
) -> Result<Option<PaymentStatus>, EngineError> {
    let now = deps.clock.now();
    let Some(mut payment) = deps.store.payment(&msg.merchant_id, msg.payment_id).await? else {
        return Err(EngineError::NotFound {
            resource: "payment",
        });
    };
    let due = payment.status == PaymentStatus::RetryScheduled
        && payment.next_attempt_at.is_some_and(|at| at <= now);
    if !due {
        return Ok(None);
    }
    let lease_expires_at = now.plus_millis(deps.lease_ttl_ms);
    let claimed = deps
        .store
        .claim_lease(
            &msg.merchant_id,
            &msg.order_id,
            payment.id,
            &deps.instance_id,
            now,
            lease_expires_at,
        )
        .await?;
    if !claimed {
        return Ok(None);
    }
    let route = crate::routing::route(
        &deps.providers,
        deps.strategy,
        payment.amount,
        payment.currency,
        None,
        now,
    );
    if route.candidates.is_empty() {
        return Err(EngineError::Internal(
            "no provider supports the payment's currency any more".into(),
        ));
    }
    reopen(deps, &mut payment, &route.reason, lease_expires_at).await?;
    let finished = attempts::run(deps, payment, &route.candidates).await?;
    Ok(Some(finished.payment.status))
}

/// Moves the payment back to `processing` for its next attempt.
async fn reopen(
    deps: &PaymentDeps,
    payment: &mut Payment,
    reason: &serde_json::Value,
    lease_expires_at: Timestamp,
) -> Result<(), EngineError> {
    let now = deps.clock.now();
    let from = payment.status;
    payment.status = from.transition(PaymentStatus::Processing)?;
    payment.next_attempt_at = None;
    payment.updated_at = now;
    let events = vec![
        PaymentEvent::status_change(
            payment.id,
            Some(from),
            payment.status,
            now,
            json!({ "by": "scheduled_retry" }),
        ),
        PaymentEvent::new(payment.id, "payment.routed", now, reason.clone()),
    ];
    deps.store
        .save_payment(PaymentWrite {
            payment: payment.clone(),
            expected_status: from,
            attempts: vec![],
            events,
            response: None,
            lease: LeaseChange::Renew {
                expires_at: lease_expires_at,
            },
        })
        .await?;
    Ok(())
}
