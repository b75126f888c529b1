//! Phase two: every field of the raw file validated into a typed [`Config`] that cannot be
//! invalid, collecting *every* problem with its position instead of stopping at the first. Out of
//! range values are reported, never clamped. This file is the top: it walks the sections in order,
//! checks what spans sections (distinct listen addresses, duplicate issuers, `policy_dir` against
//! `policy_bundle`, `context`, `limits`, the decision-log output) and calls one module per section
//! (`issuers`, `routes`, `sources`, `decision_log`, `telemetry`, `upstream_token`, and the
//! self-contained `sso`, `authorizer_api`, `identity_sources`); no section module imports it back.
//! Reads only the files the config names as secrets it must check (the redaction key; upstream-token
//! key files are only checked to exist: the server reads keys) and the public keys of
//! `policy_bundle`, parsed to catch a wrong file at load.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::decision_log::{record_headers, redact_claims, redaction_key, rotation};
use super::defaults::*;
use super::fields::{entity_type, positive};
use super::issuers::validate_issuer;
use super::model::*;
use super::problems::Collected;
use super::raw::RawConfig;
use super::routes::{context_attributes, lint_routes, validate_route};
use super::sources::{entity_provider, policy_bundle};
use super::telemetry::{OtlpSection, otlp, telemetry};
use super::upstream_token::upstream_token;
use super::urls::resolve;
use crate::routes::RouteTable;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fields::problems;
    use std::path::PathBuf;

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
}
