//! The load's HTTP client: one keep-alive HTTP/1.1 connection per client,
//! written by hand over a tokio `TcpStream`.
//!
//! Why not reqwest (hyper): the generator shares the machine's cores with
//! the server it measures, so every microsecond it spends per request is
//! taken from the server. This client writes each request with one
//! `write_all` into a reused buffer and reads the answer only as far as it
//! must: the status line, `Content-Length`, `Retry-After` and `Connection`,
//! then exactly `Content-Length` bytes of body. It is still honest: a
//! request is answered only once its whole response has arrived, and the
//! next one goes out on the same connection after that, as a keep-alive
//! client's would. It speaks only what the engine answers (no chunked
//! bodies: such an answer counts as lost).

use super::load::{Client, Outcome};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The development key: the merchant `default`, and the operator too.
pub const DEV_KEY: &str = "sk_test_default";
/// An answer not complete within this is lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// A response head longer than this is not the engine's.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Room made in the buffer before each read.
const READ_CHUNK_BYTES: usize = 4096;
/// `Retry-After` assumed when a `503` carries none, in seconds.
const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// Distinct customers the payments are spread over (as wrk-payments.lua).
const CUSTOMERS: u64 = 5000;

/// What the clients ask for.
#[derive(Clone)]
pub enum Workload {
    /// `GET /healthz`: the HTTP floor.
    Health,
    /// `POST /v1/payments`, a new idempotency key and order each time;
    /// `run` keeps them apart from every other run's.
    Payments { run: Arc<str> },
}

/// The parts of a response the generator reads.
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    close: bool,
    content_length: usize,
    /// Where the body lies in the buffer.
    body: Range<usize>,
}

/// One client: a connection (opened on first use, and again after a
/// failure or a `Connection: close`) sending `workload`'s requests.
pub struct HttpClient {
    addr: SocketAddr,
    workload: Workload,
    /// This client's number, part of its keys.
    id: usize,
    conn: Option<TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
    inbox: Vec<u8>,
}

impl HttpClient {
    pub fn new(addr: SocketAddr, workload: Workload, id: usize) -> HttpClient {
        HttpClient {
            addr,
            workload,
            id,
            conn: None,
            request: Vec::with_capacity(512),
            body: Vec::with_capacity(256),
            inbox: Vec::with_capacity(READ_CHUNK_BYTES),
        }
    }

    /// Writes request `n` into `self.request`.
    fn prepare(&mut self, n: u64) {
        self.request.clear();
        match &self.workload {
            Workload::Health => {
                let _ = write!(
                    self.request,
                    "GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n",
                    self.addr
                );
            }
            Workload::Payments { run } => {
                let customer = (self.id as u64 * 7919 + n) % CUSTOMERS;
                self.body.clear();
                let _ = write!(
                    self.body,
                    r#"{{"amount":1999,"currency":"usd","customer_id":"cus_{customer}","order_id":"ord_{run}_{}_{n}","payment_method":"pm_card_visa"}}"#,
                    self.id
                );
                let _ = write!(
                    self.request,
                    "POST /v1/payments HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {DEV_KEY}\r\nContent-Type: application/json\r\nIdempotency-Key: k_{run}_{}_{n}\r\nContent-Length: {}\r\n\r\n",
                    self.addr,
                    self.id,
                    self.body.len()
                );
                self.request.extend_from_slice(&self.body);
            }
        }
    }

    /// Sends the prepared request and reads its answer.
    async fn exchange(&mut self) -> io::Result<Answer> {
        let stream = match &mut self.conn {
            Some(stream) => stream,
            None => {
                let stream = TcpStream::connect(self.addr).await?;
                stream.set_nodelay(true)?;
                self.conn.insert(stream)
            }
        };
        stream.write_all(&self.request).await?;
        read_answer(stream, &mut self.inbox).await
    }

    fn outcome(&self, answer: &Answer) -> Outcome {
        match (&self.workload, answer.status) {
            (Workload::Health, 200) => Outcome::Ok,
            (Workload::Payments { .. }, 201) => {
                match payment_status(&self.inbox[answer.body.clone()]) {
                    Some("succeeded") => Outcome::Ok,
                    other => Outcome::Other(format!("201 {}", other.unwrap_or("?"))),
                }
            }
            (_, 503) => Outcome::Shed {
                retry_after: Duration::from_secs(
                    answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECS),
                ),
            },
            (_, status) => Outcome::Other(status.to_string()),
        }
    }
}

impl Client for HttpClient {
    async fn call(&mut self, n: u64) -> Outcome {
        self.prepare(n);
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.exchange()).await {
            Ok(Ok(answer)) => {
                if answer.close {
                    self.conn = None;
                }
                self.outcome(&answer)
            }
            Ok(Err(error)) => {
                self.conn = None;
                Outcome::Lost(format!("no answer ({:?})", error.kind()))
            }
            Err(_) => {
                self.conn = None;
                Outcome::Lost("no answer (timeout)".into())
            }
        }
    }
}

/// Reads one whole response into `inbox` (emptied first).
async fn read_answer(stream: &mut TcpStream, inbox: &mut Vec<u8>) -> io::Result<Answer> {
    inbox.clear();
    let head_len = loop {
        if let Some(at) = inbox.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if inbox.len() > MAX_HEAD_BYTES {
            return Err(malformed("response head too long"));
        }
        read_more(stream, inbox).await?;
    };
    let mut answer = parse_head(&inbox[..head_len])?;
    let body_end = head_len + answer.content_length;
    while inbox.len() < body_end {
        read_more(stream, inbox).await?;
    }
    answer.body = head_len..body_end;
    Ok(answer)
}

async fn read_more(stream: &mut TcpStream, inbox: &mut Vec<u8>) -> io::Result<()> {
    inbox.reserve(READ_CHUNK_BYTES);
    if stream.read_buf(inbox).await? == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The status line and the headers the generator needs.
fn parse_head(head: &[u8]) -> io::Result<Answer> {
    let text = std::str::from_utf8(head).map_err(|_| malformed("response head not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| malformed("no status line"))?;
    let mut answer = Answer {
        status,
        retry_after: None,
        close: false,
        content_length: usize::MAX,
        body: 0..0,
    };
    for (name, value) in lines.filter_map(|line| line.split_once(':')) {
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            answer.content_length = value.parse().map_err(|_| malformed("bad Content-Length"))?;
        } else if name.eq_ignore_ascii_case("retry-after") {
            answer.retry_after = value.parse().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            answer.close = value.eq_ignore_ascii_case("close");
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(malformed("chunked answers are not supported"));
        }
    }
    if answer.content_length == usize::MAX {
        return Err(malformed("no Content-Length"));
    }
    Ok(answer)
}

/// The payment's top-level `status`: the first `"status"` of the body, as
/// a payment object names its status before any nested object.
fn payment_status(body: &[u8]) -> Option<&str> {
    const FIELD: &[u8] = b"\"status\":\"";
    let start = body.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_head_and_the_payment_status() {
        let head =
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\nRetry-After: 1\r\n\r\n";
        let answer = parse_head(head).expect("a head");
        assert_eq!(
            (answer.status, answer.content_length, answer.retry_after),
            (503, 12, Some(1))
        );
        let body = br#"{"id":"pay_1","object":"payment","status":"succeeded","attempts":[{"status":"x"}]}"#;
        assert_eq!(payment_status(body), Some("succeeded"));
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
