//! Reading the YAML into phase one's [`RawConfig`], with errors a person can act on: the field
//! they are in (`issuers[0].leeway_seconds`), what it should hold, and where — never the YAML
//! library's own advice (its options are not the user's to set). An empty file is refused here:
//! it would otherwise mean "every default", a deny-all server on the default ports.

use serde_saphyr::{DefaultMessageFormatter, Error, Location, MessageFormatter};

use super::problems::ConfigProblem;
use super::raw::RawConfig;

/// Parses `text`; the one problem that stopped it otherwise.
pub(super) fn parse(text: &str) -> Result<RawConfig, ConfigProblem> {
    if is_empty(text) {
        return Err(ConfigProblem {
            line: 0,
            column: 0,
            message: "the config is empty: write one (see docs/configuration.md and the example \
                      cedargate.yaml), or `{}` to accept every default on purpose"
                .to_string(),
        });
    }
    serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            let field = field_path(e.path());
            let inner = e.into_inner();
            // The closure must return the library's error: the finished message rides in it,
            // marked so `final_message` takes it as it is.
            Error::Message {
                msg: format!("{DONE_MARK}{}", message_in(&inner, &field)),
                location: inner.location().unwrap_or(Location::UNKNOWN),
            }
        })
    })
    .map_err(|e| {
        let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        ConfigProblem {
            line,
            column,
            message: final_message(&e),
        }
    })
}

/// Marks a message [`parse`] finished inside [`Error::Message`]; a control character, so it
/// can't begin a message the YAML text produced.
const DONE_MARK: char = '\u{1}';

/// The dotted path of a field as the user wrote it: `issuers[0].leeway_seconds`. Positions are
/// kept by wrapping values in `Spanned`, whose own `value` field is left out (which also drops a
/// user's `value:` key from the path; the line and column still point at it).
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == "value" => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// True for a file with nothing but whitespace and comments.
fn is_empty(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...")
}

/// The message for an error serde reported in `field` (empty at the top level).
fn message_in(e: &Error, field: &str) -> String {
    let e = e.without_snippet();
    if let Error::DuplicateMappingKey { key, .. } = e {
        let key = key
            .as_deref()
            .map_or_else(|| "a key".to_string(), |k| format!("`{k}`"));
        let place = if field.is_empty() {
            String::new()
        } else {
            format!(" in `{field}`")
        };
        return format!("{key} appears twice{place}; each key may appear only once: keep one");
    }
    if let Error::SerdeUnknownField {
        field: name,
        expected,
        ..
    } = e
    {
        // The path ends with the unknown field itself: name the mapping it sits in.
        let parent = field.strip_suffix(name.as_str()).unwrap_or(field);
        let parent = parent.strip_suffix('.').unwrap_or(parent);
        let place = if parent.is_empty() {
            String::new()
        } else {
            format!(" in `{parent}`")
        };
        return format!(
            "unknown field `{name}`{place}: expected one of {} (docs/configuration.md lists them)",
            expected.join(", ")
        );
    }
    if let Error::SerdeMissingField { field: name, .. } = e {
        return match field {
            "" => format!("missing field `{name}`"),
            field => format!("missing field `{name}` in `{field}`"),
        };
    }
    match field {
        "" => problem_message(e),
        field => format!("`{field}` {}", problem_message(e)),
    }
}

/// The message for an error, without position (the problem carries it) or field.
fn problem_message(e: &Error) -> String {
    let e = e.without_snippet();
    match e {
        Error::DuplicateMappingKey { .. } => message_in(e, ""),
        Error::InvalidScalar { ty, .. } => format!("must be {}", expected(ty)),
        Error::Unexpected { expected, .. } => match *expected {
            "sequence start" => "must be a list (`[a, b]`, or one `- item` per line)".to_string(),
            "mapping start" => "must be a mapping (`key: value` lines)".to_string(),
            "string scalar" | "scalar" => {
                "must be a single value, not a list or mapping".to_string()
            }
            other => format!("expected {other}"),
        },
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => format!("must be {expected}, not {unexpected}"),
        Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!("must be {expected}, not {unexpected}"),
        other => first_line(&DefaultMessageFormatter.format_message(other)),
    }
}

/// What a Rust scalar type means in a config file.
fn expected(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
            "a whole number, 0 or more (like `30`), without quotes or units".to_string()
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => {
            "a whole number (like `30`), without quotes or units".to_string()
        }
        "f32" | "f64" => "a number (like `0.5`)".to_string(),
        "bool" => "`true` or `false`".to_string(),
        "char" => "a single character".to_string(),
        other => format!("a valid {other}"),
    }
}

/// The message of an error [`parse`] finished, or of one that never reached serde (syntax).
fn final_message(e: &Error) -> String {
    if let Error::Message { msg, .. } = e.without_snippet()
        && let Some(done) = msg.strip_prefix(DONE_MARK)
    {
        return done.to_string();
    }
    problem_message(e)
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(yaml: &str) -> String {
        match parse(yaml) {
            Ok(_) => "ok".to_string(),
            Err(p) => format!("{}:{} {}", p.line, p.column, p.message),
        }
    }

    #[test]
    fn errors_name_the_field_the_position_and_what_is_expected() {
        for (yaml, want) in [
            (
                "issuers:\n  - issuer: https://a\n    audiences: [x]\n    leeway_seconds: thirty\n",
                "4:21 `issuers[0].leeway_seconds` must be a whole number, 0 or more (like `30`), without quotes or units",
            ),
            (
                "limits:\n  max_token_bytes: -1\n",
                "2:20 `limits.max_token_bytes` must be a whole number, 0 or more (like `30`), without quotes or units",
            ),
            (
                "realm: a\nrealm: b\n",
                "2:1 `realm` appears twice; each key may appear only once: keep one",
            ),
            (
                "issuers:\n  - issuer: https://a\n    audience: [x]\n",
                "3:5 unknown field `audience` in `issuers[0]`: expected one of name, issuer, audiences, algorithms, leeway_seconds, require_typ, max_token_lifetime_seconds, reject_future_iat, jwks_uri, jwks_file, refresh_seconds, min_refresh_seconds, max_staleness_seconds, kid_refetch_min_interval_seconds, kid_refetch_wait_ms, fetch_timeout_ms, allow_insecure_http, principal, service_principal, introspection (docs/configuration.md lists them)",
            ),
            (
                "issuers:\n  - audiences: [x]\n",
                "2:5 missing field `issuer` in `issuers[0]`",
            ),
            (
                "routes:\n  - path: /x\n    methods: GET\n",
                "3:14 `routes[0].methods` must be a list (`[a, b]`, or one `- item` per line)",
            ),
            (
                "listen: [1]\n",
                "1:9 `listen` must be a mapping (`key: value` lines)",
            ),
            (
                "realm: [a]\n",
                "1:8 `realm` must be a single value, not a list or mapping",
            ),
            (
                "issuers:\n  - issuer: https://a\n    audiences: [x]\n    audiences: [y]\n",
                "4:5 `audiences` appears twice in `issuers[0]`; each key may appear only once: keep one",
            ),
        ] {
            assert_eq!(problem(yaml), want, "{yaml}");
        }
    }

    #[test]
    fn messages_carry_no_library_advice_and_no_doubled_position() {
        for yaml in [
            "realm: a\nrealm: b\n",
            "limits: {max_token_bytes: x}\n",
            "routes: [\n",
            "issuers: 7\n",
            "nope: 1\n",
        ] {
            let got = problem(yaml);
            assert!(!got.contains("DuplicateKeyPolicy"), "{got}");
            assert!(!got.contains("line "), "{got}");
            assert!(!got.contains("error:"), "{got}");
        }
    }

    #[test]
    fn an_empty_or_comment_only_file_is_refused() {
        for yaml in ["", "  \n\t\n", "# nothing yet\n\n", "---\n"] {
            let got = problem(yaml);
            assert!(
                got.starts_with("0:0 the config is empty"),
                "{yaml:?}: {got}"
            );
        }
        assert_eq!(problem("{}"), "ok");
    }
}
