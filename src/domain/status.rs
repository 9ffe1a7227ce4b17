//! The payment status machine (DESIGN §4) as an explicit transition table.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a payment is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// An attempt is being made (or about to be); the outcome is not known yet.
    Processing,
    /// The provider charged the customer.
    Succeeded,
    /// Nothing was charged and nothing will be: a decline, an invalid request,
    /// or every provider refused before charging.
    Failed,
    /// The provider may have charged; only a look-up can tell. Never `failed`.
    Pending,
    /// A soft decline; another attempt is due at `next_attempt_at`.
    RetryScheduled,
    /// Reconciliation could not resolve a pending payment; a human decides.
    NeedsReview,
    /// Part of the captured amount has been returned.
    PartiallyRefunded,
    /// All of the captured amount has been returned.
    Refunded,
}

/// Every legal `(from, to)` pair. Anything absent is refused. Kept as data so
/// that the audit of the lifecycle is one table, not scattered conditions.
const TRANSITIONS: &[(PaymentStatus, PaymentStatus)] = {
    use PaymentStatus::*;
    &[
        (Processing, Succeeded),
        (Processing, Failed),
        (Processing, Pending),
        (Processing, RetryScheduled),
        (Pending, Succeeded),
        (Pending, Failed),
        (Pending, NeedsReview),
        (RetryScheduled, Processing),
        (RetryScheduled, Failed),
        (NeedsReview, Succeeded),
        (NeedsReview, Failed),
        (Succeeded, PartiallyRefunded),
        (Succeeded, Refunded),
        (PartiallyRefunded, PartiallyRefunded),
        (PartiallyRefunded, Refunded),
    ]
};

/// An attempt to move a payment along an edge the table does not have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal payment transition {from} -> {to}")]
pub struct TransitionError {
    pub from: PaymentStatus,
    pub to: PaymentStatus,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 8] = [
        PaymentStatus::Processing,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Pending,
        PaymentStatus::RetryScheduled,
        PaymentStatus::NeedsReview,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];

    /// The status a new payment starts in.
    pub const INITIAL: PaymentStatus = PaymentStatus::Processing;

    /// `Ok(to)` if the table has the edge `self -> to`.
    pub fn transition(self, to: PaymentStatus) -> Result<PaymentStatus, TransitionError> {
        if TRANSITIONS.contains(&(self, to)) {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    /// No further transitions are possible.
    pub fn is_terminal(self) -> bool {
        !TRANSITIONS.iter().any(|(from, _)| *from == self)
    }

    /// Whether a payment in this status blocks a new payment for its order
    /// (DESIGN §5's order-level guard). `needs_review` blocks too: its
    /// provider may have charged, so a second payment could charge twice.
    pub fn blocks_new_payment(self) -> bool {
        !matches!(self, PaymentStatus::Failed)
    }

    /// The order was paid (as opposed to a payment still being worked on).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Processing => "processing",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Pending => "pending",
            PaymentStatus::RetryScheduled => "retry_scheduled",
            PaymentStatus::NeedsReview => "needs_review",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PaymentStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    /// DESIGN §4's lifecycle, written out from the prose, not from
    /// [`TRANSITIONS`]: comparing the code's table with itself would pass
    /// whatever the table held. `tests/integration/common.rs` keeps the same
    /// list (`DESIGN_TRANSITIONS`) for checking transitions observed over HTTP.
    const DESIGN: &[(PaymentStatus, PaymentStatus)] = &[
        // processing -> succeeded | failed | pending | retry_scheduled
        (Processing, Succeeded),
        (Processing, Failed),
        (Processing, Pending),
        (Processing, RetryScheduled),
        // pending resolves by look-up or webhook, or goes to a human
        (Pending, Succeeded),
        (Pending, Failed),
        (Pending, NeedsReview),
        // a scheduled retry makes a new attempt, or gives up
        (RetryScheduled, Processing),
        (RetryScheduled, Failed),
        // a human decides
        (NeedsReview, Succeeded),
        (NeedsReview, Failed),
        // refunds
        (Succeeded, PartiallyRefunded),
        (Succeeded, Refunded),
        (PartiallyRefunded, PartiallyRefunded),
        (PartiallyRefunded, Refunded),
    ];

    #[test]
    fn transition_allows_exactly_the_pairs_design_describes() {
        let mut checked = 0;
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                let legal = DESIGN.contains(&(from, to));
                match from.transition(to) {
                    Ok(reached) => {
                        assert!(
                            legal,
                            "{from} -> {to} is allowed but DESIGN §4 has no such edge"
                        );
                        assert_eq!(reached, to);
                    }
                    Err(error) => {
                        assert!(!legal, "{from} -> {to} is in DESIGN §4 but refused");
                        assert_eq!(error, TransitionError { from, to });
                    }
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 64, "every ordered pair of the 8 statuses");
    }

    #[test]
    fn terminal_statuses_are_those_design_gives_no_way_out() {
        for status in PaymentStatus::ALL {
            let has_exit = DESIGN.iter().any(|(from, _)| *from == status);
            assert_eq!(status.is_terminal(), !has_exit, "{status}");
        }
    }

    #[test]
    fn the_promises_of_the_lifecycle_hold() {
        // A payment whose provider may have charged is never reported failed
        // without going through a look-up (pending -> failed is the
        // reconciler's edge, processing -> failed needs a definite "not charged").
        assert!(Succeeded.transition(Failed).is_err());
        assert!(Refunded.transition(Succeeded).is_err());
        assert!(Failed.transition(Succeeded).is_err());
        assert!(Failed.transition(Processing).is_err());
        assert!(Succeeded.transition(Processing).is_err());
        assert!(Pending.transition(Processing).is_err());
        assert!(Pending.transition(RetryScheduled).is_err());
        assert!(Failed.is_terminal());
        assert!(Refunded.is_terminal());
        assert!(
            !Succeeded.is_terminal(),
            "refunds still move a succeeded payment"
        );
        assert!(!Pending.is_terminal());
    }

    #[test]
    fn order_guard_statuses() {
        for status in [Succeeded, Processing, Pending, RetryScheduled, NeedsReview] {
            assert!(status.blocks_new_payment(), "{status}");
        }
        assert!(!Failed.blocks_new_payment());
    }

    #[test]
    fn names_round_trip() {
        for status in PaymentStatus::ALL {
            assert_eq!(status.as_str().parse(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{status}\"")
            );
        }
        assert_eq!("bogus".parse::<PaymentStatus>(), Err(()));
    }
}
