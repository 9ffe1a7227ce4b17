//! The OpenAPI schemas of the ledger, wallets, reconciliation, the
//! sandbox's books and inbound webhooks. Like [`super::schemas`], each
//! struct mirrors one JSON answer field by field and is never built.
#![allow(dead_code)]

use std::collections::BTreeMap;
use utoipa::ToSchema;

/// One account's totals in one currency.
#[derive(ToSchema)]
pub struct Balance {
    /// `kind:owner`, e.g. `merchant_revenue:default`, `customer_wallet:cus_1`.
    pub account: String,
    pub currency: String,
    pub debits: i64,
    pub credits: i64,
    /// Debits minus credits.
    pub balance: i64,
}

/// The merchant's account balances (always complete).
#[derive(ToSchema)]
pub struct BalanceList {
    pub data: Vec<Balance>,
    pub has_more: bool,
}

/// One side of a posting.
#[derive(ToSchema)]
pub struct Entry {
    pub account: String,
    /// `debit` or `credit`.
    pub direction: String,
    pub amount: i64,
    pub currency: String,
}

/// A balanced ledger posting.
#[derive(ToSchema)]
pub struct Transaction {
    /// `txn_…`
    pub id: String,
    pub payment_id: Option<String>,
    pub refund_id: Option<String>,
    /// `payment`, `refund` or `wallet_top_up`.
    pub kind: String,
    pub entries: Vec<Entry>,
    pub created_at: String,
}

/// A page of postings, newest first.
#[derive(ToSchema)]
pub struct TransactionList {
    pub data: Vec<Transaction>,
    pub has_more: bool,
}

/// A customer's stored value.
#[derive(ToSchema)]
pub struct Wallet {
    /// Always `wallet`.
    pub object: String,
    pub customer_id: String,
    /// Minor units by currency.
    pub balances: BTreeMap<String, i64>,
}

/// The body of `POST /v1/wallets/{customer_id}/top_ups`.
#[derive(ToSchema)]
pub struct TopUpCreate {
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: i64,
    #[schema(example = "usd", pattern = "^[A-Za-z]{3}$")]
    pub currency: String,
    /// Whose customer; required when the operator key belongs to no merchant.
    pub merchant: Option<String>,
}

/// A credit to a customer's wallet.
#[derive(ToSchema)]
pub struct TopUp {
    /// The ledger posting's id, `txn_…`.
    pub id: String,
    /// Always `wallet_top_up`.
    pub object: String,
    pub customer_id: String,
    pub amount: i64,
    pub currency: String,
    pub created_at: String,
}

/// The body of `POST /v1/reconciliation/runs`: a window of at most 93 days.
#[derive(ToSchema)]
pub struct RunCreate {
    /// RFC 3339.
    #[schema(format = DateTime)]
    pub from: String,
    /// RFC 3339, after `from`.
    #[schema(format = DateTime)]
    pub to: String,
}

/// A disagreement between the engine, the ledger and a provider.
#[derive(ToSchema)]
pub struct Discrepancy {
    /// `disc_…`
    pub id: String,
    /// Always `discrepancy`.
    pub object: String,
    pub run_id: String,
    /// `missing_internally`, `missing_at_provider`, `amount_mismatch`...
    pub category: String,
    /// `critical`, `high`, `medium` or `low`.
    pub severity: String,
    pub payment_id: Option<String>,
    pub provider: Option<String>,
    pub provider_reference: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
    /// `open` or `resolved`.
    pub status: String,
    pub resolution: Option<String>,
    pub created_at: String,
    pub resolved_at: Option<String>,
}

/// A page of discrepancies, newest first.
#[derive(ToSchema)]
pub struct DiscrepancyList {
    pub data: Vec<Discrepancy>,
    pub has_more: bool,
}

/// The body of `POST /v1/reconciliation/discrepancies/{id}/resolve`.
#[derive(ToSchema)]
pub struct Resolution {
    /// What was done about it, for the record.
    pub resolution: String,
}

/// A reconciliation run's report. Listed runs carry no discrepancies
/// (read them with the `run_id` filter).
#[derive(ToSchema)]
pub struct ReconciliationRun {
    /// `recon_…`
    pub id: String,
    /// Always `reconciliation_run`.
    pub object: String,
    pub from: String,
    pub to: String,
    pub checked: u64,
    pub matched: u64,
    pub mismatched: u64,
    /// Discrepancies found, by category.
    pub by_category: BTreeMap<String, u64>,
    pub discrepancies: Vec<Discrepancy>,
    pub duration_ms: u64,
    /// `manual` or `timer`.
    pub trigger: String,
    pub created_at: String,
}

/// A page of runs, newest first.
#[derive(ToSchema)]
pub struct ReconciliationRunList {
    pub data: Vec<ReconciliationRun>,
    pub has_more: bool,
}

/// What one event of a webhook did.
#[derive(ToSchema)]
pub struct ReceivedEvent {
    /// The provider's event id.
    pub id: String,
    /// `applied`, `no_effect`, `late`, `unmatched` or `duplicate`.
    pub result: String,
}

/// What one inbound webhook request did, event by event.
#[derive(ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    pub events: Vec<ReceivedEvent>,
}

/// A charge in the sandbox provider's own books.
#[derive(ToSchema)]
pub struct SandboxCharge {
    /// `ch_…`
    pub id: String,
    pub provider: String,
    pub idempotency_key: String,
    pub merchant_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    /// `succeeded`, `partially_refunded` or `refunded`.
    pub status: String,
    pub amount_refunded: i64,
    pub fee: i64,
    pub created_at: String,
}

/// A page of the sandbox's charges, newest first.
#[derive(ToSchema)]
pub struct SandboxChargeList {
    pub data: Vec<SandboxCharge>,
    pub has_more: bool,
}

/// The body of `POST /v1/sandbox/{provider}/charges`: a charge the engine
/// never asked for. Other fields are refused.
#[derive(ToSchema)]
pub struct SandboxChargeCreate {
    #[schema(min_length = 1, max_length = 255)]
    pub order_id: String,
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: i64,
    #[schema(example = "usd", pattern = "^[A-Za-z]{3}$")]
    pub currency: String,
    /// Default: the operator key's merchant, else `default`.
    pub merchant_id: Option<String>,
}

/// The body of `PATCH /v1/sandbox/{provider}/charges/{id}`: the fields to
/// overwrite. Other fields are refused.
#[derive(ToSchema)]
pub struct SandboxChargeUpdate {
    #[schema(minimum = 1, maximum = 99_999_999_999_i64)]
    pub amount: Option<i64>,
    #[schema(example = "usd", pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    /// `succeeded`, `partially_refunded` or `refunded`.
    pub status: Option<String>,
    #[schema(minimum = 0)]
    pub fee: Option<i64>,
}

/// What `DELETE /v1/sandbox/{provider}/charges/{id}` answers.
#[derive(ToSchema)]
pub struct DeletedCharge {
    pub id: String,
    /// Always `charge`.
    pub object: String,
    pub deleted: bool,
}

/// The sandbox's fault knobs.
#[derive(ToSchema)]
pub struct Faults {
    /// Added to every call.
    #[schema(minimum = 0)]
    pub latency_ms: u64,
    /// Share of calls that fail before charging, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub failure_rate: f64,
    /// Share of calls that time out after charging, 0 to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub timeout_rate: f64,
    /// Every call fails.
    pub outage: bool,
}

/// The body of `PUT /v1/sandbox/{provider}/faults`: the knobs to change;
/// the others keep their value.
#[derive(ToSchema)]
pub struct FaultsUpdate {
    #[schema(minimum = 0)]
    pub latency_ms: Option<u64>,
    #[schema(minimum = 0, maximum = 1)]
    pub failure_rate: Option<f64>,
    #[schema(minimum = 0, maximum = 1)]
    pub timeout_rate: Option<f64>,
    pub outage: Option<bool>,
}
