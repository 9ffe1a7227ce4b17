//! Messages of the e-mail notifier (`actors::notifier`).
//!
//! A notice carries everything the e-mail says, copied from the payment as
//! it was written: the notifier never reads the store, so a slow relay or
//! a full queue cannot touch the payment path.

use crate::domain::{Amount, Currency, MerchantId, Payment, PaymentId, PaymentStatus, Timestamp};
use actix::Message;

/// Mail that this payment reached a final status. Sent only after the
/// status change is durable; answered at once, the sending happens later.
#[derive(Debug, Clone, PartialEq, Message)]
#[rtype(result = "()")]
pub struct PaymentNotice {
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub status: PaymentStatus,
    pub amount: Amount,
    pub currency: Currency,
    pub customer_id: String,
    pub order_id: String,
    pub provider: Option<String>,
    pub failure_code: Option<String>,
    pub at: Timestamp,
}

impl PaymentNotice {
    /// The notice for `payment` as it now is.
    pub fn of(payment: &Payment) -> Self {
        PaymentNotice {
            payment_id: payment.id,
            merchant_id: payment.merchant_id.clone(),
            status: payment.status,
            amount: payment.amount,
            currency: payment.currency,
            customer_id: payment.customer_id.clone(),
            order_id: payment.order_id.clone(),
            provider: payment.provider.clone(),
            failure_code: payment.failure_code.clone(),
            at: payment.updated_at,
        }
    }

    /// The outgoing event name of its status (`payment.succeeded`...).
    pub fn event(&self) -> String {
        format!("payment.{}", self.status.as_str())
    }
}
