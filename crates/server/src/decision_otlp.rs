//! Decision records to an OpenTelemetry collector as OTLP log records (`decision_log.otlp`, off
//! by default), beside (or instead of) the JSON lines on stdout or in a file.
//!
//! Only the decision-log writer thread calls this module, with a record it has already
//! serialized: the Check path never waits for a collector. Each OTLP log record's body is the
//! record's JSON line, byte for byte what the file output holds, so `cedargate logs` and
//! `cedargate replay` read records back from whatever the collector stores; a few attributes
//! (decision, reason, status, principal, action, resource, …) let a backend filter without
//! parsing, and the record's trace id becomes the log's trace context so backends join the
//! decision to Envoy's trace. The SDK's batch processor drops silently when its queue is full,
//! so a bounded admission ([`ExportAccount`]) sits in front of it: what it refuses is dropped and
//! counted (`cedargate_decision_log_otlp_records_total{result="dropped"}`), failed exports are
//! counted and logged once per episode, and drops are reported in the log periodically and on
//! shutdown. This module must not log through the OpenTelemetry layer (its target is excluded
//! from traces in `telemetry`), and never records token bytes: it only forwards the record,
//! which is secret-safe by construction.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, Key};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    BatchConfigBuilder, BatchLogProcessor, LogBatch, LogExporter, LogProcessor, SdkLogRecord,
    SdkLogger, SdkLoggerProvider,
};

use crate::telemetry::{ExportAccount, TelemetryError, otlp_batch, otlp_channel, otlp_resource};
use cedargate_core::config::OtlpConfig;
use cedargate_core::record::DecisionRecord;

/// The OTLP log record's event name: one per decision.
pub const EVENT_NAME: &str = "cedargate.decision";
/// The instrumentation scope records are emitted under.
const SCOPE: &str = "cedargate.decision_log";

/// The running OTLP output: a logger whose records go through the bounded admission into the
/// SDK's batch processor and out through the OTLP/gRPC exporter.
#[derive(Debug)]
pub struct OtlpRecords {
    /// Owns the batch processor (and its export thread).
    provider: SdkLoggerProvider,
    /// Creates and emits the log records.
    logger: SdkLogger,
    /// The queue's books, for the final drop report.
    account: Arc<ExportAccount>,
}

impl OtlpRecords {
    /// Builds the exporter for `config`. Call inside the Tokio runtime that serves: the gRPC
    /// channel runs on it. Nothing connects until the first export.
    pub fn start(config: &OtlpConfig) -> Result<OtlpRecords, TelemetryError> {
        let exporter = opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_channel(otlp_channel(config)?)
            .with_timeout(config.timeout)
            .build()?;
        let account = Arc::new(ExportAccount::new(
            config.queue,
            crate::metrics::decision_log_otlp,
            "decision_log.otlp_dropped: the export queue was full",
            "decision_log.otlp_export_failed: records are lost until the collector answers",
            "decision_log.otlp_export_recovered",
        ));
        let (queue, batch_size, delay) = otlp_batch(config);
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_max_export_batch_size(batch_size)
            .with_scheduled_delay(delay)
            .build();
        let exporter = CountingExporter {
            inner: exporter,
            account: account.clone(),
        };
        let processor = Admission {
            inner: BatchLogProcessor::builder(exporter)
                .with_batch_config(batch)
                .build(),
            account: account.clone(),
        };
        let provider = SdkLoggerProvider::builder()
            .with_log_processor(processor)
            .with_resource(otlp_resource(config))
            .build();
        let logger = provider.logger_with_scope(
            InstrumentationScope::builder(SCOPE)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        tracing::info!(
            endpoint = %config.endpoint,
            queue = config.queue,
            "decision_log.otlp_enabled"
        );
        Ok(OtlpRecords {
            provider,
            logger,
            account,
        })
    }

    /// Hands one record (and its JSON line, without the newline) to the export queue; drops and
    /// counts it when the queue is full.
    pub fn emit(&self, record: &DecisionRecord, line: &str) {
        let mut log = self.logger.create_log_record();
        log.set_event_name(EVENT_NAME);
        let time = humantime::parse_rfc3339(&record.time).unwrap_or_else(|_| SystemTime::now());
        log.set_timestamp(time);
        log.set_observed_timestamp(SystemTime::now());
        // An errored evaluation is worth a look; every other decision, allow or deny, is routine.
        let (severity, text) = if record.errors.is_empty() {
            (Severity::Info, "INFO")
        } else {
            (Severity::Warn, "WARN")
        };
        log.set_severity_number(severity);
        log.set_severity_text(text);
        log.set_body(AnyValue::String(line.to_owned().into()));
        log.add_attribute("cedargate.decision_id", record.decision_id.clone());
        log.add_attribute("cedargate.decision", record.decision.clone());
        log.add_attribute("cedargate.reason", record.reason.clone());
        log.add_attribute("http.response.status_code", i64::from(record.status));
        log.add_attribute("cedargate.mode", record.mode.clone());
        log.add_attribute("cedargate.policy_version", record.policy_version.clone());
        for (key, value) in [
            ("cedargate.principal", &record.principal),
            ("cedargate.action", &record.action),
            ("cedargate.resource", &record.resource),
            ("cedargate.route", &record.route),
            ("cedargate.request_id", &record.request_id),
        ] {
            if let Some(value) = value {
                log.add_attribute(Key::from_static_str(key), value.clone());
            }
        }
        if let Some(shadow) = &record.shadow {
            log.add_attribute("cedargate.shadow.agrees", shadow.agrees);
        }
        if let Some(trace_id) = record
            .trace_id
            .as_deref()
            .and_then(|t| TraceId::from_hex(t).ok())
            .filter(|t| *t != TraceId::INVALID)
        {
            // The record keeps the trace, not the span: the log joins the trace as a whole.
            log.set_trace_context(trace_id, SpanId::INVALID, Some(TraceFlags::SAMPLED));
        }
        self.logger.emit(log);
    }

    /// Exports what is queued, waiting at most the export timeout per batch. Blocks: call it
    /// off the async workers (the writer thread does).
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "decision_log.otlp_flush_failed");
        }
        self.account.report_drops(true);
    }

    /// Exports what is queued and stops the export thread.
    pub fn shutdown(&self, timeout: Duration) {
        if let Err(e) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %e, "decision_log.otlp_shutdown_failed");
        }
        self.account.report_drops(true);
    }
}

/// Bounds the export queue and counts what it refuses, in front of the SDK's batch processor.
#[derive(Debug)]
struct Admission {
    /// The SDK's batch processor (queue + export thread).
    inner: BatchLogProcessor,
    /// The queue's books, shared with the exporter.
    account: Arc<ExportAccount>,
}

impl LogProcessor for Admission {
    fn emit(&self, data: &mut SdkLogRecord, instrumentation: &InstrumentationScope) {
        if self.account.admit() {
            self.inner.emit(data, instrumentation);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP log exporter, keeping the books. Runs on the SDK's export thread.
#[derive(Debug)]
struct CountingExporter {
    /// OTLP/gRPC exporter.
    inner: opentelemetry_otlp::LogExporter,
    /// The queue's books, shared with [`Admission`].
    account: Arc<ExportAccount>,
}

impl LogExporter for CountingExporter {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let n = batch.iter().count();
        let result = self.inner.export(batch).await;
        self.account.exported(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
