//! Why a decision came out as it did, for a policy author: every policy's scope checked part by
//! part, every `when`/`unless` clause split at its top-level `&&` with each part's value, and for
//! a false comparison the values compared. `cedargate check` prints it for one request;
//! `cedargate test` prints it for each failing case.
//!
//! The analysis re-evaluates single policies, scopes and condition parts with Cedar on exactly
//! the inputs the decision used ([`PolicySnapshot::cedar_inputs`]); it never changes a decision
//! and decides nothing itself.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::pst;
use cedar_policy::{
    Authorizer, Decision as CedarDecision, Effect, Entities, EvalResult, Expression, Policy,
    PolicySet, Request,
};

use cedargate_core::decision::Decision;
use cedargate_core::mapping::CedarRequest;
use cedargate_core::policy::PolicySnapshot;

/// The explanation of `decision` (made on `cedar`): what fired, and for what did not, why not.
/// Every line starts with two spaces.
pub fn why(policies: &PolicySnapshot, decision: &Decision, cedar: &CedarRequest) -> String {
    match analyse(policies, cedar) {
        Ok(analysis) => explanation(policies, decision, cedar, &analysis),
        // The inputs themselves were refused (a principal that doesn't conform, unusable
        // provider data): Cedar evaluated no policy.
        Err(e) => format!("  no policy ran: {e}\n"),
    }
}

/// For a test that expected `expected` policies to decide: each of them that did not, and why
/// (its scope part by part, or its conditions' values). Empty when all of them decided.
pub fn expected_not_deciding(
    policies: &PolicySnapshot,
    decision: &Decision,
    cedar: &CedarRequest,
    expected: &[String],
) -> String {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !decision.policies.iter().any(|p| &p.id == *id))
        .collect();
    if missing.is_empty() {
        return String::new();
    }
    let analysis = match analyse(policies, cedar) {
        Ok(analysis) => analysis,
        Err(e) => return format!("  (no explanation: {e})\n"),
    };
    let mut s = String::new();
    for id in missing {
        let Some(a) = analysis.iter().find(|a| &a.id == id) else {
            continue;
        };
        // A default deny's explanation already lists every permit covering the action.
        if decision.reason == "no_permit" && a.effect == Effect::Permit && a.scope[1] == Some(true)
        {
            continue;
        }
        if s.is_empty() {
            s.push_str("  expected policies that did not decide:\n");
        }
        s.push_str(&format!("    - {}\n", a.header()));
        if !a.scope_matches() {
            s.push_str(&format!("        scope: {}\n", scope_marks(a)));
        } else if a.satisfied() {
            s.push_str(&format!(
                "        it fired, but {}\n",
                if a.effect == Effect::Permit && !decision.allowed {
                    "a forbid overrode it"
                } else {
                    "Cedar names only the policies that determined the outcome"
                }
            ));
        } else {
            conditions(&mut s, a);
        }
    }
    s
}

/// `allow (200, reason allow)`.
pub fn describe_decision(d: &Decision) -> String {
    format!(
        "{} ({}, reason {})",
        if d.allowed { "allow" } else { "deny" },
        d.status,
        d.reason
    )
}

/// One `deciding:` line per deciding policy, with its `@reason`.
pub fn deciding_lines(d: &Decision, policies: &PolicySnapshot, prefix: &str) -> String {
    if d.policies.is_empty() {
        return format!("{prefix}deciding: none\n");
    }
    let mut s = String::new();
    for p in &d.policies {
        let effect = match policies.info.get(&p.id).map(|i| i.effect) {
            Some(Effect::Forbid) => "forbid",
            Some(Effect::Permit) => "permit",
            None => "policy",
        };
        match &p.reason {
            Some(r) => s.push_str(&format!("{prefix}deciding: {effect} {} — {r}\n", p.id)),
            None => s.push_str(&format!("{prefix}deciding: {effect} {}\n", p.id)),
        }
    }
    s
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
    parts: Vec<(String, PolicyOutcome)>,
    /// The whole clause's value.
    value: PolicyOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PolicyOutcome {
    True,
    False,
    /// Evaluation error (Cedar then skips the policy).
    Error(String),
    /// Not a boolean (cannot happen in a validated policy) or not analysable.
    Unknown(String),
}

impl PolicyOutcome {
    fn text(&self) -> String {
        match self {
            PolicyOutcome::True => "true".into(),
            PolicyOutcome::False => "false".into(),
            PolicyOutcome::Error(e) => format!("error: {e}"),
            PolicyOutcome::Unknown(e) => format!("? ({e})"),
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
                "when" => c.value == PolicyOutcome::True,
                _ => c.value == PolicyOutcome::False,
            })
    }

    fn errored(&self) -> bool {
        self.clauses
            .iter()
            .any(|c| matches!(c.value, PolicyOutcome::Error(_)))
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
        let stop = value != PolicyOutcome::True;
        if value == PolicyOutcome::False {
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

fn eval(text: &str, request: &Request, entities: &Entities) -> PolicyOutcome {
    let expr = match Expression::from_str(text) {
        Ok(e) => e,
        Err(e) => return PolicyOutcome::Unknown(e.to_string()),
    };
    match cedar_policy::eval_expression(request, entities, &expr) {
        Ok(EvalResult::Bool(true)) => PolicyOutcome::True,
        Ok(EvalResult::Bool(false)) => PolicyOutcome::False,
        Ok(other) => PolicyOutcome::Unknown(format!("not a boolean: {other:?}")),
        Err(e) => PolicyOutcome::Error(e.to_string()),
    }
}

/// The explanation proper.
fn explanation(
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

fn list(s: &mut String, title: &str, items: &[&&PolicyAnalysis], with_conditions: bool) {
    if items.is_empty() {
        return;
    }
    s.push_str(&format!("  {title}:\n"));
    for a in items {
        s.push_str(&format!("    - {}\n", a.header()));
        if with_conditions {
            conditions(s, a);
        }
    }
}

/// Each clause of `a` with its value, and each `&&`-part with its value.
fn conditions(s: &mut String, a: &PolicyAnalysis) {
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
