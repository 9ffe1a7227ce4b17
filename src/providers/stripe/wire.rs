//! Stripe's wire format: the form encoding of requests and the serde types of
//! the answers the adapter reads.
//!
//! Only the fields the adapter uses are declared; serde ignores the rest, so
//! Stripe adding fields never breaks parsing. Fields Stripe documents as
//! nullable, or that a Stripe-compatible server might leave out, are
//! `Option`s: the adapter decides what a missing field means, not serde.

use serde::Deserialize;

/// An `application/x-www-form-urlencoded` body (or query string) in Stripe's
/// dialect: nested parameters are flattened with brackets
/// (`metadata[order_id]=o_1`, `expand[]=data.source`), and the brackets are
/// sent literally, as Stripe's own libraries do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Self {
        Form::default()
    }

    /// Appends `key=value`; keys may repeat (`expand[]`).
    pub fn push(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// Appends `key=value` when there is a value.
    pub fn push_opt(
        &mut self,
        key: impl Into<String>,
        value: Option<impl Into<String>>,
    ) -> &mut Self {
        if let Some(value) = value {
            self.push(key, value);
        }
        self
    }

    /// Appends `{parent}[{child}]=value`.
    pub fn push_nested(
        &mut self,
        parent: &str,
        child: &str,
        value: impl Into<String>,
    ) -> &mut Self {
        self.push(format!("{parent}[{child}]"), value)
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The encoded form: `k=v&k=v`, each part percent-encoded (space as
    /// `+`), with `[` and `]` left as they are in keys.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        for (i, (key, value)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode_into(&mut out, key, true);
            out.push('=');
            encode_into(&mut out, value, false);
        }
        out
    }
}

/// Percent-encodes `text` as `application/x-www-form-urlencoded` does:
/// ASCII letters, digits and `*-._` stay, space becomes `+`, every other
/// byte (of the UTF-8 encoding) becomes `%XX`. In keys, `[` and `]` stay too.
fn encode_into(out: &mut String, text: &str, is_key: bool) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(byte))
            }
            b'[' | b']' if is_key => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(byte >> 4)]));
                out.push(char::from(HEX[usize::from(byte & 0x0F)]));
            }
        }
    }
}

/// Decodes an `application/x-www-form-urlencoded` body into its pairs, in
/// order. Lenient: a `%` not followed by two hex digits is kept as is, and
/// invalid UTF-8 is replaced. Used by tests to read what the adapter sent.
pub fn decode_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            (decode_part(key), decode_part(value))
        })
        .collect()
}

fn decode_part(text: &str) -> String {
    fn hex(byte: u8) -> Option<u8> {
        match byte {
            b'0'..=b'9' => Some(byte - b'0'),
            b'a'..=b'f' => Some(byte - b'a' + 10),
            b'A'..=b'F' => Some(byte - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let high = bytes.get(i + 1).copied().and_then(hex);
                let low = bytes.get(i + 2).copied().and_then(hex);
                if let (Some(high), Some(low)) = (high, low) {
                    out.push(high << 4 | low);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A PaymentIntent (`object: "payment_intent"`).
#[derive(Debug, Clone, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    /// `requires_payment_method`, `requires_confirmation`, `requires_action`,
    /// `processing`, `requires_capture`, `canceled` or `succeeded`.
    pub status: String,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub amount_received: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    /// Why the last confirmation failed, in the error envelope's shape.
    #[serde(default)]
    pub last_payment_error: Option<ApiError>,
    #[serde(default)]
    pub next_action: Option<NextAction>,
    /// The engine's ids, as the charge sent them (`payment_id`, `order_id`,
    /// `merchant_id`, `idempotency_key`...). Kept loose: a value that is not
    /// text must not make the whole PaymentIntent unreadable.
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// The text value of `key` in a `metadata` object, if it has one.
pub fn metadata_text(metadata: Option<&serde_json::Value>, key: &str) -> Option<String> {
    metadata?
        .get(key)?
        .as_str()
        .filter(|value| !value.is_empty())
        .map(str::to_string)
}

/// What a `requires_action` PaymentIntent waits for.
#[derive(Debug, Clone, Deserialize)]
pub struct NextAction {
    /// `use_stripe_sdk`, `redirect_to_url`...
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// Stripe's error envelope: `{"error": {...}}`.
#[derive(Debug, Clone, Deserialize)]
pub struct ErrorEnvelope {
    pub error: ApiError,
}

/// The error object (also a PaymentIntent's `last_payment_error`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ApiError {
    /// `api_error`, `card_error`, `idempotency_error` or
    /// `invalid_request_error`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The error code (`card_declined`, `parameter_missing`...).
    #[serde(default)]
    pub code: Option<String>,
    /// For card errors: the issuer's reason (`insufficient_funds`...).
    #[serde(default)]
    pub decline_code: Option<String>,
    /// For card errors: what to do next (`try_again_later`,
    /// `do_not_try_again`, `confirm_card_data`).
    #[serde(default)]
    pub advice_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub param: Option<String>,
    /// The PaymentIntent the error is about (card errors on confirmation).
    /// Kept as an id-or-object so an unexpected shape never hides the error.
    #[serde(default)]
    pub payment_intent: Option<serde_json::Value>,
}

impl ApiError {
    /// The id of the PaymentIntent the error carries, if any.
    pub fn payment_intent_id(&self) -> Option<String> {
        match self.payment_intent.as_ref()? {
            serde_json::Value::String(id) => Some(id.clone()),
            serde_json::Value::Object(object) => object
                .get("id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string),
            _ => None,
        }
    }
}

/// The answer of `GET /v1/payment_intents/search`.
#[derive(Debug, Clone, Deserialize)]
pub struct SearchResult<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(default)]
    pub next_page: Option<String>,
}

/// A Refund (`object: "refund"`).
#[derive(Debug, Clone, Deserialize)]
pub struct Refund {
    pub id: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    #[serde(default)]
    pub amount: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<IdOrObject>,
    /// The Charge refunded (the PaymentIntent's latest charge).
    #[serde(default)]
    pub charge: Option<IdOrObject>,
    /// Why a refund failed (`charge_for_pending_refund_disputed`...).
    #[serde(default)]
    pub failure_reason: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// A Charge (`object: "charge"`), as a `charge.*` event carries it.
#[derive(Debug, Clone, Deserialize)]
pub struct Charge {
    pub id: String,
    #[serde(default)]
    pub amount: Option<i64>,
    /// The total refunded so far, partial refunds included.
    #[serde(default)]
    pub amount_refunded: Option<i64>,
    #[serde(default)]
    pub currency: Option<String>,
    /// The PaymentIntent the charge belongs to (none for a bare charge).
    #[serde(default)]
    pub payment_intent: Option<IdOrObject>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// An Event (`object: "event"`), as a webhook delivers it. `data.object`
/// is read according to `type` once the signature is verified.
#[derive(Debug, Clone, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    pub data: EventData,
}

/// An Event's `data`.
#[derive(Debug, Clone, Deserialize)]
pub struct EventData {
    /// The object the event is about, as it was when the event happened.
    pub object: serde_json::Value,
}

/// A list page (`object: "list"`), as `GET /v1/balance_transactions` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct List<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
}

/// One BalanceTransaction (`object: "balance_transaction"`).
#[derive(Debug, Clone, Deserialize)]
pub struct BalanceTransaction {
    pub id: String,
    /// Signed, in the balance's currency: negative for refunds.
    pub amount: i64,
    pub currency: String,
    /// Stripe's fee, positive.
    #[serde(default)]
    pub fee: i64,
    /// `available` or `pending`.
    pub status: String,
    /// `charge`, `payment`, `refund`, `payment_refund`, `payout`...
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// The object that caused it: an id, or the object itself when expanded
    /// with `expand[]=data.source`.
    #[serde(default)]
    pub source: Option<Source>,
}

/// A balance transaction's source.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Source {
    Expanded(SourceObject),
    Id(String),
}

/// The part of an expanded source (a Charge or a Refund) the adapter reads:
/// both carry the PaymentIntent they belong to; a Charge also its refunded
/// total and the metadata it got from its PaymentIntent.
#[derive(Debug, Clone, Deserialize)]
pub struct SourceObject {
    pub id: String,
    #[serde(default)]
    pub object: Option<String>,
    #[serde(default)]
    pub payment_intent: Option<IdOrObject>,
    /// A Charge's total refunded so far.
    #[serde(default)]
    pub amount_refunded: Option<i64>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

impl Source {
    pub fn id(&self) -> &str {
        match self {
            Source::Expanded(object) => &object.id,
            Source::Id(id) => id,
        }
    }

    /// The PaymentIntent id of an expanded source, if it has one.
    pub fn payment_intent_id(&self) -> Option<&str> {
        match self {
            Source::Expanded(object) => object.payment_intent.as_ref().map(IdOrObject::id),
            Source::Id(_) => None,
        }
    }

    /// The expanded source, if it is a Charge.
    pub fn charge(&self) -> Option<&SourceObject> {
        match self {
            Source::Expanded(object) if object.object.as_deref() == Some("charge") => Some(object),
            _ => None,
        }
    }

    /// The string `metadata[key]` of an expanded source, if it has one.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        match self {
            Source::Expanded(object) => object.metadata.as_ref()?.get(key)?.as_str(),
            Source::Id(_) => None,
        }
    }
}

/// A field Stripe sends as an id, or as the object when expanded.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum IdOrObject {
    Id(String),
    Object { id: String },
}

impl IdOrObject {
    pub fn id(&self) -> &str {
        match self {
            IdOrObject::Id(id) | IdOrObject::Object { id } => id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_nested_keys_with_literal_brackets() {
        let mut form = Form::new();
        form.push("amount", "1000")
            .push_nested("metadata", "order_id", "order 7/ä&=")
            .push("expand[]", "data.source")
            .push_opt("description", None::<String>)
            .push_opt("reason", Some("duplicate"));
        assert_eq!(
            form.encode(),
            "amount=1000&metadata[order_id]=order+7%2F%C3%A4%26%3D&expand[]=data.source&reason=duplicate"
        );
    }

    #[test]
    fn brackets_in_values_are_encoded() {
        let mut form = Form::new();
        form.push("query", "metadata['k']:'v'");
        assert_eq!(form.encode(), "query=metadata%5B%27k%27%5D%3A%27v%27");
    }

    #[test]
    fn decode_inverts_encode() {
        let mut form = Form::new();
        form.push("a b", "c+d%e")
            .push_nested("metadata", "x", "ü 1")
            .push("empty", "");
        let decoded = decode_form(&form.encode());
        assert_eq!(decoded, form.pairs().to_vec());
    }

    #[test]
    fn decode_is_lenient() {
        assert_eq!(
            decode_form("a=%zz&b&c=%41"),
            vec![
                ("a".to_string(), "%zz".to_string()),
                ("b".to_string(), String::new()),
                ("c".to_string(), "A".to_string()),
            ]
        );
    }

    #[test]
    fn parses_the_error_envelope() {
        let body = r#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds","advice_code":"try_again_later","message":"Your card has insufficient funds.","payment_intent":{"id":"pi_1","status":"requires_payment_method"},"doc_url":"x"}}"#;
        let envelope: ErrorEnvelope = serde_json::from_str(body).expect("parses");
        assert_eq!(envelope.error.kind.as_deref(), Some("card_error"));
        assert_eq!(
            envelope.error.decline_code.as_deref(),
            Some("insufficient_funds")
        );
        assert_eq!(envelope.error.payment_intent_id().as_deref(), Some("pi_1"));
    }

    #[test]
    fn parses_sources_as_ids_or_objects() {
        let body = r#"{"object":"list","has_more":false,"data":[
            {"id":"txn_1","amount":1000,"currency":"usd","fee":59,"status":"available","type":"charge","created":1700000000,
             "source":{"id":"ch_1","object":"charge","payment_intent":"pi_1"}},
            {"id":"txn_2","amount":-500,"currency":"usd","fee":0,"status":"pending","type":"refund","created":1700000001,
             "source":"re_1"}]}"#;
        let list: List<BalanceTransaction> = serde_json::from_str(body).expect("parses");
        let first = list.data[0].source.as_ref().expect("source");
        assert_eq!(first.payment_intent_id(), Some("pi_1"));
        let second = list.data[1].source.as_ref().expect("source");
        assert_eq!(second.id(), "re_1");
        assert_eq!(second.payment_intent_id(), None);
    }
}
