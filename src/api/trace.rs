//! W3C Trace Context at the HTTP edge: each request runs in a span that
//! carries its trace id, continued from the caller's `traceparent` header
//! when it sends a valid one, so a client's trace and the engine's logs
//! (and the payment's own spans, its children) share one id. The answer
//! carries the `traceparent` of the engine's span.
//!
//! With the cargo feature `otlp` and an exporter running, the span is also
//! an OpenTelemetry span, child of the caller's (a remote parent): its ids
//! are then the ones logged and answered, so the id a client gets back
//! names the span the collector received. Without either, the ids are
//! drawn here, as they always were.

use actix_web::http::header::{HeaderName, HeaderValue};
use rand::RngCore;
use tracing::field::Empty;

/// The header of W3C Trace Context.
pub const TRACEPARENT: &str = "traceparent";
/// The only version this parser knows; later versions keep its prefix.
const VERSION: &str = "00";

/// A trace id and the span id of our span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// Our span's id: 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span id, when the trace was continued.
    pub parent_id: Option<String>,
    /// The caller's sampled flag (false when there is no caller's span):
    /// an exporter's sampler follows it.
    pub parent_sampled: bool,
    /// Whether our span is recorded: the answer's flag. Always so without
    /// an exporter; with one, the sampler's decision (which follows the
    /// caller's flag).
    pub sampled: bool,
}

impl TraceContext {
    /// Continues the trace of `header` (a `traceparent` value) or, if it is
    /// missing or malformed (the spec says: ignore it), starts a new one.
    pub fn continue_or_start(header: Option<&str>) -> TraceContext {
        let span_id = random_hex::<8>();
        match header.and_then(parse) {
            Some((trace_id, parent_id, parent_sampled)) => TraceContext {
                trace_id,
                span_id,
                parent_id: Some(parent_id),
                parent_sampled,
                sampled: true,
            },
            None => TraceContext {
                trace_id: random_hex::<16>(),
                span_id,
                parent_id: None,
                parent_sampled: false,
                sampled: true,
            },
        }
    }

    /// The `traceparent` naming our span.
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let flags = if self.sampled { "01" } else { "00" };
        let value = format!("{VERSION}-{}-{}-{flags}", self.trace_id, self.span_id);
        (
            HeaderName::from_static(TRACEPARENT),
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")),
        )
    }
}

/// Opens a request's `http.request` span in the trace of `traceparent`
/// (the header's value, if any) and says which ids it has: the logged
/// `trace_id`, `span_id` and `parent_span_id`, and the answer's header.
/// `route` is left for the caller to record. Without the `otlp` feature
/// the ids are drawn here and the span is opened with them.
#[cfg(not(feature = "otlp"))]
pub fn request_span(method: &str, traceparent: Option<&str>) -> (tracing::Span, TraceContext) {
    let context = TraceContext::continue_or_start(traceparent);
    let span = tracing::info_span!(
        "http.request",
        method = %method,
        route = Empty,
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        parent_span_id = context.parent_id.as_deref().unwrap_or(""),
    );
    (span, context)
}

/// As above; with the `otlp` feature the ids are only known once the span
/// exists (its OpenTelemetry side draws them), so they are recorded after.
#[cfg(feature = "otlp")]
pub fn request_span(method: &str, traceparent: Option<&str>) -> (tracing::Span, TraceContext) {
    let span = tracing::info_span!(
        "http.request",
        method = %method,
        route = Empty,
        trace_id = Empty,
        span_id = Empty,
        parent_span_id = Empty,
    );
    let context = exported(&span, TraceContext::continue_or_start(traceparent));
    // Logged as without the feature: the ids displayed, the caller's span
    // id as a (possibly empty) string.
    span.record("trace_id", tracing::field::display(&context.trace_id));
    span.record("span_id", tracing::field::display(&context.span_id));
    span.record("parent_span_id", context.parent_id.as_deref().unwrap_or(""));
    (span, context)
}

/// The OpenTelemetry span's ids, with the caller's span as its remote
/// parent; `context` as it is when no exporter runs (the span then has
/// no OpenTelemetry side).
#[cfg(feature = "otlp")]
fn exported(span: &tracing::Span, context: TraceContext) -> TraceContext {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    if let Some(parent_id) = &context.parent_id {
        // Both were checked as hex of the right length by `parse`.
        if let (Ok(trace_id), Ok(parent_id)) = (
            TraceId::from_hex(&context.trace_id),
            SpanId::from_hex(parent_id),
        ) {
            let flags = if context.parent_sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            let remote = SpanContext::new(trace_id, parent_id, flags, true, TraceState::NONE);
            // Fails only when no exporter's layer is installed.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
        }
    }
    let otel = span.context();
    let ours = otel.span().span_context().clone();
    if !ours.is_valid() {
        return context;
    }
    TraceContext {
        trace_id: ours.trace_id().to_string(),
        span_id: ours.span_id().to_string(),
        parent_id: context.parent_id,
        parent_sampled: context.parent_sampled,
        sampled: ours.is_sampled(),
    }
}

/// (trace id, parent span id, sampled flag) of a valid `traceparent`.
fn parse(header: &str) -> Option<(String, String, bool)> {
    let mut parts = header.trim().split('-');
    let (version, trace_id, parent_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = version.len() == 2
        && version != "ff"
        && is_hex(version)
        && (version != VERSION || parts.next().is_none())
        && trace_id.len() == 32
        && is_hex(trace_id)
        && trace_id.bytes().any(|b| b != b'0')
        && parent_id.len() == 16
        && is_hex(parent_id)
        && parent_id.bytes().any(|b| b != b'0')
        && flags.len() == 2
        && is_hex(flags);
    let sampled = u8::from_str_radix(flags, 16).is_ok_and(|bits| bits & 1 == 1);
    valid.then(|| (trace_id.to_string(), parent_id.to_string(), sampled))
}

fn is_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    rand::thread_rng().fill_bytes(&mut bytes);
    if bytes.iter().all(|&b| b == 0) {
        bytes[N - 1] = 1;
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued() {
        let context = TraceContext::continue_or_start(Some(VALID));
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(context.span_id.len(), 16);
        assert_ne!(context.span_id, "00f067aa0ba902b7");
    }

    #[test]
    fn malformed_ones_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            let context = TraceContext::continue_or_start(Some(bad));
            assert_eq!(context.parent_id, None, "{bad:?}");
            assert_eq!(context.trace_id.len(), 32);
            assert_ne!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        }
    }

    #[test]
    fn the_answer_names_our_span_in_the_same_trace() {
        let context = TraceContext::continue_or_start(Some(VALID));
        let (_, value) = context.header();
        let value = value.to_str().unwrap_or_default().to_string();
        assert_eq!(
            value,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01", context.span_id)
        );
    }

    /// Without an exporter (whatever the build) the ids are drawn here.
    #[test]
    fn without_an_exporter_the_span_carries_the_ids_drawn_here() {
        let (_span, context) = request_span("POST", Some(VALID));
        assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.parent_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(context.sampled);
    }

    /// With an exporter's layer, the ids are the OpenTelemetry span's, a
    /// child of the caller's span, and its sampling follows the caller's.
    #[cfg(feature = "otlp")]
    #[test]
    fn with_an_exporter_the_ids_are_the_opentelemetry_spans() {
        use opentelemetry::trace::{TraceContextExt, TracerProvider};
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        use tracing_subscriber::layer::SubscriberExt;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let (span, context) = request_span("POST", Some(VALID));
            let otel = span.context();
            let ours = otel.span().span_context().clone();
            assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(ours.trace_id().to_string(), context.trace_id);
            assert_eq!(ours.span_id().to_string(), context.span_id);
            assert_ne!(context.span_id, "00f067aa0ba902b7");
            assert_eq!(context.parent_id.as_deref(), Some("00f067aa0ba902b7"));
            assert!(context.sampled);

            let unsampled = VALID.replace("-01", "-00");
            let (_span, context) = request_span("POST", Some(&unsampled));
            assert_eq!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert!(!context.sampled);
            let (_, value) = context.header();
            assert!(value.to_str().unwrap_or_default().ends_with("-00"));

            let (span, context) = request_span("GET", None);
            let otel = span.context();
            assert_eq!(
                otel.span().span_context().trace_id().to_string(),
                context.trace_id
            );
            assert_ne!(context.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(context.parent_id, None);
            assert!(context.sampled);
        });
    }
}
