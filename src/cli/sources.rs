//! Where each entity type's data comes from, as `cedargate validate` reports it: the verified token
//! (which issuer mapping: id claim, parent claims, attribute claims), the request (route
//! resources, mTLS peers, the anonymous caller), `entities.json` (how many entities), and the
//! entity provider (`entity_provider.types`). A principal type that `entities.json` also describes
//! is flagged: its static data is merged into the principal (see [`crate::policy`]), which an
//! author should know, though it is not an error.
//!
//! Read from the loaded config and policy set only; nothing here decides or fetches.

use std::collections::{BTreeMap, BTreeSet};

use crate::cli::plural;
use crate::config::{Config, PrincipalMapping};
use crate::policy::{ENTITIES_FILE, PolicySnapshot};

/// One source of one entity type's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `token`, `mtls`, `request`, `static`, `provider` or `schema`.
    pub kind: &'static str,
    /// What it gives, in a few words.
    pub text: String,
}

/// Every source of one entity type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeSources {
    /// Its sources, in the order they are found (token, request, static, provider).
    pub sources: Vec<Source>,
    /// Something to know that is not a problem (static data merged into a principal).
    pub notes: Vec<String>,
}

/// What `entities.json` holds for one type.
#[derive(Default)]
struct Static {
    /// Entities of the type.
    count: usize,
    /// Attribute names any of them has.
    attributes: BTreeSet<String>,
    /// Whether any of them has parents.
    parents: bool,
}

/// The sources of every entity type the config, the static entities, the provider and the
/// schema involve, by type name.
pub fn entity_sources(config: &Config, policies: &PolicySnapshot) -> BTreeMap<String, TypeSources> {
    let mut types: BTreeMap<String, TypeSources> = BTreeMap::new();
    // Principal types, and how each is merged with the entity sources, for the notes.
    let mut principals: BTreeMap<String, &'static str> = BTreeMap::new();
    for issuer in &config.issuers {
        let mut mappings = vec![(&issuer.user, format!("{} tokens", issuer.name))];
        if let Some(service) = &issuer.service {
            mappings.push((
                service,
                format!("{} client-only tokens (client_credentials)", issuer.name),
            ));
        }
        for (m, whose) in mappings {
            principals.insert(m.entity_type.to_string(), "token");
            add(
                &mut types,
                &m.entity_type,
                "token",
                format!("principal of {whose}: {}", mapping_text(m)),
            );
            for p in &m.parents {
                add(
                    &mut types,
                    &p.entity_type,
                    "token",
                    format!(
                        "parents of {} ({}), ids ← claim `{}`",
                        m.entity_type, issuer.name, p.claim
                    ),
                );
            }
        }
    }
    if let Some(mtls) = &config.mtls {
        principals
            .entry(mtls.entity_type.to_string())
            .or_insert("mtls");
        add(
            &mut types,
            &mtls.entity_type,
            "mtls",
            "principal of mTLS peers, id = Envoy's source.principal".into(),
        );
    }
    principals
        .entry(config.anonymous_type.to_string())
        .or_insert("anonymous");
    add(
        &mut types,
        &config.anonymous_type,
        "request",
        format!(
            "principal of callers without a credential ({}::{})",
            config.anonymous_type,
            serde_json::Value::from(&*config.anonymous_id)
        ),
    );
    let mut resources: BTreeMap<String, usize> = BTreeMap::new();
    for route in config.routes.iter() {
        let ty = route
            .resource
            .as_ref()
            .map_or_else(|| config.resource_type.to_string(), |(t, _)| t.to_string());
        *resources.entry(ty).or_default() += 1;
    }
    for (ty, n) in &resources {
        add(
            &mut types,
            ty,
            "request",
            format!("resource of {}", plural(*n, "route", "routes")),
        );
    }

    let mut statics: BTreeMap<String, Static> = BTreeMap::new();
    for entity in policies.entities.iter() {
        let uid = entity.uid();
        // The schema's actions are added to the loaded set; they are not the file's data.
        if uid.type_name().basename() == "Action" {
            continue;
        }
        let entry = statics.entry(uid.type_name().to_string()).or_default();
        entry.count += 1;
        entry
            .attributes
            .extend(entity.attrs().map(|(name, _)| name.to_string()));
        entry.parents |= policies
            .entities
            .ancestors(&uid)
            .is_some_and(|mut a| a.next().is_some());
    }
    for (ty, s) in &statics {
        let mut what = Vec::new();
        if s.parents {
            what.push("parents".to_string());
        }
        if !s.attributes.is_empty() {
            what.push(format!(
                "attributes {}",
                s.attributes.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let what = if what.is_empty() {
            String::new()
        } else {
            format!(" ({})", what.join("; "))
        };
        add(
            &mut types,
            ty,
            "static",
            format!(
                "{ENTITIES_FILE}: {}{what}",
                plural(s.count, "entity", "entities")
            ),
        );
    }
    let provider_types = config
        .entity_provider
        .as_ref()
        .map(|p| p.types.clone())
        .unwrap_or_default();
    for ty in &provider_types {
        add(
            &mut types,
            ty,
            "provider",
            "entity provider, asked for the principal or resource of this type on each Check"
                .into(),
        );
    }
    if let Some(schema) = &policies.schema {
        for ty in schema.entity_types() {
            let name = ty.to_string();
            if !types.contains_key(&name) {
                add(
                    &mut types,
                    &name,
                    "schema",
                    "declared only: no token, route, file or provider gives entities of this type"
                        .into(),
                );
            }
        }
    }

    for (ty, how) in principals {
        let in_file = statics.get(&ty).map_or(0, |s| s.count);
        let from_provider = provider_types.contains(&ty);
        let note = match (how, in_file, from_provider) {
            (_, 0, false) => continue,
            ("token", 0, true) => "the entity provider's answer for a token principal is merged with it (parents unioned; attributes: claims over the provider's)".to_string(),
            ("token", n, _) => format!(
                "{ENTITIES_FILE} holds {} of this principal type: a token principal with one of those uids is merged with it (parents unioned; attributes: claims over {}{ENTITIES_FILE}'s)",
                plural(n, "entity", "entities"),
                if from_provider { "the entity provider's over " } else { "" }
            ),
            (_, 0, true) => "the entity provider's answer is the data of a caller of this type".to_string(),
            (_, n, _) => format!(
                "{ENTITIES_FILE} holds {} of this principal type: a caller with one of those uids gets its parents and attributes",
                plural(n, "entity", "entities")
            ),
        };
        if let Some(entry) = types.get_mut(&ty) {
            entry.notes.push(note);
        }
    }
    types
}

/// Adds a source to a type, once.
fn add(types: &mut BTreeMap<String, TypeSources>, ty: &str, kind: &'static str, text: String) {
    let entry = types.entry(ty.to_string()).or_default();
    let source = Source { kind, text };
    if !entry.sources.contains(&source) {
        entry.sources.push(source);
    }
}

/// `id ← claim `sub`, parents ← claim `groups` (Group), attributes tenant ← claim `tenant``.
fn mapping_text(m: &PrincipalMapping) -> String {
    let mut parts = vec![format!("id ← claim `{}`", m.id_claim)];
    if !m.parents.is_empty() {
        let parents: Vec<String> = m
            .parents
            .iter()
            .map(|p| format!("claim `{}` ({})", p.claim, p.entity_type))
            .collect();
        parts.push(format!("parents ← {}", parents.join(", ")));
    }
    if !m.attributes.is_empty() {
        let attributes: Vec<String> = m
            .attributes
            .iter()
            .map(|(attribute, claim)| format!("{attribute} ← claim `{claim}`"))
            .collect();
        parts.push(format!("attributes {}", attributes.join(", ")));
    }
    parts.join(", ")
}

/// The report: one block per type, one line per source, notes last.
pub fn render(types: &BTreeMap<String, TypeSources>) -> String {
    let width = types.keys().map(|t| t.chars().count()).max().unwrap_or(0);
    let mut s = String::from("entity data, by type:\n");
    for (ty, sources) in types {
        let mut name = ty.as_str();
        for source in &sources.sources {
            s.push_str(&format!(
                "  {name:<width$}  {:<8}  {}\n",
                source.kind, source.text
            ));
            name = "";
        }
        for note in &sources.notes {
            s.push_str(&format!("  {:<width$}  note: {note}\n", ""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_aligns_types_and_kinds() {
        let mut types = BTreeMap::new();
        types.insert(
            "User".to_string(),
            TypeSources {
                sources: vec![
                    Source {
                        kind: "token",
                        text: "principal of idp tokens: id ← claim `sub`".into(),
                    },
                    Source {
                        kind: "static",
                        text: "entities.json: 2 entities".into(),
                    },
                ],
                notes: vec!["merged".into()],
            },
        );
        types.insert(
            "Tenant".to_string(),
            TypeSources {
                sources: vec![Source {
                    kind: "request",
                    text: "resource of 1 route".into(),
                }],
                notes: Vec::new(),
            },
        );
        assert_eq!(
            render(&types),
            "entity data, by type:\n  Tenant  request   resource of 1 route\n  User    token     principal of idp tokens: id ← claim `sub`\n          static    entities.json: 2 entities\n          note: merged\n"
        );
    }
}
