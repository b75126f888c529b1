//! Phase two: every field of the raw file validated into a typed [`Config`] that cannot be
//! invalid, collecting *every* problem with its position instead of stopping at the first. Out of
//! range values are reported, never clamped. Reads only the files the config names as secrets it
//! must check (the redaction key; upstream-token key files are only checked to exist: the server
//! reads keys) and the public keys of `policy_bundle`, parsed to catch a wrong file at load.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_saphyr::Spanned;

use super::defaults::*;
use super::model::*;
use super::problems::Collected;
use super::raw::*;
use super::urls::{has_user_info, resolve, url_problem};
use crate::routes::{LintSeverity, PathTemplate, Route, RouteTable};

pub(super) fn validate(
    raw: RawConfig,
    path: &Path,
    base: &Path,
    problems: &mut Collected,
) -> Config {
    let grpc_listen = listen_addr(raw.listen.grpc.as_ref(), DEFAULT_GRPC_LISTEN, problems);
    let admin_listen = listen_addr(raw.listen.admin.as_ref(), DEFAULT_ADMIN_LISTEN, problems);
    if grpc_listen == admin_listen && grpc_listen.port() != 0 {
        problems.nowhere("listen.grpc and listen.admin must differ");
    }
    let drain = match &raw.listen.drain_seconds {
        None => DEFAULT_DRAIN_SECS,
        Some(d) if d.value > MAX_DRAIN_SECS => {
            problems.at(
                d,
                format!(
                    "listen.drain_seconds {} exceeds the maximum {MAX_DRAIN_SECS}",
                    d.value
                ),
            );
            MAX_DRAIN_SECS
        }
        Some(d) => d.value,
    };

    let mut names = BTreeSet::new();
    let mut issuer_urls = BTreeSet::new();
    let mut issuers = Vec::new();
    for (i, spanned) in raw.issuers.iter().enumerate() {
        let issuer = validate_issuer(i, spanned, base, problems);
        if !names.insert(issuer.name.clone()) {
            problems.at(
                spanned,
                format!("issuer name `{}` is used twice", issuer.name),
            );
        }
        if !issuer_urls.insert(issuer.issuer.clone()) {
            problems.at(
                &spanned.value.issuer,
                format!("issuer `{}` is configured twice", issuer.issuer),
            );
        }
        issuers.push(Arc::new(issuer));
    }

    let spans: Vec<_> = raw.issuers.iter().collect();
    super::identity_sources::one_opaque_issuer(&issuers, &spans, problems);
    let api_keys = raw.api_keys.as_ref().and_then(|a| {
        super::identity_sources::api_keys(
            a,
            &raw.decision_log.headers,
            &raw.context.headers,
            base,
            problems,
        )
    });

    let mtls = raw.mtls.as_ref().map(|m| MtlsConfig {
        entity_type: entity_type(m.value.entity_type.as_ref(), DEFAULT_MTLS_TYPE, problems),
        trust_domains: m.value.trust_domains.iter().cloned().collect(),
    });

    let anonymous_type = entity_type(
        raw.anonymous_type.as_ref(),
        DEFAULT_ANONYMOUS_TYPE,
        problems,
    );
    let anonymous_id: Arc<str> = match &raw.anonymous_id {
        Some(id) if id.value.is_empty() => {
            problems.at(id, "anonymous_id must not be empty");
            DEFAULT_ANONYMOUS_ID.into()
        }
        Some(id) => id.value.as_str().into(),
        None => DEFAULT_ANONYMOUS_ID.into(),
    };
    let entity_provider = raw
        .entity_provider
        .as_ref()
        .and_then(|p| entity_provider(p, problems));
    let resource_type = entity_type(raw.resource_type.as_ref(), DEFAULT_RESOURCE_TYPE, problems);
    let authorizer_api = raw.authorizer_api.as_ref().map(|a| {
        super::authorizer_api::authorizer_api(
            a,
            &[
                (grpc_listen, "the Check port"),
                (admin_listen, "the admin port"),
            ],
            base,
            problems,
        )
    });

    let mut routes = Vec::new();
    let mut route_spans = Vec::new();
    for spanned in &raw.routes {
        if let Some(route) = validate_route(spanned, problems) {
            routes.push(route);
            route_spans.push(spanned);
        }
    }
    let routes = RouteTable::new(routes);
    let mut warnings = Collected::default();
    lint_routes(&routes, &route_spans, problems, &mut warnings);

    let unmatched = match raw.unmatched_route.as_ref() {
        None => Unmatched::Deny,
        Some(s) => match s.value.as_str() {
            "deny" => Unmatched::Deny,
            "default" => Unmatched::Default,
            other => {
                problems.at(
                    s,
                    format!("unmatched_route must be `deny` or `default`, not `{other}`"),
                );
                Unmatched::Deny
            }
        },
    };

    let mut headers = Vec::new();
    for h in &raw.context.headers {
        let name = h.value.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "authorization" | "cookie" | "proxy-authorization"
        ) {
            problems.at(
                h,
                format!("context.headers must not include `{name}`: it carries credentials"),
            );
        } else if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            problems.at(h, format!("`{}` is not a header name", h.value));
        } else {
            headers.push(name);
        }
    }

    let mut query = Vec::new();
    for q in &raw.context.query {
        if matches!(
            q.value.as_str(),
            "access_token" | "id_token" | "code" | "client_secret"
        ) {
            problems.at(
                q,
                format!(
                    "context.query must not include `{}`: it carries credentials",
                    q.value
                ),
            );
        } else if q.value.starts_with("__") {
            problems.at(
                q,
                format!(
                    "`{}`: names starting with `__` are reserved by Cedar",
                    q.value
                ),
            );
        } else {
            query.push(q.value.clone());
        }
    }

    let policy_bundle = raw
        .policy_bundle
        .as_ref()
        .and_then(|b| policy_bundle(b, base, problems));
    if let (Some(bundle), Some(_)) = (&raw.policy_bundle, &raw.policy_dir) {
        problems.at(
            bundle,
            "policy_dir and policy_bundle are both set: policies come from one or the other (remove policy_dir to serve the bundle)",
        );
    }
    let policy_dir = match &policy_bundle {
        Some(bundle) => bundle.cache_dir.join(BUNDLE_CURRENT_DIR),
        None => resolve(
            base,
            raw.policy_dir.as_deref().unwrap_or(DEFAULT_POLICY_DIR),
        ),
    };

    let limits = Limits {
        max_token_bytes: positive(
            raw.limits.max_token_bytes.as_ref(),
            DEFAULT_MAX_TOKEN_BYTES,
            "limits.max_token_bytes",
            problems,
        ),
        max_header_bytes: positive(
            raw.limits.max_header_bytes.as_ref(),
            DEFAULT_MAX_HEADER_BYTES,
            "limits.max_header_bytes",
            problems,
        ),
        max_concurrent_checks: positive(
            raw.limits.max_concurrent_checks.as_ref(),
            DEFAULT_MAX_CONCURRENT_CHECKS,
            "limits.max_concurrent_checks",
            problems,
        ),
    };

    let output = match (
        raw.decision_log.output.as_deref(),
        raw.decision_log.path.as_deref(),
    ) {
        (None | Some("stdout"), None) => LogOutput::Stdout,
        (Some("stderr"), None) => LogOutput::Stderr,
        (Some("off"), None) => LogOutput::Off,
        (None | Some("file"), Some(p)) => LogOutput::File(resolve(base, p)),
        (Some("file"), None) => {
            problems.nowhere("decision_log.output `file` needs decision_log.path");
            LogOutput::Stdout
        }
        (Some(out @ ("stdout" | "stderr" | "off")), Some(_)) => {
            problems.nowhere(format!(
                "decision_log.path is only for output `file`, not `{out}`"
            ));
            LogOutput::Stdout
        }
        (Some(other), _) => {
            problems.nowhere(format!(
                "decision_log.output must be stdout, stderr, file or off, not `{other}`"
            ));
            LogOutput::Stdout
        }
    };

    let sso = raw.sso.as_ref().and_then(|s| {
        super::sso::sso(
            s,
            &issuers,
            &raw.decision_log.headers,
            &raw.context.headers,
            base,
            problems,
        )
    });
    let rotate = raw
        .decision_log
        .rotate
        .as_ref()
        .and_then(|r| rotation(r, &output, problems));
    Config {
        source: path.to_path_buf(),
        grpc_listen,
        admin_listen,
        drain: Duration::from_secs(drain),
        realm: realm(raw.realm.as_ref(), problems),
        issuers,
        mtls,
        api_keys,
        anonymous_type,
        anonymous_id,
        entity_provider,
        authorizer_api,
        routes: Arc::new(routes),
        unmatched,
        resource_type,
        context: ContextConfig {
            headers,
            query,
            attributes: context_attributes(&raw.context.attributes, problems),
        },
        policy_dir,
        policy_bundle,
        limits,
        token_cache: TokenCacheConfig {
            capacity: raw
                .token_cache
                .capacity
                .unwrap_or(DEFAULT_TOKEN_CACHE_CAPACITY),
        },
        decision_cache_capacity: raw
            .decision_cache
            .capacity
            .unwrap_or(DEFAULT_DECISION_CACHE_CAPACITY),
        decision_log: DecisionLogConfig {
            output,
            queue: positive(
                raw.decision_log.queue.as_ref(),
                DEFAULT_DECISION_LOG_QUEUE,
                "decision_log.queue",
                problems,
            ),
            headers: record_headers(&raw.decision_log.headers, problems),
            redact_claims: redact_claims(&raw.decision_log.redact_claims, problems),
            redaction_key: raw
                .decision_log
                .redaction_key_file
                .as_ref()
                .and_then(|file| redaction_key(file, base, problems)),
            redaction_key_file: raw
                .decision_log
                .redaction_key_file
                .as_ref()
                .map(|file| resolve(base, &file.value)),
            max_header_value_bytes: positive(
                raw.decision_log.max_header_value_bytes.as_ref(),
                DEFAULT_MAX_HEADER_VALUE_BYTES,
                "decision_log.max_header_value_bytes",
                problems,
            ),
            rotate,
            otlp: raw
                .decision_log
                .otlp
                .as_ref()
                .map(|o| otlp(o, OtlpSection::DecisionLog, problems)),
        },
        telemetry: telemetry(&raw.telemetry, problems),
        shadow: raw.shadow.as_ref().map(|s| ShadowConfig {
            policy_dir: resolve(base, &s.policy_dir),
        }),
        upstream_token: raw
            .upstream_token
            .as_ref()
            .and_then(|u| upstream_token(u, base, problems)),
        sso,
        warnings: warnings.0,
    }
}

/// The route-table lint ([`RouteTable::lint`]) at the routes' positions: a route that can never
/// match is a problem, an overlap a warning.
fn lint_routes(
    routes: &RouteTable,
    spans: &[&Spanned<RawRoute>],
    problems: &mut Collected,
    warnings: &mut Collected,
) {
    let label = |i: usize| {
        let name = routes.iter().nth(i).map_or("", |r| &*r.name);
        match spans.get(i) {
            Some(span) => format!("`{name}` (line {})", span.referenced.line()),
            None => format!("`{name}`"),
        }
    };
    for finding in routes.lint(label) {
        let Some(span) = spans.get(finding.route) else {
            continue;
        };
        match finding.severity {
            LintSeverity::Error => problems.at(*span, finding.message),
            LintSeverity::Warning => warnings.at(*span, finding.message),
        }
    }
}

/// A header name cedargate may set or remove: lower-case token characters, not a pseudo-header
/// and not `host` (Envoy routes on it and refuses to change either).
fn mutable_header(raw: &Spanned<String>, field: &str, problems: &mut Collected) -> Option<String> {
    let name = raw.value.to_ascii_lowercase();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        problems.at(
            raw,
            format!("{field}: `{}` is not a header name", raw.value),
        );
        None
    } else if name == "host" {
        problems.at(raw, format!("{field}: `host` cannot be changed"));
        None
    } else {
        Some(name)
    }
}

/// `upstream_token`: every field checked, key files read (or a key generated).
fn upstream_token(
    spanned: &Spanned<RawUpstreamToken>,
    base: &Path,
    problems: &mut Collected,
) -> Option<UpstreamTokenConfig> {
    let raw = &spanned.value;
    let text = |s: &Spanned<String>, field: &str, problems: &mut Collected| -> Arc<str> {
        if s.value.trim().is_empty() || s.value.contains(char::is_whitespace) {
            problems.at(
                s,
                format!("upstream_token.{field} must be a non-empty string without spaces"),
            );
        }
        s.value.as_str().into()
    };
    let issuer = text(&raw.issuer, "issuer", problems);
    let audience = text(&raw.audience, "audience", problems);
    let service_audiences = raw
        .service_audiences
        .iter()
        .map(|(service, aud)| (service.clone(), text(aud, "service_audiences", problems)))
        .collect();
    let ttl = match &raw.ttl_seconds {
        Some(t) if t.value > MAX_UPSTREAM_TOKEN_TTL_SECS => {
            problems.at(
                t,
                format!(
                    "upstream_token.ttl_seconds {} exceeds the maximum {MAX_UPSTREAM_TOKEN_TTL_SECS}: upstream tokens are short-lived",
                    t.value
                ),
            );
            DEFAULT_UPSTREAM_TOKEN_TTL_SECS
        }
        other => positive(
            other.as_ref(),
            DEFAULT_UPSTREAM_TOKEN_TTL_SECS,
            "upstream_token.ttl_seconds",
            problems,
        ),
    };
    let reuse = match &raw.reuse_seconds {
        None => DEFAULT_UPSTREAM_TOKEN_REUSE_SECS.min(ttl / 2),
        Some(r) if r.value >= ttl => {
            problems.at(
                r,
                format!(
                    "upstream_token.reuse_seconds {} must be less than ttl_seconds {ttl}, or upstreams get tokens about to expire",
                    r.value
                ),
            );
            0
        }
        Some(r) => r.value,
    };
    let header = match &raw.header {
        None => DEFAULT_UPSTREAM_TOKEN_HEADER.to_string(),
        Some(h) => mutable_header(h, "upstream_token.header", problems)
            .unwrap_or_else(|| DEFAULT_UPSTREAM_TOKEN_HEADER.to_string()),
    };
    let mut claims = Vec::new();
    for c in &raw.claims {
        if c.value.trim().is_empty() {
            problems.at(c, "upstream_token.claims has an empty claim name");
        } else if RESERVED_CLAIMS.contains(&c.value.as_str()) {
            problems.at(
                c,
                format!(
                    "upstream_token.claims: `{}` is set by cedargate and cannot be copied from the caller's token",
                    c.value
                ),
            );
        } else if !claims.contains(&c.value) {
            claims.push(c.value.clone());
        }
    }
    let mut strip_headers = Vec::new();
    let strip: Vec<Option<String>> = match &raw.strip_headers {
        None => DEFAULT_UPSTREAM_TOKEN_STRIP
            .iter()
            .map(|h| Some(h.to_string()))
            .collect(),
        Some(list) => list
            .iter()
            .map(|h| mutable_header(h, "upstream_token.strip_headers", problems))
            .collect(),
    };
    for name in strip.into_iter().flatten() {
        // The token's own header is overwritten; removing it too would race the overwrite.
        if name != header && !strip_headers.contains(&name) {
            strip_headers.push(name);
        }
    }
    let algorithm = raw.algorithm.as_ref().and_then(|a| {
        let parsed = SigningAlgorithm::parse(&a.value);
        if parsed.is_none() {
            problems.at(
                a,
                format!(
                    "upstream_token.algorithm must be `ES256` or `EdDSA`, not `{}`",
                    a.value
                ),
            );
        }
        parsed
    });
    // Key files are named here and read by the server (which reports a bad key by file); a
    // missing file is reported here, at its position, so `cedargate validate` catches it too.
    let key_files = match &raw.key_files {
        Some(files) if files.value.is_empty() => {
            problems.at(
                files,
                "upstream_token.key_files is empty: list PEM files, or leave it out to generate a key at start",
            );
            return None;
        }
        Some(files) => {
            let mut paths = Vec::new();
            for f in &files.value {
                let path = resolve(base, &f.value);
                if !path.is_file() {
                    problems.at(
                        f,
                        format!("upstream_token.key_files: {}: no such file", path.display()),
                    );
                }
                paths.push(path);
            }
            paths
        }
        None => Vec::new(),
    };
    Some(UpstreamTokenConfig {
        issuer,
        audience,
        service_audiences,
        ttl: Duration::from_secs(ttl),
        reuse: Duration::from_secs(reuse),
        header: header.into(),
        claims,
        strip_headers: strip_headers.into(),
        key_files,
        algorithm,
    })
}

/// `decision_log.rotate`: only for a `file` output; both bounds at least 1.
fn rotation(
    raw: &Spanned<RawRotate>,
    output: &LogOutput,
    problems: &mut Collected,
) -> Option<Rotation> {
    if !matches!(output, LogOutput::File(_)) {
        problems.at(raw, "decision_log.rotate is only for output `file`");
        return None;
    }
    let max_bytes = positive(
        raw.value.max_bytes.as_ref(),
        DEFAULT_ROTATE_MAX_BYTES,
        "decision_log.rotate.max_bytes",
        problems,
    );
    let keep = positive(
        raw.value.keep.as_ref(),
        DEFAULT_ROTATE_KEEP,
        "decision_log.rotate.keep",
        problems,
    );
    Some(Rotation { max_bytes, keep })
}

/// `decision_log.headers`: lower-cased, credential headers refused.
fn record_headers(raw: &[Spanned<String>], problems: &mut Collected) -> Vec<String> {
    let mut headers = Vec::new();
    for h in raw {
        let name = h.value.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "authorization" | "cookie" | "proxy-authorization" | "set-cookie"
        ) {
            problems.at(
                h,
                format!("decision_log.headers must not include `{name}`: it carries credentials"),
            );
        } else if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
            problems.at(h, format!("`{}` is not a header name", h.value));
        } else if !headers.contains(&name) {
            headers.push(name);
        }
    }
    headers
}

/// `decision_log.redact_claims`: claim names.
fn redact_claims(raw: &[Spanned<String>], problems: &mut Collected) -> Vec<String> {
    let mut claims = Vec::new();
    for c in raw {
        if c.value.trim().is_empty() {
            problems.at(c, "decision_log.redact_claims has an empty claim name");
        } else if !claims.contains(&c.value) {
            claims.push(c.value.clone());
        }
    }
    claims
}

/// `decision_log.redaction_key_file`: read at load (and on reload), at least
/// [`MIN_REDACTION_KEY_BYTES`] bytes after trimming a trailing newline.
fn redaction_key(
    file: &Spanned<String>,
    base: &Path,
    problems: &mut Collected,
) -> Option<RedactionKey> {
    let path = resolve(base, &file.value);
    match std::fs::read(&path) {
        Ok(mut bytes) => {
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.len() < MIN_REDACTION_KEY_BYTES {
                problems.at(
                    file,
                    format!(
                        "decision_log.redaction_key_file {} holds {} bytes; use at least {MIN_REDACTION_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                        path.display(),
                        bytes.len()
                    ),
                );
                return None;
            }
            Some(RedactionKey(bytes.into()))
        }
        Err(e) => {
            problems.at(
                file,
                format!("decision_log.redaction_key_file {}: {e}", path.display()),
            );
            None
        }
    }
}

fn telemetry(raw: &RawTelemetry, problems: &mut Collected) -> TelemetryConfig {
    let level = match &raw.log.level {
        None => DEFAULT_LOG_LEVEL.to_string(),
        Some(l) => {
            if l.value.trim().is_empty()
                || tracing_subscriber::EnvFilter::try_new(&l.value).is_err()
            {
                problems.at(
                    l,
                    format!(
                        "telemetry.log.level `{}` is not a log filter (e.g. `info` or `warn,cedargate=debug`)",
                        l.value
                    ),
                );
            }
            l.value.clone()
        }
    };
    let format = match raw.log.format.as_ref() {
        None => LogFormat::Text,
        Some(f) => match f.value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.at(
                    f,
                    format!("telemetry.log.format must be `text` or `json`, not `{other}`"),
                );
                LogFormat::Text
            }
        },
    };
    TelemetryConfig {
        log: LogConfig { level, format },
        otlp: raw
            .otlp
            .as_ref()
            .map(|o| otlp(o, OtlpSection::Telemetry, problems)),
    }
}

/// Which `otlp` section is being read: traces, or decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtlpSection {
    /// `telemetry.otlp`: Check spans.
    Telemetry,
    /// `decision_log.otlp`: decision records as OTLP logs.
    DecisionLog,
}

fn otlp(spanned: &Spanned<RawOtlp>, section: OtlpSection, problems: &mut Collected) -> OtlpConfig {
    let (prefix, default_queue, default_delay) = match section {
        OtlpSection::Telemetry => (
            "telemetry.otlp",
            DEFAULT_OTLP_QUEUE,
            DEFAULT_OTLP_BATCH_DELAY_MS,
        ),
        OtlpSection::DecisionLog => (
            "decision_log.otlp",
            DEFAULT_DECISION_LOG_OTLP_QUEUE,
            DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS,
        ),
    };
    let raw = &spanned.value;
    let endpoint = raw.endpoint.value.trim_end_matches('/').to_string();
    if let Err(why) = check_otlp_endpoint(&endpoint) {
        problems.at(
            &raw.endpoint,
            format!("{prefix}.endpoint `{}` {why}", raw.endpoint.value),
        );
    }
    let sampling_ratio = match &raw.sampling_ratio {
        None => DEFAULT_OTLP_SAMPLING_RATIO,
        Some(r) if section == OtlpSection::DecisionLog => {
            problems.at(
                r,
                "decision_log.otlp.sampling_ratio: every decision is exported; sampling is for traces (telemetry.otlp)",
            );
            DEFAULT_OTLP_SAMPLING_RATIO
        }
        Some(r) if !(0.0..=1.0).contains(&r.value) => {
            problems.at(
                r,
                format!(
                    "{prefix}.sampling_ratio {} must be between 0 and 1",
                    r.value
                ),
            );
            DEFAULT_OTLP_SAMPLING_RATIO
        }
        Some(r) => r.value,
    };
    let service_name = match &raw.service_name {
        None => DEFAULT_OTLP_SERVICE_NAME.to_string(),
        Some(n) if n.value.trim().is_empty() => {
            problems.at(n, format!("{prefix}.service_name must not be empty"));
            DEFAULT_OTLP_SERVICE_NAME.to_string()
        }
        Some(n) => n.value.clone(),
    };
    if raw.resource_attributes.keys().any(|k| k.trim().is_empty()) {
        problems.at(
            spanned,
            format!("{prefix}.resource_attributes has an empty name"),
        );
    }
    OtlpConfig {
        endpoint,
        sampling_ratio,
        service_name,
        resource_attributes: raw.resource_attributes.clone(),
        timeout: Duration::from_millis(positive(
            raw.timeout_ms.as_ref(),
            DEFAULT_OTLP_TIMEOUT_MS,
            &format!("{prefix}.timeout_ms"),
            problems,
        )),
        queue: positive(
            raw.queue.as_ref(),
            default_queue,
            &format!("{prefix}.queue"),
            problems,
        ),
        batch_delay: Duration::from_millis(positive(
            raw.batch_delay_ms.as_ref(),
            default_delay,
            &format!("{prefix}.batch_delay_ms"),
            problems,
        )),
    }
}

/// An OTLP/gRPC endpoint is `http(s)://host[:port]`, nothing after the authority: a path such
/// as `/v1/traces` belongs to OTLP/HTTP, which cedargate does not speak.
fn check_otlp_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err("needs a host (and port), e.g. http://127.0.0.1:4317");
    }
    if rest.contains(['/', '?', '#']) {
        return Err(
            "must not have a path: OTLP/gRPC (port 4317) is spoken, not OTLP/HTTP (/v1/traces)",
        );
    }
    Ok(())
}

/// The realm goes inside a quoted `WWW-Authenticate` parameter: printable ASCII, no quote or
/// backslash, so it can never break the header.
fn realm(raw: Option<&Spanned<String>>, problems: &mut Collected) -> Arc<str> {
    match raw {
        None => DEFAULT_REALM.into(),
        Some(r) => {
            let ok = !r.value.is_empty()
                && r.value
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
            if !ok {
                problems.at(r, "realm must be printable ASCII without `\"` or `\\`");
            }
            r.value.as_str().into()
        }
    }
}

fn listen_addr(
    raw: Option<&Spanned<String>>,
    default: &str,
    problems: &mut Collected,
) -> SocketAddr {
    let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
    match raw {
        None => default.parse().unwrap_or(fallback),
        Some(s) => s.value.parse().unwrap_or_else(|_| {
            problems.at(s, format!("`{}` is not an ip:port address", s.value));
            fallback
        }),
    }
}

/// Checks a Cedar entity type name (`Type` or `Namespace::Type`).
fn entity_type(raw: Option<&Spanned<String>>, default: &str, problems: &mut Collected) -> Arc<str> {
    match raw {
        None => default.into(),
        Some(s) => {
            if cedar_policy::EntityTypeName::from_str(&s.value).is_err() {
                problems.at(s, format!("`{}` is not a Cedar entity type name", s.value));
            }
            s.value.as_str().into()
        }
    }
}

/// Algorithms an issuer may allow: asymmetric only, so a key published in a JWKS can never be
/// used as an HMAC secret.
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = Algorithm::from_str(name).map_err(|_| format!("unknown algorithm `{name}`"))?;
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(format!(
            "`{name}` is symmetric; only RS*, PS*, ES256, ES384 and EdDSA are allowed with published keys"
        )),
        _ => Ok(alg),
    }
}

fn validate_issuer(
    index: usize,
    spanned: &Spanned<RawIssuer>,
    base: &Path,
    problems: &mut Collected,
) -> IssuerConfig {
    let raw = &spanned.value;
    // `iss` is compared exactly, so the configured value is kept as written.
    let issuer = raw.issuer.value.clone();
    if let Some(why) = url_problem(&issuer, raw.allow_insecure_http) {
        // User info may hold a password: never echoed (the position says which line).
        let shown = if has_user_info(&issuer) {
            String::new()
        } else {
            format!("`{issuer}` ")
        };
        problems.at(&raw.issuer, format!("issuer {shown}{why}"));
    }
    if raw.audiences.is_empty() {
        problems.at(
            spanned,
            "issuer needs at least one audience: tokens minted for other services must not be accepted",
        );
    }
    let algorithms = match &raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                match parse_algorithm(&a.value) {
                    Ok(alg) => out.push(alg),
                    Err(msg) => problems.at(a, msg),
                }
            }
            if list.is_empty() {
                problems.at(spanned, "algorithms must not be empty");
            }
            out
        }
    };
    let leeway = match &raw.leeway_seconds {
        None => DEFAULT_LEEWAY_SECS,
        Some(l) if l.value > MAX_LEEWAY_SECS => {
            problems.at(
                l,
                format!(
                    "leeway_seconds {} exceeds the maximum {MAX_LEEWAY_SECS}",
                    l.value
                ),
            );
            MAX_LEEWAY_SECS
        }
        Some(l) => l.value,
    };
    let require_typ = raw.require_typ.as_ref().and_then(|t| {
        let valid = !t.value.is_empty()
            && t.value.bytes().all(|b| b.is_ascii_graphic() && b != b';')
            && t.value.matches('/').count() <= 1
            && !t.value.starts_with('/')
            && !t.value.ends_with('/');
        if valid {
            Some(media_type(&t.value).into())
        } else {
            problems.at(
                t,
                format!(
                    "require_typ `{}` is not a media type: write it like `at+jwt` (RFC 9068 access tokens) or `application/at+jwt`",
                    t.value
                ),
            );
            None
        }
    });
    let max_token_lifetime = raw
        .max_token_lifetime_seconds
        .as_ref()
        .map(|m| Duration::from_secs(positive(Some(m), 1, "max_token_lifetime_seconds", problems)));
    let keys = match (&raw.jwks_uri, &raw.jwks_file) {
        (Some(_), Some(_)) => {
            problems.at(spanned, "set jwks_uri or jwks_file, not both");
            KeySource::Discovery
        }
        (Some(uri), None) => {
            if let Some(why) = url_problem(&uri.value, raw.allow_insecure_http) {
                problems.at(uri, format!("jwks_uri {why}"));
            }
            KeySource::JwksUri(uri.value.clone())
        }
        (None, Some(file)) => KeySource::File(resolve(base, file)),
        (None, None) => KeySource::Discovery,
    };
    let refresh = positive(
        raw.refresh_seconds.as_ref(),
        DEFAULT_JWKS_REFRESH_SECS,
        "refresh_seconds",
        problems,
    );
    let min_refresh = match &raw.min_refresh_seconds {
        Some(m) if m.value > refresh => {
            problems.at(
                m,
                format!(
                    "min_refresh_seconds {} exceeds refresh_seconds {refresh}",
                    m.value
                ),
            );
            refresh
        }
        other => positive(
            other.as_ref(),
            DEFAULT_MIN_REFRESH_SECS.min(refresh),
            "min_refresh_seconds",
            problems,
        ),
    };
    let max_staleness = match &raw.max_staleness_seconds {
        Some(m) if m.value <= refresh => {
            problems.at(
                m,
                format!(
                    "max_staleness_seconds {} must exceed refresh_seconds {refresh}, or keys go stale between refreshes",
                    m.value
                ),
            );
            DEFAULT_MAX_STALENESS_SECS.max(refresh + 1)
        }
        Some(m) => m.value,
        None => DEFAULT_MAX_STALENESS_SECS.max(refresh + 1),
    };
    let user = principal_mapping(
        &raw.principal,
        DEFAULT_USER_TYPE,
        DEFAULT_USER_ID_CLAIM,
        problems,
    );
    let service = raw
        .service_principal
        .as_ref()
        .map(|p| principal_mapping(p, DEFAULT_SERVICE_TYPE, DEFAULT_SERVICE_ID_CLAIM, problems));
    IssuerConfig {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| format!("issuer{index}"))
            .into(),
        issuer: issuer.into(),
        audiences: raw.audiences.clone(),
        algorithms,
        leeway: Duration::from_secs(leeway),
        require_typ,
        max_token_lifetime,
        reject_future_iat: raw.reject_future_iat,
        keys,
        refresh: Duration::from_secs(refresh),
        min_refresh: Duration::from_secs(min_refresh),
        max_staleness: Duration::from_secs(max_staleness),
        kid_refetch_min_interval: Duration::from_secs(positive(
            raw.kid_refetch_min_interval_seconds.as_ref(),
            DEFAULT_KID_REFETCH_MIN_INTERVAL_SECS,
            "kid_refetch_min_interval_seconds (the rate limit on refetches cannot be off)",
            problems,
        )),
        kid_refetch_wait: Duration::from_millis(positive(
            raw.kid_refetch_wait_ms.as_ref(),
            DEFAULT_KID_REFETCH_WAIT_MS,
            "kid_refetch_wait_ms",
            problems,
        )),
        fetch_timeout: Duration::from_millis(positive(
            raw.fetch_timeout_ms.as_ref(),
            DEFAULT_FETCH_TIMEOUT_MS,
            "fetch_timeout_ms",
            problems,
        )),
        allow_insecure_http: raw.allow_insecure_http,
        user,
        service,
        introspection: raw.introspection.as_ref().and_then(|i| {
            super::identity_sources::introspection(i, raw.allow_insecure_http, base, problems)
        }),
    }
}

/// A number that must be at least 1; reports 0 instead of silently changing it.
fn positive<T: Copy + PartialOrd + From<u8>>(
    raw: Option<&Spanned<T>>,
    default: T,
    name: &str,
    problems: &mut Collected,
) -> T {
    match raw {
        None => default,
        Some(v) if v.value < T::from(1) => {
            problems.at(v, format!("{name} must be at least 1"));
            default
        }
        Some(v) => v.value,
    }
}

fn principal_mapping(
    raw: &RawPrincipal,
    default_type: &str,
    default_id_claim: &str,
    problems: &mut Collected,
) -> PrincipalMapping {
    let mut parents = Vec::new();
    if let Some(claim) = raw.groups_claim.as_deref() {
        parents.push(ParentMapping {
            claim: claim.into(),
            entity_type: entity_type(raw.group_type.as_ref(), DEFAULT_GROUP_TYPE, problems),
        });
    } else if let Some(ty) = &raw.group_type {
        problems.at(ty, "group_type needs groups_claim (or use `parents:`)");
    }
    for p in &raw.parents {
        let mapping = ParentMapping {
            claim: p.value.claim.as_str().into(),
            entity_type: entity_type(Some(&p.value.entity_type), DEFAULT_GROUP_TYPE, problems),
        };
        if parents.contains(&mapping) {
            problems.at(
                p,
                format!(
                    "claim `{}` → `{}` is mapped twice",
                    mapping.claim, mapping.entity_type
                ),
            );
        } else {
            parents.push(mapping);
        }
    }
    PrincipalMapping {
        entity_type: entity_type(raw.entity_type.as_ref(), default_type, problems),
        id_claim: raw.id_claim.as_deref().unwrap_or(default_id_claim).into(),
        parents,
        attributes: raw.attributes.clone(),
    }
}

/// `context.attributes`: each names exactly one source; names are Cedar identifiers that don't
/// take a key cedargate writes itself.
fn context_attributes(
    raw: &BTreeMap<String, Spanned<RawContextValue>>,
    problems: &mut Collected,
) -> Vec<(String, ContextValue)> {
    let mut out = Vec::new();
    for (name, spanned) in raw {
        let v = &spanned.value;
        if BUILTIN_CONTEXT_KEYS.contains(&name.as_str()) {
            problems.at(
                spanned,
                format!("context.attributes.{name}: `{name}` is written by cedargate itself; choose another name"),
            );
            continue;
        }
        if !is_identifier(name) {
            problems.at(
                spanned,
                format!("context.attributes: `{name}` is not a Cedar identifier (letters, digits, `_`; not starting with a digit or `__`)"),
            );
            continue;
        }
        let given = [
            v.fact.is_some(),
            v.claim.is_some(),
            v.header.is_some(),
            v.param.is_some(),
            v.value.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            problems.at(
                spanned,
                format!("context.attributes.{name} needs exactly one of fact, claim, header, param, value"),
            );
            continue;
        }
        let value = if let Some(fact) = &v.fact {
            match ContextFact::ALL.iter().find(|(n, _)| n == fact) {
                Some((_, f)) => ContextValue::Fact(*f),
                None => {
                    let names: Vec<&str> = ContextFact::ALL.iter().map(|(n, _)| *n).collect();
                    problems.at(
                        spanned,
                        format!(
                            "context.attributes.{name}: unknown fact `{fact}` (one of: {})",
                            names.join(", ")
                        ),
                    );
                    continue;
                }
            }
        } else if let Some(claim) = &v.claim {
            ContextValue::Claim(claim.clone())
        } else if let Some(header) = &v.header {
            let header = header.to_ascii_lowercase();
            if matches!(
                header.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            ) {
                problems.at(
                    spanned,
                    format!(
                        "context.attributes.{name} must not read `{header}`: it carries credentials"
                    ),
                );
                continue;
            }
            ContextValue::Header(header)
        } else if let Some(param) = &v.param {
            ContextValue::Param(param.clone())
        } else if let Some(value) = &v.value {
            match crate::cedar_value::cedar_value(value) {
                Some(cedar) if cedar == *value => ContextValue::Value(cedar),
                _ => {
                    problems.at(
                        spanned,
                        format!("context.attributes.{name}: value must be a string, integer, boolean, list or map of those"),
                    );
                    continue;
                }
            }
        } else {
            continue;
        };
        out.push((name.clone(), value));
    }
    out
}

/// A Cedar identifier that isn't reserved for Cedar's JSON escapes.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn entity_provider(
    spanned: &Spanned<RawEntityProvider>,
    problems: &mut Collected,
) -> Option<EntityProviderConfig> {
    let raw = &spanned.value;
    let url = match url::Url::parse(&raw.url.value) {
        Ok(u) => u,
        Err(e) => {
            problems.at(&raw.url, format!("entity_provider.url: {e}"));
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        problems.at(
            &raw.url,
            "entity_provider.url must not carry user info (`user@`)",
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.at(
            &raw.url,
            "entity_provider.url must not have a query or fragment: cedargate adds `?type=…&id=…`",
        );
        return None;
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback || raw.allow_insecure_http => {}
        "http" => {
            problems.at(
                &raw.url,
                "entity_provider.url must be https (plain http only on loopback, or with allow_insecure_http: true)",
            );
            return None;
        }
        other => {
            problems.at(
                &raw.url,
                format!("entity_provider.url: scheme `{other}` is not http(s)"),
            );
            return None;
        }
    }
    if raw.types.value.is_empty() {
        problems.at(
            &raw.types,
            "entity_provider.types must name at least one entity type",
        );
    }
    let types = raw
        .types
        .value
        .iter()
        .map(|t| entity_type(Some(t), DEFAULT_GROUP_TYPE, problems).to_string())
        .collect();
    let millis = |v: Option<&Spanned<u64>>, default: u64, name: &str, problems: &mut Collected| {
        std::time::Duration::from_millis(positive(v, default, name, problems))
    };
    Some(EntityProviderConfig {
        url: url.to_string(),
        types,
        timeout: millis(
            raw.timeout_ms.as_ref(),
            DEFAULT_PROVIDER_TIMEOUT_MS,
            "entity_provider.timeout_ms",
            problems,
        ),
        cache_ttl: std::time::Duration::from_secs(positive(
            raw.cache_ttl_seconds.as_ref(),
            DEFAULT_PROVIDER_CACHE_TTL_SECS,
            "entity_provider.cache_ttl_seconds",
            problems,
        )),
        cache_capacity: positive(
            raw.cache_capacity.as_ref(),
            DEFAULT_PROVIDER_CACHE_CAPACITY,
            "entity_provider.cache_capacity",
            problems,
        ),
        max_body_bytes: positive(
            raw.max_body_bytes.as_ref(),
            DEFAULT_PROVIDER_MAX_BODY_BYTES,
            "entity_provider.max_body_bytes",
            problems,
        ),
    })
}

fn policy_bundle(
    spanned: &Spanned<RawPolicyBundle>,
    base: &Path,
    problems: &mut Collected,
) -> Option<PolicyBundleConfig> {
    let raw = &spanned.value;
    let mut ok = true;
    let mut check_url = |field: &Spanned<String>, name: &str, problems: &mut Collected| {
        if let Some(why) = url_problem(&field.value, raw.allow_insecure_http) {
            problems.at(field, format!("policy_bundle.{name} {why}"));
            ok = false;
        }
    };
    check_url(&raw.url, "url", problems);
    let signature_url = match &raw.signature_url {
        Some(s) => {
            check_url(s, "signature_url", problems);
            s.value.clone()
        }
        None => format!("{}.sig", raw.url.value),
    };
    if raw.public_key_files.value.is_empty() {
        problems.at(
            &raw.public_key_files,
            "policy_bundle.public_key_files must name at least one public key: an unsigned bundle is never served",
        );
        ok = false;
    }
    let mut public_key_files = Vec::new();
    for file in &raw.public_key_files.value {
        let path = resolve(base, &file.value);
        // Read now so a missing or wrong key stops the load with its position; the server reads
        // the files again on every verification, so replacing a key needs no restart.
        match std::fs::read(&path) {
            Ok(pem) => {
                if let Err(e) = crate::bundle_signature::PublicKey::from_pem(&pem) {
                    problems.at(
                        file,
                        format!("policy_bundle.public_key_files: {}: {e}", path.display()),
                    );
                    ok = false;
                }
            }
            Err(e) => {
                problems.at(
                    file,
                    format!(
                        "policy_bundle.public_key_files: {}: {}",
                        path.display(),
                        if e.kind() == std::io::ErrorKind::NotFound {
                            "no such file".to_string()
                        } else {
                            super::io_words(&e)
                        }
                    ),
                );
                ok = false;
            }
        }
        public_key_files.push(path);
    }
    if raw.cache_dir.value.is_empty() {
        problems.at(&raw.cache_dir, "policy_bundle.cache_dir must name a folder");
        ok = false;
    }
    let poll_interval = Duration::from_secs(positive(
        raw.poll_interval_seconds.as_ref(),
        DEFAULT_BUNDLE_POLL_SECS,
        "policy_bundle.poll_interval_seconds",
        problems,
    ));
    let fetch_timeout = Duration::from_millis(positive(
        raw.fetch_timeout_ms.as_ref(),
        DEFAULT_BUNDLE_FETCH_TIMEOUT_MS,
        "policy_bundle.fetch_timeout_ms",
        problems,
    ));
    let max_bytes = positive(
        raw.max_bytes.as_ref(),
        crate::bundle::DEFAULT_LIMITS.max_archive_bytes,
        "policy_bundle.max_bytes",
        problems,
    );
    ok.then(|| PolicyBundleConfig {
        url: raw.url.value.clone(),
        signature_url,
        public_key_files,
        cache_dir: resolve(base, &raw.cache_dir.value),
        poll_interval,
        fetch_timeout,
        max_bytes,
    })
}

fn validate_route(spanned: &Spanned<RawRoute>, problems: &mut Collected) -> Option<Route> {
    let raw = &spanned.value;
    let template = match PathTemplate::parse(&raw.path.value) {
        Ok(t) => t,
        Err(msg) => {
            problems.at(&raw.path, msg);
            return None;
        }
    };
    let mut methods = Vec::new();
    for m in &raw.methods {
        let upper = m.value.to_ascii_uppercase();
        if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.at(m, format!("`{}` is not an HTTP method", m.value));
        } else {
            methods.push(upper);
        }
    }
    if let Some(action) = &raw.action {
        let uid = format!(
            "{ACTION_TYPE}::{}",
            serde_json::Value::from(action.as_str())
        );
        if cedar_policy::EntityUid::from_str(&uid).is_err() {
            problems.at(
                spanned,
                format!("action `{action}` is not a valid Cedar action id"),
            );
        }
    }
    let resource = raw.resource.as_ref().map(|r| {
        if cedar_policy::EntityTypeName::from_str(&r.entity_type.value).is_err() {
            problems.at(
                &r.entity_type,
                format!("`{}` is not a Cedar entity type name", r.entity_type.value),
            );
        }
        for param in placeholders(&r.id.value) {
            if !template.params().any(|p| p == param) && param != "service" && param != "host" {
                problems.at(
                    &r.id,
                    format!(
                        "resource id uses `{{{param}}}`, which the path `{}` does not capture",
                        raw.path.value
                    ),
                );
            }
        }
        (
            Arc::<str>::from(r.entity_type.value.as_str()),
            r.id.value.clone(),
        )
    });
    Some(Route {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| raw.path.value.clone())
            .into(),
        service: raw.service.clone(),
        host: raw.host.as_ref().map(|h| h.to_ascii_lowercase()),
        methods,
        template,
        action: raw.action.clone().map(Into::into),
        resource,
    })
}

/// `{name}` placeholders in a resource id template.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::path::PathBuf;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn policy_bundle_is_checked_and_replaces_policy_dir() {
        let dir = tempfile::tempdir().unwrap();
        let (_, public) =
            crate::bundle_signature::generate(crate::bundle_signature::Algorithm::Ed25519).unwrap();
        std::fs::write(dir.path().join("k.pub.pem"), public).unwrap();
        std::fs::write(dir.path().join("bad.pem"), "hello").unwrap();
        let path = dir.path().join("c.yaml");
        let good = "policy_bundle:\n  url: https://b.example/p.tar.gz\n  public_key_files: [k.pub.pem]\n  cache_dir: cache\n";
        let config = Config::parse(good, &path).unwrap();
        let bundle = config.policy_bundle.unwrap();
        assert_eq!(bundle.signature_url, "https://b.example/p.tar.gz.sig");
        assert_eq!(bundle.public_key_files, vec![dir.path().join("k.pub.pem")]);
        assert_eq!(
            bundle.poll_interval,
            Duration::from_secs(DEFAULT_BUNDLE_POLL_SECS)
        );
        assert_eq!(config.policy_dir, dir.path().join("cache").join("current"));
        let bad = "policy_dir: policies\npolicy_bundle:\n  url: http://user@b.example/p.tar.gz\n  signature_url: http://b.example/p.sig\n  public_key_files: [bad.pem, gone.pem]\n  cache_dir: cache\n  poll_interval_seconds: 0\n";
        let got = match Config::parse(bad, &path) {
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(got.len(), 6, "{got:#?}");
        assert!(
            got.iter()
                .any(|p| p.starts_with("3:8 policy_bundle.url must not carry user info")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("4:18 policy_bundle.signature_url must be an https URL")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("5:22 policy_bundle.public_key_files:")
                    && p.contains("bad.pem: not a PEM file")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("5:31 ") && p.contains("gone.pem: no such file")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p
                    .starts_with("7:26 policy_bundle.poll_interval_seconds must be at least 1")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.contains("policy_dir and policy_bundle are both set")),
            "{got:#?}"
        );
        let unsigned = "policy_bundle:\n  url: https://b.example/p.tar.gz\n  public_key_files: []\n  cache_dir: cache\n";
        assert!(
            Config::parse(unsigned, &path)
                .unwrap_err()
                .to_string()
                .contains("an unsigned bundle is never served")
        );
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::parse("{}", Path::new("/etc/cg/c.yaml"));
        let config = match config {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
        assert_eq!(config.policy_dir, PathBuf::from("/etc/cg/policies"));
        assert_eq!(config.unmatched, Unmatched::Deny);
        assert_eq!(
            config.decision_log.max_header_value_bytes,
            DEFAULT_MAX_HEADER_VALUE_BYTES
        );
        assert_eq!(config.decision_log.output, LogOutput::Stdout);
        assert_eq!(
            config.decision_cache_capacity,
            DEFAULT_DECISION_CACHE_CAPACITY
        );
        let off = Config::parse("decision_cache: { capacity: 0 }", Path::new("/c.yaml"));
        assert_eq!(off.map(|c| c.decision_cache_capacity).ok(), Some(0));
        assert!(Config::parse("decision_cache: { size: 5 }", Path::new("/c.yaml")).is_err());
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let yaml = "\
issuers:
  - name: a
    issuer: http://idp.example.com
    audiences: []
    algorithms: [HS256, ES256, XX1]
    leeway_seconds: 9000
routes:
  - path: /orders/{id
unmatched_route: maybe
context:
  headers: [cookie]
";
        let got = problems(yaml);
        assert_eq!(got.len(), 8, "{got:#?}");
        assert!(
            got.iter()
                .any(|p| p.starts_with("2:5 issuer needs at least one audience"))
        );
        assert!(got[0].starts_with("3:13 issuer `http://idp.example.com` must be an https URL"));
        assert!(
            got.iter()
                .any(|p| p.starts_with("5:18 `HS256` is symmetric")),
            "{got:#?}"
        );
        assert!(got.iter().any(|p| p.contains("unknown algorithm `XX1`")));
        assert!(
            got.iter()
                .any(|p| p.starts_with("6:21 leeway_seconds 9000"))
        );
        assert!(got.iter().any(|p| p.starts_with("8:11 ")));
        assert!(got.iter().any(|p| p.contains("unmatched_route must be")));
        assert!(got.iter().any(|p| p.contains("must not include `cookie`")));
    }

    #[test]
    fn drain_seconds_defaults_to_none_and_is_bounded() {
        let none = Config::parse("{}", Path::new("/c.yaml")).map(|c| c.drain);
        assert_eq!(none.ok(), Some(Duration::ZERO));
        let five = Config::parse("listen: { drain_seconds: 5 }", Path::new("/c.yaml"));
        assert_eq!(five.map(|c| c.drain).ok(), Some(Duration::from_secs(5)));
        let got = problems("listen:\n  drain_seconds: 9000\n");
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("2:18 listen.drain_seconds 9000 exceeds the maximum 300"),
            "{got:#?}"
        );
    }

    #[test]
    fn unknown_fields_are_errors_not_silent_defaults() {
        let got = problems("issuers:\n  - issuer: https://x\n    audience: [a]\n");
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("audience"), "{got:#?}");
    }

    #[test]
    fn zero_values_and_unsafe_choices_are_reported_not_clamped() {
        let yaml = "\
realm: 'bad\"realm'
issuers:
  - issuer: https://idp.example.com
    audiences: [a]
    refresh_seconds: 0
    kid_refetch_min_interval_seconds: 0
    fetch_timeout_ms: 0
context:
  query: [access_token, limit]
decision_log:
  queue: 0
  max_header_value_bytes: 0
";
        let got = problems(yaml);
        for needle in [
            "1:8 realm must be printable ASCII",
            "5:22 refresh_seconds must be at least 1",
            "6:39 kid_refetch_min_interval_seconds",
            "7:23 fetch_timeout_ms must be at least 1",
            "9:11 context.query must not include `access_token`",
            "11:10 decision_log.queue must be at least 1",
            "12:27 decision_log.max_header_value_bytes must be at least 1",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
    }

    #[test]
    fn plain_http_needs_an_explicit_opt_in_beyond_loopback() {
        let yaml = "issuers:\n  - issuer: http://idp:9400\n    audiences: [a]\n    allow_insecure_http: true\n";
        assert_eq!(problems(yaml), Vec::<String>::new());
    }

    #[test]
    fn resource_placeholders_must_be_captured_by_the_path() {
        let yaml =
            "routes:\n  - path: /orders/{id}\n    resource: { type: Order, id: \"{order}\" }\n";
        let got = problems(yaml);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("3:34 resource id uses `{order}`"),
            "{got:#?}"
        );
    }

    #[test]
    fn telemetry_defaults_to_text_logs_at_info_and_no_export() {
        let config = match Config::parse("{}", Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.telemetry.log.level, DEFAULT_LOG_LEVEL);
        assert_eq!(config.telemetry.log.format, LogFormat::Text);
        assert_eq!(config.telemetry.otlp, None);
    }

    #[test]
    fn an_otlp_section_gets_its_defaults() {
        let yaml = "\
telemetry:
  log: { level: 'warn,cedargate=debug', format: json }
  otlp:
    endpoint: https://otel.example.com:4317/
    resource_attributes: { deployment.environment: prod }
";
        let config = match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.telemetry.log.format, LogFormat::Json);
        let otlp = config.telemetry.otlp.unwrap_or_else(|| unreachable!());
        assert_eq!(otlp.endpoint, "https://otel.example.com:4317");
        assert_eq!(otlp.sampling_ratio, DEFAULT_OTLP_SAMPLING_RATIO);
        assert_eq!(otlp.service_name, DEFAULT_OTLP_SERVICE_NAME);
        assert_eq!(otlp.queue, DEFAULT_OTLP_QUEUE);
        assert_eq!(otlp.timeout, Duration::from_millis(DEFAULT_OTLP_TIMEOUT_MS));
        assert_eq!(
            otlp.resource_attributes.get("deployment.environment"),
            Some(&"prod".to_string())
        );
    }

    #[test]
    fn decision_log_otlp_is_off_by_default_and_has_its_own_defaults() {
        let off = match Config::parse("{}", Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(off.decision_log.otlp, None);
        let yaml = "decision_log:\n  output: off\n  otlp: { endpoint: http://collector:4317 }\n";
        let config = match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.decision_log.output, LogOutput::Off);
        let otlp = config.decision_log.otlp.unwrap_or_else(|| unreachable!());
        assert_eq!(otlp.endpoint, "http://collector:4317");
        assert_eq!(otlp.queue, DEFAULT_DECISION_LOG_OTLP_QUEUE);
        assert_eq!(
            otlp.batch_delay,
            Duration::from_millis(DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS)
        );
        assert_eq!(otlp.sampling_ratio, 1.0, "every decision is exported");
        // Trace export stays off: the two sections are independent.
        assert_eq!(config.telemetry.otlp, None);
    }

    #[test]
    fn decision_log_otlp_problems_name_their_section() {
        let yaml = "\
decision_log:
  otlp:
    endpoint: http://collector:4318/v1/logs
    sampling_ratio: 0.5
    queue: 0
";
        let got = problems(yaml);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("3:15 decision_log.otlp.endpoint `http://collector:4318/v1/logs` must not have a path"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("4:21 decision_log.otlp.sampling_ratio: every decision is exported"),
            "{got:#?}"
        );
        assert!(
            got[2].starts_with("5:12 decision_log.otlp.queue must be at least 1"),
            "{got:#?}"
        );
    }

    #[test]
    fn telemetry_problems_are_reported_with_their_positions() {
        let yaml = "\
telemetry:
  log:
    level: 'info,[bad'
    format: xml
  otlp:
    endpoint: http://collector:4318/v1/traces
    sampling_ratio: 1.5
    service_name: ' '
    queue: 0
    timeout_ms: 0
";
        let got = problems(yaml);
        for needle in [
            "3:12 telemetry.log.level `info,[bad` is not a log filter",
            "4:13 telemetry.log.format must be `text` or `json`, not `xml`",
            "6:15 telemetry.otlp.endpoint `http://collector:4318/v1/traces` must not have a path",
            "7:21 telemetry.otlp.sampling_ratio 1.5 must be between 0 and 1",
            "8:19 telemetry.otlp.service_name must not be empty",
            "9:12 telemetry.otlp.queue must be at least 1",
            "10:17 telemetry.otlp.timeout_ms must be at least 1",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
        for bad in ["collector:4317", "grpc://c:4317", "http://", "http://a b"] {
            assert!(check_otlp_endpoint(bad).is_err(), "{bad}");
        }
        assert!(check_otlp_endpoint("http://[::1]:4317").is_ok());
    }

    /// A folder with the test key fixtures, for configs that name key files.
    fn key_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/upstream-keys")
    }

    #[test]
    fn upstream_token_is_off_by_default_and_gets_its_defaults() {
        let parse = |yaml: &str| Config::parse(yaml, &key_dir().join("c.yaml")).unwrap();
        assert!(parse("{}").upstream_token.is_none());
        let config =
            parse("upstream_token:\n  issuer: https://cedargate.internal\n  audience: internal\n");
        let u = config.upstream_token.unwrap();
        assert_eq!(u.ttl, Duration::from_secs(DEFAULT_UPSTREAM_TOKEN_TTL_SECS));
        assert_eq!(
            u.reuse,
            Duration::from_secs(DEFAULT_UPSTREAM_TOKEN_REUSE_SECS)
        );
        assert_eq!(&*u.header, "authorization");
        // The token overwrites `authorization`, so nothing is left to remove.
        assert!(u.strip_headers.is_empty());
        assert!(u.key_files.is_empty() && u.algorithm.is_none());
        assert_eq!(u.header_value("t"), "Bearer t");

        let config = parse(
            "upstream_token:\n  issuer: https://cedargate.internal\n  audience: internal\n  service_audiences: { orders: https://orders.internal }\n  ttl_seconds: 20\n  header: X-Cedargate-Token\n  claims: [groups, tenant, groups]\n  key_files: [es256-a.pem, ed25519.pem]\n",
        );
        let u = config.upstream_token.unwrap();
        assert_eq!(
            u.reuse,
            Duration::from_secs(10),
            "reuse defaults to at most half the ttl"
        );
        assert_eq!(&*u.header, "x-cedargate-token");
        assert_eq!(u.header_value("t"), "t");
        assert_eq!(&*u.strip_headers, ["authorization".to_string()]);
        assert_eq!(u.claims, ["groups", "tenant"]);
        assert_eq!(u.key_files.len(), 2);
        assert_eq!(&*u.audience_for(Some("orders")), "https://orders.internal");
        assert_eq!(&*u.audience_for(Some("payments")), "internal");
        assert_eq!(&*u.audience_for(None), "internal");
    }

    #[test]
    fn upstream_token_problems_are_reported_with_their_positions() {
        let got = |yaml: &str| match Config::parse(yaml, &key_dir().join("c.yaml")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect::<Vec<_>>(),
            Err(e) => vec![e.to_string()],
        };
        let problems = got(
            "upstream_token:\n  issuer: ''\n  audience: a b\n  ttl_seconds: 7200\n  reuse_seconds: 90\n  header: ':path'\n  claims: [sub, '']\n  strip_headers: [host]\n  algorithm: RS256\n",
        );
        for needle in [
            "2:11 upstream_token.issuer must be a non-empty string",
            "3:13 upstream_token.audience must be a non-empty string",
            "4:16 upstream_token.ttl_seconds 7200 exceeds the maximum 3600",
            "5:18 upstream_token.reuse_seconds 90 must be less than ttl_seconds 60",
            "6:11 upstream_token.header: `:path` is not a header name",
            "7:12 upstream_token.claims: `sub` is set by cedargate",
            "7:17 upstream_token.claims has an empty claim name",
            "8:19 upstream_token.strip_headers: `host` cannot be changed",
            "9:14 upstream_token.algorithm must be `ES256` or `EdDSA`, not `RS256`",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {problems:#?}"
            );
        }
        // A missing key file is named at its own list entry (the server reads and judges the
        // keys; `cedargate_server::mint` tests a bad one).
        let problems = got(
            "upstream_token:\n  issuer: i\n  audience: a\n  key_files:\n    - es256-a.pem\n    - missing.pem\n",
        );
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("6:7 upstream_token.key_files: ")
                && problems[0].contains("missing.pem: no such file"),
            "{problems:#?}"
        );
        let problems = got("upstream_token:\n  issuer: i\n  audience: a\n  key_files: []\n");
        assert!(problems[0].contains("key_files is empty"), "{problems:#?}");
        let problems = got("upstream_token:\n  issuer: i\n");
        assert!(problems[0].contains("audience"), "{problems:#?}");
    }

    #[test]
    fn decision_log_headers_and_redaction_are_checked() {
        let dir = std::env::temp_dir().join(format!("cedargate-redaction-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(dir.join("short.key"), "abc\n").unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(dir.join("good.key"), "0123456789abcdef0123456789abcdef\n")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let parse = |yaml: &str| Config::parse(yaml, &dir.join("c.yaml"));
        let good = "decision_log:\n  headers: [User-Agent, x-forwarded-for, user-agent]\n  redact_claims: [email, email]\n  redaction_key_file: good.key\n";
        let config = match parse(good) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(
            config.decision_log.headers,
            ["user-agent", "x-forwarded-for"]
        );
        assert_eq!(config.decision_log.redact_claims, ["email"]);
        let key = config
            .decision_log
            .redaction_key
            .unwrap_or_else(|| unreachable!());
        assert_eq!(key.bytes(), b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            format!("{key:?}"),
            "RedactionKey(..)",
            "Debug never shows the key"
        );

        let bad = "decision_log:\n  headers: [Cookie, authorization, 'a b']\n  redact_claims: ['']\n  redaction_key_file: short.key\n";
        let got = match parse(bad) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        };
        for needle in [
            "2:13 decision_log.headers must not include `cookie`",
            "2:21 decision_log.headers must not include `authorization`",
            "2:36 `a b` is not a header name",
            "3:19 decision_log.redact_claims has an empty claim name",
            "4:23 decision_log.redaction_key_file",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        let rotating = parse(
            "decision_log:\n  output: file\n  path: d.jsonl\n  rotate: { max_bytes: 1000 }\n",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            rotating.decision_log.rotate,
            Some(Rotation {
                max_bytes: 1000,
                keep: DEFAULT_ROTATE_KEEP
            })
        );
        let got = problems("decision_log:\n  rotate: { keep: 0 }\n");
        assert!(
            got.iter()
                .any(|p| p.starts_with("2:11 decision_log.rotate is only for output `file`")),
            "{got:#?}"
        );
        let got = problems(
            "decision_log:\n  output: file\n  path: d.jsonl\n  rotate: { max_bytes: 0, keep: 0 }\n",
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("4:24 decision_log.rotate.max_bytes must be at least 1")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("4:33 decision_log.rotate.keep must be at least 1")),
            "{got:#?}"
        );
        assert!(
            problems("decision_log: { redaction_key_file: /no/such/key }")
                .iter()
                .any(|p| p.contains("/no/such/key"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
