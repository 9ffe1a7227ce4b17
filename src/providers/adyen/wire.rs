//! Adyen Checkout API v71 wire types: what goes over the network, and
//! nothing else. Field names are Adyen's (camelCase); every field of an
//! answer that the adapter does not need to classify is ignored, and every
//! field it reads is optional, so an answer missing one is still readable
//! (and classified as unknown by `super` when it matters).

use crate::domain::{Amount, Currency};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// `paymentMethod.type` of a card payment.
pub const SCHEME: &str = "scheme";
/// A merchant-initiated charge of a stored card, without the shopper.
pub const SHOPPER_INTERACTION: &str = "ContAuth";
/// The card is stored and charged when the shopper buys (one-off, not a
/// subscription): Adyen's model for a stored card used for a later order.
pub const RECURRING_PROCESSING_MODEL: &str = "CardOnFile";
/// Adyen's longest `metadata` value.
pub const MAX_METADATA_VALUE_CHARS: usize = 80;

/// Currencies whose minor unit at Adyen differs from ISO 4217 (Adyen's
/// "Currency codes and minor units" page): the engine's amounts are in ISO
/// minor units and must be converted. `(code, Adyen's decimals)`.
pub const ADYEN_DECIMALS: &[(&str, u8)] = &[("clp", 2), ("cve", 0), ("idr", 0), ("isk", 2)];

/// `amount`: minor units (Adyen's) and an uppercase ISO code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAmount {
    pub value: i64,
    pub currency: String,
}

impl WireAmount {
    /// The engine's amount as Adyen expects it, or `None` if it cannot be
    /// expressed in Adyen's minor unit (e.g. IDR 12.34: Adyen takes whole
    /// rupiah) or overflows.
    pub fn from_engine(amount: Amount, currency: Currency) -> Option<WireAmount> {
        let iso = i32::from(currency.minor_unit_digits());
        let adyen = ADYEN_DECIMALS
            .iter()
            .find(|(code, _)| *code == currency.code())
            .map_or(iso, |(_, digits)| i32::from(*digits));
        let minor = amount.minor_units();
        let value = if adyen >= iso {
            minor.checked_mul(10_i64.checked_pow(u32::try_from(adyen - iso).ok()?)?)?
        } else {
            let divisor = 10_i64.checked_pow(u32::try_from(iso - adyen).ok()?)?;
            if minor % divisor != 0 {
                return None;
            }
            minor / divisor
        };
        Some(WireAmount {
            value,
            currency: currency.code().to_ascii_uppercase(),
        })
    }
}

impl WireAmount {
    /// The amount in the engine's minor units (ISO 4217) and its currency:
    /// the inverse of [`WireAmount::from_engine`]. `None` for a currency the
    /// engine does not know, or a value the engine's minor unit cannot hold
    /// exactly (or that overflows).
    pub fn to_engine(&self) -> Option<(i64, Currency)> {
        let currency = Currency::parse(&self.currency)?;
        let iso = i32::from(currency.minor_unit_digits());
        let adyen = ADYEN_DECIMALS
            .iter()
            .find(|(code, _)| *code == currency.code())
            .map_or(iso, |(_, digits)| i32::from(*digits));
        let minor = if iso >= adyen {
            self.value
                .checked_mul(10_i64.checked_pow(u32::try_from(iso - adyen).ok()?)?)?
        } else {
            let divisor = 10_i64.checked_pow(u32::try_from(adyen - iso).ok()?)?;
            if self.value % divisor != 0 {
                return None;
            }
            self.value / divisor
        };
        Some((minor, currency))
    }
}

/// `paymentMethod` of a stored card.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPaymentMethod<'a> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub stored_payment_method_id: &'a str,
}

/// `POST /payments`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest<'a> {
    pub amount: WireAmount,
    /// The engine's payment id.
    pub reference: &'a str,
    pub merchant_account: &'a str,
    pub payment_method: StoredPaymentMethod<'a>,
    pub shopper_reference: &'a str,
    pub shopper_interaction: &'a str,
    pub recurring_processing_model: &'a str,
    pub metadata: BTreeMap<&'a str, String>,
}

/// The answer to `POST /payments` (HTTP 200), declines included.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    pub result_code: String,
    #[serde(default)]
    pub psp_reference: Option<String>,
    #[serde(default)]
    pub refusal_reason: Option<String>,
    /// Documented as a string; a number is accepted too.
    #[serde(default, deserialize_with = "string_or_number")]
    pub refusal_reason_code: Option<String>,
    #[serde(default)]
    pub merchant_reference: Option<String>,
}

/// An error answer (any non-2xx status). Adyen's classic body is
/// `{status, errorCode, message, errorType, pspReference}`; its RFC 7807
/// bodies use `title` and `detail`. Every field is optional: a proxy's HTML
/// page still gets classified by its status.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorResponse {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_type: Option<String>,
    #[serde(default)]
    pub psp_reference: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
}

impl ErrorResponse {
    /// The most specific human text the body has.
    pub fn text(&self) -> Option<&str> {
        self.message
            .as_deref()
            .or(self.detail.as_deref())
            .or(self.title.as_deref())
    }
}

/// `POST /payments/{pspReference}/refunds`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundRequest<'a> {
    pub merchant_account: &'a str,
    pub amount: WireAmount,
    /// The engine's refund key.
    pub reference: &'a str,
}

/// The answer to a refund request (HTTP 201, `status: "received"`): Adyen
/// confirms the refund later, by webhook.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    /// The refund's own PSP reference.
    pub psp_reference: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub payment_psp_reference: Option<String>,
    #[serde(default)]
    pub reference: Option<String>,
}

fn string_or_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(String),
        Number(i64),
    }
    Ok(
        Option::<Value>::deserialize(deserializer)?.map(|value| match value {
            Value::Text(text) => text,
            Value::Number(number) => number.to_string(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(minor: i64, code: &str) -> Option<WireAmount> {
        WireAmount::from_engine(
            Amount::new(minor).expect("amount"),
            Currency::parse(code).expect("currency"),
        )
    }

    #[test]
    fn amounts_use_adyen_minor_units_and_uppercase_codes() {
        let usd = amount(1999, "usd").expect("usd");
        assert_eq!((usd.value, usd.currency.as_str()), (1999, "USD"));
        assert_eq!(amount(500, "jpy").map(|a| a.value), Some(500));
        assert_eq!(amount(1234, "bhd").map(|a| a.value), Some(1234));
        // ISO 0 decimals, Adyen 2.
        assert_eq!(amount(1500, "clp").map(|a| a.value), Some(150_000));
        assert_eq!(amount(2790, "isk").map(|a| a.value), Some(279_000));
        // ISO 2 decimals, Adyen 0: only whole units can be sent.
        assert_eq!(amount(150_000, "idr").map(|a| a.value), Some(1500));
        assert_eq!(amount(150_050, "idr"), None);
        assert_eq!(amount(1200, "cve").map(|a| a.value), Some(12));
    }

    #[test]
    fn adyen_amounts_convert_back_to_engine_minor_units() {
        let back = |value: i64, code: &str| {
            WireAmount {
                value,
                currency: code.to_string(),
            }
            .to_engine()
            .map(|(minor, currency)| (minor, currency.code()))
        };
        assert_eq!(back(1999, "USD"), Some((1999, "usd")));
        assert_eq!(back(150_000, "CLP"), Some((1500, "clp")));
        assert_eq!(back(150_050, "CLP"), None, "not a whole peso");
        assert_eq!(back(1500, "IDR"), Some((150_000, "idr")));
        assert_eq!(back(1, "XXX_"), None);
        assert_eq!(back(i64::MAX, "IDR"), None, "overflows");
        for (minor, code) in [
            (1999, "usd"),
            (1500, "clp"),
            (150_000, "idr"),
            (1200, "cve"),
        ] {
            let there = amount(minor, code).expect("representable");
            let (again, currency) = there.to_engine().expect("and back");
            assert_eq!((again, currency.code()), (minor, code));
        }
    }

    #[test]
    fn payment_response_reads_documented_fields() {
        let parsed: PaymentResponse = serde_json::from_str(
            r#"{"additionalData":{"x":"y"},"pspReference":"NC6HT9CRT65ZGN82",
                "refusalReason":"Not enough balance","refusalReasonCode":"12",
                "resultCode":"Refused","merchantReference":"pay_1"}"#,
        )
        .expect("parse");
        assert_eq!(parsed.result_code, "Refused");
        assert_eq!(parsed.refusal_reason_code.as_deref(), Some("12"));
        let numeric: PaymentResponse =
            serde_json::from_str(r#"{"resultCode":"Refused","refusalReasonCode":12}"#)
                .expect("parse");
        assert_eq!(numeric.refusal_reason_code.as_deref(), Some("12"));
        assert!(serde_json::from_str::<PaymentResponse>(r#"{"pspReference":"X"}"#).is_err());
    }

    #[test]
    fn error_response_reads_both_shapes() {
        let classic: ErrorResponse = serde_json::from_str(
            r#"{"status":422,"errorCode":"14_030","message":"Return URL is missing.",
                "errorType":"validation","pspReference":"8816178914079738"}"#,
        )
        .expect("parse");
        assert_eq!(classic.error_code.as_deref(), Some("14_030"));
        assert_eq!(classic.text(), Some("Return URL is missing."));
        let problem: ErrorResponse = serde_json::from_str(
            r#"{"type":"https://docs.adyen.com/errors/validation","title":"Invalid",
                "status":422,"detail":"amount is missing","errorCode":"100"}"#,
        )
        .expect("parse");
        assert_eq!(problem.text(), Some("amount is missing"));
    }
}
