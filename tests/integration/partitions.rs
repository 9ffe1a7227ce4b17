//! PostgreSQL's append-only tables are partitioned by month (issue 9,
//! DESIGN §11): created ahead by the engine, rows land in their month,
//! the append-only rules hold on every partition, and a month nobody
//! created never refuses a write.

use crate::common::{payment_body, postgres_url, unique, Backend, TestDb, TestServer};
use chrono::Datelike;
use sqlx::{Connection, PgConnection, Row};

async fn connect(db: &TestDb) -> PgConnection {
    let mut conn = PgConnection::connect(&postgres_url())
        .await
        .expect("connect");
    sqlx::query(&format!("SET search_path = \"{}\"", db.schema))
        .execute(&mut conn)
        .await
        .expect("search_path");
    conn
}

/// The partitions of `table`, by name.
async fn partitions(conn: &mut PgConnection, table: &str) -> Vec<String> {
    sqlx::query(
        "SELECT c.relname AS name FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = to_regclass($1) ORDER BY 1",
    )
    .bind(table)
    .fetch_all(conn)
    .await
    .expect("partitions")
    .iter()
    .map(|row| row.get::<String, _>("name"))
    .collect()
}

fn month_name(table: &str, months_ahead: u32) -> String {
    let now = chrono::Utc::now().date_naive();
    let first = now.with_day0(0).expect("first of month");
    let month = first
        .checked_add_months(chrono::Months::new(months_ahead))
        .expect("month");
    format!("{table}_y{}", month.format("%Ym%m"))
}

#[tokio::test]
async fn months_are_created_ahead_and_rows_land_in_theirs() {
    let db = TestDb::new(Backend::Postgres);
    let server = TestServer::start_on(&db, Default::default()).await;
    let reply = server
        .create(
            &unique("key"),
            &payment_body(&unique("ord"), "pm_card_visa"),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let id = reply.json()["id"].as_str().expect("id").to_string();

    let mut conn = connect(&db).await;
    for table in ["payment_events", "ledger_entries"] {
        let found = partitions(&mut conn, table).await;
        for ahead in 0..=3 {
            let wanted = month_name(table, ahead);
            assert!(found.contains(&wanted), "{wanted} missing in {found:?}");
        }
        assert!(found.contains(&format!("{table}_default")), "{found:?}");
    }
    let homes: Vec<String> = sqlx::query(
        "SELECT DISTINCT tableoid::regclass::text AS home FROM payment_events WHERE payment_id = $1",
    )
    .bind(&id)
    .fetch_all(&mut conn)
    .await
    .expect("homes")
    .iter()
    .map(|row| row.get::<String, _>("home"))
    .collect();
    assert_eq!(homes, vec![month_name("payment_events", 0)]);
    let posted: Vec<String> = sqlx::query(
        "SELECT DISTINCT e.tableoid::regclass::text AS home FROM ledger_entries e
         JOIN ledger_transactions t ON t.id = e.transaction_id WHERE t.payment_id = $1",
    )
    .bind(&id)
    .fetch_all(&mut conn)
    .await
    .expect("ledger homes")
    .iter()
    .map(|row| row.get::<String, _>("home"))
    .collect();
    assert_eq!(posted, vec![month_name("ledger_entries", 0)]);
}

#[tokio::test]
async fn every_partition_is_append_only() {
    let db = TestDb::new(Backend::Postgres);
    let server = TestServer::start_on(&db, Default::default()).await;
    let reply = server
        .create(
            &unique("key"),
            &payment_body(&unique("ord"), "pm_card_visa"),
        )
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let mut conn = connect(&db).await;
    for statement in [
        "UPDATE payment_events SET type = 'x'",
        "DELETE FROM payment_events",
        "UPDATE ledger_entries SET amount = amount + 1",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries",
    ] {
        let refused = sqlx::query(statement).execute(&mut conn).await;
        assert!(refused.is_err(), "{statement} was allowed");
    }
    // Through a partition directly, too.
    let month = month_name("payment_events", 0);
    let refused = sqlx::query(&format!("DELETE FROM {month}"))
        .execute(&mut conn)
        .await;
    assert!(refused.is_err(), "DELETE on {month} was allowed");
    assert!(db.count_rows("payment_events").await > 0);
}

#[tokio::test]
async fn a_month_nobody_created_goes_to_the_default_and_is_then_skipped() {
    let db = TestDb::new(Backend::Postgres);
    let server = TestServer::start_on(&db, Default::default()).await;
    drop(server);
    let mut conn = connect(&db).await;
    // Ten years ahead: no partition. The row is kept, in the default.
    let far_us: i64 = (chrono::Utc::now() + chrono::Duration::days(3650)).timestamp_micros();
    sqlx::query(
        "INSERT INTO payment_events (id, payment_id, merchant_id, type, data, created_at)
         VALUES ('evt_far', 'pay_far', 'default', 'payment.created', '{}', $1)",
    )
    .bind(far_us)
    .execute(&mut conn)
    .await
    .expect("a row for a month with no partition");
    let home: String = sqlx::query_scalar(
        "SELECT tableoid::regclass::text FROM payment_events WHERE id = 'evt_far'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("home");
    assert_eq!(home, "payment_events_default");
    // Ensuring that month later cannot move the row: it is skipped, not an error.
    let created: i32 =
        sqlx::query_scalar("SELECT payments_ensure_partitions('payment_events', $1, $1, 0)")
            .bind(far_us)
            .fetch_one(&mut conn)
            .await
            .expect("ensure");
    assert_eq!(created, 0);
    // A month with no rows in the default is created.
    let created: i32 =
        sqlx::query_scalar("SELECT payments_ensure_partitions('payment_events', $1, $1, 0)")
            .bind(far_us + 40 * 86_400_000_000)
            .fetch_one(&mut conn)
            .await
            .expect("ensure");
    assert_eq!(created, 1);
}
