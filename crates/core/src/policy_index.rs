//! Which policies can apply to a request, worked out from their scopes once at load, so that Cedar
//! evaluates only those instead of the whole set.
//!
//! Cedar's authorizer evaluates every policy of the set it is given, and each evaluation starts by
//! rebuilding the policy's condition expression (`Template::condition` clones the whole `when` /
//! `unless` tree): about 1 µs per policy here whether or not the scope matches, so a set of 1,000
//! per-user or per-route policies cost 1 ms per Check. The index splits the set by the two scope
//! constraints that decide most non-matches cheaply and exactly: the action, and `principal ==`.
//!
//! # Why evaluating the subset is exactly evaluating the whole set (cedar-policy 4.14)
//!
//! A policy's condition is `principal_scope && (action_scope && (resource_scope && body))`, and
//! `&&` short-circuits (`Evaluator::partial_interpret`, `ExprKind::And`): when a scope constraint
//! is false the result is `false` before the body runs, so such a policy is never satisfied and
//! never reports an error. The scope constraints themselves can't fail: `==` compares two entity
//! uids, and `in` on a uid or a list of uids is `uid == x || x ∈ ancestors(uid)`, with an entity
//! missing from the store having no ancestors (`Evaluator::eval_in`). The authorizer collects
//! satisfied permits/forbids and errors per policy, independently of the other policies
//! (`is_authorized_core_internal`); the response's decision and determining policies are computed
//! only from satisfied policies, and its errors are listed in set order. So removing policies
//! whose scope is false for a request changes neither the decision, nor the determining ids, nor
//! the errors or their order, as long as the subset keeps the set's order, which it does.
//!
//! Which policies an action scope admits depends on the request's action `a` and, for
//! `action in [g, …]`, on `a`'s ancestors in the request's entity set. The index is built from
//! the static entities (where the schema's action hierarchy lives); a request whose entity set
//! gives the action other ancestors among the `in` targets (a request-derived entity can in
//! principle add an action entity) is evaluated against the whole set. `principal == u` is
//! plain equality, so those policies are kept per `u`; `principal in`/`is` scopes depend on the
//! entity hierarchy and stay in the shared part.
//!
//! A request is evaluated against the shared part for its action, and, when its principal is
//! named by `principal ==` policies, separately against those, and the two responses are combined
//! exactly as Cedar combines policies (any satisfied forbid denies; else any satisfied permit
//! allows; errors in set order). Keeping the per-principal policies apart means the index never
//! copies the shared policies per principal: its size stays within a small multiple of the set.
//!
//! Template-linked policies (which `policy` refuses at load anyway) switch the index off.
//! Pure and immutable after construction; no IO.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, AuthorizationError, Authorizer, Decision, Entities, EntityUid, Policy,
    PolicyId, PolicySet, PrincipalConstraint, Request, Response,
};

/// Index entries (policy copies across all slices) allowed per policy in the set, on top of
/// [`INDEX_ENTRIES_FLOOR`]. A policy with an unconstrained action scope is copied into the slice
/// of every action; past this budget a group of policies is left unsplit by action (still exact,
/// only slower), so a set with many actions and many such policies can't blow up memory.
const INDEX_ENTRIES_PER_POLICY: usize = 16;

/// Index entries always allowed, whatever the set's size: room for every action of a typical
/// schema times its unconstrained-action policies.
const INDEX_ENTRIES_FLOOR: usize = 65_536;

/// The policy set split by action and by `principal ==`; see the module docs.
pub struct PolicyIndex {
    /// `None` when the set can't be indexed (template-linked policies): evaluate the whole set.
    inner: Option<Index>,
}

struct Index {
    /// Every uid named in an `action in …` scope: the only ancestors of an action that can change
    /// which policies it matches.
    groups: HashSet<EntityUid>,
    /// Actions the index knows (action entities of the static set, uids named in action scopes),
    /// with their slot and their ancestors among `groups` in the static entities.
    actions: HashMap<EntityUid, KnownAction>,
    /// Policies whose principal scope is not `==`.
    shared: Slices,
    /// `principal == u` policies, by `u`.
    by_principal: HashMap<EntityUid, Slices>,
    /// Position of each policy in the set, to merge the errors of two evaluations in set order.
    position: HashMap<PolicyId, usize>,
}

struct KnownAction {
    /// Index into every [`Slices::by_action`].
    slot: usize,
    /// Its ancestors that are in [`Index::groups`], in the static entities.
    ancestors: Vec<EntityUid>,
}

/// One group of policies split by action slot, each slice in set order.
struct Slices {
    /// Policies a known action (by slot) matches, for the slots where that is more than
    /// [`Slices::any_action`]; sparse, since most groups concern few actions.
    by_action: HashMap<usize, PolicySet>,
    /// The policies with an unconstrained action scope, which is all that an unknown action (or
    /// a slot without its own slice) matches. When the group is left unsplit (index budget),
    /// every policy of the group, and `by_action` is empty.
    any_action: PolicySet,
}

impl Slices {
    fn get(&self, slot: Option<usize>) -> &PolicySet {
        slot.and_then(|s| self.by_action.get(&s))
            .unwrap_or(&self.any_action)
    }
}

/// Which actions one policy's action scope admits.
enum ActionMatch {
    /// Unconstrained `action`.
    Any,
    /// These slots of known actions (an `==` or `in` scope matches no unknown action).
    Slots(Vec<usize>),
}

/// The outcome of an authorization, in the terms [`crate::policy`] records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Cedar's decision.
    pub allowed: bool,
    /// The determining policies (unsorted): the satisfied permits on allow, the satisfied forbids
    /// on a deny that has any.
    pub determining: Vec<PolicyId>,
    /// Errors, in policy-set order.
    pub errors: Vec<AuthorizationError>,
}

impl From<Response> for Authorization {
    fn from(response: Response) -> Authorization {
        let diagnostics = response.diagnostics();
        Authorization {
            allowed: response.decision() == Decision::Allow,
            determining: diagnostics.reason().cloned().collect(),
            errors: diagnostics.errors().cloned().collect(),
        }
    }
}

impl PolicyIndex {
    /// Indexes `policies` against the static `entities` (which carry the schema's action
    /// hierarchy).
    pub fn new(policies: &PolicySet, entities: &Entities) -> PolicyIndex {
        let linked =
            policies.templates().next().is_some() || policies.policies().any(|p| !p.is_static());
        PolicyIndex {
            inner: (!linked).then(|| Index::new(policies, entities)),
        }
    }

    /// Authorizes `request` (principal `principal`, action `action`) against `policies` (the set
    /// this index was built from) and `entities` (the request's whole entity set), evaluating
    /// only the policies whose scope can match. Equal to `Authorizer::is_authorized` on the whole
    /// set; `tests` prove it on generated sets.
    pub fn authorize(
        &self,
        policies: &PolicySet,
        request: &Request,
        principal: &EntityUid,
        action: &EntityUid,
        entities: &Entities,
    ) -> Authorization {
        let authorizer = Authorizer::new();
        let Some((index, slot)) = self
            .inner
            .as_ref()
            .and_then(|index| index.slot(action, entities).map(|slot| (index, slot)))
        else {
            return authorizer.is_authorized(request, policies, entities).into();
        };
        let shared = index.shared.get(slot);
        let own = index
            .by_principal
            .get(principal)
            .map(|slices| slices.get(slot))
            .filter(|set| !set.is_empty());
        let Some(own) = own else {
            return authorizer.is_authorized(request, shared, entities).into();
        };
        let own: Authorization = authorizer.is_authorized(request, own, entities).into();
        if shared.is_empty() {
            return own;
        }
        index.combine(
            authorizer.is_authorized(request, shared, entities).into(),
            own,
        )
    }

    /// How many policies a request for `principal` and `action` is evaluated against, given
    /// `entities` (`None`: the whole set). For tests and the benchmark's description.
    pub fn selected(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        entities: &Entities,
    ) -> Option<usize> {
        let index = self.inner.as_ref()?;
        let slot = index.slot(action, entities)?;
        let own = index
            .by_principal
            .get(principal)
            .map_or(0, |s| s.get(slot).num_of_policies());
        Some(index.shared.get(slot).num_of_policies() + own)
    }
}

impl Index {
    fn new(policies: &PolicySet, entities: &Entities) -> Index {
        let all: Vec<&Policy> = policies.policies().collect();
        let groups: HashSet<EntityUid> = all
            .iter()
            .flat_map(|p| match p.action_constraint() {
                ActionConstraint::In(targets) => targets,
                ActionConstraint::Any | ActionConstraint::Eq(_) => Vec::new(),
            })
            .collect();

        // Known actions: the static action entities and every uid an action scope names, in a
        // fixed order so that slots don't depend on hashing.
        let mut known: Vec<EntityUid> = entities
            .iter()
            .map(|e| e.uid())
            .filter(|uid| uid.type_name().basename() == "Action")
            .collect();
        for p in &all {
            match p.action_constraint() {
                ActionConstraint::Any => {}
                ActionConstraint::Eq(uid) => known.push(uid),
                ActionConstraint::In(targets) => known.extend(targets),
            }
        }
        known.sort();
        known.dedup();
        let actions: HashMap<EntityUid, KnownAction> = known
            .iter()
            .enumerate()
            .map(|(slot, uid)| {
                let ancestors = relevant_ancestors(entities, uid, &groups);
                (uid.clone(), KnownAction { slot, ancestors })
            })
            .collect();

        // Which slots each policy's action scope admits, with the static hierarchy.
        let matches: Vec<ActionMatch> = all
            .iter()
            .map(|p| match p.action_constraint() {
                ActionConstraint::Any => ActionMatch::Any,
                ActionConstraint::Eq(uid) => {
                    ActionMatch::Slots(actions.get(&uid).map(|a| a.slot).into_iter().collect())
                }
                ActionConstraint::In(targets) => {
                    let mut slots: Vec<usize> = actions
                        .iter()
                        .filter(|(uid, a)| {
                            targets.iter().any(|t| t == *uid || a.ancestors.contains(t))
                        })
                        .map(|(_, a)| a.slot)
                        .collect();
                    slots.sort_unstable();
                    ActionMatch::Slots(slots)
                }
            })
            .collect();

        // Group by `principal ==`; everything else is shared. Groups keep set order.
        let mut shared = Vec::new();
        let mut by_principal: Vec<(EntityUid, Vec<usize>)> = Vec::new();
        let mut principal_group: HashMap<EntityUid, usize> = HashMap::new();
        for (i, p) in all.iter().enumerate() {
            match p.principal_constraint() {
                PrincipalConstraint::Eq(uid) => {
                    let g = *principal_group.entry(uid.clone()).or_insert_with(|| {
                        by_principal.push((uid, Vec::new()));
                        by_principal.len() - 1
                    });
                    if let Some((_, members)) = by_principal.get_mut(g) {
                        members.push(i);
                    }
                }
                PrincipalConstraint::Any
                | PrincipalConstraint::In(_)
                | PrincipalConstraint::Is(_)
                | PrincipalConstraint::IsIn(_, _) => shared.push(i),
            }
        }

        let mut budget = INDEX_ENTRIES_FLOOR + INDEX_ENTRIES_PER_POLICY * all.len();
        let build =
            |members: &[usize], budget: &mut usize| Slices::new(&all, &matches, members, budget);
        let shared = build(&shared, &mut budget);
        let by_principal = by_principal
            .into_iter()
            .map(|(uid, members)| (uid, build(&members, &mut budget)))
            .collect();
        let position = all
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id().clone(), i))
            .collect();
        Index {
            groups,
            actions,
            shared,
            by_principal,
            position,
        }
    }

    /// The slot of `action` (`None`: an action the index doesn't know, which only unconstrained
    /// action scopes match), or `None` outside when this request's entities give the action
    /// ancestors among the `in` targets other than the index was built with: then only the
    /// whole set is right.
    fn slot(&self, action: &EntityUid, entities: &Entities) -> Option<Option<usize>> {
        let expected: &[EntityUid] = self
            .actions
            .get(action)
            .map_or(&[], |a| a.ancestors.as_slice());
        let mut seen = 0;
        if let Some(ancestors) = entities.ancestors(action) {
            for ancestor in ancestors.filter(|a| self.groups.contains(a)) {
                if !expected.contains(ancestor) {
                    return None;
                }
                seen += 1;
            }
        }
        (seen == expected.len()).then(|| self.actions.get(action).map(|a| a.slot))
    }

    /// Two authorizations of disjoint parts of the set, combined as one authorization of their
    /// union: a satisfied forbid in either denies (determined by all satisfied forbids); else a
    /// satisfied permit in either allows (determined by all satisfied permits); else deny with
    /// none. A denying response with determining policies has satisfied forbids and those are
    /// its determining policies; an allowing one has no satisfied forbid (Cedar's
    /// `must_be_determining`). Errors are merged back into set order.
    fn combine(&self, a: Authorization, b: Authorization) -> Authorization {
        let forbids = |x: &Authorization| !x.allowed && !x.determining.is_empty();
        let (a_counts, b_counts, allowed) = if forbids(&a) || forbids(&b) {
            (forbids(&a), forbids(&b), false)
        } else {
            (a.allowed, b.allowed, a.allowed || b.allowed)
        };
        let mut determining = Vec::new();
        if a_counts {
            determining.extend(a.determining);
        }
        if b_counts {
            determining.extend(b.determining);
        }
        let mut errors = a.errors;
        if errors.is_empty() {
            errors = b.errors;
        } else if !b.errors.is_empty() {
            errors.extend(b.errors);
            errors.sort_by_key(|e| {
                let AuthorizationError::PolicyEvaluationError(e) = e;
                self.position
                    .get(e.policy_id())
                    .copied()
                    .unwrap_or(usize::MAX)
            });
        }
        Authorization {
            allowed,
            determining,
            errors,
        }
    }
}

impl Slices {
    /// The slices of the group `members` (positions into `all`), unsplit when splitting would
    /// take more than the remaining `budget` of entries.
    fn new(
        all: &[&Policy],
        matches: &[ActionMatch],
        members: &[usize],
        budget: &mut usize,
    ) -> Slices {
        let set = |positions: &mut dyn Iterator<Item = usize>| {
            let mut set = PolicySet::new();
            for p in positions.filter_map(|i| all.get(i)) {
                // Ids are unique in the source set, so `add` can't fail here.
                let _ = set.add((*p).clone());
            }
            set
        };
        let is_any = |i: &usize| matches!(matches.get(*i), Some(ActionMatch::Any));
        let any_count = members.iter().filter(|i| is_any(i)).count();
        let mut per_slot: HashMap<usize, Vec<usize>> = HashMap::new();
        for &i in members {
            if let Some(ActionMatch::Slots(own)) = matches.get(i) {
                for &s in own {
                    per_slot.entry(s).or_default().push(i);
                }
            }
        }
        let cost: usize = per_slot
            .values()
            .map(|l| l.len() + any_count)
            .sum::<usize>()
            + any_count;
        if cost > *budget {
            *budget = budget.saturating_sub(members.len());
            return Slices {
                by_action: HashMap::new(),
                any_action: set(&mut members.iter().copied()),
            };
        }
        *budget -= cost;
        let by_action = per_slot
            .into_iter()
            .map(|(slot, own)| {
                // Unconstrained-action policies and this slot's, merged in set order (`own` is
                // in set order: members are).
                let merged = set(&mut members
                    .iter()
                    .copied()
                    .filter(|i| is_any(i) || own.binary_search(i).is_ok()));
                (slot, merged)
            })
            .collect();
        Slices {
            by_action,
            any_action: set(&mut members.iter().copied().filter(is_any)),
        }
    }
}

/// `uid`'s ancestors in `entities` that are among `groups`, deduplicated.
fn relevant_ancestors(
    entities: &Entities,
    uid: &EntityUid,
    groups: &HashSet<EntityUid>,
) -> Vec<EntityUid> {
    let mut found: Vec<EntityUid> = entities
        .ancestors(uid)
        .map(|a| a.filter(|a| groups.contains(a)).cloned().collect())
        .unwrap_or_default();
    found.sort();
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use cedar_policy::{Context, Entity, RestrictedExpression};

    use super::*;

    /// xorshift64*: a fixed, dependency-free sequence, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    const ACTIONS: usize = 24;
    const ACTION_GROUPS: usize = 5;
    const USERS: usize = 60;
    const GROUPS: usize = 6;
    const DOCS: usize = 10;

    fn euid(text: &str) -> EntityUid {
        EntityUid::from_str(text).unwrap()
    }

    fn action(i: usize) -> String {
        format!(r#"Action::"a{i}""#)
    }

    /// Static entities: actions `a0…` in groups `g0…` (some groups nested: g1 in g0), users in
    /// groups, documents with owners and some without.
    fn static_entities() -> Entities {
        let mut list = Vec::new();
        for g in 0..ACTION_GROUPS {
            let parents = if g % 2 == 1 {
                [euid(r#"Action::"g0""#)].into_iter().collect()
            } else {
                HashSet::new()
            };
            list.push(Entity::new_no_attrs(
                euid(&format!(r#"Action::"g{g}""#)),
                parents,
            ));
        }
        for a in 0..ACTIONS {
            let parents = (0..ACTION_GROUPS)
                .filter(|g| (a + g) % 3 == 0)
                .map(|g| euid(&format!(r#"Action::"g{g}""#)))
                .collect();
            list.push(Entity::new_no_attrs(euid(&action(a)), parents));
        }
        for g in 0..GROUPS {
            list.push(Entity::new_no_attrs(
                euid(&format!(r#"Group::"r{g}""#)),
                HashSet::new(),
            ));
        }
        for d in 0..DOCS {
            let attrs = if d % 3 == 0 {
                HashMap::new()
            } else {
                [(
                    "owner".to_string(),
                    RestrictedExpression::new_entity_uid(euid(&format!(r#"User::"u{}""#, d * 5))),
                )]
                .into_iter()
                .collect()
            };
            list.push(
                Entity::new(euid(&format!(r#"Doc::"d{d}""#)), attrs, HashSet::new()).unwrap(),
            );
        }
        Entities::from_entities(list, None).unwrap()
    }

    /// A mixed large set: every scope form Cedar has for principal and action, permits and
    /// forbids, and conditions that error for callers without a `level` attribute or on
    /// documents without an owner.
    fn generated_policies(n: usize, rng: &mut Rng) -> PolicySet {
        let mut text = String::new();
        for _ in 0..n {
            let effect = if rng.chance(15) { "forbid" } else { "permit" };
            let principal = match rng.below(10) {
                0..=4 => format!(r#"principal == User::"u{}""#, rng.below(USERS)),
                5 => format!(r#"principal in Group::"r{}""#, rng.below(GROUPS)),
                6 => "principal is User".to_string(),
                7 => format!(r#"principal is User in Group::"r{}""#, rng.below(GROUPS)),
                8 => r#"principal == Service::"s1""#.to_string(),
                _ => "principal".to_string(),
            };
            let action = match rng.below(8) {
                0..=3 => format!("action == {}", action(rng.below(ACTIONS + 2))),
                4 => format!(r#"action in Action::"g{}""#, rng.below(ACTION_GROUPS)),
                5 => format!(
                    r#"action in [{}, Action::"g{}"]"#,
                    action(rng.below(ACTIONS)),
                    rng.below(ACTION_GROUPS)
                ),
                6 => format!("action in [{}]", action(rng.below(ACTIONS + 2))),
                _ => "action".to_string(),
            };
            let resource = match rng.below(4) {
                0 => format!(r#"resource == Doc::"d{}""#, rng.below(DOCS)),
                1 => "resource is Doc".to_string(),
                _ => "resource".to_string(),
            };
            let condition = match rng.below(6) {
                0 => " when { principal.level > 2 }",
                1 => " when { resource.owner == principal }",
                2 => " unless { context.hour < 8 }",
                3 => " when { context.missing }",
                // Unconditional forbids would deny nearly everything; keep them rare.
                _ if effect == "forbid" => " when { context.hour > 20 }",
                _ => "",
            };
            text.push_str(&format!(
                "{effect} ({principal}, {action}, {resource}){condition};\n"
            ));
        }
        PolicySet::from_str(&text).unwrap()
    }

    /// One request's entity set: the static one plus the caller (in some groups, sometimes with
    /// a `level`), and now and then an entity that changes the action hierarchy (a new action
    /// under a group, or a known action re-parented), which the index must notice.
    fn request_entities(
        base: &Entities,
        principal: &EntityUid,
        act: &EntityUid,
        rng: &mut Rng,
    ) -> (Entities, &'static str) {
        let parents: HashSet<EntityUid> = (0..GROUPS)
            .filter(|_| rng.chance(25))
            .map(|g| euid(&format!(r#"Group::"r{g}""#)))
            .collect();
        let attrs: HashMap<String, RestrictedExpression> = if rng.chance(50) {
            [("level".to_string(), RestrictedExpression::new_long(3))]
                .into_iter()
                .collect()
        } else {
            HashMap::new()
        };
        let mut derived = vec![Entity::new(principal.clone(), attrs, parents).unwrap()];
        let mut kind = "plain";
        match rng.below(8) {
            0 => {
                derived.push(Entity::new_no_attrs(
                    euid(r#"Action::"new""#),
                    [euid(&format!(r#"Action::"g{}""#, rng.below(ACTION_GROUPS)))]
                        .into_iter()
                        .collect(),
                ));
                kind = "new action";
            }
            1 => {
                // Rebuild with the request's action (or another) moved under another group.
                let moved = if rng.chance(50) && act.id().escaped().starts_with('a') {
                    act.clone()
                } else {
                    euid(&action(rng.below(ACTIONS)))
                };
                let keep = base.iter().filter(|e| e.uid() != moved).cloned();
                let replaced = Entity::new_no_attrs(
                    moved.clone(),
                    [euid(&format!(r#"Action::"g{}""#, rng.below(ACTION_GROUPS)))]
                        .into_iter()
                        .collect(),
                );
                let all = keep.chain(derived).chain(std::iter::once(replaced));
                return (Entities::from_entities(all, None).unwrap(), "moved action");
            }
            _ => {}
        }
        (base.clone().add_entities(derived, None).unwrap(), kind)
    }

    fn sorted(mut a: Authorization) -> (bool, Vec<String>, Vec<String>) {
        let mut ids: Vec<String> = a.determining.drain(..).map(|p| p.to_string()).collect();
        ids.sort();
        (
            a.allowed,
            ids,
            a.errors.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn indexed_evaluation_equals_the_whole_set_on_generated_sets() {
        let base = static_entities();
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        let (mut indexed, mut fallback, mut allows, mut forbids, mut errors) = (0, 0, 0, 0, 0);
        for n in [1, 10, 200, 1_000] {
            let policies = generated_policies(n, &mut rng);
            let index = PolicyIndex::new(&policies, &base);
            for _ in 0..600 {
                let principal = if rng.chance(10) {
                    euid(r#"Service::"s1""#)
                } else {
                    euid(&format!(r#"User::"u{}""#, rng.below(USERS + 5)))
                };
                let act = match rng.below(10) {
                    0 => euid(r#"Action::"new""#),
                    1 => euid(&format!(r#"Action::"g{}""#, rng.below(ACTION_GROUPS))),
                    _ => euid(&action(rng.below(ACTIONS + 2))),
                };
                let resource = euid(&format!(r#"Doc::"d{}""#, rng.below(DOCS + 2)));
                let context = Context::from_pairs([(
                    "hour".to_string(),
                    RestrictedExpression::new_long(i64::try_from(rng.below(24)).unwrap()),
                )])
                .unwrap();
                let request =
                    Request::new(principal.clone(), act.clone(), resource, context, None).unwrap();
                let (entities, kind) = request_entities(&base, &principal, &act, &mut rng);

                let whole: Authorization = Authorizer::new()
                    .is_authorized(&request, &policies, &entities)
                    .into();
                let got = index.authorize(&policies, &request, &principal, &act, &entities);
                let (w, g) = (sorted(whole), sorted(got));
                assert_eq!(
                    w, g,
                    "{n} policies, {principal} {act} ({kind}): whole set vs index"
                );
                match index.selected(&principal, &act, &entities) {
                    Some(count) => {
                        assert!(count <= policies.num_of_policies());
                        indexed += 1;
                    }
                    None => fallback += 1,
                }
                allows += usize::from(w.0);
                forbids += usize::from(!w.0 && !w.1.is_empty());
                errors += usize::from(!w.2.is_empty());
            }
        }
        println!(
            "compared: {allows} allows, {forbids} forbids, {errors} with errors; {indexed} indexed, {fallback} on the whole set"
        );
        // The comparison covered every kind of outcome and both paths.
        assert!(
            allows > 100 && forbids > 100 && errors > 100,
            "{allows} {forbids} {errors}"
        );
        assert!(indexed > 1_500 && fallback > 40, "{indexed} {fallback}");
    }

    #[test]
    fn the_index_evaluates_few_policies_for_a_specific_request() {
        let base = static_entities();
        let mut text = String::new();
        for u in 0..1_000 {
            text.push_str(&format!(
                "permit (principal == User::\"u{u}\", action == {}, resource);\n",
                action(u % ACTIONS)
            ));
        }
        text.push_str("permit (principal in Group::\"r0\", action in Action::\"g0\", resource);\n");
        text.push_str("forbid (principal, action, resource) when { context.missing };\n");
        let policies = PolicySet::from_str(&text).unwrap();
        let index = PolicyIndex::new(&policies, &base);
        let user = euid(r#"User::"u7""#);
        // u7's own policy (on a7) plus the unconstrained-action forbid; a7 isn't under g0.
        assert_eq!(index.selected(&user, &euid(&action(7)), &base), Some(2));
        // a10 is only under g2, which isn't under g0: just the forbid.
        assert_eq!(index.selected(&user, &euid(&action(10)), &base), Some(1));
        // a8 is under g1, which is under g0.
        assert_eq!(index.selected(&user, &euid(&action(8)), &base), Some(2));
        // a0 is under g0 (0 % 3 == 0): the group permit applies too.
        assert_eq!(
            index.selected(&euid(r#"User::"x""#), &euid(&action(0)), &base),
            Some(2)
        );
    }

    #[test]
    fn template_linked_policies_switch_the_index_off() {
        let mut policies =
            PolicySet::from_str("@id(\"t\") permit (principal == ?principal, action, resource);\n")
                .unwrap();
        let template = policies.templates().next().unwrap().id().clone();
        policies
            .link(
                template,
                PolicyId::new("linked"),
                [(cedar_policy::SlotId::principal(), euid(r#"User::"u1""#))]
                    .into_iter()
                    .collect(),
            )
            .unwrap();
        let base = static_entities();
        let index = PolicyIndex::new(&policies, &base);
        let (user, act) = (euid(r#"User::"u1""#), euid(&action(1)));
        assert_eq!(index.selected(&user, &act, &base), None);
        let request = Request::new(
            user.clone(),
            act.clone(),
            euid(r#"Doc::"d1""#),
            Context::empty(),
            None,
        )
        .unwrap();
        let got = index.authorize(&policies, &request, &user, &act, &base);
        assert!(got.allowed);
        assert_eq!(got.determining, vec![PolicyId::new("linked")]);
    }
}
