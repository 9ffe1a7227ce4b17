//! `--seed-payments N`: fills a scenario's fresh store with N settled
//! payments before the engine starts, so the bench measures a store that
//! has grown (issue 9: throughput with millions of payments in the store
//! within 10 % of an empty one).
//!
//! Each seeded payment has what a real one leaves: its payment and order
//! rows, one attempt, three audit events, its ledger posting (two lines)
//! and, for the newest ones, an idempotency key (keys older than the
//! retention are pruned in production, so a grown store holds only a
//! day's worth). They are spread over the last [`SEED_SPAN_DAYS`] days, so
//! PostgreSQL's month partitions hold them as they would real ones. The
//! rows are generated inside the database (`generate_series`, or a
//! recursive CTE on SQLite) a chunk per transaction: a client sending 10
//! million rows one by one would measure itself.

use super::setup::Setup;
use super::Backend;
use sqlx::{Connection, Executor};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Payments per transaction.
const SEED_CHUNK: u64 = 50_000;
/// Most payments one seed may ask for.
pub const MAX_SEED_PAYMENTS: u64 = 100_000_000;
/// How far back seeded payments go.
const SEED_SPAN_DAYS: i64 = 30;
/// The newest seeded payment is this old, so the run's own are apart.
const SEED_GAP_SECS: i64 = 3_600;
/// Seeded payments that keep an idempotency key: about a day's worth at
/// the bench's rates.
const SEEDED_KEYS: u64 = 1_000_000;
/// The merchant the bench's development key belongs to.
const MERCHANT: &str = "default";

/// Which SQL dialect the statements are written in.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// The row generator and the id expression, per dialect.
fn series(dialect: Dialect, lo: u64, hi: u64) -> String {
    match dialect {
        Dialect::Postgres => {
            format!("WITH s(i) AS (SELECT generate_series({lo}::bigint, {hi}::bigint - 1))")
        }
        Dialect::Sqlite => format!(
            "WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {hi})"
        ),
    }
}

fn hex(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => "lpad(to_hex(i), 32, '0')",
        Dialect::Sqlite => "printf('%032x', i)",
    }
}

/// The statements that seed payments `lo..hi`, created at `start_us +
/// i * step_us`.
fn chunk_statements(d: Dialect, lo: u64, hi: u64, start_us: i64, step_us: i64) -> Vec<String> {
    let (s, h) = (series(d, lo, hi), hex(d));
    let at = format!("({start_us} + i * {step_us})");
    let amount = "(1000 + i % 9000)";
    vec![
        format!(
            "{s} INSERT INTO payments (id, merchant_id, order_id, customer_id, status, amount, currency,
                payment_method, provider, provider_payment_id, created_at, updated_at)
             SELECT 'pay_' || {h}, '{MERCHANT}', 'seed_ord_' || i, 'seed_cus_' || (i % 100000),
                'succeeded', {amount}, 'usd', 'pm_card_visa', 'sandbox_a', 'ch_' || {h}, {at}, {at} FROM s"
        ),
        format!(
            "{s} INSERT INTO orders (merchant_id, order_id, payment_id, status, updated_at)
             SELECT '{MERCHANT}', 'seed_ord_' || i, 'pay_' || {h}, 'succeeded', {at} FROM s"
        ),
        format!(
            "{s} INSERT INTO attempts (id, payment_id, number, provider, provider_idempotency_key,
                outcome, latency_ms, provider_payment_id, created_at, updated_at)
             SELECT 'att_' || {h}, 'pay_' || {h}, 1, 'sandbox_a', 'seed_' || i, 'succeeded', 1,
                'ch_' || {h}, {at}, {at} FROM s"
        ),
        format!(
            "{s}, e(n, type, from_status, to_status) AS (VALUES
                (1, 'payment.created', NULL, 'processing'),
                (2, 'provider.called', NULL, NULL),
                (3, 'payment.succeeded', 'processing', 'succeeded'))
             INSERT INTO payment_events (id, payment_id, merchant_id, type, from_status, to_status,
                data, created_at)
             SELECT 'evt_' || n || {h}, 'pay_' || {h}, '{MERCHANT}', type, from_status, to_status,
                '{{}}', {at} FROM s, e"
        ),
        format!(
            "{s} INSERT INTO ledger_transactions (id, kind, merchant_id, payment_id, created_at)
             SELECT 'txn_' || {h}, 'payment', '{MERCHANT}', 'pay_' || {h}, {at} FROM s"
        ),
        format!(
            "{s}, e(line, account, direction) AS (VALUES
                (1, 'provider_clearing:sandbox_a', 'debit'),
                (2, 'merchant_revenue:{MERCHANT}', 'credit'))
             INSERT INTO ledger_entries (transaction_id, line, account, direction, amount, currency,
                created_at)
             SELECT 'txn_' || {h}, line, account, direction, {amount}, 'usd', {at} FROM s, e"
        ),
    ]
}

/// The idempotency keys of payments `lo..hi`, all recent (see [`SEEDED_KEYS`]).
fn key_statement(d: Dialect, lo: u64, hi: u64, now_us: i64) -> String {
    let (s, h) = (series(d, lo, hi), hex(d));
    format!(
        "{s} INSERT INTO idempotency_keys (merchant_id, idempotency_key, fingerprint, payment_id,
            order_id, response_body, created_at, completed_at)
         SELECT '{MERCHANT}', 'seed_key_' || i, 'seed', 'pay_' || {h}, 'seed_ord_' || i, '{{}}',
            {now_us} - i % 1000000, {now_us} - i % 1000000 FROM s"
    )
}

/// The balances the seeded lines add up to (a store whose balances
/// disagree with its lines would be reported `unbalanced`).
fn balance_statements(payments: u64) -> Vec<String> {
    // Σ (1000 + i % 9000) for i in 0..n, exactly.
    let (full, rest) = (payments / 9_000, payments % 9_000);
    let per_cycle: u64 = (0..9_000u64).map(|i| 1_000 + i).sum();
    let partial: u64 = (0..rest).map(|i| 1_000 + i).sum();
    let total = full * per_cycle + partial;
    [
        ("provider_clearing:sandbox_a", total, 0),
        ("merchant_revenue:default", 0, total),
    ]
    .iter()
    .map(|(account, debits, credits)| {
        format!(
            "INSERT INTO ledger_balances (account, currency, debits, credits)
             VALUES ('{account}', 'usd', {debits}, {credits})
             ON CONFLICT (account, currency, slot) DO UPDATE SET
                debits = ledger_balances.debits + excluded.debits,
                credits = ledger_balances.credits + excluded.credits"
        )
    })
    .collect()
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Seeds `payments` payments into the scenario's store (migrating it
/// first); returns how long it took.
pub async fn seed(setup: &Setup, backend: Backend, payments: u64) -> Result<Duration, String> {
    let started = Instant::now();
    let config = setup.config()?;
    let store = payments::store::open(&config.database_url(), &config.database_schema)
        .await
        .map_err(|e| format!("seed: cannot open the store: {e}"))?;
    store.close().await;
    let now = now_us();
    let end_us = now - SEED_GAP_SECS * 1_000_000;
    let start_us = now - SEED_SPAN_DAYS * 86_400_000_000;
    let step_us = ((end_us - start_us) / i64::try_from(payments.max(1)).unwrap_or(1)).max(1);
    let mut statements = Vec::new();
    let dialect = match backend {
        Backend::Sqlite => Dialect::Sqlite,
        Backend::Postgres => Dialect::Postgres,
    };
    let mut lo = 0;
    while lo < payments {
        let hi = (lo + SEED_CHUNK).min(payments);
        let mut chunk = chunk_statements(dialect, lo, hi, start_us, step_us);
        let keyed_from = payments.saturating_sub(SEEDED_KEYS);
        if hi > keyed_from {
            chunk.push(key_statement(dialect, lo.max(keyed_from), hi, now));
        }
        statements.push(chunk);
        lo = hi;
    }
    statements.push(balance_statements(payments));
    match backend {
        Backend::Sqlite => run_sqlite(&config, statements).await?,
        Backend::Postgres => run_postgres(&config, statements).await?,
    }
    Ok(started.elapsed())
}

async fn run_sqlite(config: &payments::Config, chunks: Vec<Vec<String>>) -> Result<(), String> {
    let path = config.default_sqlite_path();
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .map_err(|e| format!("seed: {e}"))?;
    run_chunks::<sqlx::Sqlite>(&mut conn, chunks).await
}

async fn run_postgres(config: &payments::Config, chunks: Vec<Vec<String>>) -> Result<(), String> {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(&config.database_url())
        .map_err(|e| format!("seed: {e}"))?
        .options([("search_path", config.database_schema.as_str())]);
    let mut conn = sqlx::PgConnection::connect_with(&options)
        .await
        .map_err(|e| format!("seed: {e}"))?;
    run_chunks::<sqlx::Postgres>(&mut conn, chunks).await
}

/// One transaction per chunk (BEGIN and COMMIT as statements, so one
/// function serves both drivers).
async fn run_chunks<DB>(conn: &mut DB::Connection, chunks: Vec<Vec<String>>) -> Result<(), String>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: Executor<'e, Database = DB>,
{
    let total = chunks.len();
    for (n, chunk) in chunks.into_iter().enumerate() {
        let statements = std::iter::once("BEGIN".to_string())
            .chain(chunk)
            .chain(std::iter::once("COMMIT".to_string()));
        for statement in statements {
            (&mut *conn)
                .execute(statement.as_str())
                .await
                .map_err(|e| format!("seed: {e}\n{statement}"))?;
        }
        if (n + 1) % 20 == 0 {
            eprintln!("  seeded {} of {total} chunks", n + 1);
        }
    }
    Ok(())
}
