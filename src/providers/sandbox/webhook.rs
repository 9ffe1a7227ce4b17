//! The sandbox's webhooks, in Stripe's scheme (DESIGN §7): signed and
//! verified with [`signature`] (the code the Stripe adapter uses) and the
//! provider's `webhook_secret`, [`DEFAULT_WEBHOOK_SECRET`] unless one is
//! configured.
//!
//! An event is `{id, object: "event", type, created, data: {object}}`,
//! where the object is the charge as the sandbox's record holds it (the
//! JSON of [`SandboxCharge`], as `GET /v1/sandbox/{provider}/charges`
//! lists it) with `object: "charge"` and the fields its type adds:
//!
//! | type | added to the charge | kind |
//! |---|---|---|
//! | `charge.succeeded` | nothing | `ChargeSucceeded` |
//! | `charge.failed` | `failure_code`, `failure_message` | `ChargeFailed`, classed by the sandbox's decline table |
//! | `charge.refunded` | `amount_refunded` set to the total refunded so far | `ChargeRefunded` |
//!
//! Any other type is `Other(type)`. A sandbox event tells the engine
//! everything the charge holds: the charge id (`provider_payment_id`), the
//! attempt's idempotency key and so the payment id, the merchant and the
//! order (the payment actor's key), the amount and currency.

use super::tokens::decline_class;
use super::{SandboxCharge, SandboxProvider};
use crate::domain::Timestamp;
use crate::providers::signature::{self, DEFAULT_WEBHOOK_TOLERANCE_SECS, SIGNATURE_HEADER};
use crate::providers::webhook::{
    timestamp_from_unix_secs, unix_secs, WebhookError, WebhookEvent, WebhookHeaders, WebhookKind,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// The secret a sandbox signs and verifies webhooks with when none is
/// configured (a development default, like the development API key).
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_sandbox";

const CHARGE_SUCCEEDED: &str = "charge.succeeded";
const CHARGE_FAILED: &str = "charge.failed";
const CHARGE_REFUNDED: &str = "charge.refunded";

/// What a sandbox event says happened to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SandboxEventKind {
    /// `charge.succeeded`.
    ChargeSucceeded,
    /// `charge.failed`, with the decline's code (`card_declined`...) and
    /// message.
    ChargeFailed { code: String, message: String },
    /// `charge.refunded`: `amount_refunded` is the total refunded so far.
    ChargeRefunded { amount_refunded: i64 },
}

impl SandboxEventKind {
    /// The event's `type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            SandboxEventKind::ChargeSucceeded => CHARGE_SUCCEEDED,
            SandboxEventKind::ChargeFailed { .. } => CHARGE_FAILED,
            SandboxEventKind::ChargeRefunded { .. } => CHARGE_REFUNDED,
        }
    }
}

/// An event's envelope, its object still unread.
#[derive(Debug, Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    /// Unix seconds.
    created: i64,
    data: EnvelopeData,
}

#[derive(Debug, Deserialize)]
struct EnvelopeData {
    object: Value,
}

/// The charge of an event: the record's fields the engine can use, and the
/// ones an event type adds.
#[derive(Debug, Deserialize)]
struct EventCharge {
    id: String,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    merchant_id: Option<String>,
    #[serde(default)]
    order_id: Option<String>,
    #[serde(default)]
    amount: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    failure_code: Option<String>,
    #[serde(default)]
    failure_message: Option<String>,
    #[serde(default)]
    amount_refunded: Option<i64>,
}

impl SandboxProvider {
    /// A webhook request for `charge`, as the sandbox sends it: the
    /// headers (with `Stripe-Signature`, signed at `now` with this
    /// sandbox's secret) and the body.
    ///
    /// The sandbox sends these itself to confirm `pm_card_async` charges
    /// (through its webhook sink, see `confirm`); tests use it to make
    /// valid webhooks, and forged or stale ones by changing the body, the
    /// secret or `now`.
    pub fn signed_event(
        &self,
        kind: &SandboxEventKind,
        charge: &SandboxCharge,
        now: Timestamp,
    ) -> (WebhookHeaders, Vec<u8>) {
        sign_event(&self.outbox.secret, kind, charge, now)
    }

    /// The event of one webhook request, once its signature is verified
    /// with this sandbox's secret.
    pub(super) fn verify_event(
        &self,
        headers: &WebhookHeaders,
        body: &[u8],
        now: Timestamp,
    ) -> Result<Vec<WebhookEvent>, WebhookError> {
        signature::verify(
            headers,
            body,
            &self.outbox.secret,
            DEFAULT_WEBHOOK_TOLERANCE_SECS,
            now,
        )?;
        self.read_event(body).map(|event| vec![event])
    }

    fn read_event(&self, body: &[u8]) -> Result<WebhookEvent, WebhookError> {
        let raw: Value = serde_json::from_slice(body)
            .map_err(|error| WebhookError::Malformed(format!("the body is not JSON: {error}")))?;
        let envelope = Envelope::deserialize(&raw)
            .map_err(|error| WebhookError::Malformed(format!("not a sandbox event: {error}")))?;
        let created = timestamp_from_unix_secs(envelope.created).ok_or_else(|| {
            WebhookError::Malformed(format!(
                "event {} has an invalid created time {}",
                envelope.id, envelope.created
            ))
        })?;
        let malformed = |why: &str| {
            WebhookError::Malformed(format!("{} event {}: {why}", envelope.kind, envelope.id))
        };
        let charge = EventCharge::deserialize(&envelope.data.object)
            .map_err(|error| malformed(&format!("the object is not a charge: {error}")))?;
        if let Some(provider) = charge.provider.as_deref() {
            if provider != self.name {
                return Err(malformed(&format!(
                    "charge {} is {provider}'s, not {}'s",
                    charge.id, self.name
                )));
            }
        }
        let kind = match envelope.kind.as_str() {
            CHARGE_SUCCEEDED => WebhookKind::ChargeSucceeded,
            CHARGE_FAILED => WebhookKind::ChargeFailed {
                class: decline_class(charge.failure_code.as_deref()),
                code: charge.failure_code.clone(),
                message: charge.failure_message.clone(),
            },
            CHARGE_REFUNDED => WebhookKind::ChargeRefunded {
                amount_refunded: charge
                    .amount_refunded
                    .ok_or_else(|| malformed("the charge has no amount_refunded"))?,
            },
            other => WebhookKind::Other(other.to_string()),
        };
        Ok(WebhookEvent {
            id: envelope.id,
            kind,
            payment_id: charge
                .idempotency_key
                .as_deref()
                .and_then(payment_id_of_key),
            provider_payment_id: Some(charge.id),
            idempotency_key: charge.idempotency_key,
            merchant_id: charge.merchant_id,
            order_id: charge.order_id,
            amount: charge.amount,
            currency: charge.currency.map(|code| code.to_ascii_lowercase()),
            created,
            raw,
        })
    }
}

/// A webhook request for `charge` signed at `now` with `secret`: see
/// [`SandboxProvider::signed_event`].
pub(super) fn sign_event(
    secret: &str,
    kind: &SandboxEventKind,
    charge: &SandboxCharge,
    now: Timestamp,
) -> (WebhookHeaders, Vec<u8>) {
    let mut object = match serde_json::to_value(charge) {
        Ok(Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    object.insert("object".into(), json!("charge"));
    match kind {
        SandboxEventKind::ChargeSucceeded => {}
        SandboxEventKind::ChargeFailed { code, message } => {
            object.insert("failure_code".into(), json!(code));
            object.insert("failure_message".into(), json!(message));
        }
        SandboxEventKind::ChargeRefunded { amount_refunded } => {
            object.insert("amount_refunded".into(), json!(amount_refunded));
        }
    }
    let created = unix_secs(now);
    let body = json!({
        "id": format!("evt_{}", uuid::Uuid::now_v7().simple()),
        "object": "event",
        "type": kind.event_type(),
        "created": created,
        "data": { "object": object },
    })
    .to_string()
    .into_bytes();
    let mut headers = WebhookHeaders::new();
    headers
        .insert(
            SIGNATURE_HEADER,
            signature::signature_header(secret, created, &body),
        )
        .insert("content-type", "application/json");
    (headers, body)
}

/// The payment id of an attempt's key `{payment_id}-{attempt_number}`.
fn payment_id_of_key(key: &str) -> Option<String> {
    let (payment_id, attempt) = key.rsplit_once('-')?;
    let is_attempt = !attempt.is_empty() && attempt.bytes().all(|b| b.is_ascii_digit());
    (is_attempt && !payment_id.is_empty()).then(|| payment_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_ids_come_from_attempt_keys() {
        assert_eq!(
            payment_id_of_key("pay_0190abc-2").as_deref(),
            Some("pay_0190abc")
        );
        assert_eq!(payment_id_of_key("pay_0190abc"), None);
        assert_eq!(payment_id_of_key("pay_0190abc-x"), None);
        assert_eq!(payment_id_of_key("-1"), None);
    }

    #[test]
    fn event_types_are_stripes() {
        assert_eq!(
            SandboxEventKind::ChargeSucceeded.event_type(),
            "charge.succeeded"
        );
        assert_eq!(
            SandboxEventKind::ChargeFailed {
                code: "card_declined".into(),
                message: "declined".into()
            }
            .event_type(),
            "charge.failed"
        );
        assert_eq!(
            SandboxEventKind::ChargeRefunded { amount_refunded: 1 }.event_type(),
            "charge.refunded"
        );
    }
}
