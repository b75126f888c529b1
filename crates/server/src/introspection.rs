//! RFC 7662 token introspection, per issuer (`issuers[].introspection`): a bearer token that is
//! not a JWT (or any token of an issuer set to `only`) is sent to the issuer's introspection
//! endpoint with client authentication (HTTP Basic, RFC 6749 §2.3.1), and an active answer
//! becomes a [`VerifiedToken`] whose claims are judged by the same rules as a JWT's
//! ([`check_claims`]: `exp`, `iss`, `aud` and the issuer's options), so it maps to the principal
//! exactly as JWT claims do.
//!
//! Answers are cached by the SHA-256 of the token (never the token), each until the token's `exp`
//! and at most `cache_max_ttl` (inactive answers for `cache_max_ttl`: a revoked token stays
//! revoked); concurrent Checks of one token share one request. One Check's introspection,
//! endpoint discovery included, has `timeout` to finish; an endpoint that is down, slow or answers
//! something that is not an RFC 7662 response denies the Check `introspection_unavailable` (fail
//! closed). Metrics: requests by result, cache lookups, latency. This module never logs a token
//! or the client secret.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::metrics::{INTROSPECTION_CACHE_LOOKUPS, INTROSPECTION_DURATION, INTROSPECTION_REQUESTS};
use cedargate_core::config::{Config, IntrospectionConfig, IssuerConfig, url_problem};
use cedargate_core::token::{
    TokenError, VerifiedToken, check_claims, hex_prefix, now_secs, sha256,
};

/// Largest introspection answer read: real ones are a few hundred bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A client secret: never printed, not even by `Debug`.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A cached answer.
#[derive(Clone)]
enum Answer {
    Active(Arc<VerifiedToken>),
    Inactive,
}

/// Per-entry expiry: an active answer until the token's `exp`, at most `max`.
struct UntilExp {
    max: Duration,
}

impl moka::Expiry<[u8; 32], Answer> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Answer,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(match value {
            Answer::Active(token) => {
                Duration::from_secs(token.exp.saturating_sub(now_secs())).min(self.max)
            }
            Answer::Inactive => self.max,
        })
    }
}

/// One issuer's introspection.
pub struct IssuerIntrospection {
    issuer: Arc<IssuerConfig>,
    settings: IntrospectionConfig,
    /// Read at start; an unreadable secret fails every introspection closed (and says so once).
    secret: Result<Secret, String>,
    /// The endpoint: configured, or found by discovery on first use.
    endpoint: tokio::sync::OnceCell<String>,
    cache: Option<moka::future::Cache<[u8; 32], Answer>>,
}

/// Every issuer's introspection, and which one takes opaque tokens.
pub struct Introspection {
    issuers: Vec<IssuerIntrospection>,
    http: reqwest::Client,
}

impl Introspection {
    /// The introspection of each issuer of `config` that has it (restart-only, like issuers).
    pub fn new(config: &Config) -> Introspection {
        let issuers: Vec<IssuerIntrospection> = config
            .issuers
            .iter()
            .filter_map(|issuer| {
                let settings = issuer.introspection.clone()?;
                let secret = std::fs::read_to_string(&settings.client_secret_file)
                    .map(|s| Secret(s.trim().to_string()))
                    .map_err(|e| {
                        format!(
                            "{}: {}",
                            settings.client_secret_file.display(),
                            cedargate_core::config::io_words(&e)
                        )
                    });
                if let Err(error) = &secret {
                    tracing::error!(issuer = %issuer.name, %error, "introspection.secret_unreadable: every opaque token of this issuer is refused");
                }
                let cache = (settings.cache_capacity > 0).then(|| {
                    moka::future::Cache::builder()
                        .max_capacity(settings.cache_capacity)
                        .expire_after(UntilExp {
                            max: settings.cache_max_ttl,
                        })
                        .build()
                });
                Some(IssuerIntrospection {
                    issuer: issuer.clone(),
                    endpoint: tokio::sync::OnceCell::new_with(settings.endpoint.clone()),
                    settings,
                    secret,
                    cache,
                })
            })
            .collect();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Introspection { issuers, http }
    }

    /// The issuer that introspects `token`, if any: a token that is not a JWT goes to the issuer
    /// taking opaque tokens; a JWT goes to its `iss` when that issuer is set to `only`. Every
    /// other token is verified as a JWT.
    pub fn route(&self, token: &str) -> Option<&IssuerIntrospection> {
        if self.issuers.is_empty() {
            return None;
        }
        match jwt_issuer(token) {
            None => self.issuers.iter().find(|i| i.settings.opaque_tokens),
            Some(iss) => self
                .issuers
                .iter()
                .find(|i| i.settings.only && *i.issuer.issuer == *iss),
        }
    }

    /// Introspects `token` at `at` (from [`Introspection::route`]); `Ok` carries whether the
    /// answer came from the cache.
    pub async fn introspect(
        &self,
        at: &IssuerIntrospection,
        token: &str,
    ) -> Result<(Arc<VerifiedToken>, bool), TokenError> {
        let digest = sha256(token.as_bytes());
        let budget = at.settings.timeout;
        let answer = match &at.cache {
            Some(cache) => {
                if let Some(hit) = cache.get(&digest).await {
                    metrics::counter!(INTROSPECTION_CACHE_LOOKUPS, "result" => "hit").increment(1);
                    return answer_result(hit, true);
                }
                metrics::counter!(INTROSPECTION_CACHE_LOOKUPS, "result" => "miss").increment(1);
                // One request per token however many Checks wait for it; errors are not cached.
                tokio::time::timeout(
                    budget,
                    cache.try_get_with(digest, self.ask(at, token, &digest)),
                )
                .await
                .map_err(|_| unavailable(at, "no answer within timeout_ms"))?
                .map_err(|e| (*e).clone())?
            }
            None => tokio::time::timeout(budget, self.ask(at, token, &digest))
                .await
                .map_err(|_| unavailable(at, "no answer within timeout_ms"))??,
        };
        answer_result(answer, false)
    }

    /// One request to the endpoint, judged.
    async fn ask(
        &self,
        at: &IssuerIntrospection,
        token: &str,
        digest: &[u8; 32],
    ) -> Result<Answer, TokenError> {
        let name = at.issuer.name.to_string();
        let started = Instant::now();
        let result = self.ask_uncounted(at, token, digest).await;
        metrics::histogram!(INTROSPECTION_DURATION, "issuer" => name.clone())
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(Answer::Active(_)) => "active",
            Ok(Answer::Inactive) => "inactive",
            Err(TokenError::IntrospectionUnavailable) => "error",
            // An active answer whose claims we refuse (expired, wrong audience): the endpoint
            // worked.
            Err(_) => "active",
        };
        metrics::counter!(INTROSPECTION_REQUESTS, "issuer" => name, "result" => outcome)
            .increment(1);
        result
    }

    async fn ask_uncounted(
        &self,
        at: &IssuerIntrospection,
        token: &str,
        digest: &[u8; 32],
    ) -> Result<Answer, TokenError> {
        let secret = at
            .secret
            .as_ref()
            .map_err(|e| unavailable(at, &format!("client secret: {e}")))?;
        let endpoint = at
            .endpoint
            .get_or_try_init(|| self.discover(at))
            .await
            .map_err(|e| unavailable(at, &e))?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(endpoint)
            .basic_auth(encode(&at.settings.client_id), Some(encode(&secret.0)))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(at, &without_url(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(at, &format!("endpoint answered {status}")));
        }
        let bytes = read_bounded(response)
            .await
            .map_err(|e| unavailable(at, &e))?;
        let mut claims: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| unavailable(at, "the answer is not a JSON object"))?;
        match claims.remove("active") {
            Some(Value::Bool(true)) => {}
            Some(Value::Bool(false)) => return Ok(Answer::Inactive),
            _ => {
                return Err(unavailable(
                    at,
                    "the answer has no boolean `active` (not RFC 7662)",
                ));
            }
        }
        // `iss` is optional in RFC 7662; the issuer's own endpoint vouches for it.
        claims
            .entry("iss")
            .or_insert_with(|| Value::from(&*at.issuer.issuer));
        check_claims(&at.issuer, &claims, now_secs())?;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::InvalidClaim)?;
        Ok(Answer::Active(Arc::new(VerifiedToken {
            issuer: at.issuer.clone(),
            claims,
            exp,
            hash: hex_prefix(digest).into(),
            keys_version: 0,
            mapped: std::sync::OnceLock::new(),
        })))
    }

    /// `introspection_endpoint` from the issuer's OIDC discovery document.
    async fn discover(&self, at: &IssuerIntrospection) -> Result<String, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            at.issuer.issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("discovery: {}", without_url(&e)))?;
        if !response.status().is_success() {
            return Err(format!("discovery answered {}", response.status()));
        }
        let bytes = read_bounded(response).await?;
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|_| "discovery is not JSON".to_string())?;
        discovered_endpoint(&doc, &at.issuer.issuer, at.issuer.allow_insecure_http)
    }
}

/// `introspection_endpoint` from a discovery document, which must announce exactly the
/// configured issuer (OIDC Discovery §4.3, RFC 8414 §3.3: otherwise the document describes
/// another server, and the tokens it vouches for are not this issuer's) and name an endpoint
/// that passes the same URL rules as a configured one. Any metadata document shape is read (an
/// OAuth-only server has no `jwks_uri`), so this is not `openidconnect`'s OIDC metadata type.
fn discovered_endpoint(
    doc: &Value,
    issuer: &str,
    allow_insecure_http: bool,
) -> Result<String, String> {
    let announced = doc.get("issuer").and_then(Value::as_str);
    if announced != Some(issuer) {
        return Err(format!(
            "discovery says issuer `{}`, configured `{issuer}` (they must be equal)",
            announced.unwrap_or("(none)")
        ));
    }
    let endpoint = doc
        .get("introspection_endpoint")
        .and_then(Value::as_str)
        .ok_or("discovery has no introspection_endpoint")?;
    if let Some(why) = url_problem(endpoint, allow_insecure_http) {
        return Err(format!("discovered introspection_endpoint {why}"));
    }
    Ok(endpoint.to_string())
}

/// What a cached or fresh answer means for the Check.
fn answer_result(answer: Answer, cached: bool) -> Result<(Arc<VerifiedToken>, bool), TokenError> {
    match answer {
        Answer::Active(token) if token.exp > now_secs() => Ok((token, cached)),
        Answer::Active(_) => Err(TokenError::Expired),
        Answer::Inactive => Err(TokenError::Inactive),
    }
}

fn unavailable(at: &IssuerIntrospection, why: &str) -> TokenError {
    tracing::warn!(issuer = %at.issuer.name, error = why, "introspection.failed: the Check is denied introspection_unavailable");
    TokenError::IntrospectionUnavailable
}

/// A reqwest error in words, without a URL's query (none is sent; belt and braces).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    match e.url() {
        Some(url) => format!(
            "{kind} ({}{})",
            url.origin().ascii_serialization(),
            url.path()
        ),
        None => kind.to_string(),
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {}", without_url(&e)))?
    {
        if out.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The `iss` of a token that has the JWS compact form (three base64url parts, a JSON header and
/// payload), unverified: only to choose where to send it. `None` for anything else (an opaque
/// token).
fn jwt_issuer(token: &str) -> Option<String> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    header.get("alg")?;
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some(
        payload
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_discovered_endpoint_needs_the_configured_issuer_and_a_good_url() {
        let issuer = "https://idp.example";
        let doc = |iss: Value, endpoint: Value| serde_json::json!({"issuer": iss, "introspection_endpoint": endpoint});
        let good = doc(issuer.into(), "https://idp.example/introspect".into());
        assert_eq!(
            discovered_endpoint(&good, issuer, false).unwrap(),
            "https://idp.example/introspect"
        );
        for (d, expected) in [
            (
                doc(
                    "https://other.example".into(),
                    "https://idp.example/i".into(),
                ),
                "discovery says issuer `https://other.example`, configured `https://idp.example`",
            ),
            (
                doc(
                    "https://idp.example/".into(),
                    "https://idp.example/i".into(),
                ),
                "discovery says issuer `https://idp.example/`",
            ),
            (
                serde_json::json!({"introspection_endpoint": "https://idp.example/i"}),
                "discovery says issuer `(none)`",
            ),
            (
                doc(issuer.into(), Value::Null),
                "discovery has no introspection_endpoint",
            ),
            (
                doc(issuer.into(), "http://idp.example/i".into()),
                "discovered introspection_endpoint",
            ),
        ] {
            let e = discovered_endpoint(&d, issuer, false).unwrap_err();
            assert!(e.starts_with(expected), "{d}: {e}");
        }
        let loopback = doc(
            "http://127.0.0.1:9400".into(),
            "http://127.0.0.1:9400/token/introspection".into(),
        );
        assert!(discovered_endpoint(&loopback, "http://127.0.0.1:9400", true).is_ok());
    }

    #[test]
    fn only_jws_shaped_tokens_are_jwts() {
        let part = |v: &str| URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            part(r#"{"alg":"ES256"}"#),
            part(r#"{"iss":"https://idp"}"#)
        );
        assert_eq!(jwt_issuer(&jwt).as_deref(), Some("https://idp"));
        let no_iss = format!("{}.{}.sig", part(r#"{"alg":"ES256"}"#), part("{}"));
        assert_eq!(jwt_issuer(&no_iss).as_deref(), Some(""));
        for opaque in [
            "2YotnFZFEjr1zCsicMWpAA",
            "a.b.c",
            "a.b",
            "",
            &format!("{}.{}.s.x", part("{}"), part("{}")),
        ] {
            assert_eq!(jwt_issuer(opaque), None, "{opaque}");
        }
    }
}
