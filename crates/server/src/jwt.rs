//! Bearer JWT verification: size bound → header/`iss` peek → algorithm allow-list → key by `kid`
//! (one rate-limited refetch when unknown) → signature and claims (`jsonwebtoken`) → cache.
//!
//! Only `alg`, `kid`, `crit` and `typ` (with `require_typ`) are read from the header: `jku`, `x5u`, `x5c` and embedded `jwk`
//! are never looked at, so a token cannot choose its own key. Verified tokens are cached by the
//! SHA-256 of the token, bounded in size, and never served past `exp` or across a key-set change.
//! This module never logs a token; errors carry reason codes, not input.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::jwks::{IssuerKeys, Jwks, KeySet, Unusable};
use cedargate_core::token::{
    TokenError, VerifiedToken, check_claims, check_typ, hex_prefix, map_error, now_secs, sha256,
    validation,
};

/// Longest a verified token stays cached even when its `exp` is further away: bounds how long a
/// revoked-by-rotation key can keep a token alive between refreshes.
const MAX_CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Deserialize)]
struct PeekHeader {
    alg: String,
    kid: Option<String>,
    crit: Option<Value>,
    /// Judged only when the issuer sets `require_typ`.
    typ: Option<Value>,
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

    /// Verifies `token` with the keys at hand, never refetching (an unknown `kid` is
    /// `token_unknown_kid` at once) and never caching: the whole path of [`Verifier::verify`]
    /// minus its waits, for the `token` fuzz target.
    pub fn verify_with_known_keys(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let peeked = self.peek(token)?;
        let set = usable(peeked.keys)?;
        finish(&peeked, &set, token, &sha256(token.as_bytes()))
    }

    async fn verify_uncached(
        &self,
        token: &str,
        digest: &[u8; 32],
    ) -> Result<VerifiedToken, TokenError> {
        let peeked = self.peek(token)?;
        let mut set = usable(peeked.keys)?;
        if let Some(kid) = peeked.header.kid.as_deref()
            && set.candidates(Some(kid), peeked.alg).next().is_none()
        {
            set = refetch(peeked.keys, kid).await?;
        }
        finish(&peeked, &set, token, digest)
    }

    /// What the token says about itself, judged before any key is used: three parts, header
    /// (no `crit`), claim types, a trusted `iss`, an allowed `alg`.
    fn peek(&self, token: &str) -> Result<Peeked<'_>, TokenError> {
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
        let alg = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| keys.config.algorithms.contains(a))
            .ok_or(TokenError::AlgorithmNotAllowed)?;
        Ok(Peeked { header, keys, alg })
    }
}

/// A token's header and issuer, peeked at and found acceptable (see [`Verifier::peek`]).
struct Peeked<'v> {
    header: PeekHeader,
    /// The keys of the issuer its `iss` names.
    keys: &'v Arc<IssuerKeys>,
    /// Its `alg`, in the issuer's allow-list.
    alg: Algorithm,
}

/// The issuer's keys, if fresh enough to verify with.
fn usable(keys: &IssuerKeys) -> Result<Arc<KeySet>, TokenError> {
    keys.usable().map_err(|u| match u {
        Unusable::Missing => TokenError::KeysUnavailable,
        Unusable::Stale => TokenError::KeysStale,
    })
}

/// Signature and claims, with `set`.
fn finish(
    peeked: &Peeked<'_>,
    set: &KeySet,
    token: &str,
    digest: &[u8; 32],
) -> Result<VerifiedToken, TokenError> {
    let issuer = &peeked.keys.config;
    let kid = peeked.header.kid.as_deref();
    let (claims, version) = verify_with(set, kid, peeked.alg, token, &validation(peeked.alg))?;
    // Only a token whose signature verified has its claims judged: the same order as
    // before, one rule shared with the policy test runner.
    check_typ(issuer, peeked.header.typ.as_ref())?;
    check_claims(issuer, &claims, now_secs())?;
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
        mapped: std::sync::OnceLock::new(),
    })
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

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    //! The verifier without a network: the test keys (`tests/fixtures/keys`) loaded from a
    //! `jwks_file`, tokens signed here with their private halves.
    use super::*;

    const ISSUER: &str = "https://idp.unit.test";
    const AUDIENCE: &str = "https://api.cedargate.test";

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/keys")
            .join(name)
    }

    /// A verifier over the test keys (no cache), refusing tokens longer than `max_token_bytes`.
    async fn verifier(max_token_bytes: usize) -> Verifier {
        verifier_over(&fixture("jwks.json"), max_token_bytes).await
    }

    /// A verifier over the keys in `jwks_file` (no cache).
    async fn verifier_over(jwks_file: &std::path::Path, max_token_bytes: usize) -> Verifier {
        let yaml = format!(
            "issuers:\n  - issuer: {ISSUER}\n    audiences: [{AUDIENCE}]\n    algorithms: [ES256]\n    jwks_file: {}\n",
            jwks_file.display()
        );
        let config = cedargate_core::config::Config::parse(&yaml, &fixture("cedargate.yaml"))
            .unwrap_or_else(|e| unreachable!("{e}"));
        let http = crate::jwks::http_client().unwrap_or_else(|e| unreachable!("{e}"));
        let jwks = Arc::new(Jwks::new(&config.issuers, http));
        for issuer in jwks.issuers() {
            issuer
                .refresh()
                .await
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        Verifier::new(jwks, 0, max_token_bytes)
    }

    /// An ES256 token from the test issuer, valid for an hour, with `pad` as an extra claim.
    fn token(pad: &str) -> String {
        token_with_kid(pad, Some("test-ec"))
    }

    /// The same, with `kid` as given (none: the verifier tries every ES256 key).
    fn token_with_kid(pad: &str, kid: Option<&str>) -> String {
        let pem = std::fs::read(fixture("ec.pem")).unwrap_or_else(|e| unreachable!("{e}"));
        let key =
            jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap_or_else(|e| unreachable!("{e}"));
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_string);
        let claims = serde_json::json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now_secs() + 3600, "pad": pad,
        });
        jsonwebtoken::encode(&header, &claims, &key).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[tokio::test]
    async fn the_size_bound_accepts_exactly_max_token_bytes() {
        let token = token("x");
        let len = token.len();
        // (bound, accepted?) around the token's own length, on both verification paths.
        for (bound, accepted) in [(len, true), (len + 1, true), (len - 1, false), (1, false)] {
            let verifier = verifier(bound).await;
            let known = verifier.verify_with_known_keys(&token);
            let full = verifier.verify(&token).await;
            for (path, result) in [
                ("known keys", known.map(|_| ())),
                ("verify", full.map(|_| ())),
            ] {
                match (accepted, result) {
                    (true, Ok(())) | (false, Err(TokenError::TooLarge)) => {}
                    (_, other) => {
                        unreachable!("{path}, {len}-byte token, bound {bound}: {other:?}")
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn a_good_token_verifies_and_a_tampered_one_does_not() {
        let verifier = verifier(8192).await;
        let good = token("");
        let verified = verifier
            .verify_with_known_keys(&good)
            .unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(verified.claims.get("sub"), Some(&Value::from("alice")));
        let mut parts: Vec<&str> = good.split('.').collect();
        let other = token("other");
        let other_payload = other.split('.').nth(1).unwrap_or_default();
        if let Some(payload) = parts.get_mut(1) {
            *payload = other_payload;
        }
        assert_eq!(
            verifier.verify_with_known_keys(&parts.join(".")).err(),
            Some(TokenError::BadSignature)
        );
    }

    /// Without a `kid`, every key of the token's algorithm is a candidate: a bad signature under
    /// one means "try the next", so a token signed by the second ES256 key still verifies.
    #[tokio::test]
    async fn a_token_without_kid_is_tried_with_every_key_of_its_algorithm() {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let other = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap_or_else(|e| unreachable!("{e}"));
        // An uncompressed P-256 point: 0x04, x, y.
        let point = other.public_key().as_ref().to_vec();
        let (x, y) = point
            .get(1..33)
            .zip(point.get(33..65))
            .unwrap_or_else(|| unreachable!("a P-256 point"));
        let other_jwk = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "other", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        });
        let fixture_jwks: Value = serde_json::from_slice(
            &std::fs::read(fixture("jwks.json")).unwrap_or_else(|e| unreachable!("{e}")),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let mut keys = vec![other_jwk.clone()];
        keys.extend(fixture_jwks["keys"].as_array().cloned().unwrap_or_default());
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("{e}"));
        let both = dir.path().join("both.json");
        let only_other = dir.path().join("other.json");
        for (path, keys) in [(&both, keys), (&only_other, vec![other_jwk])] {
            std::fs::write(path, serde_json::json!({ "keys": keys }).to_string())
                .unwrap_or_else(|e| unreachable!("{e}"));
        }
        let token = token_with_kid("", None);
        // The other key alone refuses it: it really is the first candidate that fails.
        assert_eq!(
            verifier_over(&only_other, 8192)
                .await
                .verify_with_known_keys(&token)
                .err(),
            Some(TokenError::BadSignature)
        );
        let verified = verifier_over(&both, 8192)
            .await
            .verify_with_known_keys(&token)
            .unwrap_or_else(|e| unreachable!("{e:?}"));
        assert_eq!(verified.claims.get("sub"), Some(&Value::from("alice")));
    }
}
