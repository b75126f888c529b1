//! `cedargate schema`: prints a Cedar schema for the entities, actions and context that cedargate
//! builds with a given config, so policy authors start from a schema that validates.
//!
//! Derived from the config (principal types per issuer, parent types per claim, claim attributes,
//! mTLS and anonymous types, one action per route and method, resource types, entity provider
//! types, user-named context attributes) and from the static entities file, read in either of
//! Cedar's JSON forms by Cedar's own parser (attribute types and direct parents of the entity
//! types it holds). The context type mirrors what `mapping` builds; `cedargate test` warns when a
//! built context stops matching the schema, which keeps the two honest. Claim types are unknown
//! until a token arrives, so claim attributes are emitted as optional `String`s with a note to
//! adjust them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use cedar_policy::{Entity, EvalResult};
use serde_json::Value;

use crate::{CliError, Reporter};
use cedargate_core::config::{Config, ContextFact, ContextValue, PrincipalMapping};
use cedargate_core::policy::ENTITIES_FILE;

/// Arguments of `cedargate schema`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// Config file.
    #[arg(
        short,
        long,
        env = "CEDARGATE_CONFIG",
        default_value = "cedargate.yaml"
    )]
    pub config: PathBuf,
}

/// Prints the schema; `Ok(false)` when the config does not load.
pub fn run(args: &SchemaArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            // A broken config is an error (stderr): stdout holds only a schema, if anything.
            let diagnostics = crate::config_diagnostics(&e);
            write!(err, "{}", Reporter::default().render_all(&diagnostics))
                .map_err(CliError::write("stderr"))?;
            return Ok(false);
        }
    };
    let entities = read_static(&config.policy_dir.join(ENTITIES_FILE));
    write!(out, "{}", generate(&config, &entities)).map_err(CliError::write("the schema"))?;
    Ok(true)
}

/// What the static entities file gave: its entities as Cedar read them (with their direct
/// parents), and what could not be read, for a note in the output.
#[derive(Default)]
pub struct StaticEntities {
    /// Entities in file order.
    entities: Vec<Entity>,
    /// Why the file, or an entity in it, was not read.
    problems: Vec<String>,
}

/// Reads `entities.json` in either of Cedar's forms (uids and parents as `{"type", "id"}` or as
/// `{"__entity": {"type", "id"}}`), with Cedar's own parser, as `serve` does. A missing file is no
/// entities. Entities are parsed one by one, not as one `Entities` set: the set computes the
/// transitive closure, and an entity's parents would then include its ancestors' types.
pub fn read_static(path: &Path) -> StaticEntities {
    let mut read = StaticEntities::default();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return read,
        Err(e) => {
            read.problems
                .push(format!("{}: cannot read: {e}", path.display()));
            return read;
        }
    };
    let list = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(list)) => list,
        Ok(_) => {
            read.problems
                .push(format!("{}: not a JSON array of entities", path.display()));
            return read;
        }
        Err(e) => {
            read.problems
                .push(format!("{}: not JSON: {e}", path.display()));
            return read;
        }
    };
    for (n, value) in list.into_iter().enumerate() {
        match Entity::from_json_value(value, None) {
            Ok(entity) => read.entities.push(entity),
            Err(e) => read.problems.push(format!(
                "{}: entity #{n} is not Cedar entity JSON: {e}",
                path.display()
            )),
        }
    }
    read
}

/// An entity type as the schema will declare it.
#[derive(Default)]
struct EntityDecl {
    /// Parent types.
    parents: BTreeSet<String>,
    /// Attribute name → (type, required, note).
    attributes: BTreeMap<String, (String, bool, Option<String>)>,
    /// Where cedargate or the entities file makes this type.
    roles: BTreeSet<String>,
}

/// The schema text for `config`, with parents and attribute types inferred from the static
/// entities.
pub fn generate(config: &Config, entities: &StaticEntities) -> String {
    let mut types: BTreeMap<String, EntityDecl> = BTreeMap::new();
    let mut principals = BTreeSet::new();
    for issuer in &config.issuers {
        let mut add = |m: &PrincipalMapping, role: &str| {
            principals.insert(m.entity_type.to_string());
            let decl = types.entry(m.entity_type.to_string()).or_default();
            decl.roles.insert(format!(
                "{role} of issuer {} (id from claim `{}`)",
                issuer.name, m.id_claim
            ));
            decl.parents
                .extend(m.parents.iter().map(|p| p.entity_type.to_string()));
            for parent in &m.parents {
                let group = types.entry(parent.entity_type.to_string()).or_default();
                group
                    .roles
                    .insert(format!("parents from claim `{}`", parent.claim));
                // Group hierarchies (admins in staff) come from the entities file.
                group.parents.insert(parent.entity_type.to_string());
            }
            let decl = types.entry(m.entity_type.to_string()).or_default();
            for (attribute, claim) in &m.attributes {
                decl.attributes.entry(attribute.clone()).or_insert((
                    "String".into(),
                    false,
                    Some(format!("claim `{claim}`; adjust the type to the claim's")),
                ));
            }
        };
        add(&issuer.user, "user principal");
        if let Some(service) = &issuer.service {
            add(service, "service principal (client_credentials)");
        }
    }
    if let Some(mtls) = &config.mtls {
        principals.insert(mtls.entity_type.to_string());
        types
            .entry(mtls.entity_type.to_string())
            .or_default()
            .roles
            .insert("mTLS peer (Envoy's source.principal)".into());
    }
    principals.insert(config.anonymous_type.to_string());
    types
        .entry(config.anonymous_type.to_string())
        .or_default()
        .roles
        .insert("callers without a credential".into());

    // Actions, by id, with the resource types their routes produce.
    let mut actions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut any_method = Vec::new();
    let mut params = BTreeSet::new();
    for route in config.routes.iter() {
        params.extend(route.template.params().map(str::to_string));
        let resource = route
            .resource
            .as_ref()
            .map_or_else(|| config.resource_type.to_string(), |(t, _)| t.to_string());
        types
            .entry(resource.clone())
            .or_default()
            .roles
            .insert("request resource".into());
        let ids: Vec<String> = match (&route.action, route.methods.is_empty()) {
            (Some(a), _) => vec![a.to_string()],
            (None, false) => route
                .methods
                .iter()
                .map(|m| format!("{m} {}", route.template.as_str()))
                .collect(),
            (None, true) => {
                any_method.push(route.template.as_str().to_string());
                Vec::new()
            }
        };
        for id in ids {
            actions.entry(id).or_default().insert(resource.clone());
        }
    }
    infer_static(&entities.entities, &principals, &mut types);
    if let Some(provider) = &config.entity_provider {
        for ty in &provider.types {
            types.entry(ty.clone()).or_default().roles.insert(
                "entity provider (entity_provider.types): declare the attributes it answers".into(),
            );
        }
    }

    let mut s = String::new();
    s.push_str(&format!(
        "// Cedar schema for the requests cedargate builds with {}.\n// Generated by `cedargate schema`: review it, tighten the claim attribute types, and keep it\n// beside the policies as the one *.cedarschema file.\n\n",
        config.source.display()
    ));
    for problem in &entities.problems {
        s.push_str(&format!(
            "// note: {}; parents and attribute types from it are missing below.\n",
            problem.replace('\n', " ")
        ));
    }
    if !entities.problems.is_empty() {
        s.push('\n');
    }
    for (name, decl) in &types {
        for role in &decl.roles {
            s.push_str(&format!("// {name}: {role}\n"));
        }
        s.push_str(&format!("entity {name}"));
        if !decl.parents.is_empty() {
            let parents: Vec<&str> = decl.parents.iter().map(String::as_str).collect();
            s.push_str(&format!(" in [{}]", parents.join(", ")));
        }
        if decl.attributes.is_empty() {
            s.push_str(";\n\n");
        } else {
            s.push_str(" {\n");
            for (attr, (ty, required, note)) in &decl.attributes {
                let opt = if *required { "" } else { "?" };
                let note = note
                    .as_ref()
                    .map(|n| format!("  // {n}"))
                    .unwrap_or_default();
                s.push_str(&format!("  {}{opt}: {ty},{note}\n", attr_name(attr)));
            }
            s.push_str("};\n\n");
        }
    }

    s.push_str("// The context of every request (see `context` in docs/configuration.md).\n");
    s.push_str("type RequestFacts = {\n  method: String,\n  path: String,\n  host: String,\n  scheme: String,\n  protocol: String,\n");
    s.push_str(&record_of_optional_strings("query", &config.context.query));
    s.push_str(&record_of_optional_strings(
        "headers",
        &config.context.headers,
    ));
    s.push_str(&record_of_optional_strings(
        "params",
        &params.into_iter().collect::<Vec<_>>(),
    ));
    s.push_str("};\n");
    s.push_str("type TokenFacts = {\n  issuer: String,\n  iss: String,\n  sub?: String,\n  client_id?: String,\n  jti?: String,\n  aud: Set<String>,\n  scopes: Set<String>,\n  exp?: Long,\n  iat?: Long,\n};\n");
    s.push_str("type RequestContext = {\n  request: RequestFacts,\n  source: {\n    ip?: ipaddr,\n    principal?: String,\n  },\n  authenticated: Bool,\n  token?: TokenFacts,\n  grpc?: {\n    service: String,\n    method: String,\n  },\n  time: {\n    epoch: Long,\n    hour: Long,\n    weekday: Long,\n  },\n");
    for (name, source) in &config.context.attributes {
        s.push_str(&format!("  {}\n", context_attribute(name, source)));
    }
    s.push_str("};\n\n");

    let principal_list: Vec<&str> = principals.iter().map(String::as_str).collect();
    s.push_str("// One action per route and method: \"<METHOD> <path template>\" unless the route sets `action`.\n");
    for (id, resources) in &actions {
        let resources: Vec<&str> = resources.iter().map(String::as_str).collect();
        s.push_str(&format!(
            "action {} appliesTo {{\n  principal: [{}],\n  resource: [{}],\n  context: RequestContext,\n}};\n",
            Value::from(id.as_str()),
            principal_list.join(", "),
            resources.join(", ")
        ));
    }
    for path in any_method {
        s.push_str(&format!(
            "// route {path} matches any method: declare \"<METHOD> {path}\" for each method it serves.\n"
        ));
    }
    if config.unmatched == cedargate_core::config::Unmatched::Default {
        s.push_str("// unmatched_route: default — unlisted requests become \"<METHOD> <path>\" actions; declare the ones policies should allow.\n");
    }
    s
}

/// What the entities file holds for one entity type.
#[derive(Default)]
struct Seen {
    /// Entities of the type.
    entities: usize,
    /// Attribute → (Cedar type of its first value, entities that have it).
    attributes: BTreeMap<String, (String, usize)>,
}

/// Attribute types and parents of the entity types in the static entities file.
fn infer_static(
    entities: &[Entity],
    principals: &BTreeSet<String>,
    types: &mut BTreeMap<String, EntityDecl>,
) {
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for entity in entities {
        let (uid, _, parents) = entity.clone().into_inner();
        let ty = uid.type_name().to_string();
        let decl = types.entry(ty.clone()).or_default();
        decl.roles
            .insert(format!("static entities in {ENTITIES_FILE}"));
        decl.parents
            .extend(parents.iter().map(|p| p.type_name().to_string()));
        let entry = seen.entry(ty).or_default();
        entry.entities += 1;
        for (name, value) in entity.attrs() {
            let cedar = value.map_or_else(|_| "String".to_string(), |v| cedar_type(&v));
            let slot = entry
                .attributes
                .entry(name.to_string())
                .or_insert_with(|| (cedar, 0));
            slot.1 += 1;
        }
    }
    for (ty, seen) in seen {
        // A principal without a static entry has only what its credential says: attributes of
        // static principals are optional.
        let principal = principals.contains(&ty);
        let decl = types.entry(ty).or_default();
        for (name, (cedar, n)) in seen.attributes {
            let required = n == seen.entities && !principal;
            match decl.attributes.get_mut(&name) {
                // Also a claim attribute: keep it optional and its note, take the file's type.
                Some(slot) => slot.0 = cedar,
                None => {
                    decl.attributes.insert(name, (cedar, required, None));
                }
            }
        }
    }
}

/// The declaration of a user-named context attribute (`context.attributes`): required when every
/// request has a value, optional (`?`) when its source may have none.
fn context_attribute(name: &str, source: &ContextValue) -> String {
    let (ty, required, note) = match source {
        ContextValue::Fact(ContextFact::Authenticated) => ("Bool".to_string(), true, None),
        ContextValue::Fact(_) => ("String".to_string(), true, None),
        ContextValue::Claim(claim) => (
            "String".to_string(),
            false,
            Some(format!("claim `{claim}`; adjust the type to the claim's")),
        ),
        ContextValue::Header(header) => (
            "String".to_string(),
            false,
            Some(format!("header `{header}`")),
        ),
        ContextValue::Param(param) => (
            "String".to_string(),
            false,
            Some(format!("path parameter `{param}`")),
        ),
        ContextValue::Value(value) => (constant_type(value), true, None),
    };
    let opt = if required { "" } else { "?" };
    let note = note.map(|n| format!("  // {n}")).unwrap_or_default();
    format!("{}{opt}: {ty},{note}", attr_name(name))
}

/// The Cedar type of a constant context value (plain JSON: config refuses escapes).
fn constant_type(value: &Value) -> String {
    match value {
        Value::Bool(_) => "Bool".into(),
        Value::Number(_) => "Long".into(),
        Value::Array(items) => format!(
            "Set<{}>",
            items.first().map_or_else(|| "String".into(), constant_type)
        ),
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{}: {}", attr_name(k), constant_type(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        Value::String(_) | Value::Null => "String".into(),
    }
}

/// The Cedar type of an attribute value as Cedar read it.
fn cedar_type(value: &EvalResult) -> String {
    match value {
        EvalResult::String(_) => "String".into(),
        EvalResult::Bool(_) => "Bool".into(),
        EvalResult::Long(_) => "Long".into(),
        EvalResult::EntityUid(uid) => uid.type_name().to_string(),
        EvalResult::Set(items) => format!(
            "Set<{}>",
            items
                .iter()
                .next()
                .map_or_else(|| "String".into(), cedar_type)
        ),
        EvalResult::Record(record) => {
            // Without a schema Cedar reads `{"type": "T", "id": "x"}` as a record; with the schema
            // `serve` loads it with, an attribute declared as an entity type accepts that form.
            // An author who wrote it meant a reference.
            if let (2, Some(EvalResult::String(ty)), Some(EvalResult::String(_))) =
                (record.len(), record.get("type"), record.get("id"))
            {
                return ty.clone();
            }
            let fields: Vec<String> = record
                .iter()
                .map(|(k, v)| format!("{}: {}", attr_name(k), cedar_type(v)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        // Cedar prints extension values as their constructor call: `ip("10.0.0.1")`.
        EvalResult::ExtensionValue(call) => match call.split_once('(').map(|(f, _)| f) {
            Some("ip") => "ipaddr".into(),
            Some(f @ ("decimal" | "datetime" | "duration")) => f.into(),
            _ => "String".into(),
        },
    }
}

fn record_of_optional_strings(name: &str, keys: &[String]) -> String {
    if keys.is_empty() {
        return format!("  {name}: {{}},\n");
    }
    let mut s = format!("  {name}: {{\n");
    for k in keys {
        s.push_str(&format!("    {}?: String,\n", attr_name(k)));
    }
    s.push_str("  },\n");
    s
}

/// An attribute name as the schema syntax needs it: bare when an identifier, quoted otherwise.
fn attr_name(name: &str) -> String {
    let ident = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        name.to_string()
    } else {
        Value::from(name).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_attributes_are_declared_by_source() {
        let cases = [
            (
                ContextValue::Fact(ContextFact::Authenticated),
                "is_authenticated: Bool,",
            ),
            (
                ContextValue::Fact(ContextFact::Host),
                "is_authenticated: String,",
            ),
            (
                ContextValue::Claim("tid".into()),
                "is_authenticated?: String,  // claim `tid`; adjust the type to the claim's",
            ),
            (
                ContextValue::Value(serde_json::json!({"a": [1], "b": "x"})),
                "is_authenticated: { a: Set<Long>, b: String },",
            ),
        ];
        for (source, want) in cases {
            assert_eq!(context_attribute("is_authenticated", &source), want);
        }
    }

    #[test]
    fn attribute_names_are_quoted_only_when_needed() {
        assert_eq!(attr_name("tenant"), "tenant");
        assert_eq!(attr_name("user-agent"), "\"user-agent\"");
        assert_eq!(attr_name("1x"), "\"1x\"");
    }

    fn entity(json: Value) -> Entity {
        Entity::from_json_value(json, None).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn static_attribute_types_are_inferred() {
        let e = entity(serde_json::json!({
            "uid": {"type": "User", "id": "a"},
            "attrs": {
                "s": "x",
                "n": [1, 2],
                "ip": {"__extn": {"fn": "ip", "arg": "10.0.0.1"}},
                "d": {"__extn": {"fn": "decimal", "arg": "1.5"}},
                "t": {"__entity": {"type": "Tenant", "id": "a"}},
                "implicit": {"type": "Tenant", "id": "b"},
                "r": {"a": true},
            },
            "parents": [],
        }));
        let types: BTreeMap<String, String> = e
            .attrs()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.map_or_else(|e| e.to_string(), |v| cedar_type(&v)),
                )
            })
            .collect();
        let expected: BTreeMap<String, String> = [
            ("s", "String"),
            ("n", "Set<Long>"),
            ("ip", "ipaddr"),
            ("d", "decimal"),
            ("t", "Tenant"),
            ("implicit", "Tenant"),
            ("r", "{ a: Bool }"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(types, expected);
    }

    /// Both of Cedar's entity JSON forms give the same declarations, with direct parents only.
    #[test]
    fn both_entity_json_forms_give_the_same_declarations() {
        let plain = [
            serde_json::json!({"uid": {"type": "User", "id": "a"}, "attrs": {"tenant": "x"},
                "parents": [{"type": "Team", "id": "t"}]}),
            serde_json::json!({"uid": {"type": "Team", "id": "t"}, "attrs": {},
                "parents": [{"type": "Org", "id": "o"}]}),
        ];
        let escaped = [
            serde_json::json!({"uid": {"__entity": {"type": "User", "id": "a"}}, "attrs": {"tenant": "x"},
                "parents": [{"__entity": {"type": "Team", "id": "t"}}]}),
            serde_json::json!({"uid": {"__entity": {"type": "Team", "id": "t"}}, "attrs": {},
                "parents": [{"__entity": {"type": "Org", "id": "o"}}]}),
        ];
        let declared = |list: &[Value]| {
            let entities: Vec<Entity> = list.iter().cloned().map(entity).collect();
            let mut types = BTreeMap::new();
            infer_static(&entities, &BTreeSet::new(), &mut types);
            types
                .into_iter()
                .map(|(name, d)| {
                    (
                        name,
                        d.parents,
                        d.attributes.into_keys().collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let want = vec![
            (
                "Team".to_string(),
                BTreeSet::from(["Org".to_string()]),
                vec![],
            ),
            (
                "User".to_string(),
                BTreeSet::from(["Team".to_string()]),
                vec!["tenant".to_string()],
            ),
        ];
        assert_eq!(declared(&plain), want);
        assert_eq!(declared(&escaped), want);
    }
}
