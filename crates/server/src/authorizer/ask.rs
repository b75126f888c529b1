//! The `Authorizer` API's pipeline, protocol-free: authenticate the caller → check the question
//! → fetch entities → authorize the caller on each resource → decide each item → log.
//!
//! Reads the config and policy set in force once per call (`Gate::active`, so hot reload applies
//! from the next call) and decides with the core's own functions: `mapping::principal` maps the
//! caller exactly as Check maps a request's caller, `decision::evaluate` decides (policy index,
//! decision cache, the one entity-merge rule of `policy`). Must not name protobuf types (that is
//! the edge's, `authorizer.rs`) and must not invent a decision: every deny comes from
//! `decision::evaluate` or is a refusal of the whole call.

use std::collections::HashSet;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Instant, SystemTime};

use cedar_policy::{Entities, Entity, EntityTypeName};
use serde_json::{Value, json};

use cedargate_core::config::{Config, action_type};
use cedargate_core::decision::{self, Decision};
use cedargate_core::identity::Identity;
use cedargate_core::mapping::{self, CedarRequest, EntityRef, MappingError};
use cedargate_core::policy::{ENTITIES_UNAVAILABLE, PolicySnapshot, explicit_entity, with_sources};
use cedargate_core::record::{ApiFacts, DecisionRecord, RECORD_VERSION, TokenFacts, rfc3339};
use cedargate_core::redaction;
use cedargate_core::request::HttpRequest;

use crate::gate::Gate;
use crate::identity;

/// Reason code of a call without a credential.
pub const CREDENTIALS_MISSING: &str = "credentials_missing";

/// Which API method asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `IsAuthorized`: one item.
    IsAuthorized,
    /// `BatchIsAuthorized`: many items for one principal.
    BatchIsAuthorized,
}

impl Method {
    /// The method's name in records (`api.method`) and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Method::IsAuthorized => "is_authorized",
            Method::BatchIsAuthorized => "batch_is_authorized",
        }
    }
}

/// A question as the caller sent it, before any check.
#[derive(Debug, Clone)]
pub struct Question {
    /// Whom the question is about (data, never the caller).
    pub principal: EntityRef,
    /// Action and resource of each item, in order.
    pub items: Vec<(EntityRef, EntityRef)>,
    /// The context as Cedar JSON text (empty: `{}`).
    pub context: String,
    /// Extra entities as Cedar entities JSON text (empty: none).
    pub entities: String,
}

/// What identifies the caller of one call.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    /// The `authorization` metadata value, if any.
    pub authorization: Option<String>,
    /// The caller's address, when the transport knows it.
    pub source_ip: Option<IpAddr>,
    /// The workload identity of the client certificate the TLS listener verified (URI SAN,
    /// else DNS SAN, else subject: what Envoy sends a Check as `source.principal`).
    pub peer: Option<String>,
    /// The trace id of the caller's `traceparent`: what the call's records carry when no span
    /// is recorded (OTLP off), as a Check's records carry the request's.
    pub trace_id: Option<String>,
}

/// The answer to a call: one decision per item, in order.
#[derive(Debug)]
pub struct Answered {
    /// Shared by the items' records (`api.batch_id`); `None` for `IsAuthorized`.
    pub batch_id: Option<String>,
    /// One per item.
    pub items: Vec<ItemAnswer>,
}

/// One item's decision and the id of its record.
#[derive(Debug)]
pub struct ItemAnswer {
    /// The decision (policies and errors kept: the answer carries them too).
    pub decision: Decision,
    /// Its record's id.
    pub decision_id: String,
}

/// Why a call got no answer. Each variant is one gRPC status at the edge.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The config in force has no `authorizer_api` section (a reload removed it).
    #[error("the Authorizer API is off in the config in force (authorizer_api)")]
    Off,
    /// The question is malformed: which field and why.
    #[error("{0}")]
    Invalid(String),
    /// No usable credential; `reason` is the decision-log reason code.
    #[error("caller not authenticated: {reason}")]
    Unauthenticated {
        /// Reason code (`credentials_missing`, `token_expired`, …).
        reason: &'static str,
    },
    /// The policies don't permit the caller to ask about an item's resource.
    #[error(
        "caller {caller} is not permitted {action} on {resource} (item {index}); decision {decision_id}"
    )]
    NotAuthorized {
        /// The caller's principal.
        caller: String,
        /// The caller action (`Action::"cedargate:IsAuthorized"`).
        action: String,
        /// The resource it may not ask about.
        resource: String,
        /// The first refused item.
        index: usize,
        /// The refusal's record.
        decision_id: String,
    },
    /// Entity data the call needs could not be had (the entity provider failed): never
    /// decided on partial data.
    #[error("entities unavailable: {0}")]
    Unavailable(String),
}

impl Refusal {
    /// A stable label for metrics (the gRPC code's name).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Off | Refusal::Unavailable(_) => "unavailable",
            Refusal::Invalid(_) => "invalid_argument",
            Refusal::Unauthenticated { .. } => "unauthenticated",
            Refusal::NotAuthorized { .. } => "permission_denied",
        }
    }
}

/// A question that passed the checks: entities parsed against the schema and normalized.
struct Checked {
    principal: EntityRef,
    items: Vec<(EntityRef, EntityRef)>,
    context: Value,
    entities: Vec<Value>,
}

/// The authenticated caller.
struct Authenticated {
    identity: Identity,
    principal: EntityRef,
    /// What its credential says about it (claim-mapped attributes and parents).
    entities: Vec<Value>,
}

/// What every record of one call shares.
struct CallFacts<'a> {
    config: &'a Config,
    method: Method,
    caller: Option<String>,
    identity: Option<&'a Identity>,
    source_ip: Option<IpAddr>,
    trace_id: Option<String>,
    batch_id: Option<String>,
    size: usize,
    arrived: SystemTime,
    started: Instant,
}

/// Answers one call: see the module documentation for the steps.
pub async fn ask(
    gate: &Gate,
    method: Method,
    caller: Caller,
    question: Question,
) -> Result<Answered, Refusal> {
    let started = Instant::now();
    let arrived = SystemTime::now();
    let active = gate.active.load_full();
    let config = &active.config;
    let policies = &active.policies;
    let settings = config.authorizer_api.as_ref().ok_or(Refusal::Off)?;
    let mut facts = CallFacts {
        config,
        method,
        caller: None,
        identity: None,
        source_ip: caller.source_ip,
        trace_id: caller.trace_id.clone(),
        batch_id: (method == Method::BatchIsAuthorized).then(|| uuid::Uuid::now_v7().to_string()),
        size: question.items.len(),
        arrived,
        started,
    };

    // 1. Who is asking. Before anything is said about the question.
    let authenticated = match authenticate(gate, config, &caller).await {
        Ok(a) => a,
        Err(reason) => {
            let mut d = refused(policies, 401, reason);
            gate.log
                .record(record(&facts, &mut d, None, new_id(), None, false));
            return Err(Refusal::Unauthenticated { reason });
        }
    };
    facts.caller = Some(authenticated.principal.to_string());
    facts.identity = Some(&authenticated.identity);

    // 2. Is the question well formed.
    let checked = check(&question, settings, policies)?;

    // 3. The entity provider's data for every uid the call names, in one fetch.
    let fetched = match fetch(gate, &checked, &authenticated.principal).await {
        Ok(f) => f,
        Err(message) => {
            let mut d = refused(policies, 403, ENTITIES_UNAVAILABLE);
            d.errors.push(message.clone());
            gate.log
                .record(record(&facts, &mut d, None, new_id(), None, false));
            return Err(Refusal::Unavailable(message));
        }
    };
    let batch_resources: HashSet<(&str, &str)> =
        checked.items.iter().map(|(_, r)| key(r)).collect();
    let fetched_pool = Pool::new(&fetched, &batch_resources);
    let request_pool = Pool::new(&checked.entities, &batch_resources);

    // 4. May the caller ask about each resource: the policies say.
    let caller_action = EntityRef {
        entity_type: action_type().to_string(),
        id: settings.caller_action.to_string(),
    };
    let mut asked = HashSet::new();
    for (index, (action, resource)) in checked.items.iter().enumerate() {
        if !asked.insert((key(action), key(resource))) {
            continue;
        }
        let cedar = CedarRequest {
            principal: authenticated.principal.clone(),
            action: caller_action.clone(),
            resource: resource.clone(),
            context: json!({
                "principal": { "__entity": &checked.principal },
                // The action's id as a string: a schema can declare it (`action: String`).
                "action": &action.id,
            }),
            entities: authenticated.entities.clone(),
            fetched: fetched_pool.only_for(&[&authenticated.principal, resource]),
        };
        let mut d = decision::evaluate(policies, &cedar, false);
        crate::metrics::decision_cache_lookup(d.from_cache);
        if !d.allowed {
            let decision_id = new_id();
            let batch_index = facts.batch_id.is_some().then_some(index);
            gate.log.record(record(
                &facts,
                &mut d,
                Some(cedar),
                decision_id.clone(),
                batch_index,
                true,
            ));
            return Err(Refusal::NotAuthorized {
                caller: authenticated.principal.to_string(),
                action: caller_action.to_string(),
                resource: resource.to_string(),
                index,
                decision_id,
            });
        }
    }

    // 5. The answers, each recorded.
    let mut items = Vec::with_capacity(checked.items.len());
    for (index, (action, resource)) in checked.items.iter().enumerate() {
        let cedar = CedarRequest {
            principal: checked.principal.clone(),
            action: action.clone(),
            resource: resource.clone(),
            context: checked.context.clone(),
            entities: request_pool.only_for(&[&checked.principal, resource]),
            fetched: fetched_pool.only_for(&[&checked.principal, resource]),
        };
        let mut d = decision::evaluate(policies, &cedar, false);
        crate::metrics::decision_cache_lookup(d.from_cache);
        let decision_id = new_id();
        let batch_index = facts.batch_id.is_some().then_some(index);
        let mut logged = d.clone();
        gate.log.record(record(
            &facts,
            &mut logged,
            Some(cedar),
            decision_id.clone(),
            batch_index,
            false,
        ));
        d.cedar = None;
        items.push(ItemAnswer {
            decision: d,
            decision_id,
        });
    }
    Ok(Answered {
        batch_id: facts.batch_id,
        items,
    })
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The caller's identity from its `authorization` metadata or its client certificate, through
/// the same resolver as Check (JWT verification, introspection; a peer with the `mtls`
/// trust-domain rules, and only when there is no `authorization`), mapped to a principal as
/// Check maps it. A peer without an `mtls` section is nobody: `credentials_missing`.
async fn authenticate(
    gate: &Gate,
    config: &Config,
    caller: &Caller,
) -> Result<Authenticated, &'static str> {
    if caller.authorization.is_none() && caller.peer.is_none() {
        return Err(CREDENTIALS_MISSING);
    }
    let headers: std::collections::HashMap<String, String> = caller
        .authorization
        .iter()
        .map(|a| ("authorization".to_string(), a.clone()))
        .collect();
    let request = HttpRequest {
        method: "POST".into(),
        header_bytes: caller
            .authorization
            .as_ref()
            .map_or(0, |a| "authorization".len() + a.len()),
        headers,
        source_ip: caller.source_ip,
        source_principal: caller.peer.clone(),
        ..HttpRequest::default()
    };
    let identity = identity::resolve(config, &gate.verifier, &gate.sources, &request)
        .await
        .map_err(|e| e.reason())?;
    if matches!(identity, Identity::Anonymous) {
        return Err(CREDENTIALS_MISSING);
    }
    let mut entities = Vec::new();
    let principal = match mapping::principal(config, &identity, &mut entities) {
        Ok(p) => p,
        Err(MappingError::Token(e)) => return Err(e.reason()),
        Err(MappingError::NoRoute) => return Err("no_route"),
    };
    Ok(Authenticated {
        identity,
        principal,
        entities,
    })
}

/// Checks the question's shape and limits, parses its context and its entities (against the
/// schema, each named by its index in `entities_json` when it fails).
fn check(
    question: &Question,
    settings: &cedargate_core::config::AuthorizerApiConfig,
    policies: &PolicySnapshot,
) -> Result<Checked, Refusal> {
    let invalid = |m: String| Refusal::Invalid(m);
    uid_ok(&question.principal, "principal")?;
    if question.items.is_empty() {
        return Err(invalid("items: at least one item is required".into()));
    }
    if question.items.len() > settings.max_batch_items {
        return Err(invalid(format!(
            "items: {} items exceed authorizer_api.max_batch_items ({})",
            question.items.len(),
            settings.max_batch_items
        )));
    }
    for (i, (action, resource)) in question.items.iter().enumerate() {
        uid_ok(action, &format!("items[{i}].action"))?;
        uid_ok(resource, &format!("items[{i}].resource"))?;
    }
    let context = if question.context.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(&question.context) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Err(invalid("context_json: must be a JSON object".into())),
            Err(e) => return Err(invalid(format!("context_json: not JSON: {e}"))),
        }
    };
    let raw_entities = if question.entities.trim().is_empty() {
        Vec::new()
    } else {
        match serde_json::from_str::<Value>(&question.entities) {
            Ok(Value::Array(items)) => items,
            Ok(_) => return Err(invalid("entities_json: must be a JSON array".into())),
            Err(e) => return Err(invalid(format!("entities_json: not JSON: {e}"))),
        }
    };
    if raw_entities.len() > settings.max_entities {
        return Err(invalid(format!(
            "entities_json: {} entities exceed authorizer_api.max_entities ({})",
            raw_entities.len(),
            settings.max_entities
        )));
    }
    let entities = match explicit_entities(&raw_entities, policies) {
        Some(()) => raw_entities,
        None => parsed_entities(raw_entities, policies)?,
    };
    Ok(Checked {
        principal: question.principal.clone(),
        items: question.items.clone(),
        context,
        entities,
    })
}

/// `Some` when every entity is in Cedar's explicit form (`policy::explicit_entity`), no uid is
/// given twice, and all of them conform to the schema, checked in one go: then the entities are
/// used as given. That is the common case and costs ~1/6 of [`parsed_entities`]; `None` sends
/// the call there, which gives the same entities or the same error as Cedar's own parser.
fn explicit_entities(raw: &[Value], policies: &PolicySnapshot) -> Option<()> {
    let parsed = raw
        .iter()
        .map(explicit_entity)
        .collect::<Option<Vec<Entity>>>()?;
    // `from_entities` refuses a uid given twice, an entity that doesn't conform to the schema,
    // and a parent cycle: each is left to `parsed_entities` to report, or accept, as before.
    Entities::from_entities(parsed, policies.schema.as_ref()).ok()?;
    Some(())
}

/// Every entity parsed by Cedar against the schema, each named by its index when it fails, and
/// written back in Cedar's normal form (plain `{"type", "id"}` uids, `__entity`/`__extn` escapes).
fn parsed_entities(raw: Vec<Value>, policies: &PolicySnapshot) -> Result<Vec<Value>, Refusal> {
    let invalid = |m: String| Refusal::Invalid(m);
    let mut entities = Vec::with_capacity(raw.len());
    let mut seen = HashSet::new();
    for (i, value) in raw.into_iter().enumerate() {
        let entity = Entity::from_json_value(value, policies.schema.as_ref())
            .map_err(|e| invalid(format!("entities_json[{i}]: {}", with_sources(&e))))?;
        if !seen.insert(entity.uid()) {
            return Err(invalid(format!(
                "entities_json[{i}]: {} is given twice",
                entity.uid()
            )));
        }
        // Cedar's own normal form: plain `{"type", "id"}` uids, `__entity`/`__extn` escapes.
        let normal = entity
            .to_json_value()
            .map_err(|e| invalid(format!("entities_json[{i}]: {e}")))?;
        entities.push(normal);
    }
    Ok(entities)
}

fn uid_ok(uid: &EntityRef, field: &str) -> Result<(), Refusal> {
    if uid.entity_type.is_empty() || uid.id.is_empty() {
        return Err(Refusal::Invalid(format!(
            "{field}: type and id are required"
        )));
    }
    EntityTypeName::from_str(&uid.entity_type).map_err(|e| {
        Refusal::Invalid(format!(
            "{field}.type `{}` is not a Cedar entity type: {e}",
            uid.entity_type
        ))
    })?;
    Ok(())
}

/// The entity provider's entities for the caller, the principal and every resource, in one
/// fetch under the provider's budget (none without a provider).
async fn fetch(gate: &Gate, checked: &Checked, caller: &EntityRef) -> Result<Vec<Value>, String> {
    let Some(provider) = &gate.entity_provider else {
        return Ok(Vec::new());
    };
    let mut uids: Vec<EntityRef> = Vec::new();
    let wanted = std::iter::once(caller)
        .chain(std::iter::once(&checked.principal))
        .chain(checked.items.iter().map(|(_, r)| r));
    for uid in wanted {
        if provider.types().contains(&uid.entity_type) && !uids.contains(uid) {
            uids.push(uid.clone());
        }
    }
    if uids.is_empty() {
        return Ok(Vec::new());
    }
    provider.fetch(&uids).await.map_err(|e| e.to_string())
}

/// Entities of one call (the request's or the provider's), each with its uid and whether it is
/// one of the batch's resources, worked out once per call so that choosing an item's entities is
/// a scan of string comparisons (no JSON parsing per item).
struct Pool<'a> {
    /// `(uid, is a batch resource, entity)`; an entity without a readable uid is shared.
    entries: Vec<(Option<EntityRef>, bool, &'a Value)>,
}

impl<'a> Pool<'a> {
    fn new(all: &'a [Value], batch_resources: &HashSet<(&str, &str)>) -> Pool<'a> {
        Pool {
            entries: all
                .iter()
                .map(|e| {
                    let uid = uid_of(e);
                    let in_batch = uid
                        .as_ref()
                        .is_some_and(|u| batch_resources.contains(&key(u)));
                    (uid, in_batch, e)
                })
                .collect(),
        }
    }

    /// The entities one item is decided with: those of its own uids (`own`), and those that are
    /// none of the batch's resources (shared data: users, groups, folders). Another item's
    /// resource is left out, so that each record carries what its decision read and no more.
    fn only_for(&self, own: &[&EntityRef]) -> Vec<Value> {
        self.entries
            .iter()
            .filter(|(uid, in_batch, _)| {
                !in_batch || uid.as_ref().is_some_and(|u| own.contains(&u))
            })
            .map(|(_, _, e)| (*e).clone())
            .collect()
    }
}

/// A uid as a hashable pair.
fn key(r: &EntityRef) -> (&str, &str) {
    (&r.entity_type, &r.id)
}

/// The uid of an entity in Cedar's JSON (`{"type", "id"}` or `{"__entity": …}`).
fn uid_of(entity: &Value) -> Option<EntityRef> {
    let uid = entity.get("uid")?;
    let uid = uid.get("__entity").unwrap_or(uid);
    serde_json::from_value(uid.clone()).ok()
}

/// A deny of the whole call, for its record (not an answer: the caller gets a gRPC error).
fn refused(policies: &PolicySnapshot, status: u16, reason: &'static str) -> Decision {
    Decision::deny(status, reason, &policies.version)
}

/// The decision record of one item (or of a refused call), with the API's facts; the caller's
/// token by its facts only (hash, `sub`, `client_id`), redacted and cut as Check's records are.
fn record(
    facts: &CallFacts<'_>,
    d: &mut Decision,
    cedar: Option<CedarRequest>,
    decision_id: String,
    index: Option<usize>,
    caller_check: bool,
) -> DecisionRecord {
    let token = TokenFacts::of(facts.identity);
    let mut record = DecisionRecord {
        v: RECORD_VERSION,
        time: rfc3339(facts.arrived),
        decision_id,
        request_id: None,
        trace_id: crate::telemetry::current_trace_id().or_else(|| facts.trace_id.clone()),
        decision: if d.allowed { "allow" } else { "deny" }.to_string(),
        status: d.status,
        reason: d.reason.to_string(),
        mode: "enforce".to_string(),
        principal: cedar.as_ref().map(|c| c.principal.to_string()),
        action: cedar.as_ref().map(|c| c.action.to_string()),
        resource: cedar.as_ref().map(|c| c.resource.to_string()),
        route: None,
        request: None,
        policies: std::mem::take(&mut d.policies),
        errors: std::mem::take(&mut d.errors),
        token,
        source_ip: facts.source_ip.map(|ip| ip.to_string()),
        headers: None,
        latency_us: u64::try_from(facts.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        policy_version: d.policy_version.to_string(),
        from_cache: d.from_cache,
        shadow: None,
        upstream_token: None,
        truncated: Vec::new(),
        cedar,
        api: Some(ApiFacts {
            method: facts.method.label().to_string(),
            caller: facts.caller.clone(),
            caller_check,
            batch_id: facts.batch_id.clone(),
            index: index.and_then(|i| u32::try_from(i).ok()),
            size: facts
                .batch_id
                .as_ref()
                .and_then(|_| u32::try_from(facts.size).ok()),
        }),
    };
    if let Some(Identity::Token { token, .. }) = facts.identity {
        redaction::redact(&facts.config.decision_log, token, &mut record);
    }
    redaction::cap(facts.config, &mut record);
    crate::telemetry::record_decision(&record);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(t: &str, id: &str) -> EntityRef {
        EntityRef {
            entity_type: t.into(),
            id: id.into(),
        }
    }

    #[test]
    fn an_item_reads_its_own_and_shared_entities_only() {
        let all = vec![
            json!({"uid": {"type": "Doc", "id": "1"}, "attrs": {}, "parents": []}),
            json!({"uid": {"type": "Doc", "id": "2"}, "attrs": {}, "parents": []}),
            json!({"uid": {"__entity": {"type": "User", "id": "bob"}}, "attrs": {}, "parents": []}),
            json!({"uid": {"type": "Folder", "id": "f"}, "attrs": {}, "parents": []}),
        ];
        let (d1, d2, bob) = (r("Doc", "1"), r("Doc", "2"), r("User", "bob"));
        let batch: HashSet<(&str, &str)> = [key(&d1), key(&d2)].into_iter().collect();
        let ids: Vec<String> = Pool::new(&all, &batch)
            .only_for(&[&bob, &d1])
            .iter()
            .filter_map(uid_of)
            .map(|u| u.to_string())
            .collect();
        assert_eq!(ids, ["Doc::\"1\"", "User::\"bob\"", "Folder::\"f\""]);
    }

    #[test]
    fn refusals_have_one_code_each() {
        assert_eq!(Refusal::Off.code(), "unavailable");
        assert_eq!(Refusal::Invalid(String::new()).code(), "invalid_argument");
        assert_eq!(
            Refusal::Unauthenticated { reason: "x" }.code(),
            "unauthenticated"
        );
        assert_eq!(Refusal::Unavailable(String::new()).code(), "unavailable");
    }
}
