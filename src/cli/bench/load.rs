//! The closed-loop load generator: N clients, each sending its next request
//! as soon as the previous one is answered, for a warm-up and then a
//! measured window. What a client is (a raw HTTP connection, a task on the
//! embedded handle) is the [`Client`] trait.

use super::histogram::Histogram;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

/// Pause after a request that got no answer, so a dead server does not
/// turn the generator into a busy loop.
const PAUSE_AFTER_LOST: Duration = Duration::from_millis(10);

/// What one request came to.
pub enum Outcome {
    /// The answer the workload wants (`200` for a health check, `201` with
    /// a succeeded payment).
    Ok,
    /// "Try again later" (`503` + `Retry-After`, `Overloaded`): load shed by
    /// design, not an error; the client waits `retry_after` as a polite
    /// client would.
    Shed { retry_after: Duration },
    /// Any other answer, by label (`"409"`, `"201 failed"`).
    Other(String),
    /// No answer (connection refused or reset, time-out): whether the
    /// request took effect is unknown.
    Lost(String),
}

/// One client: sends request number `n` and says what it came to.
pub trait Client: Send + 'static {
    fn call(&mut self, n: u64) -> impl Future<Output = Outcome> + Send;
}

/// When to start counting and when to stop sending.
#[derive(Clone, Copy)]
pub struct Window {
    /// Answers before this are warm-up.
    pub measure_from: Instant,
    /// No request is sent after this; answers after it are not measured.
    pub end: Instant,
}

impl Window {
    /// `warmup`, then `measured`, starting now.
    pub fn starting_now(warmup: Duration, measured: Duration) -> Window {
        let measure_from = Instant::now() + warmup;
        Window {
            measure_from,
            end: measure_from + measured,
        }
    }

    fn measures(&self, answered: Instant) -> bool {
        (self.measure_from..=self.end).contains(&answered)
    }

    fn seconds(&self) -> f64 {
        (self.end - self.measure_from).as_secs_f64()
    }
}

/// What a load run measured. Counts without `_total` are of answers that
/// arrived inside the measured window.
#[derive(Default)]
pub struct Tally {
    /// Latency of the `Ok` answers.
    pub latency: Histogram,
    pub ok: u64,
    /// Requests shed with "try again later".
    pub shed: u64,
    /// Every other outcome, by label.
    pub others: BTreeMap<String, u64>,
    /// `Ok` answers of the whole run: warm-up and the tail included.
    pub ok_total: u64,
    /// Requests of the whole run that got no answer.
    pub lost_total: u64,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
}

impl Tally {
    fn record(&mut self, outcome: &Outcome, took: Duration, measured: bool) {
        match outcome {
            Outcome::Ok => self.ok_total += 1,
            Outcome::Lost(_) => self.lost_total += 1,
            _ => {}
        }
        if !measured {
            return;
        }
        let label = match outcome {
            Outcome::Ok => {
                self.ok += 1;
                self.latency.record(took);
                return;
            }
            Outcome::Shed { .. } => {
                self.shed += 1;
                return;
            }
            Outcome::Other(label) | Outcome::Lost(label) => label.clone(),
        };
        *self.others.entry(label).or_default() += 1;
    }

    fn merge(&mut self, other: Tally) {
        self.latency.merge(&other.latency);
        self.ok += other.ok;
        self.shed += other.shed;
        for (label, n) in other.others {
            *self.others.entry(label).or_default() += n;
        }
        self.ok_total += other.ok_total;
        self.lost_total += other.lost_total;
    }

    /// `Ok` answers per second of the measured window.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Runs every client until `window.end` (each one finishes the request it
/// has in flight) and adds up what they saw.
pub async fn run<C: Client>(clients: Vec<C>, window: Window) -> Tally {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| tokio::spawn(drive(client, window)))
        .collect();
    let mut total = Tally {
        seconds: window.seconds(),
        ..Tally::default()
    };
    for task in tasks {
        match task.await {
            Ok(tally) => total.merge(tally),
            Err(error) => {
                *total
                    .others
                    .entry(format!("client task failed: {error}"))
                    .or_default() += 1
            }
        }
    }
    total
}

/// One client's loop.
async fn drive<C: Client>(mut client: C, window: Window) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0;
    while Instant::now() < window.end {
        let started = Instant::now();
        let outcome = client.call(n).await;
        let answered = Instant::now();
        n += 1;
        tally.record(&outcome, answered - started, window.measures(answered));
        let pause = match outcome {
            Outcome::Shed { retry_after, .. } => retry_after,
            Outcome::Lost(_) => PAUSE_AFTER_LOST,
            _ => continue,
        };
        let until = window.end.min(answered + pause);
        tokio::time::sleep_until(until.into()).await;
    }
    tally
}
