//! The IdP as `openidconnect` sees it: discovery into provider metadata (OIDC Discovery,
//! RP-Initiated Logout's `end_session_endpoint`, RFC 9207's flag) with the IdP's JWKS for ID
//! tokens, kept a while and fetched single-flight, and the ID token algorithms the issuer allows.
//! Only `sso` uses it; the HTTP is [`super::http`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, IssuerUrl, LogoutProviderMetadata, ProviderMetadata,
};
use serde::{Deserialize, Serialize};

use cedargate_core::config::SsoConfig;

use super::http;

/// How long a discovered provider (metadata and its JWKS, for ID tokens) is reused before it is
/// fetched again: ID token keys rotate rarely, and a failed ID token check refetches at once.
const PROVIDER_MAX_AGE: Duration = Duration::from_secs(300);

/// Discovery fields openidconnect does not name: RFC 9207's flag.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct IssParameter {
    /// The IdP puts `iss` in every authorization response: a callback without it is refused.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

impl AdditionalProviderMetadata for IssParameter {}

/// The provider metadata cedargate reads: OIDC Discovery, RP-Initiated Logout's
/// `end_session_endpoint`, RFC 9207's flag.
pub type Metadata = ProviderMetadata<
    LogoutProviderMetadata<IssParameter>,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// What discovery gave: the provider metadata (with its JWKS for ID tokens) and when.
pub struct Provider {
    /// Metadata with `end_session_endpoint`; its JWKS is fetched with it.
    pub metadata: Metadata,
    /// When it was fetched.
    fetched: Instant,
}

/// Discovery at the SSO issuer.
pub struct Discovery {
    /// The configured issuer URL (discovery requires the document's to equal it).
    issuer: String,
    /// No redirects, rustls.
    http: reqwest::Client,
    /// Budget of one call.
    timeout: Duration,
    /// The last discovered provider.
    current: ArcSwapOption<Provider>,
    /// Single-flight discovery.
    discovering: tokio::sync::Mutex<()>,
}

impl Discovery {
    /// Nothing discovered yet.
    pub fn new(config: &SsoConfig) -> Discovery {
        Discovery {
            issuer: config.issuer.issuer.to_string(),
            http: crate::jwks::http_client().unwrap_or_default(),
            timeout: config.idp_timeout,
            current: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(()),
        }
    }

    /// The provider, discovered when missing or older than [`PROVIDER_MAX_AGE`].
    pub async fn get(&self) -> Result<Arc<Provider>, String> {
        if let Some(p) = self.current.load_full()
            && p.fetched.elapsed() < PROVIDER_MAX_AGE
        {
            return Ok(p);
        }
        let _guard = self.discovering.lock().await;
        if let Some(p) = self.current.load_full()
            && p.fetched.elapsed() < PROVIDER_MAX_AGE
        {
            return Ok(p);
        }
        let issuer = IssuerUrl::new(self.issuer.clone()).map_err(|e| e.to_string())?;
        let client = self.http.clone();
        let timeout = self.timeout;
        let send = move |r| http::send(client.clone(), timeout, r);
        let metadata = Metadata::discover_async(issuer, &send)
            .await
            .map_err(|e| format!("discovery at {}: {e}", self.issuer))?;
        let p = Arc::new(Provider {
            metadata,
            fetched: Instant::now(),
        });
        self.current.store(Some(p.clone()));
        Ok(p)
    }

    /// Forgets the provider (an ID token failed: its keys may have rotated).
    pub fn forget(&self) {
        self.current.store(None);
    }
}

/// The issuer's allowed algorithms as openidconnect names them (those it can verify).
pub fn id_token_algs(config: &SsoConfig) -> Vec<CoreJwsSigningAlgorithm> {
    use jsonwebtoken::Algorithm as A;
    config
        .issuer
        .algorithms
        .iter()
        .filter_map(|a| match a {
            A::RS256 => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256),
            A::RS384 => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384),
            A::RS512 => Some(CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512),
            A::PS256 => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha256),
            A::PS384 => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha384),
            A::PS512 => Some(CoreJwsSigningAlgorithm::RsaSsaPssSha512),
            A::ES256 => Some(CoreJwsSigningAlgorithm::EcdsaP256Sha256),
            A::ES384 => Some(CoreJwsSigningAlgorithm::EcdsaP384Sha384),
            A::EdDSA => Some(CoreJwsSigningAlgorithm::EdDsa),
            _ => None,
        })
        .collect()
}
