//! The payment actor: one per (merchant, order).
//!
//! Every operation on an order runs inside this actor as an
//! `AtomicResponse`, which blocks the mailbox until the operation's future
//! ends: two requests for one order can never interleave in this process,
//! and a duplicate waits for the first and then sees its stored answer.
//! (Across processes the database arbitrates: see `store`.)
//!
//! The actor holds no payment state between messages; it reads what it needs
//! from the store, so a retired actor loses nothing.

mod attempts;
mod blocked;
mod call;
mod create;
mod decide;
mod notify;
mod postings;
mod recover;
mod refund;
mod scheduled;
mod webhook;

use crate::actors::provider::ProviderDirectory;
use crate::clock::Clock;
use crate::domain::OrderKey;
use crate::error::EngineError;
use crate::messages::payment::{
    ApplyWebhook, CreatePayment, CreateRefund, CreatedPayment, CreatedRefund, RecoverPayment,
    RecoverRefund, RecoveryOutcome, Retire, Retired, RetryDue, Served,
};
use crate::resilience::RetryPolicy;
use crate::store::{LeaseClaim, LeaseHolder, Store};
use actix::prelude::*;
use futures_util::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Messages queued for one order; more senders wait.
const PAYMENT_MAILBOX_CAPACITY: usize = 256;

/// What a payment actor needs from the rest of the engine.
pub struct PaymentDeps {
    pub store: Arc<dyn Store>,
    pub providers: ProviderDirectory,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    /// Names this process (instance and incarnation) in order leases.
    pub holder: LeaseHolder,
    /// How long an order lease lasts without renewal.
    pub lease_ttl_ms: i64,
    /// An actor with no message for this long is retired by the sweeper.
    pub idle_timeout: Duration,
    /// Operations running inside payment actors (shutdown waits for them).
    pub in_progress: Arc<AtomicUsize>,
    /// Test hook: the first payment for this order id panics inside its
    /// actor. Never set outside tests.
    pub panic_on_order: PanicHook,
    /// Inconclusive recovery look-ups before a payment needs review.
    pub max_recovery_attempts: u32,
    /// How providers are ordered for a payment.
    pub strategy: crate::routing::Strategy,
    /// Shared by every payment: retries may not exceed a share of first
    /// attempts, so they never amplify an outage.
    pub retry_budget: std::sync::Arc<crate::resilience::RetryBudget>,
    /// Mails final statuses (no-op when `[email]` is off); reached only
    /// through [`PaymentDeps::save_payment`], after the change is durable.
    pub notifier: crate::actors::Notifier,
    /// The anomaly rules, checked before routing (DESIGN §10).
    pub anomaly: crate::actors::anomaly::AnomalyGate,
}

impl PaymentDeps {
    /// The lease on `payment`'s order for this process, from now on.
    fn lease_claim(&self, payment: &crate::domain::Payment) -> LeaseClaim {
        self.lease_claim_for(&payment.merchant_id, &payment.order_id, payment.id)
    }

    /// The lease on an order for this process, from now on.
    fn lease_claim_for(
        &self,
        merchant_id: &crate::domain::MerchantId,
        order_id: &str,
        payment_id: crate::domain::PaymentId,
    ) -> LeaseClaim {
        let now = self.clock.now();
        LeaseClaim {
            merchant_id: merchant_id.clone(),
            order_id: order_id.to_string(),
            payment_id,
            holder: self.holder.clone(),
            now,
            expires_at: now.plus_millis(self.lease_ttl_ms),
        }
    }

    /// The limits outcome decisions apply.
    fn limits(&self) -> decide::Limits {
        decide::Limits {
            soft_decline: self.policy.soft_decline,
            max_recovery_attempts: self.max_recovery_attempts,
        }
    }
}

/// Serializes all work on one order.
///
/// It holds no payment state between messages, and no timer: the registry
/// retires idle actors with one sweeper for all of them, and tells each
/// with [`Retire`].
pub struct PaymentActor {
    key: OrderKey,
    deps: Arc<PaymentDeps>,
    /// Set once the actor was told to retire or its work panicked: it then
    /// refuses work, so a fresh actor, not this one, handles the order.
    retired: bool,
}

impl PaymentActor {
    pub fn new(key: OrderKey, deps: Arc<PaymentDeps>) -> Self {
        PaymentActor {
            key,
            deps,
            retired: false,
        }
    }

    /// Runs `work` with the mailbox blocked until it ends: the per-order
    /// serialization every handler relies on. The work is counted while it
    /// runs (shutdown waits for it, whether or not its caller still waits),
    /// and a panic inside it becomes an internal error for its caller and
    /// retires the actor: the order stays recoverable from the store, and
    /// the next message for it gets a fresh actor.
    fn serialized<T, F>(&mut self, work: F) -> AtomicResponse<Self, Served<T>>
    where
        T: 'static,
        F: std::future::Future<Output = Result<T, EngineError>> + 'static,
    {
        if self.retired {
            return AtomicResponse::new(Box::pin(fut::ready(Err(Retired))));
        }
        let counted = Working::enter(&self.deps.in_progress);
        let guarded = std::panic::AssertUnwindSafe(work).catch_unwind();
        AtomicResponse::new(Box::pin(guarded.into_actor(self).map(
            move |outcome, act, ctx| {
                drop(counted);
                match outcome {
                    Ok(result) => Ok(result),
                    Err(_panic) => {
                        tracing::error!(order_id = ?act.key.order_id, "payment actor panicked; replacing it");
                        act.retired = true;
                        ctx.stop();
                        Ok(Err(EngineError::Internal("payment actor failed".into())))
                    }
                }
            },
        )))
    }
}

/// A test-only fault: the first payment for one order id panics inside its
/// actor, so tests can prove a panic is contained and the actor replaced.
#[derive(Debug, Default)]
pub struct PanicHook {
    order_id: Option<String>,
    fired: std::sync::atomic::AtomicBool,
}

impl PanicHook {
    pub fn new(order_id: Option<String>) -> Self {
        PanicHook {
            order_id,
            fired: Default::default(),
        }
    }

    fn fires_for(&self, order_id: &str) -> bool {
        self.order_id.as_deref() == Some(order_id) && !self.fired.swap(true, Ordering::SeqCst)
    }
}

/// Counts one operation inside a payment actor for as long as it lives.
struct Working(Arc<AtomicUsize>);

impl Working {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Working(counter.clone())
    }
}

impl Drop for Working {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(PAYMENT_MAILBOX_CAPACITY);
    }
}

impl Handler<Retire> for PaymentActor {
    type Result = ();

    fn handle(&mut self, _msg: Retire, ctx: &mut Self::Context) {
        self.retired = true;
        ctx.stop();
    }
}

impl Handler<CreatePayment> for PaymentActor {
    type Result = AtomicResponse<Self, Served<CreatedPayment>>;

    fn handle(&mut self, msg: CreatePayment, _ctx: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(
            msg.request.order_id, self.key.order_id,
            "routed to the wrong order"
        );
        debug_assert_eq!(
            msg.merchant_id, self.key.merchant_id,
            "routed to the wrong merchant"
        );
        let deps = self.deps.clone();
        let span = tracing::info_span!(
            parent: &msg.span,
            "payment",
            // Debug quotes what a client chose: no forged log fields.
            merchant = ?msg.merchant_id.as_str(),
            order_id = ?msg.request.order_id,
            payment_id = tracing::field::Empty,
        );
        self.serialized(
            async move {
                // A test-only hook: proves a panic here is contained.
                if deps.panic_on_order.fires_for(&msg.request.order_id) {
                    panic!("test hook: panic on order {:?}", msg.request.order_id);
                }
                create::create(&deps, msg).await
            }
            .instrument(span),
        )
    }
}

impl Handler<RecoverPayment> for PaymentActor {
    type Result = AtomicResponse<Self, Served<RecoveryOutcome>>;

    fn handle(&mut self, msg: RecoverPayment, _ctx: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(msg.order_id, self.key.order_id, "routed to the wrong order");
        let deps = self.deps.clone();
        self.serialized(async move { recover::recover(&deps, msg).await })
    }
}

impl Handler<RetryDue> for PaymentActor {
    type Result = AtomicResponse<Self, Served<Option<crate::domain::PaymentStatus>>>;

    fn handle(&mut self, msg: RetryDue, _ctx: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(msg.order_id, self.key.order_id, "routed to the wrong order");
        let deps = self.deps.clone();
        self.serialized(async move { scheduled::retry(&deps, msg).await })
    }
}

impl Handler<CreateRefund> for PaymentActor {
    type Result = AtomicResponse<Self, Served<CreatedRefund>>;

    fn handle(&mut self, msg: CreateRefund, _ctx: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(msg.order_id, self.key.order_id, "routed to the wrong order");
        let deps = self.deps.clone();
        self.serialized(async move { refund::create(&deps, msg).await })
    }
}

impl Handler<RecoverRefund> for PaymentActor {
    type Result = AtomicResponse<Self, Served<crate::domain::RefundState>>;

    fn handle(&mut self, msg: RecoverRefund, _ctx: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(msg.order_id, self.key.order_id, "routed to the wrong order");
        let deps = self.deps.clone();
        self.serialized(async move { refund::recover(&deps, msg).await })
    }
}

impl Handler<ApplyWebhook> for PaymentActor {
    type Result = AtomicResponse<Self, Served<crate::domain::WebhookResult>>;

    fn handle(&mut self, msg: ApplyWebhook, _ctx: &mut Self::Context) -> Self::Result {
        debug_assert_eq!(msg.order_id, self.key.order_id, "routed to the wrong order");
        let deps = self.deps.clone();
        self.serialized(async move { webhook::apply(&deps, msg).await })
    }
}
