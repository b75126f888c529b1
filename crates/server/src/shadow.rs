//! Shadow mode: a candidate policy set (`shadow.policy_dir`) evaluated beside the enforced one on
//! every Check whose decision reached the policies. Its decision goes into the record's `shadow`
//! field and into `cedargate_shadow_decisions_total`; it never changes the answer. Turning it on,
//! off or to another folder is a config reload: the candidate is part of the reloaded `Active`.
//!
//! Evaluation is [`decision::evaluate`], the same call `decide` makes, on the same Cedar request,
//! so a disagreement is exactly what switching to the candidate would change. It adds one Cedar
//! evaluation to the Check (synchronous, no IO); decisions made before the policies (a bad
//! credential, no route, oversized headers, a failed entity provider) are not re-evaluated: the
//! candidate can't change them. Entities the provider answered are in the Cedar request
//! (`fetched`), so the candidate decides with the same data.

use std::sync::Arc;

use cedargate_core::config::Config;
use cedargate_core::decision::{self, Decision};
use cedargate_core::identity::{Identity, IdentityError};
use cedargate_core::policy::{PolicyLoadError, PolicySnapshot};
use cedargate_core::record::ShadowRecord;

/// The candidate policy set named by `config`, validated like the enforced one; `None` when
/// shadow mode is off.
pub fn load(config: &Config) -> Result<Option<Arc<PolicySnapshot>>, PolicyLoadError> {
    let Some(shadow) = &config.shadow else {
        return Ok(None);
    };
    let snapshot = cedargate_core::shapes::load_checked(&shadow.policy_dir, config)?;
    tracing::info!(
        version = %snapshot.version,
        policies = snapshot.info.len(),
        dir = %shadow.policy_dir.display(),
        "shadow.loaded"
    );
    Ok(Some(Arc::new(snapshot)))
}

/// The candidate's decision on the request `enforced` was made for, and whether it agrees;
/// `None` when the enforced decision never reached the policies. Counts the outcome.
pub fn evaluate(
    candidate: &PolicySnapshot,
    enforced: &Decision,
    identity: &Result<Identity, IdentityError>,
) -> Option<ShadowRecord> {
    let cedar = enforced.cedar.as_ref()?;
    // Denied because the entity provider failed: the policies never saw this request, and the
    // candidate would be evaluated without the data it needed (a false disagreement).
    if decision::decided_without_entities(enforced.reason, cedar) {
        return None;
    }
    let anonymous = matches!(identity, Ok(Identity::Anonymous));
    let shadow = decision::evaluate(candidate, cedar, anonymous);
    let agrees = shadow.allowed == enforced.allowed;
    crate::metrics::shadow_decision(match (agrees, shadow.allowed) {
        (true, _) => crate::metrics::ShadowOutcome::Agree,
        (false, true) => crate::metrics::ShadowOutcome::WouldAllow,
        (false, false) => crate::metrics::ShadowOutcome::WouldDeny,
    });
    Some(ShadowRecord {
        policy_version: shadow.policy_version.to_string(),
        decision: if shadow.allowed { "allow" } else { "deny" }.to_string(),
        status: shadow.status,
        reason: shadow.reason.to_string(),
        policies: shadow.policies,
        errors: shadow.errors,
        agrees,
    })
}
