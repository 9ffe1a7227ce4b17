//! What Adyen's answers mean, as data (DESIGN §4, §7).
//!
//! Adyen reports a declined payment as HTTP 200 with a `resultCode`; a
//! `Refused` one carries a `refusalReasonCode` (a number, sent as a string)
//! and a `refusalReason` text. Requests Adyen could not process at all come
//! back with an HTTP error status and an error body. Every one of these is
//! mapped to an [`OutcomeClass`] by a table below; `super` only looks them
//! up.
//!
//! Sources: Adyen's "Refusal reasons" page (refusalReasonCode values),
//! "Result codes" (Checkout API v71 `resultCode`), "Response handling" (HTTP
//! statuses) and "API idempotency" (error code 704).

use crate::domain::OutcomeClass;
use crate::providers::classify::CodeTable;

use OutcomeClass::{HardDecline, Invalid, SoftDecline, TransientNotCharged, Unknown};

/// `refusalReasonCode` of a `Refused` payment → class.
///
/// Soft only where a later try of the same card can succeed (balance,
/// withdrawal limits); transient only where the issuer or acquirer could not
/// be reached, so nothing was authorised and another try (or provider) may
/// work; invalid where the request itself was wrong. Everything else,
/// including every code not listed (Adyen adds codes over time), is hard:
/// never retry what we do not understand, and never retry into fraud checks
/// or the card schemes' excessive-retry rules.
pub const REFUSAL_REASONS: CodeTable = CodeTable {
    entries: &[
        ("2", HardDecline),         // Refused
        ("3", HardDecline),         // Referral: needs a call to the issuer
        ("4", TransientNotCharged), // Acquirer Error: error at the acquirer's end
        ("5", HardDecline),         // Blocked Card
        ("6", HardDecline),         // Expired Card
        ("7", Invalid),             // Invalid Amount: amount mismatch in our request
        ("8", HardDecline),         // Invalid Card Number
        ("9", TransientNotCharged), // Issuer Unavailable
        ("10", HardDecline),        // Not supported (by the shopper's bank)
        ("11", HardDecline),        // 3D Not Authenticated
        ("12", SoftDecline),        // Not enough balance
        ("14", HardDecline),        // Acquirer Fraud
        ("15", HardDecline),        // Cancelled
        ("16", HardDecline),        // Shopper Cancelled
        ("17", HardDecline),        // Invalid Pin
        ("18", HardDecline),        // Pin tries exceeded
        ("19", HardDecline),        // Pin validation not possible
        ("20", HardDecline),        // FRAUD (pre-authorisation risk checks)
        ("21", Invalid),            // Not Submitted: not submitted correctly
        ("22", HardDecline),        // FRAUD-CANCELLED
        ("23", HardDecline),        // Transaction Not Permitted
        ("24", HardDecline),        // CVC Declined
        ("25", HardDecline),        // Restricted Card
        ("26", HardDecline),        // Revocation Of Auth: shopper revoked the mandate
        ("27", HardDecline),        // Declined Non Generic
        ("28", SoftDecline),        // Withdrawal amount exceeded
        ("29", SoftDecline),        // Withdrawal count exceeded
        ("31", HardDecline),        // Issuer Suspected Fraud
        ("32", HardDecline),        // AVS Declined
        ("33", HardDecline),        // Card requires online pin
        ("34", HardDecline),        // No checking account available on Card
        ("35", HardDecline),        // No savings account available on Card
        ("36", HardDecline),        // Mobile pin required
        ("37", HardDecline),        // Contactless fallback
        ("38", HardDecline),        // Authentication required (no shopper for 3DS)
        ("39", HardDecline),        // RReq not received from DS
        ("46", HardDecline),        // Blocked by Adyen to prevent excessive retry fees
    ],
    otherwise: HardDecline,
};

/// The documented `refusalReason` text of each `refusalReasonCode`: a
/// webhook reports a refused authorisation by its text alone (its `reason`),
/// so the text is read back to the code [`REFUSAL_REASONS`] classifies.
pub const REFUSAL_REASON_TEXTS: &[(&str, &str)] = &[
    ("Refused", "2"),
    ("Referral", "3"),
    ("Acquirer Error", "4"),
    ("Blocked Card", "5"),
    ("Expired Card", "6"),
    ("Invalid Amount", "7"),
    ("Invalid Card Number", "8"),
    ("Issuer Unavailable", "9"),
    ("Not supported", "10"),
    ("3D Not Authenticated", "11"),
    ("Not enough balance", "12"),
    ("Acquirer Fraud", "14"),
    ("Cancelled", "15"),
    ("Shopper Cancelled", "16"),
    ("Invalid Pin", "17"),
    ("Pin tries exceeded", "18"),
    ("Pin validation not possible", "19"),
    ("FRAUD", "20"),
    ("Not Submitted", "21"),
    ("FRAUD-CANCELLED", "22"),
    ("Transaction Not Permitted", "23"),
    ("CVC Declined", "24"),
    ("Restricted Card", "25"),
    ("Revocation Of Auth", "26"),
    ("Declined Non Generic", "27"),
    ("Withdrawal amount exceeded", "28"),
    ("Withdrawal count exceeded", "29"),
    ("Issuer Suspected Fraud", "31"),
    ("AVS Declined", "32"),
    ("Card requires online pin", "33"),
    ("No checking account available on Card", "34"),
    ("No savings account available on Card", "35"),
    ("Mobile pin required", "36"),
    ("Contactless fallback", "37"),
    ("Authentication required", "38"),
    ("RReq not received from DS", "39"),
];

/// The class of a refusal known only by its text: the code of a documented
/// text, classified by [`REFUSAL_REASONS`]; any other text is classified as
/// an unlisted code is (hard).
pub fn refusal_text_class(reason: Option<&str>) -> OutcomeClass {
    let code = reason.and_then(|reason| {
        REFUSAL_REASON_TEXTS
            .iter()
            .find(|(text, _)| text.eq_ignore_ascii_case(reason.trim()))
            .map(|(_, code)| *code)
    });
    REFUSAL_REASONS.classify(code.unwrap_or(""))
}

/// `resultCode` → class, for every result but `Refused` (which
/// [`REFUSAL_REASONS`] decides). An unlisted result (e.g.
/// `PartiallyAuthorised`, new values) is unknown: money may have moved, so
/// the engine keeps the payment pending for the webhook or the reconciler.
pub const RESULT_CODES: CodeTable = CodeTable {
    entries: &[
        ("Authorised", OutcomeClass::Succeeded),
        ("Cancelled", HardDecline),
        // Adyen could not process the payment; it may still complete.
        ("Error", Unknown),
        // Asynchronous: the outcome arrives by webhook.
        ("Received", Unknown),
        ("Pending", Unknown),
        // The payment needs the shopper, and the engine charges stored
        // cards without one: nothing is authorised, and retrying would ask
        // again.
        ("RedirectShopper", HardDecline),
        ("IdentifyShopper", HardDecline),
        ("ChallengeShopper", HardDecline),
        ("PresentToShopper", HardDecline),
    ],
    otherwise: Unknown,
};

/// The `resultCode` of a decline, decided by [`REFUSAL_REASONS`].
pub const REFUSED: &str = "Refused";

/// The `resultCode`s that ask for a shopper action; reported with the code
/// [`AUTHENTICATION_REQUIRED`].
pub const SHOPPER_ACTION_RESULT_CODES: &[&str] = &[
    "RedirectShopper",
    "IdentifyShopper",
    "ChallengeShopper",
    "PresentToShopper",
];

/// The engine's code for a payment that needed the shopper.
pub const AUTHENTICATION_REQUIRED: &str = "authentication_required";

/// HTTP status of an error answer → class. An unlisted status is unknown:
/// we cannot tell whether Adyen acted on the request.
pub const HTTP_STATUSES: CodeTable = CodeTable {
    entries: &[
        ("400", Invalid),             // Bad Request: validation
        ("401", Invalid),             // Unauthorized: API key
        ("403", Invalid),             // Forbidden: API key role, merchant account
        ("404", Invalid),             // Not Found: URL or API version
        ("405", Invalid),             // Method Not Allowed
        ("409", Unknown),             // Conflict: same idempotency key in flight
        ("413", Invalid),             // Payload Too Large
        ("415", Invalid),             // Unsupported Media Type
        ("422", Invalid),             // Unprocessable Entity: validation
        ("429", TransientNotCharged), // Too Many Requests: refused before processing
        ("500", Unknown),             // Internal Server Error: may have processed
        ("502", Unknown),
        ("503", TransientNotCharged), // Service Unavailable: refused before processing
        ("504", Unknown),
    ],
    otherwise: Unknown,
};

/// The engine's code for each HTTP error status (`http_{status}` otherwise).
pub const HTTP_STATUS_NAMES: &[(u16, &str)] = &[
    (400, "invalid_request"),
    (401, "authentication_failed"),
    (403, "permission_denied"),
    (404, "not_found"),
    (405, "method_not_allowed"),
    (409, "request_in_progress"),
    (413, "request_too_large"),
    (415, "unsupported_media_type"),
    (422, "validation_error"),
    (429, "rate_limited"),
    (500, "api_error"),
    (502, "bad_gateway"),
    (503, "provider_unavailable"),
    (504, "gateway_timeout"),
];

/// Adyen's `errorCode` for "request already processed or in progress": a
/// request with the same `Idempotency-Key` is still being processed (409 or
/// 422). The first one may charge, so this is `unknown` whatever the status:
/// retry with the same key, never fail over.
pub const IDEMPOTENCY_IN_PROGRESS: &str = "704";

/// The class of an HTTP error answer.
pub fn http_error_class(status: u16, error_code: Option<&str>) -> OutcomeClass {
    if error_code == Some(IDEMPOTENCY_IN_PROGRESS) {
        return Unknown;
    }
    HTTP_STATUSES.classify(&status.to_string())
}

/// The engine's code for an HTTP error answer.
pub fn http_error_code(status: u16, error_code: Option<&str>) -> String {
    if error_code == Some(IDEMPOTENCY_IN_PROGRESS) {
        return "request_in_progress".to_string();
    }
    HTTP_STATUS_NAMES
        .iter()
        .find(|(known, _)| *known == status)
        .map_or_else(|| format!("http_{status}"), |(_, name)| name.to_string())
}

/// The class of a `200` payment answer with this `resultCode` and
/// `refusalReasonCode`.
pub fn result_class(result_code: &str, refusal_reason_code: Option<&str>) -> OutcomeClass {
    if result_code.eq_ignore_ascii_case(REFUSED) {
        REFUSAL_REASONS.classify(refusal_reason_code.unwrap_or(""))
    } else {
        RESULT_CODES.classify(result_code)
    }
}

/// The engine's code for a non-`Authorised` result: `authentication_required`
/// for a shopper action; for a refusal the `refusalReason` in snake_case,
/// else the `refusalReasonCode`, else `refused`; otherwise the result code in
/// snake_case (`cancelled`, `received`...).
pub fn result_code_name(
    result_code: &str,
    refusal_reason: Option<&str>,
    refusal_reason_code: Option<&str>,
) -> String {
    if SHOPPER_ACTION_RESULT_CODES
        .iter()
        .any(|action| action.eq_ignore_ascii_case(result_code))
    {
        return AUTHENTICATION_REQUIRED.to_string();
    }
    if result_code.eq_ignore_ascii_case(REFUSED) {
        return refusal_reason
            .map(snake_case)
            .filter(|name| !name.is_empty())
            .or_else(|| refusal_reason_code.map(str::to_string))
            .unwrap_or_else(|| "refused".to_string());
    }
    let name = snake_case(result_code);
    if name.is_empty() {
        "unknown_result".to_string()
    } else {
        name
    }
}

/// The longest code [`snake_case`] returns (reasons can carry free text).
const MAX_CODE_CHARS: usize = 64;

/// `Not enough balance` → `not_enough_balance`, `FRAUD-CANCELLED` →
/// `fraud_cancelled`, `RedirectShopper` → `redirect_shopper`: ASCII letters
/// and digits, lowercased, words joined by one `_`, at most 64 characters.
pub fn snake_case(text: &str) -> String {
    let mut out = String::new();
    let mut previous: Option<char> = None;
    let mut pending_separator = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            let camel_boundary =
                c.is_ascii_uppercase() && previous.is_some_and(|p| p.is_ascii_lowercase());
            if (pending_separator || camel_boundary) && !out.is_empty() {
                out.push('_');
            }
            pending_separator = false;
            out.push(c.to_ascii_lowercase());
            previous = Some(c);
        } else {
            pending_separator = true;
            previous = None;
        }
        if out.len() >= MAX_CODE_CHARS {
            break;
        }
    }
    out.truncate(MAX_CODE_CHARS);
    while out.ends_with('_') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use OutcomeClass::Succeeded;

    #[test]
    fn tables_are_unambiguous() {
        assert!(REFUSAL_REASONS.is_unambiguous());
        assert!(RESULT_CODES.is_unambiguous());
        assert!(HTTP_STATUSES.is_unambiguous());
        let mut statuses: Vec<u16> = HTTP_STATUS_NAMES.iter().map(|(s, _)| *s).collect();
        statuses.sort_unstable();
        statuses.dedup();
        assert_eq!(
            statuses.len(),
            HTTP_STATUS_NAMES.len(),
            "HTTP_STATUS_NAMES lists a status twice"
        );
    }

    #[test]
    fn refusal_reasons_follow_adyen_documentation() {
        for (code, class) in [
            ("2", HardDecline),
            ("4", TransientNotCharged),
            ("5", HardDecline),
            ("6", HardDecline),
            ("7", Invalid),
            ("9", TransientNotCharged),
            ("12", SoftDecline),
            ("14", HardDecline),
            ("20", HardDecline),
            ("22", HardDecline),
            ("24", HardDecline),
            ("28", SoftDecline),
            ("29", SoftDecline),
            ("31", HardDecline),
        ] {
            assert_eq!(REFUSAL_REASONS.classify(code), class, "code {code}");
        }
    }

    #[test]
    fn refusal_texts_name_listed_codes_once() {
        for (i, (text, code)) in REFUSAL_REASON_TEXTS.iter().enumerate() {
            assert!(
                REFUSAL_REASONS
                    .entries
                    .iter()
                    .any(|(known, _)| known == code),
                "{text}: code {code} is not in REFUSAL_REASONS"
            );
            assert!(
                !REFUSAL_REASON_TEXTS[..i]
                    .iter()
                    .any(|(other, _)| other.eq_ignore_ascii_case(text)),
                "{text} listed twice"
            );
        }
        assert_eq!(refusal_text_class(Some("Not enough balance")), SoftDecline);
        assert_eq!(
            refusal_text_class(Some("issuer unavailable")),
            TransientNotCharged
        );
        assert_eq!(refusal_text_class(Some("CVC Declined")), HardDecline);
        assert_eq!(refusal_text_class(Some("Something new")), HardDecline);
        assert_eq!(refusal_text_class(None), HardDecline);
    }

    #[test]
    fn unknown_refusals_are_hard() {
        assert_eq!(REFUSAL_REASONS.classify("999"), HardDecline);
        assert_eq!(REFUSAL_REASONS.classify(""), HardDecline);
        assert_eq!(result_class("Refused", None), HardDecline);
    }

    #[test]
    fn result_codes_map() {
        assert_eq!(result_class("Authorised", Some("0")), Succeeded);
        assert_eq!(result_class("Refused", Some("12")), SoftDecline);
        assert_eq!(result_class("refused", Some("9")), TransientNotCharged);
        assert_eq!(result_class("Cancelled", None), HardDecline);
        assert_eq!(result_class("Error", None), Unknown);
        assert_eq!(result_class("Received", None), Unknown);
        assert_eq!(result_class("Pending", None), Unknown);
        assert_eq!(result_class("PartiallyAuthorised", None), Unknown);
        assert_eq!(result_class("SomethingNew", None), Unknown);
        for action in SHOPPER_ACTION_RESULT_CODES {
            assert_eq!(result_class(action, None), HardDecline, "{action}");
            assert_eq!(
                result_code_name(action, None, None),
                AUTHENTICATION_REQUIRED
            );
        }
        assert!(
            !RESULT_CODES
                .entries
                .iter()
                .any(|(code, _)| code.eq_ignore_ascii_case(REFUSED)),
            "Refused is decided by REFUSAL_REASONS only"
        );
    }

    #[test]
    fn http_statuses_map() {
        for (status, class) in [
            (400, Invalid),
            (401, Invalid),
            (403, Invalid),
            (404, Invalid),
            (422, Invalid),
            (429, TransientNotCharged),
            (500, Unknown),
            (502, Unknown),
            (503, TransientNotCharged),
            (504, Unknown),
            (418, Unknown),
        ] {
            assert_eq!(http_error_class(status, None), class, "status {status}");
        }
        assert_eq!(http_error_class(422, Some("704")), Unknown);
        assert_eq!(http_error_class(409, Some("704")), Unknown);
        assert_eq!(http_error_code(422, Some("704")), "request_in_progress");
        assert_eq!(http_error_code(429, None), "rate_limited");
        assert_eq!(http_error_code(418, None), "http_418");
        // Every named status is classified explicitly.
        for (status, _) in HTTP_STATUS_NAMES {
            assert!(HTTP_STATUSES
                .entries
                .iter()
                .any(|(code, _)| *code == status.to_string()));
        }
    }

    #[test]
    fn codes_are_snake_case() {
        assert_eq!(snake_case("Not enough balance"), "not_enough_balance");
        assert_eq!(snake_case("FRAUD-CANCELLED"), "fraud_cancelled");
        assert_eq!(snake_case("FRAUD"), "fraud");
        assert_eq!(snake_case("CVC Declined"), "cvc_declined");
        assert_eq!(snake_case("3D Not Authenticated"), "3d_not_authenticated");
        assert_eq!(
            snake_case("Current AID is in Penalty Box."),
            "current_aid_is_in_penalty_box"
        );
        assert_eq!(snake_case("RedirectShopper"), "redirect_shopper");
        assert_eq!(snake_case("  --  "), "");
        assert!(snake_case(&"word ".repeat(100)).len() <= MAX_CODE_CHARS);
        assert_eq!(
            result_code_name("Refused", Some("Not enough balance"), Some("12")),
            "not_enough_balance"
        );
        assert_eq!(result_code_name("Refused", None, Some("12")), "12");
        assert_eq!(result_code_name("Refused", Some("!!"), None), "refused");
        assert_eq!(result_code_name("Cancelled", None, None), "cancelled");
    }
}
