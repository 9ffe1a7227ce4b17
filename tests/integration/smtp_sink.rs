//! A tiny SMTP receiver on loopback: the fake of a mail relay outside the
//! machine. It speaks just enough SMTP for a client like lettre (greeting,
//! EHLO/HELO, MAIL FROM, RCPT TO, DATA up to the lone ".", RSET, NOOP,
//! QUIT) and keeps every message it was given. It can also play a relay
//! that accepts connections and never answers.
//!
//! It runs on plain threads, so it answers whatever the test's runtime is
//! doing (a test blocked starting a server included).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest a line from a client may be; longer ends the session.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Longest a message may be; larger ends the session.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// A silent session holds its connection at most this long.
const SILENT_HOLD_MS: u64 = 60_000;

/// One message as received.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body, dot-unstuffed, lines joined by `\n`.
    pub data: String,
}

impl Mail {
    /// The value of header `name` (first one, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\n\n").next()?;
        let prefix = format!("{}:", name.to_ascii_lowercase());
        let mut value = None::<String>;
        for line in head.lines() {
            if let Some(found) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    found.push_str(line);
                    continue;
                }
                break;
            }
            if line.to_ascii_lowercase().starts_with(&prefix) {
                value = Some(line[prefix.len()..].trim().to_string());
            }
        }
        value
    }

    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// Everything after the headers.
    pub fn body(&self) -> String {
        self.data
            .split_once("\n\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }
}

/// A running receiver; stops accepting when dropped.
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
}

impl SmtpSink {
    /// A receiver that takes every message.
    pub fn start() -> SmtpSink {
        Self::start_with(false)
    }

    /// A "relay" that accepts connections and never says a word.
    pub fn start_silent() -> SmtpSink {
        Self::start_with(true)
    }

    fn start_with(silent: bool) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the SMTP sink");
        let port = listener.local_addr().expect("sink address").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopping) = (mails.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    if silent {
                        std::thread::sleep(Duration::from_millis(SILENT_HOLD_MS));
                        drop(stream);
                    } else {
                        let _ = session(stream, &kept);
                    }
                });
            }
        });
        SmtpSink { port, mails, stop }
    }

    /// The messages received so far.
    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().expect("sink lock").clone()
    }

    /// Waits until at least `count` messages arrived (or `timeout` passed),
    /// and returns them all.
    pub async fn wait_for(&self, count: usize, timeout: Duration) -> Vec<Mail> {
        let deadline = Instant::now() + timeout;
        loop {
            let mails = self.mails();
            if mails.len() >= count || Instant::now() >= deadline {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The client's state within one session.
#[derive(Default)]
struct Envelope {
    from: Option<String>,
    to: Vec<String>,
}

/// One SMTP session, until QUIT or the client leaves.
fn session(stream: TcpStream, kept: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    writer.write_all(b"220 sink.test ESMTP ready\r\n")?;
    let mut envelope = Envelope::default();
    while let Some(line) = read_line(&mut reader)? {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test greets you\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") {
            b"250 sink.test\r\n"
        } else if let Some(from) = upper.strip_prefix("MAIL FROM:") {
            envelope = Envelope {
                from: Some(address(&line[line.len() - from.len()..])),
                to: Vec::new(),
            };
            b"250 OK\r\n"
        } else if let Some(to) = upper.strip_prefix("RCPT TO:") {
            envelope.to.push(address(&line[line.len() - to.len()..]));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            let data = read_data(&mut reader)?;
            kept.lock().expect("sink lock").push(Mail {
                from: envelope.from.take().unwrap_or_default(),
                to: std::mem::take(&mut envelope.to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper == "RSET" || upper == "NOOP" {
            envelope = Envelope::default();
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            writer.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        writer.write_all(reply)?;
    }
    Ok(())
}

/// `<a@b>` or `<a@b> SIZE=…` → `a@b`.
fn address(argument: &str) -> String {
    let argument = argument.trim();
    let end = argument.find('>').unwrap_or(argument.len());
    argument[..end].trim_start_matches('<').to_string()
}

/// One line without its CRLF; `None` at the end of the stream.
fn read_line(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take(MAX_LINE_BYTES as u64)
        .read_until(b'\n', &mut line)?;
    if read == 0 || !line.ends_with(b"\n") {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&line);
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_string()))
}

/// The message after DATA, up to the lone ".", dot-unstuffed.
fn read_data(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut lines = Vec::new();
    let mut size = 0;
    while let Some(line) = read_line(reader)? {
        if line == "." {
            return Ok(lines.join("\n"));
        }
        size += line.len();
        if size > MAX_MESSAGE_BYTES {
            break;
        }
        let unstuffed = line.strip_prefix('.').filter(|_| line.starts_with(".."));
        lines.push(unstuffed.unwrap_or(&line).to_string());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "message not ended with a lone dot",
    ))
}
