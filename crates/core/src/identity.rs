//! Who is calling: a verified bearer token (a JWT, or an opaque token its issuer's RFC 7662
//! introspection endpoint vouched for; a browser session carries one too), an API key, an mTLS
//! peer Envoy verified, or nobody.
//!
//! A credential that is present but bad is an error here, never "anonymous": the decision core
//! turns it into a 401 whatever the policies say. This module owns the identity types and the
//! credential extraction that needs no keys (the bearer scheme, mTLS peers); verifying a token is
//! the server's (`cedargate_server::identity::resolve`). It builds no Cedar values (that is
//! `mapping`).

use std::sync::Arc;

use crate::api_keys::{ApiKey, ApiKeyError};
use crate::config::Config;
use crate::request::HttpRequest;
use crate::token::{TokenError, VerifiedToken};

/// The caller, once credentials checked out.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credential at all.
    Anonymous,
    /// A verified bearer token.
    Token {
        /// The token's verified claims.
        token: Arc<VerifiedToken>,
        /// Whether verification was served from the cache.
        cached: bool,
    },
    /// An mTLS peer with no bearer token.
    Peer(String),
    /// An API key from the key file, checked (secret, revocation, expiry).
    ApiKey(Arc<ApiKey>),
}

/// Why a presented credential was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The bearer token failed verification.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// `Authorization` is present but not `Bearer <token>`.
    #[error("authorization scheme is not Bearer")]
    UnsupportedScheme,
    /// The mTLS peer's SPIFFE trust domain is not accepted.
    #[error("peer trust domain is not accepted")]
    UntrustedPeer,
    /// The API key in the configured header was refused.
    #[error("api key {}: {error}", id.as_deref().unwrap_or("(no id)"))]
    ApiKey {
        /// The presented key's public id, when it has the key form (safe to record).
        id: Option<String>,
        /// Why it was refused.
        error: ApiKeyError,
    },
    /// Both an `Authorization` header and an API key: one credential per request, so that
    /// which one decided is never a guess.
    #[error("more than one credential (authorization and an api key)")]
    AmbiguousCredentials,
    /// The browser session cookie was refused (`sso`): tampered, expired, logged out.
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
}

impl IdentityError {
    /// Stable reason code for the decision log.
    pub fn reason(&self) -> &'static str {
        match self {
            IdentityError::Token(e) => e.reason(),
            IdentityError::UnsupportedScheme => "unsupported_auth_scheme",
            IdentityError::UntrustedPeer => "peer_untrusted",
            IdentityError::ApiKey { error, .. } => error.reason(),
            IdentityError::AmbiguousCredentials => "credentials_ambiguous",
            IdentityError::Session(e) => e.reason(),
        }
    }

    /// The `error` of the 401's `WWW-Authenticate: Bearer` challenge (RFC 6750 §3.1): only for a
    /// bad bearer token. A request with another scheme, an API key or no token gets a bare
    /// challenge, and so does a token whose issuer can't be consulted (keys missing or stale,
    /// introspection unreachable): the token may be fine, we cannot tell.
    pub fn challenge_error(&self) -> Option<&'static str> {
        match self {
            IdentityError::Token(
                TokenError::KeysUnavailable
                | TokenError::KeysStale
                | TokenError::IntrospectionUnavailable,
            ) => None,
            IdentityError::Token(_) => Some("invalid_token"),
            IdentityError::UnsupportedScheme
            | IdentityError::UntrustedPeer
            | IdentityError::ApiKey { .. }
            | IdentityError::AmbiguousCredentials
            | IdentityError::Session(_) => None,
        }
    }
}

/// The bearer token in an `Authorization` header value, if it is one.
pub fn bearer(authorization: &str) -> Result<&str, IdentityError> {
    // `trim` then a split at the first whitespace: the token part is never empty.
    let (scheme, token) = authorization
        .trim()
        .split_once(char::is_whitespace)
        .ok_or(IdentityError::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(IdentityError::UnsupportedScheme);
    }
    Ok(token.trim())
}

/// The caller of a request that carries no `Authorization` header: an mTLS peer Envoy verified
/// (SPIFFE trust domain checked) or nobody. Sync, so policy tests resolve peers exactly as
/// the server does.
pub fn without_token(config: &Config, request: &HttpRequest) -> Result<Identity, IdentityError> {
    if let (Some(mtls), Some(peer)) = (&config.mtls, &request.source_principal) {
        if !mtls.trust_domains.is_empty() {
            let domain = peer
                .strip_prefix("spiffe://")
                .and_then(|rest| rest.split('/').next());
            if !domain.is_some_and(|d| mtls.trust_domains.contains(d)) {
                return Err(IdentityError::UntrustedPeer);
            }
        }
        return Ok(Identity::Peer(peer.clone()));
    }
    Ok(Identity::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_others_are_rejected() {
        assert_eq!(bearer("Bearer abc"), Ok("abc"));
        assert_eq!(bearer("bearer   abc "), Ok("abc"));
        assert_eq!(bearer("Bearer\tabc"), Ok("abc"));
        assert_eq!(
            bearer("Basic dXNlcjpwdw=="),
            Err(IdentityError::UnsupportedScheme)
        );
        assert_eq!(bearer("Bearer"), Err(IdentityError::UnsupportedScheme));
        assert_eq!(
            bearer("Bearer  "),
            Err(IdentityError::UnsupportedScheme),
            "a bare scheme with spaces has no token"
        );
    }
}
