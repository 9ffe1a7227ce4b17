//! The SQLite backend: the embedded, zero-setup default.
//!
//! Durability: WAL with `synchronous=FULL`, so a committed transaction
//! survives power loss. Concurrency: SQLite allows one writer at a time, so
//! every write goes through a single writer task that owns the only writing
//! connection; nothing ever waits on `SQLITE_BUSY`. The writer drains its
//! queue into one `BEGIN IMMEDIATE` transaction (group commit), runs each
//! operation under its own savepoint so one failed operation does not undo
//! the others, and replies to each caller only after `COMMIT` returned.
//! Reads use a separate pool of read-only connections, which WAL lets run
//! beside the writer.

use super::migrate;
use super::rows::{self, RowExt};
use super::{
    BeginOutcome, IdempotencyRecord, LeaseChange, NewPayment, PaymentFilter, PaymentWrite, Store,
    StoreError,
};
use crate::domain::{Attempt, MerchantId, Payment, PaymentEvent, PaymentId};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Sqlite};
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Writes waiting for the writer. A full queue makes callers wait (back
/// pressure) rather than grow memory without bound.
const WRITE_QUEUE_CAPACITY: usize = 4096;
/// Most operations committed in one transaction. Bounds the latency a single
/// batch adds and the work lost to one failed `COMMIT`.
const MAX_WRITE_BATCH: usize = 256;
/// Read-only connections for GETs and pre-checks.
const READ_POOL_SIZE: u32 = 8;
/// How long a connection waits for a lock held by another process (a second
/// engine on the same file, or an operator's sqlite3 shell).
const BUSY_TIMEOUT_MS: u64 = 10_000;

/// One write the writer task performs, and where its answer goes.
struct WriteJob {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteReply, StoreError>>,
}

enum WriteOp {
    Begin(Box<NewPayment>),
    Save(Box<PaymentWrite>),
    /// Does nothing; answered once everything queued before it is durable.
    Barrier,
}

enum WriteReply {
    Begun(BeginOutcome),
    Done,
}

/// [`Store`] on a SQLite file.
pub struct SqliteStore {
    reads: SqlitePool,
    writer: mpsc::Sender<WriteJob>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url`, e.g.
    /// `sqlite://data/payments.db`, and applies the migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
            .foreign_keys(true);
        if let Some(parent) = options.get_filename().parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Migration(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        let mut writer_conn = SqliteConnection::connect_with(&options).await?;
        migrate::run_sqlite(&mut writer_conn).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(READ_POOL_SIZE)
            .connect_with(options.read_only(true))
            .await?;
        let (writer, queue) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        tokio::spawn(writer_loop(writer_conn, queue));
        Ok(SqliteStore { reads, writer })
    }

    async fn submit(&self, op: WriteOp) -> Result<WriteReply, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(WriteJob { op, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn attach_attempts(&self, payments: &mut [Payment]) -> Result<(), StoreError> {
        if payments.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM attempts WHERE payment_id IN (");
        let mut ids = query.separated(", ");
        for payment in payments.iter() {
            ids.push_bind(payment.id.to_string());
        }
        query.push(") ORDER BY payment_id, number");
        let rows: Vec<SqliteRow> = query.build().fetch_all(&self.reads).await?;
        for row in &rows {
            let payment_id: PaymentId = row
                .text("payment_id")?
                .parse()
                .map_err(|_| StoreError::Corrupt("attempt payment_id".into()))?;
            let attempt = rows::attempt(row)?;
            if let Some(payment) = payments.iter_mut().find(|p| p.id == payment_id) {
                payment.attempts.push(attempt);
            }
        }
        Ok(())
    }
}

async fn writer_loop(mut conn: SqliteConnection, mut queue: mpsc::Receiver<WriteJob>) {
    let mut batch: Vec<WriteJob> = Vec::with_capacity(MAX_WRITE_BATCH);
    while let Some(job) = queue.recv().await {
        batch.push(job);
        while batch.len() < MAX_WRITE_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch).await;
        debug_assert!(batch.is_empty());
    }
    let _ = conn.close().await;
}

/// Applies `batch` in one transaction and answers every job in it.
async fn commit_batch(conn: &mut SqliteConnection, batch: &mut Vec<WriteJob>) {
    let mut results = Vec::with_capacity(batch.len());
    let committed: Result<(), sqlx::Error> = async {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        for job in batch.iter() {
            sqlx::query("SAVEPOINT op").execute(&mut *conn).await?;
            let result = apply(conn, &job.op).await;
            if result.is_err() {
                sqlx::query("ROLLBACK TO op").execute(&mut *conn).await?;
            }
            sqlx::query("RELEASE op").execute(&mut *conn).await?;
            results.push(result);
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
        Ok(())
    }
    .await;
    match committed {
        Ok(()) => {
            assert_eq!(results.len(), batch.len(), "one result per job");
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(error) => {
            // Nothing in this batch is durable; every caller learns so.
            tracing::error!(%error, jobs = batch.len(), "write batch failed; rolled back");
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            let message = error.to_string();
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(StoreError::Migration(format!(
                    "batch not committed: {message}"
                ))));
            }
        }
    }
}

async fn apply(conn: &mut SqliteConnection, op: &WriteOp) -> Result<WriteReply, StoreError> {
    match op {
        WriteOp::Begin(new) => begin(conn, new).await.map(WriteReply::Begun),
        WriteOp::Save(write) => save(conn, write).await.map(|()| WriteReply::Done),
        WriteOp::Barrier => Ok(WriteReply::Done),
    }
}

async fn begin(conn: &mut SqliteConnection, new: &NewPayment) -> Result<BeginOutcome, StoreError> {
    let p = &new.payment;
    let merchant = p.merchant_id.as_str();
    let existing =
        sqlx::query("SELECT * FROM idempotency_keys WHERE merchant_id = ? AND idempotency_key = ?")
            .bind(merchant)
            .bind(&new.idempotency_key)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = existing {
        return Ok(BeginOutcome::KeyExists(rows::idempotency(&row)?));
    }
    let order =
        sqlx::query("SELECT payment_id, status FROM orders WHERE merchant_id = ? AND order_id = ?")
            .bind(merchant)
            .bind(&p.order_id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(row) = order {
        let status = row
            .text("status")?
            .parse::<crate::domain::PaymentStatus>()
            .map_err(|_| StoreError::Corrupt("order status".into()))?;
        if status.blocks_new_payment() {
            let payment_id = row
                .text("payment_id")?
                .parse()
                .map_err(|_| StoreError::Corrupt("order payment_id".into()))?;
            return Ok(BeginOutcome::OrderBusy { payment_id, status });
        }
    }
    sqlx::query(
        "INSERT INTO payments (id, merchant_id, order_id, customer_id, status, amount, amount_refunded,
            currency, payment_method, description, provider, provider_payment_id, failure_code,
            failure_message, next_attempt_at, anomaly_flags, metadata, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(p.id.to_string())
    .bind(merchant)
    .bind(&p.order_id)
    .bind(&p.customer_id)
    .bind(p.status.as_str())
    .bind(p.amount.minor_units())
    .bind(p.amount_refunded)
    .bind(p.currency.code())
    .bind(&p.payment_method)
    .bind(&p.description)
    .bind(&p.provider)
    .bind(&p.provider_payment_id)
    .bind(&p.failure_code)
    .bind(&p.failure_message)
    .bind(p.next_attempt_at.map(|t| t.as_micros()))
    .bind(json(&p.anomaly_flags))
    .bind(json(&p.metadata))
    .bind(p.created_at.as_micros())
    .bind(p.updated_at.as_micros())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, payment_id, order_id, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(merchant)
    .bind(&new.idempotency_key)
    .bind(&new.fingerprint)
    .bind(p.id.to_string())
    .bind(&p.order_id)
    .bind(p.created_at.as_micros())
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO orders (merchant_id, order_id, payment_id, status, lease_owner, lease_expires_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (merchant_id, order_id) DO UPDATE SET
            payment_id = excluded.payment_id, status = excluded.status, lease_owner = excluded.lease_owner,
            lease_expires_at = excluded.lease_expires_at, updated_at = excluded.updated_at",
    )
    .bind(merchant)
    .bind(&p.order_id)
    .bind(p.id.to_string())
    .bind(p.status.as_str())
    .bind(&new.lease_owner)
    .bind(new.lease_expires_at.as_micros())
    .bind(p.created_at.as_micros())
    .execute(&mut *conn)
    .await?;
    insert_events(conn, merchant, &new.events).await?;
    Ok(BeginOutcome::Started)
}

async fn save(conn: &mut SqliteConnection, write: &PaymentWrite) -> Result<(), StoreError> {
    let p = &write.payment;
    let merchant = p.merchant_id.as_str();
    let updated = sqlx::query(
        "UPDATE payments SET status = ?, amount_refunded = ?, provider = ?, provider_payment_id = ?,
            failure_code = ?, failure_message = ?, next_attempt_at = ?, anomaly_flags = ?, updated_at = ?
         WHERE id = ? AND merchant_id = ? AND status = ?",
    )
    .bind(p.status.as_str())
    .bind(p.amount_refunded)
    .bind(&p.provider)
    .bind(&p.provider_payment_id)
    .bind(&p.failure_code)
    .bind(&p.failure_message)
    .bind(p.next_attempt_at.map(|t| t.as_micros()))
    .bind(json(&p.anomaly_flags))
    .bind(p.updated_at.as_micros())
    .bind(p.id.to_string())
    .bind(merchant)
    .bind(write.expected_status.as_str())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Conflict(p.id));
    }
    for attempt in &write.attempts {
        upsert_attempt(conn, p.id, attempt, p.updated_at.as_micros()).await?;
    }
    insert_events(conn, merchant, &write.events).await?;
    if let Some((key, response)) = &write.response {
        sqlx::query(
            "UPDATE idempotency_keys SET response_status = ?, response_body = ?, completed_at = ?
             WHERE merchant_id = ? AND idempotency_key = ? AND payment_id = ?",
        )
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(p.updated_at.as_micros())
        .bind(merchant)
        .bind(key)
        .bind(p.id.to_string())
        .execute(&mut *conn)
        .await?;
    }
    let (lease_owner_kept, lease_expires_at) = match write.lease {
        LeaseChange::Renew { expires_at } => (true, Some(expires_at.as_micros())),
        LeaseChange::Release => (false, None),
    };
    sqlx::query(
        "UPDATE orders SET status = ?, lease_owner = CASE WHEN ? THEN lease_owner ELSE NULL END,
            lease_expires_at = ?, updated_at = ?
         WHERE merchant_id = ? AND order_id = ? AND payment_id = ?",
    )
    .bind(p.status.as_str())
    .bind(lease_owner_kept)
    .bind(lease_expires_at)
    .bind(p.updated_at.as_micros())
    .bind(merchant)
    .bind(&p.order_id)
    .bind(p.id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn upsert_attempt(
    conn: &mut SqliteConnection,
    payment_id: PaymentId,
    attempt: &Attempt,
    now_micros: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO attempts (id, payment_id, number, provider, provider_idempotency_key, outcome, code,
            latency_ms, provider_payment_id, raw_response, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET outcome = excluded.outcome, code = excluded.code,
            latency_ms = excluded.latency_ms, provider_payment_id = excluded.provider_payment_id,
            raw_response = excluded.raw_response, updated_at = excluded.updated_at",
    )
    .bind(attempt.id.to_string())
    .bind(payment_id.to_string())
    .bind(i64::from(attempt.number))
    .bind(&attempt.provider)
    .bind(Attempt::provider_idempotency_key(payment_id, attempt.number))
    .bind(attempt.outcome.as_str())
    .bind(&attempt.code)
    .bind(attempt.latency_ms)
    .bind(&attempt.provider_payment_id)
    .bind(&attempt.raw_response)
    .bind(attempt.created_at.as_micros())
    .bind(now_micros)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_events(
    conn: &mut SqliteConnection,
    merchant: &str,
    events: &[PaymentEvent],
) -> Result<(), StoreError> {
    for event in events {
        sqlx::query(
            "INSERT INTO payment_events (id, payment_id, merchant_id, type, from_status, to_status, attempt_id, data, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.id.to_string())
        .bind(event.payment_id.to_string())
        .bind(merchant)
        .bind(&event.kind)
        .bind(event.from_status.map(|s| s.as_str()))
        .bind(event.to_status.map(|s| s.as_str()))
        .bind(event.attempt_id.map(|id| id.to_string()))
        .bind(event.data.to_string())
        .bind(event.created_at.as_micros())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

fn json(value: &impl serde::Serialize) -> String {
    // Serializing maps of strings and vectors of strings cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

#[async_trait]
impl Store for SqliteStore {
    async fn begin_payment(&self, new: NewPayment) -> Result<BeginOutcome, StoreError> {
        match self.submit(WriteOp::Begin(Box::new(new))).await? {
            WriteReply::Begun(outcome) => Ok(outcome),
            WriteReply::Done => Err(StoreError::Corrupt(
                "writer answered begin with done".into(),
            )),
        }
    }

    async fn save_payment(&self, write: PaymentWrite) -> Result<(), StoreError> {
        self.submit(WriteOp::Save(Box::new(write)))
            .await
            .map(|_| ())
    }

    async fn idempotency_record(
        &self,
        merchant: &MerchantId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM idempotency_keys WHERE merchant_id = ? AND idempotency_key = ?",
        )
        .bind(merchant.as_str())
        .bind(key)
        .fetch_optional(&self.reads)
        .await?;
        row.as_ref().map(rows::idempotency).transpose()
    }

    async fn payment(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        let row = sqlx::query("SELECT * FROM payments WHERE id = ? AND merchant_id = ?")
            .bind(id.to_string())
            .bind(merchant.as_str())
            .fetch_optional(&self.reads)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut payments = [rows::payment(&row)?];
        self.attach_attempts(&mut payments).await?;
        let [payment] = payments;
        Ok(Some(payment))
    }

    async fn list_payments(
        &self,
        merchant: &MerchantId,
        filter: &PaymentFilter,
    ) -> Result<Vec<Payment>, StoreError> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM payments WHERE merchant_id = ");
        query.push_bind(merchant.as_str());
        if let Some(customer) = &filter.customer_id {
            query
                .push(" AND customer_id = ")
                .push_bind(customer.clone());
        }
        if let Some(order) = &filter.order_id {
            query.push(" AND order_id = ").push_bind(order.clone());
        }
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(gte) = filter.created_gte {
            query.push(" AND created_at >= ").push_bind(gte.as_micros());
        }
        if let Some(lt) = filter.created_lt {
            query.push(" AND created_at < ").push_bind(lt.as_micros());
        }
        if let Some(cursor) = filter.starting_after {
            query.push(" AND id < ").push_bind(cursor.to_string());
        }
        query
            .push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows: Vec<SqliteRow> = query.build().fetch_all(&self.reads).await?;
        let mut payments = rows
            .iter()
            .map(rows::payment)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_attempts(&mut payments).await?;
        Ok(payments)
    }

    async fn payment_events(
        &self,
        merchant: &MerchantId,
        id: PaymentId,
    ) -> Result<Option<Vec<PaymentEvent>>, StoreError> {
        let owned = sqlx::query("SELECT 1 FROM payments WHERE id = ? AND merchant_id = ?")
            .bind(id.to_string())
            .bind(merchant.as_str())
            .fetch_optional(&self.reads)
            .await?;
        if owned.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT * FROM payment_events WHERE payment_id = ? ORDER BY created_at, id",
        )
        .bind(id.to_string())
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(rows::event)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let mut conn = self.reads.acquire().await?;
        if migrate::all_applied_sqlite(&mut conn).await? {
            Ok(())
        } else {
            Err(StoreError::Migration("migrations not applied".into()))
        }
    }

    async fn close(&self) {
        // Everything queued before the barrier is durable once it answers.
        let _ = self.submit(WriteOp::Barrier).await;
        self.reads.close().await;
    }
}
