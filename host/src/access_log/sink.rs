//! Where access-log lines go: keel's own log (target `keel::access`, one write per line), or a
//! file written by a thread of its own, so that a request only queues its line.
//!
//! The file is opened for appending when the configuration is built, so a reload (SIGHUP) opens
//! it again: after logrotate has moved it away, new lines go to a new file. The request path
//! never waits for the disk: when the queue is full the line is dropped and counted
//! (`keel_access_log_dropped_total`); a failed write is counted and logged
//! (`keel_access_log_write_errors_total`). Dropping the sink writes what is queued and waits for
//! the thread, so lines queued before a reload or a shutdown are written.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::IntCounter;

/// Lines the queue holds before new ones are dropped: a third of a second at 50,000 requests/s.
const QUEUE_LINES: usize = 16_384;
/// The writer collects up to this many bytes before a write.
const BATCH_BYTES: usize = 64 * 1024;
/// How often the writer takes the queued lines: the most a line waits before it is written.
const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// At most one log line per this interval about failing writes.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The counters a file sink keeps.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Lines dropped because the queue was full.
    pub dropped: IntCounter,
    /// Writes that failed.
    pub write_errors: IntCounter,
}

/// The destination of access-log lines.
pub enum Sink {
    /// keel's log, target `keel::access`, level info.
    Log,
    /// A file, written by its own thread.
    File(FileSink),
}

impl Sink {
    /// Opens the file when there is one; the error names the path and the cause.
    pub fn open(path: Option<&Path>, metrics: &SinkMetrics) -> Result<Sink, String> {
        match path {
            None => Ok(Sink::Log),
            Some(path) => FileSink::open(path, metrics.clone()).map(Sink::File),
        }
    }

    /// Writes (or queues) one line, without its newline.
    pub fn write(&self, line: String) {
        match self {
            Sink::Log => log::info!(target: "keel::access", "{line}"),
            Sink::File(file) => file.write(line),
        }
    }
}

/// An access-log file and its writer thread.
pub struct FileSink {
    queue: Option<SyncSender<String>>,
    writer: Option<JoinHandle<()>>,
    dropped: IntCounter,
}

impl FileSink {
    fn open(path: &Path, metrics: SinkMetrics) -> Result<FileSink, String> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("access_log.path: cannot open {}: {e}", path.display()))?;
        let (queue, lines) = sync_channel(QUEUE_LINES);
        let dropped = metrics.dropped.clone();
        let path = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("keel-access-log".into())
            .spawn(move || write_lines(&lines, file, &path, &metrics.write_errors))
            .map_err(|e| format!("access_log.path: cannot start the writer thread: {e}"))?;
        Ok(FileSink {
            queue: Some(queue),
            writer: Some(writer),
            dropped,
        })
    }

    fn write(&self, line: String) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(line) {
            Ok(()) => {}
            // Full: the disk is behind. Disconnected: the writer panicked. Either way the line
            // is lost, and counted.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

impl Drop for FileSink {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has written what was queued; unparked, it
        // does not wait out its interval.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            if writer.join().is_err() {
                log::error!("access log: the writer thread panicked");
            }
        }
    }
}

/// The writer thread: every [`FLUSH_INTERVAL`] (or when the sink is dropped) it takes what is
/// queued and writes it in batches of about [`BATCH_BYTES`]; returns once the queue is closed and
/// empty. It never waits on the queue itself, so queueing a line wakes no thread: under load that
/// wakeup per request would cost more than the write it saves.
fn write_lines(lines: &Receiver<String>, mut file: File, path: &Path, errors: &IntCounter) {
    let mut batch: Vec<u8> = Vec::with_capacity(BATCH_BYTES + 1024);
    let mut last_logged: Option<Instant> = None;
    let mut write = |batch: &mut Vec<u8>| {
        if let Err(e) = file.write_all(batch) {
            errors.inc();
            if last_logged.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL) {
                log::error!("access log: writing {} failed: {e}", path.display());
                last_logged = Some(Instant::now());
            }
        }
        batch.clear();
    };
    loop {
        std::thread::park_timeout(FLUSH_INTERVAL);
        let closed = loop {
            match lines.try_recv() {
                Ok(line) => {
                    batch.extend_from_slice(line.as_bytes());
                    batch.push(b'\n');
                    if batch.len() >= BATCH_BYTES {
                        write(&mut batch);
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if !batch.is_empty() {
            write(&mut batch);
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> SinkMetrics {
        SinkMetrics {
            dropped: IntCounter::new("dropped", "test").unwrap(),
            write_errors: IntCounter::new("write_errors", "test").unwrap(),
        }
    }

    #[test]
    fn dropping_the_sink_writes_every_queued_line() {
        let path = std::env::temp_dir().join(format!("keel-sink-{}.log", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let m = metrics();
        let sink = Sink::open(Some(&path), &m).unwrap();
        let n = QUEUE_LINES - 1;
        for i in 0..n {
            sink.write(format!("line {i} {}", "x".repeat(60)));
        }
        drop(sink);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let written: Vec<&str> = text.lines().collect();
        assert_eq!(m.dropped.get(), 0, "the queue holds {QUEUE_LINES} lines");
        assert_eq!(written.len(), n);
        assert!(written[n - 1].starts_with(&format!("line {} ", n - 1)));
        assert_eq!(m.write_errors.get(), 0);
    }

    #[test]
    fn a_failing_write_is_counted() {
        let m = metrics();
        let sink = Sink::open(Some(Path::new("/dev/full")), &m).unwrap();
        sink.write("one".into());
        drop(sink);
        assert!(m.write_errors.get() >= 1);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_named() {
        let Err(e) = Sink::open(Some(Path::new("/proc/keel/no/such/dir.log")), &metrics()) else {
            panic!("opened");
        };
        assert!(
            e.starts_with("access_log.path: cannot open /proc/keel/no/such/dir.log"),
            "{e}"
        );
    }
}
