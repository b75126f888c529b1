//! The Check pipeline, protocol-free: attributes → identity → mapping → entities → decision →
//! upstream token → log.
//!
//! [`Gate::check`] is what the gRPC handler, the benchmarks and the tests call. It reads the policy
//! set as an immutable snapshot (`ArcSwap`), so a reload never blocks or tears a Check. Two steps
//! may await: token verification, only for an unknown-`kid` refetch, and, with an
//! `entity_provider`, the entities of the request's principal and resource, from its cache or
//! fetched within its budget; when they can't be had the Check is denied `entities_unavailable`.
//! With `upstream_token` on, an allow also gets a minted token (`mint`); when minting fails the
//! allow becomes a deny (`mint_failed`), and a deny never mints. On an `sso` browser route,
//! cedargate's own paths (callback, login, logout) and the CSRF rule are answered first
//! ([`crate::sso`]), a session cookie is the credential when there is no other, and a browser
//! navigation that would get a 401 is redirected to the IdP instead.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use cedargate_core::config::Config;
use cedargate_core::decision::{self, Decision, Prepared};
use cedargate_core::identity::{Identity, IdentityError};
use cedargate_core::policy::PolicySnapshot;
use cedargate_core::record::{
    DecisionRecord, RECORD_VERSION, ShadowRecord, TokenFacts, UpstreamTokenFacts, rfc3339,
};
use cedargate_core::redaction;
use cedargate_core::request::HttpRequest;

use crate::decision_log::DecisionLog;
use crate::entity_provider::{EntityProvider, ProviderError};
use crate::identity;
use crate::jwt::Verifier;
use crate::mint::{self, KeyRing, Minted, Minter, Subject};
use crate::sso::{Browser, Sso};

/// A decision with its id, as the gRPC edge answers it.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// Unique decision id (UUID v7: sortable by time).
    pub decision_id: String,
    /// The principal as Cedar prints it, when a Cedar request was built.
    pub principal: Option<String>,
    /// The decision. Its Cedar request, policies and errors have moved into the decision
    /// record (no copies on the Check path), so they are empty here.
    pub decision: Decision,
    /// On an allow with `upstream_token` on: what to do to the upstream request's headers.
    pub upstream: Option<UpstreamHeaders>,
    /// On a browser route (`sso`): the redirect, cookies to set, and the upstream's `cookie`.
    pub browser: Option<Browser>,
}

/// The header changes an allow asks of Envoy for the upstream: the minted token (overwriting
/// whatever the client sent under that name) and the caller's credential headers removed.
#[derive(Clone)]
pub struct UpstreamHeaders {
    /// Lower-case header name carrying the token.
    pub name: Arc<str>,
    /// Its value (`Bearer <jwt>` for `authorization`, else the JWT). A credential: not printed
    /// by `Debug`, never logged.
    pub value: String,
    /// Lower-case headers to remove.
    pub remove: Arc<[String]>,
}

impl std::fmt::Debug for UpstreamHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHeaders")
            .field("name", &self.name)
            .field("value", &"[minted token]")
            .field("remove", &self.remove)
            .finish()
    }
}

/// The config and policy set in force, swapped together so that a Check never sees a new route
/// table with an old policy set (or the reverse).
pub struct Active {
    /// Validated config.
    pub config: Arc<Config>,
    /// Validated policy set.
    pub policies: Arc<PolicySnapshot>,
    /// The candidate policy set of shadow mode (`shadow.policy_dir`): evaluated too, recorded,
    /// never enforced.
    pub shadow: Option<Arc<PolicySnapshot>>,
    /// The upstream-token keys for `config.upstream_token` (`None` when it is off): loaded by
    /// the server with the config they belong to, swapped with it.
    pub upstream_keys: Option<Arc<KeyRing>>,
}

/// Everything a Check needs, shared by all Checks.
pub struct Gate {
    /// Config + policies in force; replaced whole on reload.
    pub active: ArcSwap<Active>,
    /// Token verifier with its key registry and cache.
    pub verifier: Verifier,
    /// API keys and introspection (built from the config at start).
    pub sources: identity::Sources,
    /// Decision-log queue.
    pub log: DecisionLog,
    /// Upstream-token minting and its reuse cache (idle unless `upstream_token` is on).
    pub minter: Minter,
    /// The entity provider with its answer cache, when `entity_provider` is configured. Built at
    /// start (a restart-only setting), so it is not part of [`Active`].
    pub entity_provider: Option<EntityProvider>,
}

impl Gate {
    /// A gate deciding with `config` and `policies`.
    pub fn new(
        config: Arc<Config>,
        policies: PolicySnapshot,
        upstream_keys: Option<Arc<KeyRing>>,
        verifier: Verifier,
        log: DecisionLog,
    ) -> Gate {
        Gate {
            sources: identity::Sources::new(&config),
            active: ArcSwap::from_pointee(Active {
                config,
                policies: Arc::new(policies),
                shadow: None,
                upstream_keys,
            }),
            verifier,
            log,
            minter: Minter::new(),
            entity_provider: None,
        }
    }

    /// The same gate, asking `provider` for the entities of each request's principal and
    /// resource.
    pub fn with_entity_provider(mut self, provider: Option<EntityProvider>) -> Gate {
        self.entity_provider = provider;
        self
    }

    /// The same gate, also evaluating `shadow` (a candidate policy set) on every Check.
    pub fn with_shadow(self, shadow: Option<Arc<PolicySnapshot>>) -> Gate {
        let active = self.active.load_full();
        self.active.store(Arc::new(Active {
            config: active.config.clone(),
            policies: active.policies.clone(),
            shadow,
            upstream_keys: active.upstream_keys.clone(),
        }));
        self
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.active.load().config.clone()
    }

    /// Decides one request and records it.
    pub async fn check(&self, request: HttpRequest) -> Verdict {
        let started = Instant::now();
        let arrived = SystemTime::now();
        let active = self.active.load_full();
        let config = &active.config;
        let oversized = request.header_bytes > config.limits.max_header_bytes;
        // Browser routes (`sso`): cedargate's own paths and the CSRF rule answer before identity.
        let sso = self
            .sources
            .sso
            .as_ref()
            .filter(|s| !oversized && s.applies(&request));
        if let Some(sso) = sso
            && let Some(answer) = sso.route(&self.verifier, &request).await
        {
            return self.browser_answer(&active, &request, answer, arrived, started);
        }
        // Oversized requests are denied by `decide` before anything else; don't verify their tokens.
        let (identity, mut browser) = if oversized {
            (Ok(Identity::Anonymous), None)
        } else {
            identity::resolve_browser(config, &self.verifier, &self.sources, sso, &request).await
        };
        if let Some(sso) = sso
            && let Some(answer) = self
                .login_instead(&active, sso, &request, &identity, &mut browser, arrived)
                .await
        {
            return self.browser_answer(&active, &request, answer, arrived, started);
        }
        let policies = &active.policies;
        let decision = match decision::prepare(config, policies, &request, &identity, arrived) {
            Ok(mut prepared) => match self.entities(&prepared).await {
                Ok(fetched) => {
                    prepared.set_fetched(fetched);
                    let decision = prepared.decide(policies);
                    crate::metrics::decision_cache_lookup(decision.from_cache);
                    decision
                }
                Err(e) => prepared.deny_unavailable(policies, e.to_string()),
            },
            Err(denied) => *denied,
        };
        let shadow = active
            .shadow
            .as_deref()
            .and_then(|candidate| crate::shadow::evaluate(candidate, &decision, &identity));
        let mut verdict = Verdict {
            decision_id: uuid::Uuid::now_v7().to_string(),
            principal: decision.principal(),
            decision,
            upstream: None,
            browser,
        };
        let minted = self.upstream_token(
            config,
            active.upstream_keys.as_deref(),
            &mut verdict,
            &request,
            identity.as_ref().ok(),
        );
        let mut record = record(
            config,
            &mut verdict,
            &request,
            identity.as_ref().ok(),
            shadow,
            arrived,
            started,
        );
        // A refused API key is named by its public id, never its text; a refused session says why.
        if let Err(refused @ (IdentityError::ApiKey { .. } | IdentityError::Session(_))) = &identity
        {
            record.errors.push(refused.to_string());
        }
        // Facts about the minted token, never the token itself.
        record.upstream_token = minted.map(|m| UpstreamTokenFacts {
            jti: m.jti.to_string(),
            kid: m.kid.to_string(),
            aud: m.aud.to_string(),
            exp: m.exp,
            reused: m.reused,
        });
        self.log.record(record);
        verdict
    }

    /// On a browser route: a navigation that would be answered 401 (no credential and the
    /// policies deny anonymous, or a session that is no longer good) is sent to the IdP instead;
    /// scripts and API clients keep their 401. A refused session keeps its own reason in the
    /// record, and its cookie is cleared. `None`: decide as usual.
    async fn login_instead(
        &self,
        active: &Active,
        sso: &Sso,
        request: &HttpRequest,
        identity: &Result<Identity, IdentityError>,
        browser: &mut Option<Browser>,
        arrived: SystemTime,
    ) -> Option<crate::sso::Answer> {
        if !Sso::wants_html(request) {
            return None;
        }
        let denied_anonymous = match identity {
            Ok(anonymous @ Identity::Anonymous) => {
                let d = decision::decide(
                    &active.config,
                    &active.policies,
                    request,
                    &Ok(anonymous.clone()),
                    arrived,
                );
                !d.allowed && d.status == 401
            }
            Err(IdentityError::Session(_)) => true,
            _ => false,
        };
        if !denied_anonymous {
            return None;
        }
        let mut answer = sso.login_required(request).await;
        if let Err(refused) = identity {
            if answer.status == 302 {
                answer.reason = refused.reason();
            }
            answer.error = Some(refused.to_string());
            answer
                .browser
                .set_cookies
                .extend(browser.take().map(|b| b.set_cookies).unwrap_or_default());
        }
        Some(answer)
    }

    /// A browser-route answer decided before the policies (a redirect to or from the IdP, a
    /// CSRF or state refusal), recorded like every decision.
    fn browser_answer(
        &self,
        active: &Active,
        request: &HttpRequest,
        answer: crate::sso::Answer,
        arrived: SystemTime,
        started: Instant,
    ) -> Verdict {
        let mut decision =
            Decision::browser(answer.status, answer.reason, &active.policies.version);
        decision.errors.extend(answer.error);
        let mut verdict = Verdict {
            decision_id: uuid::Uuid::now_v7().to_string(),
            principal: None,
            decision,
            upstream: None,
            browser: Some(answer.browser),
        };
        let record = record(
            &active.config,
            &mut verdict,
            request,
            None,
            None,
            arrived,
            started,
        );
        self.log.record(record);
        verdict
    }

    /// What the entity provider knows about the prepared request's principal and resource: none
    /// without a provider, or when neither uid is of a type it serves.
    async fn entities(&self, prepared: &Prepared) -> Result<Vec<serde_json::Value>, ProviderError> {
        let Some(provider) = &self.entity_provider else {
            return Ok(Vec::new());
        };
        let uids = prepared.cedar().provider_uids(provider.types());
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        provider.fetch(&uids).await
    }

    /// On an allow with `upstream_token` on: mints (or reuses) the token and sets the verdict's
    /// upstream headers; if that fails, the allow becomes a `mint_failed` deny. Nothing otherwise.
    fn upstream_token(
        &self,
        config: &Config,
        keys: Option<&KeyRing>,
        verdict: &mut Verdict,
        request: &HttpRequest,
        identity: Option<&Identity>,
    ) -> Option<Minted> {
        let settings = config.upstream_token.as_ref()?;
        if !verdict.decision.allowed {
            return None;
        }
        let minted = match (verdict.decision.cedar.as_ref(), keys) {
            (Some(cedar), Some(keys)) => {
                let subject = Subject {
                    principal_type: &cedar.principal.entity_type,
                    principal_id: &cedar.principal.id,
                    token: match identity {
                        Some(Identity::Token { token, .. }) => Some(&**token),
                        _ => None,
                    },
                };
                let service = request
                    .context_extensions
                    .get("service")
                    .map(String::as_str);
                self.minter.mint(
                    settings,
                    keys,
                    &subject,
                    service,
                    &verdict.decision_id,
                    cedargate_core::token::now_secs(),
                )
            }
            // An allow always has its Cedar request; without one there is no subject to vouch for.
            (None, _) => Err(mint::MintError::Encode),
            // The server loads keys with the config that asks for them; never without.
            (_, None) => Err(mint::MintError::NoKeys),
        };
        match minted {
            Ok(minted) => {
                verdict.upstream = Some(UpstreamHeaders {
                    name: settings.header.clone(),
                    value: settings.header_value(&minted.token),
                    remove: settings.strip_headers.clone(),
                });
                Some(minted)
            }
            Err(e) => {
                tracing::error!(error = %e, decision_id = %verdict.decision_id, "upstream_token.mint_failed: the allow is denied");
                verdict
                    .decision
                    .fail_closed(mint::MINT_FAILED, format!("upstream token: {e}"));
                None
            }
        }
    }
}

/// The decision record; takes the Cedar request, policies and errors out of the verdict. Headers
/// come from `decision_log.headers` only; a Check denied before a Cedar request was built keeps
/// its request line instead; configured claims are redacted, then long values cut
/// (`decision_log.max_header_value_bytes`: the record only, Cedar has seen them whole), before
/// it is queued.
fn record(
    config: &Config,
    verdict: &mut Verdict,
    request: &HttpRequest,
    identity: Option<&Identity>,
    shadow: Option<ShadowRecord>,
    arrived: SystemTime,
    started: Instant,
) -> DecisionRecord {
    let cedar = verdict.decision.cedar.take();
    let d = &mut verdict.decision;
    let token = TokenFacts::of(identity);
    let mut record = DecisionRecord {
        v: RECORD_VERSION,
        time: rfc3339(arrived),
        decision_id: verdict.decision_id.clone(),
        request_id: (!request.request_id.is_empty()).then(|| request.request_id.clone()),
        trace_id: crate::telemetry::current_trace_id()
            .or_else(|| request.header("traceparent").and_then(redaction::trace_id)),
        decision: if d.allowed { "allow" } else { "deny" }.to_string(),
        status: d.status,
        reason: d.reason.to_string(),
        mode: "enforce".to_string(),
        principal: verdict.principal.clone(),
        action: cedar.as_ref().map(|c| c.action.to_string()),
        resource: cedar.as_ref().map(|c| c.resource.to_string()),
        route: d.route.take(),
        request: cedar
            .is_none()
            .then(|| redaction::request_line(config, request)),
        policies: std::mem::take(&mut d.policies),
        errors: std::mem::take(&mut d.errors),
        token,
        source_ip: request.source_ip.map(|ip| ip.to_string()),
        headers: redaction::headers(&config.decision_log, request),
        latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        policy_version: d.policy_version.to_string(),
        from_cache: d.from_cache,
        shadow,
        upstream_token: None,
        truncated: Vec::new(),
        cedar,
        api: None,
    };
    if let Some(Identity::Token { token, .. }) = identity {
        redaction::redact(&config.decision_log, token, &mut record);
    }
    // After redaction, so that a cut never leaves part of a redacted value behind.
    redaction::cap(config, &mut record);
    record
}
