//! The policy test file format (a public contract, documented in `docs/policy-authoring.md`):
//! Envoy-shaped requests, who is calling, and what cedargate must answer.
//!
//! ```yaml
//! version: 1
//! identities:
//!   alice: { issuer: demo-idp, claims: { sub: alice, groups: [staff], tenant: acme } }
//! defaults:
//!   request: { host: api.cedargate.test }
//! cases:
//!   - name: staff read an order
//!     request: { method: GET, path: /orders/42, service: orders }
//!     identity: alice
//!     expect: { decision: allow, policies: [staff-read-orders] }
//! ```
//!
//! Parsing is two-phase like the config: YAML into `Raw*` structs (unknown fields are errors),
//! then every case is checked against the loaded config and policy set (issuer names, claim
//! types, expected policy ids and actions) and turned into an [`HttpRequest`] plus a [`Caller`].
//! Every problem is collected as a [`Diagnostic`] with file:line:column; nothing here panics on
//! bad input. A case decides through [`Case::decide`], which is [`decision::decide`] itself.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use crate::{Diagnostic, one_line};
use cedargate_core::api_keys::ApiKeyError;
use cedargate_core::config::{Config, IssuerConfig, action_type};
use cedargate_core::decision::{self, Decision};
use cedargate_core::identity::{self, Identity, IdentityError};
use cedargate_core::mapping::{self, EntityRef};
use cedargate_core::policy::{ENTITIES_FILE, EvaluationError, PolicySnapshot};
use cedargate_core::request::HttpRequest;
use cedargate_core::token::{self, TokenError, VerifiedToken};

/// The test file format version this build reads.
pub const FORMAT_VERSION: u64 = 1;
/// Where `cedargate test` looks for test files, relative to the policy folder.
pub const TESTS_DIR: &str = "tests";
/// Lifetime of a stated token when its claims give no `exp`: long enough that no test run
/// crosses it, short enough to look like a real access token in the context.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Host when a case names none: Envoy always sends one, and policies may read it.
const DEFAULT_HOST: &str = "localhost";
/// Scheme when a case names none: cedargate sits behind a TLS-terminating Envoy.
const DEFAULT_SCHEME: &str = "https";
/// Protocol when a case names none.
const DEFAULT_PROTOCOL: &str = "HTTP/1.1";
/// Method when a case names none.
const DEFAULT_METHOD: &str = "GET";
/// The reserved identity name for "no credential".
const ANONYMOUS: &str = "anonymous";

/// One parsed test file.
#[derive(Debug)]
pub struct TestFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Cases that parsed, in file order.
    pub cases: Vec<Case>,
    /// Number of cases that did not parse (each has a diagnostic).
    pub broken: usize,
}

/// A test case ready to decide.
#[derive(Debug)]
pub struct Case {
    /// Its name (unique in the file).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Its line in the file.
    pub line: usize,
    /// The request as the gRPC edge would have built it from Envoy's CheckRequest.
    pub request: HttpRequest,
    /// Who is calling.
    pub caller: Caller,
    /// The decision time (token facts and `context.time` depend on it).
    pub now: SystemTime,
    /// What must come out; `None` only for `cedargate check` requests.
    pub expect: Option<Expectation>,
    /// The entity provider's answer for each uid it may be asked about (`entities:` in the file
    /// and the case), in Cedar's entity JSON as written.
    pub provider_entities: Vec<(EntityRef, Value)>,
}

/// The caller of a case: what identity resolution would have produced.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No bearer token: anonymous, or the mTLS peer in `request.source.principal` (resolved by
    /// [`identity::without_token`], trust-domain check included).
    NoToken,
    /// A token that verified, with these claims.
    Token(Arc<VerifiedToken>),
    /// A credential that was presented and rejected.
    Rejected(IdentityError),
}

impl Case {
    /// The identity outcome `serve` would have reached for this caller.
    pub fn identity(&self, config: &Config) -> Result<Identity, IdentityError> {
        match &self.caller {
            Caller::NoToken => identity::without_token(config, &self.request),
            Caller::Token(token) => Ok(Identity::Token {
                token: token.clone(),
                cached: false,
            }),
            Caller::Rejected(e) => Err(e.clone()),
        }
    }

    /// The verified token of the caller, if it has one.
    pub fn token(&self) -> Option<&VerifiedToken> {
        match &self.caller {
            Caller::Token(token) => Some(token),
            Caller::NoToken | Caller::Rejected(_) => None,
        }
    }

    /// Maps the case as `serve` maps a Check, and hands the request the entity provider's
    /// answers for the uids `serve` would ask it about (the principal's and the resource's, when
    /// their type is in `entity_provider.types`), as stated by the case.
    /// The error is `decision::prepare`'s own: a decision made before Cedar.
    pub fn prepare(
        &self,
        config: &Config,
        policies: &PolicySnapshot,
    ) -> Result<decision::Prepared, Box<Decision>> {
        let mut prepared = decision::prepare(
            config,
            policies,
            &self.request,
            &self.identity(config),
            self.now,
        )?;
        if let Some(provider) = &config.entity_provider {
            let asked = prepared.cedar().provider_uids(&provider.types);
            let answers: Vec<Value> = self
                .provider_entities
                .iter()
                .filter(|(uid, _)| asked.contains(uid))
                .map(|(_, entity)| entity.clone())
                .collect();
            if !answers.is_empty() {
                prepared.set_fetched(answers);
            }
        }
        Ok(prepared)
    }

    /// Decides the case exactly as `serve` decides a Check: [`Case::prepare`], then Cedar.
    pub fn decide(&self, config: &Config, policies: &PolicySnapshot) -> Decision {
        match self.prepare(config, policies) {
            Ok(prepared) => prepared.decide(policies),
            Err(decided) => *decided,
        }
    }

    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// The expected outcome class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaseOutcome {
    /// Allowed (200).
    Allow,
    /// Denied, whatever the status (401, 403 or 503).
    Deny,
    /// Denied with 401: no, or a bad, credential.
    Unauthenticated,
}

impl CaseOutcome {
    fn parse(word: &str) -> Option<CaseOutcome> {
        match word {
            "allow" => Some(CaseOutcome::Allow),
            "deny" => Some(CaseOutcome::Deny),
            "unauthenticated" => Some(CaseOutcome::Unauthenticated),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            CaseOutcome::Allow => "allow",
            CaseOutcome::Deny => "deny",
            CaseOutcome::Unauthenticated => "unauthenticated",
        }
    }
}

/// What a case must produce. Every field that is set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// allow / deny / unauthenticated.
    pub outcome: Option<CaseOutcome>,
    /// Exact HTTP status.
    pub status: Option<u16>,
    /// Exact reason code (`allow`, `no_permit`, `forbid`, `token_expired`, `no_route`, …).
    pub reason: Option<String>,
    /// Exactly these deciding policy ids (any order); `[]` means none determined it.
    pub policies: Option<Vec<String>>,
    /// The Cedar principal, as Cedar prints it (`User::"alice"`).
    pub principal: Option<String>,
    /// The Cedar action id (`GET /orders/{id}`).
    pub action: Option<String>,
    /// The Cedar resource, as Cedar prints it (`Service::"orders"`).
    pub resource: Option<String>,
    /// The matched route's name.
    pub route: Option<String>,
}

impl Expectation {
    /// What differs between this expectation and `d`; empty when the case passes.
    pub fn mismatches(&self, d: &Decision) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(outcome) = self.outcome {
            let ok = match outcome {
                CaseOutcome::Allow => d.allowed,
                CaseOutcome::Deny => !d.allowed,
                CaseOutcome::Unauthenticated => !d.allowed && d.status == 401,
            };
            if !ok {
                out.push(format!("decision: expected {}", outcome.as_str()));
            }
        }
        if let Some(status) = self.status
            && status != d.status
        {
            out.push(format!("status: expected {status}, got {}", d.status));
        }
        if let Some(reason) = &self.reason
            && reason != d.reason
        {
            out.push(format!("reason: expected {reason}, got {}", d.reason));
        }
        if let Some(policies) = &self.policies {
            let mut want = policies.clone();
            want.sort();
            let mut got: Vec<String> = d.policies.iter().map(|p| p.id.clone()).collect();
            got.sort();
            if want != got {
                out.push(format!(
                    "policies: expected [{}], got [{}]",
                    want.join(", "),
                    got.join(", ")
                ));
            }
        }
        let cedar = d.cedar.as_ref();
        let pairs = [
            (
                "principal",
                &self.principal,
                cedar.map(|c| c.principal.to_string()),
            ),
            ("action", &self.action, cedar.map(|c| c.action.id.clone())),
            (
                "resource",
                &self.resource,
                cedar.map(|c| c.resource.to_string()),
            ),
            ("route", &self.route, d.route.clone()),
        ];
        for (what, want, got) in pairs {
            if let Some(want) = want
                && Some(want) != got.as_ref()
            {
                out.push(format!(
                    "{what}: expected {want}, got {}",
                    got.as_deref().unwrap_or("(none)")
                ));
            }
        }
        out
    }

    /// A short description, e.g. `deny, status 403, policies [a, b]`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(o) = self.outcome {
            parts.push(o.as_str().to_string());
        }
        if let Some(s) = self.status {
            parts.push(format!("status {s}"));
        }
        if let Some(r) = &self.reason {
            parts.push(format!("reason {r}"));
        }
        if let Some(p) = &self.policies {
            parts.push(format!("policies [{}]", p.join(", ")));
        }
        for (what, v) in [
            ("principal", &self.principal),
            ("action", &self.action),
            ("resource", &self.resource),
            ("route", &self.route),
        ] {
            if let Some(v) = v {
                parts.push(format!("{what} {v}"));
            }
        }
        parts.join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Phase one: the file as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: Option<Spanned<u64>>,
    #[serde(default)]
    identities: BTreeMap<String, Spanned<Value>>,
    #[serde(default)]
    defaults: RawDefaults,
    /// What the entity provider answers, for every case in the file.
    #[serde(default)]
    entities: Vec<Spanned<Value>>,
    cases: Spanned<Vec<Spanned<RawCase>>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    request: Option<RawRequest>,
    identity: Option<Spanned<Value>>,
    time: Option<Spanned<String>>,
}

/// One case; also the whole document for `cedargate check`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Option<Spanned<String>>,
    request: Option<Spanned<RawRequest>>,
    identity: Option<Spanned<Value>>,
    time: Option<Spanned<String>>,
    /// What the entity provider answers for this case, over the file's `entities`.
    #[serde(default)]
    entities: Vec<Spanned<Value>>,
    expect: Option<Spanned<Value>>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Option<String>,
    path: Option<String>,
    host: Option<String>,
    scheme: Option<String>,
    protocol: Option<String>,
    service: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    context_extensions: BTreeMap<String, String>,
    #[serde(default)]
    source: RawSource,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawSource {
    ip: Option<String>,
    principal: Option<String>,
}

impl RawRequest {
    /// `self` over `defaults`: scalar fields replace, maps merge (the case's keys win).
    fn over(self, defaults: &RawRequest) -> RawRequest {
        let mut headers = defaults.headers.clone();
        headers.extend(self.headers);
        let mut context_extensions = defaults.context_extensions.clone();
        context_extensions.extend(self.context_extensions);
        RawRequest {
            method: self.method.or_else(|| defaults.method.clone()),
            path: self.path.or_else(|| defaults.path.clone()),
            host: self.host.or_else(|| defaults.host.clone()),
            scheme: self.scheme.or_else(|| defaults.scheme.clone()),
            protocol: self.protocol.or_else(|| defaults.protocol.clone()),
            service: self.service.or_else(|| defaults.service.clone()),
            headers,
            context_extensions,
            source: RawSource {
                ip: self.source.ip.or_else(|| defaults.source.ip.clone()),
                principal: self
                    .source
                    .principal
                    .or_else(|| defaults.source.principal.clone()),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Phase two: checked against the config and the policy set.

/// What the parser checks a file against.
pub struct Context<'a> {
    /// The validated config (issuers, mTLS, routes).
    pub config: &'a Config,
    /// The loaded policy set (ids, schema actions).
    pub policies: &'a PolicySnapshot,
    /// Decision time for cases that set none.
    pub now: SystemTime,
}

/// Whether `expect` is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A test file: `cases:`, each with `expect`.
    TestFile,
    /// A `cedargate check` request: one case at the top level, `expect` optional.
    CheckRequest,
}

/// Where a value sits in the file.
#[derive(Debug, Clone, Copy)]
struct Pos {
    line: usize,
    column: usize,
}

impl<T> From<&Spanned<T>> for Pos {
    fn from(s: &Spanned<T>) -> Pos {
        Pos {
            line: usize::try_from(s.referenced.line()).unwrap_or(0),
            column: usize::try_from(s.referenced.column()).unwrap_or(0),
        }
    }
}

struct CaseProblems<'a> {
    file: &'a Path,
    list: Vec<Diagnostic>,
}

impl CaseProblems<'_> {
    fn at(&mut self, pos: Pos, message: impl Into<String>) {
        self.list
            .push(Diagnostic::error(self.file, pos.line, pos.column, message));
    }

    fn errors(&self) -> usize {
        self.list.iter().filter(|d| is_error(d)).count()
    }

    fn warn(&mut self, pos: Pos, message: impl Into<String>) {
        self.list.push(Diagnostic::warning(
            self.file, pos.line, pos.column, message,
        ));
    }
}

/// Reads and parses a test file. Diagnostics include every problem found; cases that parsed
/// are returned even when others did not.
pub fn read_test_file(path: &Path, cx: &Context<'_>) -> (TestFile, Vec<Diagnostic>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_test_file(path, &text, cx),
        Err(e) => (
            TestFile {
                path: path.to_path_buf(),
                cases: Vec::new(),
                broken: 1,
            },
            vec![Diagnostic::error(path, 0, 0, format!("cannot read: {e}"))],
        ),
    }
}

/// Parses test file text; `path` names it in diagnostics.
pub fn parse_test_file(path: &Path, text: &str, cx: &Context<'_>) -> (TestFile, Vec<Diagnostic>) {
    let mut problems = CaseProblems {
        file: path,
        list: Vec::new(),
    };
    let mut file = TestFile {
        path: path.to_path_buf(),
        cases: Vec::new(),
        broken: 0,
    };
    let raw: RawFile = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            problems.list.push(yaml_error(path, &e));
            file.broken = 1;
            return (file, problems.list);
        }
    };
    if let Some(v) = &raw.version
        && v.value != FORMAT_VERSION
    {
        problems.at(
            v.into(),
            format!(
                "test file version {} is not supported; this cedargate reads version {FORMAT_VERSION}",
                v.value
            ),
        );
        file.broken = 1;
        return (file, problems.list);
    }
    // Named identities are checked once here, and built again per case at the case's time.
    let mut identities: BTreeMap<String, &Spanned<Value>> = BTreeMap::new();
    for (name, value) in &raw.identities {
        if name == ANONYMOUS {
            problems.at(
                value.into(),
                format!("`{ANONYMOUS}` is reserved for callers without a credential"),
            );
            continue;
        }
        let before = problems.list.len();
        identity_spec(value, &BTreeMap::new(), cx, &mut problems);
        if problems.list.len() == before {
            identities.insert(name.clone(), value);
        }
    }
    let errors_before = problems.errors();
    let file_entities = provider_entities(&raw.entities, &[], cx, &mut problems);
    if problems.errors() > errors_before {
        // Every case would decide on data the file doesn't state as meant: none is run.
        file.broken += raw.cases.value.len().max(1);
        return (file, problems.list);
    }
    let default_request = raw.defaults.request.clone().unwrap_or_default();
    if raw.cases.value.is_empty() {
        problems.at(
            (&raw.cases).into(),
            "`cases` is empty: a test file needs at least one case",
        );
        file.broken += 1;
    }
    let mut names = BTreeMap::new();
    for spanned in &raw.cases.value {
        let pos = Pos::from(spanned);
        let case = build_case(
            &spanned.value,
            pos,
            &default_request,
            raw.defaults.identity.as_ref(),
            raw.defaults.time.as_ref(),
            &identities,
            &file_entities,
            Mode::TestFile,
            cx,
            &mut problems,
        );
        match case {
            Some(case) => match names.insert(case.name.clone(), case.line) {
                Some(first) => {
                    problems.at(
                        pos,
                        format!(
                            "case name `{}` is already used at line {first}; names must be unique",
                            case.name
                        ),
                    );
                    file.broken += 1;
                }
                None => file.cases.push(case),
            },
            None => file.broken += 1,
        }
    }
    (file, problems.list)
}

/// Parses a `cedargate check` request document (one case at the top level).
pub fn parse_check_request(
    path: &Path,
    text: &str,
    cx: &Context<'_>,
) -> Result<Case, Vec<Diagnostic>> {
    let mut problems = CaseProblems {
        file: path,
        list: Vec::new(),
    };
    let raw: Spanned<RawCase> = match serde_saphyr::from_str(text) {
        Ok(raw) => raw,
        Err(e) => return Err(vec![yaml_error(path, &e)]),
    };
    let case = build_case(
        &raw.value,
        (&raw).into(),
        &RawRequest::default(),
        None,
        None,
        &BTreeMap::new(),
        &[],
        Mode::CheckRequest,
        cx,
        &mut problems,
    );
    match case {
        Some(case) if !problems.list.iter().any(is_error) => Ok(case),
        _ => Err(problems.list),
    }
}

fn is_error(d: &Diagnostic) -> bool {
    d.severity == crate::Severity::Error
}

fn yaml_error(path: &Path, e: &serde_saphyr::Error) -> Diagnostic {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let message = e.to_string();
    let first = crate::without_yaml_prefix(message.lines().next().unwrap_or(&message));
    Diagnostic::error(
        path,
        usize::try_from(line).unwrap_or(0),
        usize::try_from(column).unwrap_or(0),
        format!("not a valid test file: {first}"),
    )
}

/// Builds one case, reporting every problem in it (not just the first); `None` when any.
#[allow(clippy::too_many_arguments)]
fn build_case(
    raw: &RawCase,
    pos: Pos,
    default_request: &RawRequest,
    default_identity: Option<&Spanned<Value>>,
    default_time: Option<&Spanned<String>>,
    identities: &BTreeMap<String, &Spanned<Value>>,
    file_entities: &[(EntityRef, Value)],
    mode: Mode,
    cx: &Context<'_>,
    problems: &mut CaseProblems<'_>,
) -> Option<Case> {
    let errors_before = problems.errors();
    let name = match (&raw.name, mode) {
        (Some(n), _) if !n.value.trim().is_empty() => n.value.clone(),
        (_, Mode::CheckRequest) => "check".to_string(),
        (_, Mode::TestFile) => {
            problems.at(pos, "every case needs a non-empty `name`");
            String::new()
        }
    };
    let now = match raw.time.as_ref().or(default_time) {
        Some(t) => humantime::parse_rfc3339_weak(&t.value).unwrap_or_else(|e| {
            problems.at(
                t.into(),
                format!(
                    "time `{}` is not an RFC 3339 time such as 2026-03-02T09:30:00Z: {e}",
                    t.value
                ),
            );
            cx.now
        }),
        None => cx.now,
    };
    let request_pos = raw.request.as_ref().map_or(pos, Pos::from);
    let raw_request = raw
        .request
        .as_ref()
        .map(|r| r.value.clone())
        .unwrap_or_default()
        .over(default_request);
    let request = http_request(&raw_request, request_pos, problems);
    let identity_value = raw.identity.as_ref().or(default_identity);
    let identity_pos = identity_value.map_or(pos, Pos::from);
    let caller = match identity_value {
        None => Resolved::Caller(Caller::NoToken),
        Some(v) => {
            let at_case_time = Context {
                config: cx.config,
                policies: cx.policies,
                now,
            };
            identity_spec(v, identities, &at_case_time, problems)
        }
    };
    let expect = match (&raw.expect, mode) {
        (Some(e), _) => expectation(e, cx, problems),
        (None, Mode::CheckRequest) => None,
        (None, Mode::TestFile) => {
            problems.at(
                pos,
                "the case has no `expect` (allow, deny, unauthenticated, a status, or a mapping)",
            );
            None
        }
    };
    let entities = provider_entities(&raw.entities, file_entities, cx, problems);
    let mut request = request?;
    // `identity: { mtls: … }` is a request fact: the peer principal Envoy forwards.
    let caller = match caller {
        Resolved::Peer(principal) => {
            if request
                .source_principal
                .as_ref()
                .is_some_and(|p| *p != principal)
            {
                problems.at(
                    identity_pos,
                    "request.source.principal and identity.mtls name different peers; keep one",
                );
            }
            request.source_principal = Some(principal);
            Caller::NoToken
        }
        Resolved::Caller(c) => c,
    };
    if problems.errors() > errors_before {
        return None;
    }
    let case = Case {
        name,
        file: problems.file.to_path_buf(),
        line: pos.line,
        request,
        caller,
        now,
        expect,
        provider_entities: entities,
    };
    check_against_schema(&case, identity_pos, cx, problems);
    (problems.errors() == errors_before).then_some(case)
}

/// The entity provider's answers stated by `entities:` (a list of Cedar entities, in either of
/// Cedar's JSON forms), laid over `inherited` (the file's, for a case): each entity replaces the
/// inherited one with its uid. Checked as `serve` would meet them: the config must have an entity
/// provider that is asked about the entity's type; an entity that doesn't conform to the schema
/// is a warning, since `serve` then denies `entities_unavailable`, which a case may test.
fn provider_entities(
    list: &[Spanned<Value>],
    inherited: &[(EntityRef, Value)],
    cx: &Context<'_>,
    problems: &mut CaseProblems<'_>,
) -> Vec<(EntityRef, Value)> {
    let mut out = inherited.to_vec();
    let Some(provider) = &cx.config.entity_provider else {
        if let Some(first) = list.first() {
            problems.at(
                first.into(),
                format!(
                    "`entities` states what the entity provider answers, but {} configures no `entity_provider`; static entities belong in {}",
                    cx.config.source.display(),
                    cx.config.policy_dir.join(ENTITIES_FILE).display()
                ),
            );
        }
        return out;
    };
    let mut seen: Vec<EntityRef> = Vec::new();
    for spanned in list {
        let pos = Pos::from(spanned);
        let entity = match cedar_policy::Entity::from_json_value(spanned.value.clone(), None) {
            Ok(e) => e,
            Err(e) => {
                problems.at(
                    pos,
                    format!(
                        "not a Cedar entity ({{uid, attrs, parents}}): {}",
                        one_line(&e)
                    ),
                );
                continue;
            }
        };
        let uid = entity.uid();
        let r = EntityRef {
            entity_type: uid.type_name().to_string(),
            id: uid.id().unescaped().to_string(),
        };
        if !provider.types.contains(&r.entity_type) {
            problems.at(
                pos,
                format!(
                    "{r} is of type {}, which entity_provider.types does not list ({}): serve never asks the provider for it",
                    r.entity_type,
                    provider.types.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        }
        if seen.contains(&r) {
            problems.at(pos, format!("{r} is stated twice in this list"));
            continue;
        }
        seen.push(r.clone());
        if let Some(schema) = &cx.policies.schema
            && let Err(e) =
                cedar_policy::Entity::from_json_value(spanned.value.clone(), Some(schema))
        {
            problems.warn(
                pos,
                format!(
                    "{r} does not conform to the schema, so a request the provider answers with it is denied entities_unavailable: {}",
                    one_line(&e)
                ),
            );
        }
        match out.iter_mut().find(|(known, _)| *known == r) {
            Some(slot) => slot.1 = spanned.value.clone(),
            None => out.push((r, spanned.value.clone())),
        }
    }
    out
}

fn http_request(
    raw: &RawRequest,
    pos: Pos,
    problems: &mut CaseProblems<'_>,
) -> Option<HttpRequest> {
    let Some(target) = raw.path.as_deref() else {
        problems.at(
            pos,
            "the request needs a `path` (it may carry a query string)",
        );
        return None;
    };
    if !target.starts_with('/') {
        problems.at(pos, format!("request path `{target}` must start with `/`"));
        return None;
    }
    let method = raw.method.as_deref().unwrap_or(DEFAULT_METHOD);
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        problems.at(pos, format!("`{method}` is not an HTTP method"));
        return None;
    }
    let mut headers = std::collections::HashMap::new();
    for (name, value) in &raw.headers {
        let name = name.to_ascii_lowercase();
        if matches!(name.as_str(), "authorization" | "proxy-authorization") {
            problems.at(
                pos,
                format!(
                    "request.headers must not set `{name}`: say who is calling with `identity:` (test files never hold credentials)"
                ),
            );
            return None;
        }
        headers.insert(name, value.clone());
    }
    let mut context_extensions: std::collections::HashMap<String, String> = raw
        .context_extensions
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(service) = &raw.service {
        match context_extensions.get("service") {
            Some(existing) if existing != service => {
                problems.at(
                    pos,
                    format!(
                        "request.service `{service}` and context_extensions.service `{existing}` differ; `service` is a shorthand for the other, keep one"
                    ),
                );
                return None;
            }
            _ => {
                context_extensions.insert("service".into(), service.clone());
            }
        }
    }
    let source_ip = match raw.source.ip.as_deref() {
        None => None,
        Some(ip) => match IpAddr::from_str(ip) {
            Ok(ip) => Some(ip),
            Err(_) => {
                problems.at(
                    pos,
                    format!("request.source.ip `{ip}` is not an IP address"),
                );
                return None;
            }
        },
    };
    let (path, query) = HttpRequest::split_target(target);
    // The same measure the gRPC edge takes of Envoy's headers.
    let header_bytes = headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    Some(HttpRequest {
        request_id: String::new(),
        method: method.to_ascii_uppercase(),
        path,
        query,
        host: HttpRequest::normalize_host(raw.host.as_deref().unwrap_or(DEFAULT_HOST)),
        scheme: raw.scheme.clone().unwrap_or_else(|| DEFAULT_SCHEME.into()),
        protocol: raw
            .protocol
            .clone()
            .unwrap_or_else(|| DEFAULT_PROTOCOL.into()),
        headers,
        context_extensions,
        source_ip,
        source_principal: raw.source.principal.clone(),
        header_bytes,
    })
}

/// An identity as written, before it is tied to a request.
enum Resolved {
    /// A caller as identity resolution would produce it.
    Caller(Caller),
    /// `{ mtls: <principal> }`: becomes `request.source.principal`.
    Peer(String),
}

fn identity_spec(
    spanned: &Spanned<Value>,
    named: &BTreeMap<String, &Spanned<Value>>,
    cx: &Context<'_>,
    problems: &mut CaseProblems<'_>,
) -> Resolved {
    let pos = Pos::from(spanned);
    let fallback = Resolved::Caller(Caller::NoToken);
    match &spanned.value {
        Value::Null => fallback,
        Value::String(s) if s == ANONYMOUS => fallback,
        Value::String(s) => match named.get(s) {
            Some(definition) => identity_spec(definition, &BTreeMap::new(), cx, problems),
            None if named.is_empty() => {
                problems.at(
                    pos,
                    format!(
                        "identity `{s}` is not defined: add it under `identities:` or write it inline"
                    ),
                );
                fallback
            }
            None => {
                problems.at(
                    pos,
                    format!(
                        "identity `{s}` is not defined under `identities:` (defined: {}, or `{ANONYMOUS}`)",
                        named.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
                fallback
            }
        },
        Value::Object(map) => {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            for k in &keys {
                if !matches!(*k, "issuer" | "claims" | "invalid" | "mtls") {
                    problems.at(
                        pos,
                        format!(
                            "unknown identity field `{k}`; an identity is {{issuer, claims}}, {{invalid: <reason>}} or {{mtls: <peer principal>}}"
                        ),
                    );
                    return fallback;
                }
            }
            let kinds = ["issuer", "invalid", "mtls"]
                .iter()
                .filter(|k| map.contains_key(**k))
                .count();
            if kinds != 1 || (map.contains_key("claims") && !map.contains_key("issuer")) {
                problems.at(
                    pos,
                    "an identity is exactly one of {issuer, claims}, {invalid: <reason>} or {mtls: <peer principal>}",
                );
                return fallback;
            }
            if let Some(reason) = map.get("invalid") {
                return match reason.as_str().and_then(rejection) {
                    Some(e) => Resolved::Caller(Caller::Rejected(e)),
                    None => {
                        problems.at(
                            pos,
                            format!(
                                "identity.invalid must be one of: {}",
                                rejection_reasons().join(", ")
                            ),
                        );
                        fallback
                    }
                };
            }
            if let Some(peer) = map.get("mtls") {
                return match peer.as_str() {
                    Some(p) if !p.is_empty() => Resolved::Peer(p.to_string()),
                    _ => {
                        problems.at(
                            pos,
                            "identity.mtls must be the peer principal Envoy forwards, e.g. spiffe://example.org/ns/default/sa/app",
                        );
                        fallback
                    }
                };
            }
            let issuer_name = map.get("issuer").and_then(Value::as_str).unwrap_or("");
            let Some(issuer) = cx.config.issuers.iter().find(|i| &*i.name == issuer_name) else {
                let known: Vec<&str> = cx.config.issuers.iter().map(|i| &*i.name).collect();
                problems.at(
                    pos,
                    format!(
                        "unknown issuer `{issuer_name}`: {} defines {}",
                        cx.config.source.display(),
                        if known.is_empty() {
                            "no issuers".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
                return fallback;
            };
            let claims = match map.get("claims") {
                None => Map::new(),
                Some(Value::Object(c)) => c.clone(),
                Some(_) => {
                    problems.at(
                        pos,
                        "identity.claims must be a mapping of claim names to values",
                    );
                    return fallback;
                }
            };
            match token(issuer, claims, cx.now) {
                Ok(token) => Resolved::Caller(Caller::Token(Arc::new(token))),
                Err(messages) => {
                    for m in messages {
                        problems.at(pos, format!("issuer `{issuer_name}`: {m}"));
                    }
                    fallback
                }
            }
        }
        other => {
            problems.at(
                pos,
                format!(
                    "identity must be `{ANONYMOUS}`, a name from `identities:`, or a mapping; got {}",
                    kind(other)
                ),
            );
            fallback
        }
    }
}

/// The claims a verified token from `issuer` would carry, defaults filled in, checked for the
/// types verification and mapping rely on.
fn token(
    issuer: &Arc<IssuerConfig>,
    mut claims: Map<String, Value>,
    now: SystemTime,
) -> Result<VerifiedToken, Vec<String>> {
    let mut errors = Vec::new();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    claims
        .entry("iss")
        .or_insert_with(|| Value::from(&*issuer.issuer));
    if let Some(aud) = issuer.audiences.first() {
        claims
            .entry("aud")
            .or_insert_with(|| Value::from(aud.as_str()));
    }
    claims
        .entry("exp")
        .or_insert_with(|| Value::from(now_secs + default_lifetime(issuer)));
    claims.entry("iat").or_insert_with(|| Value::from(now_secs));

    let rejected = |reason: &str| {
        format!(
            "a token like this is rejected before policies run; to test that, use `identity: {{ invalid: {reason} }}`"
        )
    };
    // The claim rules `serve` applies, from the same function, at the case's time: a token this
    // judges bad is one `serve` refuses before any policy runs.
    if let Err(e) = token::check_claims(issuer, &claims, now_secs) {
        let detail = match &e {
            TokenError::Expired => format!(
                "claim `exp` {} is not after the case's time {now_secs} (beyond the issuer's {} s leeway)",
                claims.get("exp").unwrap_or(&Value::Null),
                issuer.leeway.as_secs()
            ),
            TokenError::NotYetValid => format!(
                "claim `nbf` {} is after the case's time {now_secs} (beyond the issuer's {} s leeway)",
                claims.get("nbf").unwrap_or(&Value::Null),
                issuer.leeway.as_secs()
            ),
            TokenError::WrongIssuer => format!(
                "claim `iss` is {} but this issuer's `iss` is `{}`",
                claims.get("iss").unwrap_or(&Value::Null),
                issuer.issuer
            ),
            TokenError::WrongAudience => match claims.get("aud") {
                Some(Value::String(a)) => format!(
                    "claim `aud` `{a}` is not an accepted audience ({})",
                    issuer.audiences.join(", ")
                ),
                _ => format!(
                    "claim `aud` names none of the accepted audiences ({})",
                    issuer.audiences.join(", ")
                ),
            },
            TokenError::InvalidClaim => ["exp", "nbf", "iss", "iat"]
                .into_iter()
                .find_map(|name| {
                    let v = claims.get(name)?;
                    let ok = if name == "iss" {
                        v.is_string()
                    } else {
                        v.is_u64()
                    };
                    (!ok).then(|| {
                        let wanted = if name == "iss" {
                            "a string"
                        } else {
                            "a whole number of seconds since 1970"
                        };
                        format!("claim `{name}` must be {wanted}, not {}", kind(v))
                    })
                })
                .unwrap_or_else(|| e.to_string()),
            TokenError::MissingClaim => match claims.get("aud") {
                Some(other) => format!(
                    "claim `aud` must be a string or a list of strings, not {}",
                    kind(other)
                ),
                None => e.to_string(),
            },
            TokenError::LifetimeTooLong => format!(
                "claims `exp` {} minus `iat` {} is longer than the issuer's max_token_lifetime_seconds {}",
                claims.get("exp").unwrap_or(&Value::Null),
                claims.get("iat").unwrap_or(&Value::Null),
                issuer.max_token_lifetime.map_or(0, |m| m.as_secs())
            ),
            TokenError::IssuedInFuture => format!(
                "claim `iat` {} is after the case's time {now_secs} (beyond the issuer's {} s leeway; the issuer sets reject_future_iat)",
                claims.get("iat").unwrap_or(&Value::Null),
                issuer.leeway.as_secs()
            ),
            other => other.to_string(),
        };
        errors.push(format!("{detail}; {}", rejected(e.reason())));
    }
    // With an option that judges `iat`, `check_claims` has reported a bad one already.
    let iat_judged = issuer.reject_future_iat || issuer.max_token_lifetime.is_some();
    if let Some(v) = claims.get("iat")
        && !v.is_u64()
        && !iat_judged
    {
        errors.push(format!(
            "claim `iat` must be a whole number of seconds since 1970, not {}",
            kind(v)
        ));
    }
    for name in ["sub", "client_id", "azp", "jti", "scope"] {
        if let Some(v) = claims.get(name)
            && !v.is_string()
        {
            errors.push(format!("claim `{name}` must be a string, not {}", kind(v)));
        }
    }
    if let Some(v) = claims.get("scp")
        && !is_string_list(v)
    {
        errors.push(format!(
            "claim `scp` must be a string or a list of strings, not {}",
            kind(v)
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let token = VerifiedToken::from_claims(issuer.clone(), claims);
    // The mapping `serve` would pick (user or service principal), from the same function.
    let mapping = mapping::principal_mapping(&token);
    match token.claims.get(&*mapping.id_claim) {
        Some(Value::String(_)) => {}
        Some(other) => errors.push(format!(
            "claim `{}` (the id of {} principals) must be a string, not {}",
            mapping.id_claim,
            mapping.entity_type,
            kind(other)
        )),
        None => errors.push(format!(
            "claim `{}` (the id of {} principals) is missing; {}",
            mapping.id_claim,
            mapping.entity_type,
            rejected(TokenError::MissingPrincipalClaim.reason())
        )),
    }
    for parent in &mapping.parents {
        if let Some(v) = token.claims.get(&*parent.claim)
            && !is_string_list(v)
        {
            errors.push(format!(
                "claim `{}` (the {} parents of {} principals) must be a string or a list of strings, not {}",
                parent.claim,
                parent.entity_type,
                mapping.entity_type,
                kind(v)
            ));
        }
    }
    for (attribute, claim) in &mapping.attributes {
        if let Some(v) = token.claims.get(claim)
            && cedargate_core::cedar_value::cedar_value(v).is_none()
        {
            errors.push(format!(
                "claim `{claim}` (attribute `{attribute}`) is {}, which has no Cedar value",
                kind(v)
            ));
        }
    }
    if errors.is_empty() {
        Ok(token)
    } else {
        Err(errors)
    }
}

fn is_string_list(v: &Value) -> bool {
    match v {
        Value::String(_) => true,
        Value::Array(items) => items.iter().all(Value::is_string),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Seconds between a stated token's default `iat` and `exp`: [`DEFAULT_TOKEN_LIFETIME`], or
/// the issuer's `max_token_lifetime_seconds` when shorter, so a case that states no times gets a
/// token `serve` would accept.
fn default_lifetime(issuer: &IssuerConfig) -> u64 {
    let default = DEFAULT_TOKEN_LIFETIME.as_secs();
    issuer
        .max_token_lifetime
        .map_or(default, |max| default.min(max.as_secs()))
}

/// Every way a presented credential can be rejected, by reason code.
fn rejections() -> Vec<IdentityError> {
    // The match below makes a new `TokenError` variant a compile error until it is listed here,
    // so every reason code can be stated in a test.
    let all = [
        TokenError::TooLarge,
        TokenError::Malformed,
        TokenError::AlgorithmNotAllowed,
        TokenError::CriticalHeader,
        TokenError::UnknownIssuer,
        TokenError::UnknownKid,
        TokenError::KeysUnavailable,
        TokenError::KeysStale,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::WrongAudience,
        TokenError::WrongIssuer,
        TokenError::MissingClaim,
        TokenError::InvalidClaim,
        TokenError::MissingPrincipalClaim,
        TokenError::WrongType,
        TokenError::LifetimeTooLong,
        TokenError::IssuedInFuture,
        TokenError::Inactive,
        TokenError::IntrospectionUnavailable,
    ];
    for e in &all {
        match e {
            TokenError::TooLarge
            | TokenError::Malformed
            | TokenError::AlgorithmNotAllowed
            | TokenError::CriticalHeader
            | TokenError::UnknownIssuer
            | TokenError::UnknownKid
            | TokenError::KeysUnavailable
            | TokenError::KeysStale
            | TokenError::BadSignature
            | TokenError::Expired
            | TokenError::NotYetValid
            | TokenError::WrongAudience
            | TokenError::WrongIssuer
            | TokenError::MissingClaim
            | TokenError::InvalidClaim
            | TokenError::MissingPrincipalClaim
            | TokenError::WrongType
            | TokenError::LifetimeTooLong
            | TokenError::IssuedInFuture
            | TokenError::Inactive
            | TokenError::IntrospectionUnavailable => {}
        }
    }
    let mut out: Vec<IdentityError> = all.into_iter().map(IdentityError::Token).collect();
    out.extend([
        IdentityError::UnsupportedScheme,
        IdentityError::UntrustedPeer,
        IdentityError::AmbiguousCredentials,
    ]);
    out.extend(
        [
            ApiKeyError::Malformed,
            ApiKeyError::Unknown,
            ApiKeyError::WrongSecret,
            ApiKeyError::Revoked,
            ApiKeyError::Expired,
            ApiKeyError::Unavailable,
        ]
        .map(|error| IdentityError::ApiKey { id: None, error }),
    );
    out
}

fn rejection(reason: &str) -> Option<IdentityError> {
    rejections().into_iter().find(|e| e.reason() == reason)
}

fn rejection_reasons() -> Vec<&'static str> {
    rejections().iter().map(IdentityError::reason).collect()
}

fn expectation(
    spanned: &Spanned<Value>,
    cx: &Context<'_>,
    problems: &mut CaseProblems<'_>,
) -> Option<Expectation> {
    let pos = Pos::from(spanned);
    let word_help = "allow, deny or unauthenticated";
    match &spanned.value {
        Value::String(word) => match CaseOutcome::parse(word) {
            Some(o) => Some(Expectation {
                outcome: Some(o),
                ..Expectation::default()
            }),
            None => {
                problems.at(pos, format!("expect `{word}`: must be {word_help}"));
                None
            }
        },
        Value::Number(n) => status(n.as_u64(), pos, problems).map(|s| Expectation {
            status: Some(s),
            ..Expectation::default()
        }),
        Value::Object(map) => {
            let mut e = Expectation::default();
            let mut ok = true;
            for (key, value) in map {
                let string = |problems: &mut CaseProblems<'_>| match value.as_str() {
                    Some(s) => Some(s.to_string()),
                    None => {
                        problems.at(
                            pos,
                            format!("expect.{key} must be a string, not {}", kind(value)),
                        );
                        None
                    }
                };
                match key.as_str() {
                    "decision" => match value.as_str().and_then(CaseOutcome::parse) {
                        Some(o) => e.outcome = Some(o),
                        None => {
                            problems.at(pos, format!("expect.decision must be {word_help}"));
                            ok = false;
                        }
                    },
                    "status" => match status(value.as_u64(), pos, problems) {
                        Some(s) => e.status = Some(s),
                        None => ok = false,
                    },
                    "reason" => {
                        e.reason = string(problems);
                        ok &= e.reason.is_some();
                    }
                    "principal" => {
                        e.principal = string(problems);
                        ok &= e.principal.is_some();
                    }
                    "resource" => {
                        e.resource = string(problems);
                        ok &= e.resource.is_some();
                    }
                    "route" => {
                        e.route = string(problems);
                        ok &= e.route.is_some();
                    }
                    "action" => {
                        ok &= value.is_string();
                        e.action = string(problems).map(|a| {
                            // Accept `Action::"GET /x"` as well as the bare id.
                            a.strip_prefix(&format!("{}::", action_type()))
                                .and_then(|q| serde_json::from_str::<String>(q).ok())
                                .unwrap_or(a)
                        });
                        if let Some(action) = &e.action {
                            ok &= known_action(action, pos, cx, problems);
                        }
                    }
                    "policies" => match value {
                        Value::Array(items) if items.iter().all(Value::is_string) => {
                            let ids: Vec<String> = items
                                .iter()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect();
                            for id in &ids {
                                if !cx.policies.info.contains_key(id) {
                                    let mut known: Vec<&String> = cx.policies.info.keys().collect();
                                    known.sort();
                                    problems.at(
                                        pos,
                                        format!(
                                            "expect.policies names `{id}`, which is not a policy id in {} (ids: {})",
                                            cx.config.policy_dir.display(),
                                            known
                                                .iter()
                                                .map(|s| s.as_str())
                                                .collect::<Vec<_>>()
                                                .join(", ")
                                        ),
                                    );
                                    ok = false;
                                }
                            }
                            e.policies = Some(ids);
                        }
                        _ => {
                            problems.at(pos, "expect.policies must be a list of policy ids");
                            ok = false;
                        }
                    },
                    other => {
                        problems.at(
                            pos,
                            format!(
                                "unknown expect field `{other}` (decision, status, reason, policies, principal, action, resource, route)"
                            ),
                        );
                        ok = false;
                    }
                }
            }
            if map.is_empty() {
                problems.at(pos, "expect is empty: say at least the decision");
                ok = false;
            }
            ok.then_some(e)
        }
        other => {
            problems.at(
                pos,
                format!(
                    "expect must be {word_help}, a status, or a mapping; got {}",
                    kind(other)
                ),
            );
            None
        }
    }
}

fn status(value: Option<u64>, pos: Pos, problems: &mut CaseProblems<'_>) -> Option<u16> {
    match value {
        Some(s @ (200 | 401 | 403 | 503)) => u16::try_from(s).ok(),
        _ => {
            problems.at(
                pos,
                "expect status must be 200, 401, 403 or 503 (the statuses cedargate answers)",
            );
            None
        }
    }
}

fn known_action(action: &str, pos: Pos, cx: &Context<'_>, problems: &mut CaseProblems<'_>) -> bool {
    let Some(schema) = &cx.policies.schema else {
        return true;
    };
    if schema.actions().any(|a| a.id().unescaped() == action) {
        return true;
    }
    let mut known: Vec<String> = schema
        .actions()
        .map(|a| a.id().unescaped().to_string())
        .collect();
    known.sort();
    problems.at(
        pos,
        format!(
            "expect.action `{action}` is not an action in the schema (actions: {})",
            known.join(", ")
        ),
    );
    false
}

/// Checks that a case's mapped Cedar request fits the schema: the principal built from the
/// claims (an error: the claims are the test author's input) and the action and context
/// cedargate builds (warnings: they point at a config or schema gap, and `serve` would decide
/// the same way).
fn check_against_schema(case: &Case, pos: Pos, cx: &Context<'_>, problems: &mut CaseProblems<'_>) {
    let Some(schema) = &cx.policies.schema else {
        return;
    };
    // Decided before policies (bad credential, no route): nothing to check.
    let Ok(prepared) = case.prepare(cx.config, cx.policies) else {
        return;
    };
    let cedar = prepared.cedar();
    let action = match cedar_policy::EntityUid::from_json(serde_json::json!({
        "type": cedar.action.entity_type, "id": cedar.action.id,
    })) {
        Ok(a) => a,
        Err(_) => return,
    };
    if !schema.actions().any(|a| *a == action) {
        problems.warn(
            pos,
            format!(
                "case `{}` maps to {}, which the schema does not declare: no policy can permit it",
                case.name, cedar.action
            ),
        );
        return;
    }
    // The principal as `serve` evaluates it: the claims merged with the entity sources. A case
    // that expects exactly this deny states it; otherwise the claims are a mistake of the test.
    let expects_it = case
        .expect
        .as_ref()
        .is_some_and(|e| e.reason.as_deref() == Some("principal_invalid"));
    if let Err(EvaluationError::PrincipalInvalid { message }) = cx.policies.cedar_inputs(cedar)
        && !expects_it
    {
        let detail = crate::evaluated::token_part_detail(cx.policies, cedar)
            .map(|d| format!("; {d}"))
            .unwrap_or_default();
        problems.at(
            pos,
            format!(
                "case `{}`: the claims, merged with the entity data for {}, give it a shape the schema rejects (serve denies it principal_invalid; expect `reason: principal_invalid` to test that): {message}{detail}",
                case.name, cedar.principal
            ),
        );
    }
    if let Err(e) =
        cedar_policy::Context::from_json_value(cedar.context.clone(), Some((schema, &action)))
    {
        problems.warn(
            pos,
            format!(
                "case `{}`: the context cedargate builds does not match the schema's context for {} (see `cedargate schema`): {}",
                case.name,
                cedar.action,
                one_line(&e)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedargate_core::decision::DecidingPolicy;

    fn shipped() -> (Config, PolicySnapshot) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = Config::load(&root.join("cedargate.yaml")).unwrap_or_else(|e| panic!("{e}"));
        let policies = PolicySnapshot::load(&config.policy_dir).unwrap_or_else(|e| panic!("{e}"));
        (config, policies)
    }

    fn parse(text: &str) -> (TestFile, Vec<Diagnostic>) {
        let (config, policies) = shipped();
        let cx = Context {
            config: &config,
            policies: &policies,
            now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        parse_test_file(Path::new("t.yaml"), text, &cx)
    }

    #[test]
    fn every_rejection_reason_round_trips() {
        let reasons = rejection_reasons();
        for reason in &reasons {
            assert_eq!(rejection(reason).map(|e| e.reason()), Some(*reason));
        }
        let unique: std::collections::BTreeSet<_> = reasons.iter().collect();
        assert_eq!(unique.len(), reasons.len());
        assert!(rejection("token_too_old").is_none());
    }

    #[test]
    fn expectations_compare_every_stated_field() {
        let decision = Decision {
            allowed: false,
            status: 401,
            reason: "no_permit",
            policies: vec![DecidingPolicy {
                id: "b".into(),
                reason: None,
            }],
            errors: Vec::new(),
            cedar: None,
            route: Some("/orders/{id}".into()),
            challenge_error: None,
            policy_version: "v".into(),
            from_cache: false,
        };
        let pass = Expectation {
            outcome: Some(CaseOutcome::Unauthenticated),
            status: Some(401),
            policies: Some(vec!["b".into()]),
            route: Some("/orders/{id}".into()),
            ..Expectation::default()
        };
        assert_eq!(pass.mismatches(&decision), Vec::<String>::new());
        let fail = Expectation {
            outcome: Some(CaseOutcome::Allow),
            status: Some(403),
            reason: Some("forbid".into()),
            policies: Some(vec![]),
            action: Some("GET /x".into()),
            ..Expectation::default()
        };
        assert_eq!(
            fail.mismatches(&decision),
            vec![
                "decision: expected allow",
                "status: expected 403, got 401",
                "reason: expected forbid, got no_permit",
                "policies: expected [], got [b]",
                "action: expected GET /x, got (none)",
            ]
        );
        assert_eq!(
            fail.describe(),
            "allow, status 403, reason forbid, policies [], action GET /x"
        );
    }

    #[test]
    fn defaults_merge_under_each_case() {
        let defaults = RawRequest {
            host: Some("api.example".into()),
            headers: BTreeMap::from([("a".into(), "1".into()), ("b".into(), "1".into())]),
            ..RawRequest::default()
        };
        let case = RawRequest {
            path: Some("/x".into()),
            headers: BTreeMap::from([("b".into(), "2".into())]),
            ..RawRequest::default()
        };
        let merged = case.over(&defaults);
        assert_eq!(merged.host.as_deref(), Some("api.example"));
        assert_eq!(merged.path.as_deref(), Some("/x"));
        assert_eq!(
            merged.headers,
            BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
        );
    }

    #[test]
    fn a_case_becomes_the_request_the_grpc_edge_would_build() {
        let (file, problems) = parse(
            "version: 1\nidentities:\n  bob: { issuer: demo-idp, claims: { sub: bob, groups: staff } }\ndefaults:\n  request: { host: API.Example:8443 }\ncases:\n  - name: c\n    time: 2030-01-01T10:00:00Z\n    request: { method: get, path: /orders/1?limit=2, service: orders, headers: { User-Agent: x }, source: { ip: 10.1.2.3 } }\n    identity: bob\n    expect: allow\n",
        );
        assert_eq!(problems, Vec::new());
        let [case] = file.cases.as_slice() else {
            panic!("{:?}", file.cases);
        };
        let r = &case.request;
        assert_eq!(
            (
                r.method.as_str(),
                r.path.as_str(),
                r.query.as_str(),
                r.host.as_str()
            ),
            ("GET", "/orders/1", "limit=2", "api.example")
        );
        assert_eq!(r.header("user-agent"), Some("x"));
        assert_eq!(r.header_bytes, "user-agent".len() + 1);
        assert_eq!(
            r.context_extensions.get("service").map(String::as_str),
            Some("orders")
        );
        // Named identities are built at the case's time: `exp` is an hour after it.
        let Caller::Token(token) = &case.caller else {
            panic!("{:?}", case.caller);
        };
        assert_eq!(token.exp, 1_893_492_000 + 3600);
        let (config, policies) = shipped();
        let d = case.decide(&config, &policies);
        assert!(d.allowed, "{d:?}");
    }

    #[test]
    fn problems_carry_the_position_of_what_is_wrong() {
        let (file, problems) = parse(
            "version: 1\ncases:\n  - name: a\n    request: { path: /orders/1, service: orders }\n    identity: { issuer: nope }\n    expect: { decision: maybe }\n",
        );
        assert_eq!(file.broken, 1);
        let got: Vec<String> = problems
            .iter()
            .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
            .collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].starts_with("5:15 unknown issuer `nope`"), "{got:#?}");
        assert!(
            got[1].starts_with("6:13 expect.decision must be"),
            "{got:#?}"
        );
    }
}
