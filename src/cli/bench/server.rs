//! The engine under test as a separate process: `payments serve` from this
//! very executable, on a free loopback port, on the scenario's setup.

use super::setup::Setup;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to print its address and become ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two `/readyz` polls.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Lines of the server's log shown when it fails to start.
const LOG_LINES_SHOWN: usize = 20;
/// Variables of the bench's own environment the server must not inherit:
/// its configuration is the scenario's alone.
const CLEARED_ENV: [&str; 9] = [
    "DATABASE_URL",
    "PAYMENTS_CONFIG",
    "PAYMENTS_HOST",
    "PAYMENTS_PORT",
    "PAYMENTS_DATA_DIR",
    "PAYMENTS_DATABASE_SCHEMA",
    "PAYMENTS_API_KEYS",
    "PAYMENTS_ADMIN_KEYS",
    "RUST_LOG",
];
/// What `serve` prints once bound.
const LISTENING_PREFIX: &str = "listening on http://";

/// A process's memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the most it was resident.
    pub peak_rss_kib: u64,
}

/// `pid`'s memory; `None` where `/proc` does not tell (not Linux).
pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_rss_kib: field("VmHWM:")?,
    })
}

/// The running server; killed when dropped, also on an error path.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts `payments serve` on `setup` and returns once `/readyz` says
    /// ready.
    pub async fn start(setup: &Setup) -> Result<Server, String> {
        let mut child = spawn(setup)?;
        let stdout = child.stdout.take().ok_or("the server has no stdout")?;
        let started = Instant::now();
        let Some(addr) = wait_for_address(stdout).await else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(startup_failure(setup, "never printed its address"));
        };
        let server = Server { child, addr };
        let remaining = STARTUP_TIMEOUT.saturating_sub(started.elapsed());
        if !server.wait_ready(remaining).await {
            return Err(startup_failure(setup, "never became ready"));
        }
        Ok(server)
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn memory(&self) -> Option<Memory> {
        memory(self.child.id())
    }

    async fn wait_ready(&self, within: Duration) -> bool {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.base_url());
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match client.get(&url).send().await {
                Ok(answer) if answer.status().is_success() => return true,
                _ => tokio::time::sleep(READY_POLL_INTERVAL).await,
            }
        }
        false
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(setup: &Setup) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let log = std::fs::File::create(setup.dir.path().join("server.log"))
        .map_err(|e| format!("cannot create the server's log: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("serve")
        .arg("--config")
        .arg(setup.config_path())
        .args(["--host", "127.0.0.1", "--port", "0"]);
    for name in CLEARED_ENV {
        command.env_remove(name);
    }
    command
        .envs(setup.env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start payments serve: {e}"))
}

/// Reads the server's stdout (for its whole life, so it never blocks on a
/// full pipe) and returns the address it printed.
async fn wait_for_address(stdout: ChildStdout) -> Option<SocketAddr> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let addr = line
                .strip_prefix(LISTENING_PREFIX)
                .and_then(|a| a.trim().parse().ok());
            if let (Some(addr), Some(tx)) = (addr, tx.take()) {
                let _ = tx.send(addr);
            }
        }
    });
    tokio::time::timeout(STARTUP_TIMEOUT, rx).await.ok()?.ok()
}

/// The error for a server that did not start, with the end of its log.
fn startup_failure(setup: &Setup, what: &str) -> String {
    let log = std::fs::read_to_string(setup.dir.path().join("server.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_LINES_SHOWN)..].join("\n");
    format!("the server {what} within {STARTUP_TIMEOUT:?}; its log ends:\n{tail}")
}
