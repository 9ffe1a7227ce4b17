//! Stripe's codes and the outcome class each belongs to (DESIGN §4), as data.
//!
//! Every opinion the adapter has about what a Stripe answer means is in this
//! file; `classify_charge` in the adapter only decides which table to read.
//!
//! - [`DECLINE_CODES`]: a card error's `decline_code` (or, without one, its
//!   `code`). Soft: the same card may pass later (funds, limits, an issuer
//!   that was unavailable). Hard: it will not (the card is gone, stolen,
//!   wrong, or the issuer said never). Unknown codes are hard: never retry
//!   what we do not understand.
//! - [`ADVICE_CODES`]: a card error's `advice_code`, which, when present
//!   and known, overrides the decline code: Stripe's advice is more specific
//!   than the issuer's reason.
//! - [`PAYMENT_INTENT_STATUSES`]: the status of a PaymentIntent answered
//!   with `200`.
//! - [`HTTP_STATUSES`]: the HTTP status of an answer that is not a `200`,
//!   with [`http_class`] for the statuses not listed.
//! - [`REFUND_STATUSES`] and [`SETTLEMENT_KINDS`]: refunds and balance
//!   transactions.

use crate::domain::OutcomeClass::{
    self, HardDecline, Invalid, SoftDecline, Succeeded, TransientNotCharged, Unknown,
};
use crate::providers::classify::CodeTable;
use crate::providers::RefundStatus;

/// Decline codes (and the card-error codes that stand in for them).
pub const DECLINE_CODES: CodeTable = CodeTable {
    entries: &[
        // Soft: the same card may pass later.
        ("insufficient_funds", SoftDecline),
        ("try_again_later", SoftDecline),
        ("card_velocity_exceeded", SoftDecline),
        ("withdrawal_count_limit_exceeded", SoftDecline),
        ("approve_with_id", SoftDecline),
        ("issuer_not_available", SoftDecline),
        ("processing_error", SoftDecline),
        ("reenter_transaction", SoftDecline),
        ("card_decline_rate_limit_exceeded", SoftDecline),
        // Hard: the issuer or Stripe refused for good.
        ("card_declined", HardDecline),
        ("generic_decline", HardDecline),
        ("do_not_honor", HardDecline),
        ("do_not_try_again", HardDecline),
        ("call_issuer", HardDecline),
        ("no_action_taken", HardDecline),
        ("not_permitted", HardDecline),
        ("service_not_allowed", HardDecline),
        ("transaction_not_allowed", HardDecline),
        ("restricted_card", HardDecline),
        ("security_violation", HardDecline),
        ("revocation_of_all_authorizations", HardDecline),
        ("revocation_of_authorization", HardDecline),
        ("stop_payment_order", HardDecline),
        ("merchant_blacklist", HardDecline),
        ("new_account_information_available", HardDecline),
        ("invalid_account", HardDecline),
        ("card_not_supported", HardDecline),
        ("currency_not_supported", HardDecline),
        ("invalid_amount", HardDecline),
        // Hard: the card is gone or suspect.
        ("expired_card", HardDecline),
        ("stolen_card", HardDecline),
        ("lost_card", HardDecline),
        ("pickup_card", HardDecline),
        ("fraudulent", HardDecline),
        // Hard: the card data is wrong; retrying the same data cannot help.
        ("incorrect_cvc", HardDecline),
        ("invalid_cvc", HardDecline),
        ("incorrect_number", HardDecline),
        ("invalid_number", HardDecline),
        ("incorrect_zip", HardDecline),
        ("incorrect_address", HardDecline),
        ("invalid_expiry_month", HardDecline),
        ("invalid_expiry_year", HardDecline),
        ("incorrect_pin", HardDecline),
        ("invalid_pin", HardDecline),
        ("pin_try_exceeded", HardDecline),
        ("offline_pin_required", HardDecline),
        ("online_or_offline_pin_required", HardDecline),
        // Hard: the customer must act (3-D Secure) and is not here.
        ("authentication_required", HardDecline),
        ("payment_intent_authentication_failure", HardDecline),
        ("payment_intent_payment_attempt_failed", HardDecline),
        // Hard: a possible duplicate; retrying could charge twice.
        ("duplicate_transaction", HardDecline),
        ("testmode_decline", HardDecline),
    ],
    otherwise: HardDecline,
};

/// Advice codes. An advice code not listed here is ignored (the decline
/// code decides), which is why [`listed`] exists; `otherwise` is never read.
pub const ADVICE_CODES: CodeTable = CodeTable {
    entries: &[
        ("try_again_later", SoftDecline),
        ("do_not_try_again", HardDecline),
        // The card data must change: the same request will not pass.
        ("confirm_card_data", HardDecline),
    ],
    otherwise: HardDecline,
};

/// PaymentIntent statuses of a `200`. We create with `confirm=true` and
/// automatic capture, so `succeeded` is the only success.
pub const PAYMENT_INTENT_STATUSES: CodeTable = CodeTable {
    entries: &[
        ("succeeded", Succeeded),
        // The charge is still in flight and may yet succeed.
        ("processing", Unknown),
        // Authorized, not captured: money is held; never fail over from it.
        ("requires_capture", Unknown),
        // 3-D Secure or a redirect: the customer is not here to do it.
        ("requires_action", HardDecline),
        // The confirmation failed (the decline is in last_payment_error).
        ("requires_payment_method", HardDecline),
        ("canceled", HardDecline),
        // We asked to confirm and it did not: our request is wrong.
        ("requires_confirmation", Invalid),
    ],
    // A status this adapter does not know may hide a charge.
    otherwise: Unknown,
};

/// HTTP statuses of an answer that is not a `200`. `402` is a card error:
/// its class comes from [`ADVICE_CODES`] and [`DECLINE_CODES`].
pub const HTTP_STATUSES: CodeTable = CodeTable {
    entries: &[
        ("400", Invalid),
        ("401", Invalid),
        ("402", HardDecline),
        ("403", Invalid),
        ("404", Invalid),
        // Concurrent use of the idempotency key: the first request may
        // still charge.
        ("409", Unknown),
        // Stripe's 424: an external dependency failed mid-request.
        ("424", Unknown),
        // Rate limited before anything ran.
        ("429", TransientNotCharged),
        ("500", Unknown),
        ("502", Unknown),
        // Unknown unless `Stripe-Should-Retry: true` says nothing ran.
        ("503", Unknown),
        ("504", Unknown),
    ],
    otherwise: Unknown,
};

/// The class of an HTTP status that is not a `2xx`: [`HTTP_STATUSES`], then
/// any other `4xx` is [`Invalid`] (Stripe refused the request itself), a
/// `3xx` is [`Invalid`] too (the adapter follows no redirects: whatever
/// answered is not the API, so the base URL is wrong and nothing ran), and
/// anything else is [`Unknown`].
pub fn http_class(status: u16) -> OutcomeClass {
    match listed(&HTTP_STATUSES, &status.to_string()) {
        Some(class) => class,
        None if (300..500).contains(&status) => Invalid,
        None => HTTP_STATUSES.otherwise,
    }
}

/// The class `table` lists for `code`, or `None` if it does not list it.
pub fn listed(table: &CodeTable, code: &str) -> Option<OutcomeClass> {
    table
        .entries
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(code))
        .map(|(_, class)| *class)
}

/// The class of a card error: its known advice code, else its decline code,
/// else its error code, else a hard decline.
pub fn card_error_class(
    advice_code: Option<&str>,
    decline_code: Option<&str>,
    code: Option<&str>,
) -> OutcomeClass {
    if let Some(class) = advice_code.and_then(|advice| listed(&ADVICE_CODES, advice)) {
        return class;
    }
    decline_code
        .or(code)
        .map_or(DECLINE_CODES.otherwise, |code| DECLINE_CODES.classify(code))
}

/// Refund statuses. A status not listed is [`RefundStatus::Unknown`].
pub const REFUND_STATUSES: &[(&str, RefundStatus)] = &[
    ("succeeded", RefundStatus::Succeeded),
    ("pending", RefundStatus::Pending),
    // Some non-card methods need the customer's bank details first.
    ("requires_action", RefundStatus::Pending),
    ("failed", RefundStatus::Failed),
    ("canceled", RefundStatus::Failed),
];

pub fn refund_status(status: &str) -> RefundStatus {
    REFUND_STATUSES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(status))
        .map_or(RefundStatus::Unknown, |(_, status)| *status)
}

/// Refund reasons Stripe accepts; any other reason is not sent.
pub const REFUND_REASONS: &[&str] = &["duplicate", "fraudulent", "requested_by_customer"];

/// Balance transaction types and the settlement kind each reports. Types
/// not listed (payouts, Stripe fees, adjustments, transfers...) are not
/// about one charge and are left out of settlement records.
pub const SETTLEMENT_KINDS: &[(&str, &str)] = &[
    ("charge", "charge"),
    ("payment", "charge"),
    ("refund", "refund"),
    ("payment_refund", "refund"),
    ("payment_failure_refund", "refund"),
];

pub fn settlement_kind(kind: &str) -> Option<&'static str> {
    SETTLEMENT_KINDS
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(kind))
        .map(|(_, settlement)| *settlement)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_unambiguous() {
        for table in [
            &DECLINE_CODES,
            &ADVICE_CODES,
            &PAYMENT_INTENT_STATUSES,
            &HTTP_STATUSES,
        ] {
            assert!(table.is_unambiguous(), "{table:?}");
        }
        for (i, (status, _)) in REFUND_STATUSES.iter().enumerate() {
            assert!(!REFUND_STATUSES[..i].iter().any(|(s, _)| s == status));
        }
        for (i, (kind, _)) in SETTLEMENT_KINDS.iter().enumerate() {
            assert!(!SETTLEMENT_KINDS[..i].iter().any(|(k, _)| k == kind));
        }
    }

    #[test]
    fn decline_codes_follow_design_section_4() {
        for soft in [
            "insufficient_funds",
            "try_again_later",
            "card_velocity_exceeded",
            "withdrawal_count_limit_exceeded",
        ] {
            assert_eq!(DECLINE_CODES.classify(soft), SoftDecline, "{soft}");
        }
        for hard in [
            "card_declined",
            "generic_decline",
            "do_not_honor",
            "expired_card",
            "stolen_card",
            "lost_card",
            "fraudulent",
            "incorrect_cvc",
            "pickup_card",
            "do_not_try_again",
        ] {
            assert_eq!(DECLINE_CODES.classify(hard), HardDecline, "{hard}");
        }
        assert_eq!(DECLINE_CODES.classify("brand_new_code"), HardDecline);
        assert_eq!(DECLINE_CODES.classify("Insufficient_Funds"), SoftDecline);
    }

    #[test]
    fn declines_are_never_transient_or_unknown() {
        for (code, class) in DECLINE_CODES.entries.iter().chain(ADVICE_CODES.entries) {
            assert!(
                matches!(class, SoftDecline | HardDecline),
                "{code} is {class:?}"
            );
        }
    }

    #[test]
    fn advice_overrides_the_decline_code() {
        assert_eq!(
            card_error_class(Some("try_again_later"), Some("do_not_honor"), None),
            SoftDecline
        );
        assert_eq!(
            card_error_class(Some("do_not_try_again"), Some("insufficient_funds"), None),
            HardDecline
        );
        // An advice code we do not know leaves the decline code in charge.
        assert_eq!(
            card_error_class(Some("new_advice"), Some("insufficient_funds"), None),
            SoftDecline
        );
        // Without a decline code, the error code decides.
        assert_eq!(
            card_error_class(None, None, Some("expired_card")),
            HardDecline
        );
        assert_eq!(card_error_class(None, None, None), HardDecline);
    }

    #[test]
    fn http_statuses() {
        assert_eq!(http_class(400), Invalid);
        assert_eq!(http_class(401), Invalid);
        assert_eq!(http_class(404), Invalid);
        assert_eq!(http_class(405), Invalid);
        assert_eq!(http_class(409), Unknown);
        assert_eq!(http_class(429), TransientNotCharged);
        assert_eq!(http_class(500), Unknown);
        assert_eq!(http_class(503), Unknown);
        assert_eq!(http_class(599), Unknown);
        assert_eq!(http_class(302), Invalid);
    }

    #[test]
    fn payment_intent_statuses() {
        assert_eq!(PAYMENT_INTENT_STATUSES.classify("succeeded"), Succeeded);
        assert_eq!(PAYMENT_INTENT_STATUSES.classify("processing"), Unknown);
        assert_eq!(
            PAYMENT_INTENT_STATUSES.classify("requires_action"),
            HardDecline
        );
        assert_eq!(PAYMENT_INTENT_STATUSES.classify("something_new"), Unknown);
    }

    #[test]
    fn refunds_and_settlements() {
        assert_eq!(refund_status("succeeded"), RefundStatus::Succeeded);
        assert_eq!(refund_status("pending"), RefundStatus::Pending);
        assert_eq!(refund_status("canceled"), RefundStatus::Failed);
        assert_eq!(refund_status("weird"), RefundStatus::Unknown);
        assert_eq!(settlement_kind("payment"), Some("charge"));
        assert_eq!(settlement_kind("payment_refund"), Some("refund"));
        assert_eq!(settlement_kind("payout"), None);
    }
}
