//! What a run measured: a table for people, JSON for machines.

use super::check::ChargeCheck;
use super::load::Tally;
use super::server::Memory;
use super::Scenario;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

/// KiB in a MiB.
const KIB_PER_MIB: f64 = 1024.0;

/// The whole run.
#[derive(Serialize)]
pub struct RunReport {
    pub cores: usize,
    pub seconds: u64,
    pub warmup_seconds: f64,
    pub floor_seconds: f64,
    /// The 1-minute load average before and after: others' work on the
    /// machine skews every figure.
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
    pub scenarios: Vec<ScenarioReport>,
}

/// Latency percentiles of the successful answers, in milliseconds.
#[derive(Serialize)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub max: Option<f64>,
}

/// The check, as reported.
#[derive(Serialize)]
pub struct CheckReport {
    pub ok: bool,
    pub charges: usize,
    pub stored_succeeded: usize,
    pub client_succeeded: Option<usize>,
    pub problems: Vec<String>,
    /// The check's own summary line(s).
    #[serde(skip)]
    pub summary: String,
}

/// One scenario.
#[derive(Serialize)]
pub struct ScenarioReport {
    #[serde(flatten)]
    pub scenario: Scenario,
    /// `201` answers with a succeeded payment per second of the window.
    pub payments_per_sec: f64,
    pub payments: u64,
    pub latency_ms: Latency,
    /// `503` + `Retry-After` (embedded: `Overloaded`) in the window: load
    /// shed by design, not errors.
    pub shed_503: u64,
    /// Every other answer in the window, by status (`201 failed`: a
    /// payment that did not succeed), and requests that got none.
    pub other_answers: BTreeMap<String, u64>,
    pub fsync_floor_per_sec: f64,
    /// `GET /healthz` per second (HTTP scenarios).
    pub http_floor_per_sec: Option<f64>,
    pub payments_per_fsync: f64,
    pub payments_per_http: Option<f64>,
    /// The server's memory after the load (embedded: this process's).
    pub memory: Option<Memory>,
    pub check: CheckReport,
}

/// The 1-minute load average (Linux).
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

impl RunReport {
    pub fn start(seconds: u64, warmup: Duration, floor: Duration) -> RunReport {
        RunReport {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            seconds,
            warmup_seconds: warmup.as_secs_f64(),
            floor_seconds: floor.as_secs_f64(),
            load_average_before: load_average(),
            load_average_after: None,
            scenarios: Vec::new(),
        }
    }

    pub fn finish(&mut self) {
        self.load_average_after = load_average();
    }

    pub fn failed_checks(&self) -> usize {
        self.scenarios.iter().filter(|s| !s.check.ok).count()
    }

    /// Writes the report to stdout.
    pub fn print(&self, json: bool) -> Result<(), String> {
        if json {
            let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
            println!("{text}");
        } else {
            print!("{}", self.table());
        }
        Ok(())
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let load = |l: Option<f64>| l.map_or_else(|| "?".into(), |l| format!("{l:.2}"));
        let _ = writeln!(
            out,
            "\n{} s measured after {} s warm-up per scenario, floors {} s; {} cores shared by server and load generator; 1-min load average {} before, {} after\n",
            self.seconds,
            self.warmup_seconds,
            self.floor_seconds,
            self.cores,
            load(self.load_average_before),
            load(self.load_average_after)
        );
        let header = format!(
            "{:<26} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7} {:>6} {:>6}  other answers",
            "scenario", "payments/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "fsync/s",
            "http/s", "÷fsync", "÷http", "RSS MiB", "503", "check"
        );
        let _ = writeln!(out, "{header}\n{}", "-".repeat(header.chars().count()));
        for s in &self.scenarios {
            let _ = writeln!(out, "{}", s.row());
        }
        let _ = writeln!(out);
        for s in &self.scenarios {
            let _ = writeln!(out, "check {}: {}", s.scenario.label(), s.check.summary);
        }
        out
    }
}

impl ScenarioReport {
    pub fn new(
        scenario: Scenario,
        payments: &Tally,
        fsync_floor_per_sec: f64,
        http_floor_per_sec: Option<f64>,
        memory: Option<Memory>,
        check: ChargeCheck,
    ) -> ScenarioReport {
        let rate = payments.rate();
        let latency = &payments.latency;
        ScenarioReport {
            scenario,
            payments_per_sec: rate,
            payments: payments.ok,
            latency_ms: Latency {
                p50: latency.percentile_ms(50.0),
                p90: latency.percentile_ms(90.0),
                p99: latency.percentile_ms(99.0),
                max: latency.max_ms(),
            },
            shed_503: payments.shed,
            other_answers: payments.others.clone(),
            fsync_floor_per_sec,
            http_floor_per_sec,
            payments_per_fsync: ratio(rate, fsync_floor_per_sec),
            payments_per_http: http_floor_per_sec.map(|floor| ratio(rate, floor)),
            memory,
            check: CheckReport {
                ok: check.is_consistent(),
                charges: check.charges,
                stored_succeeded: check.stored_succeeded,
                client_succeeded: check.client_succeeded,
                summary: check.to_string(),
                problems: check.problems,
            },
        }
    }

    fn row(&self) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        let others: Vec<String> = self
            .other_answers
            .iter()
            .map(|(label, n)| format!("{label}×{n}"))
            .collect();
        format!(
            "{:<26} {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8.0} {:>8} {:>7.3} {:>7} {:>7} {:>6} {:>6}  {}",
            self.scenario.label(),
            self.payments_per_sec,
            ms(self.latency_ms.p50),
            ms(self.latency_ms.p90),
            ms(self.latency_ms.p99),
            ms(self.latency_ms.max),
            self.fsync_floor_per_sec,
            self.http_floor_per_sec
                .map_or_else(|| "-".into(), |f| format!("{f:.0}")),
            self.payments_per_fsync,
            self.payments_per_http
                .map_or_else(|| "-".into(), |r| format!("{r:.3}")),
            self.memory.map_or_else(
                || "-".into(),
                |m| format!("{:.0}", m.rss_kib as f64 / KIB_PER_MIB)
            ),
            self.shed_503,
            if self.check.ok { "OK" } else { "FAILED" },
            if others.is_empty() {
                "none".into()
            } else {
                others.join(" ")
            },
        )
    }
}

/// `a / b`, 0 when `b` is not positive.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}
