//! The seam between the shared SQL and a backend.
//!
//! A backend provides a read connection, a write path (how writes are made
//! durable: batched on SQLite, one short transaction each on PostgreSQL),
//! its migrations and its shutdown. Everything else the [`Store`] trait
//! asks for is written once, here, on top of that.

use super::migrate;
use super::ops::{WriteOp, WriteReply};
use super::sql::{idempotency, ledger, queries, reconcile, refunds, webhooks, Arg, Conn};
use super::{
    BeginOutcome, DiscrepancyFilter, Finding, FindingQuery, FinishRefund, IdempotencyRecord,
    LeaseClaim, LeaseHolder, MatchedRecord, NewPayment, NewRefund, PaymentFilter, PaymentRef,
    PaymentWrite, RefundBegin, RefundRef, StagedRecord, Store, StoreError, TopUp, TopUpOutcome,
    WebhookRecord,
};
use crate::domain::{
    Balance, Discrepancy, MerchantId, Payment, PaymentEvent, PaymentId, Posting, Refund, RefundId,
    RunReport, Timestamp,
};
use crate::telemetry;
use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::Database;

/// What a SQL backend contributes; [`Store`] is implemented for every one.
#[async_trait]
pub trait SqlBackend: Send + Sync + 'static {
    /// A connection for reads.
    type Read: Conn;
    async fn read(&self) -> Result<Self::Read, StoreError>;
    /// Applies `op` durably and atomically.
    async fn write(&self, op: WriteOp) -> Result<WriteReply, StoreError>;
    /// The migrations `ready` checks for.
    fn migrations(&self) -> &'static Migrator;
    /// Whether reads complete on the caller's thread without waiting on
    /// anything (so callers need not move them to the engine's runtime).
    fn reads_inline(&self) -> bool {
        false
    }
    /// Stages one page of a reconciliation run's provider records. By
    /// default in the database's own table, through [`Self::write`].
    async fn stage(&self, run_id: &str, records: Vec<StagedRecord>) -> Result<(), StoreError> {
        let op = WriteOp::StageRecords {
            run_id: run_id.to_string(),
            records,
        };
        self.write(op).await.map(|_| ())
    }
    /// Drops a run's staged records.
    async fn unstage(&self, run_id: &str) -> Result<(), StoreError> {
        let op = WriteOp::UnstageRecords {
            run_id: run_id.to_string(),
        };
        self.write(op).await.map(|_| ())
    }
    /// A connection that sees the staged records, for the run's checks.
    async fn staged(&self) -> Result<Self::Read, StoreError> {
        self.read().await
    }
    /// Waits until accepted writes are durable, then closes connections.
    async fn shutdown(&self);
    /// See [`Store::maintain`].
    async fn maintain(&self, _now: Timestamp) -> Result<(), StoreError> {
        Ok(())
    }
}

// A pooled connection runs statements as its connection does.
#[async_trait]
impl<DB> Conn for PoolConnection<DB>
where
    DB: Database,
    DB::Connection: Conn,
{
    type Row = <DB::Connection as Conn>::Row;

    async fn execute(&mut self, sql: &str, args: Vec<Arg>) -> Result<u64, StoreError> {
        (**self).execute(sql, args).await
    }

    async fn fetch_all(&mut self, sql: &str, args: Vec<Arg>) -> Result<Vec<Self::Row>, StoreError> {
        (**self).fetch_all(sql, args).await
    }

    async fn execute_script(&mut self, sql: &str) -> Result<(), StoreError> {
        (**self).execute_script(sql).await
    }
}

#[async_trait]
impl<B: SqlBackend> Store for B {
    async fn begin_payment(&self, new: NewPayment) -> Result<BeginOutcome, StoreError> {
        let status = new.payment.status;
        let provider = new.payment.provider.clone();
        let outcome = self.write(WriteOp::Begin(Box::new(new))).await?.begun()?;
        if matches!(outcome, BeginOutcome::Started) {
            telemetry::payment_status(status.as_str(), provider.as_deref());
        }
        Ok(outcome)
    }

    async fn save_payment(&self, write: PaymentWrite) -> Result<(), StoreError> {
        // Counted once durable, and only when the status moved: a write
        // that only adds an attempt is not a new status.
        let changed = (write.payment.status != write.expected_status)
            .then(|| (write.payment.status, write.payment.provider.clone()));
        self.write(WriteOp::Save(Box::new(write))).await?;
        if let Some((status, provider)) = changed {
            telemetry::payment_status(status.as_str(), provider.as_deref());
        }
        Ok(())
    }

    async fn idempotency_record(
        &self,
        merchant: &MerchantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        idempotency::record(&mut self.read().await?, merchant, key).await
    }

    async fn payment(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        queries::payment(&mut self.read().await?, merchant, id).await
    }

    async fn list_payments(
        &self,
        merchant: &MerchantId,
        filter: &PaymentFilter,
    ) -> Result<Vec<Payment>, StoreError> {
        queries::list_payments(&mut self.read().await?, merchant, filter).await
    }

    async fn payment_events(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Option<Vec<PaymentEvent>>, StoreError> {
        queries::payment_events(&mut self.read().await?, merchant, id).await
    }

    async fn stuck_payments(
        &self,
        now: Timestamp,
        pending_before: Timestamp,
        holder: &LeaseHolder,
        limit: u32,
    ) -> Result<Vec<PaymentRef>, StoreError> {
        let mut conn = self.read().await?;
        queries::stuck_payments(&mut conn, now, pending_before, holder, limit).await
    }

    async fn payment_ref(&self, id: PaymentId) -> Result<Option<PaymentRef>, StoreError> {
        queries::payment_ref(&mut self.read().await?, id).await
    }

    async fn payment_ref_by_reference(
        &self,
        provider: &str,
        reference: &str,
    ) -> Result<Option<PaymentRef>, StoreError> {
        queries::payment_ref_by_reference(&mut self.read().await?, provider, reference).await
    }

    async fn webhook_seen(&self, provider: &str, event_id: &str) -> Result<bool, StoreError> {
        webhooks::seen(&mut self.read().await?, provider, event_id).await
    }

    async fn record_webhook(&self, record: WebhookRecord) -> Result<bool, StoreError> {
        self.write(WriteOp::RecordWebhook(Box::new(record)))
            .await?
            .claimed()
    }

    async fn due_retries(&self, now: Timestamp, limit: u32) -> Result<Vec<PaymentRef>, StoreError> {
        queries::due_retries(&mut self.read().await?, now, limit).await
    }

    async fn claim_lease(&self, claim: LeaseClaim) -> Result<bool, StoreError> {
        self.write(WriteOp::ClaimLease(Box::new(claim)))
            .await?
            .claimed()
    }

    async fn renew_lease(&self, claim: LeaseClaim) -> Result<bool, StoreError> {
        self.write(WriteOp::RenewLease(Box::new(claim)))
            .await?
            .claimed()
    }

    async fn register_instance(
        &self,
        instance_id: &str,
        now: Timestamp,
    ) -> Result<i64, StoreError> {
        let op = WriteOp::RegisterInstance {
            instance_id: instance_id.to_string(),
            now,
        };
        let incarnation = self.write(op).await?.count()?;
        i64::try_from(incarnation).map_err(|_| StoreError::Corrupt("incarnation".into()))
    }

    async fn prune_idempotency(&self, before: Timestamp) -> Result<u64, StoreError> {
        self.write(WriteOp::Prune { before }).await?.count()
    }

    async fn begin_refund(&self, new: NewRefund) -> Result<RefundBegin, StoreError> {
        self.write(WriteOp::BeginRefund(Box::new(new)))
            .await?
            .refund_begun()
    }

    async fn finish_refund(&self, finish: FinishRefund) -> Result<(), StoreError> {
        self.write(WriteOp::FinishRefund(Box::new(finish)))
            .await
            .map(|_| ())
    }

    async fn refund_still_pending(
        &self,
        refund: Refund,
        body: Option<String>,
    ) -> Result<(), StoreError> {
        let op = WriteOp::RefundPending {
            refund: Box::new(refund),
            body,
        };
        self.write(op).await.map(|_| ())
    }

    async fn top_up(&self, top_up: TopUp) -> Result<TopUpOutcome, StoreError> {
        self.write(WriteOp::TopUp(Box::new(top_up)))
            .await?
            .topped_up()
    }

    async fn refund(
        &self,
        merchant: &MerchantId,
        id: RefundId,
    ) -> Result<Option<Refund>, StoreError> {
        refunds::refund(&mut self.read().await?, merchant, id).await
    }

    async fn refunds_of_payment(
        &self,
        merchant: &MerchantId,
        payment_id: PaymentId,
        starting_after: Option<RefundId>,
        limit: u32,
    ) -> Result<Vec<Refund>, StoreError> {
        let mut conn = self.read().await?;
        refunds::of_payment(&mut conn, merchant, payment_id, starting_after, limit).await
    }

    async fn pending_refunds(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> Result<Vec<RefundRef>, StoreError> {
        refunds::pending(&mut self.read().await?, before, limit).await
    }

    async fn ledger_balances(
        &self,
        filter: &ledger::BalanceFilter,
    ) -> Result<Vec<Balance>, StoreError> {
        ledger::balances(&mut self.read().await?, filter).await
    }

    async fn ledger_transactions(
        &self,
        filter: &ledger::TransactionFilter,
    ) -> Result<Vec<Posting>, StoreError> {
        ledger::transactions(&mut self.read().await?, filter).await
    }

    async fn stage_records(
        &self,
        run_id: &str,
        records: Vec<StagedRecord>,
    ) -> Result<(), StoreError> {
        self.stage(run_id, records).await
    }

    async fn unstage_records(&self, run_id: &str) -> Result<(), StoreError> {
        self.unstage(run_id).await
    }

    async fn payments_in_window(&self, from: Timestamp, to: Timestamp) -> Result<u64, StoreError> {
        reconcile::payments_in_window(&mut self.read().await?, from, to).await
    }

    async fn findings(&self, query: &FindingQuery) -> Result<Vec<Finding>, StoreError> {
        reconcile::findings(&mut self.staged().await?, query).await
    }

    async fn matched_records(
        &self,
        run_id: &str,
        after: &str,
        limit: u32,
    ) -> Result<Vec<MatchedRecord>, StoreError> {
        reconcile::matched(&mut self.staged().await?, run_id, after, limit).await
    }

    async fn record_findings(
        &self,
        run_id: &str,
        findings: Vec<(String, Finding)>,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let op = WriteOp::RecordFindings {
            run_id: run_id.to_string(),
            findings,
            now,
        };
        let new = self.write(op).await?.new_findings()?;
        for category in &new {
            telemetry::discrepancy(category.as_str());
        }
        Ok(new.len() as u64)
    }

    async fn save_run(&self, report: RunReport) -> Result<(), StoreError> {
        self.write(WriteOp::SaveRun(Box::new(report)))
            .await
            .map(|_| ())
    }

    async fn runs(
        &self,
        id: Option<&str>,
        starting_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RunReport>, StoreError> {
        reconcile::runs(&mut self.read().await?, id, starting_after, limit).await
    }

    async fn discrepancies(
        &self,
        filter: &DiscrepancyFilter,
    ) -> Result<Vec<Discrepancy>, StoreError> {
        reconcile::discrepancies(&mut self.read().await?, filter).await
    }

    async fn resolve_discrepancy(
        &self,
        id: &str,
        resolution: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let op = WriteOp::ResolveDiscrepancy {
            id: id.to_string(),
            resolution: resolution.to_string(),
            now,
        };
        self.write(op).await?.claimed()
    }

    async fn payment_posted(&self, payment_id: PaymentId) -> Result<bool, StoreError> {
        let postings = ledger::postings_for_payment(&mut self.read().await?, payment_id).await?;
        Ok(postings
            .iter()
            .any(|posting| posting.kind() == crate::domain::PostingKind::Payment))
    }

    async fn anomaly_flags(
        &self,
        filter: &super::AnomalyFilter,
    ) -> Result<Vec<crate::domain::AnomalyFlagRecord>, StoreError> {
        super::sql::anomaly::list(&mut self.read().await?, filter).await
    }

    async fn recent_payments(
        &self,
        since: Timestamp,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, crate::domain::PastPayment)>, StoreError> {
        let mut conn = self.read().await?;
        super::sql::anomaly::recent_payments(&mut conn, since, after.as_deref(), limit).await
    }

    async fn customer_counts(
        &self,
        query: &super::CountsQuery,
    ) -> Result<crate::domain::CustomerCounts, StoreError> {
        super::sql::anomaly::customer_counts(&mut self.read().await?, query).await
    }

    fn reads_inline(&self) -> bool {
        SqlBackend::reads_inline(self)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        if migrate::all_applied(&mut self.read().await?, self.migrations()).await? {
            Ok(())
        } else {
            Err(StoreError::Migration("migrations not applied".into()))
        }
    }

    async fn maintain(&self, now: Timestamp) -> Result<(), StoreError> {
        SqlBackend::maintain(self, now).await
    }

    async fn close(&self) {
        self.shutdown().await;
    }

    fn outbox(&self) -> &dyn super::outbox::OutboxStore {
        self
    }
}
