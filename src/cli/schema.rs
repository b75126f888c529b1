//! `cedargate schema`: prints a Cedar schema for the entities, actions and context that cedargate
//! builds with a given config, so policy authors start from a schema that validates.
//!
//! Derived from the config (principal types per issuer, group parents, claim attributes, mTLS and
//! anonymous types, one action per route and method, resource types) and from the static
//! entities file (attribute types and parents of the entity types it holds). The context type
//! mirrors what `mapping` builds; `cedargate test` warns when a built context stops matching the
//! schema, which keeps the two honest. Claim types are unknown until a token arrives, so claim
//! attributes are emitted as optional `String`s with a note to adjust them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use serde_json::Value;

use crate::cli::{CliError, Reporter};
use crate::config::{Config, PrincipalMapping};
use crate::policy::ENTITIES_FILE;

/// Arguments of `cedargate schema`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// Config file.
    #[arg(short, long, default_value = "cedargate.yaml")]
    pub config: PathBuf,
}

/// Prints the schema; `Ok(false)` when the config does not load.
pub fn run(args: &SchemaArgs, out: &mut dyn Write) -> Result<bool, CliError> {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            let diagnostics = crate::cli::config_diagnostics(&e);
            write!(out, "{}", Reporter::default().render_all(&diagnostics))
                .map_err(CliError::write("the schema"))?;
            return Ok(false);
        }
    };
    let entities = std::fs::read_to_string(config.policy_dir.join(ENTITIES_FILE))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    write!(out, "{}", generate(&config, entities.as_ref()))
        .map_err(CliError::write("the schema"))?;
    Ok(true)
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

/// The schema text for `config`, with attribute types inferred from `entities` (the parsed
/// `entities.json`), when given.
pub fn generate(config: &Config, entities: Option<&Value>) -> String {
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
    if let Some(Value::Array(list)) = entities {
        infer_static(list, &mut types);
    }

    let mut s = String::new();
    s.push_str(&format!(
        "// Cedar schema for the requests cedargate builds with {}.\n// Generated by `cedargate schema`: review it, tighten the claim attribute types, and keep it\n// beside the policies as the one *.cedarschema file.\n\n",
        config.source.display()
    ));
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
    s.push_str("type RequestContext = {\n  request: RequestFacts,\n  source: {\n    ip?: ipaddr,\n    principal?: String,\n  },\n  authenticated: Bool,\n  token?: TokenFacts,\n  grpc?: {\n    service: String,\n    method: String,\n  },\n  time: {\n    epoch: Long,\n    hour: Long,\n    weekday: Long,\n  },\n};\n\n");

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
    if config.unmatched == crate::config::Unmatched::Default {
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
fn infer_static(list: &[Value], types: &mut BTreeMap<String, EntityDecl>) {
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for entity in list {
        let Some(ty) = entity
            .get("uid")
            .and_then(|u| u.get("type"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let decl = types.entry(ty.to_string()).or_default();
        decl.roles
            .insert(format!("static entities in {ENTITIES_FILE}"));
        if let Some(Value::Array(parents)) = entity.get("parents") {
            for p in parents {
                if let Some(pt) = p.get("type").and_then(Value::as_str) {
                    decl.parents.insert(pt.to_string());
                }
            }
        }
        let entry = seen.entry(ty.to_string()).or_default();
        entry.entities += 1;
        if let Some(Value::Object(attrs)) = entity.get("attrs") {
            for (name, value) in attrs {
                let slot = entry
                    .attributes
                    .entry(name.clone())
                    .or_insert_with(|| (cedar_type(value), 0));
                slot.1 += 1;
            }
        }
    }
    for (ty, seen) in seen {
        let decl = types.entry(ty).or_default();
        for (name, (cedar, n)) in seen.attributes {
            decl.attributes
                .insert(name, (cedar, n == seen.entities, None));
        }
    }
}

/// The Cedar type of an entity attribute value in Cedar's entity JSON format.
fn cedar_type(value: &Value) -> String {
    match value {
        Value::String(_) => "String".into(),
        Value::Bool(_) => "Bool".into(),
        Value::Number(_) => "Long".into(),
        Value::Array(items) => format!(
            "Set<{}>",
            items.first().map_or_else(|| "String".into(), cedar_type)
        ),
        Value::Object(map) => {
            if let Some(e) = map.get("__entity").or_else(|| {
                (map.len() == 2 && map.contains_key("type") && map.contains_key("id"))
                    .then_some(value)
            }) {
                e.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("String")
                    .to_string()
            } else if let Some(x) = map.get("__extn") {
                match x.get("fn").and_then(Value::as_str) {
                    Some("ip") => "ipaddr".into(),
                    Some("decimal") => "decimal".into(),
                    Some("datetime") => "datetime".into(),
                    Some("duration") => "duration".into(),
                    _ => "String".into(),
                }
            } else {
                let fields: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{}: {}", attr_name(k), cedar_type(v)))
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }
        }
        Value::Null => "String".into(),
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
    fn attribute_names_are_quoted_only_when_needed() {
        assert_eq!(attr_name("tenant"), "tenant");
        assert_eq!(attr_name("user-agent"), "\"user-agent\"");
        assert_eq!(attr_name("1x"), "\"1x\"");
    }

    #[test]
    fn static_attribute_types_are_inferred() {
        assert_eq!(cedar_type(&serde_json::json!("x")), "String");
        assert_eq!(cedar_type(&serde_json::json!([1, 2])), "Set<Long>");
        assert_eq!(
            cedar_type(&serde_json::json!({"__extn": {"fn": "ip", "arg": "10.0.0.1"}})),
            "ipaddr"
        );
        assert_eq!(
            cedar_type(&serde_json::json!({"__entity": {"type": "Tenant", "id": "a"}})),
            "Tenant"
        );
        assert_eq!(cedar_type(&serde_json::json!({"a": true})), "{ a: Bool }");
    }
}
