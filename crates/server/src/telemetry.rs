//! Operational logs and traces: the `tracing` subscriber (text or JSON on stderr, level from the
//! config or `RUST_LOG`) and, when `telemetry.otlp` is configured, OTLP/gRPC export of one span
//! per Check, parented on the W3C trace context Envoy sends.
//!
//! Recording never slows or fails a Check. With OTLP off (the default) no Check span exists at
//! all: the span's target is filtered out of the log layer, so the span macro returns a disabled
//! span. With OTLP on, a finished span is handed to a bounded queue and exported by the SDK's
//! batch thread; when the queue is full the span is dropped and counted
//! (`cedargate_trace_spans_total{result="dropped"}`), and a failed export is counted and logged
//! once per episode. Export never loops back into traces: only `cedargate` targets reach the
//! OpenTelemetry layer (not tonic/h2/hyper, which the exporter itself drives), this module's
//! own events are excluded from it, and the SDK's internal logs are compiled out. Calls to
//! cedargate's own API join their caller's trace through [`CallTrace`] (gRPC metadata only).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, Span as SdkSpan, SpanData,
    SpanExporter, SpanProcessor,
};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::prelude::*;

use crate::metrics::ExportOutcome;
use cedargate_core::config::{LogFormat, OtlpConfig, TelemetryConfig};
use cedargate_core::record::DecisionRecord;

/// Target of the Check span. Excluded from the log layer (a span per Check is a trace, not a
/// log line) and, with OTLP off, from everything: the span is then never created.
const CHECK_TARGET: &str = "cedargate::check";
/// Span field saying whether the Check's token was verified from the cache.
const TOKEN_CACHE_FIELD: &str = "cedargate.token_cache_hit";
/// Spans or records handed to the exporter at once (the OpenTelemetry SDK's default batch size).
const MAX_EXPORT_BATCH: usize = 512;
/// How often, at most, dropped spans or records are reported in the log while they keep being
/// dropped.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// A global `tracing` subscriber is already installed.
    #[error("installing the log subscriber: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
    /// The collector endpoint or its TLS settings were refused.
    #[error("OTLP endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Running telemetry; [`Telemetry::shutdown`] exports what is still queued.
pub struct Telemetry {
    /// The span pipeline, when OTLP is on.
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports queued spans (bounded by the export timeout) and stops the export thread. Blocks:
    /// call it outside async code, with the Tokio runtime still alive (the exporter's gRPC
    /// channel runs on it).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "telemetry.shutdown_failed");
        }
    }
}

/// Log filter: `RUST_LOG` when set, else `level`. The Check span's target is always off here.
fn log_filter(level: &str) -> EnvFilter {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    match format!("{CHECK_TARGET}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Installs the log subscriber alone (the offline commands, which export nothing).
pub fn init_logs(level: &str, format: LogFormat, ansi: bool) -> Result<(), TelemetryError> {
    install(level, format, ansi, None)
}

/// Installs logs per `config` (`format` overrides the config's format when given; `ansi`
/// colours text logs) and, when
/// `config.otlp` is set, the span exporter. Call inside the Tokio runtime that serves.
pub fn init(
    config: &TelemetryConfig,
    format: Option<LogFormat>,
    ansi: bool,
) -> Result<Telemetry, TelemetryError> {
    let provider = config.otlp.as_ref().map(tracer_provider).transpose()?;
    install(
        &config.log.level,
        format.unwrap_or(config.log.format),
        ansi,
        provider.as_ref(),
    )?;
    if let Some(otlp) = &config.otlp {
        tracing::info!(
            endpoint = %otlp.endpoint,
            sampling_ratio = otlp.sampling_ratio,
            queue = otlp.queue,
            "telemetry.otlp_enabled"
        );
    }
    Ok(Telemetry { provider })
}

fn install(
    level: &str,
    format: LogFormat,
    ansi: bool,
    provider: Option<&SdkTracerProvider>,
) -> Result<(), TelemetryError> {
    let text = (format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .with_filter(log_filter(level))
    });
    let json = (format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(log_filter(level))
    });
    // Only cedargate's own spans and events become trace data; the exporters' events (export
    // trouble) never do, so a failing export cannot feed itself.
    let traced = Targets::new()
        .with_target("cedargate", LevelFilter::INFO)
        .with_target("cedargate_server::telemetry", LevelFilter::OFF)
        .with_target("cedargate_server::decision_otlp", LevelFilter::OFF);
    let otel = provider.map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("cedargate"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(traced)
    });
    tracing_subscriber::registry()
        .with(text)
        .with(json)
        .with(otel)
        .try_init()?;
    Ok(())
}

/// The gRPC channel to a collector. Our own channel, so that connecting is bounded too (a
/// black-holed collector must not hold the export thread forever); https uses the system's CA
/// roots. Lazy: nothing connects until the first export.
pub(crate) fn otlp_channel(
    config: &OtlpConfig,
) -> Result<tonic::transport::Channel, TelemetryError> {
    let mut endpoint = tonic::transport::Endpoint::from_shared(config.endpoint.clone())?
        .connect_timeout(config.timeout)
        .timeout(config.timeout)
        .tcp_nodelay(true);
    if config.endpoint.starts_with("https://") {
        endpoint =
            endpoint.tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots())?;
    }
    Ok(endpoint.connect_lazy())
}

/// The OTLP resource: `service.name`, `service.version` and the configured attributes.
pub(crate) fn otlp_resource(config: &OtlpConfig) -> Resource {
    let mut resource = Resource::builder().with_service_name(config.service_name.clone());
    resource = resource.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    for (key, value) in &config.resource_attributes {
        resource = resource.with_attribute(KeyValue::new(key.clone(), value.clone()));
    }
    resource.build()
}

/// The SDK batch processor's settings for an export queue bounded by `config.queue`. The SDK
/// queue gets headroom beyond it: [`ExportAccount::admit`] enforces the bound and counts what it
/// refuses, so the SDK never drops (uncounted) on its own.
pub(crate) fn otlp_batch(config: &OtlpConfig) -> (usize, usize, Duration) {
    (
        config.queue + config.queue / 4 + 64,
        MAX_EXPORT_BATCH.min(config.queue),
        config.batch_delay,
    )
}

fn tracer_provider(config: &OtlpConfig) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_channel(otlp_channel(config)?)
        .with_timeout(config.timeout)
        .build()?;
    let account = Arc::new(ExportAccount::new(
        config.queue,
        crate::metrics::trace_spans,
        "telemetry.spans_dropped: the export queue was full",
        "telemetry.export_failed: spans are lost until the collector answers",
        "telemetry.export_recovered",
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
        inner: BatchSpanProcessor::new(exporter, batch),
        account,
    };
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sampling_ratio,
        ))))
        .with_resource(otlp_resource(config))
        .build())
}

/// The books of one OTLP export queue (spans, or decision records): admission against the
/// bound, outcomes counted in a metric, trouble logged once per episode and drops reported at
/// most every [`DROP_REPORT_INTERVAL`]. `admit` runs on the producer's path: atomics, no lock.
#[derive(Debug)]
pub(crate) struct ExportAccount {
    /// The queue bound (`*.otlp.queue`).
    limit: usize,
    /// Items admitted and not yet handed to the exporter.
    queued: AtomicUsize,
    /// Items refused since start.
    dropped: AtomicUsize,
    /// Set while exports fail, so that a collector outage logs one line, not one per batch.
    failing: AtomicBool,
    /// When drops were last reported, and the count then.
    last_drop_report: std::sync::Mutex<(Instant, usize)>,
    /// Counts outcomes in the queue's metric family.
    count: fn(ExportOutcome, u64),
    /// Event logged when drops are reported.
    dropped_event: &'static str,
    /// Event logged when exports start failing.
    failed_event: &'static str,
    /// Event logged when exports work again.
    recovered_event: &'static str,
}

impl ExportAccount {
    pub(crate) fn new(
        limit: usize,
        count: fn(ExportOutcome, u64),
        dropped_event: &'static str,
        failed_event: &'static str,
        recovered_event: &'static str,
    ) -> ExportAccount {
        ExportAccount {
            limit,
            queued: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
            last_drop_report: std::sync::Mutex::new((Instant::now(), 0)),
            count,
            dropped_event,
            failed_event,
            recovered_event,
        }
    }

    /// Takes a place in the queue, or counts a drop when it is full.
    pub(crate) fn admit(&self) -> bool {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            (self.count)(ExportOutcome::Dropped, 1);
            return false;
        }
        true
    }

    /// Items refused so far.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Notes the outcome of exporting `n` items (which leave the queue), and reports drops.
    pub(crate) fn exported(&self, n: usize, result: &OTelSdkResult) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
        let count = u64::try_from(n).unwrap_or(u64::MAX);
        match result {
            Ok(()) => {
                (self.count)(ExportOutcome::Exported, count);
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("{}", self.recovered_event);
                }
            }
            Err(e) => {
                (self.count)(ExportOutcome::Failed, count);
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, items = n, "{}", self.failed_event);
                }
            }
        }
        self.report_drops(false);
    }

    /// Logs the drops since the last report, if the last report is older than
    /// [`DROP_REPORT_INTERVAL`] (or at once with `now`, on shutdown).
    pub(crate) fn report_drops(&self, now: bool) {
        let dropped = self.dropped();
        let Ok(mut last) = self.last_drop_report.lock() else {
            return;
        };
        if dropped > last.1 && (now || last.0.elapsed() >= DROP_REPORT_INTERVAL) {
            tracing::warn!(
                dropped_total = dropped,
                dropped_since_last = dropped - last.1,
                "{}",
                self.dropped_event
            );
            *last = (Instant::now(), dropped);
        }
    }
}

/// Bounds the span export queue and counts what it refuses, in front of the SDK's batch
/// processor (which drops silently when full). `on_end` runs on the Check path.
#[derive(Debug)]
struct Admission {
    /// The SDK's batch processor (queue + export thread).
    inner: BatchSpanProcessor,
    /// The queue's books, shared with the exporter.
    account: Arc<ExportAccount>,
}

impl SpanProcessor for Admission {
    fn on_start(&self, span: &mut SdkSpan, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.account.admit() {
            self.inner.on_end(span);
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

/// The OTLP span exporter, keeping the books. Runs on the SDK's export thread, never on the
/// Check path.
#[derive(Debug)]
struct CountingExporter {
    /// OTLP/gRPC exporter.
    inner: opentelemetry_otlp::SpanExporter,
    /// The queue's books, shared with [`Admission`].
    account: Arc<ExportAccount>,
}

impl SpanExporter for CountingExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        self.account.exported(n, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// `traceparent` and `tracestate` of one carrier.
struct Carrier<'a> {
    traceparent: Option<&'a str>,
    tracestate: Option<&'a str>,
}

impl Extractor for Carrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => self.traceparent,
            "tracestate" => self.tracestate,
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent", "tracestate"]
    }
}

/// The trace context a Check continues: from the gRPC call's own metadata when present (Envoy's
/// ext_authz client span: cedargate becomes its child), else from the HTTP request's headers in
/// the CheckRequest (the client's or Envoy's context). Invalid or absent: a new root.
fn parent_context(
    metadata: (Option<&str>, Option<&str>),
    headers: &HashMap<String, String>,
) -> Context {
    let propagator = TraceContextPropagator::new();
    let (traceparent, tracestate) = match metadata {
        (Some(parent), state) => (Some(parent), state),
        (None, _) => (
            headers.get("traceparent").map(String::as_str),
            headers.get("tracestate").map(String::as_str),
        ),
    };
    propagator.extract(&Carrier {
        traceparent,
        tracestate,
    })
}

/// The span for one Check (disabled, and free, unless OTLP is on). `metadata` is the gRPC call's
/// `traceparent` and `tracestate`; `headers` the HTTP request's.
pub fn check_span(
    metadata: (Option<&str>, Option<&str>),
    headers: &HashMap<String, String>,
) -> Span {
    let span = tracing::info_span!(
        target: CHECK_TARGET,
        "envoy.service.auth.v3.Authorization/Check",
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = "envoy.service.auth.v3.Authorization",
        rpc.method = "Check",
        cedargate.decision = Empty,
        cedargate.reason = Empty,
        cedargate.status_code = Empty,
        cedargate.decision_id = Empty,
        cedargate.principal = Empty,
        cedargate.action = Empty,
        cedargate.resource = Empty,
        cedargate.route = Empty,
        cedargate.policies = Empty,
        cedargate.policy_version = Empty,
        cedargate.token_cache_hit = Empty,
        cedargate.request_id = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    // Fails only if the span was already started, which it can't be here.
    let _ = span.set_parent(parent_context(metadata, headers));
    if let Some(id) = headers.get("x-request-id") {
        span.record("cedargate.request_id", id.as_str());
    }
    span
}

/// Notes a decision on the current Check span (a no-op without one). Called as the record is
/// queued, so the span carries what the decision log carries: reason, principal, action,
/// resource, deciding policies, whether the token came from the cache.
pub fn record_decision(record: &DecisionRecord) {
    let span = Span::current();
    if span.is_disabled() || record.mode != "enforce" {
        return;
    }
    span.record("cedargate.decision", record.decision.as_str());
    span.record("cedargate.reason", record.reason.as_str());
    span.record("cedargate.status_code", record.status);
    span.record("cedargate.decision_id", record.decision_id.as_str());
    span.record("cedargate.policy_version", record.policy_version.as_str());
    for (field, value) in [
        ("cedargate.principal", &record.principal),
        ("cedargate.action", &record.action),
        ("cedargate.resource", &record.resource),
        ("cedargate.route", &record.route),
    ] {
        if let Some(value) = value {
            span.record(field, value.as_str());
        }
    }
    if !record.policies.is_empty() {
        let ids: Vec<&str> = record.policies.iter().map(|p| p.id.as_str()).collect();
        span.record("cedargate.policies", ids.join(","));
    }
    if let Some(token) = &record.token {
        span.record(TOKEN_CACHE_FIELD, token.cached);
    }
}

/// The trace id of the current Check span (32 hex digits), when spans are being recorded.
pub fn current_trace_id() -> Option<String> {
    let span = Span::current();
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The W3C trace context (`traceparent`, `tracestate`) in a gRPC call's metadata: how a caller
/// of cedargate's own API (`authorizer.rs`) puts the call into its trace.
#[derive(Debug, Clone, Default)]
pub struct CallTrace {
    /// `traceparent`, as sent (checked when used).
    traceparent: Option<String>,
    /// `tracestate`, as sent.
    tracestate: Option<String>,
}

impl CallTrace {
    /// The trace context in `metadata` (values that are not visible ASCII are ignored).
    pub fn of(metadata: &tonic::metadata::MetadataMap) -> CallTrace {
        let get = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        CallTrace {
            traceparent: get("traceparent"),
            tracestate: get("tracestate"),
        }
    }

    /// Parents `span` on the caller's context, as a Check span is parented on Envoy's (a new
    /// root when absent or malformed; nothing at all for a disabled span, i.e. OTLP off).
    pub fn parent(&self, span: &Span) {
        if span.is_disabled() {
            return;
        }
        let context = parent_context(
            (self.traceparent.as_deref(), self.tracestate.as_deref()),
            &HashMap::new(),
        );
        // Fails only if the span was already started, which the caller's isn't yet.
        let _ = span.set_parent(context);
    }

    /// The trace id of a well-formed `traceparent`: the call's records carry it with OTLP off
    /// too (`ask::Caller::trace_id`).
    pub fn trace_id(&self) -> Option<String> {
        self.traceparent
            .as_deref()
            .and_then(cedargate_core::redaction::trace_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn trace_of(cx: &Context) -> Option<(String, String)> {
        let span = cx.span();
        let sc = span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
    }

    #[test]
    fn grpc_metadata_wins_over_request_headers() {
        let headers: HashMap<String, String> =
            [("traceparent".to_string(), OTHER.to_string())].into();
        let cx = parent_context((Some(PARENT), None), &headers);
        assert_eq!(
            trace_of(&cx),
            Some((
                "4bf92f3577b34da6a3ce929d0e0e4736".into(),
                "00f067aa0ba902b7".into()
            ))
        );
        let cx = parent_context((None, None), &headers);
        assert_eq!(
            trace_of(&cx).map(|t| t.0),
            Some("0af7651916cd43dd8448eb211c80319c".into())
        );
    }

    #[test]
    fn a_bad_or_missing_traceparent_starts_a_new_trace() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let cx = parent_context((Some(bad), None), &HashMap::new());
            assert_eq!(trace_of(&cx), None, "{bad:?}");
        }
        assert_eq!(
            trace_of(&parent_context((None, None), &HashMap::new())),
            None
        );
    }

    #[tokio::test]
    async fn an_api_call_s_records_carry_its_caller_s_trace_id_without_spans() {
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert("traceparent", PARENT.parse().unwrap());
        let trace = CallTrace::of(&metadata);
        let span = tracing::info_span!(target: CHECK_TARGET, "api");
        trace.parent(&span);
        assert!(span.is_disabled());
        assert_eq!(
            trace.trace_id().as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        metadata.insert("traceparent", "00-garbage-01".parse().unwrap());
        assert_eq!(CallTrace::of(&metadata).trace_id(), None);
        assert_eq!(CallTrace::default().trace_id(), None);
    }

    #[test]
    fn without_a_subscriber_nothing_is_recorded_and_nothing_fails() {
        let span = check_span((Some(PARENT), None), &HashMap::new());
        assert!(span.is_disabled());
        assert_eq!(current_trace_id(), None);
    }
}
