//! Decoding rows into domain records, shared by every backend.
//!
//! Both backends store the same column types (text and 64-bit integers), so
//! one decoder generic over sqlx's `Row` serves them all.

use super::{IdempotencyRecord, StoreError, StoredResponse};
use crate::domain::{
    Amount, Attempt, AttemptOutcome, Currency, MerchantId, Payment, PaymentEvent, PaymentObject,
    PaymentStatus, Timestamp,
};
use sqlx::{ColumnIndex, Decode, Row, Type};
use std::str::FromStr;

/// Typed column access with errors that name the column.
pub trait RowExt {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

impl<R> RowExt for R
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get::<String, _>(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get::<Option<String>, _>(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get::<i64, _>(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get::<Option<i64>, _>(column)?)
    }
}

fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value}"))
}

fn parse<T: FromStr>(what: &str, text: String) -> Result<T, StoreError> {
    text.parse().map_err(|_| corrupt(what, text))
}

fn timestamp(what: &str, micros: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_micros(micros).ok_or_else(|| corrupt(what, micros))
}

fn opt_timestamp(what: &str, micros: Option<i64>) -> Result<Option<Timestamp>, StoreError> {
    micros.map(|m| timestamp(what, m)).transpose()
}

fn status(text: String) -> Result<PaymentStatus, StoreError> {
    PaymentStatus::from_str(&text).map_err(|_| corrupt("status", text))
}

/// A `payments` row, without its attempts.
pub(crate) fn payment(row: &impl RowExt) -> Result<Payment, StoreError> {
    let amount = row.int("amount")?;
    let currency = row.text("currency")?;
    let metadata = row.text("metadata")?;
    let flags = row.text("anomaly_flags")?;
    Ok(Payment {
        id: parse("payment id", row.text("id")?)?,
        object: PaymentObject,
        merchant_id: MerchantId::new(row.text("merchant_id")?),
        status: status(row.text("status")?)?,
        amount: Amount::new(amount).map_err(|_| corrupt("amount", amount))?,
        amount_refunded: row.int("amount_refunded")?,
        amount_refund_pending: row.int("amount_refund_pending")?,
        currency: Currency::parse(&currency).ok_or_else(|| corrupt("currency", &currency))?,
        customer_id: row.text("customer_id")?,
        order_id: row.text("order_id")?,
        payment_method: row.text("payment_method")?,
        description: row.opt_text("description")?,
        provider: row.opt_text("provider")?,
        provider_payment_id: row.opt_text("provider_payment_id")?,
        failure_code: row.opt_text("failure_code")?,
        failure_message: row.opt_text("failure_message")?,
        next_attempt_at: opt_timestamp("next_attempt_at", row.opt_int("next_attempt_at")?)?,
        attempts: Vec::new(),
        anomaly_flags: serde_json::from_str(&flags)
            .map_err(|_| corrupt("anomaly_flags", &flags))?,
        metadata: serde_json::from_str(&metadata).map_err(|_| corrupt("metadata", &metadata))?,
        recovery_attempts: u32::try_from(row.int("recovery_attempts")?).unwrap_or(u32::MAX),
        created_at: timestamp("created_at", row.int("created_at")?)?,
        updated_at: timestamp("updated_at", row.int("updated_at")?)?,
    })
}

/// An `attempts` row.
pub(crate) fn attempt(row: &impl RowExt) -> Result<Attempt, StoreError> {
    let outcome = row.text("outcome")?;
    let number = row.int("number")?;
    Ok(Attempt {
        id: parse("attempt id", row.text("id")?)?,
        number: u32::try_from(number).map_err(|_| corrupt("attempt number", number))?,
        provider: row.text("provider")?,
        outcome: AttemptOutcome::parse(&outcome).ok_or_else(|| corrupt("outcome", &outcome))?,
        code: row.opt_text("code")?,
        latency_ms: row.opt_int("latency_ms")?,
        provider_payment_id: row.opt_text("provider_payment_id")?,
        raw_response: row.opt_text("raw_response")?,
        created_at: timestamp("created_at", row.int("created_at")?)?,
        updated_at: opt_timestamp("updated_at", row.opt_int("updated_at")?)?,
    })
}

/// A `payment_events` row.
pub(crate) fn event(row: &impl RowExt) -> Result<PaymentEvent, StoreError> {
    let data = row.text("data")?;
    Ok(PaymentEvent {
        id: parse("event id", row.text("id")?)?,
        payment_id: parse("payment id", row.text("payment_id")?)?,
        kind: row.text("type")?,
        from_status: row.opt_text("from_status")?.map(status).transpose()?,
        to_status: row.opt_text("to_status")?.map(status).transpose()?,
        attempt_id: row
            .opt_text("attempt_id")?
            .map(|id| parse("attempt id", id))
            .transpose()?,
        data: serde_json::from_str(&data).map_err(|_| corrupt("event data", &data))?,
        created_at: timestamp("created_at", row.int("created_at")?)?,
    })
}

/// An `idempotency_keys` row.
pub(crate) fn idempotency(row: &impl RowExt) -> Result<IdempotencyRecord, StoreError> {
    let response = row
        .opt_text("response_body")?
        .map(|body| StoredResponse { body });
    let refund_id = row
        .opt_text("refund_id")?
        .map(|id| parse("refund id", id))
        .transpose()?;
    Ok(IdempotencyRecord {
        merchant_id: MerchantId::new(row.text("merchant_id")?),
        key: row.text("idempotency_key")?,
        fingerprint: row.text("fingerprint")?,
        payment_id: parse("payment id", row.text("payment_id")?)?,
        order_id: row.text("order_id")?,
        response,
        refund_id,
        created_at: timestamp("created_at", row.int("created_at")?)?,
    })
}

/// A `refunds` row.
pub(crate) fn refund(row: &impl RowExt) -> Result<crate::domain::Refund, StoreError> {
    let amount = row.int("amount")?;
    let currency = row.text("currency")?;
    let reason = row
        .opt_text("reason")?
        .map(|text| text.parse().map_err(|_| corrupt("refund reason", &text)))
        .transpose()?;
    let state = row.text("status")?;
    Ok(crate::domain::Refund {
        id: parse("refund id", row.text("id")?)?,
        object: crate::domain::RefundObject,
        payment_id: parse("payment id", row.text("payment_id")?)?,
        merchant_id: MerchantId::new(row.text("merchant_id")?),
        amount: Amount::new(amount).map_err(|_| corrupt("refund amount", amount))?,
        currency: Currency::parse(&currency).ok_or_else(|| corrupt("currency", &currency))?,
        reason,
        status: state
            .parse()
            .map_err(|_| corrupt("refund status", &state))?,
        failure_code: row.opt_text("failure_code")?,
        provider: row.text("provider")?,
        provider_refund_id: row.opt_text("provider_refund_id")?,
        raw_response: row.opt_text("raw_response")?,
        created_at: timestamp("created_at", row.int("created_at")?)?,
        updated_at: timestamp("updated_at", row.int("updated_at")?)?,
    })
}
