//! What an inbound provider webhook did (DESIGN §6): the answer to the
//! provider and the receipt that deduplicates its redeliveries.

use serde::Serialize;

/// The effect of one verified provider event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookResult {
    /// It moved a payment or a refund to the state it reports.
    Applied,
    /// It agrees with what the engine already knows (or is of a kind the
    /// engine does not act on): recorded, nothing changed.
    NoEffect,
    /// It contradicts a final state: recorded in the audit trail and raised
    /// as a discrepancy, never applied (a final state does not move back).
    Late,
    /// It names no payment or refund the engine knows: recorded only.
    Unmatched,
    /// The same event was received before: nothing is done again.
    Duplicate,
}

impl WebhookResult {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookResult::Applied => "applied",
            WebhookResult::NoEffect => "no_effect",
            WebhookResult::Late => "late",
            WebhookResult::Unmatched => "unmatched",
            WebhookResult::Duplicate => "duplicate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_its_name() {
        for result in [
            WebhookResult::Applied,
            WebhookResult::NoEffect,
            WebhookResult::Late,
            WebhookResult::Unmatched,
            WebhookResult::Duplicate,
        ] {
            let json = serde_json::to_value(result).expect("serializes");
            assert_eq!(json, serde_json::json!(result.as_str()));
        }
    }
}
