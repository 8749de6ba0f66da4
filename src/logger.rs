//! A stderr logger for the `log` facade that never blocks the thread that
//! logs: one line per record (UTC time, level, message), handed to a writer
//! thread through a bounded queue.
//!
//! The event loop logs, and stderr may be a pipe that nobody reads (a
//! stalled log shipper): a synchronous write would then freeze the relay.
//! Here a line that finds the queue full is dropped and counted instead
//! ([`dropped`], `roomcast_log_lines_dropped_total`), and the writer says how
//! many it lost as soon as it can write again. [`flush`] waits, with a
//! deadline, for the lines already queued, so the binary's last lines are
//! not lost at exit.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines waiting for the writer at most: about 1 MiB of log.
const QUEUE_LINES: usize = 8192;

/// Lines dropped because the queue was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines queued and not yet written.
static PENDING: AtomicUsize = AtomicUsize::new(0);

struct StderrLogger {
    lines: Sender<String>,
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {:<5} {}\n", timestamp(), record.level(), record.args());
        PENDING.fetch_add(1, Ordering::AcqRel);
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.lines.try_send(line)
        {
            PENDING.fetch_sub(1, Ordering::AcqRel);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

static LOGGER: OnceLock<StderrLogger> = OnceLock::new();

/// Installs the logger and starts its writer (once; later calls only change
/// the level).
pub fn init(level: LevelFilter) {
    let logger = LOGGER.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded(QUEUE_LINES);
        let _ = std::thread::Builder::new()
            .name("roomcast-log".into())
            .spawn(move || write_lines(rx));
        StderrLogger { lines: tx }
    });
    let _ = log::set_logger(logger);
    log::set_max_level(level);
}

/// Lines dropped so far because stderr did not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Waits until every queued line is written, or `limit` passes.
pub fn flush(limit: Duration) {
    let deadline = Instant::now() + limit;
    while PENDING.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The writer: blocking writes are fine here, on a thread of its own.
fn write_lines(lines: Receiver<String>) {
    let mut reported = 0;
    for line in lines.iter() {
        let mut err = std::io::stderr().lock();
        let dropped = DROPPED.load(Ordering::Relaxed);
        if dropped > reported {
            let _ = writeln!(
                err,
                "{} WARN  {} log lines dropped: stderr did not keep up",
                timestamp(),
                dropped - reported
            );
            reported = dropped;
        }
        let _ = err.write_all(line.as_bytes());
        PENDING.fetch_sub(1, Ordering::AcqRel);
    }
}

fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{:03}", now.subsec_millis())
}
