//! Metrics (DESIGN §11): the names, their labels and the one place each is
//! recorded, over the `metrics` facade with a Prometheus recorder.
//!
//! Why a module of its own, at the bottom of the layers: every layer has
//! something to count (the store its batches, the actors their calls, the
//! API its requests), and the facade is a process-wide recorder, so a
//! counter needs no handle passed down. Names and label values live here
//! only, so a dashboard's query and the code cannot disagree.
//!
//! Every family is present from the start with zero values
//! ([`register_families`]): an alert on a rate never sees a missing series.
//! The recorder is installed once per process ([`install`]); an embedding
//! host that installed a recorder of its own keeps it, and the engine's
//! counters go there instead.

use crate::domain::{Category, PaymentStatus};
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

/// HTTP requests by route pattern, method and status.
pub const HTTP_REQUESTS: &str = "payments_http_requests_total";
/// HTTP request duration in seconds, by route pattern.
pub const HTTP_DURATION: &str = "payments_http_request_duration_seconds";
/// Payment status changes written, by new status and provider.
pub const PAYMENTS: &str = "payments_payments_total";
/// One provider call's latency in seconds, by provider and outcome class.
pub const ATTEMPT_DURATION: &str = "payments_attempt_duration_seconds";
/// Calls made again (same key after `unknown`, or a new attempt after a
/// refusal), by outcome class.
pub const RETRIES: &str = "payments_retries_total";
/// Circuit state per provider: 0 closed, 1 half-open, 2 open, 3 forced open.
pub const CIRCUIT_STATE: &str = "payments_circuit_state";
/// Tokens left in the retry budget.
pub const RETRY_BUDGET_TOKENS: &str = "payments_retry_budget_tokens";
/// Writes committed together, per commit.
pub const STORE_BATCH_SIZE: &str = "payments_store_batch_size";
/// A store commit's latency in seconds.
pub const STORE_COMMIT_DURATION: &str = "payments_store_commit_duration_seconds";
/// Payment actors alive on this instance.
pub const PAYMENT_ACTORS: &str = "payments_payment_actors";
/// Discrepancies stored by reconciliation, by category.
pub const DISCREPANCIES: &str = "payments_discrepancies_total";
/// Anomaly flags raised, by rule and action.
pub const ANOMALY_FLAGS: &str = "payments_anomaly_flags_total";
/// Outgoing webhook deliveries, by result.
pub const WEBHOOK_DELIVERIES: &str = "payments_webhook_deliveries_total";
/// Always 1; its labels say which build runs.
pub const BUILD_INFO: &str = "payments_build_info";

/// OpenTelemetry's default explicit bucket boundaries, in seconds
/// (the semantic conventions' HTTP duration buckets).
pub const DURATION_BUCKETS_SECS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Batch sizes: powers of two up to the largest batch a writer takes.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];
/// How often histogram samples are folded into their buckets when nobody
/// scrapes: bounds the memory samples take between scrapes.
pub const UPKEEP_INTERVAL_MS: u64 = 5_000;

/// Outcome classes, as labels (the order of `OutcomeClass`).
pub const OUTCOME_CLASSES: &[&str] = &[
    "succeeded",
    "hard_decline",
    "soft_decline",
    "transient_not_charged",
    "unknown",
    "invalid",
];
/// Anomaly rules, as labels (DESIGN §10).
pub const ANOMALY_RULES: &[&str] = &[
    "velocity",
    "large_amount",
    "failed_streak",
    "duplicate_amount",
    "card_testing",
];
/// Webhook delivery results, as labels.
pub const DELIVERY_RESULTS: &[&str] = &["delivered", "failed", "dead"];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns its
/// handle, or `None` when the host installed a recorder of its own.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    DURATION_BUCKETS_SECS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(STORE_BATCH_SIZE.into()),
                        BATCH_SIZE_BUCKETS,
                    )
                });
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => handle,
                Ok(Err(error)) | Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics stays empty");
                    return None;
                }
            };
            describe();
            spawn_upkeep(handle.clone());
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text of every metric, or an empty document.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(UPKEEP_INTERVAL_MS));
            handle.run_upkeep();
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "metrics upkeep thread not started");
    }
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request duration"
    );
    describe_counter!(PAYMENTS, "payment status changes by status and provider");
    describe_histogram!(
        ATTEMPT_DURATION,
        metrics::Unit::Seconds,
        "provider call latency"
    );
    describe_counter!(
        RETRIES,
        "calls made again, by the outcome class that caused them"
    );
    describe_gauge!(
        CIRCUIT_STATE,
        "0 closed, 1 half-open, 2 open, 3 forced open"
    );
    describe_gauge!(RETRY_BUDGET_TOKENS, "tokens left in the retry budget");
    describe_histogram!(STORE_BATCH_SIZE, "writes committed together");
    describe_histogram!(
        STORE_COMMIT_DURATION,
        metrics::Unit::Seconds,
        "commit latency"
    );
    describe_gauge!(PAYMENT_ACTORS, "payment actors alive");
    describe_counter!(DISCREPANCIES, "discrepancies stored, by category");
    describe_counter!(ANOMALY_FLAGS, "anomaly flags raised, by rule and action");
    describe_counter!(WEBHOOK_DELIVERIES, "outgoing webhook deliveries, by result");
    describe_gauge!(BUILD_INFO, "the running build");
}

/// Creates every series a dashboard expects with a zero value, for the
/// configured providers.
pub fn register_families(providers: &[String]) {
    for provider in providers {
        for status in PaymentStatus::ALL {
            counter!(PAYMENTS, "status" => status.as_str(), "provider" => provider.clone())
                .absolute(0);
        }
        for class in OUTCOME_CLASSES {
            let _ = histogram!(ATTEMPT_DURATION, "provider" => provider.clone(), "class" => *class);
        }
        gauge!(CIRCUIT_STATE, "provider" => provider.clone()).set(0.0);
    }
    for class in OUTCOME_CLASSES {
        counter!(RETRIES, "class" => *class).absolute(0);
    }
    for category in Category::ALL {
        counter!(DISCREPANCIES, "category" => category.as_str()).absolute(0);
    }
    for rule in ANOMALY_RULES {
        for action in ["flag", "block"] {
            counter!(ANOMALY_FLAGS, "rule" => *rule, "action" => action).absolute(0);
        }
    }
    for result in DELIVERY_RESULTS {
        counter!(WEBHOOK_DELIVERIES, "result" => *result).absolute(0);
    }
    counter!(HTTP_REQUESTS, "route" => "/healthz", "method" => "GET", "status" => "200")
        .absolute(0);
    let _ = histogram!(HTTP_DURATION, "route" => "/healthz");
    let _ = histogram!(STORE_BATCH_SIZE);
    let _ = histogram!(STORE_COMMIT_DURATION);
    gauge!(PAYMENT_ACTORS).set(0.0);
    gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "name" => env!("CARGO_PKG_NAME")
    )
    .set(1.0);
}

/// One HTTP request served.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    let route = route.to_string();
    counter!(HTTP_REQUESTS, "route" => route.clone(), "method" => method.to_string(),
        "status" => status.to_string())
    .increment(1);
    histogram!(HTTP_DURATION, "route" => route).record(elapsed.as_secs_f64());
}

/// A payment written with a new status.
pub fn payment_status(status: &'static str, provider: Option<&str>) {
    let provider = provider.unwrap_or("none").to_string();
    counter!(PAYMENTS, "status" => status, "provider" => provider).increment(1);
}

/// One provider call answered (or timed out).
pub fn attempt(provider: &str, class: &'static str, elapsed: Duration) {
    histogram!(ATTEMPT_DURATION, "provider" => provider.to_string(), "class" => class)
        .record(elapsed.as_secs_f64());
}

/// A call made again because of an answer of `class`.
pub fn retry(class: &'static str) {
    counter!(RETRIES, "class" => class).increment(1);
}

/// A provider's circuit is now in `state` (see [`CIRCUIT_STATE`]).
pub fn circuit_state(provider: &str, state: f64) {
    gauge!(CIRCUIT_STATE, "provider" => provider.to_string()).set(state);
}

/// The retry budget holds `tokens`.
pub fn retry_budget(tokens: f64) {
    gauge!(RETRY_BUDGET_TOKENS).set(tokens);
}

/// A store batch of `size` writes committed in `elapsed`.
pub fn store_commit(size: usize, elapsed: Duration) {
    histogram!(STORE_BATCH_SIZE).record(size as f64);
    histogram!(STORE_COMMIT_DURATION).record(elapsed.as_secs_f64());
}

/// Payment actors alive now.
pub fn payment_actors(alive: usize) {
    gauge!(PAYMENT_ACTORS).set(alive as f64);
}

/// A discrepancy stored (new, not a repeat finding).
pub fn discrepancy(category: &str) {
    counter!(DISCREPANCIES, "category" => category.to_string()).increment(1);
}

/// An anomaly rule fired with `action` (`flag` or `block`).
pub fn anomaly_flag(rule: &str, action: &str) {
    counter!(ANOMALY_FLAGS, "rule" => rule.to_string(), "action" => action.to_string())
        .increment(1);
}

/// An outgoing webhook delivery ended an attempt with `result`.
pub fn webhook_delivery(result: &'static str) {
    counter!(WEBHOOK_DELIVERIES, "result" => result).increment(1);
}
