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

    /// Each refusal has its documented reason code, and only a bad bearer token gets
    /// `error="invalid_token"` in its challenge: not a token whose issuer can't be consulted.
    #[test]
    fn refusals_have_their_reason_and_challenge() {
        use crate::api_keys::ApiKeyError;
        use crate::session::SessionError;
        let api_key = |error| IdentityError::ApiKey { id: None, error };
        for (error, reason, challenge) in [
            (
                IdentityError::Token(TokenError::Expired),
                "token_expired",
                Some("invalid_token"),
            ),
            (
                IdentityError::Token(TokenError::KeysUnavailable),
                "token_keys_unavailable",
                None,
            ),
            (
                IdentityError::Token(TokenError::KeysStale),
                "token_keys_stale",
                None,
            ),
            (
                IdentityError::Token(TokenError::IntrospectionUnavailable),
                "introspection_unavailable",
                None,
            ),
            (
                IdentityError::UnsupportedScheme,
                "unsupported_auth_scheme",
                None,
            ),
            (IdentityError::UntrustedPeer, "peer_untrusted", None),
            (api_key(ApiKeyError::Revoked), "api_key_revoked", None),
            (
                IdentityError::AmbiguousCredentials,
                "credentials_ambiguous",
                None,
            ),
            (
                IdentityError::Session(SessionError::LoggedOut),
                "session_logged_out",
                None,
            ),
        ] {
            assert_eq!(error.reason(), reason, "{error:?}");
            assert_eq!(error.challenge_error(), challenge, "{error:?}");
        }
    }

    /// Without a token: an mTLS peer of an accepted trust domain (any, when none is listed), or
    /// nobody when there is no peer or no `mtls` section; a peer of another domain is refused.
    #[test]
    fn peers_are_accepted_by_trust_domain() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cedargate.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let parse = |text: &str| Config::parse(text, &path).unwrap();
        let listed = parse(&text);
        let any = parse(&text.replace("trust_domains: [cedargate.test]", "trust_domains: []"));
        let no_mtls = Config {
            mtls: None,
            ..parse(&text)
        };
        let peer = |p: Option<&str>| HttpRequest {
            source_principal: p.map(str::to_string),
            ..HttpRequest::default()
        };
        let ok = |p: &str| Ok(Identity::Peer(p.to_string()));
        for (config, source, expected) in [
            (
                &listed,
                Some("spiffe://cedargate.test/ns/a"),
                ok("spiffe://cedargate.test/ns/a"),
            ),
            (
                &listed,
                Some("spiffe://cedargate.test"),
                ok("spiffe://cedargate.test"),
            ),
            (
                &listed,
                Some("spiffe://evil.test/ns/a"),
                Err(IdentityError::UntrustedPeer),
            ),
            (
                &listed,
                Some("spiffe://cedargate.test.evil/a"),
                Err(IdentityError::UntrustedPeer),
            ),
            (
                &listed,
                Some("cedargate.test/ns/a"),
                Err(IdentityError::UntrustedPeer),
            ),
            (&listed, None, Ok(Identity::Anonymous)),
            (
                &any,
                Some("spiffe://evil.test/a"),
                ok("spiffe://evil.test/a"),
            ),
            (
                &no_mtls,
                Some("spiffe://cedargate.test/a"),
                Ok(Identity::Anonymous),
            ),
        ] {
            let got = without_token(config, &peer(source)).map(|i| format!("{i:?}"));
            assert_eq!(got, expected.map(|i| format!("{i:?}")), "{source:?}");
        }
    }
}
