//! Outgoing events (DESIGN §11): what the engine tells merchants' systems
//! about each status change, as `GET /v1/events` lists it and webhooks and
//! NATS carry it.
//!
//! An event is a snapshot: `data.object` is the payment, refund or
//! discrepancy as the API showed it at the change, so a receiver needs no
//! read-back to act on it.

use super::{Discrepancy, EventId, MerchantId, Payment, PaymentId, PaymentStatus, Refund};
use super::{RefundId, RefundState, Timestamp};
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// The kinds of outgoing event, as DESIGN §11 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutgoingEventType {
    PaymentSucceeded,
    PaymentFailed,
    PaymentPending,
    PaymentNeedsReview,
    PaymentRetryScheduled,
    RefundSucceeded,
    RefundFailed,
    DiscrepancyCreated,
    AnomalyFlagged,
}

impl OutgoingEventType {
    /// Every kind, in the order DESIGN §11 lists them.
    pub const ALL: [OutgoingEventType; 9] = [
        OutgoingEventType::PaymentSucceeded,
        OutgoingEventType::PaymentFailed,
        OutgoingEventType::PaymentPending,
        OutgoingEventType::PaymentNeedsReview,
        OutgoingEventType::PaymentRetryScheduled,
        OutgoingEventType::RefundSucceeded,
        OutgoingEventType::RefundFailed,
        OutgoingEventType::DiscrepancyCreated,
        OutgoingEventType::AnomalyFlagged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutgoingEventType::PaymentSucceeded => "payment.succeeded",
            OutgoingEventType::PaymentFailed => "payment.failed",
            OutgoingEventType::PaymentPending => "payment.pending",
            OutgoingEventType::PaymentNeedsReview => "payment.needs_review",
            OutgoingEventType::PaymentRetryScheduled => "payment.retry_scheduled",
            OutgoingEventType::RefundSucceeded => "refund.succeeded",
            OutgoingEventType::RefundFailed => "refund.failed",
            OutgoingEventType::DiscrepancyCreated => "discrepancy.created",
            OutgoingEventType::AnomalyFlagged => "anomaly.flagged",
        }
    }

    /// The event a payment entering `status` raises; `None` for statuses
    /// that are no news to a merchant (`processing`, the refund statuses,
    /// which the refund's own events cover).
    pub fn for_payment_status(status: PaymentStatus) -> Option<Self> {
        match status {
            PaymentStatus::Succeeded => Some(OutgoingEventType::PaymentSucceeded),
            PaymentStatus::Failed => Some(OutgoingEventType::PaymentFailed),
            PaymentStatus::Pending => Some(OutgoingEventType::PaymentPending),
            PaymentStatus::NeedsReview => Some(OutgoingEventType::PaymentNeedsReview),
            PaymentStatus::RetryScheduled => Some(OutgoingEventType::PaymentRetryScheduled),
            PaymentStatus::Processing
            | PaymentStatus::PartiallyRefunded
            | PaymentStatus::Refunded => None,
        }
    }
}

impl fmt::Display for OutgoingEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no event type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type {0:?}")]
pub struct UnknownEventType(pub String);

impl FromStr for OutgoingEventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OutgoingEventType::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownEventType(s.to_string()))
    }
}

/// One outgoing event: appended with the change it reports, never changed.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingEvent {
    pub id: EventId,
    pub merchant_id: MerchantId,
    pub kind: OutgoingEventType,
    pub payment_id: Option<PaymentId>,
    pub refund_id: Option<RefundId>,
    /// The object's snapshot (`data.object` on the wire).
    pub object: serde_json::Value,
    pub created: Timestamp,
}

impl OutgoingEvent {
    fn new(merchant: &MerchantId, kind: OutgoingEventType, at: Timestamp) -> Self {
        OutgoingEvent {
            id: EventId::new(),
            merchant_id: merchant.clone(),
            kind,
            payment_id: None,
            refund_id: None,
            object: serde_json::Value::Null,
            created: at,
        }
    }

    /// The event `p` entering its current status raises, if any.
    pub fn for_payment(p: &Payment) -> Option<Self> {
        let kind = OutgoingEventType::for_payment_status(p.status)?;
        let mut event = OutgoingEvent::new(&p.merchant_id, kind, p.updated_at);
        event.payment_id = Some(p.id);
        event.object = serde_json::to_value(p).unwrap_or_default();
        Some(event)
    }

    /// The event a refund settling raises (none while it is pending).
    pub fn for_refund(r: &Refund) -> Option<Self> {
        let kind = match r.status {
            RefundState::Succeeded => OutgoingEventType::RefundSucceeded,
            RefundState::Failed => OutgoingEventType::RefundFailed,
            RefundState::Pending => return None,
        };
        let mut event = OutgoingEvent::new(&r.merchant_id, kind, r.updated_at);
        event.payment_id = Some(r.payment_id);
        event.refund_id = Some(r.id);
        event.object = serde_json::to_value(r).unwrap_or_default();
        Some(event)
    }

    /// A new discrepancy; only one about a merchant's payment is that
    /// merchant's news (a provider record matching nothing has no merchant).
    pub fn for_discrepancy(d: &Discrepancy) -> Option<Self> {
        let merchant = d.merchant_id.as_ref()?;
        let mut event = OutgoingEvent::new(
            merchant,
            OutgoingEventType::DiscrepancyCreated,
            d.created_at,
        );
        event.payment_id = d.payment_id;
        event.object = serde_json::to_value(d).unwrap_or_default();
        Some(event)
    }

    /// An anomaly flag raised on a payment; `flag` is the `anomaly_flag`
    /// object as `GET /v1/anomalies` shows it. (Written by the anomaly
    /// path with the flag's own row.)
    pub fn for_anomaly_flag(
        merchant: &MerchantId,
        payment_id: Option<PaymentId>,
        flag: serde_json::Value,
        at: Timestamp,
    ) -> Self {
        let mut event = OutgoingEvent::new(merchant, OutgoingEventType::AnomalyFlagged, at);
        event.payment_id = payment_id;
        event.object = flag;
        event
    }
}

/// `{id, object: "event", type, created, data: {object}}` (DESIGN §6).
impl Serialize for OutgoingEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The `data` envelope.
        #[derive(Serialize)]
        struct Data<'a> {
            object: &'a serde_json::Value,
        }
        let mut s = serializer.serialize_struct("OutgoingEvent", 5)?;
        s.serialize_field("id", &self.id)?;
        s.serialize_field("object", "event")?;
        s.serialize_field("type", self.kind.as_str())?;
        s.serialize_field("created", &self.created)?;
        s.serialize_field(
            "data",
            &Data {
                object: &self.object,
            },
        )?;
        s.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back() {
        for kind in OutgoingEventType::ALL {
            assert_eq!(kind.as_str().parse::<OutgoingEventType>(), Ok(kind));
        }
        assert!("payment.created".parse::<OutgoingEventType>().is_err());
    }

    #[test]
    fn processing_is_no_event() {
        assert_eq!(
            OutgoingEventType::for_payment_status(PaymentStatus::Processing),
            None
        );
        assert_eq!(
            OutgoingEventType::for_payment_status(PaymentStatus::Succeeded),
            Some(OutgoingEventType::PaymentSucceeded)
        );
    }
}
