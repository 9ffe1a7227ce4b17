//! Write operations as data, applied by every backend the same way.
//!
//! Making writes values (not closures) lets the SQLite writer queue and
//! batch them, and lets the PostgreSQL backend retry one after a deadlock.

use super::sql::{idempotency, leases, payments, reconcile, refunds, wallets, webhooks, Conn};
use super::{
    BeginOutcome, FinishRefund, LeaseClaim, NewPayment, NewRefund, PaymentWrite, RefundBegin,
    StoreError, TopUp, TopUpOutcome,
};
use crate::domain::Timestamp;

/// One atomic write.
pub enum WriteOp {
    Begin(Box<NewPayment>),
    Save(Box<PaymentWrite>),
    ClaimLease(Box<LeaseClaim>),
    RenewLease(Box<LeaseClaim>),
    RegisterInstance {
        instance_id: String,
        now: Timestamp,
    },
    Prune {
        before: Timestamp,
    },
    BeginRefund(Box<NewRefund>),
    FinishRefund(Box<FinishRefund>),
    TopUp(Box<TopUp>),
    StageRecords {
        run_id: String,
        records: Vec<super::StagedRecord>,
    },
    UnstageRecords {
        run_id: String,
    },
    RecordFindings {
        run_id: String,
        findings: Vec<(String, super::Finding)>,
        now: Timestamp,
    },
    SaveRun(Box<crate::domain::RunReport>),
    ResolveDiscrepancy {
        id: String,
        resolution: String,
        now: Timestamp,
    },
    /// A refund stays pending after an ask; the body, if any, is its key's
    /// first answer.
    RefundPending {
        refund: Box<crate::domain::Refund>,
        body: Option<String>,
    },
    RecordWebhook(Box<super::WebhookRecord>),
    /// Outgoing events' deliveries and publication (`store::outbox`).
    Outbox(Box<super::outbox::OutboxOp>),
    /// Does nothing; answered once everything queued before it is durable.
    Barrier,
}

impl WriteOp {
    /// Whether this write starts new work (a new payment): such a write is
    /// refused when the queue is full, so the request is shed while work
    /// already under way keeps its place.
    pub fn starts_work(&self) -> bool {
        matches!(
            self,
            WriteOp::Begin(_) | WriteOp::BeginRefund(_) | WriteOp::TopUp(_)
        )
    }
}

/// What a write answers.
pub enum WriteReply {
    Begun(BeginOutcome),
    RefundBegun(RefundBegin),
    ToppedUp(TopUpOutcome),
    Claimed(bool),
    Count(u64),
    /// The categories of the findings that were new (not found before).
    NewFindings(Vec<crate::domain::Category>),
    Done,
    Outbox(super::outbox::OutboxReply),
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
        WriteOp::ClaimLease(claim) => leases::claim_lease(conn, claim)
            .await
            .map(WriteReply::Claimed),
        WriteOp::RenewLease(claim) => leases::renew_lease(conn, claim)
            .await
            .map(WriteReply::Claimed),
        WriteOp::RegisterInstance { instance_id, now } => {
            leases::register_instance(conn, instance_id, *now)
                .await
                .map(|incarnation| WriteReply::Count(incarnation as u64))
        }
        WriteOp::Prune { before } => idempotency::prune(conn, *before)
            .await
            .map(WriteReply::Count),
        WriteOp::BeginRefund(new) => refunds::begin(conn, new).await.map(WriteReply::RefundBegun),
        WriteOp::FinishRefund(finish) => refunds::finish(conn, finish)
            .await
            .map(|()| WriteReply::Done),
        WriteOp::TopUp(top_up) => wallets::top_up(conn, top_up)
            .await
            .map(WriteReply::ToppedUp),
        WriteOp::StageRecords { run_id, records } => reconcile::stage(conn, run_id, records)
            .await
            .map(|()| WriteReply::Done),
        WriteOp::UnstageRecords { run_id } => reconcile::unstage(conn, run_id)
            .await
            .map(WriteReply::Count),
        WriteOp::RecordFindings {
            run_id,
            findings,
            now,
        } => {
            let mut new = Vec::new();
            for (id, finding) in findings {
                if reconcile::record(conn, id, run_id, finding, *now).await? {
                    new.push(finding.category);
                }
            }
            Ok(WriteReply::NewFindings(new))
        }
        WriteOp::SaveRun(report) => reconcile::save_run(conn, report)
            .await
            .map(|()| WriteReply::Done),
        WriteOp::ResolveDiscrepancy {
            id,
            resolution,
            now,
        } => reconcile::resolve(conn, id, resolution, *now)
            .await
            .map(WriteReply::Claimed),
        WriteOp::RefundPending { refund, body } => {
            refunds::still_pending(conn, refund, body.as_deref())
                .await
                .map(|()| WriteReply::Done)
        }
        WriteOp::RecordWebhook(record) => webhooks::record(conn, record)
            .await
            .map(WriteReply::Claimed),
        WriteOp::Outbox(op) => super::sql::outbox::apply(conn, op)
            .await
            .map(WriteReply::Outbox),
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

    pub(crate) fn new_findings(self) -> Result<Vec<crate::domain::Category>, StoreError> {
        match self {
            WriteReply::NewFindings(categories) => Ok(categories),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn claimed(self) -> Result<bool, StoreError> {
        match self {
            WriteReply::Claimed(claimed) => Ok(claimed),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn refund_begun(self) -> Result<RefundBegin, StoreError> {
        match self {
            WriteReply::RefundBegun(outcome) => Ok(outcome),
            _ => Err(unexpected()),
        }
    }

    pub(crate) fn topped_up(self) -> Result<TopUpOutcome, StoreError> {
        match self {
            WriteReply::ToppedUp(outcome) => Ok(outcome),
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
