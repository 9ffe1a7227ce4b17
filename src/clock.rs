//! Time as a dependency, so actors can be driven by a manual clock in tests.

use crate::domain::Timestamp;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the engine reads "now" from. Scheduling decisions (leases,
/// `next_attempt_at`, idle timeouts in tests) go through it.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(chrono::Utc::now())
    }
}

/// A clock that moves only when told to; for message-level tests.
#[derive(Debug)]
pub struct ManualClock {
    micros: AtomicI64,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        ManualClock {
            micros: AtomicI64::new(start.as_micros()),
        }
    }

    pub fn advance_ms(&self, millis: i64) {
        self.micros
            .fetch_add(millis.saturating_mul(1000), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let micros = self.micros.load(Ordering::SeqCst);
        Timestamp::from_micros(micros).unwrap_or_else(|| SystemClock.now())
    }
}

/// Wall-clock microseconds, for bookkeeping columns outside the lifecycle.
pub fn now_micros() -> i64 {
    SystemClock.now().as_micros()
}
