//! The decision core: (request, identity outcome, policy snapshot) → [`Decision`].
//!
//! Synchronous and free of IO: it never awaits, never fetches keys, never writes logs. Every
//! failure becomes a deny here, in one place, with one reason code: a bad credential is a 401
//! whatever the policies say (missing or stale issuer keys included: the issuer fails closed);
//! an anonymous caller that is denied gets a 401 challenge; everything else denied is a 403.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::identity::{Identity, IdentityError};
use crate::mapping::{self, CedarRequest, MappingError};
use crate::policy::{ENTITIES_UNAVAILABLE, PolicySnapshot};
use crate::request::HttpRequest;

/// Whether a decision with `reason` on `cedar` was denied before the policies ran because the
/// entity provider failed: nothing was fetched, so evaluating the request again (replay, shadow)
/// would judge it without the data it needed. (Provider entities the schema refused are in
/// `cedar.fetched`, and evaluate again.)
pub fn decided_without_entities(reason: &str, cedar: &CedarRequest) -> bool {
    reason == ENTITIES_UNAVAILABLE && cedar.fetched.is_empty()
}

/// A policy that determined a decision, with its `@reason`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecidingPolicy {
    /// Policy id.
    pub id: String,
    /// Its `@reason` annotation.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// What was decided and why.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Allow or deny.
    pub allowed: bool,
    /// HTTP status for Envoy: 200, 401 or 403.
    pub status: u16,
    /// Stable reason code (`allow`, `no_permit`, `forbid`, `token_expired`, …).
    pub reason: &'static str,
    /// Policies that determined the decision.
    pub policies: Vec<DecidingPolicy>,
    /// Evaluation or mapping errors, without secrets.
    pub errors: Vec<String>,
    /// The Cedar request, when one was built.
    pub cedar: Option<CedarRequest>,
    /// The matched route's name.
    pub route: Option<String>,
    /// `error` for the `WWW-Authenticate` challenge (`invalid_token`), when there is one.
    pub challenge_error: Option<&'static str>,
    /// Policy-set version that decided.
    pub policy_version: Arc<str>,
    /// Cedar's answer came from the snapshot's decision cache.
    pub from_cache: bool,
}

impl Decision {
    /// A deny decided before (or instead of) evaluation: no policies, no Cedar request.
    pub fn deny(status: u16, reason: &'static str, version: &Arc<str>) -> Decision {
        Decision {
            allowed: false,
            status,
            reason,
            policies: Vec::new(),
            errors: Vec::new(),
            cedar: None,
            route: None,
            challenge_error: None,
            policy_version: version.clone(),
            from_cache: false,
        }
    }

    /// A browser-route answer decided before the policies (`sso`): a redirect to the IdP or back
    /// after a login or logout (302), or a refusal of the SSO flow itself (CSRF, a callback that
    /// does not match its login). Its reason is one of [`crate::session::reasons`].
    pub fn browser(status: u16, reason: &'static str, version: &Arc<str>) -> Decision {
        Decision::deny(status, reason, version)
    }

    /// Turns an allow into a 403 deny because a step after the decision failed (minting the
    /// upstream token): fail closed. The allowing policies stay in the record beside the reason,
    /// so the record says both why it was allowed and why it was denied anyway.
    pub fn fail_closed(&mut self, reason: &'static str, error: String) {
        self.allowed = false;
        self.status = 403;
        self.reason = reason;
        self.errors.push(error);
    }

    /// The principal as Cedar prints it, if a request was built.
    pub fn principal(&self) -> Option<String> {
        self.cedar.as_ref().map(|c| c.principal.to_string())
    }
}

/// Decides a request whose entity data is all local (static entities and the credential): the
/// whole pipeline in one call, for the offline commands and callers without an entity provider.
pub fn decide(
    config: &Config,
    policies: &PolicySnapshot,
    request: &HttpRequest,
    identity: &Result<Identity, IdentityError>,
    now: SystemTime,
) -> Decision {
    match prepare(config, policies, request, identity, now) {
        Ok(prepared) => prepared.decide(policies),
        Err(denied) => *denied,
    }
}

/// A request mapped to Cedar and not yet evaluated: the half of [`decide`] before Cedar runs,
/// so that the server can fetch the entities it names ([`Prepared::provider_uids`]) in between.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The Cedar request, completed by [`Prepared::set_fetched`].
    cedar: CedarRequest,
    /// The matched route's name.
    route: Option<String>,
    /// The caller had no credential: a deny is a 401 challenge.
    anonymous: bool,
}

impl Prepared {
    /// The Cedar request as mapped.
    pub fn cedar(&self) -> &CedarRequest {
        &self.cedar
    }

    /// Adds the entity provider's answers; they are recorded with the request.
    pub fn set_fetched(&mut self, fetched: Vec<serde_json::Value>) {
        self.cedar.fetched = fetched;
    }

    /// Evaluates the request: the policy half.
    pub fn decide(self, policies: &PolicySnapshot) -> Decision {
        let mut decision = evaluate(policies, &self.cedar, self.anonymous);
        decision.cedar = Some(self.cedar);
        decision.route = self.route;
        decision
    }

    /// Denies without evaluating, because the entity data the request needs could not be had
    /// (`entities_unavailable`): never decided on partial data. The record keeps the request.
    pub fn deny_unavailable(self, policies: &PolicySnapshot, error: String) -> Decision {
        let status = if self.anonymous { 401 } else { 403 };
        let mut d = Decision::deny(status, ENTITIES_UNAVAILABLE, &policies.version);
        d.errors.push(error);
        d.cedar = Some(self.cedar);
        d.route = self.route;
        d
    }
}

/// Maps a request to Cedar, or decides it already (boxed: a deny here is the rare path): over-size headers, a bad credential and an
/// unroutable request are denied here, before any entity is fetched.
pub fn prepare(
    config: &Config,
    policies: &PolicySnapshot,
    request: &HttpRequest,
    identity: &Result<Identity, IdentityError>,
    now: SystemTime,
) -> Result<Prepared, Box<Decision>> {
    let version = &policies.version;
    if request.header_bytes > config.limits.max_header_bytes {
        return Err(Box::new(Decision::deny(403, "headers_too_large", version)));
    }
    let identity = match identity {
        Ok(identity) => identity,

        Err(e) => {
            let mut d = Decision::deny(401, e.reason(), version);
            // RFC 6750 §3.1: an error code only for a bad bearer token; a request with another
            // scheme or no token gets a bare challenge.
            d.challenge_error = e.challenge_error();
            return Err(Box::new(d));
        }
    };
    let anonymous = matches!(identity, Identity::Anonymous);
    match mapping::map(config, identity, request, now) {
        Ok((cedar, route)) => Ok(Prepared {
            cedar,
            route,
            anonymous,
        }),
        Err(MappingError::NoRoute) => Err(Box::new(Decision::deny(
            if anonymous { 401 } else { 403 },
            "no_route",
            version,
        ))),
        Err(MappingError::Token(e)) => {
            let mut d = Decision::deny(401, e.reason(), version);
            d.challenge_error = Some("invalid_token");
            Err(Box::new(d))
        }
    }
}

/// Evaluates a Cedar request and names the outcome: the policy half of [`decide`]. Shadow
/// evaluation and `cedargate replay` call it with a candidate policy set, so what they report is
/// what `serve` would decide. `anonymous` (the caller had no credential; `context.authenticated`
/// is false) turns a deny into a 401 challenge. The returned decision carries no `cedar` and no
/// `route`: the caller owns those.
pub fn evaluate(policies: &PolicySnapshot, cedar: &CedarRequest, anonymous: bool) -> Decision {
    let version = &policies.version;
    let (evaluation, from_cache) = policies.evaluate_cached(cedar);
    let evaluation = match evaluation {
        Ok(e) => e,
        Err(e) => {
            let mut d = Decision::deny(if anonymous { 401 } else { 403 }, e.reason(), version);
            d.errors.push(e.to_string());
            d.from_cache = from_cache;
            return d;
        }
    };
    let deciding = evaluation
        .determining
        .iter()
        .map(|id| DecidingPolicy {
            id: id.clone(),
            reason: policies.reason(id).map(|r| r.to_string()),
        })
        .collect();
    let (allowed, reason) = if evaluation.allowed && evaluation.forbid_errored {
        (false, "policy_error")
    } else if evaluation.allowed {
        (true, "allow")
    } else if evaluation.determining.is_empty() {
        (false, "no_permit")
    } else {
        (false, "forbid")
    };
    let status = match (allowed, anonymous) {
        (true, _) => 200,
        (false, true) => 401,
        (false, false) => 403,
    };
    Decision {
        allowed,
        status,
        reason,
        policies: deciding,
        errors: evaluation.errors,
        cedar: None,
        route: None,
        challenge_error: None,
        policy_version: version.clone(),
        from_cache,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `limits.max_header_bytes` is inclusive: a request whose headers take exactly the limit
    /// is mapped and decided, one byte more is denied `headers_too_large` before anything else
    /// (even before an identity error).
    #[test]
    fn the_header_limit_admits_exactly_max_header_bytes() {
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let config = Config::load(&repo.join("cedargate.yaml")).unwrap();
        let policies = PolicySnapshot::load(&config.policy_dir).unwrap();
        let max = config.limits.max_header_bytes;
        let request = |header_bytes: usize| HttpRequest {
            method: "GET".into(),
            path: "/orders/status".into(),
            host: "api.example.com".into(),
            context_extensions: [("service".to_string(), "orders".to_string())].into(),
            header_bytes,
            ..HttpRequest::default()
        };
        let anonymous: Result<Identity, IdentityError> = Ok(Identity::Anonymous);
        let refused: Result<Identity, IdentityError> = Err(IdentityError::UnsupportedScheme);
        for (bytes, identity, expected) in [
            (0, &anonymous, None),
            (max - 1, &anonymous, None),
            (max, &anonymous, None),
            (max + 1, &anonymous, Some((403, "headers_too_large"))),
            (max * 4, &anonymous, Some((403, "headers_too_large"))),
            (max + 1, &refused, Some((403, "headers_too_large"))),
            (max, &refused, Some((401, "unsupported_auth_scheme"))),
        ] {
            let outcome = prepare(
                &config,
                &policies,
                &request(bytes),
                identity,
                SystemTime::now(),
            );
            let got = outcome.as_ref().err().map(|d| (d.status, d.reason));
            assert_eq!(got, expected, "{bytes} header bytes (limit {max})");
        }
        let decided = prepare(
            &config,
            &policies,
            &request(max),
            &anonymous,
            SystemTime::now(),
        )
        .map(|p| p.decide(&policies));
        assert!(
            decided.as_ref().is_ok_and(|d| d.allowed),
            "the public status page at the limit: {:?}",
            decided.map(|d| d.reason)
        );
    }
}
