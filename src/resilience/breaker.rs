//! A circuit breaker in resilience4j's vocabulary, as a pure state machine.
//!
//! It holds no clock and does no I/O: the provider actor passes "now" in
//! milliseconds, so tests drive it with a manual clock. Only provider
//! failures count (`transient_not_charged`, `unknown`) and slow calls;
//! declines and invalid requests are the provider working correctly.
//!
//! CLOSED: calls flow; outcomes fill a sliding window (count- or
//! time-based). Once the window holds at least `minimum_number_of_calls`,
//! a failure rate or slow-call rate at or above its threshold opens it.
//! OPEN: every call is refused until `wait_duration_in_open_ms` has passed
//! (growing by `open_backoff_multiplier` for each consecutive opening).
//! HALF_OPEN: up to `permitted_calls_in_half_open` probes go through; one
//! failure or slow probe reopens it, all of them healthy close it. FORCED_OPEN:
//! an operator drained the provider; only an operator closes it.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Largest window a configuration may ask for (calls or seconds).
pub const MAX_WINDOW_SIZE: u32 = 10_000;

/// How the sliding window is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// The last `window_size` calls.
    CountBased,
    /// The calls of the last `window_size` seconds.
    TimeBased,
}

/// Breaker settings (resilience4j's names, units last).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    pub sliding_window_type: WindowKind,
    pub sliding_window_size: u32,
    /// Percent of failed calls (0–100) at which the breaker opens.
    pub failure_rate_threshold: f64,
    /// Percent of slow calls (0–100) at which the breaker opens.
    pub slow_call_rate_threshold: f64,
    /// A call taking at least this long is slow.
    pub slow_call_duration_threshold_ms: u64,
    /// No verdict before the window holds this many calls.
    pub minimum_number_of_calls: u32,
    pub wait_duration_in_open_ms: u64,
    /// Each consecutive opening waits this much longer (1.0: no backoff).
    pub open_backoff_multiplier: f64,
    pub max_wait_duration_in_open_ms: u64,
    pub permitted_calls_in_half_open: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            sliding_window_type: WindowKind::CountBased,
            sliding_window_size: 50,
            failure_rate_threshold: 50.0,
            slow_call_rate_threshold: 80.0,
            slow_call_duration_threshold_ms: 5_000,
            minimum_number_of_calls: 20,
            wait_duration_in_open_ms: 10_000,
            open_backoff_multiplier: 2.0,
            max_wait_duration_in_open_ms: 120_000,
            permitted_calls_in_half_open: 3,
        }
    }
}

impl BreakerSettings {
    /// `Err(field)` naming the first setting out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.sliding_window_size == 0 || self.sliding_window_size > MAX_WINDOW_SIZE {
            return Err("sliding_window_size");
        }
        if !(0.0..=100.0).contains(&self.failure_rate_threshold)
            || self.failure_rate_threshold == 0.0
        {
            return Err("failure_rate_threshold");
        }
        if !(0.0..=100.0).contains(&self.slow_call_rate_threshold)
            || self.slow_call_rate_threshold == 0.0
        {
            return Err("slow_call_rate_threshold");
        }
        if self.minimum_number_of_calls == 0 {
            return Err("minimum_number_of_calls");
        }
        if self.permitted_calls_in_half_open == 0 {
            return Err("permitted_calls_in_half_open");
        }
        if self.open_backoff_multiplier < 1.0
            || self.max_wait_duration_in_open_ms < self.wait_duration_in_open_ms
        {
            return Err("open_backoff_multiplier");
        }
        Ok(())
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    Closed,
    Open,
    HalfOpen,
    ForcedOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
            CircuitState::ForcedOpen => "forced_open",
        }
    }
}

/// A state change, reported so it can be logged, counted and audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CircuitChange {
    pub from: CircuitState,
    pub to: CircuitState,
}

/// One call's verdict as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord {
    pub failed: bool,
    pub slow: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

/// The sliding window of recent outcomes.
#[derive(Debug)]
enum Window {
    Count(VecDeque<CallRecord>),
    Time(VecDeque<Bucket>),
}

impl Window {
    fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::CountBased => Window::Count(VecDeque::new()),
            WindowKind::TimeBased => Window::Time(VecDeque::new()),
        }
    }

    fn record(&mut self, size: u32, now_ms: u64, call: CallRecord) {
        match self {
            Window::Count(calls) => {
                if calls.len() == size as usize {
                    calls.pop_front();
                }
                calls.push_back(call);
            }
            Window::Time(buckets) => {
                let second = now_ms / 1000;
                Self::expire(buckets, size, second);
                if buckets.back().is_none_or(|b| b.second != second) {
                    buckets.push_back(Bucket {
                        second,
                        ..Bucket::default()
                    });
                }
                if let Some(bucket) = buckets.back_mut() {
                    bucket.calls += 1;
                    bucket.failures += u32::from(call.failed);
                    bucket.slow += u32::from(call.slow);
                }
            }
        }
    }

    fn expire(buckets: &mut VecDeque<Bucket>, size: u32, second: u64) {
        while buckets
            .front()
            .is_some_and(|b| b.second + u64::from(size) <= second)
        {
            buckets.pop_front();
        }
    }

    /// (calls, failures, slow) currently in the window.
    fn totals(&mut self, size: u32, now_ms: u64) -> (u32, u32, u32) {
        match self {
            Window::Count(calls) => calls.iter().fold((0, 0, 0), |(n, f, s), c| {
                (n + 1, f + u32::from(c.failed), s + u32::from(c.slow))
            }),
            Window::Time(buckets) => {
                Self::expire(buckets, size, now_ms / 1000);
                buckets.iter().fold((0, 0, 0), |(n, f, s), b| {
                    (n + b.calls, f + b.failures, s + b.slow)
                })
            }
        }
    }

    fn clear(&mut self) {
        match self {
            Window::Count(calls) => calls.clear(),
            Window::Time(buckets) => buckets.clear(),
        }
    }
}

/// One provider's circuit breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: BreakerSettings,
    state: CircuitState,
    window: Window,
    /// When OPEN: the instant (ms) from which a probe may go through.
    open_until_ms: u64,
    /// Consecutive openings without a close in between (for the backoff).
    consecutive_opens: u32,
    half_open_admitted: u32,
    half_open_succeeded: u32,
    /// State changes so far (exported as a counter).
    pub transitions: u64,
}

impl CircuitBreaker {
    pub fn new(settings: BreakerSettings) -> Self {
        CircuitBreaker {
            window: Window::new(settings.sliding_window_type),
            settings,
            state: CircuitState::Closed,
            open_until_ms: 0,
            consecutive_opens: 0,
            half_open_admitted: 0,
            half_open_succeeded: 0,
            transitions: 0,
        }
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// While OPEN, the instant (ms) from which a probe may go through.
    pub fn open_until_ms(&self) -> u64 {
        self.open_until_ms
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    fn move_to(&mut self, to: CircuitState, now_ms: u64) -> Option<CircuitChange> {
        let from = self.state;
        if from == to {
            return None;
        }
        self.state = to;
        self.transitions += 1;
        match to {
            CircuitState::Open => {
                let factor = self
                    .settings
                    .open_backoff_multiplier
                    .powi(self.consecutive_opens.min(30) as i32);
                let wait = (self.settings.wait_duration_in_open_ms as f64 * factor)
                    .min(self.settings.max_wait_duration_in_open_ms as f64)
                    as u64;
                self.open_until_ms = now_ms.saturating_add(wait);
                self.consecutive_opens += 1;
            }
            CircuitState::HalfOpen => {
                self.half_open_admitted = 0;
                self.half_open_succeeded = 0;
            }
            CircuitState::Closed => {
                self.consecutive_opens = 0;
                self.window.clear();
            }
            CircuitState::ForcedOpen => {}
        }
        Some(CircuitChange { from, to })
    }

    /// May a call go out now? `Ok` carries a state change (OPEN → HALF_OPEN)
    /// if asking caused one.
    pub fn try_acquire(&mut self, now_ms: u64) -> Result<Option<CircuitChange>, CircuitState> {
        let mut change = None;
        if self.state == CircuitState::Open && now_ms >= self.open_until_ms {
            change = self.move_to(CircuitState::HalfOpen, now_ms);
        }
        match self.state {
            CircuitState::Closed => Ok(change),
            CircuitState::HalfOpen
                if self.half_open_admitted < self.settings.permitted_calls_in_half_open =>
            {
                self.half_open_admitted += 1;
                Ok(change)
            }
            state => Err(state),
        }
    }

    /// Records the outcome of an admitted call.
    pub fn on_result(&mut self, now_ms: u64, call: CallRecord) -> Option<CircuitChange> {
        let bad = call.failed || call.slow;
        match self.state {
            CircuitState::Closed => {
                let size = self.settings.sliding_window_size;
                self.window.record(size, now_ms, call);
                let (calls, failures, slow) = self.window.totals(size, now_ms);
                if calls < self.settings.minimum_number_of_calls {
                    return None;
                }
                let failure_rate = 100.0 * f64::from(failures) / f64::from(calls);
                let slow_rate = 100.0 * f64::from(slow) / f64::from(calls);
                if failure_rate >= self.settings.failure_rate_threshold
                    || slow_rate >= self.settings.slow_call_rate_threshold
                {
                    return self.move_to(CircuitState::Open, now_ms);
                }
                None
            }
            CircuitState::HalfOpen if bad => self.move_to(CircuitState::Open, now_ms),
            CircuitState::HalfOpen => {
                self.half_open_succeeded += 1;
                if self.half_open_succeeded >= self.settings.permitted_calls_in_half_open {
                    return self.move_to(CircuitState::Closed, now_ms);
                }
                None
            }
            // A call admitted before the state changed: nothing to learn.
            CircuitState::Open | CircuitState::ForcedOpen => None,
        }
    }

    /// An operator forces the breaker open (drain) or releases it (→ CLOSED).
    pub fn force_open(&mut self, forced: bool, now_ms: u64) -> Option<CircuitChange> {
        match (forced, self.state) {
            (true, _) => self.move_to(CircuitState::ForcedOpen, now_ms),
            (false, CircuitState::ForcedOpen) => self.move_to(CircuitState::Closed, now_ms),
            (false, _) => None,
        }
    }

    /// (failure rate, slow-call rate) in percent over the current window.
    pub fn rates(&mut self, now_ms: u64) -> (f64, f64) {
        let (calls, failures, slow) = self
            .window
            .totals(self.settings.sliding_window_size, now_ms);
        if calls == 0 {
            return (0.0, 0.0);
        }
        (
            100.0 * f64::from(failures) / f64::from(calls),
            100.0 * f64::from(slow) / f64::from(calls),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: CallRecord = CallRecord {
        failed: false,
        slow: false,
    };
    const FAIL: CallRecord = CallRecord {
        failed: true,
        slow: false,
    };
    const SLOW: CallRecord = CallRecord {
        failed: false,
        slow: true,
    };

    fn settings() -> BreakerSettings {
        BreakerSettings {
            sliding_window_size: 10,
            minimum_number_of_calls: 5,
            failure_rate_threshold: 50.0,
            wait_duration_in_open_ms: 1_000,
            permitted_calls_in_half_open: 2,
            ..BreakerSettings::default()
        }
    }

    #[test]
    fn opens_only_after_the_minimum_number_of_calls() {
        let mut breaker = CircuitBreaker::new(settings());
        for t in 0..4 {
            assert!(breaker.try_acquire(t).is_ok());
            assert_eq!(
                breaker.on_result(t, FAIL),
                None,
                "4 failures are below the minimum of 5"
            );
        }
        assert!(breaker.try_acquire(4).is_ok());
        let change = breaker.on_result(4, FAIL);
        assert_eq!(
            change,
            Some(CircuitChange {
                from: CircuitState::Closed,
                to: CircuitState::Open
            })
        );
        assert_eq!(breaker.try_acquire(5), Err(CircuitState::Open));
    }

    #[test]
    fn half_open_probes_close_or_reopen_with_backoff() {
        let mut breaker = CircuitBreaker::new(settings());
        for t in 0..5 {
            breaker.try_acquire(t).ok();
            breaker.on_result(t, FAIL);
        }
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(breaker.try_acquire(999 + 4), Err(CircuitState::Open));
        // Wait over: two probes admitted, a third refused.
        assert_eq!(
            breaker.try_acquire(1_004),
            Ok(Some(CircuitChange {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen
            }))
        );
        assert_eq!(breaker.try_acquire(1_004), Ok(None));
        assert_eq!(breaker.try_acquire(1_004), Err(CircuitState::HalfOpen));
        // One bad probe reopens, now for twice as long.
        assert_eq!(
            breaker.on_result(1_005, FAIL).map(|c| c.to),
            Some(CircuitState::Open)
        );
        assert_eq!(breaker.try_acquire(1_005 + 1_999), Err(CircuitState::Open));
        assert!(breaker.try_acquire(1_005 + 2_000).is_ok());
        breaker.try_acquire(3_005).ok();
        assert_eq!(breaker.on_result(3_006, OK), None);
        assert_eq!(
            breaker.on_result(3_006, OK).map(|c| c.to),
            Some(CircuitState::Closed)
        );
    }

    /// Only what the breaker does with healthy records. Whether a decline
    /// is recorded as healthy is the provider actor's mapping, tested
    /// through the actor in `tests/integration/resilience.rs`
    /// (`a_hundred_soft_and_a_hundred_hard_declines_leave_the_breaker_closed`).
    #[test]
    fn a_thousand_healthy_records_never_open_it() {
        let mut breaker = CircuitBreaker::new(settings());
        for t in 0..1_000 {
            assert!(breaker.try_acquire(t).is_ok());
            assert_eq!(breaker.on_result(t, OK), None);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn slow_calls_open_it() {
        let mut breaker = CircuitBreaker::new(BreakerSettings {
            slow_call_rate_threshold: 60.0,
            ..settings()
        });
        let outcomes = [SLOW, SLOW, OK, SLOW, SLOW];
        let changes: Vec<_> = outcomes
            .iter()
            .enumerate()
            .map(|(t, c)| breaker.on_result(t as u64, *c))
            .collect();
        assert_eq!(
            changes.last().copied().flatten().map(|c| c.to),
            Some(CircuitState::Open)
        );
    }

    #[test]
    fn time_based_window_forgets_old_seconds() {
        let mut breaker = CircuitBreaker::new(BreakerSettings {
            sliding_window_type: WindowKind::TimeBased,
            sliding_window_size: 2,
            ..settings()
        });
        for _ in 0..4 {
            breaker.on_result(0, FAIL);
        }
        // Three seconds later the failures have left the window.
        for _ in 0..5 {
            assert_eq!(breaker.on_result(3_000, OK), None);
        }
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.rates(3_000), (0.0, 0.0));
    }

    #[test]
    fn forced_open_refuses_until_released() {
        let mut breaker = CircuitBreaker::new(settings());
        assert!(breaker.force_open(true, 0).is_some());
        assert_eq!(
            breaker.try_acquire(1_000_000),
            Err(CircuitState::ForcedOpen)
        );
        assert_eq!(
            breaker.force_open(false, 1).map(|c| c.to),
            Some(CircuitState::Closed)
        );
        assert!(breaker.try_acquire(2).is_ok());
    }
}
