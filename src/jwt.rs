//! Bearer JWT verification: size bound → header/`iss` peek → algorithm allow-list → key by `kid`
//! (one rate-limited refetch when unknown) → signature and claims (`jsonwebtoken`) → cache.
//!
//! Only `alg`, `kid` and `crit` are read from the header: `jku`, `x5u`, `x5c` and embedded `jwk`
//! are never looked at, so a token cannot choose its own key. Verified tokens are cached by the
//! SHA-256 of the token, bounded in size, and never served past `exp` or across a key-set change.
//! This module never logs a token; errors carry reason codes, not input.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::IssuerConfig;
use crate::jwks::{IssuerKeys, Jwks, KeySet, Unusable};

/// Longest a verified token stays cached even when its `exp` is further away: bounds how long a
/// revoked-by-rotation key can keep a token alive between refreshes.
const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

/// Why a presented token was rejected. Each variant is one reason code in the decision log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Larger than `limits.max_token_bytes`.
    #[error("token larger than the configured limit")]
    TooLarge,
    /// Not three base64url JSON parts, or a claim set that is not an object.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// `alg` not in the issuer's allow-list (including `none` and HS*).
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The header marks extensions critical (`crit`); we implement none.
    #[error("token uses critical header extensions")]
    CriticalHeader,
    /// `iss` is missing or names no configured issuer.
    #[error("token issuer is not trusted")]
    UnknownIssuer,
    /// No key for this `kid`, even after a refetch.
    #[error("token signing key is unknown")]
    UnknownKid,
    /// The issuer's keys have never been fetched.
    #[error("issuer keys are unavailable")]
    KeysUnavailable,
    /// The issuer's keys were not refreshed within `max_staleness`.
    #[error("issuer keys are stale")]
    KeysStale,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is past (beyond leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// No accepted audience in `aud`.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// `iss` mismatch at claim validation.
    #[error("token issuer does not match")]
    WrongIssuer,
    /// A required claim (`exp`, `iss`, `aud`) is missing.
    #[error("token lacks a required claim")]
    MissingClaim,
    /// A registered claim has the wrong type (e.g. `exp` as a string).
    #[error("token claim has an invalid format")]
    InvalidClaim,
    /// The principal id claim is missing or not a string.
    #[error("token lacks the principal id claim")]
    MissingPrincipalClaim,
}

impl TokenError {
    /// The stable reason code written to decision logs.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed => "token_malformed",
            TokenError::AlgorithmNotAllowed => "token_alg_not_allowed",
            TokenError::CriticalHeader => "token_crit_unsupported",
            TokenError::UnknownIssuer => "token_unknown_issuer",
            TokenError::UnknownKid => "token_unknown_kid",
            TokenError::KeysUnavailable => "token_keys_unavailable",
            TokenError::KeysStale => "token_keys_stale",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::MissingClaim => "token_missing_claim",
            TokenError::InvalidClaim => "token_invalid_claim",
            TokenError::MissingPrincipalClaim => "token_missing_principal_claim",
        }
    }
}

/// A token whose signature and claims verified.
#[derive(Debug)]
pub struct VerifiedToken {
    /// The issuer it verified against.
    pub issuer: Arc<IssuerConfig>,
    /// All claims.
    pub claims: Map<String, Value>,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
    /// Short SHA-256 of the token (hex), to correlate without storing the token.
    pub hash: Arc<str>,
    /// Key-set version it verified under.
    keys_version: u64,
}

impl VerifiedToken {
    /// A token as if it had verified against `issuer`, for policy tests and `cedargate check`:
    /// they state the claims a verified token would carry, and must reach `mapping` and
    /// `decision` through the same types as a real token. Never used on the request path.
    pub fn from_claims(issuer: Arc<IssuerConfig>, claims: Map<String, Value>) -> VerifiedToken {
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let digest = sha256(Value::Object(claims.clone()).to_string().as_bytes());
        VerifiedToken {
            issuer,
            claims,
            exp,
            hash: hex_prefix(&digest).into(),
            keys_version: 0,
        }
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

#[derive(Deserialize)]
struct PeekHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
}

#[derive(Deserialize)]
struct PeekClaims {
    iss: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
}

/// The per-entry cache expiry: until `exp`, at most [`MAX_CACHE_TTL`].
struct UntilExp;

impl moka::Expiry<[u8; 32], Arc<VerifiedToken>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<VerifiedToken>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = value.exp.saturating_sub(now_secs());
        Some(Duration::from_secs(left).min(MAX_CACHE_TTL))
    }
}

/// Verifies bearer tokens against the configured issuers.
pub struct Verifier {
    /// Keys by issuer.
    jwks: Arc<Jwks>,
    /// Verified tokens by SHA-256 of the token; `None` when disabled.
    cache: Option<moka::sync::Cache<[u8; 32], Arc<VerifiedToken>>>,
    /// Largest token accepted.
    max_token_bytes: usize,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Verifier {
    /// A verifier over `jwks`, caching up to `cache_capacity` tokens (0 = no cache).
    pub fn new(jwks: Arc<Jwks>, cache_capacity: u64, max_token_bytes: usize) -> Verifier {
        let cache = (cache_capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(cache_capacity)
                .expire_after(UntilExp)
                .build()
        });
        Verifier {
            jwks,
            cache,
            max_token_bytes,
        }
    }

    /// The key registry.
    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    /// Verifies `token`; `Ok` carries whether it came from the cache.
    pub async fn verify(&self, token: &str) -> Result<(Arc<VerifiedToken>, bool), TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let digest = sha256(token.as_bytes());
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(&digest)
        {
            let keys_current = self
                .jwks
                .issuer(&hit.issuer.issuer)
                .and_then(|k| k.usable().ok())
                .is_some_and(|s| s.version == hit.keys_version);
            if keys_current && hit.exp > now_secs() {
                crate::metrics::token_cache_lookup(true);
                return Ok((hit, true));
            }
            cache.invalidate(&digest);
        }
        if self.cache.is_some() {
            crate::metrics::token_cache_lookup(false);
        }
        let verified = Arc::new(self.verify_uncached(token, &digest).await?);
        if let Some(cache) = &self.cache {
            cache.insert(digest, verified.clone());
        }
        Ok((verified, false))
    }

    async fn verify_uncached(
        &self,
        token: &str,
        digest: &[u8; 32],
    ) -> Result<VerifiedToken, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: PeekHeader = decode_part(header)?;
        if header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let peek: PeekClaims = decode_part(payload)?;
        // jsonwebtoken reads a non-numeric `exp` as absent; name the real problem instead.
        if [&peek.exp, &peek.nbf]
            .into_iter()
            .any(|c| c.as_ref().is_some_and(|v| !v.is_u64()))
        {
            return Err(TokenError::InvalidClaim);
        }
        let iss = match peek.iss {
            Some(Value::String(s)) => s,
            Some(_) => return Err(TokenError::InvalidClaim),
            None => return Err(TokenError::MissingClaim),
        };
        let keys = self.jwks.issuer(&iss).ok_or(TokenError::UnknownIssuer)?;
        let issuer = &keys.config;
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| issuer.algorithms.contains(a))
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        let validation = validation(issuer, alg);

        let mut set = keys.usable().map_err(|u| match u {
            Unusable::Missing => TokenError::KeysUnavailable,
            Unusable::Stale => TokenError::KeysStale,
        })?;
        if let Some(kid) = header.kid.as_deref()
            && set.candidates(Some(kid), alg).next().is_none()
        {
            set = refetch(keys, kid).await?;
        }
        let (claims, version) = verify_with(&set, header.kid.as_deref(), alg, token, &validation)?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::InvalidClaim)?;
        Ok(VerifiedToken {
            issuer: issuer.clone(),
            claims,
            exp,
            hash: hex_prefix(digest).into(),
            keys_version: version,
        })
    }
}

async fn refetch(keys: &Arc<IssuerKeys>, kid: &str) -> Result<Arc<KeySet>, TokenError> {
    match keys.refetch_for_kid(kid).await {
        Some(set) if set.has_kid(kid) => Ok(set),
        _ => Err(TokenError::UnknownKid),
    }
}

fn verify_with(
    set: &KeySet,
    kid: Option<&str>,
    alg: Algorithm,
    token: &str,
    validation: &Validation,
) -> Result<(Map<String, Value>, u64), TokenError> {
    let mut last = TokenError::UnknownKid;
    for key in set.candidates(kid, alg) {
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation) {
            Ok(data) => return Ok((data.claims, set.version)),
            Err(e) => {
                last = map_error(e.kind());
                // Only a bad signature means "try the next key"; claim errors are final.
                if last != TokenError::BadSignature {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

fn validation(issuer: &IssuerConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.set_issuer(&[&*issuer.issuer]);
    v.set_audience(&issuer.audiences);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.leeway = issuer.leeway.as_secs();
    v
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        ErrorKind::InvalidClaimFormat(_) => TokenError::InvalidClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            TokenError::AlgorithmNotAllowed
        }
        _ => TokenError::Malformed,
    }
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// First 8 bytes of a digest as hex: enough to correlate log lines, useless for recovering input.
pub fn hex_prefix(digest: &[u8; 32]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
