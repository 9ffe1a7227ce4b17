//! Stripe's webhooks: the `Stripe-Signature` check ([`signature`], shared
//! with the sandbox), then the event read as Stripe documents it.
//!
//! Each delivery is one Event `{id, type, created, data: {object}}`. The
//! types the engine acts on, and the object each carries:
//!
//! | type | `data.object` | kind |
//! |---|---|---|
//! | `payment_intent.succeeded` | PaymentIntent | `ChargeSucceeded` |
//! | `payment_intent.payment_failed` | PaymentIntent, with `last_payment_error` | `ChargeFailed` (class by [`codes::card_error_class`]) |
//! | `charge.refunded` | Charge, with the total `amount_refunded` | `ChargeRefunded` |
//! | `charge.refund.updated`, `refund.updated`, `refund.failed` | Refund | by its status ([`codes::refund_status`]): `RefundSucceeded`, `RefundFailed`, else `Other` |
//!
//! Any other type is `Other(type)`. What an event can tell the engine:
//! the PaymentIntent id (the `provider_payment_id` every attempt records)
//! and the engine's ids from the PaymentIntent's metadata, which the charge
//! sets (`payment_id`, `order_id`, `merchant_id`, `idempotency_key`). A
//! Charge carries its PaymentIntent's id, and metadata only where Stripe
//! copied it; a Refund carries the PaymentIntent's id but no engine id
//! (refunds are created without metadata), so the engine finds a refund by
//! the `provider_refund_id` its refund answer recorded, or the payment by
//! the PaymentIntent.

use super::classify::intent_reason;
use super::client::SECRET_FIELDS;
use super::codes;
use super::wire::{metadata_text, Charge, Event, IdOrObject, PaymentIntent, Refund};
use crate::domain::Timestamp;
use crate::providers::signature;
use crate::providers::transport::redact_value;
use crate::providers::webhook::{
    timestamp_from_unix_secs, WebhookError, WebhookEvent, WebhookHeaders, WebhookKind,
};
use crate::providers::RefundStatus;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

/// How an event's `data.object` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    IntentSucceeded,
    IntentFailed,
    ChargeRefunded,
    Refund,
}

/// The event types the engine acts on, and how each is read.
const EVENT_READINGS: &[(&str, Reading)] = &[
    ("payment_intent.succeeded", Reading::IntentSucceeded),
    ("payment_intent.payment_failed", Reading::IntentFailed),
    ("charge.refunded", Reading::ChargeRefunded),
    ("charge.refund.updated", Reading::Refund),
    ("refund.updated", Reading::Refund),
    ("refund.failed", Reading::Refund),
];

/// The metadata keys the charge form sets (see `client::charge_form`).
const PAYMENT_ID_KEY: &str = "payment_id";
const IDEMPOTENCY_KEY_KEY: &str = "idempotency_key";
const ORDER_ID_KEY: &str = "order_id";
const MERCHANT_ID_KEY: &str = "merchant_id";

/// The event of one webhook request, once `headers` prove that `body` was
/// signed with `secret`. `None` for `secret`: no webhook endpoint is
/// configured, and every request is refused as unsupported.
pub(super) fn verify(
    secret: Option<&str>,
    tolerance_secs: u64,
    headers: &WebhookHeaders,
    body: &[u8],
    now: Timestamp,
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let secret = secret.ok_or(WebhookError::Unsupported(
        "no webhook_secret is configured for this Stripe provider",
    ))?;
    signature::verify(headers, body, secret, tolerance_secs, now)?;
    read_event(body).map(|event| vec![event])
}

/// A verified body as a [`WebhookEvent`].
fn read_event(body: &[u8]) -> Result<WebhookEvent, WebhookError> {
    let mut raw: Value = serde_json::from_slice(body)
        .map_err(|error| WebhookError::Malformed(format!("the body is not JSON: {error}")))?;
    let envelope = Event::deserialize(&raw)
        .map_err(|error| WebhookError::Malformed(format!("not a Stripe event: {error}")))?;
    let created = timestamp_from_unix_secs(envelope.created).ok_or_else(|| {
        WebhookError::Malformed(format!(
            "event {} has an invalid created time {}",
            envelope.id, envelope.created
        ))
    })?;
    let mut event = WebhookEvent {
        id: envelope.id.clone(),
        kind: WebhookKind::Other(envelope.kind.clone()),
        provider_payment_id: None,
        payment_id: None,
        idempotency_key: None,
        merchant_id: None,
        order_id: None,
        amount: None,
        currency: None,
        created,
        raw: Value::Null,
    };
    let reading = EVENT_READINGS
        .iter()
        .find(|(kind, _)| *kind == envelope.kind)
        .map(|(_, reading)| *reading);
    match reading {
        None => {}
        Some(Reading::IntentSucceeded) => {
            let intent: PaymentIntent = object(&envelope)?;
            event.amount = intent.amount_received.or(intent.amount);
            from_intent(&mut event, intent);
            event.kind = WebhookKind::ChargeSucceeded;
        }
        Some(Reading::IntentFailed) => {
            let intent: PaymentIntent = object(&envelope)?;
            let error = intent.last_payment_error.clone().unwrap_or_default();
            let class = codes::card_error_class(
                error.advice_code.as_deref(),
                error.decline_code.as_deref(),
                error.code.as_deref(),
            );
            let (code, message) = intent_reason(&intent);
            event.amount = intent.amount;
            from_intent(&mut event, intent);
            event.kind = WebhookKind::ChargeFailed {
                class,
                code,
                message,
            };
        }
        Some(Reading::ChargeRefunded) => {
            let charge: Charge = object(&envelope)?;
            let amount_refunded = charge.amount_refunded.ok_or_else(|| {
                WebhookError::Malformed(format!(
                    "charge {} in event {} has no amount_refunded",
                    charge.id, envelope.id
                ))
            })?;
            from_charge(&mut event, charge);
            event.kind = WebhookKind::ChargeRefunded { amount_refunded };
        }
        Some(Reading::Refund) => {
            let refund: Refund = object(&envelope)?;
            event.kind = refund_kind(&envelope, &refund)?;
            from_refund(&mut event, refund);
        }
    }
    redact_value(&mut raw, SECRET_FIELDS);
    event.raw = raw;
    Ok(event)
}

/// `data.object` read as `T`.
fn object<T: DeserializeOwned>(envelope: &Event) -> Result<T, WebhookError> {
    T::deserialize(&envelope.data.object).map_err(|error| {
        WebhookError::Malformed(format!(
            "the object of {} event {} is not as Stripe documents it: {error}",
            envelope.kind, envelope.id
        ))
    })
}

/// The kind a Refund's status makes of a refund event. A refund still
/// pending says nothing final.
fn refund_kind(envelope: &Event, refund: &Refund) -> Result<WebhookKind, WebhookError> {
    Ok(match codes::refund_status(&refund.status) {
        RefundStatus::Succeeded => WebhookKind::RefundSucceeded {
            provider_refund_id: refund.id.clone(),
            amount: refund.amount.ok_or_else(|| {
                WebhookError::Malformed(format!(
                    "refund {} in event {} has no amount",
                    refund.id, envelope.id
                ))
            })?,
        },
        RefundStatus::Failed => WebhookKind::RefundFailed {
            provider_refund_id: refund.id.clone(),
            amount: refund.amount,
            code: Some(
                refund
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| refund.status.clone()),
            ),
        },
        RefundStatus::Pending | RefundStatus::Unknown => {
            WebhookKind::Other(format!("{} ({})", envelope.kind, refund.status))
        }
    })
}

fn from_intent(event: &mut WebhookEvent, intent: PaymentIntent) {
    let metadata = intent.metadata.as_ref();
    event.payment_id = metadata_text(metadata, PAYMENT_ID_KEY);
    event.idempotency_key = metadata_text(metadata, IDEMPOTENCY_KEY_KEY);
    event.order_id = metadata_text(metadata, ORDER_ID_KEY);
    event.merchant_id = metadata_text(metadata, MERCHANT_ID_KEY);
    event.currency = intent.currency.map(|code| code.to_ascii_lowercase());
    event.provider_payment_id = Some(intent.id);
}

fn from_charge(event: &mut WebhookEvent, charge: Charge) {
    let metadata = charge.metadata.as_ref();
    event.payment_id = metadata_text(metadata, PAYMENT_ID_KEY);
    event.idempotency_key = metadata_text(metadata, IDEMPOTENCY_KEY_KEY);
    event.order_id = metadata_text(metadata, ORDER_ID_KEY);
    event.merchant_id = metadata_text(metadata, MERCHANT_ID_KEY);
    event.amount = charge.amount;
    event.currency = charge.currency.map(|code| code.to_ascii_lowercase());
    // A charge made outside PaymentIntents has none: its own id is the
    // best there is, as for settlement lines.
    event.provider_payment_id = Some(
        charge
            .payment_intent
            .as_ref()
            .map_or(charge.id.as_str(), IdOrObject::id)
            .to_string(),
    );
}

fn from_refund(event: &mut WebhookEvent, refund: Refund) {
    let metadata = refund.metadata.as_ref();
    event.payment_id = metadata_text(metadata, PAYMENT_ID_KEY);
    event.idempotency_key = metadata_text(metadata, IDEMPOTENCY_KEY_KEY);
    event.amount = refund.amount;
    event.currency = refund.currency.map(|code| code.to_ascii_lowercase());
    event.provider_payment_id = refund
        .payment_intent
        .as_ref()
        .or(refund.charge.as_ref())
        .map(|id| id.id().to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutcomeClass;
    use crate::providers::signature::signature_header;
    use serde_json::json;

    const SECRET: &str = "whsec_unit";
    const NOW: i64 = 1_700_000_000;

    fn now() -> Timestamp {
        timestamp_from_unix_secs(NOW).expect("representable")
    }

    fn signed(body: &[u8], secret: &str, at: i64) -> WebhookHeaders {
        [("Stripe-Signature", signature_header(secret, at, body))]
            .into_iter()
            .collect()
    }

    fn event(kind: &str, object: Value) -> Vec<u8> {
        json!({
            "id": "evt_1", "object": "event", "type": kind, "created": NOW,
            "livemode": false, "data": { "object": object },
        })
        .to_string()
        .into_bytes()
    }

    fn intent(status: &str) -> Value {
        json!({
            "id": "pi_1", "object": "payment_intent", "status": status,
            "amount": 2000, "amount_received": 2000, "currency": "usd",
            "client_secret": "pi_1_secret_abcdefgh",
            "metadata": {
                "payment_id": "pay_1", "idempotency_key": "pay_1-2",
                "order_id": "order_9", "merchant_id": "merchant_1",
            },
        })
    }

    fn read(body: &[u8]) -> WebhookEvent {
        let mut events =
            verify(Some(SECRET), 300, &signed(body, SECRET, NOW), body, now()).expect("verified");
        assert_eq!(events.len(), 1);
        events.remove(0)
    }

    #[test]
    fn a_succeeded_payment_intent_names_the_engines_ids() {
        let event = read(&event("payment_intent.succeeded", intent("succeeded")));
        assert_eq!(event.id, "evt_1");
        assert_eq!(event.kind, WebhookKind::ChargeSucceeded);
        assert_eq!(event.provider_payment_id.as_deref(), Some("pi_1"));
        assert_eq!(event.payment_id.as_deref(), Some("pay_1"));
        assert_eq!(event.idempotency_key.as_deref(), Some("pay_1-2"));
        assert_eq!(event.order_id.as_deref(), Some("order_9"));
        assert_eq!(event.merchant_id.as_deref(), Some("merchant_1"));
        assert_eq!(
            (event.amount, event.currency.as_deref()),
            (Some(2000), Some("usd"))
        );
        assert_eq!(event.created, now());
        let raw = event.raw.to_string();
        assert!(!raw.contains("pi_1_secret_abcdefgh"), "{raw}");
    }

    #[test]
    fn a_failed_payment_intent_is_classified_by_the_decline_table() {
        let mut object = intent("requires_payment_method");
        object["last_payment_error"] = json!({
            "type": "card_error", "code": "card_declined",
            "decline_code": "insufficient_funds", "message": "Your card has insufficient funds.",
        });
        let event = read(&event("payment_intent.payment_failed", object));
        assert_eq!(
            event.kind,
            WebhookKind::ChargeFailed {
                class: OutcomeClass::SoftDecline,
                code: Some("insufficient_funds".into()),
                message: Some("Your card has insufficient funds.".into()),
            }
        );
        assert_eq!(event.provider_payment_id.as_deref(), Some("pi_1"));
    }

    #[test]
    fn refunds_are_read_from_charges_and_refund_objects() {
        let charge = json!({
            "id": "ch_1", "object": "charge", "amount": 2000, "amount_refunded": 500,
            "currency": "usd", "payment_intent": "pi_1", "refunded": false,
        });
        let refunded = read(&event("charge.refunded", charge));
        assert_eq!(
            refunded.kind,
            WebhookKind::ChargeRefunded {
                amount_refunded: 500
            }
        );
        assert_eq!(refunded.provider_payment_id.as_deref(), Some("pi_1"));

        let refund = |status: &str| {
            json!({
                "id": "re_1", "object": "refund", "amount": 500, "currency": "usd",
                "status": status, "payment_intent": "pi_1", "charge": "ch_1",
                "failure_reason": if status == "failed" { json!("expired_or_canceled_card") } else { Value::Null },
            })
        };
        let succeeded = read(&event("refund.updated", refund("succeeded")));
        assert_eq!(
            succeeded.kind,
            WebhookKind::RefundSucceeded {
                provider_refund_id: "re_1".into(),
                amount: 500
            }
        );
        assert_eq!(succeeded.provider_payment_id.as_deref(), Some("pi_1"));
        let failed = read(&event("charge.refund.updated", refund("failed")));
        assert_eq!(
            failed.kind,
            WebhookKind::RefundFailed {
                provider_refund_id: "re_1".into(),
                amount: Some(500),
                code: Some("expired_or_canceled_card".into()),
            }
        );
        let pending = read(&event("refund.updated", refund("pending")));
        assert_eq!(
            pending.kind,
            WebhookKind::Other("refund.updated (pending)".into())
        );
    }

    #[test]
    fn other_types_are_recorded_without_effect() {
        let event = read(&event("customer.created", json!({ "id": "cus_1" })));
        assert_eq!(event.kind, WebhookKind::Other("customer.created".into()));
        assert_eq!(event.provider_payment_id, None);
    }

    #[test]
    fn signature_problems_are_refused_before_the_body_is_read() {
        let body = b"not json at all";
        assert!(matches!(
            verify(
                Some(SECRET),
                300,
                &signed(body, "whsec_other", NOW),
                body,
                now()
            ),
            Err(WebhookError::BadSignature(_))
        ));
        assert!(matches!(
            verify(Some(SECRET), 300, &signed(body, SECRET, NOW), body, now()),
            Err(WebhookError::Malformed(_))
        ));
        assert!(matches!(
            verify(None, 300, &signed(body, SECRET, NOW), body, now()),
            Err(WebhookError::Unsupported(_))
        ));
    }

    #[test]
    fn known_types_with_unreadable_objects_are_malformed() {
        let body = event("charge.refunded", json!({ "id": "ch_1", "amount": 10 }));
        assert!(matches!(
            verify(Some(SECRET), 300, &signed(&body, SECRET, NOW), &body, now()),
            Err(WebhookError::Malformed(_))
        ));
        let body = event("payment_intent.succeeded", json!("pi_1"));
        assert!(matches!(
            verify(Some(SECRET), 300, &signed(&body, SECRET, NOW), &body, now()),
            Err(WebhookError::Malformed(_))
        ));
    }

    #[test]
    fn readings_list_each_type_once() {
        for (i, (kind, _)) in EVENT_READINGS.iter().enumerate() {
            assert!(
                !EVENT_READINGS[..i].iter().any(|(other, _)| other == kind),
                "{kind} listed twice"
            );
        }
    }
}
