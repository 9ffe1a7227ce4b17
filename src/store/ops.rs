//! Write operations as data, applied by every backend the same way.
//!
//! Making writes values (not closures) lets the SQLite writer queue and
//! batch them, and lets the PostgreSQL backend retry one after a deadlock.

use super::sql::{idempotency, leases, payments, Conn};
use super::{BeginOutcome, NewPayment, PaymentWrite, StoreError};
use crate::domain::{MerchantId, PaymentId, Timestamp};

/// One atomic write.
pub enum WriteOp {
    Begin(Box<NewPayment>),
    Save(Box<PaymentWrite>),
    ClaimLease {
        merchant: MerchantId,
        order_id: String,
        payment_id: PaymentId,
        owner: String,
        now: Timestamp,
        expires_at: Timestamp,
    },
    Prune {
        before: Timestamp,
    },
    /// Does nothing; answered once everything queued before it is durable.
    Barrier,
}

/// What a write answers.
pub enum WriteReply {
    Begun(BeginOutcome),
    Claimed(bool),
    Count(u64),
    Done,
}

impl WriteReply {
    /// Whether the writes made for this answer are to be committed: a
    /// refused begin (key or order already taken) leaves nothing behind.
    pub fn keeps_writes(&self) -> bool {
        match self {
            WriteReply::Begun(outcome) => *outcome == BeginOutcome::Started,
            _ => true,
        }
    }
}

/// Runs `op` on `conn`, inside a transaction the caller owns.
pub(crate) async fn apply<C: Conn>(conn: &mut C, op: &WriteOp) -> Result<WriteReply, StoreError> {
    match op {
        WriteOp::Begin(new) => payments::begin(conn, new).await.map(WriteReply::Begun),
        WriteOp::Save(write) => payments::save(conn, write).await.map(|()| WriteReply::Done),
        WriteOp::ClaimLease {
            merchant,
            order_id,
            payment_id,
            owner,
            now,
            expires_at,
        } => leases::claim_lease(
            conn,
            merchant,
            order_id,
            *payment_id,
            owner,
            *now,
            *expires_at,
        )
        .await
        .map(WriteReply::Claimed),
        WriteOp::Prune { before } => idempotency::prune(conn, *before)
            .await
            .map(WriteReply::Count),
        WriteOp::Barrier => Ok(WriteReply::Done),
    }
}

fn unexpected() -> StoreError {
    StoreError::Corrupt("a write answered with the wrong reply kind".into())
}

impl WriteReply {
    pub(crate) fn begun(self) -> Result<BeginOutcome, StoreError> {
        match self {
            WriteReply::Begun(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn claimed(self) -> Result<bool, StoreError> {
        match self {
            WriteReply::Claimed(claimed) => Ok(claimed),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn count(self) -> Result<u64, StoreError> {
        match self {
            WriteReply::Count(count) => Ok(count),
            _ => Err(unexpected()),
        }
    }
}
