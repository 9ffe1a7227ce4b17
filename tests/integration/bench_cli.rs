//! `payments bench` as a user runs it: the real binary starts an engine of
//! its own (a separate `payments serve`), loads it, prints what it
//! measured, and checks the sandbox's charges against the succeeded
//! payments; the check must be able to fail, or it proves nothing.

use serde_json::Value;
use std::process::{Command, Output};

/// The shortest useful run: one scenario on SQLite, 4 connections.
const SHORT_RUN: [&str; 7] = [
    "bench",
    "--seconds",
    "2",
    "--connections",
    "4",
    "--latency-ms",
    "0",
];
/// How the table names that scenario.
const SCENARIO: &str = "http sqlite c4 0ms";

fn bench(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_payments"))
        .args(SHORT_RUN)
        .args(extra)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run payments bench")
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_short_bench_measures_payments_and_passes_its_check() {
    let output = bench(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(stdout.contains("payments/s"), "{}", describe(&output));
    let row = stdout
        .lines()
        .find(|line| line.starts_with(SCENARIO))
        .unwrap_or_else(|| panic!("no row for {SCENARIO}: {}", describe(&output)));
    let rate: f64 = row
        .split_whitespace()
        .nth(SCENARIO.split(' ').count())
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no payments/s in {row:?}"));
    assert!(rate > 0.0, "{row}");
    let check = format!("check {SCENARIO}: ");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with(&check) && line.ends_with(": OK")),
        "{}",
        describe(&output)
    );
}

#[test]
fn the_bench_fails_when_a_charge_is_missing() {
    let output = bench(&["--fault-drop-charge", "--json"]);
    assert!(!output.status.success(), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(&output)));
    let check = &report["scenarios"][0]["check"];
    assert_eq!(check["ok"], false, "{check}");
    let problems = check["problems"].as_array().cloned().unwrap_or_default();
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.contains("never charged"))),
        "{check}"
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("check FAILED"),
        "{}",
        describe(&output)
    );
}

/// A grown store (issue 9): the seeded payments are there, the check
/// counts only the run's own, and the run is measured like any other. On
/// PostgreSQL the seeded events and ledger lines land in month partitions.
#[test]
fn a_seeded_store_is_measured_and_checked_on_the_run_alone() {
    for backend in ["sqlite", "postgres"] {
        let mut extra = vec!["--seed-payments", "3000", "--json", "--backend", backend];
        let url = crate::common::postgres_url();
        if backend == "postgres" {
            extra.extend(["--database-url", url.as_str()]);
        }
        let output = bench(&extra);
        assert!(output.status.success(), "{backend}: {}", describe(&output));
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(&output)));
        let check = &report["scenarios"][0]["check"];
        assert_eq!(check["ok"], true, "{backend}: {check}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("seeded 3000 payments"),
            "{backend}: {}",
            describe(&output)
        );
    }
}
