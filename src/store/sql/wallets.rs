//! Wallet top-ups: credit a customer's wallet once per idempotency key.
//!
//! The key is claimed and the posting written in one transaction; a key
//! used before changes nothing and answers what it answered the first time.
//! The wallet's balance is the ledger's (`customer_wallet:{m}/{c}`); a
//! wallet *payment's* debit is written with the payment (`payments::save`).

use super::{int, ledger, text, Conn};
use crate::store::rows::RowExt;
use crate::store::{StoreError, TopUp, TopUpOutcome};

pub(crate) async fn top_up<C: Conn>(conn: &mut C, t: &TopUp) -> Result<TopUpOutcome, StoreError> {
    let claimed = conn
        .execute(
            "INSERT INTO top_up_keys (merchant_id, idempotency_key, fingerprint, transaction_id, response_body,
                created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (merchant_id, idempotency_key) DO NOTHING",
            vec![
                text(t.merchant_id.as_str()),
                text(&t.idempotency_key),
                text(&t.fingerprint),
                text(t.posting.id().to_string()),
                text(&t.response_body),
                int(t.posting.created_at().as_micros()),
            ],
        )
        .await?;
    if claimed == 0 {
        let row = conn
            .fetch_optional(
                "SELECT fingerprint, response_body FROM top_up_keys
                 WHERE merchant_id = $1 AND idempotency_key = $2",
                vec![text(t.merchant_id.as_str()), text(&t.idempotency_key)],
            )
            .await?
            .ok_or_else(|| StoreError::Corrupt("top-up key vanished".into()))?;
        return Ok(TopUpOutcome::KeyExists {
            fingerprint: row.text("fingerprint")?,
            body: row.text("response_body")?,
        });
    }
    match ledger::post(conn, &t.posting).await? {
        ledger::PostOutcome::Posted => Ok(TopUpOutcome::Posted),
        // A top-up debits no wallet, and its id is new: neither can happen.
        other => Err(StoreError::Partial(Box::new(StoreError::Corrupt(format!(
            "a new top-up posted as {other:?}"
        ))))),
    }
}
