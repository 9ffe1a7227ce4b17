//! The deliverer (DESIGN §11): takes outgoing events from the outbox to
//! the configured webhook endpoints and, with `[events.nats]`, to a
//! JetStream stream.
//!
//! Every `poll_interval_ms` one pass (never two at once):
//!
//! 1. fan-out: each new event gets one delivery row per endpoint wanting
//!    it (`store::outbox`);
//! 2. claim: up to [`CLAIM_BATCH`] due deliveries are leased to this
//!    instance (`holder`), so of several instances one tries each;
//! 3. send: at most [`MAX_CONCURRENT_DELIVERIES`] POSTs at once, each
//!    signed and bounded by `timeout_ms`; a 2xx is delivered, anything
//!    else is retried with exponential backoff until `max_attempts`, then
//!    dead-lettered.
//!
//! State lives only in the store, so a restart picks up where the last
//! process stopped. The payment path never waits on any of this: it only
//! appends the event row inside its own write.

mod send;

#[cfg(feature = "nats")]
mod nats;

use crate::clock::Clock;
use crate::domain::Timestamp;
use crate::messages::deliverer::{DeliverNow, PassReport, StopDelivery};
use crate::store::outbox::{ClaimedDelivery, EndpointRoute};
use crate::store::Store;
use actix::prelude::*;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Events fanned out per round.
pub const FAN_OUT_BATCH: u32 = 500;
/// Fan-out rounds per pass: up to 10 000 events a pass, above what one
/// instance writes in a poll interval, so fan-out keeps up with payments.
const MAX_FAN_OUT_ROUNDS: u32 = 20;
/// Deliveries claimed per round.
pub const CLAIM_BATCH: u32 = 32;
/// Rounds of fan-out or claims per pass: a backlog is worked through over
/// several passes rather than in one unbounded loop.
const MAX_ROUNDS_PER_PASS: u32 = 8;
/// POSTs in flight at once, per instance.
pub const MAX_CONCURRENT_DELIVERIES: usize = 8;
/// How long shutdown waits for a running pass.
const STOP_WAIT_MS: u64 = 2_000;
/// How often shutdown checks whether the pass ended.
const STOP_POLL_MS: u64 = 10;

/// One configured endpoint: where and with what secret.
#[derive(Debug, Clone)]
pub struct EndpointTarget {
    pub route: EndpointRoute,
    pub secret: String,
}

/// Everything the deliverer is told at boot.
#[derive(Debug, Clone)]
pub struct DeliveryPlan {
    pub endpoints: Vec<EndpointTarget>,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub timeout: Duration,
    pub poll_interval: Duration,
    /// Names this instance's leases (instance id and incarnation).
    pub holder: String,
    #[cfg(feature = "nats")]
    pub nats: Option<crate::config::NatsSettings>,
}

impl DeliveryPlan {
    pub fn routes(&self) -> Arc<Vec<EndpointRoute>> {
        Arc::new(self.endpoints.iter().map(|e| e.route.clone()).collect())
    }

    /// How long a claimed batch may take: every try of it, done
    /// [`MAX_CONCURRENT_DELIVERIES`] at a time, with room to spare.
    fn lease_ms(&self) -> i64 {
        let waves = CLAIM_BATCH as usize / MAX_CONCURRENT_DELIVERIES + 2;
        i64::try_from(self.timeout.as_millis()).unwrap_or(i64::MAX / 8) * waves as i64
    }
}

/// What a pass works with (shared with the futures it spawns).
struct PassDeps {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    plan: DeliveryPlan,
    routes: Arc<Vec<EndpointRoute>>,
    client: reqwest::Client,
    stopping: AtomicBool,
    #[cfg(feature = "nats")]
    nats: nats::Publisher,
}

/// Delivers outgoing events; one per engine.
pub struct Deliverer {
    deps: Arc<PassDeps>,
    busy: Arc<AtomicBool>,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        plan: DeliveryPlan,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(plan.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("payments-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("webhook client: {e}"))?;
        let routes = plan.routes();
        Ok(Deliverer {
            deps: Arc::new(PassDeps {
                store,
                clock,
                #[cfg(feature = "nats")]
                nats: nats::Publisher::new(plan.nats.clone()),
                plan,
                routes,
                client,
                stopping: AtomicBool::new(false),
            }),
            busy: Arc::new(AtomicBool::new(false)),
        })
    }
}

impl Actor for Deliverer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(DeliverNow);
        ctx.run_interval(self.deps.plan.poll_interval, |_act, ctx| {
            ctx.notify(DeliverNow);
        });
    }
}

impl Handler<DeliverNow> for Deliverer {
    type Result = ResponseFuture<PassReport>;

    fn handle(&mut self, _msg: DeliverNow, _ctx: &mut Self::Context) -> Self::Result {
        if self.deps.stopping.load(Ordering::Acquire) || self.busy.swap(true, Ordering::AcqRel) {
            return Box::pin(async {
                PassReport {
                    overlapped: true,
                    ..PassReport::default()
                }
            });
        }
        let (deps, busy) = (self.deps.clone(), self.busy.clone());
        Box::pin(async move {
            let report = pass(&deps).await;
            busy.store(false, Ordering::Release);
            report
        })
    }
}

impl Handler<StopDelivery> for Deliverer {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: StopDelivery, ctx: &mut Self::Context) -> Self::Result {
        self.deps.stopping.store(true, Ordering::Release);
        ctx.stop();
        let busy = self.busy.clone();
        Box::pin(async move {
            let deadline = std::time::Instant::now() + Duration::from_millis(STOP_WAIT_MS);
            while busy.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(STOP_POLL_MS)).await;
            }
        })
    }
}

/// One pass: fan out, publish, then deliver what is due.
async fn pass(deps: &Arc<PassDeps>) -> PassReport {
    let mut report = PassReport::default();
    if let Err(error) = fan_out(deps, &mut report).await {
        tracing::warn!(%error, "webhook fan-out failed; next pass retries");
    }
    #[cfg(feature = "nats")]
    {
        report.published = deps.nats.publish_pending(&deps.store, &deps.stopping).await;
    }
    if deps.plan.endpoints.is_empty() {
        return report;
    }
    for _ in 0..MAX_ROUNDS_PER_PASS {
        if deps.stopping.load(Ordering::Acquire) {
            break;
        }
        let now = deps.clock.now();
        let lease_until = now.plus_millis(deps.plan.lease_ms());
        let claimed = match deps
            .store
            .outbox()
            .claim_deliveries(&deps.plan.holder, now, lease_until, CLAIM_BATCH)
            .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "claiming webhook deliveries failed");
                break;
            }
        };
        let full = claimed.len() == CLAIM_BATCH as usize;
        deliver_all(deps, claimed, &mut report).await;
        if !full {
            break;
        }
    }
    report
}

async fn fan_out(deps: &PassDeps, report: &mut PassReport) -> Result<(), crate::store::StoreError> {
    for _ in 0..MAX_FAN_OUT_ROUNDS {
        let now = deps.clock.now();
        let made = deps
            .store
            .outbox()
            .fan_out(deps.routes.clone(), now, FAN_OUT_BATCH)
            .await?;
        report.fanned_out += made;
        if made < u64::from(FAN_OUT_BATCH) {
            break;
        }
    }
    Ok(())
}

async fn deliver_all(deps: &Arc<PassDeps>, claimed: Vec<ClaimedDelivery>, report: &mut PassReport) {
    let outcomes: Vec<send::Sent> = futures_util::stream::iter(claimed)
        .map(|delivery| send::deliver(deps.clone(), delivery))
        .buffer_unordered(MAX_CONCURRENT_DELIVERIES)
        .collect()
        .await;
    for outcome in outcomes {
        match outcome {
            send::Sent::Delivered => report.delivered += 1,
            send::Sent::Retried => report.retried += 1,
            send::Sent::Dead => report.dead += 1,
            send::Sent::Lost => {}
        }
    }
}

/// The wait before try `tries_made + 1`: `base * 2^(tries_made - 1)`,
/// at most [`crate::config::MAX_BACKOFF_SECS`], then ±10 % jitter so
/// retries of many deliveries to one endpoint spread out.
pub fn backoff_ms(base: Duration, tries_made: u32, jitter: f64) -> i64 {
    let exponent = tries_made.saturating_sub(1).min(30);
    let cap_ms = crate::config::MAX_BACKOFF_SECS as f64 * 1_000.0;
    let wait_ms = (base.as_secs_f64() * 1_000.0 * f64::from(1u32 << exponent)).min(cap_ms);
    (wait_ms * jitter.clamp(0.9, 1.1)) as i64
}

/// When the next try is due, after `tries_made` tries.
fn next_try(deps: &PassDeps, now: Timestamp, tries_made: u32) -> Timestamp {
    let jitter = 0.9 + rand::random::<f64>() * 0.2;
    now.plus_millis(backoff_ms(deps.plan.backoff_base, tries_made, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_spans_about_three_days() {
        let base = Duration::from_secs(60);
        let total_ms: i64 = (1..crate::config::DEFAULT_MAX_ATTEMPTS)
            .map(|tries| backoff_ms(base, tries, 1.0))
            .sum();
        let days = total_ms as f64 / 86_400_000.0;
        assert!((2.5..=3.5).contains(&days), "{days} days");
        assert_eq!(backoff_ms(base, 1, 1.0), 60_000);
        assert_eq!(backoff_ms(base, 2, 1.0), 120_000);
        assert_eq!(backoff_ms(base, 30, 1.0), 12 * 3_600_000);
    }
}
