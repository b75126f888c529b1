//! The policy set: every `*.cedar` in the policy folder, validated (strict) against the
//! `*.cedarschema` there, plus static entities from `entities.json`, loaded as one immutable
//! snapshot with a content-hash version; and evaluation of a [`CedarRequest`] against it.
//!
//! Loading reports *every* problem with file:line:column. Evaluation is synchronous and does no
//! IO, and hands Cedar only the policies whose scope can match ([`crate::policy_index`]), which
//! is exactly evaluating the whole set. Policy ids are the `@id("…")` annotation when present,
//! else `<file>#<n>` (n-th policy in the file, from 0) — annotate policies with `@id` so ids
//! survive edits.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{
    Authorizer, Context, Effect, Entities, Entity, EntityUid, Policy, PolicyId, PolicySet, Request,
    RestrictedExpression, Schema, Template, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde_json::Value;

use crate::decision_cache::{self, DecisionCache};
use crate::mapping::{CedarRequest, EntityRef};
use crate::policy_index::{Authorization, PolicyIndex};
use crate::policy_text;
use crate::token::hex_prefix;

/// Reason code of a Check denied because the entity data it needed could not be had (the
/// provider failed, or its data doesn't conform to the schema).
pub const ENTITIES_UNAVAILABLE: &str = "entities_unavailable";

pub use crate::bundle::ENTITIES_FILE;

/// One problem in the policy folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyProblem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0 = whole file).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// The policy folder could not be loaded; every problem found is listed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct PolicyLoadError(pub Vec<PolicyProblem>);

/// Facts about one policy, for logs and explanations.
#[derive(Debug, Clone)]
pub struct PolicyInfo {
    /// permit or forbid.
    pub effect: Effect,
    /// The `@reason` annotation (or `@description`), if any.
    pub reason: Option<Arc<str>>,
    /// File it came from.
    pub file: PathBuf,
}

/// An immutable, validated policy set.
pub struct PolicySnapshot {
    /// The policies, with stable ids.
    pub policies: PolicySet,
    /// The schema, when the folder has one.
    pub schema: Option<Schema>,
    /// The same schema in Cedar's JSON schema form, for checks that derive a schema from it
    /// ([`crate::shapes`]).
    pub schema_json: Option<Value>,
    /// Static entities (and action entities from the schema).
    pub entities: Entities,
    /// Policy facts by id.
    pub info: HashMap<String, PolicyInfo>,
    /// Content hash of every loaded file (short hex): the policy-set version in decision logs.
    pub version: Arc<str>,
    /// When this snapshot was loaded.
    pub loaded_at: SystemTime,
    /// Bytes of policy text (`*.cedar`) it was loaded from.
    pub policy_bytes: u64,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Merged entity sets by request-derived entities (see `request_entities`).
    entity_cache: moka::sync::Cache<String, Entities>,
    /// Cedar's answers by the request facts the policies read (see [`crate::decision_cache`]).
    decisions: DecisionCache<Result<Evaluation, EvaluationError>>,
    /// `policies` split by action and `principal ==` scope: what [`evaluate`](Self::evaluate)
    /// hands to Cedar.
    index: PolicyIndex,
    /// Entity type names of the schema and the static entities, parsed once: parsing one with
    /// Cedar's parser costs ~1.6k instructions, three times per Check.
    entity_types: HashMap<String, cedar_policy::EntityTypeName>,
}

/// Merged entity sets kept per policy snapshot (one per distinct caller × resource in use),
/// bounded by the entities they hold in all: a set is a map of ~100 bytes per entity (the
/// entities themselves are shared), so the bound is ~6 MB whatever the callers. At least 8 sets
/// always fit, however large `entities.json` is. A count bound (4,096 sets) let 10,000 live
/// callers hold ~25 MB with the demo's 60 entities, and would hold 4,096 copies of a large file's
/// map.
const ENTITY_CACHE_ENTITIES: u64 = 65_536;

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Cedar's decision.
    pub allowed: bool,
    /// Ids of the policies that determined it (permits on allow, forbids on an explicit deny).
    pub determining: Vec<String>,
    /// Evaluation errors, as `policy id: message`.
    pub errors: Vec<String>,
    /// True when a forbid policy errored: Cedar skips erroring policies, so such an allow is
    /// turned into a deny (fail closed).
    pub forbid_errored: bool,
}

/// Why a request could not be evaluated.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EvaluationError {
    /// A uid, context or entity could not be built.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// Which part.
        what: &'static str,
        /// Cedar's message.
        message: String,
    },
    /// The principal, merged from the credential and the entity sources, doesn't conform to the
    /// schema (a required attribute missing, a wrong type, an undeclared parent type).
    #[error("principal does not conform to the schema: {message}")]
    PrincipalInvalid {
        /// Cedar's message, naming the entity.
        message: String,
    },
    /// Entity provider data that can't be used: not Cedar entity JSON, or not conforming to the
    /// schema.
    #[error("entity provider data unusable: {message}")]
    EntitiesUnavailable {
        /// What was wrong, naming the entity.
        message: String,
    },
}

impl EvaluationError {
    /// The deny reason code.
    pub fn reason(&self) -> &'static str {
        match self {
            EvaluationError::Invalid { .. } => "evaluation_error",
            EvaluationError::PrincipalInvalid { .. } => "principal_invalid",
            EvaluationError::EntitiesUnavailable { .. } => ENTITIES_UNAVAILABLE,
        }
    }
}

/// An error with its sources: Cedar keeps the specifics (which attribute, which type) there.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

/// `Type::"id"` of an entity JSON value, for messages (never its attributes).
fn entity_label(value: &Value) -> String {
    let uid = value.get("uid");
    let uid = uid
        .and_then(|u| u.get("__entity"))
        .or(uid)
        .cloned()
        .unwrap_or(Value::Null);
    match (
        uid.get("type").and_then(Value::as_str),
        uid.get("id").and_then(Value::as_str),
    ) {
        (Some(t), Some(id)) => format!("{t}::{}", Value::from(id)),
        _ => "(without a uid)".to_string(),
    }
}

fn invalid(what: &'static str) -> impl Fn(&dyn fmt::Display) -> EvaluationError {
    move |e| EvaluationError::Invalid {
        what,
        message: e.to_string(),
    }
}

impl PolicySnapshot {
    /// Loads and validates the policy folder.
    pub fn load(dir: &Path) -> Result<PolicySnapshot, PolicyLoadError> {
        PolicySnapshot::load_reporting(dir, &mut |_| {})
    }

    /// [`load`](Self::load), telling `progress` how far it has come when the policy text is
    /// large (see [`LoadProgress`]), so that a long load shows in the log.
    pub fn load_reporting(
        dir: &Path,
        progress: &mut dyn FnMut(LoadProgress<'_>),
    ) -> Result<PolicySnapshot, PolicyLoadError> {
        let mut problems = Vec::new();
        let mut files = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect::<Vec<_>>(),
            Err(e) => {
                return Err(PolicyLoadError(vec![PolicyProblem {
                    file: dir.to_path_buf(),
                    line: 0,
                    column: 0,
                    message: format!("cannot read policy folder: {e}"),
                }]));
            }
        };
        files.sort();
        let ext = |p: &Path, e: &str| p.extension().is_some_and(|x| x == e);
        let policy_files: Vec<PathBuf> =
            files.iter().filter(|p| ext(p, "cedar")).cloned().collect();
        let schema_files: Vec<PathBuf> = files
            .iter()
            .filter(|p| ext(p, "cedarschema"))
            .cloned()
            .collect();
        let entities_file = dir.join(ENTITIES_FILE);

        let mut hasher = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut read = |path: &Path, problems: &mut Vec<PolicyProblem>| -> Option<String> {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    hasher.update(path.file_name().map_or(b"", |n| n.as_encoded_bytes()));
                    hasher.update(&[0]);
                    hasher.update(text.as_bytes());
                    hasher.update(&[0]);
                    Some(text)
                }
                Err(e) => {
                    problems.push(whole_file(path, format!("cannot read: {e}")));
                    None
                }
            }
        };

        // Schema: at most one file, so there is one truth about types.
        let mut schema_json = None;
        let schema = match schema_files.as_slice() {
            [] => None,
            [path] => {
                read(path, &mut problems).and_then(|text| {
                    match Schema::from_cedarschema_str(&text) {
                        Ok((schema, _warnings)) => {
                            schema_json = cedar_policy::SchemaFragment::from_cedarschema_str(&text)
                                .ok()
                                .and_then(|(fragment, _)| fragment.to_json_value().ok());
                            Some(schema)
                        }
                        Err(e) => {
                            problems.extend(diagnostic_problems(path, &text, 0, &e));
                            None
                        }
                    }
                })
            }
            [first, ..] => {
                problems.push(whole_file(
                    first,
                    format!(
                        "found {} schema files; keep exactly one *.cedarschema in the policy folder",
                        schema_files.len()
                    ),
                ));
                None
            }
        };

        let total_bytes: u64 = policy_files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let mut progress = Progress::new(progress, total_bytes);
        let mut policies = PolicySet::new();
        let mut info = HashMap::new();
        for path in &policy_files {
            let Some(text) = read(path, &mut problems) else {
                continue;
            };
            let parsed = match parse_file(path, &text, &mut progress, info.len()) {
                Ok(p) => p,
                Err(file_problems) => {
                    problems.extend(file_problems);
                    continue;
                }
            };
            let file_name = path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            let mut file_set = PolicySet::new();
            // Where each policy's text starts in the file: its source positions count from there.
            let mut offsets = HashMap::new();
            for (n, (offset, policy)) in parsed.into_iter().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{file_name}#{n}"), str::to_string);
                let reason = policy
                    .annotation("reason")
                    .or_else(|| policy.annotation("description"))
                    .map(Arc::from);
                let renamed = policy.new_id(PolicyId::new(&id));
                if info.contains_key(&id) {
                    problems.push(whole_file(path, format!("policy id `{id}` is used twice")));
                    continue;
                }
                offsets.insert(id.clone(), offset);
                info.insert(
                    id.clone(),
                    PolicyInfo {
                        effect: policy.effect(),
                        reason,
                        file: path.clone(),
                    },
                );
                if let Err(e) = file_set.add(renamed.clone()) {
                    problems.push(whole_file(path, e.to_string()));
                }
                if let Err(e) = policies.add(renamed) {
                    problems.push(whole_file(path, e.to_string()));
                }
            }
            // Validated per file so that error positions are offsets into this file's text.
            if let Some(schema) = &schema {
                progress.report(LoadProgress::Validating {
                    file: path,
                    policies: file_set.policies().count(),
                });
                let result =
                    Validator::new(schema.clone()).validate(&file_set, ValidationMode::Strict);
                for error in result.validation_errors() {
                    let base = offsets
                        .get(error.policy_id().to_string().as_str())
                        .copied()
                        .unwrap_or(0);
                    problems.extend(diagnostic_problems(path, &text, base, error));
                }
            }
        }
        if policy_files.is_empty() {
            problems.push(whole_file(
                dir,
                "no *.cedar files: with no policies everything is denied; add at least one".into(),
            ));
        }

        let entities = if entities_file.is_file() {
            read(&entities_file, &mut problems).and_then(|text| {
                match Entities::from_json_str(&text, schema.as_ref()) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        problems.extend(diagnostic_problems(&entities_file, &text, 0, &e));
                        None
                    }
                }
            })
        } else {
            match &schema {
                Some(s) => Entities::empty()
                    .add_entities(std::iter::empty(), Some(s))
                    .ok(),
                None => Some(Entities::empty()),
            }
        };
        // Action entities from the schema, so `action in Action::"group"` works.
        let entities = match (entities, &schema) {
            (Some(e), Some(s)) => match s.action_entities() {
                Ok(actions) => {
                    let existing: HashSet<EntityUid> = e.iter().map(Entity::uid).collect();
                    let missing: Vec<Entity> = actions
                        .iter()
                        .filter(|a| !existing.contains(&a.uid()))
                        .cloned()
                        .collect();
                    e.add_entities(missing, None).ok()
                }
                Err(err) => {
                    problems.push(whole_file(dir, err.to_string()));
                    None
                }
            },
            (e, _) => e,
        };

        if !problems.is_empty() {
            return Err(PolicyLoadError(problems));
        }
        let entities = entities.unwrap_or_else(Entities::empty);
        let entity_cache_bound = ENTITY_CACHE_ENTITIES.max(8 * (entities.len() as u64 + 8));
        let mut all_files = schema_files;
        all_files.extend(policy_files);
        if entities_file.is_file() {
            all_files.push(entities_file);
        }
        progress.report(LoadProgress::Indexing {
            policies: info.len(),
        });
        let index = PolicyIndex::new(&policies, &entities);
        // Parsed from their text, exactly as `uid` would, so a cached name is the same value.
        let entity_types = schema
            .iter()
            .flat_map(|s| {
                s.entity_types()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
            })
            .chain(entities.iter().map(|e| e.uid().type_name().to_string()))
            .filter_map(|name| {
                let parsed = cedar_policy::EntityTypeName::from_str(&name).ok()?;
                Some((name, parsed))
            })
            .collect();
        let decisions = DecisionCache::new(&policies, decision_cache::DEFAULT_CAPACITY);
        Ok(PolicySnapshot {
            index,
            entity_types,
            policies,
            schema,
            schema_json,
            entities,
            info,
            version: hex_prefix(hasher.finish().as_ref()).into(),
            loaded_at: SystemTime::now(),
            policy_bytes: total_bytes,
            files: all_files,
            entity_cache: moka::sync::Cache::builder()
                .max_capacity(entity_cache_bound)
                .weigher(|_, set: &Entities| u32::try_from(set.len()).unwrap_or(u32::MAX))
                .build(),
            decisions,
        })
    }

    /// Evaluates `request` against this policy set: only against the policies whose scope can
    /// match it (see [`crate::policy_index`]), which is exactly evaluating the whole set.
    pub fn evaluate(&self, request: &CedarRequest) -> Result<Evaluation, EvaluationError> {
        let (cedar_request, entities) = self.cedar_inputs(request)?;
        let (Some(principal), Some(action)) = (cedar_request.principal(), cedar_request.action())
        else {
            // `cedar_inputs` always builds a concrete request; unreachable, but the whole set is
            // right for any request.
            return Ok(self.evaluation(
                Authorizer::new()
                    .is_authorized(&cedar_request, &self.policies, &entities)
                    .into(),
            ));
        };
        Ok(self.evaluation(self.index.authorize(
            &self.policies,
            &cedar_request,
            principal,
            action,
            &entities,
        )))
    }

    /// [`evaluate`](Self::evaluate), answered from the decision cache when the same request facts
    /// (those the policies read) were evaluated before; `true` with an answer from the cache.
    pub fn evaluate_cached(
        &self,
        request: &CedarRequest,
    ) -> (Result<Evaluation, EvaluationError>, bool) {
        let Some(key) = self.decisions.key(request) else {
            return (self.evaluate(request), false);
        };
        if let Some(answer) = self.decisions.get(&key) {
            return (answer, true);
        }
        let answer = self.evaluate(request);
        self.decisions.insert(key, answer.clone());
        (answer, false)
    }

    /// What the policies read of the context (the decision cache's key holds exactly that).
    pub fn context_reads(&self) -> &decision_cache::ContextReads {
        self.decisions.reads()
    }

    /// A copy of this snapshot's policies and data with a decision cache of `capacity` answers
    /// (0: none) instead of the default one.
    pub fn with_decision_cache(mut self, capacity: u64) -> PolicySnapshot {
        self.decisions = self.decisions.resized(capacity);
        self
    }

    /// Evaluates `request` against the whole policy set, without the index: the reference that
    /// [`evaluate`](Self::evaluate) must equal (tests and benchmarks compare the two).
    pub fn evaluate_unindexed(
        &self,
        request: &CedarRequest,
    ) -> Result<Evaluation, EvaluationError> {
        let (cedar_request, entities) = self.cedar_inputs(request)?;
        Ok(self.evaluation(
            Authorizer::new()
                .is_authorized(&cedar_request, &self.policies, &entities)
                .into(),
        ))
    }

    /// How many policies [`evaluate`](Self::evaluate) hands to Cedar for `request` (`None`: the
    /// whole set). For tests and benchmarks.
    pub fn indexed_policy_count(&self, request: &CedarRequest) -> Option<usize> {
        let (cedar_request, entities) = self.cedar_inputs(request).ok()?;
        self.index.selected(
            cedar_request.principal()?,
            cedar_request.action()?,
            &entities,
        )
    }

    fn evaluation(&self, authorization: Authorization) -> Evaluation {
        let errors: Vec<String> = authorization
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        let forbid_errored = authorization.errors.iter().any(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
            self.info
                .get(e.policy_id().to_string().as_str())
                .is_some_and(|i| i.effect == Effect::Forbid)
        });
        // Cedar reports determining policies as a set; sorted, records are deterministic.
        let mut determining: Vec<String> = authorization
            .determining
            .iter()
            .map(ToString::to_string)
            .collect();
        determining.sort_unstable();
        Evaluation {
            allowed: authorization.allowed,
            determining,
            errors,
            forbid_errored,
        }
    }

    /// The Cedar request and the entity set that [`evaluate`](Self::evaluate) authorizes: static
    /// entities merged with the request-derived ones. Public so that `cedargate check` explains a
    /// decision on exactly the inputs that produced it.
    pub fn cedar_inputs(
        &self,
        request: &CedarRequest,
    ) -> Result<(Request, Entities), EvaluationError> {
        let principal = self.uid(&request.principal)?;
        let action = self.uid(&request.action)?;
        let resource = self.uid(&request.resource)?;
        let context = context(&request.context)?;
        let cedar_request = Request::new(principal, action, resource, context, None)
            .map_err(|e| invalid("request")(&e))?;

        let entities = self.request_entities(request)?;
        Ok((cedar_request, entities))
    }

    /// The static entities merged with what the request brings: the provider's answers
    /// (`fetched`) and what the credential says (`entities`). Cached per distinct pair (their
    /// JSON is the key): the same caller on the same resource reuses the merged set instead of
    /// re-converting, re-validating and re-closing the hierarchy (~70k instructions per Check).
    /// The cache lives in this snapshot, so a reload starts it afresh.
    fn request_entities(&self, request: &CedarRequest) -> Result<Entities, EvaluationError> {
        self.merged(&request.entities, &request.fetched, &request.principal)
    }

    /// [`request_entities`](Self::request_entities) for the credential's entities and the
    /// provider's answers. With both, the static + credential set is merged (and cached) on its
    /// own first: a caller's Checks on ever new fetched resources then only add those, instead
    /// of re-converting and re-checking the caller's entities each time.
    fn merged(
        &self,
        credential: &[Value],
        fetched: &[Value],
        principal: &EntityRef,
    ) -> Result<Entities, EvaluationError> {
        if credential.is_empty() && fetched.is_empty() {
            return Ok(self.entities.clone());
        }
        let key =
            serde_json::to_string(&(credential, fetched)).map_err(|e| invalid("entities")(&e))?;
        if let Some(hit) = self.entity_cache.get(&key) {
            return Ok(hit);
        }
        let added = if credential.is_empty() || fetched.is_empty() {
            None
        } else {
            let base = self.merged(credential, &[], principal)?;
            self.add_new(base, fetched)?
        };
        let entities = match added {
            Some(entities) => entities,
            None => self.merge_entities(credential, fetched, principal)?,
        };
        self.entity_cache.insert(key, entities.clone());
        Ok(entities)
    }

    /// `base` plus the provider's entities, when none of them is already in `base` or twice in
    /// `fetched` (no source to merge with, so each is used as Cedar parsed it, checked against
    /// the schema); `None` when one is, for [`merge_entities`](Self::merge_entities) to merge.
    fn add_new(
        &self,
        base: Entities,
        fetched: &[Value],
    ) -> Result<Option<Entities>, EvaluationError> {
        let mut added: Vec<Entity> = Vec::with_capacity(fetched.len());
        for value in fetched {
            let entity = self.provider_entity(value)?;
            let uid = entity.uid();
            if base.get(&uid).is_some() || added.iter().any(|known| known.uid() == uid) {
                return Ok(None);
            }
            added.push(entity);
        }
        base.upsert_entities(added, None)
            .map(Some)
            .map_err(|e| invalid("entities")(&e))
    }

    /// One of the provider's entities: Cedar's full entity JSON (escapes and schema-directed
    /// forms included; the provider is the operator's own system), checked against the schema as
    /// it is parsed.
    fn provider_entity(&self, value: &Value) -> Result<Entity, EvaluationError> {
        Entity::from_json_value(value.clone(), self.schema.as_ref()).map_err(|e| {
            EvaluationError::EntitiesUnavailable {
                message: format!(
                    "provider entity {}: {}",
                    entity_label(value),
                    with_sources(&e)
                ),
            }
        })
    }

    /// One rule for every uid that more than one source describes: parents are the union of
    /// `entities.json`, the provider and the credential; attributes are `entities.json`'s,
    /// overlaid attribute by attribute by the provider's, overlaid by the credential's. Every
    /// merged entity is checked against the schema: a principal that doesn't conform is
    /// [`EvaluationError::PrincipalInvalid`], provider data that doesn't is
    /// [`EvaluationError::EntitiesUnavailable`]; neither is ever evaluated.
    fn merge_entities(
        &self,
        credential: &[Value],
        fetched: &[Value],
        principal: &EntityRef,
    ) -> Result<Entities, EvaluationError> {
        let schema = self.schema.as_ref();
        let mut merged: Vec<(EntityUid, Merged)> = Vec::new();
        let mut overlay = |entity: Entity, checked: bool| {
            let uid = entity.uid();
            let Some((_, slot)) = merged.iter_mut().find(|(known, _)| *known == uid) else {
                let slot = match self.entities.get(&uid) {
                    Some(known) => Merged::Whole(known.clone(), false).with(entity),
                    None => Merged::Whole(entity, checked),
                };
                merged.push((uid, slot));
                return;
            };
            *slot =
                std::mem::replace(slot, Merged::Parts(HashMap::new(), HashSet::new())).with(entity);
        };
        for value in fetched {
            overlay(self.provider_entity(value)?, schema.is_some());
        }
        for value in credential {
            overlay(entity(value)?, false);
        }
        let principal_uid = self.uid(principal)?;
        let mut built = Vec::with_capacity(merged.len());
        for (uid, slot) in merged {
            let entity = match slot {
                // A provider entity no other source describes was checked as it was parsed.
                Merged::Whole(entity, true) => {
                    built.push(entity);
                    continue;
                }
                Merged::Whole(entity, false) => entity,
                Merged::Parts(attrs, parents) => {
                    Entity::new(uid, attrs, parents).map_err(|e| invalid("entity")(&e))?
                }
            };
            if let Some(schema) = schema
                && let Err(e) = Entities::empty().add_entities([entity.clone()], Some(schema))
            {
                let message = format!("{}: {}", entity.uid(), with_sources(&e));
                return Err(if entity.uid() == principal_uid {
                    EvaluationError::PrincipalInvalid { message }
                } else {
                    EvaluationError::EntitiesUnavailable { message }
                });
            }
            built.push(entity);
        }
        self.entities
            .clone()
            .upsert_entities(built, None)
            .map_err(|e| invalid("entities")(&e))
    }

    /// The uid of `r`, with its type name from [`Self::entity_types`] when it is a known one.
    fn uid(&self, r: &EntityRef) -> Result<EntityUid, EvaluationError> {
        match self.entity_types.get(&r.entity_type) {
            Some(ty) => Ok(EntityUid::from_type_name_and_id(
                ty.clone(),
                cedar_policy::EntityId::new(&r.id),
            )),
            None => uid(r),
        }
    }

    /// The `@reason` of a policy.
    pub fn reason(&self, id: &str) -> Option<&Arc<str>> {
        self.info.get(id).and_then(|i| i.reason.as_ref())
    }
}

/// The context record from its Cedar-JSON form. Built through `RestrictedExpression`s rather
/// than `Context::from_json_value`, which measured ~5× slower on this path (80 µs vs 15 µs).
fn context(value: &Value) -> Result<Context, EvaluationError> {
    let Value::Object(map) = value else {
        return Err(EvaluationError::Invalid {
            what: "context",
            message: "not a record".into(),
        });
    };
    let pairs = map
        .iter()
        .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
        .collect::<Result<Vec<_>, EvaluationError>>()?;
    Context::from_pairs(pairs).map_err(|e| invalid("context")(&e))
}

/// One uid's entity while [`PolicySnapshot::merge_entities`] gathers its sources.
enum Merged {
    /// From one source, as parsed; `true` when that parse checked it against the schema.
    Whole(Entity, bool),
    /// From more than one source (a static entity counts as one): attributes overlaid in
    /// order, parents united; rebuilt and checked once all sources are in.
    Parts(HashMap<String, RestrictedExpression>, HashSet<EntityUid>),
}

impl Merged {
    /// `self` overlaid with `entity`: its attributes win, its parents are added.
    fn with(self, entity: Entity) -> Merged {
        let (mut attrs, mut parents) = match self {
            Merged::Whole(first, _) => {
                let (_, attrs, parents) = first.into_inner();
                (attrs, parents)
            }
            Merged::Parts(attrs, parents) => (attrs, parents),
        };
        let (_, more_attrs, more_parents) = entity.into_inner();
        attrs.extend(more_attrs);
        parents.extend(more_parents);
        Merged::Parts(attrs, parents)
    }
}

/// An entity in Cedar's explicit JSON form, converted without Cedar's JSON parser, whose
/// untagged-enum trials cost ~125k instructions per entity (measured with callgrind on
/// 2026-12-02; the schema is not the cost). Explicit means: exactly `uid`, `attrs` and `parents`;
/// uids and parents as `{"type", "id"}`; values as JSON strings, booleans, integers, arrays and
/// objects, or the escapes `{"__entity": {"type", "id"}}` and `{"__extn": {"fn", "arg"}}` with no
/// other key. `None` for anything else (tags, schema-directed shorthands, other escapes, a value
/// Cedar would refuse), which the caller must hand to `Entity::from_json_value` instead: for the
/// explicit form the two give the same entity, and everything else keeps Cedar's own answer and
/// error. Not checked against a schema: the caller does that for all entities at once.
pub fn explicit_entity(value: &Value) -> Option<Entity> {
    let map = value.as_object()?;
    let explicit = map.len() == 3
        && map.get("uid").is_some_and(plain_uid)
        && map
            .get("attrs")
            .and_then(Value::as_object)
            .is_some_and(|attrs| attrs.values().all(explicit_value))
        && map
            .get("parents")
            .and_then(Value::as_array)
            .is_some_and(|parents| parents.iter().all(plain_uid));
    if !explicit {
        return None;
    }
    entity(value).ok()
}

/// `{"type": "…", "id": "…"}` and nothing else.
fn plain_uid(uid: &Value) -> bool {
    uid.as_object().is_some_and(|m| {
        m.len() == 2
            && m.get("type").is_some_and(Value::is_string)
            && m.get("id").is_some_and(Value::is_string)
    })
}

/// A value of [`explicit_entity`]'s form.
fn explicit_value(value: &Value) -> bool {
    match value {
        Value::String(_) | Value::Bool(_) => true,
        Value::Number(n) => n.as_i64().is_some(),
        Value::Array(items) => items.iter().all(explicit_value),
        Value::Object(map) => match (map.get("__entity"), map.get("__extn")) {
            (Some(uid), None) => map.len() == 1 && plain_uid(uid),
            (None, Some(extn)) => {
                map.len() == 1
                    && extn.as_object().is_some_and(|e| {
                        e.len() == 2
                            && e.get("fn").is_some_and(Value::is_string)
                            && e.get("arg").is_some_and(Value::is_string)
                    })
            }
            (None, None) => {
                !map.keys().any(|k| k.starts_with("__")) && map.values().all(explicit_value)
            }
            (Some(_), Some(_)) => false,
        },
        Value::Null => false,
    }
}

/// A request-derived entity from the JSON that `mapping` builds:
/// `{"uid": {"type", "id"}, "attrs": {…}, "parents": [{"type", "id"}, …]}`.
fn entity(value: &Value) -> Result<Entity, EvaluationError> {
    let bad = |message: &str| EvaluationError::Invalid {
        what: "entity",
        message: message.to_string(),
    };
    let reference = |v: &Value| -> Result<EntityUid, EvaluationError> {
        let r: EntityRef = serde_json::from_value(v.clone()).map_err(|e| bad(&e.to_string()))?;
        uid(&r)
    };
    let uid = reference(value.get("uid").ok_or_else(|| bad("no uid"))?)?;
    let attrs = match value.get("attrs") {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
            .collect::<Result<HashMap<_, _>, EvaluationError>>()?,
        _ => HashMap::new(),
    };
    let parents = match value.get("parents") {
        Some(Value::Array(items)) => items
            .iter()
            .map(reference)
            .collect::<Result<HashSet<_>, _>>()?,
        _ => HashSet::new(),
    };
    Entity::new(uid, attrs, parents).map_err(|e| invalid("entity")(&e))
}

/// `ip("…")` as a restricted expression, cached: `RestrictedExpression::new_ip` parses the
/// extension's name with Cedar's parser on every call (~47k instructions, a sixth of a whole
/// evaluation in the profile), while the set of client addresses behind one Envoy is small.
fn ip_expression(address: &str) -> RestrictedExpression {
    static CACHE: std::sync::LazyLock<moka::sync::Cache<String, RestrictedExpression>> =
        std::sync::LazyLock::new(|| moka::sync::Cache::new(IP_EXPRESSION_CACHE));
    if let Some(hit) = CACHE.get(address) {
        return hit;
    }
    let expression = RestrictedExpression::new_ip(address);
    CACHE.insert(address.to_string(), expression.clone());
    expression
}

/// Client addresses whose `ip(…)` expressions are kept (a few hundred bytes each).
const IP_EXPRESSION_CACHE: u64 = 4_096;

/// Cedar JSON value → restricted expression: strings, longs, booleans, sets, records, and the
/// `{"__extn": {"fn": "ip"|"decimal", "arg": …}}` and `{"__entity": {…}}` escapes.
fn restricted(value: &Value) -> Result<RestrictedExpression, EvaluationError> {
    let bad = |message: String| EvaluationError::Invalid {
        what: "value",
        message,
    };
    Ok(match value {
        Value::String(s) => RestrictedExpression::new_string(s.clone()),
        Value::Bool(b) => RestrictedExpression::new_bool(*b),
        Value::Number(n) => RestrictedExpression::new_long(
            n.as_i64()
                .ok_or_else(|| bad(format!("{n} is not a 64-bit integer")))?,
        ),
        Value::Array(items) => RestrictedExpression::new_set(
            items
                .iter()
                .map(restricted)
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Value::Object(map) => {
            if let Some(extn) = map.get("__extn") {
                let arg = extn.get("arg").and_then(Value::as_str).unwrap_or_default();
                match extn.get("fn").and_then(Value::as_str) {
                    Some("ip") => ip_expression(arg),
                    Some("decimal") => RestrictedExpression::new_decimal(arg),
                    other => return Err(bad(format!("unsupported extension {other:?}"))),
                }
            } else if let Some(e) = map.get("__entity") {
                let r: EntityRef =
                    serde_json::from_value(e.clone()).map_err(|e| bad(e.to_string()))?;
                RestrictedExpression::new_entity_uid(uid(&r)?)
            } else {
                RestrictedExpression::new_record(
                    map.iter()
                        .map(|(k, v)| Ok((k.clone(), restricted(v)?)))
                        .collect::<Result<Vec<_>, EvaluationError>>()?,
                )
                .map_err(|e| bad(e.to_string()))?
            }
        }
        Value::Null => return Err(bad("null has no Cedar value".into())),
    })
}

fn uid(r: &EntityRef) -> Result<EntityUid, EvaluationError> {
    let ty = cedar_policy::EntityTypeName::from_str(&r.entity_type)
        .map_err(|e| invalid("entity type")(&e))?;
    Ok(EntityUid::from_type_name_and_id(
        ty,
        cedar_policy::EntityId::new(&r.id),
    ))
}

/// How far a policy load has come, for a progress line in the log. Reported only when the
/// folder's policy text is at least [`PROGRESS_BYTES`]: a 60 MB file takes a minute to load,
/// and a minute of silence looks like a hang.
#[derive(Debug, Clone, Copy)]
pub enum LoadProgress<'a> {
    /// Parsing `file`: `parsed` of all `total` bytes of policy text so far, `policies` parsed.
    Parsing {
        /// The file being parsed.
        file: &'a Path,
        /// Bytes of policy text parsed, all files so far.
        parsed: u64,
        /// Bytes of policy text in the folder.
        total: u64,
        /// Policies parsed so far.
        policies: usize,
    },
    /// Checking `file`'s `policies` against the schema (strict).
    Validating {
        /// The file being checked.
        file: &'a Path,
        /// Its policies.
        policies: usize,
    },
    /// Building the policy index over all `policies`.
    Indexing {
        /// Policies in the set.
        policies: usize,
    },
    /// Checking all `policies` against the requests the config builds
    /// ([`crate::shapes::check`]).
    Shapes {
        /// Policies in the set.
        policies: usize,
    },
}

impl fmt::Display for LoadProgress<'_> {
    /// One line for the log: `parsing policies.cedar: 16.0 of 61.1 MB, 78,400 policies`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mb = |bytes: u64| bytes as f64 / 1e6;
        match self {
            LoadProgress::Parsing {
                file,
                parsed,
                total,
                policies,
            } => write!(
                f,
                "parsing {}: {:.1} of {:.1} MB of policy text, {policies} policies",
                file.display(),
                mb(*parsed),
                mb(*total)
            ),
            LoadProgress::Validating { file, policies } => write!(
                f,
                "validating {}: {policies} policies against the schema",
                file.display()
            ),
            LoadProgress::Indexing { policies } => write!(f, "indexing {policies} policies"),
            LoadProgress::Shapes { policies } => write!(
                f,
                "checking {policies} policies against the requests the routes build"
            ),
        }
    }
}

/// Policy text from which a load reports its progress, and the step between two parsing
/// reports.
pub const PROGRESS_BYTES: u64 = 8 * 1024 * 1024;

/// Passes [`LoadProgress`] on when the load is large enough to need it.
struct Progress<'p> {
    sink: &'p mut dyn FnMut(LoadProgress<'_>),
    total: u64,
    /// Bytes parsed in files already done.
    done: u64,
    /// The `done + offset` at which the next parsing report is due.
    next: u64,
}

impl<'p> Progress<'p> {
    fn new(sink: &'p mut dyn FnMut(LoadProgress<'_>), total: u64) -> Progress<'p> {
        Progress {
            sink,
            total,
            done: 0,
            next: PROGRESS_BYTES,
        }
    }

    fn report(&mut self, step: LoadProgress<'_>) {
        if self.total >= PROGRESS_BYTES {
            (self.sink)(step);
        }
    }

    /// `offset` bytes into `file` are parsed.
    fn parsed(&mut self, file: &Path, offset: usize, policies: usize) {
        let parsed = self.done + offset as u64;
        if parsed >= self.next {
            self.next = parsed + PROGRESS_BYTES;
            let total = self.total;
            self.report(LoadProgress::Parsing {
                file,
                parsed,
                total,
                policies,
            });
        }
    }

    /// `file`, of `len` bytes, is parsed.
    fn file_done(&mut self, len: usize) {
        self.done += len as u64;
    }
}

/// The policies of one file in file order, parsed statement by statement
/// ([`policy_text::statements`]): Cedar holds the syntax tree of all it is given at once, ~70×
/// the text's size, so a whole 60 MB file would peak at 4.5 GB. Errors carry file positions.
/// When the text doesn't cut cleanly into statements (an unterminated one), the file is parsed
/// whole, which says precisely what is wrong. Each policy comes with the offset its source
/// positions count from.
fn parse_file(
    path: &Path,
    text: &str,
    progress: &mut Progress<'_>,
    parsed_before: usize,
) -> Result<Vec<(usize, Policy)>, Vec<PolicyProblem>> {
    let templates = || {
        vec![whole_file(
            path,
            "policy templates are not supported".into(),
        )]
    };
    let Some(statements) = policy_text::statements(text) else {
        let set = PolicySet::from_str(text).map_err(|e| diagnostic_problems(path, text, 0, &e))?;
        if set.templates().next().is_some() {
            return Err(templates());
        }
        // `PolicySet::from_str` numbers policies `policy0`, `policy1`… in file order.
        let mut numbered: Vec<(usize, Policy)> = set.policies().map(|p| (0, p.clone())).collect();
        numbered.sort_by_key(|(_, p)| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        progress.file_done(text.len());
        return Ok(numbered);
    };
    let mut policies = Vec::with_capacity(statements.len());
    let mut problems = Vec::new();
    let mut template = false;
    for statement in statements {
        match Policy::parse(None, statement.text) {
            Ok(policy) => policies.push((statement.offset, policy)),
            Err(_) if Template::parse(None, statement.text).is_ok() => template = true,
            Err(e) => problems.extend(diagnostic_problems(path, text, statement.offset, &e)),
        }
        progress.parsed(path, statement.offset, parsed_before + policies.len());
    }
    progress.file_done(text.len());
    if !problems.is_empty() {
        Err(problems)
    } else if template {
        Err(templates())
    } else {
        Ok(policies)
    }
}

fn whole_file(path: &Path, message: String) -> PolicyProblem {
    PolicyProblem {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message,
    }
}

/// Problems from a miette diagnostic, positioned by its first label: offsets into `text` once
/// `base` is added (the diagnostic's source starts `base` bytes into `text`).
fn diagnostic_problems(
    path: &Path,
    text: &str,
    base: usize,
    diag: &dyn Diagnostic,
) -> Vec<PolicyProblem> {
    let related: Vec<&dyn Diagnostic> = diag.related().map(|r| r.collect()).unwrap_or_default();
    if !related.is_empty() {
        return related
            .into_iter()
            .flat_map(|d| diagnostic_problems(path, text, base, d))
            .collect();
    }
    let offset = diag
        .labels()
        .and_then(|mut l| l.next())
        .map(|label| base + label.offset());
    let (mut line, mut column) = offset.map_or((0, 0), |o| line_column(text, o));
    let mut message = with_sources(diag);
    // Cedar reports a missing `;` (or `,`, `}`) where it meets the next token, which is usually
    // the start of the next line: point at the end of the last token before it instead, where
    // the missing text belongs, and say where Cedar stopped.
    if let Some(offset) = offset
        && message.contains("unexpected token")
        && let Some((end_line, end_column)) = end_of_previous_code(text, offset)
        && end_line < line
    {
        message.push_str(&format!(
            " (met at line {line} column {column}; the text missing is expected at the end of \
             line {end_line}, such as a `;`)"
        ));
        (line, column) = (end_line, end_column);
    }
    if let Some(help) = diag.help() {
        message.push_str(&format!(" (help: {help})"));
    }
    vec![PolicyProblem {
        file: path.to_path_buf(),
        line,
        column,
        message,
    }]
}

/// 1-based line and column just after the last code (not blank, not a `//` comment) before
/// `offset`.
fn end_of_previous_code(text: &str, offset: usize) -> Option<(usize, usize)> {
    let before = text.get(..offset.min(text.len()))?;
    let lines: Vec<&str> = before.split('\n').collect();
    // The line `offset` is on: only what precedes it counts.
    for (index, raw) in lines.iter().enumerate().rev() {
        let code = raw.find("//").map_or(*raw, |c| raw.get(..c).unwrap_or(raw));
        let code = code.trim_end();
        if !code.is_empty() {
            return Some((index + 1, code.chars().count() + 1));
        }
    }
    None
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `explicit_entity` gives exactly the entity Cedar's parser gives (with and without the
    /// schema), and declines every form it doesn't handle, so the caller's fallback keeps
    /// Cedar's own answer or error for those.
    #[test]
    fn explicit_entities_equal_cedars_parse() {
        let schema = Schema::from_str(
            "entity Folder; entity User { tenant?: String };
             entity Doc in [Folder] { owner: User, n: Long, tags: Set<String>,
               meta: { level: Long, ok: Bool }, ip?: ipaddr, price?: decimal };",
        )
        .unwrap();
        let same = [
            serde_json::json!({"uid": {"type": "Doc", "id": "1"}, "parents": [{"type": "Folder", "id": "f"}],
                "attrs": {"owner": {"__entity": {"type": "User", "id": "bob"}}, "n": -3,
                          "tags": ["a", "b", "a"], "meta": {"level": 2, "ok": true},
                          "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.0/8"}},
                          "price": {"__extn": {"fn": "decimal", "arg": "1.25"}}}}),
            serde_json::json!({"uid": {"type": "User", "id": ""}, "attrs": {}, "parents": []}),
        ];
        for value in same {
            let fast = explicit_entity(&value).expect("explicit");
            let cedar = Entity::from_json_value(value.clone(), None).unwrap();
            assert_eq!(fast, cedar, "{value}");
            let checked = Entity::from_json_value(value.clone(), Some(&schema)).unwrap();
            assert_eq!(fast, checked, "{value}");
        }
        let declined = [
            // Cedar's other forms: escaped uid, a parent as an escape, tags, no `parents`.
            serde_json::json!({"uid": {"__entity": {"type": "User", "id": "a"}}, "attrs": {}, "parents": []}),
            serde_json::json!({"uid": {"type": "Doc", "id": "1"}, "attrs": {}, "parents": [{"__entity": {"type": "Folder", "id": "f"}}]}),
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [], "tags": {}}),
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "attrs": {}}),
            // What Cedar refuses, or would read otherwise: a fraction, null, a bad extension
            // argument, an escape with company, a reserved-looking key, a bad type name.
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "parents": [], "attrs": {"n": 1.5}}),
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "parents": [], "attrs": {"n": null}}),
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "parents": [], "attrs": {"d": {"__extn": {"fn": "decimal", "arg": "x"}}}}),
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "parents": [], "attrs": {"o": {"__entity": {"type": "User", "id": "b"}, "x": 1}}}),
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "parents": [], "attrs": {"o": {"__expr": "1"}}}),
            serde_json::json!({"uid": {"type": "if", "id": "a"}, "parents": [], "attrs": {}}),
        ];
        for value in declined {
            assert!(explicit_entity(&value).is_none(), "{value}");
        }
        // A schema-directed shorthand (an entity attribute without its escape) is a record, as
        // in Cedar's parse without a schema; the schema check the caller does then refuses it
        // and Cedar's parser, given the schema, reads it as the entity.
        let shorthand = serde_json::json!({"uid": {"type": "Doc", "id": "1"},
            "parents": [], "attrs": {"owner": {"type": "User", "id": "b"}, "n": 1, "tags": [],
            "meta": {"level": 1, "ok": false}}});
        let fast = explicit_entity(&shorthand).unwrap();
        assert_eq!(
            fast,
            Entity::from_json_value(shorthand.clone(), None).unwrap()
        );
        assert!(Entities::from_entities([fast], Some(&schema)).is_err());
        assert!(Entity::from_json_value(shorthand, Some(&schema)).is_ok());
    }

    #[test]
    fn a_missing_semicolon_is_placed_where_it_belongs() {
        let text = "entity A;\nentity B in [A]  // B\n\n// note\nentity C;";
        let offset = text.find("entity C").unwrap();
        assert_eq!(line_column(text, offset), (5, 1));
        assert_eq!(end_of_previous_code(text, offset), Some((2, 16)));
        assert_eq!(end_of_previous_code(text, 0), None);
    }

    /// The policies of `text` as a whole-file parse gives them, in file order: the reference.
    fn whole_file_policies(text: &str) -> Vec<Policy> {
        let set = PolicySet::from_str(text).unwrap();
        let mut policies: Vec<Policy> = set.policies().cloned().collect();
        policies.sort_by_key(|p| p.id().to_string()[6..].parse::<usize>().unwrap());
        policies
    }

    #[test]
    fn statement_wise_parsing_gives_the_policies_a_whole_file_parse_gives() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
        let mut texts: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cedar"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(texts.len() >= 4, "the shipped policies are found");
        texts.push(
            "// lead\n@id(\"a;b\") @reason(\"x // not a comment\")\npermit(principal, action, resource)\n  when { context.q like \"*;\\\\*\" } // c; d\n  unless { false };\n\n\
             forbid(principal in Group::\"g;\", action in [Action::\"A\"], resource)\n;// tail"
                .into(),
        );
        for text in &texts {
            let reference = whole_file_policies(text);
            let mut progress = |_: LoadProgress<'_>| {};
            let parsed = parse_file(
                Path::new("t.cedar"),
                text,
                &mut Progress::new(&mut progress, 0),
                0,
            )
            .unwrap();
            assert_eq!(parsed.len(), reference.len(), "{text}");
            for ((offset, ours), theirs) in parsed.iter().zip(&reference) {
                assert_eq!(ours.to_json().unwrap(), theirs.to_json().unwrap());
                assert_eq!(ours.to_string(), theirs.to_string());
                assert!(text[*offset..].starts_with(&ours.to_string()));
            }
        }
    }

    #[test]
    fn errors_are_reported_as_the_whole_file_parse_reports_them() {
        let broken = [
            "permit(principal, action, resource);\n\npermit(principal, action, resource)\n\npermit(principal, action, resource);\n",
            "permit(principal, action, resource);\n// x\npermit(principal, actions, resource);\n",
            "@id(\"a\")\npermit(principal, action, resource) when { context.a == };\n",
            "permit(principal, action, resource);\npermit(principal, action, resource) when { 1 + };",
        ];
        let path = Path::new("t.cedar");
        for text in broken {
            let mut progress = |_: LoadProgress<'_>| {};
            let ours = parse_file(path, text, &mut Progress::new(&mut progress, 0), 0).unwrap_err();
            let theirs =
                diagnostic_problems(path, text, 0, &PolicySet::from_str(text).unwrap_err());
            let place = |p: &Vec<PolicyProblem>| {
                p.iter()
                    .map(|p| (p.line, p.column, p.message.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(place(&ours), place(&theirs), "{text}");
        }
        let template = "permit(principal == ?principal, action, resource);";
        let mut progress = |_: LoadProgress<'_>| {};
        let problems =
            parse_file(path, template, &mut Progress::new(&mut progress, 0), 0).unwrap_err();
        assert!(problems[0].message.contains("templates are not supported"));
    }

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncde\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 4), (2, 2));
        assert_eq!(line_column(text, 7), (3, 1));
        assert_eq!(line_column(text, 999), (3, 2));
    }
}
