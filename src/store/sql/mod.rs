//! The engine's SQL, written once for every backend.
//!
//! Both schemas use only text and 64-bit integer columns and both drivers
//! accept `$N` placeholders, so each statement and each decision (claim the
//! key, check the order, renew the lease) lives here exactly once. A
//! backend contributes a [`Conn`] (how to run a statement) and its
//! transaction handling (group commit for SQLite, PostgreSQL's own for
//! PostgreSQL), nothing else.
//!
//! The statements are grouped by the concern they serve, so a change to one
//! (say, the write path) is read and reviewed without the others:
//!
//! - [`payments`]: the two payment writes, `begin` and `save`;
//! - [`idempotency`]: the idempotency key's record, stored answer and pruning;
//! - [`leases`]: the order row's lease, claimed alone or moved with a save;
//! - [`queries`]: every read (payments, events, the recovery scans);
//! - [`ledger`]: posting to the ledger and reading balances and postings;
//! - [`webhooks`]: receipts of inbound provider events;
//! - [`anomaly`]: anomaly flags and the payment reads of the anomaly rules.
//!
//! None of these opens or commits a transaction: the caller owns it, so a
//! write that spans modules (a save touches all but `queries`) stays atomic.

pub(crate) mod anomaly;
pub(crate) mod idempotency;
pub(crate) mod leases;
// Public (re-exported as `store::ledger`): the functions are generic over
// the public `Conn`, so tests and the write path run them inside a
// transaction they own, on a raw connection or the store's.
pub mod ledger;
pub(crate) mod outbox;
pub(crate) mod payments;
pub(crate) mod queries;
pub(crate) mod reconcile;
pub(crate) mod refunds;
pub(crate) mod wallets;
pub(crate) mod webhooks;

use super::rows::RowExt;
use super::StoreError;
use async_trait::async_trait;
use std::fmt::Write;

/// A value bound to a placeholder.
///
/// Two kinds suffice because both schemas store only text and 64-bit
/// integers; `None` binds SQL `NULL`.
#[derive(Debug, Clone)]
pub enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

fn text(value: impl Into<String>) -> Arg {
    Arg::Text(Some(value.into()))
}

fn opt_text(value: &Option<String>) -> Arg {
    Arg::Text(value.clone())
}

fn int(value: i64) -> Arg {
    Arg::Int(Some(value))
}

fn opt_int(value: Option<i64>) -> Arg {
    Arg::Int(value)
}

/// How a backend runs one statement.
#[async_trait]
pub trait Conn: Send {
    type Row: RowExt + Send + Sync;
    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError>;
    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, StoreError>;

    /// Runs a multi-statement script (a migration) without arguments.
    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError>;

    async fn fetch_optional(
        &mut self,
        sql: &str,
        args: Vec<Arg>,
    ) -> Result<Option<Self::Row>, StoreError> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }
}

/// `$first, $first+1, …` for `count` values, for `IN (…)` lists.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    let mut list = String::new();
    for i in 0..count {
        let _ = write!(list, "{}${}", if i == 0 { "" } else { ", " }, first + i);
    }
    list
}

fn json(value: &impl serde::Serialize) -> String {
    // Maps and vectors of strings always serialize.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}
