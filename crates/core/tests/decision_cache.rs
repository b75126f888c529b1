//! Differential test of the decision cache: over randomized requests, every answer served from
//! the cache equals, field by field, the answer of an uncached evaluation of the same request.
//! The requests repeat principals, actions and resources but vary everything else — context
//! values the policies read and values they don't, what the credential says, the provider's
//! answers — so that hits come from requests that differ in what the policies don't read, and a
//! key that missed something they do read would answer wrongly and fail the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashSet;

use cedargate_core::mapping::{CedarRequest, EntityRef};
use cedargate_core::policy::PolicySnapshot;
use serde_json::{Value, json};

/// Policies that read the context in every way the key must follow: nested paths, `has`,
/// indexing with a string, a path that is missing on some requests (an evaluation error), and
/// entity data from the credential and the provider.
const POLICIES: &str = r#"
@id("office-hours")
permit (principal, action == Action::"read", resource)
when { context.time.hour >= 8 && context.time.hour < 18 };

@id("debug-header")
forbid (principal, action, resource)
when { context.request.headers has "x-debug" && context.request.headers["x-debug"] == "1" };

@id("grpc-check")
permit (principal, action == Action::"call", resource)
when { context has grpc && context.grpc.method == "Check" };

@id("write-scope")
permit (principal, action == Action::"write", resource)
when { context.token.scopes.contains("docs:write") };

@id("urgent")
permit (principal, action == Action::"call", resource)
when { context.request has urgent };

@id("owner")
permit (principal, action, resource)
when { resource has owner && resource.owner == principal };

@id("admins")
permit (principal in Group::"admins", action, resource);

@id("blocked")
forbid (principal, action, resource)
when { principal has blocked && principal.blocked };

@id("archived")
forbid (principal, action == Action::"write", resource)
when { resource.archived };
"#;

/// The same set plus a policy that uses the context whole: every context value is in the key.
const WHOLE: &str = r#"
@id("exact-context")
forbid (principal, action, resource)
when { context == {"deny": true} };
"#;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.below(items.len() as u64)).unwrap()]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

fn snapshot(extra: &str, cache: u64) -> PolicySnapshot {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policies.cedar"),
        format!("{POLICIES}{extra}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("entities.json"),
        json!([
            {"uid": {"type": "User", "id": "carol"}, "attrs": {"blocked": true}, "parents": []},
            {"uid": {"type": "Group", "id": "admins"}, "attrs": {}, "parents": []},
            {"uid": {"type": "Group", "id": "staff"}, "attrs": {},
             "parents": [{"type": "Group", "id": "admins"}]}
        ])
        .to_string(),
    )
    .unwrap();
    PolicySnapshot::load(dir.path())
        .unwrap()
        .with_decision_cache(cache)
}

fn uid(ty: &str, id: &str) -> EntityRef {
    EntityRef {
        entity_type: ty.into(),
        id: id.into(),
    }
}

/// A random request. What the policies read is drawn from few values, mostly the same for a
/// given user and document (so requests repeat it and the cache answers); what they don't read
/// (the epoch, the path, a trace header, the method, the token id) is different nearly every time.
fn request(rng: &mut Rng) -> CedarRequest {
    let user = rng.pick(&["alice", "bob", "carol", "dave"]);
    let doc = rng.pick(&["d1", "d2", "d3"]);
    // Each fact read: its usual value for this user and document, or (15 % of the time, each
    // fact on its own, so that requests often differ in one read fact only) drawn afresh.
    let seed = |rng: &mut Rng, salt: u64| {
        if !rng.chance(15) {
            let name = format!("{user}{doc}");
            Rng(name
                .bytes()
                .fold(salt, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                | 1)
        } else {
            Rng(rng.next() | 1)
        }
    };
    let mut read = seed(rng, 17);
    let mut headers = serde_json::Map::new();
    if read.chance(30) {
        headers.insert("x-debug".into(), read.pick(&["0", "1"]).into());
    }
    if rng.chance(50) {
        headers.insert("x-trace".into(), rng.below(1_000).to_string().into());
    }
    let mut context = json!({
        "request": {
            "method": rng.pick(&["GET", "POST"]),
            "path": format!("/docs/{doc}/{}", rng.below(100)),
            "headers": headers,
        },
        "time": {
            "hour": seed(rng, 19).pick(&["7", "8", "12", "17", "18"]).parse::<i64>().unwrap(),
            "epoch": 1_800_000_000 + rng.below(100_000),
        },
        "authenticated": true,
    });
    if seed(rng, 23).chance(20) {
        // Only its presence is read: its value varies freely.
        context["request"]["urgent"] = rng.below(5).into();
    }
    let mut scope = seed(rng, 31);
    if scope.chance(70) {
        let scopes: Vec<&str> = ["docs:read", "docs:write"]
            .into_iter()
            .filter(|_| scope.chance(50))
            .collect();
        context["token"] = json!({"scopes": scopes, "jti": rng.below(1_000_000).to_string()});
    }
    let mut grpc = seed(rng, 37);
    if grpc.chance(30) {
        context["grpc"] = json!({"service": "svc", "method": grpc.pick(&["Check", "Watch"])});
    }
    if rng.chance(3) {
        context = json!({"deny": true});
    }
    if rng.chance(2) {
        // A context value that doesn't convert, where no policy reads: the request is denied
        // (invalid context) whatever an earlier request with the same read facts got.
        context["request"]["bad"] = if rng.chance(50) {
            Value::Null
        } else {
            json!(0.5)
        };
    }
    let mut credential = seed(rng, 29);
    let mut entities = Vec::new();
    if credential.chance(60) {
        let parents: Vec<Value> = ["admins", "staff"]
            .into_iter()
            .filter(|_| credential.chance(25))
            .map(|g| json!({"type": "Group", "id": g}))
            .collect();
        let mut attrs = serde_json::Map::new();
        if credential.chance(20) {
            attrs.insert("blocked".into(), credential.chance(50).into());
        }
        entities
            .push(json!({"uid": {"type": "User", "id": user}, "attrs": attrs, "parents": parents}));
    }
    let mut provider = seed(rng, 43);
    let mut fetched = Vec::new();
    if provider.chance(80) {
        let mut attrs = serde_json::Map::new();
        if provider.chance(80) {
            attrs.insert(
                "owner".into(),
                json!({"__entity": {"type": "User", "id": provider.pick(&["alice", "bob"])}}),
            );
        }
        if provider.chance(70) {
            attrs.insert("archived".into(), provider.chance(30).into());
        }
        fetched.push(json!({"uid": {"type": "Doc", "id": doc}, "attrs": attrs, "parents": []}));
    }
    CedarRequest {
        principal: uid("User", user),
        action: uid("Action", rng.pick(&["read", "write", "call"])),
        resource: uid("Doc", doc),
        context,
        entities,
        fetched,
    }
}

/// Every field of an answer, errors included.
fn answer(
    result: &Result<cedargate_core::policy::Evaluation, cedargate_core::policy::EvaluationError>,
) -> String {
    format!("{result:?}")
}

fn differential(extra: &str, seed: u64) -> (usize, usize, usize) {
    let cached = snapshot(extra, 1_000);
    let reference = snapshot(extra, 0);
    let mut rng = Rng(seed);
    let (mut hits, mut hits_on_other_context, mut allows) = (0, 0, 0);
    // Principal, action, resource and the whole context of every request so far.
    let mut seen: HashSet<String> = HashSet::new();
    for i in 0..4_000 {
        let r = request(&mut rng);
        let (served, hit) = cached.evaluate_cached(&r);
        let truth = reference.evaluate(&r);
        assert_eq!(
            answer(&served),
            answer(&truth),
            "request {i} (hit: {hit}): {r:?}"
        );
        let (again, hit_again) = reference.evaluate_cached(&r);
        assert!(!hit_again, "a snapshot with capacity 0 caches nothing");
        assert_eq!(answer(&again), answer(&truth));
        allows += usize::from(truth.as_ref().is_ok_and(|e| e.allowed));
        let whole = format!("{}|{}|{}|{}", r.principal, r.action, r.resource, r.context);
        if hit {
            hits += 1;
            // Answered from a request whose context differed somewhere.
            if !seen.contains(&whole) {
                hits_on_other_context += 1;
            }
        }
        seen.insert(whole);
    }
    (hits, hits_on_other_context, allows)
}

#[test]
fn cached_answers_equal_uncached_ones() {
    for seed in [1, 7, 2_026] {
        let (hits, other, allows) = differential("", seed);
        // The test proves something only if the cache answers often, from requests whose
        // context differs, and the answers are mixed.
        assert!(hits >= 400, "seed {seed}: only {hits} hits");
        assert!(
            other >= 200,
            "seed {seed}: only {other} hits on another context"
        );
        assert!(
            (400..3_600).contains(&allows),
            "seed {seed}: {allows} allows"
        );
    }
}

#[test]
fn a_set_that_reads_the_context_whole_keys_on_all_of_it() {
    let snapshot = snapshot(WHOLE, 100);
    assert!(snapshot.context_reads().whole);
    let (hits, other, _) = differential(WHOLE, 3);
    // Requests repeat only when every context value does (a 3-digit trace header, an epoch among
    // 100,000): nearly no hits, and none across contexts.
    assert_eq!(other, 0, "{hits} hits");
}
