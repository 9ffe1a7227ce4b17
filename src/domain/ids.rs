//! Typed, prefixed identifiers (`pay_…`, `att_…`, `evt_…`, `re_…`, `txn_…`).
//!
//! Each id is a UUIDv7 behind a type-specific prefix: the type keeps a payment
//! id from being passed where an attempt id is expected, the prefix tells a
//! human what an id in a log line is, and v7 makes ids sort by creation time,
//! which the list endpoint's cursor pagination relies on.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;
use uuid::Uuid;

/// What kind of thing an [`Id`] names: its prefix and its name in errors.
pub trait IdKind {
    const PREFIX: &'static str;
    const NAME: &'static str;
}

/// Marker for payment ids.
#[derive(Debug)]
pub enum PaymentKind {}
/// Marker for attempt ids.
#[derive(Debug)]
pub enum AttemptKind {}
/// Marker for audit-trail event ids.
#[derive(Debug)]
pub enum EventKind {}
/// Marker for refund ids.
#[derive(Debug)]
pub enum RefundKind {}
/// Marker for ledger transaction ids.
#[derive(Debug)]
pub enum TransactionKind {}

impl IdKind for PaymentKind {
    const PREFIX: &'static str = "pay_";
    const NAME: &'static str = "payment";
}
impl IdKind for AttemptKind {
    const PREFIX: &'static str = "att_";
    const NAME: &'static str = "attempt";
}
impl IdKind for EventKind {
    const PREFIX: &'static str = "evt_";
    const NAME: &'static str = "event";
}
impl IdKind for RefundKind {
    const PREFIX: &'static str = "re_";
    const NAME: &'static str = "refund";
}
impl IdKind for TransactionKind {
    const PREFIX: &'static str = "txn_";
    const NAME: &'static str = "ledger transaction";
}

/// One payment: one merchant request to charge an order.
pub type PaymentId = Id<PaymentKind>;
/// One attempt: one call (and its retries with the same provider idempotency
/// key) to one provider.
pub type AttemptId = Id<AttemptKind>;
/// One entry of a payment's audit trail.
pub type EventId = Id<EventKind>;
/// One refund of a payment; the ledger posts one reversal per refund.
pub type RefundId = Id<RefundKind>;
/// One ledger posting (a balanced set of entries), so a posting can be
/// named, paginated and made idempotent on its own.
pub type TransactionId = Id<TransactionKind>;

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id")]
pub struct IdError {
    pub kind: &'static str,
}

/// A UUIDv7 tagged with the kind of thing it identifies.
pub struct Id<K: IdKind>(Uuid, PhantomData<fn() -> K>);

impl<K: IdKind> Id<K> {
    /// A new id; later calls in this process sort after earlier ones.
    pub fn new() -> Self {
        Id(Uuid::now_v7(), PhantomData)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl<K: IdKind> Default for Id<K> {
    fn default() -> Self {
        Self::new()
    }
}

// Manual impls: derives would demand the marker types implement the traits.
impl<K: IdKind> Clone for Id<K> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: IdKind> Copy for Id<K> {}
impl<K: IdKind> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: IdKind> Eq for Id<K> {}
impl<K: IdKind> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: IdKind> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}
impl<K: IdKind> Hash for Id<K> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl<K: IdKind> fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<K: IdKind> fmt::Display for Id<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", K::PREFIX, self.0.simple())
    }
}

impl<K: IdKind> FromStr for Id<K> {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = IdError { kind: K::NAME };
        let hex = s.strip_prefix(K::PREFIX).ok_or(error.clone())?;
        // Only the canonical form (32 lowercase hex digits) is accepted, so an
        // id has exactly one spelling and text order in the database is the
        // UUIDs' order.
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(error);
        }
        Uuid::parse_str(hex)
            .map(|uuid| Id(uuid, PhantomData))
            .map_err(|_| error)
    }
}

impl<K: IdKind> Serialize for Id<K> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, K: IdKind> Deserialize<'de> for Id<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_prefixes() {
        let id = PaymentId::new();
        let text = id.to_string();
        assert!(text.starts_with("pay_"));
        assert_eq!(text.len(), 4 + 32);
        assert_eq!(text.parse::<PaymentId>(), Ok(id));
        assert!(text.replace("pay_", "att_").parse::<PaymentId>().is_err());
        assert!("pay_".parse::<PaymentId>().is_err());
        assert!("pay_XYZ".parse::<PaymentId>().is_err());
        assert!(text.to_uppercase().parse::<PaymentId>().is_err());
    }

    #[test]
    fn ids_sort_by_creation() {
        let ids: Vec<String> = (0..1000).map(|_| PaymentId::new().to_string()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
