//! `cedargate check`: decides one request — given as a file, on stdin, or with flags — through the
//! same path as `serve`, and explains the outcome: the Cedar request and entities, the decision,
//! the deciding policies with their annotations, and for a deny what a policy author can act on
//! (the forbids that fired; the permits whose scope matched but whose condition was false, with
//! each `&&`-part's value; the permits for this action whose scope missed, and which part).
//!
//! The explanation re-evaluates single policies, scopes and condition parts with Cedar on exactly
//! the inputs the decision used ([`PolicySnapshot::cedar_inputs`]); it never changes a decision.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::pst;
use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, EvalResult, Expression, Policy,
    PolicySet, Request,
};
use serde_json::{Map, Value, json};

use crate::case::{self, Case};
use crate::test::{deciding_lines, describe_decision, entity_line};
use crate::{CliError, Reporter};
use cedargate_core::config::Config;
use cedargate_core::decision::Decision;
use cedargate_core::mapping::CedarRequest;
use cedargate_core::policy::{ENTITIES_FILE, PolicySnapshot};

/// Arguments of `cedargate check`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CheckArgs {
    /// Config file.
    #[arg(short, long, default_value = "cedargate.yaml")]
    pub config: PathBuf,
    /// A request file: one test case (request, identity, time; expect optional). `-` reads
    /// stdin. Without it, the request comes from the flags below.
    pub file: Option<PathBuf>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Path, with query string if any.
    #[arg(long)]
    pub path: Option<String>,
    /// Host (`:authority`).
    #[arg(long)]
    pub host: Option<String>,
    /// Envoy's `context_extensions.service`.
    #[arg(long)]
    pub service: Option<String>,
    /// A request header `name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// An Envoy context extension `key=value` (repeatable).
    #[arg(long = "context-extension", value_name = "KEY=VALUE")]
    pub context_extensions: Vec<String>,
    /// Downstream client IP.
    #[arg(long)]
    pub source_ip: Option<String>,
    /// mTLS peer principal Envoy forwards (e.g. a SPIFFE ID).
    #[arg(long)]
    pub mtls: Option<String>,
    /// Issuer name (from the config) of the caller's token.
    #[arg(long)]
    pub issuer: Option<String>,
    /// A token claim `name=value`; the value is read as JSON when it parses, else as a string
    /// (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// A credential that is rejected with this reason code (e.g. token_expired).
    #[arg(long)]
    pub invalid: Option<String>,
    /// Decision time (RFC 3339).
    #[arg(long)]
    pub time: Option<String>,
}

/// Decides and explains one request; `Ok(false)` when the input had problems or a stated
/// `expect` did not hold.
pub fn run(args: &CheckArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let w = CliError::write("the report");
    let mut reporter = Reporter::default();
    let (config, policies) = match crate::load(&args.config) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            write!(out, "{}", reporter.render_all(&diagnostics)).map_err(w)?;
            return Ok(false);
        }
    };
    let (source, text) = match input(args) {
        Ok(input) => input,
        Err(message) => {
            writeln!(out, "error: {message}").map_err(w)?;
            return Ok(false);
        }
    };
    let cx = case::Context {
        config: &config,
        policies: &policies,
        now: SystemTime::now(),
    };
    let case = match case::parse_check_request(&source, &text, &cx) {
        Ok(case) => case,
        Err(diagnostics) => {
            write!(out, "{}", reporter.render_all(&diagnostics)).map_err(w)?;
            return Ok(false);
        }
    };
    let decision = case.decide(&config, &policies);
    let report = explain(&config, &policies, &case, &decision);
    write!(out, "{report}").map_err(CliError::write("the report"))?;
    let mismatches = case
        .expect
        .as_ref()
        .map(|e| e.mismatches(&decision))
        .unwrap_or_default();
    if let Some(expect) = &case.expect {
        if mismatches.is_empty() {
            writeln!(out, "\nexpect: ok ({})", expect.describe())
                .map_err(CliError::write("the report"))?;
        } else {
            writeln!(out, "\nexpect: FAILED ({})", mismatches.join("; "))
                .map_err(CliError::write("the report"))?;
        }
    }
    Ok(mismatches.is_empty())
}

/// The request document and the name to report it under.
fn input(args: &CheckArgs) -> Result<(PathBuf, String), String> {
    let flags_used = args.path.is_some()
        || args.host.is_some()
        || args.service.is_some()
        || !args.headers.is_empty()
        || !args.context_extensions.is_empty()
        || args.source_ip.is_some()
        || args.mtls.is_some()
        || args.issuer.is_some()
        || !args.claims.is_empty()
        || args.invalid.is_some()
        || args.time.is_some();
    match &args.file {
        Some(file) if flags_used => Err(format!(
            "give the request as a file ({}) or as flags, not both",
            file.display()
        )),
        Some(file) if file == Path::new("-") => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read stdin: {e}"))?;
            Ok((PathBuf::from("<stdin>"), text))
        }
        Some(file) => std::fs::read_to_string(file)
            .map(|text| (file.clone(), text))
            .map_err(|e| format!("{}: cannot read: {e}", file.display())),
        None => {
            if args.path.is_none() {
                return Err(
                    "say which request to check: a request file, `-` for stdin, or --path (with --method, --service, --issuer, --claim …)"
                        .into(),
                );
            }
            let document = flags_document(args)?;
            Ok((PathBuf::from("<command line>"), document.to_string()))
        }
    }
}

/// The flags as a request document in the test case format (JSON is YAML), so that they are
/// checked exactly like a file.
fn flags_document(args: &CheckArgs) -> Result<Value, String> {
    let mut request = Map::new();
    request.insert("method".into(), args.method.as_str().into());
    for (key, value) in [
        ("path", &args.path),
        ("host", &args.host),
        ("service", &args.service),
    ] {
        if let Some(v) = value {
            request.insert(key.into(), v.as_str().into());
        }
    }
    let mut headers = Map::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}` must be `name: value`"))?;
        headers.insert(name.trim().to_string(), value.trim().into());
    }
    request.insert("headers".into(), Value::Object(headers));
    let mut extensions = Map::new();
    for e in &args.context_extensions {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| format!("--context-extension `{e}` must be `key=value`"))?;
        extensions.insert(k.to_string(), v.into());
    }
    request.insert("context_extensions".into(), Value::Object(extensions));
    if let Some(ip) = &args.source_ip {
        request.insert("source".into(), json!({ "ip": ip }));
    }
    let mut doc = Map::new();
    doc.insert("request".into(), Value::Object(request));
    let identity = match (&args.issuer, &args.invalid, &args.mtls) {
        (None, None, None) if args.claims.is_empty() => None,
        (Some(issuer), None, None) => {
            let mut claims = Map::new();
            for c in &args.claims {
                let (k, v) = c
                    .split_once('=')
                    .ok_or_else(|| format!("--claim `{c}` must be `name=value`"))?;
                let value = serde_json::from_str(v).unwrap_or_else(|_| Value::from(v));
                claims.insert(k.to_string(), value);
            }
            Some(json!({ "issuer": issuer, "claims": claims }))
        }
        (None, Some(reason), None) if args.claims.is_empty() => Some(json!({ "invalid": reason })),
        (None, None, Some(peer)) if args.claims.is_empty() => Some(json!({ "mtls": peer })),
        (None, None, None) => return Err("--claim needs --issuer".into()),
        _ => {
            return Err("the caller is one of: --issuer with --claim, --invalid, or --mtls".into());
        }
    };
    if let Some(identity) = identity {
        doc.insert("identity".into(), identity);
    }
    if let Some(t) = &args.time {
        doc.insert("time".into(), t.as_str().into());
    }
    Ok(Value::Object(doc))
}

/// The full report for one decision.
pub fn explain(
    config: &Config,
    policies: &PolicySnapshot,
    case: &Case,
    decision: &Decision,
) -> String {
    let mut s = String::new();
    let r = &case.request;
    let target = if r.query.is_empty() {
        r.path.clone()
    } else {
        format!("{}?{}", r.path, r.query)
    };
    s.push_str(&format!(
        "request:  {} {} (host {}{})\n",
        r.method,
        target,
        r.host,
        r.context_extensions
            .get("service")
            .map(|svc| format!(", service {svc}"))
            .unwrap_or_default()
    ));
    s.push_str(&format!("caller:   {}\n", caller_text(config, case)));
    s.push_str(&format!(
        "route:    {}\n",
        decision.route.as_deref().unwrap_or("(none)")
    ));
    s.push_str(&format!("decision: {}\n", describe_decision(decision)));
    s.push_str(&deciding_lines(decision, policies, ""));
    if !decision.errors.is_empty() {
        for e in &decision.errors {
            s.push_str(&format!("error:    {e}\n"));
        }
    }
    s.push('\n');
    let Some(cedar) = &decision.cedar else {
        s.push_str("why:\n");
        s.push_str(&format!("  {}\n", before_policies(config, case, decision)));
        return s;
    };
    s.push_str("cedar request:\n");
    s.push_str(&format!("  principal: {}\n", cedar.principal));
    s.push_str(&format!("  action:    {}\n", cedar.action));
    s.push_str(&format!("  resource:  {}\n", cedar.resource));
    let context = serde_json::to_string_pretty(&cedar.context).unwrap_or_default();
    s.push_str(&format!(
        "  context:   {}\n",
        context.replace('\n', "\n             ")
    ));
    s.push_str("entities from the request:\n");
    for e in &cedar.entities {
        s.push_str(&format!("  {}\n", entity_line(e)));
    }
    if let Some(entities) = static_entities_note(policies) {
        s.push_str(&format!("  {entities}\n"));
    }
    s.push('\n');
    s.push_str("why:\n");
    match analyse(policies, cedar) {
        Ok(analysis) => s.push_str(&why(policies, decision, cedar, &analysis)),
        Err(e) => s.push_str(&format!("  (no explanation: {e})\n")),
    }
    s
}

fn caller_text(config: &Config, case: &Case) -> String {
    match case.identity(config) {
        Ok(cedargate_core::identity::Identity::Anonymous) => "anonymous (no credential)".into(),
        Ok(cedargate_core::identity::Identity::Peer(p)) => format!("mTLS peer {p}"),
        Ok(cedargate_core::identity::Identity::Token { token, .. }) => {
            let claims = Value::Object(token.claims.clone());
            format!(
                "token from issuer {} with claims {claims}",
                token.issuer.name
            )
        }
        Err(e) => format!("rejected credential ({}: {e})", e.reason()),
    }
}

fn static_entities_note(policies: &PolicySnapshot) -> Option<String> {
    let n = policies.entities.iter().count();
    (n > 0).then(|| format!("(plus {n} static entities: {ENTITIES_FILE} and the schema's actions)"))
}

/// Why a request was decided before Cedar saw it.
fn before_policies(config: &Config, case: &Case, d: &Decision) -> String {
    let r = &case.request;
    match d.reason {
        "no_route" => format!(
            "no route in {} matches {} {} (service {}, host {}); add a route, or set `unmatched_route: default` to let policies decide unlisted paths",
            config.source.display(),
            r.method,
            r.path,
            r.context_extensions
                .get("service")
                .map_or("(none)", String::as_str),
            r.host
        ),
        "headers_too_large" => format!(
            "the request headers ({} bytes) exceed limits.max_header_bytes ({})",
            r.header_bytes, config.limits.max_header_bytes
        ),
        reason => format!(
            "the credential was rejected ({reason}) before any policy ran: a bad credential is a {} whatever the policies say",
            d.status
        ),
    }
}

/// How one policy relates to the request.
#[derive(Debug)]
struct PolicyAnalysis {
    id: String,
    effect: Effect,
    file: PathBuf,
    reason: Option<Arc<str>>,
    /// Whether the principal, action and resource constraints each hold.
    scope: [Option<bool>; 3],
    /// The scope constraints as written.
    scope_text: [String; 3],
    /// Each `when`/`unless` clause with its parts' values (only when the scope matched).
    clauses: Vec<ClauseAnalysis>,
}

#[derive(Debug)]
struct ClauseAnalysis {
    /// `when` or `unless`.
    kind: &'static str,
    /// The clause's top-level `&&` parts with their values, in order.
    parts: Vec<(String, Outcome)>,
    /// The whole clause's value.
    value: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    True,
    False,
    /// Evaluation error (Cedar then skips the policy).
    Error(String),
    /// Not a boolean (cannot happen in a validated policy) or not analysable.
    Unknown(String),
}

impl Outcome {
    fn text(&self) -> String {
        match self {
            Outcome::True => "true".into(),
            Outcome::False => "false".into(),
            Outcome::Error(e) => format!("error: {e}"),
            Outcome::Unknown(e) => format!("? ({e})"),
        }
    }
}

impl PolicyAnalysis {
    fn scope_matches(&self) -> bool {
        self.scope.iter().all(|s| *s == Some(true))
    }

    /// The policy would be satisfied: scope matches and every `when` is true, every `unless`
    /// false.
    fn satisfied(&self) -> bool {
        self.scope_matches()
            && self.clauses.iter().all(|c| match c.kind {
                "when" => c.value == Outcome::True,
                _ => c.value == Outcome::False,
            })
    }

    fn errored(&self) -> bool {
        self.clauses
            .iter()
            .any(|c| matches!(c.value, Outcome::Error(_)))
    }

    fn header(&self) -> String {
        let effect = if self.effect == Effect::Permit {
            "permit"
        } else {
            "forbid"
        };
        match &self.reason {
            Some(r) => format!("{effect} {} ({}) — {r}", self.id, self.file.display()),
            None => format!("{effect} {} ({})", self.id, self.file.display()),
        }
    }
}

/// Analyses every policy against the request, in file then id order.
fn analyse(policies: &PolicySnapshot, cedar: &CedarRequest) -> Result<Vec<PolicyAnalysis>, String> {
    let (request, entities) = policies.cedar_inputs(cedar).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for policy in policies.policies.policies() {
        let id = policy.id().to_string();
        let info = policies.info.get(&id);
        let template = match policy.to_pst() {
            Ok(pst::Policy::Static(p)) => p.body().clone(),
            Ok(_) => continue,
            Err(e) => return Err(format!("policy {id}: {e}")),
        };
        let scope = [
            scope_holds(&template, Part::Principal, &request, &entities),
            scope_holds(&template, Part::Action, &request, &entities),
            scope_holds(&template, Part::Resource, &request, &entities),
        ];
        let scope_text = [
            scope_text(&template, Part::Principal),
            scope_text(&template, Part::Action),
            scope_text(&template, Part::Resource),
        ];
        let clauses = if scope.iter().all(|s| *s == Some(true)) {
            template
                .clauses()
                .iter()
                .map(|c| clause(c, &request, &entities))
                .collect()
        } else {
            Vec::new()
        };
        out.push(PolicyAnalysis {
            id,
            effect: policy.effect(),
            file: info.map(|i| i.file.clone()).unwrap_or_default(),
            reason: info.and_then(|i| i.reason.clone()),
            scope,
            scope_text,
            clauses,
        });
    }
    out.sort_by(|a, b| (&a.file, &a.id).cmp(&(&b.file, &b.id)));
    Ok(out)
}

#[derive(Clone, Copy)]
enum Part {
    Principal,
    Action,
    Resource,
}

/// Whether one scope constraint holds: a permit with only that constraint, authorized alone.
fn scope_holds(
    template: &pst::Template,
    part: Part,
    request: &Request,
    entities: &Entities,
) -> Option<bool> {
    let mut only = pst::Template::new(
        template.id.clone(),
        pst::Effect::Permit,
        pst::PrincipalConstraint::Any,
        pst::ActionConstraint::Any,
        pst::ResourceConstraint::Any,
    );
    match part {
        Part::Principal => only.principal = template.principal.clone(),
        Part::Action => only.action = template.action.clone(),
        Part::Resource => only.resource = template.resource.clone(),
    }
    let policy = pst::StaticPolicy::try_from(only).ok()?;
    let policy = Policy::from_pst(pst::Policy::Static(policy)).ok()?;
    let set = PolicySet::from_policies([policy]).ok()?;
    let response = Authorizer::new().is_authorized(request, &set, entities);
    Some(response.decision() == CedarDecision::Allow)
}

/// A scope constraint as Cedar prints it (`principal in Group::"staff"`).
fn scope_text(template: &pst::Template, part: Part) -> String {
    let text = pst::Template::new(
        template.id.clone(),
        pst::Effect::Permit,
        match part {
            Part::Principal => template.principal.clone(),
            _ => pst::PrincipalConstraint::Any,
        },
        match part {
            Part::Action => template.action.clone(),
            _ => pst::ActionConstraint::Any,
        },
        match part {
            Part::Resource => template.resource.clone(),
            _ => pst::ResourceConstraint::Any,
        },
    )
    .to_string();
    let name = match part {
        Part::Principal => "principal",
        Part::Action => "action",
        Part::Resource => "resource",
    };
    // The printed policy lists `principal`, `action` and `resource` in order; keep our part.
    let inner = text
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map_or(text.as_str(), |(inner, _)| inner);
    inner
        .split(',')
        .map(str::trim)
        .find(|p| p.starts_with(name))
        .map_or_else(|| name.to_string(), str::to_string)
}

fn clause(c: &pst::Clause, request: &Request, entities: &Entities) -> ClauseAnalysis {
    let (kind, expr) = match c {
        pst::Clause::When(e) => ("when", e),
        pst::Clause::Unless(e) => ("unless", e),
    };
    let mut conjuncts = Vec::new();
    flatten_and(expr, &mut conjuncts);
    let mut parts = Vec::new();
    for part in conjuncts {
        let mut text = part.to_string();
        let value = eval(&text, request, entities);
        let stop = value != Outcome::True;
        if value == Outcome::False {
            text.push_str(&operands(part, request, entities));
        }
        parts.push((text, value));
        // `&&` short-circuits: later parts were never evaluated.
        if stop {
            break;
        }
    }
    let value = eval(&expr.to_string(), request, entities);
    ClauseAnalysis { kind, parts, value }
}

/// For a false comparison, the values its non-literal operands had: what an author compares.
fn operands(e: &pst::Expr, request: &Request, entities: &Entities) -> String {
    let pst::Expr::BinaryOp { left, right, .. } = e else {
        return String::new();
    };
    let shown: Vec<String> = [left, right]
        .into_iter()
        .filter(|side| !matches!(side.as_ref(), pst::Expr::Literal(_)))
        .filter_map(|side| {
            let text = side.to_string();
            let expr = Expression::from_str(&text).ok()?;
            let value = cedar_policy::eval_expression(request, entities, &expr).ok()?;
            Some(format!("{text} = {value}"))
        })
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!("   [{}]", shown.join(", "))
    }
}

fn flatten_and<'a>(e: &'a pst::Expr, out: &mut Vec<&'a pst::Expr>) {
    match e {
        pst::Expr::BinaryOp {
            op: pst::BinaryOp::And,
            left,
            right,
        } => {
            flatten_and(left, out);
            flatten_and(right, out);
        }
        other => out.push(other),
    }
}

fn eval(text: &str, request: &Request, entities: &Entities) -> Outcome {
    let expr = match Expression::from_str(text) {
        Ok(e) => e,
        Err(e) => return Outcome::Unknown(e.to_string()),
    };
    match cedar_policy::eval_expression(request, entities, &expr) {
        Ok(EvalResult::Bool(true)) => Outcome::True,
        Ok(EvalResult::Bool(false)) => Outcome::False,
        Ok(other) => Outcome::Unknown(format!("not a boolean: {other:?}")),
        Err(e) => Outcome::Error(e.to_string()),
    }
}

/// The explanation proper.
fn why(
    policies: &PolicySnapshot,
    decision: &Decision,
    cedar: &CedarRequest,
    analysis: &[PolicyAnalysis],
) -> String {
    let mut s = String::new();
    let permits: Vec<&PolicyAnalysis> = analysis
        .iter()
        .filter(|a| a.effect == Effect::Permit)
        .collect();
    let forbids: Vec<&PolicyAnalysis> = analysis
        .iter()
        .filter(|a| a.effect == Effect::Forbid)
        .collect();
    let fired_forbids: Vec<&&PolicyAnalysis> = forbids.iter().filter(|a| a.satisfied()).collect();
    let fired_permits: Vec<&&PolicyAnalysis> = permits.iter().filter(|a| a.satisfied()).collect();
    let near_permits: Vec<&&PolicyAnalysis> = permits
        .iter()
        .filter(|a| a.scope_matches() && !a.satisfied())
        .collect();
    let near_forbids: Vec<&&PolicyAnalysis> = forbids
        .iter()
        .filter(|a| a.scope_matches() && !a.satisfied())
        .collect();

    match decision.reason {
        "allow" => {
            s.push_str("  allowed: at least one permit fired and no forbid did.\n");
            list(&mut s, "permits that fired", &fired_permits, false);
            list(
                &mut s,
                "forbids whose scope matched but whose condition did not hold (so they did not fire)",
                &near_forbids,
                true,
            );
        }
        "forbid" => {
            s.push_str("  denied by a forbid policy (forbids override every permit).\n");
            list(&mut s, "forbids that fired", &fired_forbids, true);
            if fired_permits.is_empty() {
                s.push_str("  no permit would have allowed it either.\n");
            } else {
                list(
                    &mut s,
                    "permits that would otherwise have allowed it",
                    &fired_permits,
                    false,
                );
            }
        }
        "policy_error" => {
            s.push_str(
                "  denied because a forbid policy failed to evaluate: a broken guardrail fails closed.\n",
            );
            let errored: Vec<&&PolicyAnalysis> = forbids.iter().filter(|a| a.errored()).collect();
            list(&mut s, "forbids that errored", &errored, true);
        }
        _ => {
            s.push_str(&format!(
                "  denied: no permit policy fired for {} doing {} on {} (default deny).\n",
                cedar.principal, cedar.action, cedar.resource
            ));
            if near_permits.is_empty() {
                s.push_str(
                    "  no permit policy's scope matches this principal, action and resource.\n",
                );
            } else {
                list(
                    &mut s,
                    "permits whose scope matched but whose condition was false",
                    &near_permits,
                    true,
                );
            }
            let action_permits: Vec<&&PolicyAnalysis> = permits
                .iter()
                .filter(|a| a.scope[1] == Some(true) && !a.scope_matches())
                .collect();
            if !action_permits.is_empty() {
                s.push_str(&format!(
                    "  permits covering {} whose principal or resource did not match:\n",
                    cedar.action
                ));
                for a in action_permits {
                    s.push_str(&format!("    - {}\n", a.header()));
                    s.push_str(&format!("        scope: {}\n", scope_marks(a)));
                }
            }
            if near_permits.is_empty()
                && !permits
                    .iter()
                    .any(|a| a.scope_text[1] != "action" && a.scope[1] == Some(true))
            {
                s.push_str(&format!(
                    "  no permit names {} in its scope; a policy such as\n    permit (principal in Group::\"…\", action == {}, resource == {});\n  would open it.\n",
                    cedar.action, cedar.action, cedar.resource
                ));
            }
            if !decision.policies.is_empty() {
                s.push_str(&deciding_lines(decision, policies, "  "));
            }
        }
    }
    s
}

fn list(s: &mut String, title: &str, items: &[&&PolicyAnalysis], conditions: bool) {
    if items.is_empty() {
        return;
    }
    s.push_str(&format!("  {title}:\n"));
    for a in items {
        s.push_str(&format!("    - {}\n", a.header()));
        if conditions {
            for c in &a.clauses {
                s.push_str(&format!(
                    "        {} {{ … }} is {}\n",
                    c.kind,
                    c.value.text()
                ));
                for (text, value) in &c.parts {
                    s.push_str(&format!("          {text}  →  {}\n", value.text()));
                }
            }
        }
    }
}

fn scope_marks(a: &PolicyAnalysis) -> String {
    a.scope
        .iter()
        .zip(&a.scope_text)
        .map(|(ok, text)| {
            let mark = match ok {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            };
            format!("{text} {mark}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
