//! The load-time check that the policies can run on what cedargate builds: Cedar's own strict
//! validator, run against a schema derived from the user's, in which the context of every routed
//! action is the context cedargate actually builds for its routes (the request facts, the
//! configured `context.attributes`, and which of them a request may lack). A policy that reads a
//! context attribute cedargate never provides, or reads without `has` one that a request may
//! lack, or compares one at another type, fails here, naming the policy, the route and Cedar's
//! message, instead of turning every request into a `policy_error` in production.
//!
//! It also checks the principal shapes the config produces against the schema: every
//! claim-mapped attribute is declared on the principal's type, every claim → parent type is a
//! declared parent type. The data itself (a required attribute an entity lacks) can only be
//! judged per request: the merged principal is checked at decision time (`principal_invalid`).
//!
//! Pure: no IO. Only routes whose action the schema declares are checked (the others are
//! reported by `cedargate validate`).

use std::collections::BTreeMap;
use std::path::Path;

use cedar_policy::{ActionConstraint, Schema, SchemaFragment, ValidationMode, Validator};
use serde_json::{Map, Value, json};

use crate::config::{Config, ContextFact, ContextValue};
use crate::policy::{LoadProgress, PolicyLoadError, PolicyProblem, PolicySnapshot};

/// One mismatch between the policies or the schema and what cedargate builds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeProblem {
    /// The policy whose reading can't be served, when the problem is in a policy.
    pub policy: Option<String>,
    /// What is wrong, naming routes, attributes and types.
    pub message: String,
}

impl std::fmt::Display for ShapeProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Loads and validates the policy folder for `config`: the folder itself
/// ([`crate::policy_folder::check`]), everything [`PolicySnapshot::load`] checks, plus that the
/// policies can run on the requests `config` builds ([`check`]): a context attribute no route
/// provides, a claim-mapped attribute or parent type the schema doesn't declare. What `serve`,
/// reload and every offline command load.
pub fn load_checked(dir: &Path, config: &Config) -> Result<PolicySnapshot, PolicyLoadError> {
    load_checked_reporting(dir, config, &mut |_| {})
}

/// [`load_checked`], telling `progress` how far it has come on a large policy set.
pub fn load_checked_reporting(
    dir: &Path,
    config: &Config,
    progress: &mut dyn FnMut(LoadProgress<'_>),
) -> Result<PolicySnapshot, PolicyLoadError> {
    crate::policy_folder::check(dir)?;
    let snapshot = PolicySnapshot::load_reporting(dir, progress)?;
    if snapshot.policy_bytes >= crate::policy::PROGRESS_BYTES {
        progress(LoadProgress::Shapes {
            policies: snapshot.info.len(),
        });
    }
    let problems: Vec<PolicyProblem> = check(config, &snapshot)
        .into_iter()
        .map(|p| {
            let file = p
                .policy
                .as_ref()
                .and_then(|id| snapshot.info.get(id))
                .map_or_else(|| config.source.clone(), |i| i.file.clone());
            PolicyProblem {
                file,
                line: 0,
                column: 0,
                message: p.message,
            }
        })
        .collect();
    if problems.is_empty() {
        Ok(snapshot.with_decision_cache(config.decision_cache_capacity))
    } else {
        Err(PolicyLoadError(problems))
    }
}

/// Every problem found; empty when the policy folder has no schema.
pub fn check(config: &Config, policies: &PolicySnapshot) -> Vec<ShapeProblem> {
    let Some(schema_json) = &policies.schema_json else {
        return Vec::new();
    };
    let mut problems = principal_problems(config, schema_json);
    problems.extend(context_problems(config, policies, schema_json));
    problems
}

/// The routes of each action id, in config order, with the context type each builds.
fn routed_actions(config: &Config, declared: &Map<String, Value>) -> BTreeMap<String, Routed> {
    let mut out: BTreeMap<String, Routed> = BTreeMap::new();
    for route in config.routes.iter() {
        let actions: Vec<String> = match &route.action {
            Some(a) => vec![a.to_string()],
            None => route
                .methods
                .iter()
                .map(|m| format!("{m} {}", route.template.as_str()))
                .collect(),
        };
        let params: Vec<&str> = route.template.params().collect();
        for action in actions {
            let Some(declared_action) = declared.get(&action) else {
                continue;
            };
            let declared_context = declared_action
                .get("appliesTo")
                .and_then(|a| a.get("context"));
            let built = context_type(config, &params, declared_context);
            match out.get_mut(&action) {
                Some(routed) => {
                    routed.context = union(&routed.context, &built);
                    routed.routes.push(route.name.to_string());
                }
                None => {
                    out.insert(
                        action,
                        Routed {
                            context: built,
                            routes: vec![route.name.to_string()],
                        },
                    );
                }
            }
        }
    }
    out
}

/// An action's routes and the context type they build together.
struct Routed {
    /// Cedar JSON-schema record type.
    context: Value,
    /// Route names, for messages.
    routes: Vec<String>,
}

fn context_problems(
    config: &Config,
    policies: &PolicySnapshot,
    schema_json: &Value,
) -> Vec<ShapeProblem> {
    let mut derived = schema_json.clone();
    // Actions of the empty namespace: the only one `Action::"…"` (cedargate's action type) names.
    let Some(actions) = derived
        .get_mut("")
        .and_then(|ns| ns.get_mut("actions"))
        .and_then(Value::as_object_mut)
    else {
        return Vec::new();
    };
    let routed = routed_actions(config, actions);
    if routed.is_empty() {
        return Vec::new();
    }
    for (action, r) in &routed {
        if let Some(applies) = actions
            .get_mut(action)
            .and_then(|a| a.get_mut("appliesTo"))
            .and_then(Value::as_object_mut)
        {
            applies.insert("context".into(), r.context.clone());
        }
    }
    let fragment = SchemaFragment::from_json_value(derived);
    let schema = match fragment.map(|f| Schema::from_schema_fragments([f]).map_err(Box::new)) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return vec![ShapeProblem {
                policy: None,
                message: format!(
                    "the context cedargate builds can't be expressed against this schema: {e}"
                ),
            }];
        }
        Err(e) => {
            return vec![ShapeProblem {
                policy: None,
                message: format!(
                    "the context cedargate builds can't be expressed against this schema: {e}"
                ),
            }];
        }
    };
    let result = Validator::new(schema).validate(&policies.policies, ValidationMode::Strict);
    let mut problems = Vec::new();
    for error in result.validation_errors() {
        let id = error.policy_id().to_string();
        let routes = policy_routes(policies, &id, &routed);
        problems.push(ShapeProblem {
            policy: Some(id),
            message: format!(
                "{error}{}: not in the context cedargate builds for {routes}; map it under `context.attributes` or declare it optional and test with `has` (docs/configuration.md#context)",
                detail(error)
            ),
        });
    }
    problems
}

/// Cedar's explanation beyond the one-line message, when it has one.
fn detail(error: &cedar_policy::ValidationError) -> String {
    use miette::Diagnostic;
    error.help().map(|h| format!(" ({h})")).unwrap_or_default()
}

/// The routes a policy can apply to, for messages: by its action scope.
fn policy_routes(policies: &PolicySnapshot, id: &str, routed: &BTreeMap<String, Routed>) -> String {
    let policy = policies.policies.policy(&cedar_policy::PolicyId::new(id));
    let names: Vec<&str> = match policy.map(cedar_policy::Policy::action_constraint) {
        Some(ActionConstraint::Eq(uid)) => routed
            .get(uid.id().unescaped())
            .map(|r| r.routes.iter().map(String::as_str).collect())
            .unwrap_or_default(),
        Some(ActionConstraint::In(uids)) => uids
            .iter()
            .filter_map(|u| routed.get(u.id().unescaped()))
            .flat_map(|r| r.routes.iter().map(String::as_str))
            .collect(),
        _ => Vec::new(),
    };
    let mut names = names;
    names.dedup();
    if names.is_empty() {
        "its routes".to_string()
    } else {
        format!(
            "route{} {}",
            if names.len() == 1 { "" } else { "s" },
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// An optional attribute of type `ty`.
fn optional(mut ty: Value) -> Value {
    if let Some(map) = ty.as_object_mut() {
        map.insert("required".into(), Value::Bool(false));
    }
    ty
}

fn string() -> Value {
    json!({"type": "String"})
}

fn long() -> Value {
    json!({"type": "Long"})
}

fn boolean() -> Value {
    json!({"type": "Boolean"})
}

fn record(attributes: Vec<(String, Value)>) -> Value {
    json!({"type": "Record", "attributes": attributes.into_iter().collect::<Map<_, _>>()})
}

fn attr(name: &str, ty: Value) -> (String, Value) {
    (name.to_string(), ty)
}

/// The context type cedargate builds for a route with these path parameters: what
/// `mapping::context` writes, attribute by attribute. `declared` (the schema's context type for
/// the action) lends its types to values cedargate can't type itself (claims).
fn context_type(config: &Config, params: &[&str], declared: Option<&Value>) -> Value {
    let optional_strings =
        |names: &[String]| record(names.iter().map(|n| attr(n, optional(string()))).collect());
    let request = record(vec![
        attr("method", string()),
        attr("path", string()),
        attr("host", string()),
        attr("scheme", string()),
        attr("protocol", string()),
        attr("query", optional_strings(&config.context.query)),
        attr("headers", optional_strings(&config.context.headers)),
        attr(
            "params",
            record(params.iter().map(|p| attr(p, string())).collect()),
        ),
    ]);
    let source = record(vec![
        attr(
            "ip",
            optional(json!({"type": "Extension", "name": "ipaddr"})),
        ),
        attr("principal", optional(string())),
    ]);
    let set_of_strings = json!({"type": "Set", "element": {"type": "String"}});
    let token = record(vec![
        attr("issuer", string()),
        attr("iss", string()),
        attr("sub", optional(string())),
        attr("client_id", optional(string())),
        attr("jti", optional(string())),
        attr("aud", set_of_strings.clone()),
        attr("scopes", set_of_strings),
        attr("exp", optional(long())),
        attr("iat", optional(long())),
    ]);
    let grpc = record(vec![attr("service", string()), attr("method", string())]);
    let time = record(vec![
        attr("epoch", long()),
        attr("hour", long()),
        attr("weekday", long()),
    ]);
    let mut attributes = vec![
        attr("request", request),
        attr("source", source),
        attr("authenticated", boolean()),
        attr("token", optional(token)),
        attr("grpc", optional(grpc)),
        attr("time", time),
    ];
    let declared_attr = |name: &str| -> Option<Value> {
        declared
            .and_then(|d| d.get("attributes"))
            .and_then(|a| a.get(name))
            .cloned()
            .map(|mut ty| {
                if let Some(map) = ty.as_object_mut() {
                    map.remove("required");
                }
                ty
            })
    };
    for (name, source) in &config.context.attributes {
        let ty = match source {
            ContextValue::Fact(ContextFact::Authenticated) => Some(boolean()),
            ContextValue::Fact(_) => Some(string()),
            // A claim's type is the token's business: take the declared one, optional (a
            // request may carry no token or no such claim). Undeclared: no policy can read it.
            ContextValue::Claim(_) => declared_attr(name).map(optional),
            ContextValue::Header(_) => Some(optional(string())),
            ContextValue::Param(p) => params.contains(&p.as_str()).then(string),
            ContextValue::Value(v) => value_type(v).or_else(|| declared_attr(name)),
        };
        if let Some(ty) = ty {
            attributes.push(attr(name, ty));
        }
    }
    record(attributes)
}

/// The Cedar type of a constant, when it can be told from the value alone.
fn value_type(value: &Value) -> Option<Value> {
    match value {
        Value::String(_) => Some(string()),
        Value::Bool(_) => Some(boolean()),
        Value::Number(_) => Some(long()),
        Value::Array(items) => {
            let element = value_type(items.first()?)?;
            Some(json!({"type": "Set", "element": element}))
        }
        Value::Object(map) => Some(record(
            map.iter()
                .map(|(k, v)| Some((k.clone(), value_type(v)?)))
                .collect::<Option<Vec<_>>>()?,
        )),
        Value::Null => None,
    }
}

/// Two record types as one that fits both: attributes of either, required only where both
/// require them. Non-record types: the first.
fn union(a: &Value, b: &Value) -> Value {
    let (Some(a_attrs), Some(b_attrs)) = (
        a.get("attributes").and_then(Value::as_object),
        b.get("attributes").and_then(Value::as_object),
    ) else {
        return a.clone();
    };
    let is_required = |ty: &Value| ty.get("required").and_then(Value::as_bool) != Some(false);
    let mut out = Map::new();
    for (name, ty) in a_attrs {
        let merged = match b_attrs.get(name) {
            Some(other) => {
                let mut m = union(ty, other);
                if !(is_required(ty) && is_required(other)) {
                    m = optional(m);
                }
                m
            }
            None => optional(ty.clone()),
        };
        out.insert(name.clone(), merged);
    }
    for (name, ty) in b_attrs {
        if !a_attrs.contains_key(name) {
            out.insert(name.clone(), optional(ty.clone()));
        }
    }
    json!({"type": "Record", "attributes": out})
}

/// Claim-mapped attributes and claim → parent types against the schema's entity declarations.
fn principal_problems(config: &Config, schema_json: &Value) -> Vec<ShapeProblem> {
    let Some(entity_types) = schema_json
        .get("")
        .and_then(|ns| ns.get("entityTypes"))
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for issuer in &config.issuers {
        let mappings = std::iter::once(("principal", &issuer.user))
            .chain(issuer.service.as_ref().map(|s| ("service_principal", s)));
        for (section, mapping) in mappings {
            let where_ = format!("issuer `{}` {section}", issuer.name);
            let Some(decl) = entity_types.get(&*mapping.entity_type) else {
                problems.push(ShapeProblem {
                    policy: None,
                    message: format!(
                        "{where_}: type `{}` is not declared in the schema",
                        mapping.entity_type
                    ),
                });
                continue;
            };
            let member_of: Vec<&str> = decl
                .get("memberOfTypes")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for parent in &mapping.parents {
                if !member_of.contains(&&*parent.entity_type) {
                    problems.push(ShapeProblem {
                        policy: None,
                        message: format!(
                            "{where_}: claim `{}` makes `{}` parents, but the schema declares `{}` in [{}] only; add `{}` to `entity {} in [...]`",
                            parent.claim,
                            parent.entity_type,
                            mapping.entity_type,
                            member_of.join(", "),
                            parent.entity_type,
                            mapping.entity_type
                        ),
                    });
                }
            }
            let declared_attrs = decl
                .get("shape")
                .and_then(|s| s.get("attributes"))
                .and_then(Value::as_object);
            for (attribute, claim) in &mapping.attributes {
                if declared_attrs.is_none_or(|a| !a.contains_key(attribute)) {
                    problems.push(ShapeProblem {
                        policy: None,
                        message: format!(
                            "{where_}: claim `{claim}` becomes attribute `{attribute}` of `{}`, which the schema does not declare; declare `{attribute}?: …` on `entity {}`",
                            mapping.entity_type, mapping.entity_type
                        ),
                    });
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped config and policies: every policy runs on what cedargate builds.
    #[test]
    fn shipped_policies_fit_the_context_cedargate_builds() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = Config::load(&repo.join("cedargate.yaml")).unwrap();
        let policies = PolicySnapshot::load(&config.policy_dir).unwrap();
        assert_eq!(check(&config, &policies), Vec::new());
    }

    /// A config + policy folder in a temporary directory.
    fn load(yaml_extra: &str, schema: &str, policy: &str) -> Vec<ShapeProblem> {
        let dir = tempfile::tempdir().unwrap();
        let policies = dir.path().join("policies");
        std::fs::create_dir(&policies).unwrap();
        std::fs::write(policies.join("s.cedarschema"), schema).unwrap();
        std::fs::write(policies.join("p.cedar"), policy).unwrap();
        let yaml = format!(
            "issuers:\n  - issuer: https://idp.test\n    audiences: [api]\n    jwks_uri: https://idp.test/jwks\n    principal: {{ type: User, parents: [{{ claim: groups, type: Team }}], attributes: {{ dept: dept }} }}\nanonymous_type: Guest\nroutes:\n  - {{ methods: [GET], path: \"/docs/{{id}}\", action: view, resource: {{ type: Doc, id: \"{{id}}\" }} }}\n{yaml_extra}"
        );
        let path = dir.path().join("cedargate.yaml");
        std::fs::write(&path, yaml).unwrap();
        let config = Config::load(&path).unwrap();
        let snapshot = PolicySnapshot::load(&config.policy_dir).unwrap();
        check(&config, &snapshot)
    }

    const SCHEMA: &str = "entity Team; entity User in [Team] { dept?: String }; entity Guest; entity Doc { public: Bool };\n\
        action view appliesTo { principal: [User, Guest], resource: [Doc], context: { is_authenticated: Bool, tenant?: String } };";

    #[test]
    fn a_context_attribute_cedargate_never_builds_is_named_with_policy_and_route() {
        let policy = "@id(\"authn-view\") permit(principal, action == Action::\"view\", resource) when { context.is_authenticated };";
        let problems = load("", SCHEMA, policy);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let text = problems[0].to_string();
        assert!(text.starts_with("for policy `authn-view`"), "{text}");
        assert!(text.contains("is_authenticated"), "{text}");
        assert!(text.contains("route `/docs/{id}`"), "{text}");
        // Mapped: the same policy is fine.
        let mapped = "context:\n  attributes:\n    is_authenticated: { fact: authenticated }\n    tenant: { claim: tenant }\n";
        assert_eq!(load(mapped, SCHEMA, policy), Vec::new());
    }

    #[test]
    fn claim_and_constant_attributes_are_typed() {
        let mapped = "context:\n  attributes:\n    tenant: { claim: tenant }\n";
        let reads = "permit(principal, action == Action::\"view\", resource) when { context has tenant && context.tenant == \"acme\" };";
        assert_eq!(load(mapped, SCHEMA, reads), Vec::new());
        // A constant of the wrong type is a type error.
        let constant = "context:\n  attributes:\n    is_authenticated: { value: \"yes\" }\n";
        let uses = "permit(principal, action == Action::\"view\", resource) when { context.is_authenticated };";
        let problems = load(constant, SCHEMA, uses);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }

    #[test]
    fn claim_attributes_and_parent_types_must_be_declared() {
        let schema = "entity Team; entity User { level?: Long }; entity Guest; entity Doc;\n\
            action view appliesTo { principal: [User, Guest], resource: [Doc], context: {} };";
        let problems = load("", schema, "permit(principal, action, resource);");
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text[0].contains("claim `groups` makes `Team` parents"),
            "{text:?}"
        );
        assert!(text[1].contains("attribute `dept` of `User`"), "{text:?}");
    }
}
