//! Domain types: money, identifiers, time, the payment lifecycle, the
//! ledger's double entries and the anomaly rules' vocabulary.
//!
//! Everything here is plain data with no I/O, so it can be unit-tested
//! exhaustively and shared by the store, the actors and the HTTP layer.

mod anomaly;
mod currency;
mod event_signature;
mod fee;
mod ids;
mod ledger;
mod money;
mod outgoing;
mod payment;
mod reconciliation;
mod refund;
mod status;
mod time;
mod webhook;

pub use anomaly::{
    AnomalyFlagRecord, CustomerCounts, Flag, PastPayment, PaymentFacts, Rule, RuleAction,
    BLOCKED_BY_RULE, CARD_METHOD_SLOTS, DUPLICATE_RING_ENTRIES, VELOCITY_BUCKETS,
};
pub use currency::Currency;
pub use event_signature::{
    sign, verify_signature, SignatureError, DEFAULT_SIGNATURE_TOLERANCE_SECS, EVENT_ID_HEADER,
    SIGNATURE_HEADER,
};
pub use fee::Fee;
pub use ids::{AttemptId, EventId, IdError, PaymentId, RefundId, TransactionId};
pub use ledger::{
    Account, AccountError, AccountKind, AccountTotal, Balance, CardCharge, CardRefund, Direction,
    Entry, LedgerError, Posting, PostingKind, PostingParts, WalletCharge, WalletRefund,
    WalletTopUp, MIN_POSTING_ENTRIES,
};
pub use money::{Amount, AmountError, MAX_AMOUNT};
pub use outgoing::{OutgoingEvent, OutgoingEventType, UnknownEventType};
pub use payment::{
    Attempt, AttemptOutcome, MerchantId, OrderKey, OutcomeClass, Payment, PaymentEvent,
    PaymentObject, WALLET_PAYMENT_METHOD,
};
pub use reconciliation::{Category, Discrepancy, DiscrepancyStatus, RunReport, Severity};
pub use refund::{Refund, RefundObject, RefundReason, RefundState};
pub use status::{PaymentStatus, TransitionError};
pub use time::Timestamp;
pub use webhook::WebhookResult;
