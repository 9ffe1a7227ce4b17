//! The typed messages each actor accepts, one module per actor.
//!
//! Messages are the actors' whole interface: tests drive an actor by sending
//! them, exactly as the engine does.

pub mod anomaly;
pub mod deliverer;
pub mod notifier;
pub mod payment;
pub mod provider;
pub mod reconciler;
pub mod supervisor;
