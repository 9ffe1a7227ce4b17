//! The health routing reads about each provider.
//!
//! Written only by the provider's own actor (which owns the breaker and the
//! statistics), read lock-free by routing on every payment: choosing a
//! provider costs no message.

use crate::resilience::CircuitState;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

/// What routing reads about a provider, written only by its actor.
#[derive(Debug)]
pub struct ProviderHealth {
    enabled: AtomicBool,
    circuit: AtomicU8,
    /// While OPEN: from when (ms) a probe may go through.
    open_until_ms: AtomicU64,
    /// Rolling success rate in basis points (10,000 = all calls succeeded).
    success_rate_bps: AtomicU32,
}

impl Default for ProviderHealth {
    fn default() -> Self {
        ProviderHealth {
            enabled: AtomicBool::new(true),
            circuit: AtomicU8::new(0),
            open_until_ms: AtomicU64::new(0),
            success_rate_bps: AtomicU32::new(10_000),
        }
    }
}

impl ProviderHealth {
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    pub fn circuit(&self) -> CircuitState {
        match self.circuit.load(Ordering::Relaxed) {
            1 => CircuitState::Open,
            2 => CircuitState::HalfOpen,
            3 => CircuitState::ForcedOpen,
            _ => CircuitState::Closed,
        }
    }

    /// Whether routing should offer this provider calls at `now_ms`.
    /// HALF_OPEN counts, and so does OPEN once its wait is over: the probes
    /// must reach the actor, which itself limits how many go through.
    pub fn admits_calls(&self, now_ms: u64) -> bool {
        self.enabled()
            && match self.circuit() {
                CircuitState::Closed | CircuitState::HalfOpen => true,
                CircuitState::Open => now_ms >= self.open_until_ms.load(Ordering::Relaxed),
                CircuitState::ForcedOpen => false,
            }
    }

    pub fn success_rate(&self) -> f64 {
        f64::from(self.success_rate_bps.load(Ordering::Relaxed)) / 10_000.0
    }

    pub fn publish(
        &self,
        enabled: bool,
        circuit: CircuitState,
        open_until_ms: u64,
        success_rate: f64,
    ) {
        self.enabled.store(enabled, Ordering::Relaxed);
        self.open_until_ms.store(open_until_ms, Ordering::Relaxed);
        let code = match circuit {
            CircuitState::Closed => 0,
            CircuitState::Open => 1,
            CircuitState::HalfOpen => 2,
            CircuitState::ForcedOpen => 3,
        };
        self.circuit.store(code, Ordering::Relaxed);
        self.success_rate_bps
            .store((success_rate * 10_000.0).round() as u32, Ordering::Relaxed);
    }
}
