//! Resolving the caller of a request: an API key in `api_keys.header` ([`crate::api_keys`]), a
//! bearer token (introspected at its issuer when it is opaque or its issuer is set to `only`
//! ([`crate::introspection`]), otherwise verified as a JWT by [`crate::jwt`]), and without either
//! a browser session on an `sso` browser route ([`crate::sso`], its access token verified as a
//! bearer token), an mTLS peer or nobody ([`cedargate_core::identity::without_token`]). A request with both an
//! `Authorization` header and an API key is refused: one credential decides, never a guess.
//! Owns no identity types (they are the core's), only the sources that need IO.

use cedargate_core::config::Config;
use cedargate_core::identity::{Identity, IdentityError, bearer, without_token};
use cedargate_core::request::HttpRequest;
use cedargate_core::token::TokenError;

use crate::api_keys::ApiKeys;
use crate::introspection::Introspection;
use crate::jwt::Verifier;
use crate::sso::{Browser, Sso};

/// The identity sources beside the JWT verifier, built at start from the config (restart-only
/// settings, like issuers).
pub struct Sources {
    /// The API key store, when `api_keys` is configured.
    pub api_keys: Option<ApiKeys>,
    /// Introspection per issuer (empty without any `introspection` section).
    pub introspection: Introspection,
    /// Browser single sign-on, when `sso` is configured.
    pub sso: Option<Sso>,
}

impl Sources {
    /// The sources `config` asks for.
    pub fn new(config: &Config) -> Sources {
        Sources {
            api_keys: config.api_keys.as_ref().map(ApiKeys::start),
            introspection: Introspection::new(config),
            sso: config.sso.as_ref().map(Sso::new),
        }
    }
}

/// Resolves the caller of a request that may be on an `sso` browser route (`sso` is the SSO
/// client when it is): a session cookie is the credential when there is no `Authorization`
/// header, and brings the browser headers of its answer (a refreshed or cleared cookie, the
/// upstream's `cookie` without ours). Everything else is [`resolve`].
pub async fn resolve_browser(
    config: &Config,
    verifier: &Verifier,
    sources: &Sources,
    sso: Option<&Sso>,
    request: &HttpRequest,
) -> (Result<Identity, IdentityError>, Option<Browser>) {
    if let Some(sso) = sso
        && request.header("authorization").is_none()
        && sso.has_session(request)
    {
        let session = sso.session(verifier, request).await;
        let identity = session
            .token
            .map(|(token, cached)| Identity::Token { token, cached });
        return (identity, Some(session.browser));
    }
    (resolve(config, verifier, sources, request).await, None)
}

/// Resolves the caller of `request`.
pub async fn resolve(
    config: &Config,
    verifier: &Verifier,
    sources: &Sources,
    request: &HttpRequest,
) -> Result<Identity, IdentityError> {
    let api_key = config
        .api_keys
        .as_ref()
        .and_then(|settings| request.header(&settings.header).map(|key| (settings, key)));
    match (request.header("authorization"), api_key) {
        (Some(_), Some(_)) => Err(IdentityError::AmbiguousCredentials),
        (None, Some((settings, key))) => {
            let store = sources.api_keys.as_ref().ok_or(IdentityError::ApiKey {
                id: cedargate_core::api_keys::presented_id(key).map(str::to_string),
                error: cedargate_core::api_keys::ApiKeyError::Unavailable,
            })?;
            Ok(Identity::ApiKey(store.verify(settings, key)?))
        }
        (Some(authorization), None) => {
            let token = bearer(authorization)?;
            if let Some(at) = sources.introspection.route(token) {
                if token.len() > config.limits.max_token_bytes {
                    return Err(TokenError::TooLarge.into());
                }
                let (token, cached) = sources.introspection.introspect(at, token).await?;
                return Ok(Identity::Token { token, cached });
            }
            let (token, cached) = verifier.verify(token).await?;
            Ok(Identity::Token { token, cached })
        }
        (None, None) => without_token(config, request),
    }
}
