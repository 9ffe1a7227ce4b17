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
//! Modules form layers, listed here from the top; a module uses only
//! modules of lower layers (checked by `tests/integration/layers.rs`):
//!
//! 1. [`api`]: the HTTP/JSON API (actix-web): routes, authentication, input
//!    parsing, and the one table where errors become status codes.
//! 2. [`engine`]: the embedding API. [`Engine::start`] turns a [`Config`]
//!    into running parts on a dedicated thread and returns an
//!    [`EngineHandle`], a cheap `Send + Sync` handle usable from any tokio
//!    runtime. The HTTP API is a thin layer over the same handle.
//! 3. [`actors`]: the actix actors: a supervisor (shutdown), one provider
//!    actor per provider (circuit breaker, bulkhead, statistics; calls run
//!    outside its mailbox), one payment actor per order (the serialization
//!    point, with the one function that decides what an attempt's outcome
//!    means), the registry that finds or starts them, and the reconciler
//!    (crash recovery, scheduled retries, key pruning).
//! 4. [`messages`]: the typed messages each actor accepts, one module per
//!    actor; tests drive actors through them.
//! 5. [`config`] (a plain description: schema, provider settings,
//!    validation) and [`error`] (the engine's error type). Above them,
//!    `otlp` (cargo feature `otlp`): the export of the spans to an
//!    OpenTelemetry collector, which the binary starts; it masks what it
//!    sends with `config`'s [`config::mask_urls`].
//! 6. [`routing`]: the configured providers, their live health, and the
//!    order a payment tries them in (cost, priority, success rate,
//!    weighted).
//! 7. [`resilience`] (circuit breaker, retry table, retry budget: pure
//!    state and policy), [`providers`] (the [`providers::Provider`] trait
//!    and its adapters: sandbox, Stripe, Adyen, each split into client,
//!    wire types and code table) and [`store`] (durable state: the
//!    [`store::Store`] trait over a backend seam; SQLite with group commit,
//!    PostgreSQL for several instances).
//! 8. [`clock`]: time as a dependency, so tests can drive it.
//! 9. [`domain`]: plain data: money ([`domain::Amount`], checked
//!    arithmetic, fees), currencies, typed prefixed ids, timestamps, the
//!    payment status machine as an explicit transition table, payments,
//!    attempts and events.
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
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod providers;
pub mod resilience;
pub mod routing;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use engine::{Engine, EngineHandle, PaymentPage, ProviderView};
pub use error::EngineError;
pub use messages::payment::{CreatedPayment, PaymentRequest};
