//! Resolving the caller of a request with the verifier: a bearer token is verified (signature,
//! keys, cache) by [`cedargate_core::token`]; without one, the caller is an mTLS peer or nobody
//! ([`cedargate_core::identity::without_token`]). Owns no types: they are the core's.

use cedargate_core::config::Config;
use cedargate_core::identity::{Identity, IdentityError, bearer, without_token};
use cedargate_core::request::HttpRequest;

use crate::jwt::Verifier;

/// Resolves the caller of `request`.
pub async fn resolve(
    config: &Config,
    verifier: &Verifier,
    request: &HttpRequest,
) -> Result<Identity, IdentityError> {
    if let Some(authorization) = request.header("authorization") {
        let token = bearer(authorization)?;
        let (token, cached) = verifier.verify(token).await?;
        return Ok(Identity::Token { token, cached });
    }
    without_token(config, request)
}
