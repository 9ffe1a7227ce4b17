//! Finding (or starting) the payment actor of an order.

use super::payment::{ActorMap, PaymentActor, PaymentDeps};
use crate::domain::OrderKey;
use crate::error::EngineError;
use crate::messages::payment::{
    CreatePayment, CreatedPayment, RecoverPayment, RecoveryOutcome, Retired, RetryDue, Served,
};
use actix::{Actor, ArbiterHandle, Handler, MailboxError, Message};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// How often a message is re-sent after landing on an actor that was retiring.
/// One retry suffices in practice (the retiring actor has left the map); the
/// bound makes a bug loud instead of a loop.
const MAX_DELIVERY_TRIES: usize = 4;

/// The payment actors by order, spread over the engine's arbiters.
#[derive(Clone)]
pub struct PaymentRegistry {
    actors: Arc<ActorMap>,
    arbiters: Arc<Vec<ArbiterHandle>>,
    hasher: RandomState,
    deps: Arc<PaymentDeps>,
    in_flight: Arc<AtomicUsize>,
    accepting: Arc<AtomicBool>,
}

/// Counts one operation in flight for as long as it lives, so shutdown can
/// wait for the count to reach zero even if the caller gives up.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PaymentRegistry {
    pub fn new(deps: Arc<PaymentDeps>, arbiters: Vec<ArbiterHandle>) -> Self {
        assert!(
            !arbiters.is_empty(),
            "payment actors need an arbiter to run on"
        );
        PaymentRegistry {
            actors: Arc::new(ActorMap::new()),
            arbiters: Arc::new(arbiters),
            hasher: RandomState::new(),
            deps,
            in_flight: Arc::new(AtomicUsize::new(0)),
            accepting: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Who this process is in order leases.
    pub fn holder(&self) -> &crate::store::LeaseHolder {
        &self.deps.holder
    }

    /// Operations currently inside payment actors.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Refuses new work from now on; work already accepted continues.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    fn actor_for(&self, key: &OrderKey) -> actix::Addr<PaymentActor> {
        self.actors
            .entry(key.clone())
            .or_insert_with(|| {
                let index = self.hasher.hash_one(key) as usize % self.arbiters.len();
                let (key, deps, actors) = (key.clone(), self.deps.clone(), self.actors.clone());
                PaymentActor::start_in_arbiter(&self.arbiters[index], move |_ctx| {
                    PaymentActor::new(key, deps, actors)
                })
            })
            .clone()
    }

    /// Delivers `msg` to the actor of `key` and waits for the answer,
    /// re-sending to a fresh actor if the first was retiring.
    async fn deliver<M, T>(&self, key: OrderKey, msg: M) -> Result<T, EngineError>
    where
        M: Message<Result = Served<T>> + Clone + Send + 'static,
        T: Send + 'static,
        PaymentActor: Handler<M>,
    {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let _counted = InFlight::enter(&self.in_flight);
        for _ in 0..MAX_DELIVERY_TRIES {
            match self.actor_for(&key).send(msg.clone()).await {
                // Not handled by a live actor: nothing happened, send again.
                Ok(Err(Retired)) | Err(MailboxError::Closed) => continue,
                Ok(Ok(result)) => return result,
                Err(MailboxError::Timeout) => {
                    return Err(EngineError::Internal("payment actor timed out".into()))
                }
            }
        }
        Err(EngineError::Internal(
            "no live payment actor for the order".into(),
        ))
    }

    /// Creates and confirms a payment in its order's actor.
    pub async fn create_payment(&self, msg: CreatePayment) -> Result<CreatedPayment, EngineError> {
        let key = OrderKey {
            merchant_id: msg.merchant_id.clone(),
            order_id: msg.request.order_id.clone(),
        };
        self.deliver(key, msg).await
    }

    /// Recovers a stuck payment in its order's actor.
    pub async fn recover_payment(
        &self,
        msg: RecoverPayment,
    ) -> Result<RecoveryOutcome, EngineError> {
        let key = OrderKey {
            merchant_id: msg.merchant_id.clone(),
            order_id: msg.order_id.clone(),
        };
        self.deliver(key, msg).await
    }

    /// Makes the due attempt of a scheduled retry in its order's actor.
    pub async fn retry_due(
        &self,
        msg: RetryDue,
    ) -> Result<Option<crate::domain::PaymentStatus>, EngineError> {
        let key = OrderKey {
            merchant_id: msg.merchant_id.clone(),
            order_id: msg.order_id.clone(),
        };
        self.deliver(key, msg).await
    }
}
