//! What reaches a decision record from the request beyond the decision itself, and what is
//! taken out or cut before it is written: the headers named in `decision_log.headers` (an
//! allow-list; credential headers are refused by `config`), the request line of a Check denied
//! before a Cedar request was built ([`request_line`]), the W3C trace id from `traceparent`,
//! claim redaction (`decision_log.redact_claims`) and the size cap on recorded header values
//! (`decision_log.max_header_value_bytes`, [`cap`]).
//!
//! A redacted claim's value is replaced, wherever it appears in the record (principal id, group
//! ids, entity attributes, the entities fetched from the entity provider, the token facts and
//! context, path parameters, headers, the request line, errors and shadow errors, even inside a
//! longer string such as a path), by `redacted:` and 16 hex digits of its HMAC-SHA-256 under
//! `decision_log.redaction_key_file` (plain SHA-256 without a key). Equal values get equal
//! hashes, so records still correlate; without the key a hash can't be tested against guesses.
//! Strings and numbers are redacted, also inside arrays and objects; booleans are kept.
//!
//! A header value longer than the cap is cut on a UTF-8 boundary and ends in [`CUT_MARKER`]
//! with its full length; the record lists where it cut (`truncated`, JSON pointers). Cutting
//! happens after redaction, so a cut can never leave half of a redacted value behind, and only
//! to the record: Cedar has already evaluated the whole value.
//!
//! Runs on the Check path before the record is queued, so everything that reads the record (the
//! log, the trace span) sees the redacted, capped form. With no redacted claim and no long value
//! it costs a few length checks. Pure: no IO.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::{Config, ContextValue, DecisionLogConfig};
use crate::record::{DecisionRecord, RequestLine};
use crate::request::HttpRequest;
use crate::token::{VerifiedToken, hex_prefix, sha256};

/// Prefix of every redacted value, so that readers (and `grep`) can tell one.
pub const REDACTED_PREFIX: &str = "redacted:";
/// Shortest value also redacted *inside* longer strings. Shorter values (`"1"`, `"eu"`) are
/// redacted only where they are the whole value: replacing every occurrence of two letters would
/// shred paths and ids without hiding anything.
pub const MIN_EMBEDDED_LENGTH: usize = 4;

/// What ends every value a record cut, followed by the value's full length in bytes and `]`:
/// `Mozilla/5.0 (X11; ……[cut from 58000 bytes]`. Readers tell a cut value by the record's
/// `truncated` list, not by this text (a client can send it).
pub const CUT_MARKER: &str = "…[cut from ";

/// `value` cut to at most `max` bytes, on a UTF-8 boundary, followed by [`CUT_MARKER`] and its
/// full length; `None` when it fits.
pub fn cut(value: &str, max: usize) -> Option<String> {
    if value.len() <= max {
        return None;
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let kept = value.get(..end).unwrap_or_default();
    Some(format!("{kept}{CUT_MARKER}{} bytes]", value.len()))
}

/// The request line of a Check denied before a Cedar request was built: method, host, path, and
/// the query parameters `context.query` allow-lists (query strings carry secrets too, so the
/// record treats them as the Cedar context does). Cut later by [`cap`].
pub fn request_line(config: &Config, request: &HttpRequest) -> RequestLine {
    RequestLine {
        method: request.method.clone(),
        host: request.host.clone(),
        path: request.path.clone(),
        query: request.allowed_query(&config.context.query),
    }
}

/// Cuts every header value the record keeps (`headers`, `cedar.context.request.headers`, context
/// attributes taken from a header) and every part of its request line longer than
/// `decision_log.max_header_value_bytes`, and lists where in `record.truncated`. Call it after
/// [`redact`].
pub fn cap(config: &Config, record: &mut DecisionRecord) {
    let max = config.decision_log.max_header_value_bytes;
    let mut cut_at = Vec::new();
    let mut check = |value: &mut String, at: &[&str]| {
        if let Some(short) = cut(value, max) {
            *value = short;
            cut_at.push(pointer(at));
        }
    };
    if let Some(headers) = &mut record.headers {
        for (name, value) in headers.iter_mut() {
            check(value, &["headers", name.as_str()]);
        }
    }
    if let Some(line) = &mut record.request {
        check(&mut line.method, &["request", "method"]);
        check(&mut line.host, &["request", "host"]);
        check(&mut line.path, &["request", "path"]);
        for (name, value) in line.query.iter_mut() {
            check(value, &["request", "query", name.as_str()]);
        }
    }
    if let Some(cedar) = &mut record.cedar {
        if let Some(Value::Object(headers)) = cedar.context.pointer_mut("/request/headers") {
            for (name, value) in headers.iter_mut() {
                if let Value::String(value) = value {
                    check(
                        value,
                        &["cedar", "context", "request", "headers", name.as_str()],
                    );
                }
            }
        }
        for (name, source) in &config.context.attributes {
            if let ContextValue::Header(_) = source
                && let Some(Value::String(value)) = cedar.context.get_mut(name)
            {
                check(value, &["cedar", "context", name.as_str()]);
            }
        }
    }
    record.truncated = cut_at;
}

/// An RFC 6901 JSON pointer to `path` (`~` and `/` escaped in each token).
fn pointer(path: &[&str]) -> String {
    let mut out = String::new();
    for token in path {
        out.push('/');
        out.push_str(&token.replace('~', "~0").replace('/', "~1"));
    }
    out
}

/// The allow-listed request headers for the record (`None` when none is present).
pub fn headers(
    config: &DecisionLogConfig,
    request: &HttpRequest,
) -> Option<BTreeMap<String, String>> {
    if config.headers.is_empty() {
        return None;
    }
    let found: BTreeMap<String, String> = config
        .headers
        .iter()
        .filter_map(|name| request.header(name).map(|v| (name.clone(), v.to_string())))
        .collect();
    (!found.is_empty()).then_some(found)
}

/// The trace id (32 lower-case hex digits) of a W3C `traceparent`
/// (`00-<trace id>-<parent id>-<flags>`), when it is well-formed and not all zeros.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let extra = parts.next();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may append more.
        && (version != "00" || extra.is_none())
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_string())
}

/// Values to replace: (the value as text, its redacted form, whether it was a number).
struct Targets {
    /// Longest first, so that a value containing another is replaced whole.
    values: Vec<(String, String, bool)>,
}

/// Replaces every value of the configured claims of `token` in `record`.
pub fn redact(config: &DecisionLogConfig, token: &VerifiedToken, record: &mut DecisionRecord) {
    if config.redact_claims.is_empty() {
        return;
    }
    let mut values = Vec::new();
    for claim in &config.redact_claims {
        if let Some(value) = token.claims.get(claim) {
            collect(config, value, &mut values);
        }
    }
    if values.is_empty() {
        return;
    }
    values.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    values.dedup();
    Targets { values }.record(record);
}

fn collect(config: &DecisionLogConfig, value: &Value, out: &mut Vec<(String, String, bool)>) {
    match value {
        Value::String(s) if !s.is_empty() => out.push((s.clone(), mark(config, s), false)),
        Value::Number(n) => {
            let text = n.to_string();
            let marked = mark(config, &text);
            out.push((text, marked, true));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(config, v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(config, v, out)),
        _ => {}
    }
}

/// `redacted:` + 16 hex digits of HMAC-SHA-256(key, value), or SHA-256(value) without a key.
pub fn mark(config: &DecisionLogConfig, value: &str) -> String {
    let digest = match &config.redaction_key {
        Some(key) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key.bytes());
            let tag = aws_lc_rs::hmac::sign(&key, value.as_bytes());
            let mut out = [0u8; 32];
            let bytes = tag.as_ref();
            if bytes.len() == out.len() {
                out.copy_from_slice(bytes);
            }
            out
        }
        None => sha256(value.as_bytes()),
    };
    format!("{REDACTED_PREFIX}{}", hex_prefix(&digest))
}

impl Targets {
    fn record(&self, r: &mut DecisionRecord) {
        for s in [
            &mut r.principal,
            &mut r.action,
            &mut r.resource,
            &mut r.route,
        ]
        .into_iter()
        .flatten()
        {
            self.string(s);
        }
        if let Some(t) = &mut r.token {
            self.string(&mut t.iss);
            for s in [&mut t.sub, &mut t.jti, &mut t.client_id]
                .into_iter()
                .flatten()
            {
                self.string(s);
            }
        }
        if let Some(headers) = &mut r.headers {
            headers.values_mut().for_each(|v| self.string(v));
        }
        if let Some(line) = &mut r.request {
            self.string(&mut line.host);
            self.string(&mut line.path);
            line.query.values_mut().for_each(|v| self.string(v));
        }
        r.errors.iter_mut().for_each(|e| self.string(e));
        if let Some(shadow) = &mut r.shadow {
            shadow.errors.iter_mut().for_each(|e| self.string(e));
        }
        if let Some(c) = &mut r.cedar {
            for uid in [&mut c.principal, &mut c.action, &mut c.resource] {
                self.string(&mut uid.id);
            }
            self.value(&mut c.context);
            c.entities.iter_mut().for_each(|e| self.value(e));
            c.fetched.iter_mut().for_each(|e| self.value(e));
        }
    }

    fn value(&self, v: &mut Value) {
        match v {
            Value::String(s) => self.string(s),
            Value::Number(n) => {
                let text = n.to_string();
                if let Some((_, marked, _)) = self
                    .values
                    .iter()
                    .find(|(t, _, number)| *number && *t == text)
                {
                    *v = Value::String(marked.clone());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.value(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.value(i)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn string(&self, s: &mut String) {
        for (text, marked, _) in &self.values {
            if s == text {
                *s = marked.clone();
                return;
            }
        }
        for (text, marked, _) in &self.values {
            if text.len() >= MIN_EMBEDDED_LENGTH && s.contains(text.as_str()) {
                *s = s.replace(text.as_str(), marked);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_character_boundary_and_marked() {
        assert_eq!(cut("short", 5), None);
        assert_eq!(cut("", 0), None);
        assert_eq!(cut("abcdef", 4).as_deref(), Some("abcd…[cut from 6 bytes]"));
        // "é" is two bytes: a cut inside it keeps the character out, never half of it.
        let value = "aé".repeat(3); // 9 bytes: a é a é a é
        for (max, kept) in [(1, "a"), (2, "a"), (3, "aé"), (4, "aéa"), (5, "aéa")] {
            let got = cut(&value, max).unwrap();
            assert_eq!(got, format!("{kept}{CUT_MARKER}9 bytes]"), "max {max}");
        }
        assert_eq!(
            cut("日本", 2).as_deref(),
            Some("…[cut from 6 bytes]"),
            "nothing fits: the marker alone"
        );
    }

    #[test]
    fn cap_cuts_every_recorded_header_copy_and_the_request_line_and_lists_them() {
        let yaml = "context:\n  headers: [user-agent, x-short]\n  query: [limit]\n  attributes:\n    ua: { header: user-agent }\n    m: { fact: method }\ndecision_log:\n  headers: [user-agent]\n  max_header_value_bytes: 4\n";
        let config = Config::parse(yaml, std::path::Path::new("c.yaml")).unwrap();
        let line = r#"{"v":1,"time":"t","decision_id":"d","decision":"deny","status":403,"reason":"no_route","mode":"enforce",
            "request":{"method":"GET","host":"example.com","path":"/a/b/c","query":{"limit":"12345"}},
            "policies":[],"errors":[],"headers":{"user-agent":"curl/8.5.0"},"latency_us":1,"policy_version":"p",
            "cedar":{"principal":{"type":"U","id":"a"},"action":{"type":"Action","id":"x"},"resource":{"type":"S","id":"s"},
              "context":{"request":{"path":"/long/path/kept","headers":{"user-agent":"curl/8.5.0","x-short":"abc"}},"ua":"curl/8.5.0","m":"GETLONG"},
              "entities":[]}}"#;
        let mut record: DecisionRecord = serde_json::from_str(line).unwrap();
        cap(&config, &mut record);
        let cut_ua = "curl…[cut from 10 bytes]";
        assert_eq!(record.headers.as_ref().unwrap()["user-agent"], cut_ua);
        let r = record.request.as_ref().unwrap();
        assert_eq!(
            (r.method.as_str(), r.host.as_str()),
            ("GET", "exam…[cut from 11 bytes]")
        );
        assert_eq!(r.path, "/a/b…[cut from 6 bytes]");
        assert_eq!(r.query["limit"], "1234…[cut from 5 bytes]");
        let context = &record.cedar.as_ref().unwrap().context;
        assert_eq!(context["request"]["headers"]["user-agent"], cut_ua);
        assert_eq!(context["request"]["headers"]["x-short"], "abc");
        assert_eq!(context["ua"], cut_ua);
        // Facts other than headers, and the Cedar request's path, are kept whole.
        assert_eq!(context["m"], "GETLONG");
        assert_eq!(context["request"]["path"], "/long/path/kept");
        assert_eq!(
            record.truncated,
            [
                "/headers/user-agent",
                "/request/host",
                "/request/path",
                "/request/query/limit",
                "/cedar/context/request/headers/user-agent",
                "/cedar/context/ua",
            ]
        );
        assert!(record.cedar_cut());
        // Nothing long: nothing listed, nothing touched.
        let mut short: DecisionRecord = serde_json::from_str(line).unwrap();
        let config = Config::parse("{}", std::path::Path::new("c.yaml")).unwrap();
        let before = short.clone();
        cap(&config, &mut short);
        assert_eq!(short, before);
        assert!(!short.cedar_cut());
    }

    #[test]
    fn pointers_escape_tilde_and_slash() {
        assert_eq!(pointer(&["headers", "user-agent"]), "/headers/user-agent");
        assert_eq!(pointer(&["cedar", "a/b~c"]), "/cedar/a~1b~0c");
    }

    #[test]
    fn trace_ids_come_from_well_formed_traceparents_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        for (header, want) in [
            (format!("00-{id}-00f067aa0ba902b7-01"), Some(id)),
            (format!(" 00-{id}-00f067aa0ba902b7-00 "), Some(id)),
            (format!("01-{id}-00f067aa0ba902b7-01-future"), Some(id)),
            (format!("00-{id}-00f067aa0ba902b7-01-extra"), None),
            (format!("ff-{id}-00f067aa0ba902b7-01"), None),
            (
                format!("00-{}-00f067aa0ba902b7-01", id.to_uppercase()),
                None,
            ),
            (format!("00-{}-00f067aa0ba902b7-01", "0".repeat(32)), None),
            (format!("00-{id}-0000000000000000-01"), None),
            (format!("00-{id}-00f067aa0ba902b7"), None),
            ("garbage".to_string(), None),
        ] {
            assert_eq!(trace_id(&header).as_deref(), want, "{header}");
        }
    }
}
