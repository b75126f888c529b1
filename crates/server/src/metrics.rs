//! Prometheus metrics, served as text on the admin port's `/metrics`.
//!
//! Two kinds, rendered one after the other:
//!
//! - **Events** (decisions, Check latency, token-cache lookups, JWKS fetches, entity provider
//!   fetches and cache lookups, exported spans) are
//!   recorded where they happen through the `metrics` facade into one process-wide
//!   `metrics-exporter-prometheus` recorder ([`start`] installs it once). Recording is an atomic
//!   add on a pre-registered handle, or a sharded-map lookup for labelled series: never a lock
//!   held across an await, never IO, never an error on the Check path.
//! - **State** (read by `admin` at scrape time and handed over as plain values, so this module
//!   depends on no other part of the server: policy-set version, reload outcomes, key age per issuer, decision-log queue and
//!   drops, readiness) is read from the server's own snapshots when scraped ([`render`]), so it
//!   can't drift from what `/readyz` and `/policy` report.
//!
//! [`FAMILIES`] lists every metric family cedargate exposes; the Grafana dashboard and the alert
//! rules are tested against it. Names follow Prometheus conventions: `cedargate_` prefix, base
//! units (seconds), `_total` on counters. This module never decides anything and never fails a
//! request: without an installed recorder every call is a no-op.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use cedargate_core::config::Config;
use cedargate_core::decision::Decision;

/// Decisions by `decision` (allow/deny), `reason` (the decision-log reason code) and `status`.
pub const DECISIONS: &str = "cedargate_decisions_total";
/// Time from a Check's arrival at the gRPC handler to its answer.
pub const CHECK_DURATION: &str = "cedargate_check_duration_seconds";
/// Checks being decided right now.
pub const CHECKS_IN_FLIGHT: &str = "cedargate_checks_in_flight";
/// Checks whose caller stopped waiting (Envoy's deadline passed) before an answer.
pub const CHECKS_CANCELLED: &str = "cedargate_checks_cancelled_total";
/// Verified-token cache lookups by `result` (hit/miss).
pub const TOKEN_CACHE_LOOKUPS: &str = "cedargate_token_cache_lookups_total";
/// Key fetches (discovery + JWKS) by `issuer` and `result` (ok/error).
pub const JWKS_FETCHES: &str = "cedargate_jwks_fetches_total";
/// Seconds since an issuer's keys were last fetched successfully.
pub const JWKS_KEY_AGE: &str = "cedargate_jwks_key_age_seconds";
/// An issuer's `max_staleness_seconds`: key age beyond it fails the issuer closed.
pub const JWKS_MAX_STALENESS: &str = "cedargate_jwks_max_staleness_seconds";
/// 1 while an issuer's keys can verify tokens (fetched and not stale), else 0.
pub const JWKS_KEYS_USABLE: &str = "cedargate_jwks_keys_usable";
/// Hot reloads by `result` (ok/error).
pub const POLICY_RELOADS: &str = "cedargate_policy_reloads_total";
/// 1 unless the last reload attempt was refused.
pub const POLICY_LAST_RELOAD_OK: &str = "cedargate_policy_last_reload_successful";
/// The policy set in force: value 1, `version` label.
pub const POLICY_SET_INFO: &str = "cedargate_policy_set_info";
/// When the policy set in force was loaded.
pub const POLICY_SET_LOADED: &str = "cedargate_policy_set_loaded_timestamp_seconds";
/// Policies in the set in force.
pub const POLICY_SET_POLICIES: &str = "cedargate_policy_set_policies";
/// Decision records accepted into the writer's queue.
pub const DECISION_LOG_QUEUED: &str = "cedargate_decision_log_records_queued_total";
/// Decision records dropped because the queue was full.
pub const DECISION_LOG_DROPPED: &str = "cedargate_decision_log_records_dropped_total";
/// Decision records for the OTLP collector (`decision_log.otlp`) by `result`: exported, failed
/// (export error) or dropped (export queue full).
pub const DECISION_LOG_OTLP: &str = "cedargate_decision_log_otlp_records_total";
/// Shadow evaluations of a candidate policy set by `result`: agree, would_allow (the candidate
/// allows what was denied), would_deny (it denies what was allowed).
pub const SHADOW_DECISIONS: &str = "cedargate_shadow_decisions_total";
/// Finished spans by `result`: exported, failed (export error) or dropped (queue full).
pub const TRACE_SPANS: &str = "cedargate_trace_spans_total";
/// Entity provider fetches (one per uid not in its cache) by `result`: ok, not_found (404 or
/// `[]`), error, timeout.
pub const ENTITY_FETCHES: &str = "cedargate_entity_provider_fetches_total";
/// Entity provider cache lookups by `result` (hit/miss), one per uid a Check asks about.
pub const ENTITY_CACHE_LOOKUPS: &str = "cedargate_entity_provider_cache_lookups_total";
/// Checks that reached Cedar, by `result`: hit (answered from the decision cache) or miss
/// (evaluated).
pub const DECISION_CACHE_LOOKUPS: &str = "cedargate_decision_cache_lookups_total";
/// Time one entity provider fetch took, answer read and checked.
pub const ENTITY_FETCH_DURATION: &str = "cedargate_entity_provider_fetch_duration_seconds";
/// Requests to introspection endpoints, by issuer and result (`active`, `inactive`, `error`).
pub const INTROSPECTION_REQUESTS: &str = "cedargate_introspection_requests_total";
/// Introspection cache lookups by result (`hit`, `miss`).
pub const INTROSPECTION_CACHE_LOOKUPS: &str = "cedargate_introspection_cache_lookups_total";
/// Latency of one introspection request, by issuer.
pub const INTROSPECTION_DURATION: &str = "cedargate_introspection_duration_seconds";
/// API key file reloads by result (`ok`, `failed`).
pub const API_KEY_RELOADS: &str = "cedargate_api_key_reloads_total";
/// The policy bundle in force (`policy_bundle`): value 1, `revision` and `digest` labels; one
/// sample with value 0 and empty labels when policies come from a local `policy_dir`.
pub const POLICY_BUNDLE_INFO: &str = "cedargate_policy_bundle_info";
/// Bundle polls by `result`: updated (a new bundle swapped in), not_modified (304 or the same
/// bundle), error (the server could not be asked or answered an error), rejected (signature,
/// archive or policy checks refused the bundle; the last good one stays).
pub const POLICY_BUNDLE_FETCHES: &str = "cedargate_policy_bundle_fetches_total";
/// When a poll last confirmed or replaced the bundle in force; 0 before the first.
pub const POLICY_BUNDLE_LAST_SUCCESS: &str =
    "cedargate_policy_bundle_last_success_timestamp_seconds";
/// `Authorizer` API calls (`authorizer_api`) by `method` (is_authorized, batch_is_authorized)
/// and `code` (ok, invalid_argument, unauthenticated, permission_denied, unavailable).
pub const AUTHORIZER_CALLS: &str = "cedargate_authorizer_calls_total";
/// Time to answer one `Authorizer` API call, by `method`.
pub const AUTHORIZER_DURATION: &str = "cedargate_authorizer_call_duration_seconds";
/// `Authorizer` API answers (one per item) by `method`, `decision` and `reason`.
pub const AUTHORIZER_DECISIONS: &str = "cedargate_authorizer_decisions_total";
/// 1 while `/readyz` answers 200.
pub const READY: &str = "cedargate_ready";
/// Build information: value 1, `version` label.
pub const BUILD_INFO: &str = "cedargate_build_info";

/// Histogram bounds for [`CHECK_DURATION`], in seconds. A Check with a cached token takes tens
/// of microseconds, so the low end is fine-grained; an unknown-`kid` refetch may wait 300 ms and
/// Envoy's deadline in our configs is 500 ms, so the top bucket is 1 s. `0.005` is the latency
/// objective in `deploy/prometheus/alerts.yaml`: keep it a bucket bound.
pub const CHECK_DURATION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// Histogram bounds for [`ENTITY_FETCH_DURATION`], in seconds: a loopback or in-cluster lookup
/// takes about a millisecond, the default budget per Check is 100 ms, and a fetch may run on for
/// ten budgets to fill the cache (`entity_provider`'s fetch limit), so the top bucket is 2.5 s.
pub const ENTITY_FETCH_DURATION_BUCKETS: [f64; 13] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// How often the recorder folds recorded latencies into histogram buckets between scrapes, so
/// that an unscraped process doesn't accumulate raw samples.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic count.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Bucketed distribution (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family: name, type, help text, label names.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Full metric name.
    pub name: &'static str,
    /// Prometheus type.
    pub kind: Kind,
    /// `# HELP` text.
    pub help: &'static str,
    /// Label names its series carry.
    pub labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: Kind,
    help: &'static str,
    labels: &'static [&'static str],
) -> Family {
    Family {
        name,
        kind,
        help,
        labels,
    }
}

/// Every metric family on `/metrics`.
pub const FAMILIES: &[Family] = &[
    family(
        DECISIONS,
        Kind::Counter,
        "Check decisions by decision (allow/deny), reason code and HTTP status.",
        &["decision", "reason", "status"],
    ),
    family(
        CHECK_DURATION,
        Kind::Histogram,
        "Time to answer a Check, from the gRPC handler's start to the response.",
        &[],
    ),
    family(
        CHECKS_IN_FLIGHT,
        Kind::Gauge,
        "Checks being decided now.",
        &[],
    ),
    family(
        CHECKS_CANCELLED,
        Kind::Counter,
        "Checks abandoned by the caller (deadline passed) before cedargate answered.",
        &[],
    ),
    family(
        TOKEN_CACHE_LOOKUPS,
        Kind::Counter,
        "Verified-token cache lookups by result (hit/miss).",
        &["result"],
    ),
    family(
        JWKS_FETCHES,
        Kind::Counter,
        "Key fetches (OIDC discovery + JWKS) by issuer and result (ok/error).",
        &["issuer", "result"],
    ),
    family(
        JWKS_KEY_AGE,
        Kind::Gauge,
        "Seconds since the issuer's keys were last fetched successfully.",
        &["issuer"],
    ),
    family(
        JWKS_MAX_STALENESS,
        Kind::Gauge,
        "The issuer's max_staleness_seconds: older keys fail the issuer closed (401).",
        &["issuer"],
    ),
    family(
        JWKS_KEYS_USABLE,
        Kind::Gauge,
        "1 while the issuer's keys can verify tokens (fetched and not stale), else 0.",
        &["issuer"],
    ),
    family(
        POLICY_RELOADS,
        Kind::Counter,
        "Hot reloads of config and policies by result (ok/error).",
        &["result"],
    ),
    family(
        POLICY_LAST_RELOAD_OK,
        Kind::Gauge,
        "0 when the last reload attempt was refused (the previous policy set stays in force), else 1.",
        &[],
    ),
    family(
        POLICY_SET_INFO,
        Kind::Gauge,
        "The policy set in force (value 1); version is the policy_version in decision records.",
        &["version"],
    ),
    family(
        POLICY_SET_LOADED,
        Kind::Gauge,
        "Unix time the policy set in force was loaded.",
        &[],
    ),
    family(
        POLICY_SET_POLICIES,
        Kind::Gauge,
        "Policies in the policy set in force.",
        &[],
    ),
    family(
        DECISION_LOG_QUEUED,
        Kind::Counter,
        "Decision records accepted into the decision-log queue.",
        &[],
    ),
    family(
        DECISION_LOG_DROPPED,
        Kind::Counter,
        "Decision records dropped because the decision-log queue was full.",
        &[],
    ),
    family(
        DECISION_LOG_OTLP,
        Kind::Counter,
        "Decision records sent to the OTLP collector (decision_log.otlp) by result: exported, failed (export error) or dropped (export queue full).",
        &["result"],
    ),
    family(
        SHADOW_DECISIONS,
        Kind::Counter,
        "Decisions also evaluated against the shadow (candidate) policy set, by result: agree, would_allow, would_deny.",
        &["result"],
    ),
    family(
        TRACE_SPANS,
        Kind::Counter,
        "Finished spans by result: exported, failed (export error) or dropped (export queue full).",
        &["result"],
    ),
    family(
        ENTITY_FETCHES,
        Kind::Counter,
        "Entity provider fetches by result: ok, not_found (404 or []), error, timeout. All 0 without entity_provider.",
        &["result"],
    ),
    family(
        DECISION_CACHE_LOOKUPS,
        Kind::Counter,
        "Checks that reached Cedar, by result: hit (answered from the decision cache), miss (evaluated).",
        &["result"],
    ),
    family(
        ENTITY_CACHE_LOOKUPS,
        Kind::Counter,
        "Entity provider cache lookups by result (hit/miss), one per uid a Check asks the provider about.",
        &["result"],
    ),
    family(
        ENTITY_FETCH_DURATION,
        Kind::Histogram,
        "Time one entity provider fetch took, from the request to the checked answer.",
        &[],
    ),
    family(
        INTROSPECTION_REQUESTS,
        Kind::Counter,
        "Requests to RFC 7662 introspection endpoints, by issuer and result (active, inactive, error).",
        &["issuer", "result"],
    ),
    family(
        INTROSPECTION_CACHE_LOOKUPS,
        Kind::Counter,
        "Introspection answer cache lookups, by result (hit, miss).",
        &["result"],
    ),
    family(
        INTROSPECTION_DURATION,
        Kind::Histogram,
        "Latency of one introspection request, by issuer.",
        &["issuer"],
    ),
    family(
        API_KEY_RELOADS,
        Kind::Counter,
        "API key file reloads by result (ok, failed: the last good keys stay).",
        &["result"],
    ),
    family(
        POLICY_BUNDLE_INFO,
        Kind::Gauge,
        "The policy bundle in force (value 1) by revision and digest; 0 with empty labels when policies come from policy_dir.",
        &["revision", "digest"],
    ),
    family(
        POLICY_BUNDLE_FETCHES,
        Kind::Counter,
        "Policy bundle polls by result: updated, not_modified, error (server), rejected (bundle refused; the last good one stays).",
        &["result"],
    ),
    family(
        POLICY_BUNDLE_LAST_SUCCESS,
        Kind::Gauge,
        "Unix time a bundle poll last confirmed or replaced the bundle in force (0 before the first).",
        &[],
    ),
    family(
        AUTHORIZER_CALLS,
        Kind::Counter,
        "Authorizer API calls by method (is_authorized, batch_is_authorized) and code (ok, invalid_argument, unauthenticated, permission_denied, unavailable).",
        &["method", "code"],
    ),
    family(
        AUTHORIZER_DURATION,
        Kind::Histogram,
        "Time to answer one Authorizer API call, by method.",
        &["method"],
    ),
    family(
        AUTHORIZER_DECISIONS,
        Kind::Counter,
        "Authorizer API answers, one per item, by method, decision (allow/deny) and reason code.",
        &["method", "decision", "reason"],
    ),
    family(
        READY,
        Kind::Gauge,
        "1 while /readyz answers 200 (every issuer has usable keys, not draining).",
        &[],
    ),
    family(
        BUILD_INFO,
        Kind::Gauge,
        "cedargate build (value 1).",
        &["version"],
    ),
];

/// Pre-registered handles for the per-Check series, so the Check path does no key lookups.
struct Handles {
    /// [`CHECKS_IN_FLIGHT`].
    in_flight: Gauge,
    /// [`CHECK_DURATION`].
    duration: Histogram,
    /// [`CHECKS_CANCELLED`].
    cancelled: Counter,
    /// [`TOKEN_CACHE_LOOKUPS`] `{result="hit"}`.
    cache_hit: Counter,
    /// [`TOKEN_CACHE_LOOKUPS`] `{result="miss"}`.
    cache_miss: Counter,
    /// [`ENTITY_CACHE_LOOKUPS`] `{result="hit"}`.
    entity_hit: Counter,
    /// [`ENTITY_CACHE_LOOKUPS`] `{result="miss"}`.
    entity_miss: Counter,
    /// [`ENTITY_FETCH_DURATION`].
    entity_fetch_duration: Histogram,
    /// [`DECISION_CACHE_LOOKUPS`] `{result="hit"}`.
    decision_hit: Counter,
    /// [`DECISION_CACHE_LOOKUPS`] `{result="miss"}`.
    decision_miss: Counter,
}

/// The installed recorder's handle and the pre-registered handles; unset until [`start`].
static INSTALLED: OnceLock<Option<(PrometheusHandle, Handles)>> = OnceLock::new();

fn handles() -> Option<&'static Handles> {
    INSTALLED.get().and_then(Option::as_ref).map(|(_, h)| h)
}

/// Installs the process-wide recorder (once; later calls reuse it) and creates the zero-valued
/// series for `config`'s issuers, so that `increase()` and "no success lately" alerts see them
/// from the start. Returns whether a recorder of ours is installed.
pub fn start(config: &Config) -> bool {
    let installed = INSTALLED.get_or_init(install).is_some();
    for issuer in &config.issuers {
        for result in ["ok", "error"] {
            metrics::counter!(JWKS_FETCHES, "issuer" => issuer.name.to_string(), "result" => result)
                .absolute(0);
        }
        // Every issuer, as for JWKS fetches: the family is on /metrics whether or not an issuer
        // introspects (zeros where it doesn't).
        for result in ["active", "inactive", "error"] {
            metrics::counter!(INTROSPECTION_REQUESTS, "issuer" => issuer.name.to_string(), "result" => result)
                .absolute(0);
        }
        // Registered now, so the family is on /metrics (empty) before the first request.
        let _ = metrics::histogram!(INTROSPECTION_DURATION, "issuer" => issuer.name.to_string());
    }
    installed
}

fn install() -> Option<(PrometheusHandle, Handles)> {
    let builder = match PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(CHECK_DURATION.into()),
            &CHECK_DURATION_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(ENTITY_FETCH_DURATION.into()),
                &ENTITY_FETCH_DURATION_BUCKETS,
            )
        })
        .and_then(|b| {
            // An API call is decided like a Check (a batch of 100 in about a millisecond).
            b.set_buckets_for_metric(
                Matcher::Full(AUTHORIZER_DURATION.into()),
                &CHECK_DURATION_BUCKETS,
            )
        })
        .and_then(|b| {
            // An introspection request is a network call like an entity fetch: same bounds.
            b.set_buckets_for_metric(
                Matcher::Full(INTROSPECTION_DURATION.into()),
                &ENTITY_FETCH_DURATION_BUCKETS,
            )
        }) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "metrics.unavailable");
            return None;
        }
    };
    let handle = match builder.install_recorder() {
        Ok(h) => h,
        Err(e) => {
            // Another recorder owns the process (an embedding application): our event metrics
            // go there, /metrics shows the state metrics only.
            tracing::warn!(error = %e, "metrics.recorder_in_use");
            return None;
        }
    };
    for f in FAMILIES {
        let help = f.help;
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, help),
            Kind::Gauge => metrics::describe_gauge!(f.name, help),
            Kind::Histogram => {
                metrics::describe_histogram!(f.name, metrics::Unit::Seconds, help)
            }
        }
    }
    let handles = Handles {
        in_flight: metrics::gauge!(CHECKS_IN_FLIGHT),
        duration: metrics::histogram!(CHECK_DURATION),
        cancelled: metrics::counter!(CHECKS_CANCELLED),
        cache_hit: metrics::counter!(TOKEN_CACHE_LOOKUPS, "result" => "hit"),
        cache_miss: metrics::counter!(TOKEN_CACHE_LOOKUPS, "result" => "miss"),
        entity_hit: metrics::counter!(ENTITY_CACHE_LOOKUPS, "result" => "hit"),
        entity_miss: metrics::counter!(ENTITY_CACHE_LOOKUPS, "result" => "miss"),
        // Registered now, so the family is on /metrics (empty) before the first fetch.
        entity_fetch_duration: metrics::histogram!(ENTITY_FETCH_DURATION),
        decision_hit: metrics::counter!(DECISION_CACHE_LOOKUPS, "result" => "hit"),
        decision_miss: metrics::counter!(DECISION_CACHE_LOOKUPS, "result" => "miss"),
    };
    handles.decision_hit.absolute(0);
    handles.decision_miss.absolute(0);
    handles.in_flight.set(0.0);
    handles.cancelled.absolute(0);
    handles.cache_hit.absolute(0);
    handles.cache_miss.absolute(0);
    handles.entity_hit.absolute(0);
    handles.entity_miss.absolute(0);
    for result in FetchResult::ALL {
        metrics::counter!(ENTITY_FETCHES, "result" => result.label()).absolute(0);
    }
    for result in ["exported", "failed", "dropped"] {
        metrics::counter!(TRACE_SPANS, "result" => result).absolute(0);
        metrics::counter!(DECISION_LOG_OTLP, "result" => result).absolute(0);
    }
    for result in BUNDLE_RESULTS {
        metrics::counter!(POLICY_BUNDLE_FETCHES, "result" => result).absolute(0);
    }
    metrics::gauge!(POLICY_BUNDLE_LAST_SUCCESS).set(0.0);
    for result in ["hit", "miss"] {
        metrics::counter!(INTROSPECTION_CACHE_LOOKUPS, "result" => result).absolute(0);
    }
    for result in ["ok", "failed"] {
        metrics::counter!(API_KEY_RELOADS, "result" => result).absolute(0);
    }
    for result in ["agree", "would_allow", "would_deny"] {
        metrics::counter!(SHADOW_DECISIONS, "result" => result).absolute(0);
    }
    // Zero-valued from the start (with authorizer_api off too), so every family is on /metrics.
    for method in AUTHORIZER_METHODS {
        metrics::counter!(AUTHORIZER_CALLS, "method" => method, "code" => "ok").absolute(0);
        let _ = metrics::histogram!(AUTHORIZER_DURATION, "method" => method);
        for (decision, reason) in [("allow", "allow"), ("deny", "no_permit")] {
            metrics::counter!(AUTHORIZER_DECISIONS, "method" => method, "decision" => decision, "reason" => reason)
                .absolute(0);
        }
    }
    let upkeep = handle.clone();
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        // Scrapes fold samples too; only an unscraped process would grow.
        tracing::warn!(error = %e, "metrics.upkeep_unavailable");
    }
    Some((handle, handles))
}

/// Times one Check and counts it in flight; dropping it unfinished counts a cancelled Check
/// (tonic drops the handler's future when Envoy's deadline passes).
pub struct CheckTimer {
    /// When the handler started.
    started: Instant,
    /// Set by [`CheckTimer::finish`].
    finished: bool,
}

impl CheckTimer {
    /// Starts timing a Check.
    pub fn start() -> CheckTimer {
        if let Some(h) = handles() {
            h.in_flight.increment(1.0);
        }
        CheckTimer {
            started: Instant::now(),
            finished: false,
        }
    }

    /// Records the decision and the latency.
    pub fn finish(mut self, decision: &Decision) {
        self.finished = true;
        let Some(h) = handles() else { return };
        h.duration.record(self.started.elapsed().as_secs_f64());
        metrics::counter!(
            DECISIONS,
            "decision" => if decision.allowed { "allow" } else { "deny" },
            "reason" => decision.reason,
            "status" => status_label(decision.status),
        )
        .increment(1);
    }
}

impl Drop for CheckTimer {
    fn drop(&mut self) {
        if let Some(h) = handles() {
            h.in_flight.decrement(1.0);
            if !self.finished {
                h.cancelled.increment(1);
            }
        }
    }
}

/// The statuses cedargate answers with, as static label values (no allocation per Check).
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        // Browser routes (`sso`): redirects to and from the IdP, a refused return URL.
        302 => "302",
        400 => "400",
        401 => "401",
        403 => "403",
        503 => "503",
        _ => "other",
    }
}

/// The `Authorizer` API's methods, as metric labels.
const AUTHORIZER_METHODS: [&str; 2] = ["is_authorized", "batch_is_authorized"];

/// Counts one `Authorizer` API call with its status `code`, its latency, and its answers.
pub fn authorizer_call<'a>(
    method: &'static str,
    code: &'static str,
    took: Duration,
    answers: impl Iterator<Item = &'a Decision>,
) {
    if handles().is_none() {
        return;
    }
    metrics::counter!(AUTHORIZER_CALLS, "method" => method, "code" => code).increment(1);
    metrics::histogram!(AUTHORIZER_DURATION, "method" => method).record(took.as_secs_f64());
    for d in answers {
        metrics::counter!(
            AUTHORIZER_DECISIONS,
            "method" => method,
            "decision" => if d.allowed { "allow" } else { "deny" },
            "reason" => d.reason,
        )
        .increment(1);
    }
}

/// Counts a verified-token cache lookup.
pub fn token_cache_lookup(hit: bool) {
    if let Some(h) = handles() {
        if hit {
            h.cache_hit.increment(1);
        } else {
            h.cache_miss.increment(1);
        }
    }
}

/// Counts a key fetch for `issuer` (its configured name).
pub fn jwks_fetch(issuer: &str, ok: bool) {
    metrics::counter!(
        JWKS_FETCHES,
        "issuer" => issuer.to_string(),
        "result" => if ok { "ok" } else { "error" },
    )
    .increment(1);
}

/// What became of one entity provider fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchResult {
    /// 200 with entities.
    Ok,
    /// 404, or 200 with `[]`: the provider knows nothing about the uid (an answer, cached).
    NotFound,
    /// Refused, bad status, oversized or malformed answer.
    Error,
    /// No complete answer within the fetch limit.
    Timeout,
}

impl FetchResult {
    /// Every result, for the zero-valued series.
    const ALL: [FetchResult; 4] = [
        FetchResult::Ok,
        FetchResult::NotFound,
        FetchResult::Error,
        FetchResult::Timeout,
    ];

    /// The `result` label.
    fn label(self) -> &'static str {
        match self {
            FetchResult::Ok => "ok",
            FetchResult::NotFound => "not_found",
            FetchResult::Error => "error",
            FetchResult::Timeout => "timeout",
        }
    }
}

/// Counts and times one entity provider fetch.
pub fn entity_fetch(result: FetchResult, took: Duration) {
    if let Some(h) = handles() {
        h.entity_fetch_duration.record(took.as_secs_f64());
        metrics::counter!(ENTITY_FETCHES, "result" => result.label()).increment(1);
    }
}

/// Counts a Check that reached Cedar: answered from the decision cache, or evaluated.
pub fn decision_cache_lookup(hit: bool) {
    if let Some(h) = handles() {
        if hit {
            h.decision_hit.increment(1);
        } else {
            h.decision_miss.increment(1);
        }
    }
}

/// Counts an entity provider cache lookup.
pub fn entity_cache_lookup(hit: bool) {
    if let Some(h) = handles() {
        if hit {
            h.entity_hit.increment(1);
        } else {
            h.entity_miss.increment(1);
        }
    }
}

/// How a shadow evaluation compared with the enforced decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// Same decision.
    Agree,
    /// The candidate would allow what was denied.
    WouldAllow,
    /// The candidate would deny what was allowed.
    WouldDeny,
}

/// Counts one shadow evaluation.
pub fn shadow_decision(outcome: ShadowOutcome) {
    let result = match outcome {
        ShadowOutcome::Agree => "agree",
        ShadowOutcome::WouldAllow => "would_allow",
        ShadowOutcome::WouldDeny => "would_deny",
    };
    metrics::counter!(SHADOW_DECISIONS, "result" => result).increment(1);
}

/// What happened to finished spans, or to decision records sent to a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportOutcome {
    /// The collector accepted them.
    Exported,
    /// The export failed (collector unreachable, timeout, refused).
    Failed,
    /// Never queued: the export queue was full.
    Dropped,
}

impl ExportOutcome {
    /// The `result` label.
    fn label(self) -> &'static str {
        match self {
            ExportOutcome::Exported => "exported",
            ExportOutcome::Failed => "failed",
            ExportOutcome::Dropped => "dropped",
        }
    }
}

/// Counts `n` finished spans with `outcome`.
pub fn trace_spans(outcome: ExportOutcome, n: u64) {
    metrics::counter!(TRACE_SPANS, "result" => outcome.label()).increment(n);
}

/// Counts `n` decision records sent (or not) to the OTLP collector with `outcome`.
pub fn decision_log_otlp(outcome: ExportOutcome, n: u64) {
    metrics::counter!(DECISION_LOG_OTLP, "result" => outcome.label()).increment(n);
}

/// The `result` labels of [`POLICY_BUNDLE_FETCHES`].
const BUNDLE_RESULTS: [&str; 4] = ["updated", "not_modified", "error", "rejected"];

/// The bundle in force (revision, digest), for [`POLICY_BUNDLE_INFO`]. Process-wide like the
/// recorder: set by `bundle_fetch` when a bundle is enforced, rendered at scrape time, so the
/// series is replaced (not accumulated) when the revision changes.
static BUNDLE_ENFORCED: std::sync::Mutex<Option<(String, String)>> = std::sync::Mutex::new(None);

/// Notes the policy bundle in force.
pub fn bundle_enforced(revision: &str, digest: &str) {
    *BUNDLE_ENFORCED.lock().unwrap_or_else(|p| p.into_inner()) =
        Some((revision.to_string(), digest.to_string()));
}

/// Counts one bundle poll (`result`: one of `updated`, `not_modified`, `error`, `rejected`).
pub fn bundle_fetch(result: &'static str) {
    metrics::counter!(POLICY_BUNDLE_FETCHES, "result" => result).increment(1);
}

/// Notes a successful bundle poll.
pub fn bundle_success(at: SystemTime) {
    let secs = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    metrics::gauge!(POLICY_BUNDLE_LAST_SUCCESS).set(secs);
}

/// The server state the scrape-time metrics are read from.
#[derive(Debug, Clone)]
pub struct State {
    /// `/readyz` would answer 200.
    pub ready: bool,
    /// Policy-set version in force.
    pub policy_version: String,
    /// When it was loaded.
    pub policy_loaded_at: SystemTime,
    /// Policies in it.
    pub policies: usize,
    /// Reload counters and outcome.
    pub reload: ReloadCounts,
    /// Per issuer, in config order.
    pub issuers: Vec<IssuerState>,
    /// Decision records queued so far.
    pub log_queued: u64,
    /// Decision records dropped so far.
    pub log_dropped: u64,
}

/// Hot-reload outcomes, as the scrape reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Successful reloads since start.
    pub ok: u64,
    /// Refused reloads since start.
    pub failed: u64,
    /// The last attempt succeeded (or there was none).
    pub last_ok: bool,
}

/// One issuer's key state.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerState {
    /// Configured name.
    pub name: String,
    /// Seconds since the last successful fetch; `None` before the first.
    pub key_age: Option<f64>,
    /// `max_staleness_seconds`.
    pub max_staleness: f64,
    /// Keys present and not stale.
    pub usable: bool,
}

/// The `/metrics` body: recorded events, then `state`.
pub fn render(state: &State) -> String {
    let mut out = INSTALLED
        .get()
        .and_then(Option::as_ref)
        .map(|(h, _)| h.render())
        .unwrap_or_default();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let bundle = BUNDLE_ENFORCED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    render_state(state, bundle.as_ref(), &mut out);
    out
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// A per-issuer family; issuers without a value (keys never fetched, for the age) are left out.
fn issuer_family(
    out: &mut String,
    name: &str,
    issuers: &[IssuerState],
    value: impl Fn(&IssuerState) -> Option<f64>,
) {
    header(out, name);
    for issuer in issuers {
        if let Some(v) = value(issuer) {
            push_sample(out, name, &[("issuer", &issuer.name)], v);
        }
    }
}

fn render_state(state: &State, bundle: Option<&(String, String)>, out: &mut String) {
    sample(
        out,
        BUILD_INFO,
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    sample(out, READY, &[], bool_value(state.ready));
    sample(
        out,
        POLICY_SET_INFO,
        &[("version", &state.policy_version)],
        1.0,
    );
    let loaded = state
        .policy_loaded_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    sample(out, POLICY_SET_LOADED, &[], loaded);
    sample(out, POLICY_SET_POLICIES, &[], state.policies as f64);
    header(out, POLICY_RELOADS);
    push_sample(
        out,
        POLICY_RELOADS,
        &[("result", "ok")],
        state.reload.ok as f64,
    );
    push_sample(
        out,
        POLICY_RELOADS,
        &[("result", "error")],
        state.reload.failed as f64,
    );
    sample(
        out,
        POLICY_LAST_RELOAD_OK,
        &[],
        bool_value(state.reload.last_ok),
    );
    issuer_family(out, JWKS_KEY_AGE, &state.issuers, |i| i.key_age);
    issuer_family(out, JWKS_MAX_STALENESS, &state.issuers, |i| {
        Some(i.max_staleness)
    });
    issuer_family(out, JWKS_KEYS_USABLE, &state.issuers, |i| {
        Some(bool_value(i.usable))
    });
    match bundle {
        Some((revision, digest)) => sample(
            out,
            POLICY_BUNDLE_INFO,
            &[("revision", revision), ("digest", digest)],
            1.0,
        ),
        None => sample(
            out,
            POLICY_BUNDLE_INFO,
            &[("revision", ""), ("digest", "")],
            0.0,
        ),
    }
    sample(out, DECISION_LOG_QUEUED, &[], state.log_queued as f64);
    sample(out, DECISION_LOG_DROPPED, &[], state.log_dropped as f64);
}

/// `# HELP` and `# TYPE` of a family from [`FAMILIES`].
fn header(out: &mut String, name: &str) {
    if let Some(f) = FAMILIES.iter().find(|f| f.name == name) {
        let _ = writeln!(out, "# HELP {name} {}", f.help);
        let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
    }
}

/// A family with a single sample.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    header(out, name);
    push_sample(out, name, labels, value);
}

fn push_sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"");
            escape_label(out, v);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape `\`, `"` and newlines (Prometheus text format).
fn escape_label(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> State {
        State {
            ready: false,
            policy_version: "4be1d07a93c25f16".into(),
            policy_loaded_at: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            policies: 12,
            reload: ReloadCounts {
                ok: 3,
                failed: 1,
                last_ok: false,
            },
            issuers: vec![
                IssuerState {
                    name: "demo-idp".into(),
                    key_age: Some(12.5),
                    max_staleness: 86_400.0,
                    usable: true,
                },
                IssuerState {
                    name: "we\"ird\\name".into(),
                    key_age: None,
                    max_staleness: 60.0,
                    usable: false,
                },
            ],
            log_queued: 18_234,
            log_dropped: 7,
        }
    }

    #[test]
    fn state_is_rendered_as_prometheus_text() {
        let mut out = String::new();
        render_state(&state(), None, &mut out);
        for line in [
            "cedargate_ready 0",
            "cedargate_policy_set_info{version=\"4be1d07a93c25f16\"} 1",
            "cedargate_policy_set_loaded_timestamp_seconds 1700000000",
            "cedargate_policy_set_policies 12",
            "cedargate_policy_reloads_total{result=\"ok\"} 3",
            "cedargate_policy_reloads_total{result=\"error\"} 1",
            "cedargate_policy_last_reload_successful 0",
            "cedargate_jwks_key_age_seconds{issuer=\"demo-idp\"} 12.5",
            "cedargate_jwks_max_staleness_seconds{issuer=\"we\\\"ird\\\\name\"} 60",
            "cedargate_jwks_keys_usable{issuer=\"demo-idp\"} 1",
            "cedargate_jwks_keys_usable{issuer=\"we\\\"ird\\\\name\"} 0",
            "cedargate_decision_log_records_queued_total 18234",
            "cedargate_decision_log_records_dropped_total 7",
            "cedargate_policy_bundle_info{revision=\"\",digest=\"\"} 0",
            "# TYPE cedargate_policy_reloads_total counter",
            "# TYPE cedargate_jwks_key_age_seconds gauge",
        ] {
            assert!(out.lines().any(|l| l == line), "missing `{line}` in\n{out}");
        }
        let mut with_bundle = String::new();
        let bundle = ("2026.12.1".to_string(), "9a1e".to_string());
        render_state(&state(), Some(&bundle), &mut with_bundle);
        assert!(
            with_bundle
                .lines()
                .any(|l| l
                    == "cedargate_policy_bundle_info{revision=\"2026.12.1\",digest=\"9a1e\"} 1")
        );
        // An issuer never fetched has no age sample (rather than a made-up 0).
        assert!(!out.contains("cedargate_jwks_key_age_seconds{issuer=\"we"));
        // Every family is declared once, before its samples.
        for f in FAMILIES {
            assert!(
                out.matches(&format!("# TYPE {} ", f.name)).count() <= 1,
                "{}",
                f.name
            );
        }
    }

    #[test]
    fn families_follow_prometheus_naming() {
        let mut names = std::collections::BTreeSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} twice", f.name);
            assert!(f.name.starts_with("cedargate_"), "{}", f.name);
            assert!(
                f.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                f.name
            );
            match f.kind {
                Kind::Counter => assert!(f.name.ends_with("_total"), "{}", f.name),
                Kind::Gauge | Kind::Histogram => {
                    assert!(!f.name.ends_with("_total"), "{}", f.name)
                }
            }
            if f.kind == Kind::Histogram {
                assert!(f.name.ends_with("_seconds"), "{}", f.name);
            }
        }
    }

    #[test]
    fn the_latency_objective_is_a_bucket_bound() {
        assert!(CHECK_DURATION_BUCKETS.contains(&0.005));
        assert!(CHECK_DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ENTITY_FETCH_DURATION_BUCKETS
                .windows(2)
                .all(|w| w[0] < w[1])
        );
    }
}
