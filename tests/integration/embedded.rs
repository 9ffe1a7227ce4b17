//! The embedding API: `Engine::start` from a plain tokio runtime, and the
//! shipped example run as a real process.

use crate::common::{Backend, TestDb};
use payments::domain::{Amount, Currency, MerchantId, PaymentStatus};
use payments::{Config, Engine, EngineError, EngineHandle, PaymentRequest};
use rstest::rstest;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}

fn config_in(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

fn request(order: &str, token: &str) -> PaymentRequest {
    PaymentRequest {
        amount: Amount::new(700).expect("amount"),
        currency: Currency::parse("gbp").expect("gbp"),
        customer_id: "cus_host".into(),
        order_id: order.into(),
        payment_method: token.into(),
        description: None,
        metadata: BTreeMap::new(),
        provider: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_handle_works_from_a_host_tokio_runtime() {
    assert_send_sync_clone::<EngineHandle>();
    let dir = tempfile::tempdir().expect("dir");
    let engine = Engine::start(config_in(dir.path())).await.expect("start");
    let merchant = MerchantId::new("host");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (engine, merchant) = (engine.clone(), merchant.clone());
        tasks.push(tokio::spawn(async move {
            engine
                .create_payment(
                    &merchant,
                    &format!("k{i}"),
                    request(&format!("o{i}"), "pm_card_visa"),
                )
                .await
        }));
    }
    for task in tasks {
        let created = task.await.expect("join").expect("create");
        assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    }
    let page = engine
        .list_payments(
            &merchant,
            payments::store::PaymentFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(page.data.len(), 20);
    // Validation applies to embedders too, before anything is written.
    let bad = engine
        .create_payment(&merchant, "", request("o-bad", "pm_card_visa"))
        .await;
    assert!(
        matches!(bad, Err(EngineError::InvalidParam { ref param, .. }) if param == "Idempotency-Key"),
        "{bad:?}"
    );
    engine.shutdown().await;
    // After shutdown the engine refuses work instead of hanging.
    let after = engine
        .create_payment(&merchant, "late", request("o-late", "pm_card_visa"))
        .await;
    assert!(after.is_err(), "{after:?}");
}

#[tokio::test]
async fn payments_survive_an_engine_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let merchant = MerchantId::new("host");
    let engine = Engine::start(config_in(dir.path())).await.expect("start");
    let created = engine
        .create_payment(&merchant, "k", request("o", "pm_card_visa"))
        .await
        .expect("create");
    engine.shutdown().await;
    let engine = Engine::start(config_in(dir.path())).await.expect("restart");
    let found = engine
        .payment(&merchant, created.payment.id)
        .await
        .expect("found");
    assert_eq!(found.status, PaymentStatus::Succeeded);
    let replay = engine
        .create_payment(&merchant, "k", request("o", "pm_card_visa"))
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(replay.body, created.body);
    engine.shutdown().await;
}

/// `target/debug/examples/embedded`, built by `cargo test` beside this test.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target profile dir");
    profile_dir
        .join("examples")
        .join(format!("embedded{}", std::env::consts::EXE_SUFFIX))
}

#[test]
fn the_embedded_example_charges_a_payment() {
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} missing: cargo test builds examples",
        binary.display()
    );
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(&binary)
        .env("PAYMENTS_DATA_DIR", dir.path())
        .env_remove("DATABASE_URL")
        .output()
        .expect("run example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "example failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" is succeeded via sandbox_a"), "{stdout}");
}

/// A database of its own for one test, dropped afterwards.
struct ScratchDatabase {
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create() -> ScratchDatabase {
        use sqlx::Connection;
        let base = crate::common::postgres_url();
        let name = format!("host_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required at {base}: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create database");
        let prefix = base
            .rsplit_once('/')
            .map_or(base.as_str(), |(prefix, _)| prefix);
        ScratchDatabase {
            url: format!("{prefix}/{name}"),
            name,
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let _ = crate::common::block_on(async move {
            use sqlx::Connection;
            let mut admin = sqlx::PgConnection::connect(&crate::common::postgres_url()).await?;
            sqlx::query(&sql).execute(&mut admin).await.map(|_| ())
        });
    }
}

#[tokio::test]
async fn the_engine_and_a_host_with_its_own_sqlx_migrations_share_a_database() {
    let database = ScratchDatabase::create().await;
    // The host: its own sqlx migrations, in the default schema, with tables
    // named like the engine's.
    let migrations = tempfile::tempdir().expect("dir");
    std::fs::write(
        migrations.path().join("0001_host.sql"),
        "CREATE TABLE payments (id BIGSERIAL PRIMARY KEY, note TEXT NOT NULL);
         CREATE TABLE orders (id BIGSERIAL PRIMARY KEY);
         INSERT INTO payments (note) VALUES ('the host''s row');",
    )
    .expect("write migration");
    let host_pool = sqlx::PgPool::connect(&database.url)
        .await
        .expect("host pool");
    let host_migrator = sqlx::migrate::Migrator::new(migrations.path())
        .await
        .expect("host migrator");
    host_migrator
        .run(&host_pool)
        .await
        .expect("host migrations");

    let dir = tempfile::tempdir().expect("dir");
    let config = Config {
        database_url: Some(database.url.clone()),
        ..config_in(dir.path())
    };
    let engine = Engine::start(config.clone())
        .await
        .expect("engine on the host's database");
    let merchant = MerchantId::new("host");
    let created = engine
        .create_payment(&merchant, "k", request("o", "pm_card_visa"))
        .await
        .expect("create");
    assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    engine.shutdown().await;
    // Both migration histories are intact: the host's runner still accepts
    // its history, and the engine restarts on its own.
    host_migrator
        .run(&host_pool)
        .await
        .expect("host migrations rerun cleanly");
    let engine = Engine::start(config).await.expect("engine restarts");
    assert_eq!(
        engine
            .payment(&merchant, created.payment.id)
            .await
            .expect("found")
            .status,
        PaymentStatus::Succeeded
    );
    engine.shutdown().await;

    use sqlx::Row;
    let host_migrations: i64 = sqlx::query("SELECT COUNT(*) AS n FROM public._sqlx_migrations")
        .fetch_one(&host_pool)
        .await
        .expect("host history")
        .get("n");
    assert_eq!(
        host_migrations, 1,
        "the engine wrote nothing into the host's migration history"
    );
    let host_note: String = sqlx::query("SELECT note FROM public.payments")
        .fetch_one(&host_pool)
        .await
        .expect("host table")
        .get("note");
    assert_eq!(host_note, "the host's row");
    let engine_payments: i64 = sqlx::query("SELECT COUNT(*) AS n FROM payments.payments")
        .fetch_one(&host_pool)
        .await
        .expect("engine table")
        .get("n");
    assert_eq!(engine_payments, 1);
    host_pool.close().await;
}

#[tokio::test]
async fn a_configured_stripe_provider_is_wired_through_the_engine() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stripe = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header("Authorization", "Bearer sk_test_wired"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "pi_wired",
            "object": "payment_intent",
            "amount": 700,
            "currency": "gbp",
            "status": "succeeded",
            "latest_charge": "ch_wired",
        })))
        .expect(1)
        .mount(&stripe)
        .await;
    // The key comes from the environment variable the configuration names.
    let variable = format!("TEST_STRIPE_KEY_{}", uuid::Uuid::now_v7().simple());
    std::env::set_var(&variable, "sk_test_wired");
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config_in(dir.path());
    config.providers = vec![payments::config::ProviderConfig {
        kind: payments::config::ProviderKind::Stripe,
        base_url: Some(stripe.uri()),
        api_key_env: Some(variable),
        call_timeout_ms: 2_000,
        ..payments::config::ProviderConfig::sandbox("stripe")
    }];
    let engine = Engine::start(config).await.expect("engine with stripe");
    let merchant = MerchantId::new("host");
    let created = engine
        .create_payment(&merchant, "k", request("o", "pm_card_visa"))
        .await
        .expect("create");
    assert_eq!(created.payment.status, PaymentStatus::Succeeded);
    assert_eq!(created.payment.provider.as_deref(), Some("stripe"));
    assert_eq!(
        created.payment.provider_payment_id.as_deref(),
        Some("pi_wired")
    );
    let received = stripe.received_requests().await.expect("recorded");
    let key = received[0]
        .headers
        .get("Idempotency-Key")
        .and_then(|v| v.to_str().ok());
    assert_eq!(
        key,
        Some(format!("{}-1", created.payment.id).as_str()),
        "the derived key, not the client's"
    );
    engine.shutdown().await;
}

/// Issue 8, item 10: where the provider told us its reference, recovery
/// reads the charge by it (Stripe: retrieve the PaymentIntent) instead of
/// its search, which may lag an hour.
#[tokio::test]
async fn recovery_reads_a_stripe_payment_by_its_payment_intent() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let stripe = MockServer::start().await;
    let intent = |status: &str| {
        serde_json::json!({
            "id": "pi_slow", "object": "payment_intent", "amount": 700,
            "currency": "gbp", "status": status, "latest_charge": "ch_slow",
        })
    };
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("processing")))
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_slow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("succeeded")))
        .expect(1)
        .mount(&stripe)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/search"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "object": "search_result", "data": [], "has_more": false,
        })))
        .expect(0)
        .mount(&stripe)
        .await;
    let variable = format!("TEST_STRIPE_KEY_{}", uuid::Uuid::now_v7().simple());
    std::env::set_var(&variable, "sk_test_slow");
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config_in(dir.path());
    config.reconciler.run_at_startup = false;
    config.reconciler.pending_age = std::time::Duration::ZERO;
    config.providers = vec![payments::config::ProviderConfig {
        kind: payments::config::ProviderKind::Stripe,
        base_url: Some(stripe.uri()),
        api_key_env: Some(variable),
        call_timeout_ms: 2_000,
        ..payments::config::ProviderConfig::sandbox("stripe")
    }];
    let engine = Engine::start(config).await.expect("engine with stripe");
    let merchant = MerchantId::new("host");
    let created = engine
        .create_payment(&merchant, "k", request("o", "pm_card_visa"))
        .await
        .expect("create");
    assert_eq!(created.payment.status, PaymentStatus::Pending);
    let report = engine.run_recovery().await.expect("recovery");
    assert_eq!(report.resolved, 1, "{report:?}");
    let payment = engine
        .payment(&merchant, created.payment.id)
        .await
        .expect("payment");
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.provider_payment_id.as_deref(), Some("pi_slow"));
    engine.shutdown().await;
}

/// Issue 8: a client replaying one used key under many new order ids made
/// one payment actor per order (157,000 in 15 s). A replay is answered from
/// the key's record without starting any actor.
#[tokio::test]
async fn replaying_a_used_key_under_new_orders_starts_no_actor() {
    let dir = tempfile::tempdir().expect("dir");
    let engine = Engine::start(config_in(dir.path())).await.expect("engine");
    let merchant = MerchantId::new("m");
    engine
        .create_payment(&merchant, "used", request("o-first", "pm_card_visa"))
        .await
        .expect("first");
    let before = engine.live_payment_actors();
    for i in 0..500 {
        let reply = engine
            .create_payment(
                &merchant,
                "used",
                request(&format!("o-{i}"), "pm_card_visa"),
            )
            .await;
        assert!(
            matches!(reply, Err(EngineError::IdempotencyKeyReused)),
            "another body under a used key is refused: {reply:?}"
        );
    }
    assert_eq!(engine.live_payment_actors(), before, "no actor was started");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_stripe_provider_without_its_key_refuses_to_start() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = config_in(dir.path());
    config.providers = vec![payments::config::ProviderConfig {
        kind: payments::config::ProviderKind::Stripe,
        api_key_env: Some("TEST_STRIPE_KEY_THAT_IS_NOT_SET".into()),
        ..payments::config::ProviderConfig::sandbox("stripe")
    }];
    match Engine::start(config).await {
        Err(EngineError::Config(message)) => assert!(
            message.contains("TEST_STRIPE_KEY_THAT_IS_NOT_SET"),
            "{message}"
        ),
        Err(other) => panic!("expected a configuration error, got {other}"),
        Ok(_) => panic!("an engine without its provider key must not start"),
    }
}

#[test]
fn the_development_key_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let output = Command::new(crate::common::binary())
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .env("PAYMENTS_DATA_DIR", dir.path())
        .env_remove("PAYMENTS_API_KEYS")
        .env_remove("DATABASE_URL")
        .output()
        .expect("run payments");
    assert!(
        !output.status.success(),
        "serve must refuse the development key on 0.0.0.0"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sk_test_default") && stderr.contains("PAYMENTS_API_KEYS"),
        "{stderr}"
    );
}

/// One row of the engine's migration history.
type MigrationRow = (i64, String, String, i64);

/// `payments migrate` on `db`; panics unless it succeeds.
fn run_migrate(db: &TestDb) {
    let mut command = Command::new(crate::common::binary());
    command
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env_remove("PAYMENTS_DATABASE_SCHEMA")
        .env_remove("PAYMENTS_CONFIG");
    for (name, value) in db.env() {
        command.env(name, value);
    }
    let output = command.output().expect("run payments migrate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every row of `payments_schema_migrations` in `db`, by version.
async fn migration_history(db: &TestDb) -> Vec<MigrationRow> {
    use sqlx::{ConnectOptions, Connection, Row};
    // Read column by column: the same code for both backends' row types.
    macro_rules! read {
        ($row:expr) => {
            (
                $row.get("version"),
                $row.get("description"),
                $row.get("checksum"),
                $row.get("applied_at"),
            )
        };
    }
    const COLUMNS: &str = "version, description, checksum, applied_at";
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(db.data_dir.join("payments.db"))
                .read_only(true)
                .connect()
                .await
                .expect("open database");
            let sql = format!("SELECT {COLUMNS} FROM payments_schema_migrations ORDER BY version");
            let rows = sqlx::query(&sql)
                .fetch_all(&mut conn)
                .await
                .expect("history");
            rows.iter().map(|row| read!(row)).collect()
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&crate::common::postgres_url())
                .await
                .expect("connect");
            let sql = format!(
                "SELECT {COLUMNS} FROM \"{}\".payments_schema_migrations ORDER BY version",
                db.schema
            );
            let rows = sqlx::query(&sql)
                .fetch_all(&mut conn)
                .await
                .expect("history");
            rows.iter().map(|row| read!(row)).collect()
        }
    }
}

/// The (version, description) of each migration file shipped for `backend`,
/// read from `migrations/`, as sqlx names them (`0001_init.sql`: 1, "init").
fn shipped_migrations(backend: Backend) -> Vec<(i64, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        });
    let mut shipped: Vec<(i64, String)> = std::fs::read_dir(&dir)
        .expect("migrations dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|name| {
            let stem = name.strip_suffix(".sql")?;
            let (version, description) = stem.split_once('_')?;
            Some((version.parse().ok()?, description.replace('_', " ")))
        })
        .collect();
    shipped.sort();
    shipped
}

/// Opening a SQLite file creates it, so "the file exists" proves nothing:
/// this reads what the command left in the database, after one run and
/// after a second (which must change nothing, not even re-record a
/// migration).
#[rstest]
#[tokio::test]
async fn migrate_applies_the_schema_and_is_idempotent(
    #[values(Backend::Sqlite, Backend::Postgres)] backend: Backend,
) {
    let db = TestDb::new(backend);
    run_migrate(&db);
    let tables: Vec<String> = db.table_counts().await.into_keys().collect();
    for table in [
        "payments",
        "attempts",
        "idempotency_keys",
        "orders",
        "payment_events",
        "payments_schema_migrations",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    let history = migration_history(&db).await;
    let recorded: Vec<(i64, String)> = history
        .iter()
        .map(|(version, description, _, _)| (*version, description.clone()))
        .collect();
    assert_eq!(
        recorded,
        shipped_migrations(backend),
        "one history row per shipped migration"
    );
    assert!(
        history
            .iter()
            .all(|(_, _, checksum, applied_at)| !checksum.is_empty() && *applied_at > 0),
        "{history:?}"
    );

    run_migrate(&db);
    let tables_again: Vec<String> = db.table_counts().await.into_keys().collect();
    assert_eq!(tables_again, tables, "a second run creates nothing");
    assert_eq!(
        migration_history(&db).await,
        history,
        "a second run re-applies and re-records nothing"
    );
}
