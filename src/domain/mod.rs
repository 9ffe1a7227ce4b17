//! Domain types: money, identifiers, time, the payment lifecycle, and the
//! anomaly rules' vocabulary.
//!
//! Everything here is plain data with no I/O, so it can be unit-tested
//! exhaustively and shared by the store, the actors and the HTTP layer.

mod anomaly;
mod currency;
mod fee;
mod ids;
mod money;
mod payment;
mod status;
mod time;

pub use anomaly::{
    Flag, PastPayment, PaymentFacts, Rule, RuleAction, CARD_METHOD_SLOTS, DUPLICATE_RING_ENTRIES,
    VELOCITY_BUCKETS,
};
pub use currency::Currency;
pub use fee::Fee;
pub use ids::{AttemptId, EventId, IdError, PaymentId};
pub use money::{Amount, AmountError, MAX_AMOUNT};
pub use payment::{
    Attempt, AttemptOutcome, MerchantId, OrderKey, OutcomeClass, Payment, PaymentEvent,
    PaymentObject,
};
pub use status::{PaymentStatus, TransitionError};
pub use time::Timestamp;
