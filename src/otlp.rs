//! OpenTelemetry export (cargo feature `otlp`): the `tracing` spans the
//! engine already opens (`http.request`, `payment`, `attempt`) also go to
//! an OpenTelemetry collector over OTLP/HTTP with JSON
//! (`log.otlp_endpoint`), so a trace a client continues with its
//! `traceparent` can be followed in the collector's backend, not only by
//! grepping the logs.
//!
//! Why these choices:
//! - The spans are batched and sent from the SDK's own thread, never from
//!   a request's: a slow or dead collector costs a request nothing, and
//!   when the bounded queue is full, spans are dropped, never waited for.
//! - They are posted by reqwest 0.12's blocking client, the reqwest the
//!   engine already has (the exporter's own client would be a second
//!   reqwest, with a second TLS stack); it runs on that thread, outside
//!   the actix runtime.
//! - What a collector receives passes through [`mask_urls`], as every log
//!   line does: a span's fields and events are log text too.
//!
//! The binary starts it ([`OtlpExport::start`]), adds [`OtlpExport::layer`]
//! to its subscriber, and calls [`OtlpExport::shutdown`] when it ends, so
//! the last spans leave.

use crate::config::mask_urls;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response, ResponseBodyTooLarge};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// Where OTLP/HTTP collectors take spans, under the configured base URL.
const TRACES_PATH: &str = "/v1/traces";
/// How long spans wait before they are sent, unless a full batch sends
/// them sooner. Short, so a trace shows up about when its request ends
/// (the SDK's default is 5 s); long enough that a busy engine sends full
/// batches rather than one request per trace.
const BATCH_DELAY: Duration = Duration::from_secs(1);
/// Spans waiting to be sent; past it new spans are dropped. At about 3
/// spans a payment this is a few seconds at full load: enough to ride out
/// a collector's hiccup, while a dead collector holds at most this many
/// (a few MB), never the engine's memory.
const MAX_QUEUED_SPANS: usize = 8_192;
/// Spans per request to the collector (the SDK's default).
const MAX_BATCH_SPANS: usize = 512;
/// One export's bound, retries included: the SDK's thread sends batches
/// one at a time, so a collector that never answers must not hold it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `shutdown` waits for the last spans to leave: the process
/// exits after it even if the collector does not answer.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest collector answer read: an OTLP answer is a few bytes (an
/// optional partial-success note); anything larger is not one.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;
/// The instrumentation scope the spans are reported under.
const SCOPE: &str = "payments";

/// Why the export cannot start.
#[derive(Debug, thiserror::Error)]
#[error("cannot export spans to log.otlp_endpoint {endpoint}: {reason}")]
pub struct OtlpError {
    endpoint: String,
    reason: String,
}

/// The running export: its tracer provider owns the batch thread. Kept by
/// the binary for as long as the command runs; dropping it (or
/// [`OtlpExport::shutdown`]) sends the spans still queued.
pub struct OtlpExport {
    provider: SdkTracerProvider,
}

impl OtlpExport {
    /// Starts exporting to `{endpoint}/v1/traces` (a validated http(s) base
    /// URL, `log.otlp_endpoint`) as `service_name`. Callable on an async
    /// runtime: the blocking client is built on a thread of its own
    /// (reqwest refuses to build one on a runtime's thread).
    pub fn start(endpoint: &str, service_name: &str) -> Result<OtlpExport, OtlpError> {
        let url = format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'));
        let fail = |reason: String| OtlpError {
            endpoint: endpoint.to_string(),
            reason,
        };
        let client = std::thread::spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
        })
        .join()
        .map_err(|_| fail("building the HTTP client panicked".into()))?
        .map_err(|e| fail(e.to_string()))?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(BlockingClient(client))
            .build()
            .map_err(|e| fail(e.to_string()))?;
        let batches = BatchConfigBuilder::default()
            .with_scheduled_delay(BATCH_DELAY)
            .with_max_queue_size(MAX_QUEUED_SPANS)
            .with_max_export_batch_size(MAX_BATCH_SPANS)
            .build();
        let processor = BatchSpanProcessor::builder(Masked::new(exporter))
            .with_batch_config(batches)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_string())
                    .build(),
            )
            .build();
        Ok(OtlpExport { provider })
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans for
    /// this export (ids, parents, fields as attributes, events).
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: Subscriber + for<'span> LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer(SCOPE))
    }

    /// Sends the spans still queued (waiting at most [`SHUTDOWN_TIMEOUT`])
    /// and stops the batch thread: the end of a command.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for OtlpExport {
    fn drop(&mut self) {
        match self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
            Ok(()) | Err(OTelSdkError::AlreadyShutdown) => {}
            Err(error) => tracing::warn!(
                error = %mask_urls(&error.to_string()),
                "OTLP export: the last spans may not have reached the collector"
            ),
        }
    }
}

/// reqwest 0.12's blocking client as the exporter's HTTP client (see the
/// module's documentation for why not the exporter's own). Called on the
/// SDK's batch thread, where blocking is what it does anyway.
#[derive(Debug)]
struct BlockingClient(reqwest::blocking::Client);

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .0
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut answer = Vec::new();
        response
            .take(MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut answer)?;
        if answer.len() as u64 > MAX_ANSWER_BYTES {
            return Err(Box::new(ResponseBodyTooLarge::new()));
        }
        let mut response = Response::builder()
            .status(status)
            .body(Bytes::from(answer))?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// The OTLP exporter behind [`mask_urls`], which also says in the log when
/// the collector stops and starts taking spans: once each way, not once
/// a batch, so a dead collector does not flood the log.
#[derive(Debug)]
struct Masked {
    inner: opentelemetry_otlp::SpanExporter,
    failing: AtomicBool,
}

impl Masked {
    fn new(inner: opentelemetry_otlp::SpanExporter) -> Masked {
        Masked {
            inner,
            failing: AtomicBool::new(false),
        }
    }
}

impl SpanExporter for Masked {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        batch.iter_mut().for_each(mask_span);
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        let was_failing = self.failing.swap(result.is_err(), Ordering::Relaxed);
        match &result {
            Err(error) if !was_failing => tracing::warn!(
                error = %mask_urls(&error.to_string()),
                spans,
                "OTLP export failed; spans are dropped until the collector answers"
            ),
            Ok(()) if was_failing => tracing::info!("OTLP export resumed"),
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Masks every text of `span` that may quote a URL: its fields, its
/// events (log lines inside it) and its error status.
fn mask_span(span: &mut SpanData) {
    span.attributes.iter_mut().for_each(mask_value);
    for event in &mut span.events.events {
        if event.name.contains("://") {
            event.name = mask_urls(&event.name).into();
        }
        event.attributes.iter_mut().for_each(mask_value);
    }
    if let Status::Error { description } = &mut span.status {
        if description.contains("://") {
            *description = mask_urls(description).into();
        }
    }
}

fn mask_value(attribute: &mut KeyValue) {
    if let Value::String(text) = &attribute.value {
        if text.as_str().contains("://") {
            attribute.value = Value::String(mask_urls(text.as_str()).into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind};
    use opentelemetry::InstrumentationScope;
    use std::borrow::Cow;
    use std::time::SystemTime;

    #[test]
    fn what_leaves_for_the_collector_is_masked() {
        let mut events = opentelemetry_sdk::trace::SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            "cannot open postgres://app:hunter2@db/payments",
            SystemTime::now(),
            vec![KeyValue::new("url", "postgres://app:hunter2@db/payments")],
            0,
        ));
        let mut span = SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Borrowed("payment"),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: vec![
                KeyValue::new("database", "postgres://app:hunter2@db/payments"),
                KeyValue::new("attempt", 1),
            ],
            dropped_attributes_count: 0,
            events,
            links: Default::default(),
            status: Status::error("postgres://app:hunter2@db/payments refused"),
            instrumentation_scope: InstrumentationScope::builder(SCOPE).build(),
        };
        mask_span(&mut span);
        let text = format!("{span:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("postgres://***@db/payments"), "{text}");
        assert_eq!(span.attributes[1], KeyValue::new("attempt", 1));
    }
}
