//! The one way the payment actor writes a payment's state: save, then
//! notify. Every status change (an attempt's result, recovery, a webhook)
//! goes through [`PaymentDeps::save_payment`] (a new payment through
//! [`PaymentDeps::begin_payment`]), so none can skip the notice, and the notice leaves only once the change is durable.

use super::PaymentDeps;
use crate::domain::PaymentStatus;
use crate::messages::notifier::PaymentNotice;
use crate::store::{BeginOutcome, NewPayment, PaymentWrite, StoreError};

/// The statuses a notice may be mailed for (`[email] events` picks among
/// them).
const NOTIFIED: &[PaymentStatus] = &[
    PaymentStatus::Succeeded,
    PaymentStatus::Failed,
    PaymentStatus::NeedsReview,
];

impl PaymentDeps {
    /// Writes `write` (fenced by its expected status, so only one writer
    /// can make a given transition), then hands a notice to the notifier
    /// if the payment just entered a notified status: once per payment and
    /// final status. The notifier never waits.
    pub(super) async fn save_payment(&self, write: PaymentWrite) -> Result<(), StoreError> {
        let entered = write.payment.status;
        let notice = (entered != write.expected_status && NOTIFIED.contains(&entered))
            .then(|| PaymentNotice::of(&write.payment));
        self.store.save_payment(write).await?;
        if let Some(notice) = notice {
            self.notifier.notify(notice);
        }
        Ok(())
    }

    /// Writes a new payment, then notifies as [`PaymentDeps::save_payment`]
    /// does if it was written already in a notified status (a payment
    /// refused before any provider call, say).
    pub(super) async fn begin_payment(&self, new: NewPayment) -> Result<BeginOutcome, StoreError> {
        let notice = NOTIFIED
            .contains(&new.payment.status)
            .then(|| PaymentNotice::of(&new.payment));
        let outcome = self.store.begin_payment(new).await?;
        if let (BeginOutcome::Started, Some(notice)) = (&outcome, notice) {
            self.notifier.notify(notice);
        }
        Ok(outcome)
    }
}
