//! Schemas of the engine's signals to the outside: anomaly flags and
//! outgoing events, as `GET /v1/anomalies` and `GET /v1/events` answer
//! them (field for field the JSON the handlers write).

use utoipa::ToSchema;

/// An anomaly rule that fired on a payment (DESIGN §10).
#[derive(ToSchema)]
pub struct AnomalyFlag {
    /// `af_…`
    pub id: String,
    /// Always `anomaly_flag`.
    pub object: String,
    /// `velocity`, `large_amount`, `failed_streak`, `duplicate_amount` or `card_testing`.
    pub rule: String,
    /// `flag` or `block`.
    pub action: String,
    pub customer_id: String,
    pub payment_id: String,
    /// The rule's count and limits when it fired.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: String,
}

/// A page of anomaly flags, newest first.
#[derive(ToSchema)]
pub struct AnomalyFlagList {
    pub data: Vec<AnomalyFlag>,
    pub has_more: bool,
}

/// The object an event is about.
#[derive(ToSchema)]
pub struct EventData {
    /// The payment, refund, discrepancy or anomaly flag as it was written.
    #[schema(value_type = Object)]
    pub object: serde_json::Value,
}

/// An outgoing event (DESIGN §11).
#[derive(ToSchema)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    /// Always `event`.
    pub object: String,
    /// `payment.succeeded`, `payment.failed`, `payment.pending`, `payment.needs_review`,
    /// `payment.retry_scheduled`, `refund.succeeded`, `refund.failed`,
    /// `discrepancy.created` or `anomaly.flagged`.
    #[schema(rename = "type")]
    pub kind: String,
    /// When the change was written (RFC 3339).
    pub created: String,
    pub data: EventData,
}

/// A page of events, newest first.
#[derive(ToSchema)]
pub struct EventList {
    pub data: Vec<Event>,
    pub has_more: bool,
}
