//! Resilience: how the engine treats a provider that fails.
//!
//! Pure state and policy, no I/O and no actors, so that the provider actor,
//! the payment actor and configuration can all use it without reaching
//! into each other:
//!
//! - [`breaker`]: the circuit breaker each provider actor owns;
//! - [`retry`]: the retry table per outcome class (and the lease arithmetic
//!   that follows from it);
//! - [`budget`]: the shared retry budget that keeps retries from amplifying
//!   an outage.

pub mod breaker;
pub mod budget;
pub mod retry;

pub use breaker::{BreakerSettings, CircuitBreaker, CircuitChange, CircuitState};
pub use budget::{BudgetSettings, RetryBudget};
pub use retry::{BackoffKind, ClassPolicy, RetryPolicy, ScheduledPolicy};
