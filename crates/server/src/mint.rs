//! Upstream tokens: the short-lived JWT cedargate mints on an allow, so the upstream service
//! learns who is calling from a credential cedargate vouches for instead of the caller's own.
//!
//! Owns the signing keys ([`KeyRing`]: PEM files read at load, or a key generated at start),
//! their public half as a JWKS (served on the admin port), the claim set, the JWS encoding and
//! the reuse cache ([`Minter`]). Signing goes through `aws-lc-rs` key pairs parsed once, not
//! `jsonwebtoken::encode`, which re-parses the PKCS#8 key on every call; `jsonwebtoken`'s JWK
//! types give the published keys and their RFC 7638 thumbprints (the `kid`s).
//!
//! Must not decide anything (it is only asked after an allow), must never copy the caller's raw
//! token (only claims the verifier already checked), and never logs a minted token or a private
//! key: errors name files and reasons, `Debug` prints key ids only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, OctetKeyPairParameters, OctetKeyPairType,
    PublicKeyUse, ThumbprintHash,
};
use serde_json::{Map, Value};

use cedargate_core::config::{SigningAlgorithm, UpstreamTokenConfig};
use cedargate_core::token::{VerifiedToken, sha256};

/// Reason code of an allow turned into a deny because no upstream token could be minted.
pub const MINT_FAILED: &str = "mint_failed";

/// Minted tokens kept for reuse at most. An entry is ~1 KiB, so the bound is ~10 MiB; past it the
/// least useful entries go and those principals simply get a fresh token.
const REUSE_CACHE_CAPACITY: u64 = 10_000;

/// Why keys could not be loaded or a token could not be minted. Messages name files, never key
/// material.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// A key file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A key file holds no usable private key.
    #[error("{}: {why}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the bytes).
        why: &'static str,
    },
    /// The same key is listed twice.
    #[error("{}: the same key as an earlier key file (kid {kid})", path.display())]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// Its key id.
        kid: String,
    },
    /// No key files were given.
    #[error("no key files")]
    NoKeys,
    /// `upstream_token.algorithm` names another algorithm than the first key file's key.
    #[error("upstream_token.algorithm is {wanted} but the first key file holds a {found} key")]
    AlgorithmMismatch {
        /// The configured algorithm.
        wanted: &'static str,
        /// The first key's algorithm.
        found: &'static str,
    },
    /// The crypto library could not generate a key.
    #[error("cannot generate a signing key")]
    Generate,
    /// The crypto library could not sign.
    #[error("signing the upstream token failed")]
    Sign,
    /// The claims could not be serialized.
    #[error("encoding the upstream token failed")]
    Encode,
}

impl MintError {
    /// The key file the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            MintError::Read { path, .. }
            | MintError::BadKey { path, .. }
            | MintError::Duplicate { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// A parsed private key.
enum KeyPair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One signing key with its public JWK.
struct SigningKey {
    /// RFC 7638 thumbprint (SHA-256, base64url) of the public key.
    kid: Arc<str>,
    /// The private key.
    pair: KeyPair,
    /// The public key as published.
    jwk: Jwk,
}

/// The upstream-token keys: the first signs, all are published (the rest are previous keys kept
/// for verifiers holding tokens they signed, or next keys announced before they sign).
pub struct KeyRing {
    /// Never empty.
    keys: Vec<SigningKey>,
    /// Whether the keys were generated at start (one replica only) rather than read from files.
    generated: bool,
    /// The signing key's protected header, base64url, computed once.
    header: String,
    /// The published JWKS document, rendered once.
    jwks: Arc<str>,
    /// Randomness for ECDSA nonces (aws-lc-rs draws its own, but the API takes one).
    rng: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("kids", &self.kids())
            .field("generated", &self.generated)
            .finish()
    }
}

/// The upstream-token keys for `config`: its key files (the first signs, all are published), or,
/// without key files, a key generated now. `previous` (the keys in force) is kept instead of a
/// new generated key when it was generated for the same algorithm: a reload must not change the
/// key the upstreams trust, and no file holds it. The server loads keys; `Config` names files.
pub fn upstream_keys(
    config: &UpstreamTokenConfig,
    previous: Option<&Arc<KeyRing>>,
) -> Result<Arc<KeyRing>, MintError> {
    let wanted = config.algorithm.unwrap_or(DEFAULT_ALGORITHM);
    if config.key_files.is_empty() {
        if let Some(previous) = previous
            && previous.generated()
            && previous.algorithm() == Some(wanted)
        {
            return Ok(previous.clone());
        }
        return KeyRing::generate(wanted).map(Arc::new);
    }
    let keys = KeyRing::from_files(&config.key_files)?;
    if let Some(wanted) = config.algorithm
        && keys.algorithm() != Some(wanted)
    {
        return Err(MintError::AlgorithmMismatch {
            wanted: wanted.name(),
            found: keys.algorithm().map_or("different", SigningAlgorithm::name),
        });
    }
    Ok(Arc::new(keys))
}

/// Algorithm of a key generated at start: ES256, the asymmetric JOSE algorithm every JWT library
/// verifies, with small keys and signatures.
const DEFAULT_ALGORITHM: SigningAlgorithm = SigningAlgorithm::Es256;

impl KeyRing {
    /// Reads PEM private keys (PKCS#8 P-256 or Ed25519, or SEC1 `EC PRIVATE KEY` P-256), in
    /// order: the first signs.
    pub fn from_files(paths: &[PathBuf]) -> Result<KeyRing, MintError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        for path in paths {
            let bytes = std::fs::read(path).map_err(|source| MintError::Read {
                path: path.clone(),
                source,
            })?;
            let key = parse_pem(path, &bytes)?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(MintError::Duplicate {
                    path: path.clone(),
                    kid: key.kid.to_string(),
                });
            }
            keys.push(key);
        }
        KeyRing::new(keys, false)
    }

    /// A fresh key pair, held in memory only: every replica would publish a different key, so
    /// this suits a single replica (or verifiers that read every replica's JWKS).
    pub fn generate(alg: SigningAlgorithm) -> Result<KeyRing, MintError> {
        let pair = match alg {
            SigningAlgorithm::Es256 => KeyPair::Ec(
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(|_| MintError::Generate)?,
            ),
            SigningAlgorithm::EdDsa => {
                KeyPair::Ed(Ed25519KeyPair::generate().map_err(|_| MintError::Generate)?)
            }
        };
        let key = signing_key(pair).ok_or(MintError::Generate)?;
        KeyRing::new(vec![key], true)
    }

    fn new(keys: Vec<SigningKey>, generated: bool) -> Result<KeyRing, MintError> {
        let first = keys.first().ok_or(MintError::NoKeys)?;
        let header = serde_json::json!({
            "alg": first.alg().name(),
            "kid": &*first.kid,
            "typ": "JWT",
        });
        let header = URL_SAFE_NO_PAD.encode(header.to_string());
        let set = JwkSet {
            keys: keys.iter().map(|k| k.jwk.clone()).collect(),
        };
        let jwks = serde_json::to_string(&set).map_err(|_| MintError::Encode)?;
        Ok(KeyRing {
            keys,
            generated,
            header,
            jwks: jwks.into(),
            rng: SystemRandom::new(),
        })
    }

    /// Key ids, signing key first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| &*k.kid).collect()
    }

    /// The algorithm of the signing key.
    pub fn algorithm(&self) -> Option<SigningAlgorithm> {
        self.keys.first().map(SigningKey::alg)
    }

    /// Whether the keys were generated at start.
    pub fn generated(&self) -> bool {
        self.generated
    }

    /// The public keys as a JWKS document (`{"keys":[…]}`).
    pub fn jwks(&self) -> Arc<str> {
        self.jwks.clone()
    }

    /// Signs `claims` (a JSON object, already serialized) as a compact JWS.
    fn sign(&self, claims: &[u8]) -> Result<(String, Arc<str>), MintError> {
        let key = self.keys.first().ok_or(MintError::NoKeys)?;
        let mut token = String::with_capacity(self.header.len() + claims.len() * 4 / 3 + 100);
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(claims, &mut token);
        let signature = match &key.pair {
            KeyPair::Ec(pair) => pair
                .sign(&self.rng, token.as_bytes())
                .map_err(|_| MintError::Sign)?,
            KeyPair::Ed(pair) => pair.sign(token.as_bytes()),
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok((token, key.kid.clone()))
    }
}

impl SigningKey {
    fn alg(&self) -> SigningAlgorithm {
        match self.pair {
            KeyPair::Ec(_) => SigningAlgorithm::Es256,
            KeyPair::Ed(_) => SigningAlgorithm::EdDsa,
        }
    }
}

/// One private key from a PEM file.
fn parse_pem(path: &Path, bytes: &[u8]) -> Result<SigningKey, MintError> {
    let bad = |why| MintError::BadKey {
        path: path.to_path_buf(),
        why,
    };
    // The pem crate's errors can quote input bytes; they are replaced, not passed on.
    let blocks = pem::parse_many(bytes).map_err(|_| bad("not a PEM file"))?;
    let mut private = blocks
        .iter()
        .filter(|b| matches!(b.tag(), "PRIVATE KEY" | "EC PRIVATE KEY"));
    let block = private
        .next()
        .ok_or(bad("holds no PRIVATE KEY or EC PRIVATE KEY block"))?;
    if private.next().is_some() {
        return Err(bad("holds more than one private key; use one file per key"));
    }
    let der = block.contents();
    let pair = if let Ok(ec) =
        EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
    {
        KeyPair::Ec(ec)
    } else if block.tag() == "PRIVATE KEY"
        && let Ok(ed) = Ed25519KeyPair::from_pkcs8(der)
    {
        KeyPair::Ed(ed)
    } else {
        return Err(bad(
            "is not a P-256 (ES256) or Ed25519 (EdDSA) private key; other key types are not supported",
        ));
    };
    signing_key(pair).ok_or(bad("has a public key cedargate cannot publish"))
}

/// The public JWK and `kid` of a key pair.
fn signing_key(pair: KeyPair) -> Option<SigningKey> {
    let (algorithm, key_algorithm) = match &pair {
        KeyPair::Ec(ec) => {
            // Uncompressed SEC1 point: 0x04 ‖ x ‖ y, 32 bytes each for P-256.
            let point = ec.public_key().as_ref();
            let (x, y) = (point.get(1..33)?, point.get(33..65)?);
            (
                AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: URL_SAFE_NO_PAD.encode(x),
                    y: URL_SAFE_NO_PAD.encode(y),
                }),
                KeyAlgorithm::ES256,
            )
        }
        KeyPair::Ed(ed) => (
            AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(ed.public_key().as_ref()),
            }),
            KeyAlgorithm::EdDSA,
        ),
    };
    let mut jwk = Jwk {
        common: CommonParameters::default(),
        algorithm,
    };
    // RFC 7638: the thumbprint covers the required public members only, so it is computed
    // before `kid`, `use` and `alg` are set; the same key always gets the same kid on every
    // replica.
    let kid = jwk.thumbprint(ThumbprintHash::SHA256).ok()?;
    jwk.common = CommonParameters {
        public_key_use: Some(PublicKeyUse::Signature),
        key_algorithm: Some(key_algorithm),
        key_id: Some(kid.clone()),
        ..CommonParameters::default()
    };
    Some(SigningKey {
        kid: kid.into(),
        pair,
        jwk,
    })
}

/// Who an upstream token is about: the decision's principal, and the caller's verified token
/// when there was one (its claims are the only source of copied claims).
pub struct Subject<'a> {
    /// Cedar entity type of the principal (`User`, `Service`, `Workload`, `Anonymous`, …).
    pub principal_type: &'a str,
    /// Cedar entity id of the principal; becomes `sub`.
    pub principal_id: &'a str,
    /// The verified caller token, if the caller presented one.
    pub token: Option<&'a VerifiedToken>,
}

/// A minted (or reused) upstream token.
#[derive(Clone)]
pub struct Minted {
    /// The compact JWS. Goes to Envoy only; never into a log.
    pub token: Arc<str>,
    /// Its `jti`.
    pub jti: Arc<str>,
    /// The key that signed it.
    pub kid: Arc<str>,
    /// Its `aud`.
    pub aud: Arc<str>,
    /// Its `exp`, seconds since the epoch.
    pub exp: u64,
    /// Whether it came from the reuse cache (minted by an earlier decision).
    pub reused: bool,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("jti", &self.jti)
            .field("kid", &self.kid)
            .field("aud", &self.aud)
            .field("exp", &self.exp)
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

/// A cached token with the moment it stops being handed out.
struct Entry {
    minted: Minted,
    /// Seconds since the epoch; past this the token is not reused, so an upstream always gets a
    /// token with at least `ttl - reuse` left.
    reuse_until: u64,
}

/// Each entry lives until its own `reuse_until`.
struct UntilReuseEnds;

impl moka::Expiry<[u8; 32], Arc<Entry>> for UntilReuseEnds {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            value
                .reuse_until
                .saturating_sub(cedargate_core::token::now_secs()),
        ))
    }
}

/// Mints upstream tokens, reusing one per (key, issuer, audience, principal, copied claims) for
/// `reuse_seconds`. Shared by all Checks; the keys and settings come from the config in force.
pub struct Minter {
    /// Reusable tokens by SHA-256 of everything that goes into them except the times and ids.
    cache: moka::sync::Cache<[u8; 32], Arc<Entry>>,
}

impl Default for Minter {
    fn default() -> Minter {
        Minter::new()
    }
}

impl Minter {
    /// An empty minter.
    pub fn new() -> Minter {
        Minter {
            cache: moka::sync::Cache::builder()
                .max_capacity(REUSE_CACHE_CAPACITY)
                .expire_after(UntilReuseEnds)
                .build(),
        }
    }

    /// The upstream token for `subject` after the allow `decision_id`, at `now` (seconds since
    /// the epoch). `service` is Envoy's `context_extensions.service`, which may pick the audience.
    pub fn mint(
        &self,
        config: &UpstreamTokenConfig,
        keys: &KeyRing,
        subject: &Subject<'_>,
        service: Option<&str>,
        decision_id: &str,
        now: u64,
    ) -> Result<Minted, MintError> {
        let aud = config.audience_for(service);
        let mut claims = Map::new();
        claims.insert("iss".into(), Value::from(&*config.issuer));
        claims.insert("sub".into(), Value::from(subject.principal_id));
        claims.insert("aud".into(), Value::from(&*aud));
        claims.insert("principal_type".into(), Value::from(subject.principal_type));
        if let Some(token) = subject.token {
            for name in &config.claims {
                if let Some(value) = token.claims.get(name) {
                    claims.insert(name.clone(), value.clone());
                }
            }
        }
        let reuse = config.reuse.as_secs();
        let key = (reuse > 0)
            .then(|| cache_key(keys.kids().first().copied().unwrap_or(""), &claims))
            .transpose()?;
        if let Some(key) = &key
            && let Some(entry) = self.cache.get(key)
            && now < entry.reuse_until
        {
            let mut minted = entry.minted.clone();
            minted.reused = true;
            return Ok(minted);
        }
        // Never outlive the credential it stands for: a caller token about to expire gets an
        // upstream token that expires with it.
        let exp = match subject.token {
            Some(token) => now
                .saturating_add(config.ttl.as_secs())
                .min(token.exp.max(now)),
            None => now.saturating_add(config.ttl.as_secs()),
        };
        let jti: Arc<str> = uuid::Uuid::now_v7().to_string().into();
        claims.insert("iat".into(), Value::from(now));
        claims.insert("nbf".into(), Value::from(now));
        claims.insert("exp".into(), Value::from(exp));
        claims.insert("jti".into(), Value::from(&*jti));
        claims.insert("decision_id".into(), Value::from(decision_id));
        let payload = serde_json::to_vec(&claims).map_err(|_| MintError::Encode)?;
        let (token, kid) = keys.sign(&payload)?;
        let minted = Minted {
            token: token.into(),
            jti,
            kid,
            aud,
            exp,
            reused: false,
        };
        // Handed out again only while it still has the lifetime a fresh one would keep after
        // the reuse window (`ttl - reuse`); a token cut short by its caller's `exp` is not reused.
        let keep = config.ttl.as_secs().saturating_sub(reuse);
        let reuse_until = now.saturating_add(reuse).min(exp.saturating_sub(keep));
        if let Some(key) = key
            && reuse_until > now
        {
            self.cache.insert(
                key,
                Arc::new(Entry {
                    minted: minted.clone(),
                    reuse_until,
                }),
            );
        }
        Ok(minted)
    }
}

/// The reuse key: the signing key and every claim that does not change per minting.
fn cache_key(kid: &str, claims: &Map<String, Value>) -> Result<[u8; 32], MintError> {
    let mut bytes = Vec::with_capacity(256);
    bytes.extend_from_slice(kid.as_bytes());
    bytes.push(0);
    serde_json::to_writer(&mut bytes, claims).map_err(|_| MintError::Encode)?;
    Ok(sha256(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    // Test keys (PKCS#8 P-256, SEC1 P-256, PKCS#8 Ed25519), made with openssl for these tests only.
    pub(crate) const EC_PKCS8: &str =
        include_str!("../../../tests/fixtures/upstream-keys/es256-a.pem");
    const EC_SEC1: &str = include_str!("../../../tests/fixtures/upstream-keys/es256-sec1.pem");
    const ED25519: &str = include_str!("../../../tests/fixtures/upstream-keys/ed25519.pem");
    const RSA: &str = include_str!("../../../tests/fixtures/upstream-keys/rsa.pem");

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    /// Settings as `upstream_token:` with these keys would give: the shipped example's claims
    /// and an `orders` audience of its own.
    fn config(keys: KeyRing, reuse: u64) -> (UpstreamTokenConfig, KeyRing) {
        let config = UpstreamTokenConfig {
            issuer: "https://cedargate.internal".into(),
            audience: "internal".into(),
            service_audiences: [("orders".to_string(), Arc::from("orders"))].into(),
            ttl: std::time::Duration::from_secs(60),
            reuse: std::time::Duration::from_secs(reuse),
            header: "authorization".into(),
            claims: vec!["groups".into(), "tenant".into()],
            strip_headers: Arc::new([]),
            key_files: Vec::new(),
            algorithm: None,
        };
        (config, keys)
    }

    fn decode(token: &str, jwks: &str, aud: &str) -> Map<String, Value> {
        let set: JwkSet = serde_json::from_str(jwks).unwrap();
        let header = jsonwebtoken::decode_header(token).unwrap();
        let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(header.alg);
        validation.set_audience(&[aud]);
        validation.set_issuer(&["https://cedargate.internal"]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .unwrap()
            .claims
    }

    fn caller() -> VerifiedToken {
        let issuer = cedargate_core::config::Config::parse(
            "issuers:\n  - issuer: https://idp.example\n    audiences: [api]\n",
            Path::new("t.yaml"),
        )
        .unwrap()
        .issuers
        .remove(0);
        let claims = serde_json::json!({
            "sub": "alice", "groups": ["admins"], "tenant": "acme", "secret": "no",
            "iss": "https://idp.example", "exp": 4_000_000_000u64,
        });
        VerifiedToken::from_claims(issuer, claims.as_object().unwrap().clone())
    }

    #[test]
    fn minted_tokens_verify_against_the_published_jwks_and_carry_the_right_claims() {
        for pem in [EC_PKCS8, EC_SEC1, ED25519] {
            let f = file(pem);
            let keys = KeyRing::from_files(&[f.path().to_path_buf()]).unwrap();
            let jwks = keys.jwks();
            let (config, keys) = config(keys, 0);
            let token = caller();
            let subject = Subject {
                principal_type: "User",
                principal_id: "alice",
                token: Some(&token),
            };
            let now = cedargate_core::token::now_secs();
            let minted = Minter::new()
                .mint(&config, &keys, &subject, Some("orders"), "d-1", now)
                .unwrap();
            let claims = decode(&minted.token, &jwks, "orders");
            assert_eq!(claims["sub"], "alice");
            assert_eq!(claims["principal_type"], "User");
            assert_eq!(claims["aud"], "orders");
            assert_eq!(claims["decision_id"], "d-1");
            assert_eq!(claims["jti"], &*minted.jti);
            assert_eq!(claims["iat"], now);
            assert_eq!(claims["nbf"], now);
            assert_eq!(claims["exp"], now + 60);
            assert_eq!(claims["groups"], serde_json::json!(["admins"]));
            assert_eq!(claims["tenant"], "acme");
            // Only allow-listed claims are copied.
            assert!(!claims.contains_key("secret"));
            let header = jsonwebtoken::decode_header(&*minted.token).unwrap();
            assert_eq!(header.kid.as_deref(), Some(&*minted.kid));
        }
    }

    #[test]
    fn the_default_audience_applies_to_services_without_their_own() {
        let (config, keys) = config(KeyRing::generate(SigningAlgorithm::Es256).unwrap(), 0);
        let subject = Subject {
            principal_type: "Anonymous",
            principal_id: "anonymous",
            token: None,
        };
        let minted = Minter::new()
            .mint(
                &config,
                &keys,
                &subject,
                Some("catalog"),
                "d",
                cedargate_core::token::now_secs(),
            )
            .unwrap();
        let claims = decode(&minted.token, &keys.jwks(), "internal");
        assert_eq!(claims["aud"], "internal");
        assert!(!claims.contains_key("groups"));
    }

    #[test]
    fn tokens_are_reused_within_the_window_and_fresh_after_it() {
        let (config, keys) = config(KeyRing::generate(SigningAlgorithm::EdDsa).unwrap(), 30);
        let token = caller();
        let subject = Subject {
            principal_type: "User",
            principal_id: "alice",
            token: Some(&token),
        };
        let minter = Minter::new();
        let now = cedargate_core::token::now_secs();
        let first = minter
            .mint(&config, &keys, &subject, None, "d1", now)
            .unwrap();
        let again = minter
            .mint(&config, &keys, &subject, None, "d2", now + 29)
            .unwrap();
        assert!(again.reused);
        assert_eq!(again.token, first.token);
        let later = minter
            .mint(&config, &keys, &subject, None, "d3", now + 30)
            .unwrap();
        assert!(!later.reused);
        assert_ne!(later.jti, first.jti);
        // Another principal never gets alice's token.
        let bob = Subject {
            principal_id: "bob",
            ..subject
        };
        assert_ne!(
            minter
                .mint(&config, &keys, &bob, None, "d4", now)
                .unwrap()
                .jti,
            first.jti
        );
        // Without reuse every decision gets its own token.
        let (fresh, fresh_keys) =
            self::config(KeyRing::generate(SigningAlgorithm::EdDsa).unwrap(), 0);
        let a = minter
            .mint(&fresh, &fresh_keys, &subject, None, "d5", now)
            .unwrap();
        let b = minter
            .mint(&fresh, &fresh_keys, &subject, None, "d6", now)
            .unwrap();
        assert_ne!(a.jti, b.jti);
    }

    #[test]
    fn a_minted_token_never_outlives_the_callers_token() {
        let (config, keys) = config(KeyRing::generate(SigningAlgorithm::Es256).unwrap(), 30);
        let now = cedargate_core::token::now_secs();
        let mut token = caller();
        token.exp = now + 10;
        let subject = Subject {
            principal_type: "User",
            principal_id: "alice",
            token: Some(&token),
        };
        let minter = Minter::new();
        let minted = minter
            .mint(&config, &keys, &subject, None, "d1", now)
            .unwrap();
        assert_eq!(minted.exp, now + 10);
        // Cut short, so not reused: the next allow (with a fresher caller token) gets a new one.
        let next = minter
            .mint(&config, &keys, &subject, None, "d2", now + 1)
            .unwrap();
        assert!(!next.reused);
    }

    #[test]
    fn all_keys_are_published_and_the_first_signs() {
        let (a, b) = (file(EC_PKCS8), file(ED25519));
        let keys = KeyRing::from_files(&[a.path().into(), b.path().into()]).unwrap();
        let kids: Vec<String> = keys.kids().iter().map(|k| k.to_string()).collect();
        let set: JwkSet = serde_json::from_str(&keys.jwks()).unwrap();
        assert_eq!(set.keys.len(), 2);
        assert_eq!(keys.algorithm(), Some(SigningAlgorithm::Es256));
        // The kid is the RFC 7638 thumbprint: stable across loads and replicas.
        let again = KeyRing::from_files(&[a.path().into()]).unwrap();
        assert_eq!(again.kids(), vec![kids[0].as_str()]);
        // Public keys only.
        assert!(!keys.jwks().contains("\"d\""));
        assert!(!format!("{keys:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_key_files_are_refused_by_name_without_their_bytes() {
        let rsa = file(RSA);
        let junk =
            file("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n");
        let public = file("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n");
        for f in [&rsa, &junk, &public] {
            let e = KeyRing::from_files(&[f.path().into()])
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&f.path().display().to_string()), "{e}");
            assert!(!e.contains("c2VjcmV0") && !e.contains("MII"), "{e}");
        }
        let a = file(EC_PKCS8);
        let dup = KeyRing::from_files(&[a.path().into(), a.path().into()]).unwrap_err();
        assert!(matches!(dup, MintError::Duplicate { .. }));
        let missing = KeyRing::from_files(&["/nonexistent/key.pem".into()]).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/key.pem"));
    }

    fn settings(yaml_extra: &str) -> UpstreamTokenConfig {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/upstream-keys/c.yaml");
        cedargate_core::config::Config::parse(
            &format!("upstream_token:\n  issuer: i\n  audience: a\n{yaml_extra}"),
            &dir,
        )
        .unwrap()
        .upstream_token
        .unwrap()
    }

    #[test]
    fn a_reload_keeps_the_key_generated_at_start_and_files_win() {
        let generated = upstream_keys(&settings(""), None).unwrap();
        assert!(generated.generated());
        assert_eq!(generated.algorithm(), Some(SigningAlgorithm::Es256));
        let fresh = upstream_keys(&settings(""), None).unwrap();
        assert_ne!(generated.kids(), fresh.kids());
        let kept = upstream_keys(&settings(""), Some(&generated)).unwrap();
        assert_eq!(kept.kids(), generated.kids());
        // Another algorithm asked for: a new key of it.
        let eddsa = upstream_keys(&settings("  algorithm: EdDSA\n"), Some(&generated)).unwrap();
        assert_eq!(eddsa.algorithm(), Some(SigningAlgorithm::EdDsa));
        // Key files always win over a generated key.
        let files = settings("  key_files: [es256-a.pem, ed25519.pem]\n");
        let from_files = upstream_keys(&files, Some(&generated)).unwrap();
        assert!(!from_files.generated());
        assert_eq!(from_files.kids().len(), 2);
    }

    #[test]
    fn a_bad_key_file_or_algorithm_mismatch_is_named() {
        let e = upstream_keys(&settings("  key_files: [es256-a.pem, rsa.pem]\n"), None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("rsa.pem: is not a P-256 (ES256) or Ed25519"),
            "{e}"
        );
        assert!(!e.contains("MII"), "{e}");
        let e = upstream_keys(
            &settings("  algorithm: EdDSA\n  key_files: [es256-a.pem]\n"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "upstream_token.algorithm is EdDSA but the first key file holds a ES256 key"
        );
    }
}
