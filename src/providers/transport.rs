//! What every HTTP adapter needs around its calls, written once.
//!
//! Stripe and Adyen each carried a private copy of these helpers, and the
//! copies had drifted apart (one read fractional `Retry-After`, one capped
//! it, the other did neither). One copy, tested once, keeps the adapters
//! alike where they should be:
//!
//! - [`read_body`]: read an answer whole, but never more than a cap, so a
//!   misbehaving server cannot make the engine buffer without bound.
//! - [`error_chain`]: say what a transport error was (reqwest's own message
//!   is usually just "error sending request").
//! - [`retry_after_ms`] and [`parse_retry_after`]: the provider's requested
//!   delay, in every form HTTP allows, capped.
//! - [`header_text`]: a header as text, when it is text.
//! - [`mask`] and [`redact_json_fields`]: keep credentials out of what the
//!   engine records (DESIGN §11: every stored raw response has its secrets
//!   masked).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use std::borrow::Cow;
use std::error::Error as StdError;

/// The longest `Retry-After` honoured (one day): a provider asking for more
/// is wrong, or down for so long that waiting on it is not the answer.
pub const MAX_RETRY_AFTER_MS: u64 = 24 * 60 * 60 * 1000;
/// What replaces the value of a redacted JSON field.
pub const REDACTED: &str = "[REDACTED]";
/// The shortest redacted value that is also masked elsewhere in an answer.
/// Shorter values are too likely to be ordinary text: masking every `a`
/// because a server sent `"client_secret": "a"` would ruin the record.
const MIN_MASKED_VALUE_CHARS: usize = 8;

/// HTTP dates in the two obsolete forms RFC 9110 §5.6.7 still requires a
/// recipient to accept (the preferred IMF-fixdate is read as RFC 2822).
const OBSOLETE_HTTP_DATE_FORMATS: &[&str] = &[
    // RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`.
    "%A, %d-%b-%y %H:%M:%S GMT",
    // asctime: `Sun Nov  6 08:49:37 1994`.
    "%a %b %e %H:%M:%S %Y",
];

/// Why an answer's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection failed, or timed out, while the body was read.
    #[error("{}", error_chain(.0))]
    Http(#[from] reqwest::Error),
    /// The body is longer than the caller's cap.
    #[error("response body larger than {max_bytes} bytes")]
    TooLarge { max_bytes: usize },
}

/// The body of `response`, read whole, unless it is longer than `max_bytes`.
///
/// Each adapter passes its own cap: how large a legitimate answer can be
/// depends on the API (a Stripe page of balance transactions is far larger
/// than any Adyen answer).
pub async fn read_body(
    mut response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max_bytes {
            return Err(ReadError::TooLarge { max_bytes });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, `: `-separated. reqwest's own message rarely
/// says what went wrong ("error sending request"); its sources do
/// ("connection refused", "operation timed out").
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The header `name` as text, if present and visible ASCII.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The `Retry-After` of an answer in milliseconds (see
/// [`parse_retry_after`]).
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    header_text(headers, RETRY_AFTER.as_str()).and_then(parse_retry_after)
}

/// `Retry-After` in milliseconds: delay-seconds (fractions accepted, as some
/// servers send them) or an HTTP date (a past one means now), capped at
/// [`MAX_RETRY_AFTER_MS`]. `None` when it is neither, or negative.
pub fn parse_retry_after(text: &str) -> Option<u64> {
    let text = text.trim();
    let millis = if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        // The float is capped first, so the cast cannot saturate oddly.
        (seconds * 1000.0).min(MAX_RETRY_AFTER_MS as f64) as u64
    } else {
        let at = http_date(text)?;
        let wait = at - chrono::Utc::now();
        u64::try_from(wait.num_milliseconds().max(0)).ok()?
    };
    Some(millis.min(MAX_RETRY_AFTER_MS))
}

/// An HTTP date in any of its three forms.
fn http_date(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    if let Ok(at) = chrono::DateTime::parse_from_rfc2822(text) {
        return Some(at.with_timezone(&chrono::Utc));
    }
    OBSOLETE_HTTP_DATE_FORMATS.iter().find_map(|format| {
        chrono::NaiveDateTime::parse_from_str(text, format)
            .ok()
            .map(|at| at.and_utc())
    })
}

/// `text` with every occurrence of `secret` replaced by `replacement`.
/// Borrowed when there is nothing to mask, which is almost always.
pub fn mask<'a>(text: &'a str, secret: &str, replacement: &str) -> Cow<'a, str> {
    if secret.is_empty() || !text.contains(secret) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.replace(secret, replacement))
}

/// `text` with the value of every field named in `fields`, at any depth,
/// replaced by [`REDACTED`]; each redacted value is also masked wherever
/// else it appears in a string (a URL carrying it as a parameter).
///
/// Text that is not JSON, or has none of the fields, comes back unchanged,
/// byte for byte: the record keeps exactly what the provider said whenever
/// it holds no secret.
pub fn redact_json_fields<'a>(text: &'a str, fields: &[&str]) -> Cow<'a, str> {
    let Ok(mut value) = serde_json::from_str::<Value>(text) else {
        return Cow::Borrowed(text);
    };
    if redact_value(&mut value, fields) {
        Cow::Owned(value.to_string())
    } else {
        Cow::Borrowed(text)
    }
}

/// [`redact_json_fields`] on a parsed value, in place. Returns whether
/// anything was redacted. Field names match ignoring ASCII case; a field
/// whose value is `null` holds no secret and is left as it is.
pub fn redact_value(value: &mut Value, fields: &[&str]) -> bool {
    let mut secrets = Vec::new();
    let redacted = take_fields(value, fields, &mut secrets);
    secrets.retain(|secret| secret.chars().count() >= MIN_MASKED_VALUE_CHARS);
    if !secrets.is_empty() {
        mask_strings(value, &secrets);
    }
    redacted
}

/// Replaces the named fields' values by [`REDACTED`], collecting the string
/// values replaced. Returns whether any field was replaced.
fn take_fields(value: &mut Value, fields: &[&str], secrets: &mut Vec<String>) -> bool {
    match value {
        Value::Object(object) => {
            let mut redacted = false;
            for (key, field) in object.iter_mut() {
                let is_secret = fields.iter().any(|name| name.eq_ignore_ascii_case(key));
                if is_secret && !field.is_null() {
                    collect_strings(field, secrets);
                    *field = Value::String(REDACTED.to_string());
                    redacted = true;
                } else {
                    redacted |= take_fields(field, fields, secrets);
                }
            }
            redacted
        }
        Value::Array(items) => items.iter_mut().fold(false, |redacted, item| {
            take_fields(item, fields, secrets) | redacted
        }),
        _ => false,
    }
}

fn collect_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) if !text.is_empty() => out.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| collect_strings(item, out)),
        Value::Object(object) => object.values().for_each(|item| collect_strings(item, out)),
        _ => {}
    }
}

/// Masks every `secrets` value inside every string of `value`.
fn mask_strings(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(text) => {
            for secret in secrets {
                if let Cow::Owned(masked) = mask(text, secret, REDACTED) {
                    *text = masked;
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| mask_strings(item, secrets)),
        Value::Object(object) => object
            .values_mut()
            .for_each(|item| mask_strings(item, secrets)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use serde_json::json;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(2000));
        assert_eq!(parse_retry_after(" 0.5 "), Some(500));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("NaN"), None);
        assert_eq!(parse_retry_after("inf"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(0),
            "a date in the past means now"
        );
    }

    #[test]
    fn retry_after_is_capped_at_a_day() {
        assert_eq!(parse_retry_after("99999999"), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(parse_retry_after("1e300"), Some(MAX_RETRY_AFTER_MS));
        let next_year = (chrono::Utc::now() + chrono::Duration::days(365)).to_rfc2822();
        assert_eq!(parse_retry_after(&next_year), Some(MAX_RETRY_AFTER_MS));
    }

    #[test]
    fn retry_after_reads_every_http_date_form() {
        for past in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after(past), Some(0), "{past}");
        }
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        for form in [
            later.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
            later.format("%A, %d-%b-%y %H:%M:%S GMT").to_string(),
            later.format("%a %b %e %H:%M:%S %Y").to_string(),
        ] {
            let wait = parse_retry_after(&form).expect("a date");
            assert!((100_000..=120_000).contains(&wait), "{form}: {wait}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates_from_headers() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after_ms(&headers), Some(3000));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_ms(&headers), Some(0), "a past date: now");
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).expect("header"));
        let wait = retry_after_ms(&headers).expect("date");
        assert!((100_000..=120_000).contains(&wait), "{wait}");
    }

    #[test]
    fn header_text_skips_values_that_are_not_text() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("yes"));
        headers.insert("x-b", HeaderValue::from_bytes(b"\xff").expect("opaque"));
        assert_eq!(header_text(&headers, "x-a"), Some("yes"));
        assert_eq!(header_text(&headers, "x-b"), None);
        assert_eq!(header_text(&headers, "x-c"), None);
    }

    #[test]
    fn mask_replaces_the_secret_everywhere() {
        assert_eq!(
            mask("key sk_1 and sk_1!", "sk_1", "***"),
            "key *** and ***!"
        );
        assert!(matches!(
            mask("nothing here", "sk_1", "***"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            mask("an empty secret masks nothing", "", "***"),
            "an empty secret masks nothing"
        );
    }

    #[test]
    fn redaction_replaces_nested_fields_and_their_copies() {
        let secret = "pi_1_secret_abcdef";
        let text = json!({
            "id": "pi_1",
            "client_secret": secret,
            "next_action": { "redirect_to_url": {
                "url": format!("https://hooks.example/3ds?payment_intent_client_secret={secret}")
            }},
            "error": { "payment_intent": { "client_secret": secret, "status": "x" } },
            "list": [{ "CLIENT_SECRET": secret }],
            "other": { "client_secret": null },
        })
        .to_string();
        let redacted = redact_json_fields(&text, &["client_secret"]);
        assert!(!redacted.contains(secret), "{redacted}");
        let value: Value = serde_json::from_str(&redacted).expect("still JSON");
        assert_eq!(value["client_secret"], REDACTED);
        assert_eq!(value["error"]["payment_intent"]["client_secret"], REDACTED);
        assert_eq!(value["error"]["payment_intent"]["status"], "x");
        assert_eq!(value["list"][0]["CLIENT_SECRET"], REDACTED);
        assert_eq!(value["other"]["client_secret"], Value::Null);
        assert_eq!(
            value["next_action"]["redirect_to_url"]["url"],
            "https://hooks.example/3ds?payment_intent_client_secret=[REDACTED]"
        );
    }

    #[test]
    fn redaction_leaves_other_text_byte_for_byte() {
        let spaced = "{ \"id\" : \"pi_1\",  \"client_secret\": null }";
        assert!(matches!(
            redact_json_fields(spaced, &["client_secret"]),
            Cow::Borrowed(_)
        ));
        let html = "<html>client_secret</html>";
        assert_eq!(redact_json_fields(html, &["client_secret"]), html);
    }

    #[test]
    fn short_redacted_values_are_not_masked_elsewhere() {
        let mut value = json!({ "secret": "a", "note": "a banana" });
        assert!(redact_value(&mut value, &["secret"]));
        assert_eq!(value, json!({ "secret": REDACTED, "note": "a banana" }));
    }

    #[tokio::test]
    async fn error_chain_names_the_cause() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("bound address")
        };
        let error = reqwest::get(format!("http://{closed}/"))
            .await
            .expect_err("nothing listens");
        let chain = error_chain(&error);
        assert!(chain.starts_with(&error.to_string()), "{chain}");
        assert!(chain.len() > error.to_string().len(), "{chain}");
        assert!(chain.contains(": "), "{chain}");
    }

    #[test]
    fn error_chain_of_a_plain_error_is_its_message() {
        let error = std::io::Error::other("disk on fire");
        assert_eq!(error_chain(&error), "disk on fire");
    }
}
