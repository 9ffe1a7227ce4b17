//! Durable state: the [`Store`] trait and its backends.
//!
//! The trait is shaped around the engine's units of atomicity, not around
//! tables: [`Store::begin_payment`] claims the idempotency key and the order
//! and creates the payment in one transaction; [`Store::save_payment`] writes
//! an attempt, a status change, its audit events and (when final) the stored
//! idempotent response in one transaction. A backend is therefore a second
//! file implementing two writes and a handful of reads, not a rewrite.
//!
//! Every write is answered only once it is durable. SQLite batches
//! concurrent writes into one transaction (group commit, DESIGN §12);
//! PostgreSQL runs each as a short transaction and relies on the server
//! merging concurrent commits' WAL flushes.
//!
//! # Layout
//!
//! The SQL is written once for both backends; a backend adds only how a
//! statement runs and how a write becomes durable.
//!
//! - `mod.rs` (here): the [`Store`] trait, its records and [`open`].
//! - `backend.rs`: [`SqlBackend`], the seam a backend implements, and the
//!   one [`Store`] implementation over it (reads go straight to
//!   `sql::queries`, writes become a [`WriteOp`]).
//! - `ops.rs`: [`WriteOp`], writes as values, and `apply`, which runs one
//!   inside the caller's transaction by calling into `sql`.
//! - `sql/`: every statement, by concern:
//!   - `sql/mod.rs`: the [`Conn`] trait (run a statement), [`Arg`] and the
//!     argument helpers;
//!   - `sql/payments.rs`: `begin` (claim the key, claim the order, insert
//!     the payment and its events) and `save` (the status-conditional
//!     update, attempts, events, then the stored answer and the order row);
//!   - `sql/idempotency.rs`: a key's record, its stored answer, pruning;
//!   - `sql/leases.rs`: taking the order lease over (recovery), and the
//!     order-row update that renews or releases it within a save;
//!   - `sql/queries.rs`: the reads, including the recovery and due-retry
//!     scans that answer with [`PaymentRef`]s;
//!   - `sql/ledger.rs` ([`ledger`]): posting a balanced transaction (wallet
//!     debits checked first, idempotent by unique indexes) and reading
//!     balances (now, or `as_of`) and postings.
//! - `rows.rs`: decoding rows into domain records ([`RowExt`]).
//! - `migrate.rs`: applying and checking the embedded migrations.
//! - `sqlite.rs`, `postgres.rs`: the two backends.

mod backend;
mod migrate;
mod ops;
pub mod outbox;
mod postgres;
mod rows;
mod sql;
mod sqlite;

pub use backend::SqlBackend;
pub use migrate::MIGRATIONS_TABLE;
pub use ops::{WriteOp, WriteReply};
pub use postgres::{valid_schema_name, PostgresStore};
pub use rows::RowExt;
pub use sql::anomaly::{outcome as anomaly_outcome, AnomalyFilter, CountsQuery};
pub use sql::{ledger, Arg, Conn};
pub use sqlite::{sqlite_path, SqliteStore};

use crate::domain::{
    Attempt, MerchantId, Payment, PaymentEvent, PaymentId, PaymentStatus, Timestamp,
};
use async_trait::async_trait;
use std::sync::Arc;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(String),
    /// The write queue is full: the write that would start new work is
    /// refused (the request is shed) rather than queued without bound.
    #[error("the store's write queue is full")]
    Overloaded,
    #[error("migration error: {0}")]
    Migration(String),
    /// A row holds a value the engine never writes; someone edited it by hand
    /// or a migration is missing.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// An optimistic check failed: the payment changed under us (another
    /// instance, or a stale actor). The write was not applied.
    #[error("conflicting update of payment {0}")]
    Conflict(PaymentId),
    /// The writer no longer holds the order's lease (it expired and another
    /// instance took it over). The write was not applied; the writer must
    /// abandon the payment to the new holder.
    #[error("the lease of payment {0}'s order is held by another instance")]
    LeaseLost(PaymentId),
    /// A write was refused after it had changed something: its transaction
    /// must be rolled back, after which the inner error is the answer
    /// ([`StoreError::unwound`]). Writers that batch writes without
    /// savepoints roll the batch back and run its writes one by one.
    #[error("{0} (after a partial write)")]
    Partial(Box<StoreError>),
    /// A ledger posting would take a customer's wallet below zero; nothing
    /// was written.
    #[error("the wallet {0} holds too little")]
    InsufficientFunds(String),
    /// The writer task is gone (shutdown in progress).
    #[error("the store is shut down")]
    Closed,
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    /// The database server could not be reached at all (the message names
    /// where it was looked for).
    #[error("{0}")]
    Unreachable(String),
    /// The transaction holding this write was not committed.
    #[error("write not committed: {0}")]
    NotCommitted(String),
}

impl StoreError {
    /// The answer once the transaction of a [`StoreError::Partial`] write
    /// was rolled back.
    pub fn unwound(self) -> StoreError {
        match self {
            StoreError::Partial(inner) => *inner,
            other => other,
        }
    }
}

/// What an idempotency key maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct IdempotencyRecord {
    pub merchant_id: MerchantId,
    pub key: String,
    /// SHA-256 of the canonical request; a different request under the same
    /// key is refused with `idempotency_key_reused`.
    pub fingerprint: String,
    pub payment_id: PaymentId,
    pub order_id: String,
    /// `None` while the first request is still running.
    pub response: Option<StoredResponse>,
    /// Set when the key created a refund (of `payment_id`), not a payment.
    pub refund_id: Option<crate::domain::RefundId>,
    pub created_at: Timestamp,
}

/// The exact body answered the first time, replayed verbatim.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub body: String,
}

/// Who holds an order's lease: an instance and its incarnation (DESIGN §5).
///
/// Every write of a payment checks that its writer still holds the order's
/// lease, so a process that lost it (frozen past its expiry, then resumed)
/// can never overwrite what the new holder decided. The incarnation grows at
/// every boot of an instance, so a booting instance knows its earlier
/// incarnations' leases are dead and recovers their payments at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LeaseHolder {
    pub instance_id: String,
    pub incarnation: i64,
}

/// Everything written when a payment is created.
#[derive(Debug, Clone)]
pub struct NewPayment {
    /// The payment in its initial status, without attempts.
    pub payment: Payment,
    pub idempotency_key: String,
    pub fingerprint: String,
    /// The instance working on the order and until when (the order lease).
    pub holder: LeaseHolder,
    pub lease_expires_at: Timestamp,
    pub events: Vec<PaymentEvent>,
    /// The anomaly rules that fired for it, stored with it.
    pub flags: Vec<crate::domain::Flag>,
}

/// The result of [`Store::begin_payment`].
#[derive(Debug, Clone, PartialEq)]
pub enum BeginOutcome {
    /// Key claimed, order claimed, payment written.
    Started,
    /// The key was already taken; nothing was written.
    KeyExists(IdempotencyRecord),
    /// The order already has a payment that blocks a new one; nothing was written.
    OrderBusy {
        payment_id: PaymentId,
        status: PaymentStatus,
    },
}

/// What happens to the order lease in a [`PaymentWrite`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LeaseChange {
    /// Extend it: the work goes on.
    Renew { expires_at: Timestamp },
    /// Give it up: the payment reached a resting status.
    Release,
}

/// One atomic change to a payment (DESIGN §4: the status change, the data it
/// changes and its audit entry are written in one transaction).
#[derive(Debug, Clone)]
pub struct PaymentWrite {
    /// The payment as it is after the change; its row is updated to match.
    pub payment: Payment,
    /// The status the row must still have, or the write is refused with
    /// [`StoreError::Conflict`]: a lost race can never overwrite a newer state.
    pub expected_status: PaymentStatus,
    /// Attempts inserted or updated by this change.
    pub attempts: Vec<Attempt>,
    pub events: Vec<PaymentEvent>,
    /// Set when the request that created the payment has its final answer;
    /// stored under the payment's idempotency key unless one is stored already.
    pub response: Option<StoredResponse>,
    pub lease: LeaseChange,
    /// The writer: the write is refused with [`StoreError::LeaseLost`]
    /// unless it still holds the order's lease.
    pub holder: LeaseHolder,
    /// The ledger posting the change causes (a payment's success), written
    /// in the same transaction (DESIGN §13.7). A wallet posting that would
    /// take the wallet below zero refuses the whole write with
    /// [`StoreError::InsufficientFunds`], having changed nothing.
    pub posting: Option<crate::domain::Posting>,
}

/// Everything written when a refund is asked for.
#[derive(Debug, Clone)]
pub struct NewRefund {
    /// The refund, `pending`.
    pub refund: crate::domain::Refund,
    pub idempotency_key: String,
    pub fingerprint: String,
    /// The refunded payment's order (the key's record names it).
    pub order_id: String,
    pub events: Vec<PaymentEvent>,
}

/// The result of [`Store::begin_refund`]; only `Started` wrote anything.
#[derive(Debug, Clone, PartialEq)]
pub enum RefundBegin {
    Started,
    /// The key was used before.
    KeyExists(IdempotencyRecord),
    /// The refunds would exceed what was captured: at most `available`
    /// remains to refund.
    TooLarge {
        available: i64,
    },
    /// The payment is not one that can be refunded.
    NotRefundable {
        status: PaymentStatus,
    },
}

/// A refund's settlement.
#[derive(Debug, Clone)]
pub struct FinishRefund {
    /// The refund as settled: `succeeded` or `failed`.
    pub refund: crate::domain::Refund,
    /// The reversal in the ledger (on success).
    pub posting: Option<crate::domain::Posting>,
    pub events: Vec<PaymentEvent>,
    /// The answer stored under the refund's idempotency key, if the request
    /// that created it has not got one yet.
    pub response_body: Option<String>,
}

/// A pending refund, named by its payment's order, for the reconciler.
#[derive(Debug, Clone, PartialEq)]
pub struct RefundRef {
    pub refund_id: crate::domain::RefundId,
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub order_id: String,
}

/// A wallet top-up: its posting, written once per (merchant, key).
#[derive(Debug, Clone)]
pub struct TopUp {
    pub merchant_id: MerchantId,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub posting: crate::domain::Posting,
    /// The answer, stored with the key and replayed verbatim.
    pub response_body: String,
}

/// The result of [`Store::top_up`].
#[derive(Debug, Clone, PartialEq)]
pub enum TopUpOutcome {
    Posted,
    /// The key was used before: its fingerprint and stored answer.
    KeyExists {
        fingerprint: String,
        body: String,
    },
}

/// One provider record staged for a reconciliation run.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedRecord {
    pub provider: String,
    /// The provider's reference for the charge (or refund).
    pub reference: String,
    /// `charge` or `refund`.
    pub kind: String,
    /// The engine's payment, when the record names it by idempotency key.
    pub payment_id: Option<PaymentId>,
    pub merchant_id: Option<String>,
    pub order_id: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub fee: i64,
    pub status: String,
    pub amount_refunded: i64,
    pub created_at: Timestamp,
}

/// A staged charge that names one of the engine's payments, beside what
/// the engine holds for that payment.
#[derive(Debug, Clone, PartialEq)]
pub struct MatchedRecord {
    pub record: StagedRecord,
    pub merchant_id: MerchantId,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    pub amount_refunded: i64,
    /// The provider fee the ledger booked for the payment.
    pub booked_fee: i64,
}

/// A check a reconciliation run makes in the database, a page at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    MissingInternally,
    MissingAtProvider,
    DuplicateCharge,
    LedgerMissing,
    FailedButPosted,
    Unbalanced,
    StuckPending,
    StuckProcessing,
}

impl Check {
    pub const ALL: [Check; 8] = [
        Check::MissingInternally,
        Check::MissingAtProvider,
        Check::DuplicateCharge,
        Check::LedgerMissing,
        Check::FailedButPosted,
        Check::Unbalanced,
        Check::StuckPending,
        Check::StuckProcessing,
    ];

    pub fn category(self) -> crate::domain::Category {
        use crate::domain::Category;
        match self {
            Check::MissingInternally => Category::MissingInternally,
            Check::MissingAtProvider => Category::MissingAtProvider,
            Check::DuplicateCharge => Category::DuplicateCharge,
            Check::LedgerMissing => Category::LedgerMissing,
            Check::FailedButPosted => Category::FailedButPosted,
            Check::Unbalanced => Category::Unbalanced,
            Check::StuckPending => Category::StuckPending,
            Check::StuckProcessing => Category::StuckProcessing,
        }
    }
}

/// One page of one check's findings.
#[derive(Debug, Clone)]
pub struct FindingQuery {
    pub run_id: String,
    pub check: Check,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Providers whose records the run read (a payment at another provider
    /// cannot be missing there).
    pub providers: Vec<String>,
    pub pending_before: Timestamp,
    pub processing_before: Timestamp,
    /// Only findings whose subject sorts after this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// Something a run found, before it is recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub category: crate::domain::Category,
    /// What it is about; with the category, the key of "the same finding".
    pub subject: String,
    pub merchant_id: Option<MerchantId>,
    pub payment_id: Option<PaymentId>,
    pub provider: Option<String>,
    pub provider_reference: Option<String>,
    pub expected: Option<String>,
    pub actual: Option<String>,
}

/// Filters of `GET /v1/reconciliation/discrepancies`.
#[derive(Debug, Clone, Default)]
pub struct DiscrepancyFilter {
    pub id: Option<String>,
    /// Only this merchant's (a merchant sees its own).
    pub merchant_id: Option<MerchantId>,
    pub status: Option<crate::domain::DiscrepancyStatus>,
    pub category: Option<crate::domain::Category>,
    pub payment_id: Option<PaymentId>,
    pub run_id: Option<String>,
    pub starting_after: Option<String>,
    pub limit: u32,
}

/// An order lease asked for by `holder`, until `expires_at`.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseClaim {
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub payment_id: PaymentId,
    pub holder: LeaseHolder,
    pub now: Timestamp,
    pub expires_at: Timestamp,
}

/// Filters of `GET /v1/payments`.
#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub customer_id: Option<String>,
    pub order_id: Option<String>,
    pub status: Option<PaymentStatus>,
    pub created_gte: Option<Timestamp>,
    pub created_lt: Option<Timestamp>,
    /// Return payments older than this one (ids sort by creation time).
    pub starting_after: Option<PaymentId>,
    pub limit: u32,
}

/// A payment named by its order, for work to be sent to its payment actor.
///
/// The recovery and due-retry scans answer with these rather than whole
/// payments: the actor that does the work is addressed by (merchant, order)
/// and reads the payment itself, under its own serialization, so the scan
/// needs only the address and the status that selected the row.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRef {
    pub payment_id: PaymentId,
    pub merchant_id: MerchantId,
    pub order_id: String,
    pub status: PaymentStatus,
}

/// The receipt of one inbound provider event: what deduplicates its
/// redeliveries, and what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookReceipt {
    pub provider: String,
    /// The provider's id of the event.
    pub event_id: String,
    /// What the event reported (the engine's reading, e.g. `charge_failed`).
    pub kind: String,
    pub payment_id: Option<PaymentId>,
    pub refund_id: Option<crate::domain::RefundId>,
    pub result: crate::domain::WebhookResult,
    pub received_at: Timestamp,
}

/// A webhook receipt with what is written only if it is the first: audit
/// events of the payment (of `merchant_id`) and a discrepancy.
#[derive(Debug, Clone)]
pub struct WebhookRecord {
    pub receipt: WebhookReceipt,
    pub merchant_id: Option<MerchantId>,
    pub events: Vec<PaymentEvent>,
    /// With its new id (`disc_…`).
    pub finding: Option<(String, Finding)>,
}

/// The engine's durable state. Implementations must make every method's
/// writes atomic and durable before returning `Ok`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Claims `(merchant, key)` and the order, and writes the new payment.
    async fn begin_payment(&self, new: NewPayment) -> Result<BeginOutcome, StoreError>;

    /// Applies one atomic change to an existing payment.
    async fn save_payment(&self, write: PaymentWrite) -> Result<(), StoreError>;

    async fn idempotency_record(
        &self,
        merchant: &MerchantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// The payment with its attempts, if it exists and belongs to `merchant`.
    async fn payment(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError>;

    /// Newest first, at most `filter.limit` payments.
    async fn list_payments(
        &self,
        merchant: &MerchantId,
        filter: &PaymentFilter,
    ) -> Result<Vec<Payment>, StoreError>;

    /// The audit trail, oldest first; `None` if the payment is not the merchant's.
    async fn payment_events(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Option<Vec<PaymentEvent>>, StoreError>;

    /// Payments left `processing` or `pending` without a live lease (none,
    /// expired, or held by an earlier incarnation of `holder`'s instance),
    /// `pending` ones only once untouched since `pending_before`; at most
    /// `limit`, oldest first.
    async fn stuck_payments(
        &self,
        now: Timestamp,
        pending_before: Timestamp,
        holder: &LeaseHolder,
        limit: u32,
    ) -> Result<Vec<PaymentRef>, StoreError>;

    /// `retry_scheduled` payments due at `now`, at most `limit`.
    async fn due_retries(&self, now: Timestamp, limit: u32) -> Result<Vec<PaymentRef>, StoreError>;

    /// Takes the order lease for `claim.holder` unless another holder has a
    /// live one (an earlier incarnation of the same instance is dead, whatever
    /// its expiry); true if taken.
    async fn claim_lease(&self, claim: LeaseClaim) -> Result<bool, StoreError>;

    /// Extends the lease only if `claim.holder` still holds it; false if it
    /// lost it (a renewal by anyone else fails).
    async fn renew_lease(&self, claim: LeaseClaim) -> Result<bool, StoreError>;

    /// Records a boot of `instance_id` and returns its new incarnation
    /// (1 on the first boot, one more at each later one).
    async fn register_instance(&self, instance_id: &str, now: Timestamp)
        -> Result<i64, StoreError>;

    /// Deletes answered idempotency records created before `before`.
    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64, StoreError>;

    /// Claims the key, reserves the refund's amount and writes it `pending`.
    async fn begin_refund(&self, new: NewRefund) -> Result<RefundBegin, StoreError>;

    /// Settles a pending refund (see [`FinishRefund`]).
    async fn finish_refund(&self, finish: FinishRefund) -> Result<(), StoreError>;

    /// Records an ask that left `refund` pending (its `updated_at`, what
    /// the provider said), storing `body` as its key's first answer.
    async fn refund_still_pending(
        &self,
        refund: crate::domain::Refund,
        body: Option<String>,
    ) -> Result<(), StoreError>;

    /// Posts a wallet top-up once per (merchant, key).
    async fn top_up(&self, top_up: TopUp) -> Result<TopUpOutcome, StoreError>;

    /// The merchant's refund `id`.
    async fn refund(
        &self,
        merchant: &MerchantId,
        id: crate::domain::RefundId,
    ) -> Result<Option<crate::domain::Refund>, StoreError>;

    /// The payment's refunds, oldest first, after `starting_after`.
    async fn refunds_of_payment(
        &self,
        merchant: &MerchantId,
        payment_id: PaymentId,
        starting_after: Option<crate::domain::RefundId>,
        limit: u32,
    ) -> Result<Vec<crate::domain::Refund>, StoreError>;

    /// Refunds still `pending` and untouched since `before`, oldest first.
    async fn pending_refunds(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<RefundRef>, StoreError>;

    /// Ledger balances (see [`ledger::BalanceFilter`]).
    async fn ledger_balances(
        &self,
        filter: &ledger::BalanceFilter,
    ) -> Result<Vec<crate::domain::Balance>, StoreError>;

    /// Ledger postings, newest first (see [`ledger::TransactionFilter`]).
    async fn ledger_transactions(
        &self,
        filter: &ledger::TransactionFilter,
    ) -> Result<Vec<crate::domain::Posting>, StoreError>;

    /// Whether the payment has its ledger posting (a wallet payment's
    /// charge is that posting).
    async fn payment_posted(&self, payment_id: PaymentId) -> Result<bool, StoreError>;

    /// Stages a page of provider records for reconciliation run `run_id`.
    async fn stage_records(
        &self,
        run_id: &str,
        records: Vec<StagedRecord>,
    ) -> Result<(), StoreError>;

    /// Drops a run's staged records.
    async fn unstage_records(&self, run_id: &str) -> Result<(), StoreError>;

    /// The engine's payments created in `[from, to)`.
    async fn payments_in_window(&self, from: Timestamp, to: Timestamp) -> Result<u64, StoreError>;

    /// One page of a check's findings.
    async fn findings(&self, query: &FindingQuery) -> Result<Vec<Finding>, StoreError>;

    /// One page of a run's records that name a payment, after `after`.
    async fn matched_records(
        &self,
        run_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<MatchedRecord>, StoreError>;

    /// Records findings of `run_id` (each with its new id) unless already
    /// known; returns how many were new.
    async fn record_findings(
        &self,
        run_id: &str,
        findings: Vec<(String, Finding)>,
        now: Timestamp,
    ) -> Result<u64, StoreError>;

    /// Stores a finished run's report.
    async fn save_run(&self, report: crate::domain::RunReport) -> Result<(), StoreError>;

    /// Runs, newest first (or the one named `id`).
    async fn runs(
        &self,
        id: Option<&str>,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<crate::domain::RunReport>, StoreError>;

    /// Discrepancies, newest first, narrowed by `filter`.
    async fn discrepancies(
        &self,
        filter: &DiscrepancyFilter,
    ) -> Result<Vec<crate::domain::Discrepancy>, StoreError>;

    /// Resolves open discrepancy `id`; false if there is no such open one.
    async fn resolve_discrepancy(
        &self,
        id: &str,
        resolution: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The payment `id`'s address, whoever's it is.
    async fn payment_ref(&self, id: PaymentId) -> Result<Option<PaymentRef>, StoreError>;

    /// The payment `provider` knows as `reference`.
    async fn payment_ref_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<PaymentRef>, StoreError>;

    /// Whether `provider`'s event `event_id` was received before.
    async fn webhook_seen(&self, provider: &str, event_id: &str) -> Result<bool, StoreError>;

    /// Stores a webhook's receipt, and its events and finding if the
    /// receipt is new; true if it was.
    async fn record_webhook(&self, record: WebhookRecord) -> Result<bool, StoreError>;

    /// Anomaly flags, newest first, narrowed by `filter`.
    async fn anomaly_flags(
        &self,
        filter: &AnomalyFilter,
    ) -> Result<Vec<crate::domain::AnomalyFlagRecord>, StoreError>;

    /// Payments created since `since`, oldest first, after payment id
    /// `after` (the anomaly windows' warm-up, a page at a time).
    async fn recent_payments(
        &self,
        since: Timestamp,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, crate::domain::PastPayment)>, StoreError>;

    /// A customer's anomaly counts over every instance's payments
    /// (`[anomaly] scope = "cluster"`).
    async fn customer_counts(
        &self,
        query: &CountsQuery,
    ) -> Result<crate::domain::CustomerCounts, StoreError>;

    /// Database reachable and every migration applied.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Housekeeping that keeps the store fast as it grows, due at `now`:
    /// on PostgreSQL, the append-only tables' month partitions created
    /// ahead; nothing on SQLite. Cheap when nothing is due.
    async fn maintain(&self, now: Timestamp) -> Result<(), StoreError>;

    /// Whether reads complete on the caller's thread (SQLite): then they
    /// may run on any runtime. PostgreSQL's pooled connections belong to
    /// the engine's runtime, so reads are sent there.
    fn reads_inline(&self) -> bool;

    /// Waits until every accepted write is durable, then closes connections.
    async fn close(&self);

    /// The outbox: outgoing events and their deliveries (DESIGN §11).
    fn outbox(&self) -> &dyn outbox::OutboxStore;
}

/// Opens the store named by `url` and applies its migrations. `schema` is
/// the PostgreSQL schema holding the engine's tables (ignored by SQLite,
/// whose file is the engine's own).
pub async fn open(url: &str, schema: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresStore::open(url, schema).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// Whether an error is worth retrying the same operation for: the database
/// aborted it to break a deadlock or a serialization conflict, or the
/// connection dropped before anything was committed.
pub(crate) fn is_transient(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40001" | "40P01"))
        }
        StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
        _ => false,
    }
}
