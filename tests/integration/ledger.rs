//! The ledger's SQL on both backends (DESIGN §8, §13.3, §13.8): a posting is
//! once per payment and per refund in the schema itself, lines and
//! transactions are append-only in the database, a wallet never goes below
//! zero under concurrent debits, and balances, now and as of a past
//! instant, agree with the lines and sum to zero per currency.
//!
//! The store is opened as the engine opens it (migrations applied); the
//! ledger functions then run on a raw connection to the same database,
//! inside transactions the test owns, as the payment write path will run
//! them inside its own.

use crate::actors::open_store;
use crate::common::{postgres_url, Backend, TestDb};
use payments::domain::{
    Account, Amount, Balance, CardCharge, CardRefund, Currency, MerchantId, PaymentId, Posting,
    RefundId, Timestamp, TransactionId, WalletCharge, WalletRefund, WalletTopUp,
};
use payments::store::ledger::{self, BalanceFilter, PostOutcome, TransactionFilter};
use payments::store::{Conn, RowExt, StoreError};
use rstest::rstest;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reasons the database gives for refusing an edit, by kind (lowercase).
const APPEND_ONLY: &[&str] = &["append-only", "never removed"];
const CHECK: &[&str] = &["check constraint"];
const UNIQUE: &[&str] = &["unique constraint"];
/// Concurrent debits in the double-spend test, each of [`DEBIT`].
const CONCURRENT_DEBITS: usize = 20;
const DEBIT: i64 = 1_000;
/// What the wallet holds before them: room for exactly three.
const WALLET_FUNDS: i64 = 3_000;
/// How long a connection waits for SQLite's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 30_000;

/// A connection of its own to the store's database, beside the store.
enum Raw {
    Sqlite(rusqlite::Connection),
    Postgres(PgConnection),
}

/// Runs `$body` with `$conn` bound to the backend's connection.
macro_rules! on {
    ($raw:expr, $conn:ident => $body:expr) => {
        match $raw {
            Raw::Sqlite($conn) => $body,
            Raw::Postgres($conn) => $body,
        }
    };
}

impl Raw {
    async fn open(db: &TestDb) -> Raw {
        match db.backend {
            Backend::Sqlite => {
                // The engine's SQLite store runs the shared SQL on rusqlite.
                let conn = rusqlite::Connection::open(db.data_dir.join("payments.db"))
                    .expect("open SQLite");
                conn.busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))
                    .expect("busy timeout");
                Raw::Sqlite(conn)
            }
            Backend::Postgres => Raw::Postgres(
                PgConnectOptions::from_str(&postgres_url())
                    .expect("url")
                    .options([("search_path", db.schema.as_str())])
                    .connect()
                    .await
                    .expect("connect PostgreSQL"),
            ),
        }
    }

    /// Runs one statement on its own (autocommit).
    async fn sql(&mut self, sql: &str) -> Result<u64, StoreError> {
        on!(self, c => Conn::execute(c, sql, vec![]).await)
    }

    /// Opens a transaction; on SQLite it takes the write lock at once, as
    /// the store's writer does, so concurrent writers queue instead of
    /// failing to upgrade a read lock.
    async fn begin(&mut self) {
        let begin = match self {
            Raw::Sqlite(_) => "BEGIN IMMEDIATE",
            Raw::Postgres(_) => "BEGIN",
        };
        self.sql(begin).await.expect("begin");
    }

    async fn commit(&mut self) {
        self.sql("COMMIT").await.expect("commit");
    }

    /// Posts inside the transaction already open.
    async fn post_in_tx(&mut self, posting: &Posting) -> PostOutcome {
        on!(self, c => ledger::post(c, posting).await).expect("post")
    }

    /// Posts in a transaction of its own, committed whatever the outcome:
    /// a refusal writes nothing, so committing it must change nothing.
    async fn post(&mut self, posting: &Posting) -> PostOutcome {
        self.begin().await;
        let outcome = self.post_in_tx(posting).await;
        self.commit().await;
        outcome
    }

    async fn balances(&mut self, filter: &BalanceFilter) -> Vec<Balance> {
        on!(self, c => ledger::balances(c, filter).await).expect("balances")
    }

    async fn transactions(&mut self, filter: &TransactionFilter) -> Vec<Posting> {
        on!(self, c => ledger::transactions(c, filter).await).expect("transactions")
    }

    async fn postings_for_payment(&mut self, payment_id: PaymentId) -> Vec<Posting> {
        on!(self, c => ledger::postings_for_payment(c, payment_id).await).expect("postings")
    }

    async fn count(&mut self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) AS n FROM {table}");
        let row = on!(self, c => Conn::fetch_optional(c, &sql, vec![]).await.map(|row| row.map(|r| r.int("n"))));
        row.expect("count").expect("a row").expect("n")
    }
}

fn currency(code: &str) -> Currency {
    Currency::parse(code).expect("currency")
}

fn amount(minor_units: i64) -> Amount {
    Amount::new(minor_units).expect("amount")
}

/// `minute` minutes into the test's day.
fn at(minute: i64) -> Timestamp {
    Timestamp::parse_rfc3339("2026-01-31T00:00:00Z")
        .expect("timestamp")
        .plus_millis(minute * 60_000)
}

fn card(
    merchant: &str,
    payment_id: PaymentId,
    total: i64,
    fee: i64,
    code: &str,
    minute: i64,
) -> Posting {
    let charge = CardCharge {
        payment_id,
        merchant_id: MerchantId::new(merchant),
        provider: "sandbox_a".into(),
        amount: amount(total),
        currency: currency(code),
        fee,
    };
    Posting::card_payment(&charge, at(minute)).expect("card payment")
}

fn card_refund(
    merchant: &str,
    payment_id: PaymentId,
    part: i64,
    code: &str,
    minute: i64,
) -> Posting {
    card_refund_with_id(RefundId::new(), merchant, payment_id, part, code, minute)
}

fn card_refund_with_id(
    refund_id: RefundId,
    merchant: &str,
    payment_id: PaymentId,
    part: i64,
    code: &str,
    minute: i64,
) -> Posting {
    let refund = CardRefund {
        refund_id,
        payment_id,
        merchant_id: MerchantId::new(merchant),
        provider: "sandbox_a".into(),
        amount: amount(part),
        currency: currency(code),
    };
    Posting::card_refund(&refund, at(minute)).expect("card refund")
}

fn wallet_payment(customer: &str, payment_id: PaymentId, total: i64, minute: i64) -> Posting {
    let charge = WalletCharge {
        payment_id,
        merchant_id: MerchantId::new("m"),
        customer_id: customer.into(),
        amount: amount(total),
        currency: currency("usd"),
    };
    Posting::wallet_payment(&charge, at(minute)).expect("wallet payment")
}

fn wallet_refund(customer: &str, payment_id: PaymentId, part: i64, minute: i64) -> Posting {
    let refund = WalletRefund {
        refund_id: RefundId::new(),
        payment_id,
        merchant_id: MerchantId::new("m"),
        customer_id: customer.into(),
        amount: amount(part),
        currency: currency("usd"),
    };
    Posting::wallet_refund(&refund, at(minute)).expect("wallet refund")
}

fn top_up(id: TransactionId, customer: &str, total: i64, minute: i64) -> Posting {
    let top_up = WalletTopUp {
        id,
        merchant_id: MerchantId::new("m"),
        customer_id: customer.into(),
        amount: amount(total),
        currency: currency("usd"),
    };
    Posting::wallet_top_up(&top_up, at(minute)).expect("top-up")
}

fn wallet(customer: &str) -> Account {
    Account::customer_wallet(&MerchantId::new("m"), customer).expect("wallet")
}

/// What a wallet can spend: credits − debits (it is a liability).
async fn spendable(raw: &mut Raw, customer: &str) -> i64 {
    let filter = BalanceFilter {
        account: Some(wallet(customer)),
        ..BalanceFilter::default()
    };
    match raw.balances(&filter).await.as_slice() {
        [] => 0,
        [balance] => balance.credits - balance.debits,
        more => panic!("one balance per account and currency: {more:?}"),
    }
}

/// (account, currency) → (debits, credits).
type Totals = BTreeMap<(String, &'static str), (i64, i64)>;

/// The totals of the lines of `postings` stamped before `before`.
fn expected_totals(postings: &[Posting], before: Timestamp) -> Totals {
    let mut totals = Totals::new();
    for posting in postings.iter().filter(|p| p.created_at() < before) {
        for entry in posting.entries() {
            let key = (entry.account.to_string(), entry.currency.code());
            let slot = totals.entry(key).or_default();
            match entry.direction {
                payments::domain::Direction::Debit => slot.0 += entry.amount.minor_units(),
                payments::domain::Direction::Credit => slot.1 += entry.amount.minor_units(),
            }
        }
    }
    totals
}

fn totals_of(balances: &[Balance]) -> Totals {
    balances
        .iter()
        .map(|b| {
            assert_eq!(b.balance, b.debits - b.credits, "{b:?}");
            (
                (b.account.to_string(), b.currency.code()),
                (b.debits, b.credits),
            )
        })
        .collect()
}

/// A day of business for two merchants in two currencies, minute by
/// minute: card payments with and without fees, partial and full refunds,
/// a wallet topped up, paid from and refunded to. Returns what was posted.
async fn mixed_book(raw: &mut Raw) -> Vec<Posting> {
    let (p1, p2, p3, w1) = (
        PaymentId::new(),
        PaymentId::new(),
        PaymentId::new(),
        PaymentId::new(),
    );
    let book = vec![
        card("m", p1, 1_000, 30, "usd", 1),
        card("m", p2, 5_000, 0, "eur", 2),
        top_up(TransactionId::new(), "c", 2_500, 3),
        card_refund("m", p1, 400, "usd", 4),
        wallet_payment("c", w1, 2_000, 5),
        card("other", p3, 20, 30, "usd", 6),
        card_refund("m", p2, 5_000, "eur", 7),
        wallet_refund("c", w1, 500, 8),
        card_refund("m", p1, 600, "usd", 9),
    ];
    for posting in &book {
        assert_eq!(raw.post(posting).await, PostOutcome::Posted, "{posting:?}");
    }
    book
}

#[rstest]
#[tokio::test]
async fn one_posting_per_payment_per_refund_and_per_top_up(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let mut raw = Raw::open(&db).await;
    let payment_id = PaymentId::new();
    let payment = card("m", payment_id, 1_000, 30, "usd", 1);
    assert_eq!(raw.post(&payment).await, PostOutcome::Posted);
    // The same posting again, and another one for the same payment.
    assert_eq!(raw.post(&payment).await, PostOutcome::AlreadyPosted);
    let again = card("m", payment_id, 1_000, 30, "usd", 2);
    assert_eq!(raw.post(&again).await, PostOutcome::AlreadyPosted);
    assert_eq!(raw.count("ledger_transactions").await, 1);
    assert_eq!(raw.count("ledger_entries").await, 3);

    let refund_id = RefundId::new();
    let refund = card_refund_with_id(refund_id, "m", payment_id, 400, "usd", 3);
    assert_eq!(raw.post(&refund).await, PostOutcome::Posted);
    let refund_again = card_refund_with_id(refund_id, "m", payment_id, 400, "usd", 4);
    assert_eq!(raw.post(&refund_again).await, PostOutcome::AlreadyPosted);
    let second_refund = card_refund("m", payment_id, 600, "usd", 5);
    assert_eq!(raw.post(&second_refund).await, PostOutcome::Posted);

    let top_up_id = TransactionId::new();
    assert_eq!(
        raw.post(&top_up(top_up_id, "c", 100, 6)).await,
        PostOutcome::Posted
    );
    assert_eq!(
        raw.post(&top_up(top_up_id, "c", 100, 7)).await,
        PostOutcome::AlreadyPosted
    );
    assert_eq!(raw.count("ledger_transactions").await, 4);
    assert_eq!(spendable(&mut raw, "c").await, 100);

    // The payment's postings read back as they were built, oldest first.
    assert_eq!(
        raw.postings_for_payment(payment_id).await,
        vec![payment, refund, second_refund]
    );
    let revenue = BalanceFilter {
        account: Some(Account::merchant_revenue(&MerchantId::new("m")).expect("account")),
        ..BalanceFilter::default()
    };
    let balances = raw.balances(&revenue).await;
    assert_eq!(
        totals_of(&balances).into_values().collect::<Vec<_>>(),
        vec![(1_000, 1_000)]
    );
}

#[rstest]
#[tokio::test]
async fn a_repeated_wallet_payment_takes_nothing_more(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let mut raw = Raw::open(&db).await;
    assert_eq!(
        raw.post(&top_up(TransactionId::new(), "c", 1_000, 1)).await,
        PostOutcome::Posted
    );
    let payment_id = PaymentId::new();
    assert_eq!(
        raw.post(&wallet_payment("c", payment_id, 400, 2)).await,
        PostOutcome::Posted
    );
    // A replay the wallet could pay again: the debit is given back.
    assert_eq!(
        raw.post(&wallet_payment("c", payment_id, 400, 3)).await,
        PostOutcome::AlreadyPosted
    );
    // A replay the wallet could not pay: still a replay, not a decline.
    assert_eq!(
        raw.post(&wallet_payment("c", payment_id, 900, 4)).await,
        PostOutcome::AlreadyPosted
    );
    assert_eq!(spendable(&mut raw, "c").await, 600);
    assert_eq!(raw.count("ledger_transactions").await, 2);
}

#[rstest]
#[tokio::test]
async fn a_refusal_writes_nothing_and_the_transaction_goes_on(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let mut raw = Raw::open(&db).await;
    raw.begin().await;
    // No balance row at all yet.
    let too_much = wallet_payment("c", PaymentId::new(), 1, 1);
    assert_eq!(
        raw.post_in_tx(&too_much).await,
        PostOutcome::InsufficientFunds {
            account: wallet("c")
        }
    );
    // The same transaction goes on, with no savepoint, and commits.
    assert_eq!(
        raw.post_in_tx(&top_up(TransactionId::new(), "c", 500, 2))
            .await,
        PostOutcome::Posted
    );
    let still_too_much = wallet_payment("c", PaymentId::new(), 501, 3);
    assert_eq!(
        raw.post_in_tx(&still_too_much).await,
        PostOutcome::InsufficientFunds {
            account: wallet("c")
        }
    );
    raw.commit().await;
    assert_eq!(raw.count("ledger_transactions").await, 1);
    assert_eq!(raw.count("ledger_entries").await, 2);
    let wallet_row = raw
        .balances(&BalanceFilter {
            account: Some(wallet("c")),
            ..BalanceFilter::default()
        })
        .await;
    assert_eq!(
        totals_of(&wallet_row).into_values().collect::<Vec<_>>(),
        vec![(0, 500)]
    );
}

#[rstest]
#[tokio::test]
async fn the_database_refuses_edits(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let mut raw = Raw::open(&db).await;
    let book = mixed_book(&mut raw).await;
    let payment_id = book[0].payment_id().expect("a payment");
    let before = (
        raw.count("ledger_transactions").await,
        raw.count("ledger_entries").await,
        raw.balances(&BalanceFilter::default()).await,
    );
    // Each statement, and (in lowercase) part of the reason either
    // backend gives for refusing it.
    let mut refused: Vec<(String, &[&str])> = vec![
        ("UPDATE ledger_entries SET amount = amount + 1".into(), APPEND_ONLY),
        ("UPDATE ledger_entries SET account = 'merchant_revenue:x'".into(), APPEND_ONLY),
        ("DELETE FROM ledger_entries".into(), APPEND_ONLY),
        ("UPDATE ledger_transactions SET created_at = 0".into(), APPEND_ONLY),
        ("DELETE FROM ledger_transactions".into(), APPEND_ONLY),
        ("DELETE FROM ledger_balances".into(), APPEND_ONLY),
        // A wallet below zero, by hand: the CHECK is the last line of defence.
        (
            "UPDATE ledger_balances SET debits = credits + 1 WHERE account = 'customer_wallet:m/c'".into(),
            CHECK,
        ),
        // A second posting for a payment, bypassing the code: unique in the schema.
        (
            format!(
                "INSERT INTO ledger_transactions (id, kind, merchant_id, payment_id, refund_id, created_at)
                 VALUES ('{}', 'payment', 'm', '{payment_id}', NULL, 0)",
                TransactionId::new()
            ),
            UNIQUE,
        ),
        // A zero line.
        (
            format!(
                "INSERT INTO ledger_entries (transaction_id, line, account, direction, amount, currency, created_at)
                 VALUES ('{}', 99, 'merchant_revenue:m', 'debit', 0, 'usd', 0)",
                book[0].id()
            ),
            CHECK,
        ),
    ];
    if backend == Backend::Postgres {
        // TRUNCATE skips row triggers; statement triggers refuse it.
        refused.push(("TRUNCATE ledger_entries".into(), APPEND_ONLY));
        refused.push(("TRUNCATE ledger_transactions CASCADE".into(), APPEND_ONLY));
    }
    for (sql, reasons) in &refused {
        let error = match raw.sql(sql).await {
            Ok(rows) => panic!("the database accepted {sql} ({rows} rows)"),
            Err(error) => error.to_string().to_lowercase(),
        };
        assert!(
            reasons.iter().any(|reason| error.contains(reason)),
            "{sql} refused for another reason: {error}"
        );
    }
    let after = (
        raw.count("ledger_transactions").await,
        raw.count("ledger_entries").await,
        raw.balances(&BalanceFilter::default()).await,
    );
    assert_eq!(before, after);
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_wallet_debits_never_overdraw(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let db = Arc::new(db);
    let mut raw = Raw::open(&db).await;
    let funds = top_up(TransactionId::new(), "c", WALLET_FUNDS, 0);
    assert_eq!(raw.post(&funds).await, PostOutcome::Posted);

    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(poll_wallet(Arc::clone(&db), Arc::clone(&done)));
    let start = Arc::new(tokio::sync::Barrier::new(CONCURRENT_DEBITS));
    let debits: Vec<_> = (0..CONCURRENT_DEBITS)
        .map(|i| {
            let (db, start) = (Arc::clone(&db), Arc::clone(&start));
            tokio::spawn(async move {
                let mut conn = Raw::open(&db).await;
                let posting = wallet_payment("c", PaymentId::new(), DEBIT, i as i64 + 1);
                start.wait().await;
                conn.post(&posting).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for debit in debits {
        outcomes.push(debit.await.expect("debit task"));
    }
    done.store(true, Ordering::SeqCst);
    let reads = reader.await.expect("reader task");

    let posted = outcomes
        .iter()
        .filter(|o| **o == PostOutcome::Posted)
        .count();
    let declined = PostOutcome::InsufficientFunds {
        account: wallet("c"),
    };
    assert_eq!(posted as i64, WALLET_FUNDS / DEBIT, "{outcomes:?}");
    assert!(outcomes
        .iter()
        .all(|o| *o == PostOutcome::Posted || *o == declined));
    assert_eq!(spendable(&mut raw, "c").await, 0);
    assert!(reads > 0, "the reader never read");
    // The lines agree with the running total.
    let as_of = BalanceFilter {
        account: Some(wallet("c")),
        as_of: Some(at(CONCURRENT_DEBITS as i64 + 1)),
        ..BalanceFilter::default()
    };
    let now = BalanceFilter {
        account: Some(wallet("c")),
        ..BalanceFilter::default()
    };
    assert_eq!(raw.balances(&as_of).await, raw.balances(&now).await);
}

/// Reads the wallet until `done`, asserting it is never below zero;
/// answers how many reads it made.
async fn poll_wallet(db: Arc<TestDb>, done: Arc<AtomicBool>) -> usize {
    let mut raw = Raw::open(&db).await;
    let mut reads = 0;
    while !done.load(Ordering::SeqCst) {
        let spendable = spendable(&mut raw, "c").await;
        assert!(spendable >= 0, "the wallet went negative: {spendable}");
        reads += 1;
        tokio::task::yield_now().await;
    }
    reads
}

#[rstest]
#[tokio::test]
async fn balances_as_of_are_the_lines_before_and_sum_to_zero(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let mut raw = Raw::open(&db).await;
    let book = mixed_book(&mut raw).await;
    let now = raw.balances(&BalanceFilter::default()).await;
    for minute in 0..=10 {
        let as_of = BalanceFilter {
            as_of: Some(at(minute)),
            ..BalanceFilter::default()
        };
        let then = raw.balances(&as_of).await;
        assert_eq!(
            totals_of(&then),
            expected_totals(&book, at(minute)),
            "as of minute {minute}"
        );
        assert_zero_sum(&then);
    }
    // Strictly before: a line stamped at the instant is not in it yet.
    let at_refund = raw
        .balances(&BalanceFilter {
            as_of: Some(at(9)),
            ..BalanceFilter::default()
        })
        .await;
    assert_eq!(totals_of(&at_refund), expected_totals(&book[..8], at(60)));
    // After the last line, as_of and the running totals agree.
    let later = BalanceFilter {
        as_of: Some(at(60)),
        ..BalanceFilter::default()
    };
    assert_eq!(raw.balances(&later).await, now);
    assert_eq!(totals_of(&now), expected_totals(&book, at(60)));
    assert_zero_sum(&now);
    // A fully refunded card payment: revenue back to zero, the fee kept,
    // clearing short by the fee.
    let filtered = |account: &str, code: &str| BalanceFilter {
        account: Some(account.parse().expect("account")),
        currency: Some(currency(code)),
        as_of: None,
    };
    let revenue = raw.balances(&filtered("merchant_revenue:m", "eur")).await;
    assert_eq!(
        revenue.iter().map(|b| b.balance).collect::<Vec<_>>(),
        vec![0]
    );
    let fees = raw
        .balances(&filtered("provider_fees:sandbox_a", "usd"))
        .await;
    assert_eq!(fees.iter().map(|b| b.balance).collect::<Vec<_>>(), vec![60]);
}

/// Every currency's balances add up to zero (debits equal credits).
fn assert_zero_sum(balances: &[Balance]) {
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for balance in balances {
        *sums.entry(balance.currency.code()).or_default() += balance.balance;
    }
    assert!(sums.values().all(|sum| *sum == 0), "{sums:?}");
}

#[rstest]
#[tokio::test]
async fn transactions_page_newest_first(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let (_store, db) = open_store(backend).await;
    let mut raw = Raw::open(&db).await;
    let book = mixed_book(&mut raw).await;
    let newest_first: Vec<Posting> = book.iter().rev().cloned().collect();
    let page = |starting_after: Option<TransactionId>| TransactionFilter {
        starting_after,
        limit: 4,
        ..TransactionFilter::default()
    };
    let first = raw.transactions(&page(None)).await;
    assert_eq!(first, newest_first[..4]);
    let second = raw.transactions(&page(first.last().map(Posting::id))).await;
    assert_eq!(second, newest_first[4..8]);
    let third = raw
        .transactions(&page(second.last().map(Posting::id)))
        .await;
    assert_eq!(third, newest_first[8..]);

    let p1 = book[0].payment_id();
    let by_payment = TransactionFilter {
        payment_id: p1,
        limit: 10,
        ..TransactionFilter::default()
    };
    let postings = raw.transactions(&by_payment).await;
    assert_eq!(
        postings,
        vec![book[8].clone(), book[3].clone(), book[0].clone()]
    );
    let other = TransactionFilter {
        merchant_id: Some(MerchantId::new("other")),
        limit: 10,
        ..TransactionFilter::default()
    };
    assert_eq!(raw.transactions(&other).await, vec![book[5].clone()]);
}
