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
mod call;
mod create;
mod decide;
mod recover;
mod scheduled;

use crate::actors::provider::ProviderDirectory;
use crate::clock::Clock;
use crate::domain::OrderKey;
use crate::error::EngineError;
use crate::messages::payment::{
    CreatePayment, CreatedPayment, RecoverPayment, RecoveryOutcome, Retired, RetryDue, Served,
};
use crate::resilience::RetryPolicy;
use crate::store::{LeaseClaim, LeaseHolder, Store};
use actix::prelude::*;
use dashmap::DashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages queued for one order; more senders wait.
const PAYMENT_MAILBOX_CAPACITY: usize = 256;
/// How often an actor checks whether it has been idle long enough to retire.
const IDLE_CHECK_INTERVAL_MS: u64 = 1_000;

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
    /// An actor with no message for this long stops.
    pub idle_timeout: Duration,
    /// Inconclusive recovery look-ups before a payment needs review.
    pub max_recovery_attempts: u32,
    /// How providers are ordered for a payment.
    pub strategy: crate::routing::Strategy,
    /// Shared by every payment: retries may not exceed a share of first
    /// attempts, so they never amplify an outage.
    pub retry_budget: std::sync::Arc<crate::resilience::RetryBudget>,
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

/// The live payment actors, by order.
pub type ActorMap = DashMap<OrderKey, Addr<PaymentActor>>;

/// Serializes all work on one order.
pub struct PaymentActor {
    key: OrderKey,
    deps: Arc<PaymentDeps>,
    actors: Arc<ActorMap>,
    last_activity: Instant,
    /// Set once the actor has left the registry: it then refuses work so a
    /// fresh actor, not this one, handles the order from now on.
    retired: bool,
}

impl PaymentActor {
    pub fn new(key: OrderKey, deps: Arc<PaymentDeps>, actors: Arc<ActorMap>) -> Self {
        PaymentActor {
            key,
            deps,
            actors,
            last_activity: Instant::now(),
            retired: false,
        }
    }

    fn retire(&mut self, ctx: &mut Context<Self>) {
        let me = ctx.address();
        self.actors.remove_if(&self.key, |_, addr| *addr == me);
        self.retired = true;
        ctx.stop();
    }
}

impl Actor for PaymentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(PAYMENT_MAILBOX_CAPACITY);
        ctx.run_interval(Duration::from_millis(IDLE_CHECK_INTERVAL_MS), |act, ctx| {
            if !act.retired && act.last_activity.elapsed() >= act.deps.idle_timeout {
                act.retire(ctx);
            }
        });
    }
}

impl PaymentActor {
    /// Runs `work` with the mailbox blocked until it ends: the per-order
    /// serialization every handler relies on.
    fn serialized<T, F>(&mut self, work: F) -> AtomicResponse<Self, Served<T>>
    where
        T: 'static,
        F: std::future::Future<Output = Result<T, EngineError>> + 'static,
    {
        if self.retired {
            return AtomicResponse::new(Box::pin(fut::ready(Err(Retired))));
        }
        self.last_activity = Instant::now();
        AtomicResponse::new(Box::pin(work.into_actor(self).map(|result, act, _ctx| {
            act.last_activity = Instant::now();
            Ok(result)
        })))
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
        self.serialized(async move { create::create(&deps, msg).await })
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
