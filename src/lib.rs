//! An actor-based, in-process payment engine.
//!
//! A merchant asks "charge customer X amount A for order O"; the engine
//! routes the charge to a provider, charges exactly once, survives provider
//! failures and its own crashes without double charges or lost payments, and
//! keeps an audit trail of every status change.
//!
//! # Layout
//!
//! Read in this order; each module's own documentation says why it exists.
//!
//! - [`engine`]: the embedding API. [`Engine::start`] boots everything on a
//!   dedicated thread and returns an [`EngineHandle`], a cheap `Send + Sync`
//!   handle usable from any tokio runtime. The HTTP API is a thin layer over
//!   the same handle.
//! - [`domain`]: plain data: money ([`domain::Amount`], checked arithmetic),
//!   currencies, typed prefixed ids, timestamps, the payment status machine
//!   as an explicit transition table, payments, attempts and events.
//! - [`actors`]: the actix actors: a supervisor (shutdown), one provider actor
//!   per provider (circuit breaker, bulkhead, statistics; calls run outside
//!   its mailbox), one payment actor per order (the serialization point), the
//!   registry that finds or starts them, and the reconciler (crash recovery,
//!   scheduled retries, key pruning).
//! - [`messages`]: the typed messages each actor accepts, one module per
//!   actor; tests drive actors through them.
//! - [`providers`]: the [`providers::Provider`] trait and its adapters (the
//!   built-in sandbox, Stripe, Adyen), each mapping its answers to outcome
//!   classes through tables of codes.
//! - [`store`]: durable state: the [`store::Store`] trait, shaped around the
//!   engine's atomic units, implemented once over a small backend seam: SQLite
//!   (one writer batching concurrent writes into one transaction: group
//!   commit) and PostgreSQL (several instances on one database).
//! - [`retry`]: the retry policy per outcome class, as data, and the retry
//!   budget that keeps retries from amplifying an outage.
//! - [`routing`]: ordering the providers for a payment (cost, priority,
//!   success rate, weighted).
//! - [`api`]: the HTTP/JSON API (actix-web): routing, authentication, input
//!   parsing, and the one place errors become status codes.
//! - [`config`]: TOML file, environment and flags, with sane defaults.
//! - [`clock`]: time as a dependency, so tests can drive it.
//! - [`error`]: the engine's error type.
//!
//! # Invariants
//!
//! These hold whatever the concurrency, and the test suites check each one:
//! one charge per order at every provider; a payment whose provider may have
//! charged is never reported `failed` nor sent to another provider; every
//! status change is a legal transition and is in the audit trail; bad input
//! gets a 4xx and changes nothing; nothing acknowledged is lost.

pub mod actors;
pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod messages;
pub mod providers;
pub mod resilience;
pub mod routing;
pub mod store;

pub use config::Config;
pub use engine::{Engine, EngineHandle, PaymentPage, ProviderView};
pub use error::EngineError;
pub use messages::payment::{CreatedPayment, PaymentRequest};
