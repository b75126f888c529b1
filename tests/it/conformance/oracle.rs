//! The expected answers, from Cedar alone: the fixture's files, the merge rule (to check the
//! split against the truth), `cedar_policy::Authorizer` on the complete entity set, and the
//! seeded drawing of requests until they can tell a wrong gate from a right one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Effect, Entities, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, Schema, ValidationMode, Validator,
};
use serde_json::{Map, Value, json};

use super::sets::{Route, Spec};
use crate::support::repo;

/// Requests drawn per set at least (issue 12 asks for 150).
const REQUESTS: usize = 240;
/// Requests drawn at most while drawing on for MIN_HITS.
const MAX_REQUESTS: usize = 600;
/// Requests in which each forbid must override a permit, and each source must change an answer
/// when left out (drawing goes on until they do).
const MIN_HITS: usize = 3;
/// Lowest share (percent) of allowed and of denied answers a set's requests must have, so
/// neither a gate that allows everything nor one that denies everything gets far.
const MIN_SHARE_PERCENT: usize = 20;

/// A set's files.
pub struct Fixture {
    pub dir: PathBuf,
    pub schema: Schema,
    pub policies: PolicySet,
    /// `policies/entities.json`, `provider.json`, `complete-entities.json`.
    pub static_entities: Value,
    pub provider: Value,
    pub truth: Value,
    /// User → the claims their token carries besides the registered ones.
    pub claims: BTreeMap<String, Map<String, Value>>,
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let dir = repo().join("tests/fixtures/conformance").join(name);
        let mut schema_text = None;
        let mut policy_text = String::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("policies"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            match file.extension().and_then(|e| e.to_str()) {
                Some("cedarschema") => {
                    assert!(schema_text.is_none(), "{name}: more than one schema");
                    schema_text = Some(text);
                }
                Some("cedar") => policy_text.push_str(&text),
                _ => {}
            }
        }
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&schema_text.expect("a *.cedarschema"))
                .unwrap_or_else(|e| panic!("{name}: schema: {e:?}"));
        let policies =
            PolicySet::from_str(&policy_text).unwrap_or_else(|e| panic!("{name}: policies: {e:?}"));
        let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
        assert!(
            validation.validation_passed(),
            "{name}: the policies don't validate strictly: {:?}",
            validation.validation_errors().collect::<Vec<_>>()
        );
        let claims = read_json(&dir.join("claims.json"));
        let claims = claims
            .as_object()
            .unwrap()
            .iter()
            .map(|(user, c)| (user.clone(), c.as_object().unwrap().clone()))
            .collect();
        Fixture {
            static_entities: read_json(&dir.join("policies/entities.json")),
            provider: read_json(&dir.join("provider.json")),
            truth: read_json(&dir.join("complete-entities.json")),
            claims,
            schema,
            policies,
            dir,
        }
    }
}

/// An entity set keyed by uid `(type, id)`: attributes and parents, in Cedar's JSON form.
type EntityMap = BTreeMap<(String, String), (Map<String, Value>, BTreeSet<(String, String)>)>;

fn uid_key(uid: &Value) -> (String, String) {
    (
        uid["type"].as_str().unwrap().to_string(),
        uid["id"].as_str().unwrap().to_string(),
    )
}

fn entity_map(entities: &Value) -> EntityMap {
    let mut map = EntityMap::new();
    overlay(&mut map, entities);
    map
}

/// The merge rule: parents unioned, attributes overlaid key by key (later sources win).
fn overlay(map: &mut EntityMap, entities: &Value) {
    for e in entities.as_array().unwrap() {
        let slot = map.entry(uid_key(&e["uid"])).or_default();
        for (k, v) in e["attrs"].as_object().unwrap() {
            slot.0.insert(k.clone(), explicit(v));
        }
        for p in e["parents"].as_array().unwrap() {
            slot.1.insert(uid_key(p));
        }
    }
}

/// Entity references in the explicit `{"__entity": …}` form. The sets also use the implicit
/// `{"type", "id"}` form that Cedar reads with a schema; no record attribute in them has exactly
/// those two keys, so the two are told apart here without the schema.
fn explicit(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("__entity") => v.clone(),
        Value::Object(o) if o.len() == 2 && o.contains_key("type") && o.contains_key("id") => {
            json!({ "__entity": v })
        }
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), explicit(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(explicit).collect()),
        other => other.clone(),
    }
}

/// What each user's token adds: parents from the parent claims (their entities created bare
/// when no source defines them) and claim-mapped attributes, which win.
fn overlay_claims(spec: &Spec, map: &mut EntityMap, claims: &BTreeMap<String, Map<String, Value>>) {
    for (user, claims) in claims {
        let mut parents = BTreeSet::new();
        for (claim, ty) in spec.parent_claims {
            for group in claims
                .get(*claim)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                parents.insert((ty.to_string(), group.as_str().unwrap().to_string()));
            }
        }
        let attrs: Map<String, Value> = spec
            .attribute_claims
            .iter()
            .filter_map(|(attr, claim)| Some((attr.to_string(), claims.get(*claim)?.clone())))
            .collect();
        for parent in &parents {
            map.entry(parent.clone()).or_default();
        }
        let key = ("User".to_string(), user.clone());
        // A token alone makes no entity the truth would list: an entity with no attributes and
        // no parents means what a missing one means.
        if parents.is_empty() && attrs.is_empty() && !map.contains_key(&key) {
            continue;
        }
        let slot = map.entry(key).or_default();
        slot.0.extend(attrs);
        slot.1.extend(parents);
    }
}

fn to_json(map: &EntityMap) -> Value {
    let uid = |(t, i): &(String, String)| json!({ "type": t, "id": i });
    Value::Array(
        map.iter()
            .map(|(k, (attrs, parents))| {
                json!({ "uid": uid(k), "attrs": attrs, "parents": parents.iter().map(uid).collect::<Vec<_>>() })
            })
            .collect(),
    )
}

/// The merged sources, optionally leaving one out.
fn merged(spec: &Spec, fx: &Fixture, without: Option<Source>) -> EntityMap {
    let mut map = entity_map(&fx.static_entities);
    if without == Some(Source::PrincipalStatic) {
        map.retain(|(ty, _), _| ty != "User");
    }
    if without != Some(Source::Provider) {
        overlay(&mut map, &fx.provider);
    }
    if without != Some(Source::Claims) {
        overlay_claims(spec, &mut map, &fx.claims);
    }
    map
}

/// A source of entity data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Source {
    Provider,
    Claims,
    /// The users' entries in entities.json (what cedargate used to drop).
    PrincipalStatic,
}

/// Cedar, handed an entity set directly.
struct Oracle<'a> {
    fx: &'a Fixture,
    permits: PolicySet,
}

/// Cedar's answer to one request.
pub struct Verdict {
    pub allow: bool,
    /// `@id`s of the determining policies.
    pub reasons: Vec<String>,
    /// Evaluation errors (policy ids and messages).
    pub errors: Vec<String>,
    /// Whether an erroring policy was a forbid.
    pub forbid_errored: bool,
}

impl<'a> Oracle<'a> {
    fn new(fx: &'a Fixture) -> Oracle<'a> {
        let mut permits = PolicySet::new();
        for p in fx
            .policies
            .policies()
            .filter(|p| p.effect() == Effect::Permit)
        {
            permits.add(p.clone()).unwrap();
        }
        Oracle { fx, permits }
    }

    fn entities(&self, json: Value) -> Entities {
        Entities::from_json_value(json, Some(&self.fx.schema))
            .unwrap_or_else(|e| panic!("{}: entities: {e:?}", self.fx.dir.display()))
    }

    fn id_of(&self, pid: &cedar_policy::PolicyId) -> String {
        self.fx
            .policies
            .annotation(pid, "id")
            .map_or_else(|| pid.to_string(), str::to_string)
    }

    fn decide(&self, q: &Query, entities: &Entities, forbids: bool) -> Verdict {
        let action = uid("Action", &q.action);
        let context = Context::from_json_value(q.context.clone(), Some((&self.fx.schema, &action)))
            .unwrap_or_else(|e| panic!("context {} for {action}: {e:?}", q.context));
        let request = Request::new(
            uid(&q.principal.0, &q.principal.1),
            action,
            uid(&q.resource.0, &q.resource.1),
            context,
            Some(&self.fx.schema),
        )
        .unwrap_or_else(|e| panic!("request {q:?} is not valid for the schema: {e:?}"));
        let policies = if forbids {
            &self.fx.policies
        } else {
            &self.permits
        };
        let response = Authorizer::new().is_authorized(&request, policies, entities);
        let mut forbid_errored = false;
        let errors = response
            .diagnostics()
            .errors()
            .map(|err| {
                let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = err;
                let effect = self.fx.policies.policy(e.policy_id()).map(|p| p.effect());
                forbid_errored |= effect == Some(Effect::Forbid);
                format!("{}: {err}", self.id_of(e.policy_id()))
            })
            .collect();
        Verdict {
            allow: response.decision() == Decision::Allow,
            reasons: response
                .diagnostics()
                .reason()
                .map(|p| self.id_of(p))
                .collect(),
            errors,
            forbid_errored,
        }
    }
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).unwrap(), EntityId::new(id))
}

/// The Cedar request an HTTP request means.
#[derive(Debug)]
pub struct Query {
    pub principal: (String, String),
    pub action: String,
    pub resource: (String, String),
    pub context: Value,
}

impl Query {
    /// Principal, action and resource as Cedar prints them (`User::"alice"`).
    pub fn uids(&self) -> [String; 3] {
        [
            uid(&self.principal.0, &self.principal.1),
            uid("Action", &self.action),
            uid(&self.resource.0, &self.resource.1),
        ]
        .map(|u| u.to_string())
    }
}

/// One generated HTTP request and what Cedar says about it.
pub struct Probe {
    /// `None`: anonymous (no token).
    pub user: Option<String>,
    pub method: &'static str,
    pub path: String,
    pub region: Option<&'static str>,
    /// `None` when no route matches.
    pub query: Option<Query>,
    /// Cedar's answer on the truth (deny when no route matches).
    pub expected: Option<Verdict>,
    /// The sources whose omission flips Cedar's answer: a gate that gives the other answer
    /// behaves as if it ignored one of these.
    pub flipped_without: Vec<Source>,
}

impl Probe {
    pub fn allow(&self) -> bool {
        self.expected.as_ref().is_some_and(|v| v.allow)
    }
}

/// SplitMix64: a tiny seeded PRNG, so every run sends the same requests.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'t, T>(&mut self, items: &'t [T]) -> &'t T {
        &items[self.below(items.len())]
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

/// One round of requests in random order: every user (and anonymous) on every route, plus each
/// path no route matches once, with random parameter values (now and then ids no source
/// defines) and, for some sets, a random region header.
fn round(spec: &Spec, users: &[Option<&String>], rng: &mut Prng) -> Vec<Probe> {
    let mut pairs: Vec<(Option<&String>, &Route)> = Vec::new();
    for route in spec.routes {
        if route.target.is_some() {
            pairs.extend(users.iter().map(|u| (*u, route)));
        } else {
            pairs.push((*rng.pick(users), route));
        }
    }
    for i in (1..pairs.len()).rev() {
        pairs.swap(i, rng.below(i + 1));
    }
    pairs
        .into_iter()
        .map(|(user, route)| probe(spec, user.cloned(), route, rng))
        .collect()
}

fn probe(spec: &Spec, user: Option<String>, route: &Route, rng: &mut Prng) -> Probe {
    let values: Vec<(&str, &str)> = spec
        .params
        .iter()
        .map(|p| {
            let pool = if rng.percent(10) {
                p.missing
            } else {
                p.existing
            };
            (p.name, *rng.pick(pool))
        })
        .collect();
    let fill = |template: &str| {
        values.iter().fold(template.to_string(), |t, (n, v)| {
            t.replace(&format!("{{{n}}}"), v)
        })
    };
    let region = *rng.pick(spec.regions);
    let query = route.target.map(|(action, ty, id)| Query {
        principal: match &user {
            Some(u) => ("User".to_string(), u.clone()),
            None => (spec.anonymous.0.to_string(), spec.anonymous.1.to_string()),
        },
        action: action.to_string(),
        resource: (ty.to_string(), fill(id)),
        context: (spec.context)(user.is_some(), region),
    });
    Probe {
        user,
        method: route.method,
        path: fill(route.path),
        region,
        query,
        expected: None,
        flipped_without: Vec::new(),
    }
}

/// Steps 1–3: the fixture is consistent, Cedar's answers are computed, and they are able to
/// catch a wrong allow, a wrong deny and an ignored source.
pub fn plan(spec: &Spec, fx: &Fixture) -> Vec<Probe> {
    let truth = entity_map(&fx.truth);
    let merged_all = merged(spec, fx, None);
    if merged_all != truth {
        let missing: Vec<_> = truth
            .iter()
            .filter(|(k, v)| merged_all.get(*k) != Some(v))
            .collect();
        let extra: Vec<_> = merged_all
            .iter()
            .filter(|(k, v)| truth.get(*k) != Some(v))
            .collect();
        panic!(
            "{}: the merge of entities.json, provider.json and claims.json is not \
             complete-entities.json\n  truth has: {missing:?}\n  merge has: {extra:?}",
            spec.name
        );
    }
    let oracle = Oracle::new(fx);
    let entities = oracle.entities(fx.truth.clone());
    let partials: Vec<(Source, Entities)> =
        [Source::Provider, Source::Claims, Source::PrincipalStatic]
            .into_iter()
            .map(|source| {
                (
                    source,
                    oracle.entities(to_json(&merged(spec, fx, Some(source)))),
                )
            })
            .collect();
    // What the sample must show MIN_HITS times each: every forbid overriding a permit (a gate
    // that misses it allows wrongly), and every source changing an answer when left out (a gate
    // that ignores it answers wrongly).
    let mut hits: BTreeMap<String, usize> = fx
        .policies
        .policies()
        .filter(|p| p.effect() == Effect::Forbid)
        .map(|p| (format!("forbid {}", oracle.id_of(p.id())), 0))
        .chain(
            partials
                .iter()
                .map(|(source, _)| (format!("without {source:?}"), 0)),
        )
        .collect();
    let mut rng = Prng(spec.seed);
    // Anonymous callers come twice per round: they are the other half of several forbids.
    let users: Vec<Option<&String>> = [None, None]
        .into_iter()
        .chain(fx.claims.keys().map(Some))
        .collect();
    let mut probes = Vec::new();
    let enough = |probes: &Vec<Probe>, hits: &BTreeMap<String, usize>| {
        probes.len() >= MAX_REQUESTS
            || (probes.len() >= REQUESTS && hits.values().all(|n| *n >= MIN_HITS))
    };
    while !enough(&probes, &hits) {
        for mut probe in round(spec, &users, &mut rng) {
            if enough(&probes, &hits) {
                break;
            }
            if let Some(q) = &probe.query {
                let verdict = oracle.decide(q, &entities, true);
                assert!(
                    !(verdict.allow && verdict.forbid_errored),
                    "{}: a forbid fails to evaluate where Cedar allows ({q:?}: {:?}); \
                     cedargate denies that on purpose (policy_error), so the fixture must not \
                     contain it",
                    spec.name,
                    verdict.errors
                );
                if !verdict.allow && oracle.decide(q, &entities, false).allow {
                    for id in &verdict.reasons {
                        *hits.entry(format!("forbid {id}")).or_default() += 1;
                    }
                }
                for (source, partial) in &partials {
                    if oracle.decide(q, partial, true).allow != verdict.allow {
                        *hits.entry(format!("without {source:?}")).or_default() += 1;
                        probe.flipped_without.push(*source);
                    }
                }
                probe.expected = Some(verdict);
            }
            probes.push(probe);
        }
    }
    let short: Vec<_> = hits.iter().filter(|(_, n)| **n < MIN_HITS).collect();
    assert!(
        short.is_empty(),
        "{}: in {MAX_REQUESTS} requests, fewer than {MIN_HITS} show {short:?}: the sample can't \
         tell a gate that gets these wrong from one that gets them right",
        spec.name
    );
    let allowed = probes.iter().filter(|p| p.allow()).count();
    let denied = probes.len() - allowed;
    assert!(
        allowed * 100 >= probes.len() * MIN_SHARE_PERCENT
            && denied * 100 >= probes.len() * MIN_SHARE_PERCENT,
        "{}: {allowed} allowed, {denied} denied: too lopsided to tell gates apart",
        spec.name
    );
    println!(
        "{}: {} requests planned (allow {allowed}, deny {denied}); requests that show each \
         forbid overriding a permit, and each source changing an answer: {hits:?}",
        spec.name,
        probes.len(),
    );
    probes
}
