//! Operator hooks on the record (DESIGN §7): change a charge, forget one,
//! or make one the engine never asked for.
//!
//! A real provider sometimes disagrees with the engine: a charge settled
//! for another amount, one it has no trace of, one nobody here made. These
//! let tests (and operators rehearsing) reproduce each case, so that
//! reconciliation has something to find. They write the record directly,
//! as the provider's own back office would: the engine hears nothing.

use super::record::decode;
use super::{options, SandboxCharge, SandboxProvider, SandboxRecord};
use crate::domain::{Amount, Currency, MerchantId, Timestamp};
use std::time::Instant;

/// The statuses a charge of the record can have.
pub const CHARGE_STATUSES: &[&str] = &["succeeded", "partially_refunded", "refunded"];

/// What the payment method of a charge made by a hook says.
pub const UNSOLICITED_PAYMENT_METHOD: &str = "operator_hook";

/// Fields of a charge to overwrite; `None` keeps the field. Values are
/// taken as given (checked by the caller): the point is to disagree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChargeUpdate {
    pub amount: Option<i64>,
    /// Lowercase ISO 4217 code.
    pub currency: Option<String>,
    /// One of [`CHARGE_STATUSES`].
    pub status: Option<String>,
    pub fee: Option<i64>,
}

/// A charge the engine never asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct UnsolicitedCharge {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub amount: Amount,
    pub currency: Currency,
}

impl SandboxRecord {
    /// Overwrites the fields `update` names of `provider`'s charge `id`;
    /// the charge as it is now, or `None` if there is no such charge.
    pub async fn update_charge(
        &self,
        provider: &str,
        id: &str,
        update: &ChargeUpdate,
    ) -> Result<Option<SandboxCharge>, sqlx::Error> {
        let row = sqlx::query(
            "UPDATE sandbox_charges SET amount = COALESCE(?, amount), currency = COALESCE(?, currency),
                status = COALESCE(?, status), fee = COALESCE(?, fee)
             WHERE provider = ? AND id = ? RETURNING *",
        )
        .bind(update.amount)
        .bind(update.currency.as_deref())
        .bind(update.status.as_deref())
        .bind(update.fee)
        .bind(provider)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Forgets `provider`'s charge `id` and its refunds, in one
    /// transaction; whether there was such a charge.
    pub async fn delete_charge(&self, provider: &str, id: &str) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM sandbox_charges WHERE provider = ? AND id = ?")
            .bind(provider)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        sqlx::query("DELETE FROM sandbox_refunds WHERE provider = ? AND charge_id = ?")
            .bind(provider)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(deleted)
    }
}

impl SandboxProvider {
    /// `PATCH /v1/sandbox/{provider}/charges/{id}`: see
    /// [`SandboxRecord::update_charge`].
    pub async fn update_charge(
        &self,
        id: &str,
        update: &ChargeUpdate,
    ) -> Result<Option<SandboxCharge>, sqlx::Error> {
        self.record.update_charge(&self.name, id, update).await
    }

    /// `DELETE /v1/sandbox/{provider}/charges/{id}`: see
    /// [`SandboxRecord::delete_charge`].
    pub async fn delete_charge(&self, id: &str) -> Result<bool, sqlx::Error> {
        self.record.delete_charge(&self.name, id).await
    }

    /// `POST /v1/sandbox/{provider}/charges`: records a succeeded charge
    /// the engine never asked for, with its fee from the configured fees.
    /// Its idempotency key is the sandbox's own (`unsolicited_…`), in no
    /// attempt's `{payment_id}-{attempt_number}` shape, so it names no
    /// payment; it has no customer.
    pub async fn create_charge(
        &self,
        unsolicited: &UnsolicitedCharge,
    ) -> Result<SandboxCharge, sqlx::Error> {
        let amount = unsolicited.amount.minor_units();
        let charge = SandboxCharge {
            id: format!("ch_{}", uuid::Uuid::now_v7().simple()),
            provider: self.name.clone(),
            idempotency_key: format!("unsolicited_{}", uuid::Uuid::now_v7().simple()),
            merchant_id: unsolicited.merchant_id.to_string(),
            order_id: unsolicited.order_id.clone(),
            customer_id: String::new(),
            amount,
            currency: unsolicited.currency.code().to_string(),
            payment_method: UNSOLICITED_PAYMENT_METHOD.to_string(),
            status: "succeeded".to_string(),
            amount_refunded: 0,
            fee: options::fee_on(&self.fees, amount, unsolicited.currency),
            created_at: Timestamp::from_datetime(chrono::Utc::now()).to_string(),
        };
        let deadline = Instant::now() + self.call_timeout;
        let (stored, _) = self.record.charge_once(&charge, deadline).await?;
        Ok(stored)
    }
}
