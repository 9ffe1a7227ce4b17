//! The engine's actors (actix).
//!
//! - [`supervisor`]: owns shutdown: stops intake, waits for in-flight work,
//!   flushes the store.
//! - [`provider`]: one per configured provider; owns its admission control
//!   (bulkhead, circuit breaker) and statistics; runs calls outside its
//!   mailbox.
//! - [`payment`]: one per (merchant, order), the single serialization point
//!   for everything that touches the order; found or started through the
//!   [`registry`] and stopped when idle.
//! - [`anomaly`]: the anomaly rules' sliding windows per customer,
//!   bounded per customer and in number; evaluated on every payment.
//! - [`notifier`]: the optional e-mail notifier; mails a notice when a
//!   payment ends succeeded, failed or needs review, never slowing it.
//! - [`deliverer`]: outgoing events to webhook endpoints (signed, retried
//!   with backoff, one instance per delivery by a lease) and to NATS.
//! - [`reconciler`]: finds payments whose outcome is unknown (left by a
//!   crash, or pending) and has their order's actor finish them.

pub mod anomaly;
pub mod deliverer;
pub mod notifier;
pub mod payment;
pub mod provider;
pub mod reconciler;
pub mod registry;
pub mod supervisor;

pub use anomaly::{AnomalyActor, AnomalyDetector, AnomalyGate, AnomalyWindows};
pub use deliverer::{Deliverer, DeliveryPlan};
pub use notifier::{Notifier, NotifierCounts};
pub use payment::{PanicHook, PaymentActor, PaymentDeps};
pub use provider::{ProviderActor, ProviderDirectory, ProviderEntry, ProviderSettings};
pub use reconciler::Reconciler;
pub use registry::PaymentRegistry;
pub use supervisor::Supervisor;
