//! Checkpoints: copying the WAL back into the database file, and keeping
//! the WAL short.
//!
//! Copying runs on a thread of its own ([`copy_loop`], `PASSIVE`: it never
//! waits on, or blocks, the writer or readers), so the group-commit writer
//! never stops for it. Copying alone is not enough under a steady load: the
//! WAL only starts over from its beginning when a write begins after
//! everything in it was copied and no reader still reads from it, which a
//! busy engine never offers. The WAL then only grows, every page read
//! searches a longer WAL index, and the disk fills. Measured before
//! [`WalBound`]: 3.6 GB of WAL after 80 s at 64 connections, and payments/s
//! falling from about 2,300 to 540 over those 80 s. A `RESTART` checkpoint
//! from another thread does not help: it waits for the writer lock by
//! polling, and a busy writer always has it. So the writer itself, between
//! two batches, restarts a WAL longer than [`WAL_RESTART_BYTES`]: it holds
//! no lock then, waits (at most [`RESTART_WAIT_MS`]) only for readers of
//! old snapshots, copies the little the copying thread left, and its next
//! batch writes from the WAL's start; `journal_size_limit` then cuts the
//! file back to that size.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the copying thread copies the WAL into the database file.
pub const CHECKPOINT_INTERVAL_MS: u64 = 1_000;
/// WAL length past which the writer makes it start over (and the length
/// the file is cut back to). Big enough that a restart is rare (about once
/// a second at full load, whose batches fill some 50 MB/s of WAL), small
/// enough that reads stay fast and the file small.
pub const WAL_RESTART_BYTES: u64 = 64 << 20;
/// The longest a restart waits for readers of old snapshots. The next batch
/// waits as long: this bounds that pause.
pub const RESTART_WAIT_MS: u64 = 200;

/// The writer's side: a bound on the WAL's length, kept between batches.
#[derive(Debug)]
pub struct WalBound {
    wal: PathBuf,
    restart_bytes: u64,
    /// The length at which the next restart is tried: `restart_bytes`, or
    /// further when a reader held the last one off (an operator's open
    /// `sqlite3` shell must not cost every batch a wait).
    next_try_bytes: u64,
    /// The writer connection's usual busy timeout, put back after a restart.
    busy_timeout: Duration,
    /// Set while the copying thread copies: a restart then would wait for
    /// it, so the writer tries after its next batch instead.
    copying: Arc<AtomicBool>,
}

/// What [`WalBound::after_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The WAL is short enough to keep.
    NotNeeded,
    /// The WAL starts over at the next batch.
    Done,
    /// A reader held it past [`RESTART_WAIT_MS`]; tried again later.
    Busy,
}

impl WalBound {
    /// The bound for the database file `db`, whose writer connection waits
    /// `busy_timeout` for locks.
    pub fn new(db: &Path, restart_bytes: u64, busy_timeout: Duration) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        WalBound {
            wal: PathBuf::from(wal),
            restart_bytes,
            next_try_bytes: restart_bytes,
            busy_timeout,
            copying: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The flag [`copy_loop`] raises while it copies.
    pub fn copying(&self) -> Arc<AtomicBool> {
        self.copying.clone()
    }

    /// Sets `journal_size_limit` on the writer's connection, so a restarted
    /// WAL's file is cut back to the bound (SQLite keeps its size otherwise).
    pub fn limit_file(&self, conn: &Connection) -> rusqlite::Result<()> {
        conn.execute_batch(&format!(
            "PRAGMA journal_size_limit = {}",
            self.restart_bytes
        ))
    }

    /// Called by the writer between batches, holding no lock: restarts the
    /// WAL if it grew past the bound. After a restart the file is cut back,
    /// so its length says how much was written since.
    pub fn after_batch(&mut self, conn: &Connection) -> rusqlite::Result<Restart> {
        let wal_bytes = std::fs::metadata(&self.wal).map(|m| m.len()).unwrap_or(0);
        if wal_bytes <= self.next_try_bytes || self.copying.load(Ordering::Acquire) {
            return Ok(Restart::NotNeeded);
        }
        conn.busy_timeout(Duration::from_millis(RESTART_WAIT_MS))?;
        let busy = checkpoint(conn, "RESTART");
        conn.busy_timeout(self.busy_timeout)?;
        if busy? == 0 {
            self.next_try_bytes = self.restart_bytes;
            Ok(Restart::Done)
        } else {
            self.next_try_bytes = wal_bytes.saturating_add(self.restart_bytes);
            Ok(Restart::Busy)
        }
    }
}

/// `PRAGMA wal_checkpoint(mode)`: 1 if it could not finish, else 0.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<i64> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| {
        row.get(0)
    })
}

/// The copying thread's loop: a `PASSIVE` checkpoint every `interval`,
/// with `copying` raised while it runs, until `stopped` says stop (or its
/// sender is dropped).
pub fn copy_loop(
    conn: Connection,
    interval: Duration,
    copying: Arc<AtomicBool>,
    stopped: std::sync::mpsc::Receiver<()>,
) {
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
        copying.store(true, Ordering::Release);
        let copied = checkpoint(&conn, "PASSIVE");
        copying.store(false, Ordering::Release);
        if let Err(error) = copied {
            tracing::warn!(%error, "WAL checkpoint failed; will try again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::OpenFlags;
    use std::time::Instant;

    /// Small enough that the test writes many times over it in a second.
    const TEST_RESTART_BYTES: u64 = 1 << 20;
    const TEST_WRITE_BYTES: u64 = 48 << 20;

    fn open(path: &Path) -> Connection {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
        )
        .expect("open");
        conn.busy_timeout(Duration::from_secs(10)).expect("busy");
        conn
    }

    /// Writes `TEST_WRITE_BYTES` in small transactions while a reader reads
    /// without pause and the copying thread copies every 200 ms; the writer
    /// keeps the WAL bounded if `bounded`. The longest WAL file seen, and
    /// how many restarts were made.
    fn longest_wal_under_load(bounded: bool) -> (u64, u32) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("wal.db");
        let writer = open(&path);
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF; \
                 PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB);",
            )
            .expect("schema");
        let mut bound = WalBound::new(&path, TEST_RESTART_BYTES, Duration::from_secs(10));
        bound.limit_file(&writer).expect("limit");
        let done = Arc::new(AtomicBool::new(false));
        let reader = {
            let (path, done) = (path.clone(), done.clone());
            std::thread::spawn(move || {
                let conn = open(&path);
                while !done.load(Ordering::Acquire) {
                    let _: i64 = conn
                        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                        .expect("read");
                }
            })
        };
        let (stop, stopped) = std::sync::mpsc::channel();
        let copier = {
            let (conn, copying) = (open(&path), bound.copying());
            std::thread::spawn(move || {
                copy_loop(conn, Duration::from_millis(200), copying, stopped)
            })
        };
        let wal = path.with_extension("db-wal");
        let (mut written, mut longest, mut restarts) = (0u64, 0u64, 0u32);
        let blob = vec![7u8; 8 << 10];
        let deadline = Instant::now() + Duration::from_secs(60);
        while written < TEST_WRITE_BYTES && Instant::now() < deadline {
            let tx = writer.unchecked_transaction().expect("begin");
            for _ in 0..8 {
                tx.execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                    .expect("insert");
            }
            tx.commit().expect("commit");
            written += 8 * blob.len() as u64;
            longest = longest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            if bounded && bound.after_batch(&writer).expect("restart") == Restart::Done {
                restarts += 1;
            }
        }
        done.store(true, Ordering::Release);
        drop(stop);
        reader.join().expect("reader");
        copier.join().expect("copier");
        (longest, restarts)
    }

    #[test]
    fn the_writer_restarts_a_long_wal_between_batches() {
        let (longest, restarts) = longest_wal_under_load(true);
        // The bound plus what the writer adds while a copy holds a restart
        // off (here the copies are long: every page written is new), far
        // below the everything-kept of copying alone.
        assert!(
            longest < TEST_WRITE_BYTES / 4,
            "the WAL grew to {longest} bytes with a bound of {TEST_RESTART_BYTES}"
        );
        assert!(restarts >= 10, "{restarts} restarts for 48 MiB written");
    }

    #[test]
    fn copying_alone_lets_a_busy_wal_grow() {
        // What the bound exists for: with only the copying thread, the WAL
        // keeps about everything written.
        let (longest, _) = longest_wal_under_load(false);
        assert!(
            longest > TEST_WRITE_BYTES / 2,
            "without restarts the WAL stayed at {longest} bytes"
        );
    }
}
