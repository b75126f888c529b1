//! The `decision_log` section's lists and files: recorded headers (credential headers refused),
//! redacted claims, the redaction key (read here, so a short or missing key stops the load) and
//! file rotation. The output choice stays in `validate`; its `otlp` export is `telemetry`'s. Must
//! not open the log itself: the server's writer does.

use std::path::Path;

use serde_saphyr::Spanned;

use super::defaults::*;
use super::fields::positive;
use super::model::*;
use super::problems::Collected;
use super::raw::*;
use super::urls::resolve;

/// `decision_log.rotate`: only for a `file` output; both bounds at least 1.
pub(super) fn rotation(
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
pub(super) fn record_headers(raw: &[Spanned<String>], problems: &mut Collected) -> Vec<String> {
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
pub(super) fn redact_claims(raw: &[Spanned<String>], problems: &mut Collected) -> Vec<String> {
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
pub(super) fn redaction_key(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigError;
    use crate::config::fields::problems;

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
