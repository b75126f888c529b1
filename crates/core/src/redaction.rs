//! What reaches a decision record from the request beyond the decision itself, and what is
//! taken out before it is written: the headers named in `decision_log.headers` (an allow-list;
//! credential headers are refused by `config`), the W3C trace id from `traceparent`, and claim
//! redaction (`decision_log.redact_claims`).
//!
//! A redacted claim's value is replaced, wherever it appears in the record (principal id, group
//! ids, entity attributes, the entities fetched from the entity provider, the token facts and
//! context, path parameters, headers, errors and shadow errors, even inside a longer string such
//! as a path), by `redacted:` and 16 hex digits of its HMAC-SHA-256 under
//! `decision_log.redaction_key_file` (plain SHA-256 without a key). Equal values get equal
//! hashes, so records still correlate; without the key a hash can't be tested against guesses.
//! Strings and numbers are redacted, also inside arrays and objects; booleans are kept.
//!
//! Runs on the Check path before the record is queued, so everything that reads the record (the
//! log, the trace span) sees the redacted form. With no redacted claim it costs one branch. Pure:
//! no IO.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::config::DecisionLogConfig;
use crate::record::DecisionRecord;
use crate::request::HttpRequest;
use crate::token::{VerifiedToken, hex_prefix, sha256};

/// Prefix of every redacted value, so that readers (and `grep`) can tell one.
pub const REDACTED_PREFIX: &str = "redacted:";
/// Shortest value also redacted *inside* longer strings. Shorter values (`"1"`, `"eu"`) are
/// redacted only where they are the whole value: replacing every occurrence of two letters would
/// shred paths and ids without hiding anything.
pub const MIN_EMBEDDED_LENGTH: usize = 4;

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
