//! Adyen's standard webhooks (notifications), HMAC-verified.
//!
//! A request is `{live, notificationItems: [{NotificationRequestItem}]}`,
//! a batch of items. Each item is signed on its own, as Adyen documents
//! ("Verify HMAC signatures"): the signing string is the item's
//!
//! ```text
//! pspReference:originalReference:merchantAccountCode:merchantReference:value:currency:eventCode:success
//! ```
//!
//! (an absent field is the empty string; `value` is the amount in Adyen's
//! minor units, `success` is `true` or `false`), the signature is the
//! base64 HMAC-SHA256 of it keyed with the hex-decoded HMAC key, and it is
//! sent in the item's `additionalData.hmacSignature`. Unlike Stripe's, the
//! signature travels inside the body, so the body is read as JSON first,
//! but nothing in it is interpreted until every item is verified; one item
//! that fails refuses the whole request (Adyen then retries the batch).
//! Adyen expects the body [`ACCEPTED_BODY`] in the `200` that acknowledges
//! a request.
//!
//! What the items are read as:
//!
//! | `eventCode` | `success` | kind |
//! |---|---|---|
//! | `AUTHORISATION` | `true` | `ChargeSucceeded` |
//! | `AUTHORISATION` | `false` | `ChargeFailed`, classed by its `reason` text ([`codes::refusal_text_class`]) |
//! | `REFUND` | `true` | `RefundSucceeded` (Adyen confirms refunds only this way) |
//! | `REFUND` | `false` | `RefundFailed` |
//! | `REFUND_FAILED`, `REFUNDED_REVERSED` | `true` | `RefundFailed`: a refund first reported as succeeded did not reach the shopper |
//!
//! Anything else is `Other("{eventCode}:{success}")`.
//!
//! What Adyen's webhooks can tell the engine, and what they cannot:
//!
//! - the charge only by Adyen's `pspReference` (the `provider_payment_id`
//!   the charge's answer recorded); there is no other charge id;
//! - the engine's payment id, as the `merchantReference` of an
//!   `AUTHORISATION` (the charge sends the payment id as its `reference`);
//!   not the attempt: the attempt's idempotency key travels only as a
//!   header, which Adyen does not echo, so `idempotency_key` stays empty;
//! - for a `REFUND`, the refund's own `pspReference` (the
//!   `provider_refund_id` of the refund's answer), the charge's as
//!   `originalReference`, and the engine's refund key as `merchantReference`;
//! - the order and merchant only if Adyen returns the charge's `metadata`
//!   (as `additionalData` `metadata.order_id`, `metadata.merchant_id`);
//! - no event id: the event's id is `{pspReference}:{eventCode}:{success}`,
//!   stable across Adyen's retries of the same item;
//! - a refusal only by its text (`reason`), not its `refusalReasonCode`;
//! - the event time as `eventDate`, when present and readable, else the
//!   time of verification;
//! - nothing about whether the account is the one configured beyond
//!   `merchantAccountCode`, and nothing checked about `live`: the HMAC key
//!   is per endpoint, so an item signed with it is for this endpoint.

use super::codes::{self, snake_case};
use super::wire::WireAmount;
use crate::domain::Timestamp;
use crate::providers::signature::hmac_sha256;
use crate::providers::webhook::{WebhookError, WebhookEvent, WebhookKind};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::Mac;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::BTreeMap;

/// The body Adyen expects in the `200` acknowledging a webhook request.
pub const ACCEPTED_BODY: &str = "[accepted]";
/// Where an item carries its signature, in `additionalData`.
const SIGNATURE_FIELD: &str = "hmacSignature";
/// The `additionalData` keys of the charge's metadata, when Adyen returns it.
const ORDER_ID_FIELD: &str = "metadata.order_id";
const MERCHANT_ID_FIELD: &str = "metadata.merchant_id";

/// How a verified item is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    ChargeSucceeded,
    ChargeFailed,
    RefundSucceeded,
    RefundFailed,
}

/// (`eventCode`, `success`) → reading; see the module's table.
const EVENT_READINGS: &[(&str, bool, Reading)] = &[
    ("AUTHORISATION", true, Reading::ChargeSucceeded),
    ("AUTHORISATION", false, Reading::ChargeFailed),
    ("REFUND", true, Reading::RefundSucceeded),
    ("REFUND", false, Reading::RefundFailed),
    ("REFUND_FAILED", true, Reading::RefundFailed),
    ("REFUNDED_REVERSED", true, Reading::RefundFailed),
];

/// A notification request, its items still unread.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationRequest {
    notification_items: Vec<ItemWrapper>,
}

#[derive(Debug, Deserialize)]
struct ItemWrapper {
    #[serde(rename = "NotificationRequestItem")]
    item: Value,
}

/// The fields of a `NotificationRequestItem` the adapter signs and reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    psp_reference: String,
    #[serde(default)]
    original_reference: Option<String>,
    #[serde(default)]
    merchant_account_code: Option<String>,
    #[serde(default)]
    merchant_reference: Option<String>,
    #[serde(default)]
    amount: Option<WireAmount>,
    event_code: String,
    #[serde(deserialize_with = "flag")]
    success: bool,
    #[serde(default)]
    event_date: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    additional_data: BTreeMap<String, Value>,
}

impl Item {
    /// Adyen's signing string of the item (see the module docs).
    fn signing_string(&self) -> String {
        let (value, currency) = self.amount.as_ref().map_or((String::new(), ""), |amount| {
            (amount.value.to_string(), amount.currency.as_str())
        });
        [
            self.psp_reference.as_str(),
            self.original_reference.as_deref().unwrap_or(""),
            self.merchant_account_code.as_deref().unwrap_or(""),
            self.merchant_reference.as_deref().unwrap_or(""),
            &value,
            currency,
            &self.event_code,
            if self.success { "true" } else { "false" },
        ]
        .join(":")
    }

    fn additional_text(&self, key: &str) -> Option<String> {
        self.additional_data
            .get(key)
            .and_then(Value::as_str)
            .filter(|text| !text.is_empty())
            .map(str::to_string)
    }
}

/// `success` as Adyen sends it: the text `true` or `false` (a JSON boolean
/// is accepted too).
fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Text(String),
    }
    match Flag::deserialize(deserializer)? {
        Flag::Bool(value) => Ok(value),
        Flag::Text(text) if text == "true" => Ok(true),
        Flag::Text(text) if text == "false" => Ok(false),
        Flag::Text(text) => Err(serde::de::Error::custom(format!(
            "success is {text:?}, not true or false"
        ))),
    }
}

/// The events of one request, once every item's signature is verified
/// with `hmac_key` (the key's bytes). `None`: no key is configured, and
/// every request is refused as unsupported.
pub(super) fn verify(
    hmac_key: Option<&[u8]>,
    body: &[u8],
    now: Timestamp,
) -> Result<Vec<WebhookEvent>, WebhookError> {
    let key = hmac_key.ok_or(WebhookError::Unsupported(
        "no hmac_key is configured for this Adyen provider",
    ))?;
    let request: NotificationRequest = serde_json::from_slice(body).map_err(|error| {
        WebhookError::Malformed(format!("not an Adyen notification request: {error}"))
    })?;
    if request.notification_items.is_empty() {
        return Err(WebhookError::Malformed(
            "the notification request has no items".into(),
        ));
    }
    let items = request
        .notification_items
        .into_iter()
        .enumerate()
        .map(|(index, wrapper)| {
            let item = Item::deserialize(&wrapper.item).map_err(|error| {
                WebhookError::Malformed(format!("notification item {index}: {error}"))
            })?;
            Ok((item, wrapper.item))
        })
        .collect::<Result<Vec<_>, WebhookError>>()?;
    for (item, _) in &items {
        verify_item(key, item)?;
    }
    Ok(items
        .into_iter()
        .map(|(item, raw)| read_item(item, raw, now))
        .collect())
}

/// Checks one item's `additionalData.hmacSignature`, in constant time.
fn verify_item(key: &[u8], item: &Item) -> Result<(), WebhookError> {
    let sent = item
        .additional_data
        .get(SIGNATURE_FIELD)
        .and_then(Value::as_str)
        .ok_or(WebhookError::BadSignature(
            "a notification item has no additionalData.hmacSignature",
        ))?;
    let sent = BASE64.decode(sent.trim()).map_err(|_| {
        WebhookError::BadSignature("a notification item's hmacSignature is not base64")
    })?;
    let mut mac = hmac_sha256(key);
    mac.update(item.signing_string().as_bytes());
    mac.verify_slice(&sent).map_err(|_| {
        WebhookError::BadSignature("a notification item's hmacSignature does not match it")
    })
}

/// A verified item as a [`WebhookEvent`].
fn read_item(item: Item, raw: Value, now: Timestamp) -> WebhookEvent {
    let id = format!(
        "{}:{}:{}",
        item.psp_reference, item.event_code, item.success
    );
    let created = item
        .event_date
        .as_deref()
        .and_then(Timestamp::parse_rfc3339)
        .unwrap_or(now);
    let engine_amount = item.amount.as_ref().and_then(WireAmount::to_engine);
    let amount = engine_amount.map(|(minor, _)| minor);
    let currency = engine_amount.map(|(_, currency)| currency.code().to_string());
    let reading = EVENT_READINGS
        .iter()
        .find(|(code, success, _)| *code == item.event_code && *success == item.success)
        .map(|(_, _, reading)| *reading);
    let other = || WebhookKind::Other(format!("{}:{}", item.event_code, item.success));
    let is_charge = matches!(
        reading,
        Some(Reading::ChargeSucceeded | Reading::ChargeFailed)
    );
    let kind = match reading {
        None => other(),
        Some(Reading::ChargeSucceeded) => WebhookKind::ChargeSucceeded,
        Some(Reading::ChargeFailed) => WebhookKind::ChargeFailed {
            class: codes::refusal_text_class(item.reason.as_deref()),
            code: Some(
                item.reason
                    .as_deref()
                    .map(snake_case)
                    .filter(|code| !code.is_empty())
                    .unwrap_or_else(|| "refused".to_string()),
            ),
            message: item.reason.clone(),
        },
        Some(Reading::RefundSucceeded) => match amount {
            Some(amount) => WebhookKind::RefundSucceeded {
                provider_refund_id: item.psp_reference.clone(),
                amount,
            },
            // A refund in a currency (or unit) the engine cannot express
            // is none of its refunds: recorded, not applied.
            None => WebhookKind::Other(format!(
                "{}:{} with an amount the engine cannot read",
                item.event_code, item.success
            )),
        },
        Some(Reading::RefundFailed) => WebhookKind::RefundFailed {
            provider_refund_id: item.psp_reference.clone(),
            amount,
            code: item.reason.as_deref().map(snake_case),
        },
    };
    let (provider_payment_id, payment_id, idempotency_key) = if is_charge {
        (
            Some(item.psp_reference.clone()),
            item.merchant_reference.clone(),
            None,
        )
    } else {
        (
            item.original_reference.clone(),
            None,
            item.merchant_reference.clone(),
        )
    };
    WebhookEvent {
        id,
        kind,
        provider_payment_id: provider_payment_id.filter(|id| !id.is_empty()),
        payment_id: payment_id.filter(|id| !id.is_empty()),
        idempotency_key: idempotency_key.filter(|key| !key.is_empty()),
        merchant_id: item.additional_text(MERCHANT_ID_FIELD),
        order_id: item.additional_text(ORDER_ID_FIELD),
        amount,
        currency,
        created,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::OutcomeClass;
    use crate::providers::signature::decode_hex;
    use crate::providers::webhook::timestamp_from_unix_secs;
    use serde_json::json;

    /// Adyen's published example key and item ("Verify HMAC signatures").
    const EXAMPLE_KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    const EXAMPLE_SIGNATURE: &str = "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=";

    fn key() -> Vec<u8> {
        decode_hex(EXAMPLE_KEY).expect("hex")
    }

    fn now() -> Timestamp {
        timestamp_from_unix_secs(1_700_000_000).expect("representable")
    }

    fn example_item() -> Value {
        json!({
            "additionalData": { "hmacSignature": EXAMPLE_SIGNATURE },
            "amount": { "value": 1130, "currency": "EUR" },
            "pspReference": "7914073381342284",
            "eventCode": "AUTHORISATION",
            "eventDate": "2019-05-06T17:15:34.121+02:00",
            "merchantAccountCode": "TestMerchant",
            "merchantReference": "TestPayment-1407325143704",
            "paymentMethod": "visa",
            "success": "true",
        })
    }

    /// Signs `item` in place, computing the signing string here from the
    /// documented field order rather than with the code under test.
    fn sign(mut item: Value) -> Value {
        let text = |field: &str| item[field].as_str().unwrap_or("").to_string();
        let signing = [
            text("pspReference"),
            text("originalReference"),
            text("merchantAccountCode"),
            text("merchantReference"),
            item["amount"]["value"].to_string(),
            item["amount"]["currency"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            text("eventCode"),
            text("success"),
        ]
        .join(":");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key()).expect("any key length");
        mac.update(signing.as_bytes());
        item["additionalData"]["hmacSignature"] = json!(BASE64.encode(mac.finalize().into_bytes()));
        item
    }

    fn request(items: &[Value]) -> Vec<u8> {
        let items: Vec<Value> = items
            .iter()
            .map(|item| json!({ "NotificationRequestItem": item }))
            .collect();
        json!({ "live": "false", "notificationItems": items })
            .to_string()
            .into_bytes()
    }

    fn refund(success: &str, reason: Option<&str>) -> Value {
        sign(json!({
            "amount": { "value": 500, "currency": "EUR" },
            "pspReference": "REFUND0000000001",
            "originalReference": "7914073381342284",
            "eventCode": "REFUND",
            "merchantAccountCode": "TestMerchant",
            "merchantReference": "re_0190abc",
            "success": success,
            "reason": reason,
        }))
    }

    #[test]
    fn adyens_published_example_verifies() {
        let events = verify(Some(&key()), &request(&[example_item()]), now()).expect("verified");
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.id, "7914073381342284:AUTHORISATION:true");
        assert_eq!(event.kind, WebhookKind::ChargeSucceeded);
        assert_eq!(
            event.provider_payment_id.as_deref(),
            Some("7914073381342284")
        );
        assert_eq!(
            event.payment_id.as_deref(),
            Some("TestPayment-1407325143704")
        );
        assert_eq!(event.idempotency_key, None);
        assert_eq!(
            (event.amount, event.currency.as_deref()),
            (Some(1130), Some("eur"))
        );
        assert_eq!(
            event.created,
            Timestamp::parse_rfc3339("2019-05-06T15:15:34.121Z").expect("time")
        );
    }

    #[test]
    fn a_tampered_item_refuses_the_whole_request() {
        let mut tampered = example_item();
        tampered["amount"]["value"] = json!(1131);
        let body = request(&[refund("true", None), tampered]);
        assert!(matches!(
            verify(Some(&key()), &body, now()),
            Err(WebhookError::BadSignature(_))
        ));
        let mut unsigned = example_item();
        unsigned["additionalData"] = json!({});
        assert!(matches!(
            verify(Some(&key()), &request(&[unsigned]), now()),
            Err(WebhookError::BadSignature(_))
        ));
        let wrong_key = decode_hex(&"11".repeat(32)).expect("hex");
        assert!(matches!(
            verify(Some(&wrong_key), &request(&[example_item()]), now()),
            Err(WebhookError::BadSignature(_))
        ));
    }

    #[test]
    fn refunds_name_the_refund_the_charge_and_the_refund_key() {
        let events = verify(
            Some(&key()),
            &request(&[
                refund("true", None),
                refund("false", Some("Insufficient balance")),
            ]),
            now(),
        )
        .expect("verified");
        assert_eq!(
            events[0].kind,
            WebhookKind::RefundSucceeded {
                provider_refund_id: "REFUND0000000001".into(),
                amount: 500
            }
        );
        assert_eq!(
            events[0].provider_payment_id.as_deref(),
            Some("7914073381342284")
        );
        assert_eq!(events[0].idempotency_key.as_deref(), Some("re_0190abc"));
        assert_eq!(events[0].payment_id, None);
        assert_eq!(
            events[1].kind,
            WebhookKind::RefundFailed {
                provider_refund_id: "REFUND0000000001".into(),
                amount: Some(500),
                code: Some("insufficient_balance".into()),
            }
        );
        assert_ne!(events[0].id, events[1].id);
        assert_eq!(
            events[0].created,
            now(),
            "no eventDate: the time of verification"
        );
    }

    #[test]
    fn a_refused_authorisation_is_classed_by_its_reason() {
        let mut item = example_item();
        item["success"] = json!("false");
        item["reason"] = json!("Not enough balance");
        item["additionalData"]["metadata.order_id"] = json!("order_9");
        let events = verify(Some(&key()), &request(&[sign(item)]), now()).expect("verified");
        assert_eq!(
            events[0].kind,
            WebhookKind::ChargeFailed {
                class: OutcomeClass::SoftDecline,
                code: Some("not_enough_balance".into()),
                message: Some("Not enough balance".into()),
            }
        );
        assert_eq!(events[0].order_id.as_deref(), Some("order_9"));
    }

    #[test]
    fn other_event_codes_are_recorded_without_effect() {
        let mut item = example_item();
        item["eventCode"] = json!("CAPTURE");
        let events = verify(Some(&key()), &request(&[sign(item)]), now()).expect("verified");
        assert_eq!(events[0].kind, WebhookKind::Other("CAPTURE:true".into()));
    }

    #[test]
    fn unreadable_requests_are_malformed_and_no_key_is_unsupported() {
        for body in [
            b"[accepted]".to_vec(),
            br#"{"notificationItems":[]}"#.to_vec(),
            request(&[json!({ "pspReference": "X" })]),
            request(&[json!({ "pspReference": "X", "eventCode": "REFUND", "success": "maybe" })]),
        ] {
            assert!(
                matches!(
                    verify(Some(&key()), &body, now()),
                    Err(WebhookError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        assert!(matches!(
            verify(None, &request(&[example_item()]), now()),
            Err(WebhookError::Unsupported(_))
        ));
    }

    #[test]
    fn readings_list_each_event_once() {
        for (i, (code, success, _)) in EVENT_READINGS.iter().enumerate() {
            assert!(
                !EVENT_READINGS[..i]
                    .iter()
                    .any(|(other, other_success, _)| other == code && other_success == success),
                "{code}:{success} listed twice"
            );
        }
    }
}
