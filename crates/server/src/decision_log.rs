//! Writing decision records: one versioned JSON line per Check, queued off the request path.
//!
//! The record type ([`DecisionRecord`]) is the core's, a public contract. Checks hand records to a bounded queue with `try_send` and never
//! wait: when the queue is full the record is dropped and counted, and the writer reports drops
//! periodically. Records never contain a raw token, cookie or `Authorization` value: token facts
//! are issuer, subject, jti and a short hash; headers come only through an allow-list, and
//! configured claims are redacted before the record is queued (see `redaction`).
//!
//! One writer thread serializes each record once and hands the line to every output: stdout,
//! stderr or a (rotated) file, and, with `decision_log.otlp`, an OpenTelemetry collector
//! (`decision_otlp`, which has a bounded, counted queue of its own).
//!
//! The writer keeps a heartbeat: [`DecisionLog::writer_problem`] tells liveness (`/healthz`)
//! when the thread has ended, or has made no progress for [`WRITER_STALL_LIMIT`] while records
//! wait (a write that blocks: a stalled pipe, a hung network filesystem). Either way decisions
//! are no longer being audited, which a restart may cure and nothing inside the process can.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::decision_otlp::OtlpRecords;
use crate::telemetry::TelemetryError;
use cedargate_core::config::{DecisionLogConfig, LogOutput, Rotation};
use cedargate_core::record::DecisionRecord;

/// Longest a record waits in the queue before the writer picks it up.
const WRITE_INTERVAL: Duration = Duration::from_millis(5);
/// How often dropped-record counts are reported.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Longest the writer waits, when it stops, for the collector to take the last records.
const OTLP_SHUTDOWN_LIMIT: Duration = Duration::from_secs(5);
/// How long the writer may go without progress, with records waiting, before liveness fails.
/// A healthy writer beats every [`WRITE_INTERVAL`] when idle and after every record; a write to
/// a local file or pipe that a reader drains returns in milliseconds. Ten seconds is far beyond
/// any of that (so a slow disk's hiccup is not a restart); with the shipped liveness probe
/// (every 10 s, 3 failures) a wedged writer restarts the pod within about 40 s.
pub const WRITER_STALL_LIMIT: Duration = Duration::from_secs(10);

/// Why the decision log could not start.
#[derive(Debug, thiserror::Error)]
pub enum DecisionLogError {
    /// The output file could not be opened, or the writer thread not started.
    #[error("opening the decision log: {0}")]
    Open(#[from] std::io::Error),
    /// The OTLP output could not be set up.
    #[error("decision_log.otlp: {0}")]
    Otlp(#[from] TelemetryError),
}

/// What travels to the writer thread.
enum Message {
    /// A record to write.
    Record(Box<DecisionRecord>),
    /// Flush everything queued before this, then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The sending half: cheap to clone, never blocks.
#[derive(Clone)]
pub struct DecisionLog {
    /// Queue to the writer; `None` when logging is off.
    sender: Option<mpsc::Sender<Message>>,
    /// Records dropped because the queue was full.
    dropped: Arc<AtomicU64>,
    /// Records accepted into the queue.
    queued: Arc<AtomicU64>,
    /// Drops already reported (by the reporting thread or the final flush).
    reported: Arc<AtomicU64>,
    /// The writer's heartbeat and progress, for liveness; `None` when logging is off.
    writer: Option<Arc<WriterState>>,
}

/// What the writer thread shares about itself (all lock-free: liveness reads it while the
/// writer may be stuck).
struct WriterState {
    /// Origin of `beat_ms`.
    started: Instant,
    /// Milliseconds after `started` of the writer's last sign of progress: an idle poll, a
    /// record written, a batch flushed.
    beat_ms: AtomicU64,
    /// Records the writer has taken off the queue and handed to its output (or failed to
    /// serialize).
    written: AtomicU64,
    /// Set when the writer thread ends (normally only after every sender is gone).
    exited: AtomicBool,
}

impl WriterState {
    fn beat(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.beat_ms.store(now, Ordering::Relaxed);
    }

    fn since_beat(&self) -> Duration {
        self.started
            .elapsed()
            .saturating_sub(Duration::from_millis(self.beat_ms.load(Ordering::Relaxed)))
    }
}

/// Marks the writer as ended however its thread ends (return or unwind).
struct ExitMark(Arc<WriterState>);

impl Drop for ExitMark {
    fn drop(&mut self) {
        self.0.exited.store(true, Ordering::Relaxed);
    }
}

/// The liveness rule for the writer, apart from the clock: `Some(why)` when decisions are no
/// longer being written.
fn judge_writer(exited: bool, waiting: u64, since_progress: Duration) -> Option<String> {
    if exited {
        return Some("decision-log writer (thread ended)".to_string());
    }
    (waiting > 0 && since_progress > WRITER_STALL_LIMIT).then(|| {
        format!(
            "decision-log writer (no progress for {} s, {waiting} records waiting)",
            since_progress.as_secs()
        )
    })
}

impl DecisionLog {
    /// Starts the writer task for `output`.
    pub fn start(output: &LogOutput, queue: usize) -> std::io::Result<DecisionLog> {
        DecisionLog::start_rotating(output, None, queue)
    }

    /// Starts the writer task for `output`, rotating a `file` output by size when `rotate` says
    /// so, and the thread that reports dropped records.
    pub fn start_rotating(
        output: &LogOutput,
        rotate: Option<Rotation>,
        queue: usize,
    ) -> std::io::Result<DecisionLog> {
        DecisionLog::start_outputs(output, rotate, None, queue)
    }

    /// Starts the decision log `config` describes: its output, rotation, queue and, when
    /// `decision_log.otlp` is set, the collector (call inside the Tokio runtime that serves).
    pub fn start_configured(config: &DecisionLogConfig) -> Result<DecisionLog, DecisionLogError> {
        let otlp = config.otlp.as_ref().map(OtlpRecords::start).transpose()?;
        Ok(DecisionLog::start_outputs(
            &config.output,
            config.rotate,
            otlp,
            config.queue,
        )?)
    }

    fn start_outputs(
        output: &LogOutput,
        rotate: Option<Rotation>,
        otlp: Option<OtlpRecords>,
        queue: usize,
    ) -> std::io::Result<DecisionLog> {
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let sink: Box<dyn Write + Send> = match output {
            LogOutput::Off if otlp.is_none() => {
                return Ok(DecisionLog {
                    sender: None,
                    dropped,
                    queued,
                    reported: Arc::new(AtomicU64::new(0)),
                    writer: None,
                });
            }
            LogOutput::Off => Box::new(std::io::sink()),
            LogOutput::Stdout => Box::new(std::io::stdout()),
            LogOutput::Stderr => Box::new(std::io::stderr()),
            LogOutput::File(path) => match rotate {
                Some(rotation) => Box::new(RotatingFile::open(path, rotation)?),
                None => Box::new(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)?,
                ),
            },
        };
        let (sender, receiver) = mpsc::channel(queue);
        let writer = Arc::new(WriterState {
            started: Instant::now(),
            beat_ms: AtomicU64::new(0),
            written: AtomicU64::new(0),
            exited: AtomicBool::new(false),
        });
        let state = writer.clone();
        // A plain thread: writes block, and they must never occupy an async worker.
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_records(receiver, sink, otlp, &state))?;
        // Drops are reported by a thread of their own: when the output stalls, the writer is
        // stuck in a write, and that is exactly when records are being dropped.
        let reported = Arc::new(AtomicU64::new(0));
        let (watched, noted) = (dropped.clone(), reported.clone());
        std::thread::Builder::new()
            .name("decision-log-drops".into())
            .spawn(move || report_drops(&watched, &noted))?;
        Ok(DecisionLog {
            sender: Some(sender),
            dropped,
            queued,
            reported,
            writer: Some(writer),
        })
    }

    /// Queues a record (noting it on the current Check span, if traced); drops and counts it
    /// when the queue is full.
    pub fn record(&self, record: DecisionRecord) {
        crate::telemetry::record_decision(&record);
        let Some(sender) = &self.sender else {
            return;
        };
        match sender.try_send(Message::Record(Box::new(record))) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Records dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records accepted into the queue so far.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Why decisions are not being written, for liveness: the writer thread has ended, or it
    /// has made no progress for [`WRITER_STALL_LIMIT`] while records wait. `None` when it is
    /// healthy or logging is off.
    pub fn writer_problem(&self) -> Option<String> {
        let writer = self.writer.as_ref()?;
        let waiting = self
            .queued()
            .saturating_sub(writer.written.load(Ordering::Relaxed));
        judge_writer(
            writer.exited.load(Ordering::Relaxed),
            waiting,
            writer.since_beat(),
        )
    }

    /// Waits (up to `limit`) until everything queued so far is written and flushed: used on
    /// shutdown so that the last decisions are not lost. Reports drops not reported yet.
    pub async fn flush(&self, limit: Duration) {
        let Some(sender) = &self.sender else {
            return;
        };
        let (done, wait) = tokio::sync::oneshot::channel();
        if tokio::time::timeout(limit, sender.send(Message::Flush(done)))
            .await
            .is_ok()
        {
            let _ = tokio::time::timeout(limit, wait).await;
        }
        report_new_drops(&self.dropped, &self.reported);
    }
}

fn write_records(
    mut receiver: mpsc::Receiver<Message>,
    sink: Box<dyn Write + Send>,
    otlp: Option<OtlpRecords>,
    state: &Arc<WriterState>,
) {
    let _exit = ExitMark(state.clone());
    let mut out = std::io::BufWriter::new(sink);
    let mut line = Vec::with_capacity(2048);
    loop {
        state.beat();
        // Poll instead of blocking per record: a blocking receive makes every Check wake this
        // thread (a futex syscall and a context switch on a machine Envoy shares), which the
        // serve-mode profile showed as the largest single cost. Records reach the sink within
        // WRITE_INTERVAL; an idle writer wakes 1/WRITE_INTERVAL times a second.
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(WRITE_INTERVAL);
                continue;
            }
            Err(mpsc::error::TryRecvError::Disconnected) => break,
        };
        let mut next = Some(message);
        let mut result = Ok(());
        let mut flushed = Vec::new();
        // Drain what is queued, then flush once.
        while let Some(message) = next.take() {
            match message {
                Message::Record(record) => {
                    line.clear();
                    if serde_json::to_writer(&mut line, &record).is_ok() {
                        if let Some(otlp) = &otlp {
                            // serde_json writes UTF-8; the check is free next to the export.
                            if let Ok(text) = std::str::from_utf8(&line) {
                                otlp.emit(&record, text);
                            }
                        }
                        line.push(b'\n');
                        result = result.and(out.write_all(&line));
                    }
                    // Progress per record, not per batch: under sustained load the queue may
                    // never run dry, and a batch may last as long as the load does.
                    state.written.fetch_add(1, Ordering::Relaxed);
                    state.beat();
                }
                Message::Flush(done) => flushed.push(done),
            }
            next = receiver.try_recv().ok();
        }
        if let Err(e) = result.and(out.flush()) {
            tracing::error!(error = %e, "decision_log.write_failed");
        }
        state.beat();
        if !flushed.is_empty()
            && let Some(otlp) = &otlp
        {
            otlp.flush();
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
    let _ = out.flush();
    if let Some(otlp) = &otlp {
        otlp.shutdown(OTLP_SHUTDOWN_LIMIT);
    }
}

/// Reports dropped records every [`DROP_REPORT_INTERVAL`] while there are new ones, whether or
/// not records flow and whether or not the writer is stuck, until every `DecisionLog` is gone.
/// [`DecisionLog::flush`] reports the last ones on shutdown, so no drop goes unreported.
fn report_drops(dropped: &Arc<AtomicU64>, reported: &AtomicU64) {
    loop {
        std::thread::sleep(DROP_REPORT_INTERVAL);
        report_new_drops(dropped, reported);
        if Arc::strong_count(dropped) == 1 {
            return;
        }
    }
}

/// Logs `decision_log.records_dropped` when records were dropped since the last report.
fn report_new_drops(dropped: &AtomicU64, reported: &AtomicU64) {
    let now_dropped = dropped.load(Ordering::Relaxed);
    let before = reported.fetch_max(now_dropped, Ordering::Relaxed);
    if now_dropped > before {
        tracing::warn!(
            dropped_total = now_dropped,
            dropped_since_last = now_dropped - before,
            "decision_log.records_dropped"
        );
    }
}

/// A decision-log file rotated by size: before a line would take it past `max_bytes`, `path`
/// becomes `path.1` (`path.1` becomes `path.2`, …, the oldest beyond `keep` is overwritten) and
/// a new `path` is started. Only whole lines are written, so every file holds complete records,
/// however the caller chunks its writes. A rotation that fails (a full disk, a read-only folder)
/// is logged and the current file goes on growing: records are not dropped for it.
struct RotatingFile {
    /// The live file's path.
    path: std::path::PathBuf,
    /// Size bound and files kept.
    rotation: Rotation,
    /// The live file.
    file: std::fs::File,
    /// Bytes in the live file.
    written: u64,
    /// Bytes of a line not finished yet by the caller.
    partial: Vec<u8>,
    /// Complete lines waiting to be written in one call.
    ready: Vec<u8>,
}

impl RotatingFile {
    fn open(path: &std::path::Path, rotation: Rotation) -> std::io::Result<RotatingFile> {
        let file = Self::append(path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            written,
            partial: Vec::new(),
            ready: Vec::new(),
        })
    }

    fn append(path: &std::path::Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    }

    /// `path.<n>`.
    fn rotated(&self, n: usize) -> std::path::PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        std::path::PathBuf::from(name)
    }

    /// Writes what is ready, then shifts the files and starts a new one.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.write_ready()?;
        let shifted = (1..self.rotation.keep).rev().try_for_each(|n| {
            match std::fs::rename(self.rotated(n), self.rotated(n + 1)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        });
        let renamed = shifted.and_then(|()| std::fs::rename(&self.path, self.rotated(1)));
        let reopened = renamed.and_then(|()| Self::append(&self.path));
        match reopened {
            Ok(file) => {
                self.file = file;
                self.written = 0;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "decision_log.rotate_failed");
                // Try again after another `max_bytes`.
                self.written = 0;
            }
        }
        Ok(())
    }

    /// Writes the complete lines gathered so far to the live file.
    fn write_ready(&mut self) -> std::io::Result<()> {
        if !self.ready.is_empty() {
            self.file.write_all(&self.ready)?;
            self.written += self.ready.len() as u64;
            self.ready.clear();
        }
        Ok(())
    }
}

/// Complete lines gathered before they are written in one call.
const ROTATING_WRITE_CHUNK: usize = 64 * 1024;

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(end + 1);
            let length = (self.partial.len() + line.len()) as u64;
            let size = self.written + self.ready.len() as u64;
            if size > 0 && size + length > self.rotation.max_bytes {
                self.rotate()?;
            }
            self.ready.append(&mut self.partial);
            self.ready.extend_from_slice(line);
            if self.ready.len() >= ROTATING_WRITE_CHUNK {
                self.write_ready()?;
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_ready()?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_liveness_rule() {
        let limit = WRITER_STALL_LIMIT;
        let just_over = limit + Duration::from_millis(1);
        // (thread ended, records waiting, time since progress) → unhealthy?
        let cases = [
            (false, 0, Duration::ZERO, false),
            // Idle for long (it beats while idle, but a descheduled thread is no fault).
            (false, 0, limit * 10, false),
            // Busy but moving.
            (false, 5_000, Duration::from_millis(5), false),
            (false, 1, limit, false),
            // Stuck in a write with records waiting.
            (false, 1, just_over, true),
            (false, 400, limit * 3, true),
            // Ended: unhealthy whatever else.
            (true, 0, Duration::ZERO, true),
            (true, 9, limit * 3, true),
        ];
        for (exited, waiting, since, unhealthy) in cases {
            let verdict = judge_writer(exited, waiting, since);
            assert_eq!(
                verdict.is_some(),
                unhealthy,
                "exited {exited}, {waiting} waiting, {since:?}: {verdict:?}"
            );
        }
        let why = judge_writer(false, 400, Duration::from_secs(12)).unwrap_or_default();
        assert_eq!(
            why,
            "decision-log writer (no progress for 12 s, 400 records waiting)"
        );
    }

    #[tokio::test]
    async fn a_working_writer_is_healthy_and_an_ended_one_is_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let output = LogOutput::File(dir.path().join("d.jsonl"));
        let log = DecisionLog::start(&output, 8).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(log.writer_problem(), None);
        let writer = log.writer.clone().unwrap_or_else(|| unreachable!());
        // Dropping every sender ends the thread, as a crash of the writer would.
        let DecisionLog { sender, .. } = log.clone();
        drop(sender);
        drop(log);
        let until = Instant::now() + Duration::from_secs(10);
        while !writer.exited.load(Ordering::Relaxed) {
            assert!(Instant::now() < until, "the writer never ended");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let observer = DecisionLog {
            sender: None,
            dropped: Arc::new(AtomicU64::new(0)),
            queued: Arc::new(AtomicU64::new(0)),
            reported: Arc::new(AtomicU64::new(0)),
            writer: Some(writer),
        };
        assert_eq!(
            observer.writer_problem().as_deref(),
            Some("decision-log writer (thread ended)")
        );
    }

    #[test]
    fn rotation_keeps_whole_lines_and_bounded_files() {
        let dir = std::env::temp_dir().join(format!("cedargate-rotate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        let path = dir.join("d.jsonl");
        let rotation = Rotation {
            max_bytes: 100,
            keep: 3,
        };
        let mut file = RotatingFile::open(&path, rotation).unwrap_or_else(|e| unreachable!("{e}"));
        let lines: Vec<String> = (0..20)
            .map(|i| format!("{{\"n\":{i:03},\"pad\":\"{}\"}}\n", "x".repeat(i % 7 * 5)))
            .collect();
        let all = lines.concat();
        // Chunks that cut lines anywhere, as a buffered writer may.
        for chunk in all.as_bytes().chunks(37) {
            file.write_all(chunk)
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        file.flush().unwrap_or_else(|e| unreachable!("{e}"));
        let mut kept = String::new();
        for name in ["d.jsonl.3", "d.jsonl.2", "d.jsonl.1", "d.jsonl"] {
            let text = std::fs::read_to_string(dir.join(name))
                .unwrap_or_else(|e| unreachable!("{name}: {e}"));
            assert!(text.len() <= 100, "{name} is {} bytes", text.len());
            assert!(text.ends_with('\n'), "{name} ends mid-line");
            kept.push_str(&text);
        }
        assert!(!dir.join("d.jsonl.4").exists(), "only `keep` rotated files");
        assert!(
            all.ends_with(&kept),
            "the newest lines are kept, in order, whole"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
