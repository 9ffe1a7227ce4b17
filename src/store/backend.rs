//! The seam between the shared SQL and a backend.
//!
//! A backend provides a read connection, a write path (how writes are made
//! durable: batched on SQLite, one short transaction each on PostgreSQL),
//! its migrations and its shutdown. Everything else the [`Store`] trait
//! asks for is written once, here, on top of that.

use super::migrate;
use super::ops::{WriteOp, WriteReply};
use super::sql::{idempotency, queries, Arg, Conn};
use super::{
    BeginOutcome, IdempotencyRecord, LeaseClaim, LeaseHolder, NewPayment, PaymentFilter,
    PaymentRef, PaymentWrite, Store, StoreError,
};
use crate::domain::{MerchantId, Payment, PaymentEvent, PaymentId, Timestamp};
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
    /// Waits until accepted writes are durable, then closes connections.
    async fn shutdown(&self);
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
        self.write(WriteOp::Begin(Box::new(new))).await?.begun()
    }

    async fn save_payment(&self, write: PaymentWrite) -> Result<(), StoreError> {
        self.write(WriteOp::Save(Box::new(write))).await.map(|_| ())
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

    async fn close(&self) {
        self.shutdown().await;
    }
}
