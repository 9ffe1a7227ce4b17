//! The sandbox's settlement records: its record's charges, a page at a time.
//!
//! One line per charge created in `[from, to)`, oldest first by
//! `(created_at, id)`, at most [`SETTLEMENT_PAGE_CHARGES`] a page; the
//! cursor is the last charge's id. Each line holds everything the record
//! knows, so the sandbox can be compared with the engine on every field
//! reconciliation checks (DESIGN §9):
//!
//! | field | from the record |
//! |---|---|
//! | `provider_payment_id` | the charge id the engine was answered with |
//! | `status` | `succeeded`, `partially_refunded`, `refunded` |
//! | `amount`, `currency` | as charged (or as a hook set them) |
//! | `fee` | from the sandbox's configured fees when charged |
//! | `amount_refunded` | the total of its refunds |
//! | `idempotency_key`, `merchant_id`, `order_id` | as the engine sent them (a hook's charge: a key naming no payment) |
//!
//! Refunds are not lines of their own: they are in `amount_refunded` and
//! `status`.

use super::SandboxProvider;
use crate::domain::Timestamp;
use crate::providers::{ProviderError, SettlementPage, SettlementRecord};
use sqlx::{QueryBuilder, Sqlite};

/// Most charges one settlement page holds.
pub const SETTLEMENT_PAGE_CHARGES: usize = 500;

impl SandboxProvider {
    /// One page of settlement records (see the module documentation).
    ///
    /// A cursor naming no charge of this provider is refused rather than
    /// answered with an empty last page, which would silently end a
    /// reconciliation's walk early (a hook may have deleted that charge).
    pub(super) async fn settlement_page(
        &self,
        from: Timestamp,
        to: Timestamp,
        cursor: Option<String>,
    ) -> Result<SettlementPage, ProviderError> {
        // The cursor's position, read first: a row-value comparison
        // against a subquery would scan the window from its start on every
        // page (quadratic in the window). The range's start is one bound,
        // the later of the window's start and the cursor's time: given two
        // lower bounds as parameters, SQLite starts the index range at one
        // of them and filters by the other, and it took the window's start
        // (156 ms a page at 500,000 charges against 2 ms, measured).
        let after = match cursor.as_deref() {
            Some(after) => match self.record.find_by_id(&self.name, after).await? {
                Some(charge) => Some((charge.created_at, charge.id)),
                None => {
                    return Err(ProviderError::Refused(format!(
                        "sandbox {}: settlement cursor {after:?} names none of its charges",
                        self.name
                    )))
                }
            },
            None => None,
        };
        let from = from.to_string();
        let start = match &after {
            Some((created_at, _)) if *created_at > from => created_at.clone(),
            _ => from,
        };
        let mut query =
            QueryBuilder::<Sqlite>::new("SELECT * FROM sandbox_charges WHERE provider = ");
        query
            .push_bind(self.name.clone())
            .push(" AND created_at >= ")
            .push_bind(start)
            .push(" AND created_at < ")
            .push_bind(to.to_string());
        if let Some((created_at, id)) = after {
            query
                .push(" AND (created_at > ")
                .push_bind(created_at)
                .push(" OR id > ")
                .push_bind(id)
                .push(")");
        }
        // One extra row says whether another page follows.
        let limit = i64::try_from(SETTLEMENT_PAGE_CHARGES + 1).unwrap_or(i64::MAX);
        query
            .push(" ORDER BY created_at, id LIMIT ")
            .push_bind(limit);
        let rows = query.build().fetch_all(&self.record.pool).await?;
        let mut records = rows
            .iter()
            .map(|row| {
                let charge = super::record::decode(row)?;
                let created_at = Timestamp::parse_rfc3339(&charge.created_at).ok_or_else(|| {
                    ProviderError::Malformed(format!("charge {} has no valid time", charge.id))
                })?;
                Ok(SettlementRecord {
                    provider_payment_id: charge.id,
                    kind: "charge".into(),
                    amount: charge.amount,
                    currency: charge.currency,
                    fee: charge.fee,
                    status: charge.status,
                    created_at,
                    idempotency_key: Some(charge.idempotency_key),
                    merchant_id: Some(charge.merchant_id),
                    order_id: Some(charge.order_id),
                    amount_refunded: charge.amount_refunded,
                })
            })
            .collect::<Result<Vec<_>, ProviderError>>()?;
        let next = if records.len() > SETTLEMENT_PAGE_CHARGES {
            records.truncate(SETTLEMENT_PAGE_CHARGES);
            records.last().map(|last| last.provider_payment_id.clone())
        } else {
            None
        };
        Ok(SettlementPage { records, next })
    }
}
