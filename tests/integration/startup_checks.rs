//! What a new user trips on at start (issue 13): every check that can fail
//! runs before the engine touches a database or binds a port, names the
//! key at fault, and every command applies the same checks.

use crate::common::binary;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `payments args…` in `dir` (its working directory and data
/// directory) with a clean environment plus `env`.
fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env("PAYMENTS_DATA_DIR", dir.join("data"))
        .env_remove("DATABASE_URL")
        .env_remove("PAYMENTS_API_KEYS")
        .env_remove("PAYMENTS_ADMIN_KEYS")
        .env_remove("PAYMENTS_CONFIG")
        .env_remove("PAYMENTS_DATABASE_SCHEMA")
        .envs(env.iter().copied())
        .output()
        .expect("run payments")
}

/// `payments serve` and `payments migrate` with `config` both refuse to
/// start, saying `expected`, and leave no database behind.
fn refused_by_every_command(config: &str, expected: &str) {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("payments.toml"), config).expect("write config");
    for command in [
        &["serve", "--port", "0", "--config", "payments.toml"][..],
        &["migrate", "--config", "payments.toml"][..],
        &["reconcile", "--config", "payments.toml"][..],
    ] {
        let output = run(dir.path(), command, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command:?} started: {stderr}");
        assert!(stderr.contains(expected), "{command:?}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "{command:?} touched the data directory before refusing"
        );
    }
}

#[test]
fn a_mistyped_log_format_is_refused() {
    refused_by_every_command("[log]\nformat = \"jsn\"\n", "log.format");
}

/// A malformed `log.otlp_endpoint` is refused by every build, naming it.
#[test]
fn a_malformed_otlp_endpoint_is_refused() {
    refused_by_every_command(
        "[log]\notlp_endpoint = \"127.0.0.1:4318\"\n",
        "log.otlp_endpoint",
    );
}

/// Without the `otlp` feature, `log.otlp_endpoint` is refused, saying how
/// to get the export, rather than silently exporting nothing.
#[cfg(not(feature = "otlp"))]
#[test]
fn otlp_endpoint_is_refused_by_a_build_without_the_feature() {
    refused_by_every_command(
        "[log]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
        "--features otlp",
    );
    refused_by_every_command(
        "[log]\notlp_endpoint = \"http://127.0.0.1:4318\"\n",
        "log.otlp_endpoint",
    );
}

#[test]
fn fault_knobs_on_a_real_provider_are_refused() {
    let config = r#"
[[providers]]
name = "stripe"
kind = "stripe"
api_key_env = "PATH"
[providers.faults]
failure_rate = 0.5
"#;
    refused_by_every_command(config, "providers.faults");
}

#[test]
fn a_missing_credential_variable_is_refused_before_the_database() {
    let config = r#"
[[providers]]
name = "stripe"
kind = "stripe"
api_key_env = "PAYMENTS_TEST_NO_SUCH_STRIPE_KEY"
"#;
    refused_by_every_command(config, "PAYMENTS_TEST_NO_SUCH_STRIPE_KEY");
}

#[test]
fn duplicate_providers_are_refused_by_migrate_too() {
    let config = "[[providers]]\nname = \"a\"\n[[providers]]\nname = \"a\"\n";
    refused_by_every_command(config, "configured twice");
}

#[test]
fn a_sqlite_file_in_a_missing_directory_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("no/such/dir/payments.db");
    let url = format!("sqlite://{}", missing.display());
    let output = run(dir.path(), &["migrate", "--database-url", &url], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!dir.path().join("no").exists(), "created the directories");
}

#[test]
fn a_taken_port_is_refused_before_the_database() {
    let dir = tempfile::tempdir().expect("dir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let output = run(dir.path(), &["serve", "--port", &port], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    assert!(!stderr.contains("engine started"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "touched the database");
}

#[test]
fn the_development_key_on_a_public_address_is_refused_before_the_database() {
    let dir = tempfile::tempdir().expect("dir");
    let output = run(
        dir.path(),
        &["serve", "--host", "0.0.0.0", "--port", "0"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("development key"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "touched the database");
}

#[test]
fn an_unreachable_postgres_is_named_by_host_and_port() {
    let dir = tempfile::tempdir().expect("dir");
    // A port nothing listens on: bound, then released.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("postgres://app:hunter2@127.0.0.1:{port}/payments");
    let output = run(dir.path(), &["migrate", "--database-url", &url], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn help_lists_the_environment() {
    let dir = tempfile::tempdir().expect("dir");
    let output = run(dir.path(), &["serve", "--help"], &[]);
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "PAYMENTS_CONFIG",
        "DATABASE_URL",
        "PAYMENTS_PORT",
        "PAYMENTS_API_KEYS",
        "PAYMENTS_ADMIN_KEYS",
        "RUST_LOG",
    ] {
        assert!(help.contains(variable), "{variable} missing from:\n{help}");
    }
}

#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().expect("dir");
    // Refused after logging starts (its log line is written), never
    // reaching a terminal: stderr is a pipe here.
    let output = run(dir.path(), &["migrate"], &[("RUST_LOG", "info")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("migration applied"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in a piped log: {stderr:?}"
    );
}
