//! The decision cache: Cedar's answer kept per distinct set of request facts the policy set can
//! read, so that a repeated Check (the same caller, action and resource, seen again) is answered
//! without building the Cedar context and entities or evaluating.
//!
//! Why it is sound. Cedar's answer — decision, determining policies, errors — is a function of
//! the policy set, the entities and the request `(principal, action, resource, context)`, and of
//! nothing else (Cedar has no clock and no I/O). One cache lives in one
//! [`PolicySnapshot`](crate::policy::PolicySnapshot), so the policies, the schema and the static
//! entities are fixed for its lifetime: a reload starts an empty cache. The key holds the rest:
//! - the three uids, as the mapping wrote them;
//! - every entity the request brings (what the credential says, and the provider's answers), as
//!   JSON: so a provider's new answer or a token with other claims is another key;
//! - of the context, exactly what the policies read of it ([`ContextReads`], worked out from the
//!   policies' JSON form when the snapshot loads): the value at every `context.a.b` path a policy
//!   dereferences, and presence for every `context has a` it tests. A policy that uses `context`
//!   any other way (passes the whole record around, compares it) makes the whole context part of
//!   the key. So `context.time.epoch`, which changes every second, is in the key only for a set
//!   that reads it (and then repeated requests rarely hit: correct, just not faster).
//!
//! The differential tests (here and in `tests/it/decision_cache.rs`) compare every field of cached
//! answers with uncached ones over randomized requests.

use std::fmt::Write as _;

use cedar_policy::PolicySet;
use serde_json::Value;

use crate::mapping::CedarRequest;

/// Answers kept per snapshot when the config doesn't say otherwise.
pub const DEFAULT_CAPACITY: u64 = crate::config::DEFAULT_DECISION_CACHE_CAPACITY;

/// What the policy set reads of `context`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContextReads {
    /// Some policy uses `context` other than through attribute access and `has`: the whole
    /// context is part of the key.
    pub whole: bool,
    /// Paths whose value a policy reads (`context.a.b` → `["a", "b"]`), sorted, deduplicated.
    pub values: Vec<Vec<String>>,
    /// Paths whose presence a policy tests (`context.a has b` → `["a", "b"]`), sorted,
    /// deduplicated.
    pub presence: Vec<Vec<String>>,
}

impl ContextReads {
    /// What `policies` read of the context. A policy whose JSON form can't be had is taken to
    /// read all of it.
    pub fn of(policies: &PolicySet) -> ContextReads {
        let mut reads = ContextReads::default();
        for policy in policies.policies() {
            match policy.to_json() {
                Ok(est) => reads.walk(&est),
                Err(_) => reads.whole = true,
            }
        }
        for paths in [&mut reads.values, &mut reads.presence] {
            paths.sort_unstable();
            paths.dedup();
        }
        reads
    }

    /// Records the context reads of one node of a policy's JSON form (EST), and of everything
    /// under it.
    fn walk(&mut self, node: &Value) {
        match node {
            Value::Object(map) => {
                if map.len() == 1 {
                    if map.get("Var").and_then(Value::as_str) == Some("context") {
                        // `context` not under an attribute access or `has`: the whole record.
                        self.whole = true;
                        return;
                    }
                    for (op, into) in [(".", false), ("has", true)] {
                        let Some(access) = map.get(op) else { continue };
                        let (Some(left), Some(attr)) = (
                            access.get("left"),
                            access.get("attr").and_then(Value::as_str),
                        ) else {
                            continue;
                        };
                        if let Some(mut path) = context_path(left) {
                            path.push(attr.to_string());
                            if into {
                                self.presence.push(path);
                            } else {
                                self.values.push(path);
                            }
                            return;
                        }
                    }
                }
                for child in map.values() {
                    self.walk(child);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.walk(item);
                }
            }
            _ => {}
        }
    }

    /// Appends to `key` what `context` holds at every path the policies read; the whole context
    /// when they read it whole.
    fn write_key(&self, context: &Value, key: &mut String) -> Result<(), serde_json::Error> {
        if self.whole {
            key.push_str("\nctx=");
            key.push_str(&serde_json::to_string(context)?);
            return Ok(());
        }
        for path in &self.values {
            key.push_str("\nv=");
            match at(context, path) {
                Ok(value) => key.push_str(&serde_json::to_string(value)?),
                // Where the path stops matters (the error names the missing attribute).
                Err(depth) => {
                    let _ = write!(key, "missing@{depth}");
                }
            }
        }
        for path in &self.presence {
            key.push_str("\nh=");
            match at(context, path) {
                Ok(_) => key.push('1'),
                Err(depth) => {
                    let _ = write!(key, "missing@{depth}");
                }
            }
        }
        Ok(())
    }
}

/// True when `value` surely becomes a Cedar value: strings, booleans, 64-bit integers, sets and
/// records of them, `ip(…)` of an address, and an entity reference whose type is a plain path
/// of identifiers (the Authorizer API's caller checks carry one). Anything else (null, a
/// fraction, another extension, a type name Cedar might refuse) is left to the evaluation to
/// judge, uncached.
fn converts(value: &Value) -> bool {
    match value {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => n.as_i64().is_some(),
        Value::Array(items) => items.iter().all(converts),
        Value::Object(map) => match map.get("__extn") {
            Some(extn) => {
                map.len() == 1
                    && extn.get("fn").and_then(Value::as_str) == Some("ip")
                    && extn
                        .get("arg")
                        .and_then(Value::as_str)
                        .is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok())
            }
            None => match map.get("__entity") {
                Some(uid) => map.len() == 1 && plain_uid(uid),
                None => map.values().all(converts),
            },
        },
        Value::Null => false,
    }
}

/// True when `uid` is `{"type", "id"}` with a string id and a type that Cedar surely parses:
/// `::`-separated identifiers, none of them a keyword or `__`-prefixed (a superset of what
/// Cedar reserves, so a refusal is never mistaken for a value).
fn plain_uid(uid: &Value) -> bool {
    const RESERVED: [&str; 17] = [
        "true",
        "false",
        "if",
        "then",
        "else",
        "in",
        "is",
        "like",
        "has",
        "permit",
        "forbid",
        "when",
        "unless",
        "principal",
        "action",
        "resource",
        "context",
    ];
    let Some(map) = uid.as_object() else {
        return false;
    };
    let identifier = |part: &str| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !part.starts_with("__")
            && !RESERVED.contains(&part)
    };
    map.len() == 2
        && map.get("id").is_some_and(Value::is_string)
        && map
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|ty| ty.split("::").all(identifier))
}

/// The attribute path of `expr` when it is `context` followed by attribute accesses only.
fn context_path(expr: &Value) -> Option<Vec<String>> {
    let map = expr.as_object()?;
    if map.len() != 1 {
        return None;
    }
    if map.get("Var").and_then(Value::as_str) == Some("context") {
        return Some(Vec::new());
    }
    let access = map.get(".")?;
    let mut path = context_path(access.get("left")?)?;
    path.push(access.get("attr")?.as_str()?.to_string());
    Some(path)
}

/// The value at `path` in `value`, or how many steps of it were found before it stopped.
fn at<'a>(value: &'a Value, path: &[String]) -> Result<&'a Value, usize> {
    let mut here = value;
    for (depth, step) in path.iter().enumerate() {
        here = here.get(step).ok_or(depth)?;
    }
    Ok(here)
}

/// Cedar's answers of one policy snapshot, by key. `A` is what an evaluation gives (the
/// snapshot keeps errors too: a principal that doesn't conform to the schema doesn't conform the
/// next time either).
pub struct DecisionCache<A> {
    /// What the snapshot's policies read of the context.
    reads: ContextReads,
    /// `None` when caching is off (capacity 0).
    answers: Option<moka::sync::Cache<String, A>>,
}

impl<A: Clone + Send + Sync + 'static> DecisionCache<A> {
    /// A cache of at most `capacity` answers for `policies` (0: no cache).
    pub fn new(policies: &PolicySet, capacity: u64) -> DecisionCache<A> {
        DecisionCache {
            reads: ContextReads::of(policies),
            answers: (capacity > 0).then(|| moka::sync::Cache::new(capacity)),
        }
    }

    /// An empty cache for the same policies with room for `capacity` answers (0: none): the
    /// read-set is kept, not worked out again (a walk over every policy).
    pub fn resized(&self, capacity: u64) -> DecisionCache<A> {
        DecisionCache {
            reads: self.reads.clone(),
            answers: (capacity > 0).then(|| moka::sync::Cache::new(capacity)),
        }
    }

    /// What the policies read of the context.
    pub fn reads(&self) -> &ContextReads {
        &self.reads
    }

    /// The key of `request`: every fact of it the policy set can read. `None` when caching is
    /// off (or the request's JSON can't be written, which the evaluation will then report).
    pub fn key(&self, request: &CedarRequest) -> Option<String> {
        self.answers.as_ref()?;
        // The whole context is converted into Cedar values before evaluation, read or not, and a
        // value that doesn't convert denies the request: only a context that surely converts
        // may be answered by what the policies read of it.
        if !converts(&request.context) {
            return None;
        }
        let mut key = String::with_capacity(256);
        let _ = write!(
            key,
            "{}\n{}\n{}\n",
            request.principal, request.action, request.resource
        );
        serde_json::to_writer(KeyWriter(&mut key), &(&request.entities, &request.fetched)).ok()?;
        self.reads.write_key(&request.context, &mut key).ok()?;
        Some(key)
    }

    /// The answer kept under `key`.
    pub fn get(&self, key: &str) -> Option<A> {
        self.answers.as_ref()?.get(key)
    }

    /// Keeps `answer` under `key`.
    pub fn insert(&self, key: String, answer: A) {
        if let Some(answers) = &self.answers {
            answers.insert(key, answer);
        }
    }
}

/// Lets `serde_json` write straight into the key (its JSON is UTF-8).
struct KeyWriter<'a>(&'a mut String);

impl std::io::Write for KeyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
        self.0.push_str(text);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn reads(src: &str) -> ContextReads {
        ContextReads::of(&PolicySet::from_str(src).unwrap())
    }

    fn paths(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|p| p.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn reads_are_the_paths_policies_dereference_and_test() {
        let found = reads(
            r#"permit (principal, action, resource)
               when { context has grpc && context.grpc.method == "Check" };
               permit (principal, action, resource)
               when { context has token && context.token.scopes.contains("w") };
               forbid (principal, action, resource)
               when { context.request.headers has "x-debug" && context["time"].hour < 6 };"#,
        );
        assert!(!found.whole);
        assert_eq!(
            found.values,
            paths(&[&["grpc", "method"], &["time", "hour"], &["token", "scopes"]])
        );
        assert_eq!(
            found.presence,
            paths(&[&["grpc"], &["request", "headers", "x-debug"], &["token"]])
        );
    }

    #[test]
    fn context_used_whole_is_read_whole() {
        for src in [
            r#"permit (principal, action, resource) when { context == {} };"#,
            r#"permit (principal, action, resource) when { [context].contains({"a": 1}) };"#,
            r#"permit (principal, action, resource) when { {"c": context}.c has a };"#,
        ] {
            assert!(reads(src).whole, "{src}");
        }
        let none = reads(r#"permit (principal == User::"context", action, resource);"#);
        assert_eq!(none, ContextReads::default());
    }

    #[test]
    fn keys_hold_what_is_read_and_only_that() {
        let set = PolicySet::from_str(
            r#"permit (principal, action, resource) when { context.a.b == 1 && context has c };"#,
        )
        .unwrap();
        let cache: DecisionCache<()> = DecisionCache::new(&set, 10);
        let request = |context: Value| {
            let mut r: CedarRequest = serde_json::from_value(serde_json::json!({
                "principal": {"type": "User", "id": "alice"},
                "action": {"type": "Action", "id": "view"},
                "resource": {"type": "Doc", "id": "d"},
                "context": context,
                "entities": [],
            }))
            .unwrap();
            r.fetched = Vec::new();
            r
        };
        let key = |context: Value| cache.key(&request(context)).unwrap();
        let base = key(serde_json::json!({"a": {"b": 1, "x": 1}, "c": 5, "time": 1}));
        // What isn't read doesn't change the key.
        assert_eq!(
            base,
            key(serde_json::json!({"a": {"b": 1, "x": 2}, "c": 6, "time": 2}))
        );
        // What is read does; so does where a missing path stops.
        for other in [
            serde_json::json!({"a": {"b": 2}, "c": 5}),
            serde_json::json!({"a": {"b": 1}}),
            serde_json::json!({"a": {}, "c": 5}),
            serde_json::json!({"c": 5}),
        ] {
            assert_ne!(base, key(other.clone()), "{other}");
        }
        assert_ne!(
            key(serde_json::json!({"a": {}})),
            key(serde_json::json!({}))
        );
        assert!(
            DecisionCache::<()>::new(&set, 0)
                .key(&request(Value::Null))
                .is_none()
        );
        // A context part that may not convert, read or not, is never answered from the cache.
        for unsure in [
            serde_json::json!({"a": {"b": 1}, "c": 5, "x": null}),
            serde_json::json!({"a": {"b": 1}, "c": 5, "x": 1.5}),
            serde_json::json!({"a": {"b": 1}, "x": {"__extn": {"fn": "decimal", "arg": "1.0"}}}),
            serde_json::json!({"a": {"b": 1}, "x": {"__extn": {"fn": "ip", "arg": "nope"}}}),
            serde_json::json!({"a": {"b": 1}, "x": {"__entity": {"type": "if", "id": "u"}}}),
            serde_json::json!({"a": {"b": 1}, "x": {"__entity": {"type": "U", "id": 1}}}),
            serde_json::json!({"a": {"b": 1}, "x": {"__entity": {"type": "U", "id": "u", "y": 1}}}),
            serde_json::json!({"a": {"b": 1}, "x": {"__entity": {"type": "U", "id": "u"}, "y": 1}}),
        ] {
            assert!(cache.key(&request(unsure.clone())).is_none(), "{unsure}");
        }
        let ip =
            serde_json::json!({"a": {"b": 1}, "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}}});
        assert!(cache.key(&request(ip)).is_some());
        // The Authorizer API's caller checks: an entity reference in the context is cached.
        let caller_check = serde_json::json!({
            "a": {"b": 1}, "principal": {"__entity": {"type": "App::User", "id": "bob"}}
        });
        assert!(cache.key(&request(caller_check)).is_some());
    }

    /// `plain_uid` only says yes where Cedar surely parses the type name, so an entity
    /// reference it admits can never fail the context's conversion in the evaluation.
    #[test]
    fn plain_entity_types_are_ones_cedar_parses() {
        for ty in [
            "User",
            "App::User",
            "_x",
            "a1::B_2",
            "if",
            "App::if",
            "__cedar",
            "__cedar::User",
            "",
            "A::",
            "::A",
            "1A",
            "A B",
            "A::::B",
            "Ünï",
            "true",
            "is",
            "A-B",
            "A\u{0}",
        ] {
            let admitted = plain_uid(&serde_json::json!({"type": ty, "id": "x"}));
            if admitted {
                assert!(
                    cedar_policy::EntityTypeName::from_str(ty).is_ok(),
                    "admitted {ty:?}, which Cedar refuses"
                );
            }
            let expected = matches!(ty, "User" | "App::User" | "_x" | "a1::B_2");
            assert_eq!(admitted, expected, "{ty:?}");
        }
        assert!(!plain_uid(&serde_json::json!({"type": "User"})));
        assert!(!plain_uid(&serde_json::json!("User::\"x\"")));
    }
}
