//! What each `payment_method` token asks the sandbox to do (DESIGN §7), and
//! the answers it gives: the one table of codes the sandbox answers with.
//!
//! | token | answer |
//! |---|---|
//! | `pm_card_visa` | charged, `succeeded` |
//! | `pm_card_async` | charged, answered `unknown` with code `pending` (repeats too, until confirmed); a signed `charge.succeeded` webhook follows |
//! | `pm_card_timeout_after_charge` | charged, the first answer lost (`unknown`, `timeout`) |
//! | `pm_card_declined`, `pm_card_expired` | hard decline |
//! | `pm_card_insufficient_funds` | soft decline |
//! | `pm_card_provider_error` | 503 before anything is charged |
//! | `pm_card_rate_limited` | 429 for the payment's attempts 1 and 2, then charged |
//! | anything else | 400 `invalid_payment_method` |

use super::SandboxCharge;
use crate::domain::OutcomeClass;
use crate::providers::{LookupResult, ProviderResponse};

/// The token of a charge confirmed by webhook.
pub const ASYNC_TOKEN: &str = "pm_card_async";
/// The code a `pm_card_async` charge is answered with.
pub const PENDING_CODE: &str = "pending";

/// What a payment method token asks the sandbox to do.
pub(super) enum Token {
    /// Charge and answer now (`lose_first_answer`: then drop the answer).
    Charge {
        lose_first_answer: bool,
    },
    /// Charge, answer `pending`, confirm by webhook later.
    Async,
    Decline(&'static Decline),
    ProviderError,
    RateLimited,
    Unknown,
}

/// A decline the sandbox answers for a payment method token.
pub(super) struct Decline {
    pub token: &'static str,
    pub class: OutcomeClass,
    pub code: &'static str,
    pub message: &'static str,
}

/// The tokens that decline, and how: read for charges by token, and for
/// `charge.failed` webhooks by code.
const DECLINES: &[Decline] = &[
    Decline {
        token: "pm_card_declined",
        class: OutcomeClass::HardDecline,
        code: "card_declined",
        message: "Your card was declined.",
    },
    Decline {
        token: "pm_card_expired",
        class: OutcomeClass::HardDecline,
        code: "expired_card",
        message: "Your card has expired.",
    },
    Decline {
        token: "pm_card_insufficient_funds",
        class: OutcomeClass::SoftDecline,
        code: "insufficient_funds",
        message: "Your card has insufficient funds.",
    },
];

pub(super) fn token(payment_method: &str) -> Token {
    if let Some(decline) = DECLINES.iter().find(|d| d.token == payment_method) {
        return Token::Decline(decline);
    }
    match payment_method {
        "pm_card_visa" => Token::Charge {
            lose_first_answer: false,
        },
        ASYNC_TOKEN => Token::Async,
        "pm_card_timeout_after_charge" => Token::Charge {
            lose_first_answer: true,
        },
        "pm_card_provider_error" => Token::ProviderError,
        "pm_card_rate_limited" => Token::RateLimited,
        _ => Token::Unknown,
    }
}

/// The class of a decline known by its code; a code the sandbox does not
/// answer with is a hard decline (never retry what is not understood).
pub(super) fn decline_class(code: Option<&str>) -> OutcomeClass {
    code.and_then(|code| DECLINES.iter().find(|d| d.code == code))
        .map_or(OutcomeClass::HardDecline, |d| d.class)
}

/// A recorded charge as a look-up finds it: whatever its token, a charge
/// in the record is charged (a `pm_card_async` one included, so recovery
/// resolves it without waiting for the webhook).
pub(super) fn charged(charge: SandboxCharge) -> LookupResult {
    LookupResult::Charged {
        provider_payment_id: charge.id,
        amount: charge.amount,
        currency: charge.currency,
    }
}

/// An answer as the sandbox's HTTP API would have given it.
pub(super) fn answer(
    class: OutcomeClass,
    http_status: u16,
    code: Option<&str>,
    message: Option<&str>,
    charge_id: Option<&str>,
) -> ProviderResponse {
    ProviderResponse {
        class,
        provider_payment_id: charge_id.map(str::to_string),
        code: code.map(str::to_string),
        message: message.map(str::to_string),
        raw: serde_json::json!({
            "http_status": http_status,
            "id": charge_id,
            "code": code,
            "message": message,
        })
        .to_string(),
        retry_after_ms: None,
    }
}

/// The answer to a `pm_card_async` charge: accepted, not yet confirmed.
/// `unknown`, so the engine keeps the payment open (`pending`) until the
/// webhook or a look-up settles it; it names the charge, so either can.
pub(super) fn pending(charge_id: &str) -> ProviderResponse {
    answer(
        OutcomeClass::Unknown,
        202,
        Some(PENDING_CODE),
        Some("the charge is being confirmed; a charge.succeeded webhook follows"),
        Some(charge_id),
    )
}
