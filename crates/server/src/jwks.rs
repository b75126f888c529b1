//! Verification keys per issuer: fetched (OIDC discovery → `jwks_uri`, a direct JWKS URL, or a
//! file), held as immutable snapshots, refreshed in the background.
//!
//! The request path only *reads* a snapshot (`ArcSwap` load, no lock). The one exception is an
//! unknown `kid`: the verifier may ask for one refetch, which is single-flight (concurrent askers
//! wait for the same fetch) and rate-limited per issuer, so forged kids cannot become a flood at
//! the IdP. This module never decides anything about a token; `jwt` does.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use cedargate_core::config::{IssuerConfig, KeySource};

/// First retry delay after a failed initial fetch; doubled per failure up to the refresh period.
const INITIAL_RETRY: Duration = Duration::from_millis(250);
/// Largest JWKS or discovery document we read: real ones are a few KiB.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Why keys could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Transport failure or timeout.
    #[error("GET {url}: {message}")]
    Http {
        /// What was fetched.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with a non-success status.
    #[error("GET {url}: HTTP {status}")]
    Status {
        /// What was fetched.
        url: String,
        /// The status.
        status: u16,
    },
    /// The document was not what it should be.
    #[error("{url}: {message}")]
    Document {
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The JWKS holds no key we can use for the allowed algorithms.
    #[error("{source_name}: no usable signing key for the allowed algorithms")]
    NoUsableKeys {
        /// Where it came from.
        source_name: String,
    },
}

/// One verification key.
pub struct Key {
    /// `kid` from the JWK, if any.
    pub kid: Option<String>,
    /// `alg` from the JWK, if it pins one.
    pub alg: Option<Algorithm>,
    /// What kind of key this is, to match against a token's `alg`.
    kind: KeyKind,
    /// The parsed key.
    pub decoding: DecodingKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Key {
    /// Can this key verify a token signed with `alg`?
    pub fn fits(&self, alg: Algorithm) -> bool {
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        matches!(
            (self.kind, alg),
            (
                KeyKind::Rsa,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ) | (KeyKind::P256, Algorithm::ES256)
                | (KeyKind::P384, Algorithm::ES384)
                | (KeyKind::Ed25519, Algorithm::EdDSA)
        )
    }
}

/// An immutable set of keys for one issuer.
pub struct KeySet {
    /// Usable keys.
    pub keys: Vec<Key>,
    /// Increases when a fetch brings different content; cached tokens verified under another
    /// version are re-verified, so a removed key stops working at once.
    pub version: u64,
    /// SHA-256 of the fetched document, to tell a changed key set from an unchanged one.
    content: [u8; 32],
    /// When these keys were fetched.
    pub fetched_at: SystemTime,
    /// `Cache-Control: max-age` of the JWKS response, if any.
    pub max_age: Option<Duration>,
}

impl KeySet {
    /// Keys that could verify a token with this `kid` and `alg`.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| {
            k.fits(alg)
                && match kid {
                    Some(kid) => k.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Whether a key with this kid exists (any algorithm).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Status of one issuer's keys, for readiness and admin endpoints.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuerStatus {
    /// Issuer name.
    pub name: String,
    /// Issuer URL.
    pub issuer: String,
    /// Number of usable keys held, if any were ever fetched.
    pub keys: Option<usize>,
    /// Seconds since the keys were fetched.
    pub age_seconds: Option<u64>,
    /// Last fetch error, if the last fetch failed.
    pub last_error: Option<String>,
    /// Fetches attempted so far.
    pub fetches: u64,
    /// Whether the keys are older than `max_staleness`: the issuer then fails closed.
    pub stale: bool,
    /// Whether tokens of this issuer can be verified now (keys present and not stale).
    pub usable: bool,
}

/// Why an issuer's keys cannot be used right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Never fetched successfully.
    Missing,
    /// Not refreshed within `max_staleness`.
    Stale,
}

/// Keys of one issuer, with their fetch machinery.
pub struct IssuerKeys {
    /// The issuer's config.
    pub config: Arc<IssuerConfig>,
    /// Current snapshot; `None` until the first successful fetch.
    current: ArcSwapOption<KeySet>,
    /// Held while refetching for an unknown kid (single flight); holds the time of the last one.
    refetch: tokio::sync::Mutex<Option<Instant>>,
    /// HTTP client (shared, pooled).
    http: reqwest::Client,
    /// JWKS URL learned from discovery.
    jwks_uri: ArcSwapOption<String>,
    /// Last fetch error (cleared on success).
    last_error: ArcSwapOption<String>,
    /// Fetch attempts, for status and tests.
    fetches: AtomicU64,
    /// Next version number.
    next_version: AtomicU64,
    /// Set while the keys are stale, so the transition is logged once, not per request.
    stale_logged: std::sync::atomic::AtomicBool,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

impl IssuerKeys {
    /// Keys for `config`, not fetched yet.
    pub fn new(config: Arc<IssuerConfig>, http: reqwest::Client) -> IssuerKeys {
        IssuerKeys {
            config,
            current: ArcSwapOption::empty(),
            refetch: tokio::sync::Mutex::new(None),
            http,
            jwks_uri: ArcSwapOption::empty(),
            last_error: ArcSwapOption::empty(),
            fetches: AtomicU64::new(0),
            next_version: AtomicU64::new(1),
            stale_logged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The snapshot to verify with: present and younger than `max_staleness`. Past that, the
    /// issuer fails closed (its signing keys may have been rotated away while we could not see).
    pub fn usable(&self) -> Result<Arc<KeySet>, Unusable> {
        let set = self.snapshot().ok_or(Unusable::Missing)?;
        let age = SystemTime::now()
            .duration_since(set.fetched_at)
            .unwrap_or_default();
        if age > self.config.max_staleness {
            if !self.stale_logged.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    issuer = %self.config.name,
                    age_seconds = age.as_secs(),
                    max_staleness_seconds = self.config.max_staleness.as_secs(),
                    last_error = self.last_error.load_full().as_deref().map(String::as_str).unwrap_or(""),
                    "jwks.stale: keys not refreshed within max_staleness; tokens of this issuer are rejected until a fetch succeeds"
                );
            }
            return Err(Unusable::Stale);
        }
        Ok(set)
    }

    /// The current snapshot, if keys were ever fetched.
    pub fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    /// Status for admin endpoints.
    pub fn status(&self) -> IssuerStatus {
        let snapshot = self.snapshot();
        IssuerStatus {
            name: self.config.name.to_string(),
            issuer: self.config.issuer.to_string(),
            keys: snapshot.as_ref().map(|s| s.keys.len()),
            age_seconds: snapshot.as_ref().map(|s| {
                SystemTime::now()
                    .duration_since(s.fetched_at)
                    .unwrap_or_default()
                    .as_secs()
            }),
            last_error: self.last_error.load_full().map(|e| e.to_string()),
            fetches: self.fetches.load(Ordering::Relaxed),
            stale: matches!(self.usable(), Err(Unusable::Stale)),
            usable: self.usable().is_ok(),
        }
    }

    /// Fetches keys now and installs them; on failure the last good keys stay in force.
    pub async fn refresh(&self) -> Result<Arc<KeySet>, JwksError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.fetch().await {
            Ok((keys, content, max_age)) => {
                let version = match self.snapshot() {
                    Some(current) if current.content == content => current.version,
                    _ => self.next_version.fetch_add(1, Ordering::Relaxed),
                };
                let set = Arc::new(KeySet {
                    keys,
                    version,
                    content,
                    fetched_at: SystemTime::now(),
                    max_age,
                });
                self.current.store(Some(set.clone()));
                self.last_error.store(None);
                crate::metrics::jwks_fetch(&self.config.name, true);
                if self.stale_logged.swap(false, Ordering::Relaxed) {
                    tracing::info!(issuer = %self.config.name, "jwks.recovered");
                }
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.name, error = %e, "jwks.fetch_failed");
                crate::metrics::jwks_fetch(&self.config.name, false);
                self.last_error.store(Some(Arc::new(e.to_string())));
                Err(e)
            }
        }
    }

    /// Called on an unknown `kid`: refetches at most once per `kid_refetch_min_interval`, with
    /// all concurrent callers sharing one fetch. The fetch runs as its own task, so a caller
    /// that stops waiting (after `kid_refetch_wait`, below Envoy's deadline) does not cancel it.
    /// Returns the snapshot to retry with.
    pub async fn refetch_for_kid(self: &Arc<Self>, kid: &str) -> Option<Arc<KeySet>> {
        let mut last = self.refetch.lock().await;
        // Someone else's refetch may have brought the kid while we waited.
        if let Some(current) = self.snapshot()
            && current.has_kid(kid)
        {
            return Some(current);
        }
        if last.is_some_and(|t| t.elapsed() < self.config.kid_refetch_min_interval) {
            return None;
        }
        *last = Some(Instant::now());
        let this = self.clone();
        let fetch = tokio::spawn(async move { this.refresh().await });
        match tokio::time::timeout(self.config.kid_refetch_wait, fetch).await {
            Ok(Ok(Ok(set))) => Some(set),
            _ => None,
        }
    }

    /// Spawns the background task: first fetch with retries and backoff, then refreshes every
    /// `Cache-Control: max-age` (bounded to `[min_refresh, refresh]`) or `refresh` without one.
    /// After a failure it retries with backoff up to `min_refresh`, keeping the last good keys.
    pub fn spawn_refresh(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = INITIAL_RETRY;
            loop {
                match this.refresh().await {
                    Ok(set) => {
                        tracing::debug!(
                            issuer = %this.config.name,
                            keys = set.keys.len(),
                            version = set.version,
                            "jwks.loaded"
                        );
                        delay = INITIAL_RETRY;
                        tokio::time::sleep(this.next_refresh(set.max_age)).await;
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(this.config.min_refresh);
                    }
                }
            }
        })
    }

    /// The next refresh period: the server's `max-age` within `[min_refresh, refresh]`.
    fn next_refresh(&self, max_age: Option<Duration>) -> Duration {
        max_age.map_or(self.config.refresh, |age| {
            age.clamp(self.config.min_refresh, self.config.refresh)
        })
    }

    async fn fetch(&self) -> Result<(Vec<Key>, [u8; 32], Option<Duration>), JwksError> {
        let (name, (text, max_age)) = match &self.config.keys {
            KeySource::File(path) => {
                let name = path.display().to_string();
                let text =
                    tokio::fs::read_to_string(path)
                        .await
                        .map_err(|e| JwksError::Document {
                            url: name.clone(),
                            message: e.to_string(),
                        })?;
                (name, (text, None))
            }
            KeySource::JwksUri(uri) => (uri.clone(), self.get(uri).await?),
            KeySource::Discovery => {
                let uri = match self.jwks_uri.load_full() {
                    Some(uri) => uri.to_string(),
                    None => {
                        let uri = self.discover().await?;
                        self.jwks_uri.store(Some(Arc::new(uri.clone())));
                        uri
                    }
                };
                let fetched = match self.get(&uri).await {
                    Ok(fetched) => fetched,
                    Err(e) => {
                        // The jwks_uri may have moved: rediscover next time.
                        self.jwks_uri.store(None);
                        return Err(e);
                    }
                };
                (uri, fetched)
            }
        };
        let keys = parse_jwks(&name, &text, &self.config.algorithms)?;
        Ok((
            keys,
            cedargate_core::token::sha256(text.as_bytes()),
            max_age,
        ))
    }

    async fn discover(&self) -> Result<String, JwksError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let (text, _) = self.get(&url).await?;
        let doc = parse_discovery(&text).map_err(|message| JwksError::Document {
            url: url.clone(),
            message,
        })?;
        if doc.issuer != *self.config.issuer {
            return Err(JwksError::Document {
                url,
                message: format!(
                    "discovery says issuer `{}`, configured `{}` (OIDC Discovery §4.3 requires them equal)",
                    doc.issuer, self.config.issuer
                ),
            });
        }
        if !self.config.allow_insecure_http && !cedargate_core::config::is_secure_url(&doc.jwks_uri)
        {
            return Err(JwksError::Document {
                url,
                message: format!(
                    "jwks_uri `{}` must be https (http only for loopback hosts)",
                    doc.jwks_uri
                ),
            });
        }
        Ok(doc.jwks_uri)
    }

    /// GETs a document; returns its text and its `Cache-Control: max-age`.
    async fn get(&self, url: &str) -> Result<(String, Option<Duration>), JwksError> {
        let http_err = |e: reqwest::Error| JwksError::Http {
            url: url.to_string(),
            message: e.to_string(),
        };
        let response = self
            .http
            .get(url)
            .timeout(self.config.fetch_timeout)
            .send()
            .await
            .map_err(http_err)?;
        if !response.status().is_success() {
            return Err(JwksError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        let body = response.bytes().await.map_err(http_err)?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(JwksError::Document {
                url: url.to_string(),
                message: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        let text = String::from_utf8(body.to_vec()).map_err(|_| JwksError::Document {
            url: url.to_string(),
            message: "not UTF-8".into(),
        })?;
        Ok((text, max_age))
    }
}

/// What key fetching needs from a discovery document.
struct Discovery {
    /// The `issuer` it announces (compared with the configured one, exactly).
    issuer: String,
    /// Where the keys are.
    jwks_uri: String,
}

/// Reads an OIDC discovery document with `openidconnect`'s provider metadata (the same type
/// browser SSO uses): every field OIDC Discovery §3 requires must be there and well-formed, so a
/// document that is not an OpenID configuration is refused with serde's words for what is
/// missing. The HTTP around it stays ours (timeout, size cap, `Cache-Control`, no redirects).
fn parse_discovery(text: &str) -> Result<Discovery, String> {
    let metadata: openidconnect::core::CoreProviderMetadata =
        serde_json::from_str(text).map_err(|e| format!("not an OpenID configuration: {e}"))?;
    Ok(Discovery {
        issuer: metadata.issuer().as_str().to_string(),
        jwks_uri: metadata.jwks_uri().as_str().to_string(),
    })
}

/// `max-age` from a `Cache-Control` value (`no-store`/`no-cache` count as 0: refresh as soon as
/// `min_refresh` allows).
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .map(str::trim)
        .find_map(|directive| {
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            let (name, value) = directive.split_once('=')?;
            name.trim().eq_ignore_ascii_case("max-age").then(|| {
                value
                    .trim()
                    .trim_matches('"')
                    .parse()
                    .ok()
                    .map(Duration::from_secs)
            })?
        })
}

/// Parses a JWKS, keeping the signature keys that fit at least one allowed algorithm. Keys we
/// cannot use (symmetric `oct`, encryption keys, unknown curves) are skipped, not fatal: an IdP
/// may publish more than we need.
pub fn parse_jwks(
    source_name: &str,
    text: &str,
    allowed: &[Algorithm],
) -> Result<Vec<Key>, JwksError> {
    let raw: RawJwks = serde_json::from_str(text).map_err(|e| JwksError::Document {
        url: source_name.to_string(),
        message: format!("not a JWKS: {e}"),
    })?;
    let mut keys = Vec::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        if let Some(key) = key_from_jwk(&jwk)
            && allowed.iter().any(|a| key.fits(*a))
        {
            keys.push(key);
        }
    }
    if keys.is_empty() {
        return Err(JwksError::NoUsableKeys {
            source_name: source_name.to_string(),
        });
    }
    Ok(keys)
}

fn key_from_jwk(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => KeyKind::Rsa,
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => KeyKind::P256,
            EllipticCurve::P384 => KeyKind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => KeyKind::Ed25519,
            _ => return None,
        },
        // Symmetric keys never verify anything: a JWKS is public.
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        // `KeyAlgorithm` and `Algorithm` share their JOSE names.
        Some(ka) => Some(format!("{ka:?}").parse::<Algorithm>().ok()?),
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        decoding,
    })
}

/// All issuers' keys, looked up by exact `iss`.
pub struct Jwks {
    /// By issuer URL.
    by_issuer: HashMap<Arc<str>, Arc<IssuerKeys>>,
    /// In config order, for status.
    ordered: Vec<Arc<IssuerKeys>>,
}

impl Jwks {
    /// Key holders for every configured issuer (nothing fetched yet).
    pub fn new(issuers: &[Arc<IssuerConfig>], http: reqwest::Client) -> Jwks {
        let ordered: Vec<Arc<IssuerKeys>> = issuers
            .iter()
            .map(|c| Arc::new(IssuerKeys::new(c.clone(), http.clone())))
            .collect();
        let by_issuer = ordered
            .iter()
            .map(|k| (k.config.issuer.clone(), k.clone()))
            .collect();
        Jwks { by_issuer, ordered }
    }

    /// The keys of the issuer whose URL is exactly `iss`.
    pub fn issuer(&self, iss: &str) -> Option<&Arc<IssuerKeys>> {
        self.by_issuer.get(iss)
    }

    /// Every issuer, in config order.
    pub fn issuers(&self) -> &[Arc<IssuerKeys>] {
        &self.ordered
    }

    /// Starts background fetching for every issuer.
    pub fn spawn_refresh(&self) -> Vec<tokio::task::JoinHandle<()>> {
        self.ordered.iter().map(|k| k.spawn_refresh()).collect()
    }

    /// True when every issuer has usable (present, not stale) keys.
    pub fn ready(&self) -> bool {
        self.ordered.iter().all(|k| k.usable().is_ok())
    }
}

/// A reqwest client for key fetching (rustls). Redirects are not followed: discovery and JWKS
/// URLs are configuration, and a redirect could downgrade https to http or leave the IdP.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cedargate/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests;
