//! Messages of the supervisor (`actors::supervisor`).

use actix::Message;

/// Stop taking new payments, wait (bounded) for in-flight ones, flush the
/// store. Answers once the engine is quiet.
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub grace_ms: u64,
}
