//! Integration and end-to-end tests: one binary (fast to link), one module
//! per area. Servers are the real `payments` binary on loopback ports.

mod common;

mod actors;
mod adyen;
mod anomaly;
mod anomaly_http;
mod bad_input;
mod bench_check;
mod bench_cli;
mod cluster;
mod crash;
mod doc_examples;
mod email;
mod embedded;
mod events;
mod fencing;
mod fuzz_input;
mod http_payments;
mod idempotency;
mod layers;
mod ledger;
mod metrics;
mod money;
mod money_properties;
#[cfg(feature = "nats")]
mod nats;
mod openapi;
#[cfg(feature = "otlp")]
mod otlp;
mod partitions;
mod reconciliation;
mod recovery;
mod resilience;
mod sandbox_record;
mod security;
mod smtp_sink;
mod startup_checks;
mod stripe;
mod traces;
mod webhooks_inbound;
mod webhooks_verify;
