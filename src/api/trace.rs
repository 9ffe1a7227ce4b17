//! W3C Trace Context at the HTTP edge: each request runs in a span that
//! carries its trace id, continued from the caller's `traceparent` header
//! when it sends a valid one, so a client's trace and the engine's logs
//! (and the payment's own spans, its children) share one id. The answer
//! carries the `traceparent` of the engine's span.

use actix_web::http::header::{HeaderName, HeaderValue};
use rand::RngCore;

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
}

impl TraceContext {
    /// Continues the trace of `header` (a `traceparent` value) or, if it is
    /// missing or malformed (the spec says: ignore it), starts a new one.
    pub fn continue_or_start(header: Option<&str>) -> TraceContext {
        let span_id = random_hex::<8>();
        match header.and_then(parse) {
            Some((trace_id, parent_id)) => TraceContext {
                trace_id,
                span_id,
                parent_id: Some(parent_id),
            },
            None => TraceContext {
                trace_id: random_hex::<16>(),
                span_id,
                parent_id: None,
            },
        }
    }

    /// The `traceparent` naming our span (sampled).
    pub fn header(&self) -> (HeaderName, HeaderValue) {
        let value = format!("{VERSION}-{}-{}-01", self.trace_id, self.span_id);
        (
            HeaderName::from_static(TRACEPARENT),
            HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("")),
        )
    }
}

/// (trace id, parent span id) of a valid `traceparent`.
fn parse(header: &str) -> Option<(String, String)> {
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
    valid.then(|| (trace_id.to_string(), parent_id.to_string()))
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
}
