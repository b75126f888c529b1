//! The `upstream_token` section: every field of the token cedargate mints for upstreams checked
//! into an [`UpstreamTokenConfig`], with the header names it may set or remove. Key files are only
//! checked to exist here; it must not read or judge keys (the server's `mint` does).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::defaults::*;
use super::fields::positive;
use super::model::*;
use super::problems::Collected;
use super::raw::*;
use super::urls::resolve;

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
pub(super) fn upstream_token(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use std::path::PathBuf;

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
}
