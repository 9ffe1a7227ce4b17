//! The ledger's statements: posting a balanced transaction, and reading
//! balances and postings back (DESIGN §8).
//!
//! Like every module here, nothing opens or commits a transaction: the
//! payment write path posts in the transaction of the status change that
//! causes the posting (DESIGN §13.7), so both commit or neither does.
//!
//! # Posting, and why in this order
//!
//! [`post`] runs, in order:
//!
//! 1. the conditional debit of each customer wallet the posting takes money
//!    from: one `UPDATE … WHERE credits − debits ≥ amount` per wallet, so
//!    the check and the write are one atomic statement (never read, then
//!    write); concurrent debits of one wallet queue on its row, and each
//!    re-checks the condition against the committed total;
//! 2. the transaction row, `INSERT … ON CONFLICT DO NOTHING`: no row
//!    inserted means the payment, the refund or the id has its posting
//!    already (the unique indexes decide, across instances too);
//! 3. the lines, in one statement;
//! 4. every other balance, one upsert, rows in account-name order.
//!
//! Wallets come first so that a refusal leaves nothing behind and the
//! caller needs no savepoint: a wallet too poor to pay is found before
//! anything is written; a posting found to exist in step 2 gives back the
//! wallet debits of step 1 in the same transaction (on rows it holds
//! locked, so nobody sees the intermediate state). Either way the caller
//! may go on with its transaction (record a decline, or treat the payment
//! as posted) and commit. Balance rows are locked in one global order
//! (customer wallets sort first by name, and go first) so that two postings
//! never wait on each other in a cycle.

use super::{int, opt_text, placeholders, text, Arg, Conn};
use crate::domain::{
    Account, AccountTotal, Amount, Balance, Currency, Direction, Entry, MerchantId, PaymentId,
    Posting, PostingKind, PostingParts, Timestamp, TransactionId,
};
use crate::store::rows::RowExt;
use crate::store::StoreError;
use std::collections::HashMap;
use std::fmt::Write;

/// Bound values per line in the multi-row insert of [`insert_entries`].
const ENTRY_COLUMNS: usize = 7;
/// Bound values per row in the multi-row upsert of [`add_to_balances`].
const BALANCE_COLUMNS: usize = 4;

/// What [`post`] did. Only `Posted` wrote anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// The transaction, its lines and the balances are written.
    Posted,
    /// The payment, refund or transaction id has a posting already; nothing
    /// changed. A replay of a write that committed before lands here.
    AlreadyPosted,
    /// Debiting `account` would take it below zero; nothing changed. For a
    /// wallet payment this is the decline `insufficient_balance`.
    InsufficientFunds { account: Account },
}

/// Filters of `GET /v1/ledger/balances`.
#[derive(Debug, Clone, Default)]
pub struct BalanceFilter {
    pub account: Option<Account>,
    pub currency: Option<Currency>,
    /// Balances as they stood just before this instant, summed from the
    /// lines stamped strictly earlier: `as_of` the first instant of a month
    /// is exactly the month before. `None`: now, from the running totals.
    pub as_of: Option<Timestamp>,
}

/// Filters of `GET /v1/ledger/transactions`.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    /// Only postings touching this merchant's accounts (API scoping).
    pub merchant_id: Option<MerchantId>,
    /// Only this payment's postings: its own and its refunds'.
    pub payment_id: Option<PaymentId>,
    /// Only postings older than this one (ids sort by creation time).
    pub starting_after: Option<TransactionId>,
    pub limit: u32,
}

/// Writes `posting` unless refused; see the module docs for the order.
/// On every outcome the caller's transaction may go on and commit.
pub async fn post<C: Conn>(conn: &mut C, posting: &Posting) -> Result<PostOutcome, StoreError> {
    let (wallets, others): (Vec<_>, Vec<_>) = posting
        .account_totals()
        .into_iter()
        .partition(|total| total.account.is_customer_wallet() && total.debits > total.credits);
    for (debited, wallet) in wallets.iter().enumerate() {
        if !debit_wallet(conn, wallet).await? {
            undo_wallet_debits(conn, &wallets[..debited]).await?;
            return refusal(conn, posting, &wallet.account).await;
        }
    }
    if !insert_transaction(conn, posting).await? {
        undo_wallet_debits(conn, &wallets).await?;
        return Ok(PostOutcome::AlreadyPosted);
    }
    insert_entries(conn, posting).await?;
    add_to_balances(conn, &others).await?;
    Ok(PostOutcome::Posted)
}

/// Adds a wallet's share of a posting to its balance if the wallet can
/// pay it; false (nothing written) if it cannot, or has no balance row.
async fn debit_wallet<C: Conn>(conn: &mut C, wallet: &AccountTotal) -> Result<bool, StoreError> {
    let updated = conn
        .execute(
            "UPDATE ledger_balances SET debits = debits + $3, credits = credits + $4
             WHERE account = $1 AND currency = $2 AND slot = 0 AND credits + $4 >= debits + $3",
            total_args(wallet),
        )
        .await?;
    Ok(updated == 1)
}

/// Takes back what [`debit_wallet`] added, in the same transaction.
async fn undo_wallet_debits<C: Conn>(
    conn: &mut C,
    wallets: &[AccountTotal],
) -> Result<(), StoreError> {
    for wallet in wallets {
        conn.execute(
            "UPDATE ledger_balances SET debits = debits - $3, credits = credits - $4
             WHERE account = $1 AND currency = $2 AND slot = 0",
            total_args(wallet),
        )
        .await?;
    }
    Ok(())
}

fn total_args(total: &AccountTotal) -> Vec<Arg> {
    vec![
        text(total.account.to_string()),
        text(total.currency.code()),
        int(total.debits),
        int(total.credits),
    ]
}

/// Why a wallet debit found too little: a retry of a posting that
/// committed (its own debit spent the money) is `AlreadyPosted`, not a
/// decline. This read only names the refusal; it decides no write.
async fn refusal<C: Conn>(
    conn: &mut C,
    posting: &Posting,
    wallet: &Account,
) -> Result<PostOutcome, StoreError> {
    let payment_id = match posting.kind() {
        PostingKind::Payment => posting.payment_id().map(|id| id.to_string()),
        _ => None,
    };
    let existing = conn
        .fetch_optional(
            "SELECT id FROM ledger_transactions
             WHERE id = $1 OR (kind = 'payment' AND payment_id = $2) OR refund_id = $3",
            vec![
                text(posting.id().to_string()),
                opt_text(&payment_id),
                opt_text(&posting.refund_id().map(|id| id.to_string())),
            ],
        )
        .await?;
    Ok(match existing {
        Some(_) => PostOutcome::AlreadyPosted,
        None => PostOutcome::InsufficientFunds {
            account: wallet.clone(),
        },
    })
}

/// Inserts the transaction row; false if a unique index already holds
/// its id, its payment (for a payment posting) or its refund.
async fn insert_transaction<C: Conn>(conn: &mut C, posting: &Posting) -> Result<bool, StoreError> {
    let inserted = conn
        .execute(
            "INSERT INTO ledger_transactions (id, kind, merchant_id, payment_id, refund_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            vec![
                text(posting.id().to_string()),
                text(posting.kind().as_str()),
                opt_text(&posting.merchant_id().map(|m| m.as_str().to_string())),
                opt_text(&posting.payment_id().map(|id| id.to_string())),
                opt_text(&posting.refund_id().map(|id| id.to_string())),
                int(posting.created_at().as_micros()),
            ],
        )
        .await?;
    Ok(inserted == 1)
}

/// Inserts every line of `posting`, numbered from 1, in one statement.
async fn insert_entries<C: Conn>(conn: &mut C, posting: &Posting) -> Result<(), StoreError> {
    let mut sql = String::from(
        "INSERT INTO ledger_entries (transaction_id, line, account, direction, amount, currency, created_at) VALUES ",
    );
    let mut args = Vec::with_capacity(posting.entries().len() * ENTRY_COLUMNS);
    for (line, entry) in (1..).zip(posting.entries()) {
        let separator = if line == 1 { "" } else { ", " };
        let _ = write!(
            sql,
            "{separator}({})",
            placeholders(args.len() + 1, ENTRY_COLUMNS)
        );
        args.extend([
            text(posting.id().to_string()),
            int(line),
            text(entry.account.to_string()),
            text(entry.direction.as_str()),
            int(entry.amount.minor_units()),
            text(entry.currency.code()),
            int(posting.created_at().as_micros()),
        ]);
    }
    conn.execute(&sql, args).await?;
    Ok(())
}

/// Adds each total to its balance row, creating rows on first use; rows
/// are written (and locked) in the order given, account-name order.
async fn add_to_balances<C: Conn>(conn: &mut C, totals: &[AccountTotal]) -> Result<(), StoreError> {
    if totals.is_empty() {
        return Ok(());
    }
    // The row's slot is the schema's to choose (migration 0010): 0 on
    // SQLite's one writer; on PostgreSQL a trigger spreads a hot account
    // over the writers, and keeps a wallet in slot 0 where its
    // conditional debit looks.
    let mut sql =
        String::from("INSERT INTO ledger_balances (account, currency, debits, credits) VALUES ");
    let mut args = Vec::with_capacity(totals.len() * BALANCE_COLUMNS);
    for (i, total) in totals.iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        let _ = write!(
            sql,
            "{separator}({})",
            placeholders(args.len() + 1, BALANCE_COLUMNS)
        );
        args.extend(total_args(total));
    }
    sql.push_str(
        " ON CONFLICT (account, currency, slot) DO UPDATE SET
            debits = ledger_balances.debits + excluded.debits,
            credits = ledger_balances.credits + excluded.credits",
    );
    conn.execute(&sql, args).await?;
    Ok(())
}

/// Balances matching `filter`, in account-name then currency order: the
/// running totals now, or sums of the lines before `filter.as_of`.
pub async fn balances<C: Conn>(
    conn: &mut C,
    filter: &BalanceFilter,
) -> Result<Vec<Balance>, StoreError> {
    let (sql, args) = balances_statement(filter);
    let rows = conn.fetch_all(&sql, args).await?;
    let mut balances = rows.iter().map(balance).collect::<Result<Vec<_>, _>>()?;
    // In Rust, not SQL: the two backends' text collations may differ.
    balances.sort_by(|a, b| (&a.account, a.currency).cmp(&(&b.account, b.currency)));
    Ok(balances)
}

/// The `SELECT` for `filter`: the running totals, or the lines summed.
fn balances_statement(filter: &BalanceFilter) -> (String, Vec<Arg>) {
    let mut args = Vec::new();
    let mut sql = match filter.as_of {
        // An account's slots summed (migration 0010).
        None => String::from(
            "SELECT account, currency, CAST(SUM(debits) AS BIGINT) AS debits,
                CAST(SUM(credits) AS BIGINT) AS credits FROM ledger_balances WHERE 1 = 1",
        ),
        Some(as_of) => {
            args.push(int(as_of.as_micros()));
            String::from(
                "SELECT account, currency,
                    CAST(SUM(CASE WHEN direction = 'debit' THEN amount ELSE 0 END) AS BIGINT) AS debits,
                    CAST(SUM(CASE WHEN direction = 'credit' THEN amount ELSE 0 END) AS BIGINT) AS credits
                 FROM ledger_entries WHERE created_at < $1",
            )
        }
    };
    if let Some(account) = &filter.account {
        args.push(text(account.to_string()));
        let _ = write!(sql, " AND account = ${}", args.len());
    }
    if let Some(currency) = filter.currency {
        args.push(text(currency.code()));
        let _ = write!(sql, " AND currency = ${}", args.len());
    }
    sql.push_str(" GROUP BY account, currency");
    (sql, args)
}

fn balance(row: &impl RowExt) -> Result<Balance, StoreError> {
    let account = account(row.text("account")?)?;
    let currency = currency(row.text("currency")?)?;
    let (debits, credits) = (row.int("debits")?, row.int("credits")?);
    Balance::new(account, currency, debits, credits)
        .ok_or_else(|| corrupt("balance", format!("{debits} - {credits}")))
}

/// Postings matching `filter`, newest first, at most `filter.limit`.
pub async fn transactions<C: Conn>(
    conn: &mut C,
    filter: &TransactionFilter,
) -> Result<Vec<Posting>, StoreError> {
    let mut sql = String::from("SELECT * FROM ledger_transactions WHERE 1 = 1");
    let mut args = Vec::new();
    let mut push = |clause: &str, arg: Arg| {
        args.push(arg);
        let _ = write!(sql, " AND {clause} ${}", args.len());
    };
    if let Some(merchant) = &filter.merchant_id {
        push("merchant_id =", text(merchant.as_str()));
    }
    if let Some(payment) = filter.payment_id {
        push("payment_id =", text(payment.to_string()));
    }
    if let Some(cursor) = filter.starting_after {
        push("id <", text(cursor.to_string()));
    }
    args.push(int(i64::from(filter.limit)));
    let _ = write!(sql, " ORDER BY id DESC LIMIT ${}", args.len());
    load(conn, &sql, args).await
}

/// Every posting of `payment_id`, oldest first: the payment's own, then
/// its refunds'. Unpaged: a payment has one posting and a few refunds.
pub async fn postings_for_payment<C: Conn>(
    conn: &mut C,
    payment_id: PaymentId,
) -> Result<Vec<Posting>, StoreError> {
    load(
        conn,
        "SELECT * FROM ledger_transactions WHERE payment_id = $1 ORDER BY id",
        vec![text(payment_id.to_string())],
    )
    .await
}

/// The transactions `sql` selects, in its order, each with its lines,
/// checked again by [`Posting::new`]: an edited row surfaces as corrupt.
async fn load<C: Conn>(
    conn: &mut C,
    sql: &str,
    args: Vec<Arg>,
) -> Result<Vec<Posting>, StoreError> {
    let rows = conn.fetch_all(sql, args).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids = rows
        .iter()
        .map(|row| row.text("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let mut lines = entries_of(conn, &ids).await?;
    rows.iter()
        .zip(&ids)
        .map(|(row, id)| posting(row, lines.remove(id).unwrap_or_default()))
        .collect()
}

/// The lines of the transactions `ids`, by transaction, in line order.
async fn entries_of<C: Conn>(
    conn: &mut C,
    ids: &[String],
) -> Result<HashMap<String, Vec<Entry>>, StoreError> {
    let sql = format!(
        "SELECT * FROM ledger_entries WHERE transaction_id IN ({}) ORDER BY transaction_id, line",
        placeholders(1, ids.len())
    );
    let args = ids.iter().map(text).collect();
    let mut lines: HashMap<String, Vec<Entry>> = HashMap::new();
    for row in conn.fetch_all(&sql, args).await? {
        let entry = entry(&row)?;
        lines
            .entry(row.text("transaction_id")?)
            .or_default()
            .push(entry);
    }
    Ok(lines)
}

fn entry(row: &impl RowExt) -> Result<Entry, StoreError> {
    let direction = row.text("direction")?;
    let amount = row.int("amount")?;
    Ok(Entry {
        account: account(row.text("account")?)?,
        direction: Direction::parse(&direction).ok_or_else(|| corrupt("direction", &direction))?,
        amount: Amount::new(amount).map_err(|_| corrupt("amount", amount))?,
        currency: currency(row.text("currency")?)?,
    })
}

fn posting(row: &impl RowExt, entries: Vec<Entry>) -> Result<Posting, StoreError> {
    let id = row.text("id")?;
    let kind = row.text("kind")?;
    let created_at = row.int("created_at")?;
    let parts = PostingParts {
        id: parse("transaction id", id.clone())?,
        kind: PostingKind::parse(&kind).ok_or_else(|| corrupt("posting kind", &kind))?,
        payment_id: row
            .opt_text("payment_id")?
            .map(|text| parse("payment id", text))
            .transpose()?,
        refund_id: row
            .opt_text("refund_id")?
            .map(|text| parse("refund id", text))
            .transpose()?,
        entries,
        created_at: Timestamp::from_micros(created_at)
            .ok_or_else(|| corrupt("created_at", created_at))?,
    };
    Posting::new(parts).map_err(|error| corrupt(&format!("posting {id}"), error))
}

fn account(name: String) -> Result<Account, StoreError> {
    parse("account", name)
}

fn currency(code: String) -> Result<Currency, StoreError> {
    Currency::parse(&code).ok_or_else(|| corrupt("currency", code))
}

fn parse<T: std::str::FromStr>(what: &str, text: String) -> Result<T, StoreError> {
    text.parse().map_err(|_| corrupt(what, text))
}

fn corrupt(what: &str, value: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {value}"))
}
