//! Messages of the deliverer (`actors::deliverer`).

use actix::Message;

/// Run one delivery pass now (the timer sends it every `poll_interval_ms`);
/// a pass already running makes this one do nothing.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "PassReport")]
pub struct DeliverNow;

/// Start no new pass; answer once the running one ended, or after a
/// bounded wait (a try cut short is retried: its lease expires).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct StopDelivery;

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    /// New events given their delivery rows.
    pub fanned_out: u64,
    pub delivered: u32,
    /// Tries that failed and are scheduled again.
    pub retried: u32,
    /// Tries that failed for the last time.
    pub dead: u32,
    /// Events published to NATS.
    pub published: u64,
    /// A pass was running already.
    pub overlapped: bool,
}
