//! Finding (or starting) the payment actor of an order, and retiring idle
//! ones.
//!
//! The registry is bounded: at most `max_actors` orders have a live actor;
//! past that a request for a new order is shed (`Overloaded`, a 503 with
//! `Retry-After`) instead of growing memory without limit. Idle actors are
//! retired by one sweeper for all of them, not by a timer each.

use super::payment::{PaymentActor, PaymentDeps};
use crate::domain::OrderKey;
use crate::error::EngineError;
use crate::messages::payment::{
    ApplyWebhook, CreatePayment, CreateRefund, CreatedPayment, CreatedRefund, RecoverPayment,
    RecoverRefund, RecoveryOutcome, Retire, Retired, RetryDue, Served,
};
use actix::{Actor, Addr, ArbiterHandle, Handler, MailboxError, Message};
use dashmap::DashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// How often a message is re-sent after landing on an actor that had
/// stopped (retired, or replaced after a panic). One retry suffices in
/// practice; the bound makes a bug loud instead of a loop.
const MAX_DELIVERY_TRIES: usize = 4;

/// One order's live actor and what the sweeper needs to know about it.
pub struct Slot {
    addr: Addr<PaymentActor>,
    /// Messages sent to it and not yet answered. The sweeper retires only
    /// an actor with none, under the map's lock, so no message is ever sent
    /// to an actor after it was retired.
    pending: AtomicUsize,
    /// When it last got a message, in ms since the registry started.
    last_used_ms: AtomicU64,
}

/// The live payment actors, by order.
pub type ActorMap = DashMap<OrderKey, Arc<Slot>>;

/// The payment actors by order, spread over the engine's arbiters.
#[derive(Clone)]
pub struct PaymentRegistry {
    actors: Arc<ActorMap>,
    arbiters: Arc<Vec<ArbiterHandle>>,
    hasher: RandomState,
    deps: Arc<PaymentDeps>,
    /// Messages on their way to, or inside, payment actors.
    in_flight: Arc<AtomicUsize>,
    accepting: Arc<AtomicBool>,
    /// Actors started and not yet retired, for the metrics (the map's own
    /// `len` locks every shard).
    alive: Arc<AtomicUsize>,
    max_actors: usize,
    epoch: Instant,
}

/// Counts one message in flight (registry-wide and on its slot) for as
/// long as it lives.
struct Pending {
    slot: Arc<Slot>,
    in_flight: Arc<AtomicUsize>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.slot.pending.fetch_sub(1, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl PaymentRegistry {
    pub fn new(deps: Arc<PaymentDeps>, arbiters: Vec<ArbiterHandle>, max_actors: usize) -> Self {
        assert!(
            !arbiters.is_empty(),
            "payment actors need an arbiter to run on"
        );
        assert!(max_actors > 0, "the registry must hold at least one actor");
        PaymentRegistry {
            actors: Arc::new(ActorMap::new()),
            arbiters: Arc::new(arbiters),
            hasher: RandomState::new(),
            deps,
            in_flight: Arc::new(AtomicUsize::new(0)),
            accepting: Arc::new(AtomicBool::new(true)),
            alive: Arc::new(AtomicUsize::new(0)),
            max_actors,
            epoch: Instant::now(),
        }
    }

    /// Who this process is in order leases.
    pub fn holder(&self) -> &crate::store::LeaseHolder {
        &self.deps.holder
    }

    /// Work not finished yet: messages on their way to payment actors, and
    /// operations running inside them (even if their caller gave up).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst) + self.deps.in_progress.load(Ordering::SeqCst)
    }

    /// Live payment actors.
    pub fn live_actors(&self) -> usize {
        self.actors.len()
    }

    /// Refuses new work from now on; work already accepted continues.
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::SeqCst);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The order's actor, started if it has none (and the registry has
    /// room), counted as busy until the returned guard drops.
    fn checkout(&self, key: &OrderKey) -> Result<Pending, EngineError> {
        if !self.actors.contains_key(key) && self.actors.len() >= self.max_actors {
            return Err(EngineError::Overloaded {
                what: "payment actors",
            });
        }
        let slot = self
            .actors
            .entry(key.clone())
            .and_modify(|slot| {
                // Replaced after a panic: the old one stopped.
                if !slot.addr.connected() {
                    *slot = self.start(key);
                }
            })
            .or_insert_with(|| {
                // No `self.actors.len()` here: the map's shard is locked.
                let alive = self.alive.fetch_add(1, Ordering::Relaxed) + 1;
                crate::telemetry::payment_actors(alive);
                self.start(key)
            });
        // Counted while the map's lock is held: the sweeper cannot retire it
        // between here and the send.
        slot.pending.fetch_add(1, Ordering::SeqCst);
        slot.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(Pending {
            slot: slot.clone(),
            in_flight: self.in_flight.clone(),
        })
    }

    fn start(&self, key: &OrderKey) -> Arc<Slot> {
        let index = self.hasher.hash_one(key) as usize % self.arbiters.len();
        let (key, deps) = (key.clone(), self.deps.clone());
        let addr = PaymentActor::start_in_arbiter(&self.arbiters[index], move |_ctx| {
            PaymentActor::new(key, deps)
        });
        Arc::new(Slot {
            addr,
            pending: AtomicUsize::new(0),
            last_used_ms: AtomicU64::new(self.now_ms()),
        })
    }

    /// Retires the actors that have had no message for the idle timeout
    /// and have none pending; returns how many.
    pub fn sweep(&self) -> usize {
        let idle_ms = u64::try_from(self.deps.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let now_ms = self.now_ms();
        let mut retired = 0;
        self.actors.retain(|_, slot| {
            let unused = slot.pending.load(Ordering::SeqCst) == 0
                && now_ms.saturating_sub(slot.last_used_ms.load(Ordering::Relaxed)) >= idle_ms;
            // One that stopped (after a panic) is dropped too.
            let gone = !slot.addr.connected();
            if unused || gone {
                slot.addr.do_send(Retire);
                retired += 1;
            }
            !(unused || gone)
        });
        let alive = self.alive.fetch_sub(retired, Ordering::Relaxed) - retired;
        crate::telemetry::payment_actors(alive);
        retired
    }

    /// Delivers `msg` to the actor of `key` and waits for the answer,
    /// re-sending to a fresh actor if the first had stopped.
    async fn deliver<M, T>(&self, key: OrderKey, msg: M) -> Result<T, EngineError>
    where
        M: Message<Result = Served<T>> + Clone + Send + 'static,
        T: Send + 'static,
        PaymentActor: Handler<M>,
    {
        if !self.accepting.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        for _ in 0..MAX_DELIVERY_TRIES {
            let pending = self.checkout(&key)?;
            match pending.slot.addr.send(msg.clone()).await {
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

    /// Refunds (part of) a payment in its order's actor.
    pub async fn create_refund(&self, msg: CreateRefund) -> Result<CreatedRefund, EngineError> {
        let key = OrderKey {
            merchant_id: msg.merchant_id.clone(),
            order_id: msg.order_id.clone(),
        };
        self.deliver(key, msg).await
    }

    /// Asks a pending refund's provider again, in its order's actor.
    pub async fn recover_refund(
        &self,
        msg: RecoverRefund,
    ) -> Result<crate::domain::RefundState, EngineError> {
        let key = OrderKey {
            merchant_id: msg.merchant_id.clone(),
            order_id: msg.order_id.clone(),
        };
        self.deliver(key, msg).await
    }

    /// Applies a verified provider event in its order's actor.
    pub async fn apply_webhook(
        &self,
        msg: ApplyWebhook,
    ) -> Result<crate::domain::WebhookResult, EngineError> {
        let key = OrderKey {
            merchant_id: msg.merchant_id.clone(),
            order_id: msg.order_id.clone(),
        };
        self.deliver(key, msg).await
    }
}
