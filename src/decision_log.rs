//! Decision records: one versioned JSON line per Check, queued off the request path.
//!
//! [`DecisionRecord`] is a public contract (documented in `docs/decision-log.md`; bump `v` on
//! any incompatible change). Checks hand records to a bounded queue with `try_send` and never
//! wait: when the queue is full the record is dropped and counted, and the writer reports drops
//! periodically. Records never contain a raw token, cookie or `Authorization` value: token facts
//! are issuer, subject, jti and a short hash; headers come only through an allow-list, and
//! configured claims are redacted before the record is queued (see `redaction`).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::LogOutput;
use crate::decision::DecidingPolicy;
use crate::mapping::CedarRequest;

/// Record format version.
pub const RECORD_VERSION: u32 = 1;
/// Longest a record waits in the queue before the writer picks it up.
const WRITE_INTERVAL: Duration = Duration::from_millis(5);
/// How often dropped-record counts are reported.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Token facts safe to keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFacts {
    /// Configured issuer name.
    pub issuer: String,
    /// `iss`.
    pub iss: String,
    /// `sub`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub sub: Option<String>,
    /// `jti`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub jti: Option<String>,
    /// `client_id` (or `azp`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// Short SHA-256 of the token.
    pub hash: String,
    /// Whether verification came from the cache.
    pub cached: bool,
}

/// One decision, as queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Format version ([`RECORD_VERSION`]).
    pub v: u32,
    /// RFC 3339 time the Check arrived (UTC, microseconds).
    pub time: String,
    /// Unique id, also sent to the upstream and the client.
    pub decision_id: String,
    /// Envoy's `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub request_id: Option<String>,
    /// W3C trace id: the Check span's when traces are exported (`telemetry.otlp`), else the
    /// one in the request's `traceparent` header.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace_id: Option<String>,
    /// `allow` or `deny`.
    pub decision: String,
    /// HTTP status returned (200 for allow).
    pub status: u16,
    /// Reason code.
    pub reason: String,
    /// `enforce` (or `shadow` for shadow evaluations).
    pub mode: String,
    /// Principal as Cedar prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub principal: Option<String>,
    /// Action as Cedar prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub action: Option<String>,
    /// Resource as Cedar prints it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub resource: Option<String>,
    /// Matched route.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub route: Option<String>,
    /// Policies that determined the decision.
    pub policies: Vec<DecidingPolicy>,
    /// Errors met while deciding.
    pub errors: Vec<String>,
    /// Token facts, when a token was presented and verified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub token: Option<TokenFacts>,
    /// Client address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_ip: Option<String>,
    /// The request headers named in `decision_log.headers` that the request carried.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Time spent deciding, microseconds.
    pub latency_us: u64,
    /// Policy-set version (content hash).
    pub policy_version: String,
    /// The Cedar request and request-derived entities, for replay.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cedar: Option<CedarRequest>,
}

/// RFC 3339 UTC with microseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
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
}

impl DecisionLog {
    /// Starts the writer task for `output`.
    pub fn start(output: &LogOutput, queue: usize) -> std::io::Result<DecisionLog> {
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicU64::new(0));
        let sink: Box<dyn Write + Send> = match output {
            LogOutput::Off => {
                return Ok(DecisionLog {
                    sender: None,
                    dropped,
                    queued,
                });
            }
            LogOutput::Stdout => Box::new(std::io::stdout()),
            LogOutput::Stderr => Box::new(std::io::stderr()),
            LogOutput::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (sender, receiver) = mpsc::channel(queue);
        let dropped_for_writer = dropped.clone();
        // A plain thread: writes block, and they must never occupy an async worker.
        std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_records(receiver, sink, &dropped_for_writer))?;
        Ok(DecisionLog {
            sender: Some(sender),
            dropped,
            queued,
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

    /// Waits (up to `limit`) until everything queued so far is written and flushed: used on
    /// shutdown so that the last decisions are not lost.
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
    }
}

fn write_records(
    mut receiver: mpsc::Receiver<Message>,
    sink: Box<dyn Write + Send>,
    dropped: &AtomicU64,
) {
    let mut out = std::io::BufWriter::new(sink);
    let mut reported = 0u64;
    let mut last_report = std::time::Instant::now();
    let mut line = Vec::with_capacity(2048);
    loop {
        // Poll instead of blocking per record: a blocking receive makes every Check wake this
        // thread (a futex syscall and a context switch on a machine Envoy shares), which the
        // serve-mode profile showed as the largest single cost. Records reach the sink within
        // WRITE_INTERVAL; an idle writer wakes 1/WRITE_INTERVAL times a second.
        let message = match receiver.try_recv() {
            Ok(message) => message,
            Err(mpsc::error::TryRecvError::Empty) => {
                report_drops(dropped, &mut reported, &mut last_report);
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
                        line.push(b'\n');
                        result = result.and(out.write_all(&line));
                    }
                }
                Message::Flush(done) => flushed.push(done),
            }
            next = receiver.try_recv().ok();
        }
        if let Err(e) = result.and(out.flush()) {
            tracing::error!(error = %e, "decision_log.write_failed");
        }
        for done in flushed {
            let _ = done.send(());
        }
        report_drops(dropped, &mut reported, &mut last_report);
    }
    let _ = out.flush();
}

/// Logs dropped records at most once per [`DROP_REPORT_INTERVAL`], even while no record flows.
fn report_drops(dropped: &AtomicU64, reported: &mut u64, last_report: &mut std::time::Instant) {
    let now_dropped = dropped.load(Ordering::Relaxed);
    if now_dropped > *reported && last_report.elapsed() >= DROP_REPORT_INTERVAL {
        tracing::warn!(
            dropped_total = now_dropped,
            dropped_since_last = now_dropped - *reported,
            "decision_log.records_dropped"
        );
        *reported = now_dropped;
        *last_report = std::time::Instant::now();
    }
}
