//! The entity data a decision read, told as a policy author needs it: the principal and the
//! resource as Cedar saw them, after [`cedargate_core::policy`] merged the entity sources, with each parent
//! and attribute labelled with where it came from (a token claim, `entities.json`, the entity
//! provider, or inherited through another parent), and what a winning source overrode.
//! `cedargate check` and `cedargate test` print it.
//!
//! It reads the merged entities from [`PolicySnapshot::cedar_inputs`], the exact input of the
//! decision, and only *labels* them by looking at each source; it never merges anything itself.

use std::collections::BTreeSet;

use cedar_policy::{Entities, Entity, EntityUid, EvalResult};

use crate::one_line;
use cedargate_core::config::{Config, PrincipalMapping};
use cedargate_core::mapping::{CedarRequest, EntityRef};
use cedargate_core::policy::{ENTITIES_FILE, PolicySnapshot};
use cedargate_core::token::VerifiedToken;

/// The entity sources of one request, each parsed by Cedar.
struct Sources<'a> {
    /// `entities.json` (and the schema's actions), as loaded.
    statics: &'a Entities,
    /// The entity provider's answers for the request.
    fetched: Vec<Entity>,
    /// What the verified token says about the principal.
    claimed: Vec<Entity>,
    /// The token and the mapping that read it, to name claims.
    token: Option<(&'a VerifiedToken, &'a PrincipalMapping)>,
}

impl Sources<'_> {
    fn find(list: &[Entity], uid: &EntityUid) -> Option<Entity> {
        list.iter().find(|e| e.uid() == *uid).cloned()
    }

    /// Where `parent` of `uid` comes from directly, or empty when it is inherited.
    fn parent_sources(&self, uid: &EntityUid, parent: &EntityUid) -> Vec<String> {
        let mut from = Vec::new();
        if Self::find(&self.claimed, uid).is_some_and(|e| direct_parents(&e).contains(parent)) {
            from.push(self.parent_claim(parent));
        }
        if Self::find(&self.fetched, uid).is_some_and(|e| direct_parents(&e).contains(parent)) {
            from.push("entity provider".to_string());
        }
        if static_parent(self.statics, uid, parent) {
            from.push(ENTITIES_FILE.to_string());
        }
        from
    }

    /// `token claim `groups``: the claims whose names made `parent`.
    fn parent_claim(&self, parent: &EntityUid) -> String {
        let Some((token, mapping)) = self.token else {
            return "token".into();
        };
        let id = parent.id().unescaped();
        let claims: Vec<String> = mapping
            .parents
            .iter()
            .filter(|p| *p.entity_type == parent.type_name().to_string())
            .filter(|p| {
                cedargate_core::mapping::string_list(token.claims.get(&*p.claim))
                    .iter()
                    .any(|n| n == id)
            })
            .map(|p| format!("`{}`", p.claim))
            .collect();
        if claims.is_empty() {
            "token".into()
        } else {
            format!("token claim {}", claims.join(", "))
        }
    }

    /// Every source holding attribute `name` of `uid`, with its value, winner first (the order
    /// [`cedargate_core::policy`] overlays them in, reversed).
    fn attribute_sources(&self, uid: &EntityUid, name: &str) -> Vec<(String, Option<EvalResult>)> {
        let value = |e: &Entity| e.attr(name).map(Result::ok);
        let mut from = Vec::new();
        if let Some(v) = Self::find(&self.claimed, uid).as_ref().and_then(value) {
            let label = match self.token {
                Some((_, mapping)) => mapping
                    .attributes
                    .get(name)
                    .map_or_else(|| "token".into(), |claim| format!("token claim `{claim}`")),
                None => "token".into(),
            };
            from.push((label, v));
        }
        if let Some(v) = Self::find(&self.fetched, uid).as_ref().and_then(value) {
            from.push(("entity provider".into(), v));
        }
        if let Some(v) = self.statics.get(uid).and_then(value) {
            from.push((ENTITIES_FILE.into(), v));
        }
        from
    }
}

/// The principal and the resource of `cedar` as evaluated, each parent and attribute with its
/// source; lines unindented.
pub fn evaluated_entities(
    config: &Config,
    policies: &PolicySnapshot,
    token: Option<&VerifiedToken>,
    cedar: &CedarRequest,
) -> String {
    let schema = policies.schema.as_ref();
    let sources = Sources {
        statics: &policies.entities,
        // Schema-directed first, as `serve` reads them (implicit entity references); as plain
        // Cedar JSON when that fails, so that data the schema refuses is still shown.
        fetched: cedar
            .fetched
            .iter()
            .filter_map(|v| {
                Entity::from_json_value(v.clone(), schema)
                    .ok()
                    .or_else(|| Entity::from_json_value(v.clone(), None).ok())
            })
            .collect(),
        claimed: cedar
            .entities
            .iter()
            .filter_map(|v| Entity::from_json_value(v.clone(), None).ok())
            .collect(),
        token: token.map(|t| (t, cedargate_core::mapping::principal_mapping(t))),
    };
    let provider_types = config
        .entity_provider
        .as_ref()
        .map(|p| p.types.clone())
        .unwrap_or_default();
    let mut targets = vec![("principal", &cedar.principal)];
    if cedar.resource != cedar.principal {
        targets.push(("resource", &cedar.resource));
    }
    let mut s = String::new();
    let merged = match policies.cedar_inputs(cedar) {
        Ok((_, merged)) => merged,
        Err(e) => {
            s.push_str(&format!("entities not evaluated: {e}\n"));
            if let Some(detail) = token_part_detail(policies, cedar) {
                s.push_str(&format!("  {detail}\n"));
            }
            for (role, r) in targets {
                let Some(uid) = uid(r) else { continue };
                if Sources::find(&sources.claimed, &uid).is_none()
                    && Sources::find(&sources.fetched, &uid).is_none()
                    && sources.statics.get(&uid).is_none()
                {
                    s.push_str(&format!("{role} {r}: no entity data\n"));
                    continue;
                }
                s.push_str(&format!("{role} {r}, by source:\n"));
                if let Some(e) = Sources::find(&sources.claimed, &uid) {
                    s.push_str(&format!("  token: {}\n", summary(&e, &direct_parents(&e))));
                }
                if let Some(e) = Sources::find(&sources.fetched, &uid) {
                    s.push_str(&format!(
                        "  entity provider: {}\n",
                        summary(&e, &direct_parents(&e))
                    ));
                }
                if let Some(e) = sources.statics.get(&uid) {
                    let parents: BTreeSet<EntityUid> = sources
                        .statics
                        .ancestors(&uid)
                        .into_iter()
                        .flatten()
                        .filter(|p| static_parent(sources.statics, &uid, p))
                        .cloned()
                        .collect();
                    s.push_str(&format!("  {ENTITIES_FILE}: {}\n", summary(e, &parents)));
                }
            }
            return s;
        }
    };
    let mut shown = 0;
    // Each entity: its heading, then (left column, source) rows, printed with one width.
    let mut blocks: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (role, r) in targets {
        let Some(uid) = uid(r) else { continue };
        let asked = provider_types.contains(&r.entity_type);
        let unanswered = asked && Sources::find(&sources.fetched, &uid).is_none();
        let note = if unanswered {
            " (the entity provider is asked for it; no answer is stated)"
        } else {
            ""
        };
        let Some(entity) = merged.get(&uid) else {
            blocks.push((
                format!("{role} {r}: no entity data, so no parents or attributes{note}"),
                Vec::new(),
            ));
            continue;
        };
        shown += 1;
        let mut ancestors: Vec<&EntityUid> = merged.ancestors(&uid).into_iter().flatten().collect();
        ancestors.sort_by_key(|a| a.to_string());
        let mut attributes: Vec<(&str, Option<EvalResult>)> =
            entity.attrs().map(|(k, v)| (k, v.ok())).collect();
        attributes.sort_by(|a, b| a.0.cmp(b.0));
        if ancestors.is_empty() && attributes.is_empty() {
            blocks.push((
                format!("{role} {r}: no parents or attributes{note}"),
                Vec::new(),
            ));
            continue;
        }
        let mut rows: Vec<(String, String)> = Vec::new();
        for &parent in &ancestors {
            let from = sources.parent_sources(&uid, parent);
            let label = if from.is_empty() {
                // Inherited: through the first other ancestor that is itself in this one.
                ancestors
                    .iter()
                    .find(|&&via| {
                        via != parent
                            && merged
                                .ancestors(via)
                                .is_some_and(|mut a| a.any(|x| x == parent))
                    })
                    .map_or_else(|| "inherited".to_string(), |via| format!("via {via}"))
            } else {
                from.join(", ")
            };
            rows.push((format!("in {parent}"), label));
        }
        for (name, value) in attributes {
            let from = sources.attribute_sources(&uid, name);
            let mut label = from
                .first()
                .map_or_else(|| "?".to_string(), |(source, _)| source.clone());
            let overridden: Vec<String> = from
                .iter()
                .skip(1)
                .filter(|(_, v)| *v != value)
                .map(|(source, v)| format!("{source}'s {}", text(v.as_ref())))
                .collect();
            if !overridden.is_empty() {
                label.push_str(&format!(" (over {})", overridden.join("; ")));
            }
            rows.push((format!("{name} = {}", text(value.as_ref())), label));
        }
        blocks.push((format!("{role} {r}, as evaluated{note}:"), rows));
    }
    let width = blocks
        .iter()
        .flat_map(|(_, rows)| rows.iter().map(|(left, _)| left.chars().count()))
        .max()
        .unwrap_or(0);
    for (heading, rows) in blocks {
        s.push_str(&heading);
        s.push('\n');
        for (left, label) in rows {
            s.push_str(&format!("  {left:<width$}  {label}\n"));
        }
    }
    let others = merged.len().saturating_sub(shown);
    if others > 0 {
        s.push_str(&format!(
            "(and {others} more entities: {ENTITIES_FILE}, the schema's actions{})\n",
            if cedar.fetched.is_empty() {
                ""
            } else {
                ", the entity provider's answers"
            }
        ));
    }
    s
}

fn uid(r: &EntityRef) -> Option<EntityUid> {
    EntityUid::from_json(serde_json::json!({ "type": r.entity_type, "id": r.id })).ok()
}

/// The parents an entity parsed on its own states (no other entity to inherit through).
fn direct_parents(e: &Entity) -> BTreeSet<EntityUid> {
    e.clone().into_inner().2.into_iter().collect()
}

/// Whether `entities.json` makes `parent` a parent of `uid` itself rather than through another of
/// its ancestors (the loaded set only keeps the closure).
fn static_parent(statics: &Entities, uid: &EntityUid, parent: &EntityUid) -> bool {
    let Some(ancestors) = statics.ancestors(uid) else {
        return false;
    };
    let ancestors: Vec<&EntityUid> = ancestors.collect();
    ancestors.contains(&parent)
        && !ancestors.iter().any(|other| {
            other != &parent
                && statics
                    .ancestors(other)
                    .is_some_and(|mut a| a.any(|x| x == parent))
        })
}

fn text(value: Option<&EvalResult>) -> String {
    value.map_or_else(|| "(not a value)".to_string(), ToString::to_string)
}

/// Cedar's own account of why the token's part of the principal does not conform to the schema,
/// when it does not: the detail behind a `principal_invalid` that comes from the claims.
pub fn token_part_detail(policies: &PolicySnapshot, cedar: &CedarRequest) -> Option<String> {
    let schema = policies.schema.as_ref()?;
    let principal = uid(&cedar.principal)?;
    let claimed = cedar.entities.iter().find(|v| {
        Entity::from_json_value((*v).clone(), None).is_ok_and(|e| e.uid() == principal)
    })?;
    let e = Entity::from_json_value(claimed.clone(), Some(schema)).err()?;
    Some(format!("the token's part alone: {}", one_line(&e)))
}

/// `tenant = "acme", blocked = false; in Group::"a"`.
fn summary(e: &Entity, parents: &BTreeSet<EntityUid>) -> String {
    let mut attributes: Vec<String> = e
        .attrs()
        .map(|(k, v)| format!("{k} = {}", text(v.ok().as_ref())))
        .collect();
    attributes.sort();
    let parents: Vec<String> = parents.iter().map(ToString::to_string).collect();
    match (attributes.is_empty(), parents.is_empty()) {
        (true, true) => "no parents or attributes".into(),
        (false, true) => attributes.join(", "),
        (true, false) => format!("in {}", parents.join(", ")),
        (false, false) => format!("{}; in {}", attributes.join(", "), parents.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_claims_are_lists_or_space_separated() {
        assert_eq!(
            cedargate_core::mapping::string_list(Some(&serde_json::json!(["a", 1, "b"]))),
            vec!["a", "b"]
        );
        assert_eq!(
            cedargate_core::mapping::string_list(Some(&serde_json::json!("a  b"))),
            vec!["a", "b"]
        );
        assert!(cedargate_core::mapping::string_list(Some(&serde_json::json!(5))).is_empty());
        assert!(cedargate_core::mapping::string_list(None).is_empty());
    }

    #[test]
    fn only_direct_static_parents_are_the_files() {
        let statics = Entities::from_json_value(
            serde_json::json!([
                {"uid": {"type": "User", "id": "u"}, "attrs": {}, "parents": [{"type": "G", "id": "admins"}]},
                {"uid": {"type": "G", "id": "admins"}, "attrs": {}, "parents": [{"type": "G", "id": "staff"}]},
                {"uid": {"type": "G", "id": "staff"}, "attrs": {}, "parents": []},
            ]),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let uid = |t: &str, id: &str| {
            EntityUid::from_json(serde_json::json!({"type": t, "id": id}))
                .unwrap_or_else(|e| panic!("{e}"))
        };
        assert!(static_parent(
            &statics,
            &uid("User", "u"),
            &uid("G", "admins")
        ));
        assert!(!static_parent(
            &statics,
            &uid("User", "u"),
            &uid("G", "staff")
        ));
        assert!(!static_parent(
            &statics,
            &uid("User", "v"),
            &uid("G", "staff")
        ));
    }
}
