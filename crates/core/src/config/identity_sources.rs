//! The identity sources beyond signed JWTs, one self-contained block per concern (raw mirror,
//! defaults, typed value, validation): `api_keys` (keys in a request header, checked against a
//! key file of salted hashes) and an issuer's `introspection` (RFC 7662, for opaque tokens).
//! Reads the files they name only to check them (the key file parses; the client secret file is
//! readable and not empty); the server loads both itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::problems::Collected;
use super::urls::{resolve, url_problem};
use crate::api_keys::KeyFile;

// ---- defaults ----------------------------------------------------------------------------------

/// Header an API key arrives in: the de-facto name (AWS API Gateway, many SaaS APIs).
const DEFAULT_API_KEY_HEADER: &str = "x-api-key";
/// Longest an introspection answer is reused: a revoked token keeps working at most this long,
/// while a busy token costs the IdP one request a minute instead of one per request.
const DEFAULT_INTROSPECTION_CACHE_MAX_TTL_SECS: u64 = 60;
/// Introspection answers kept (~1 KiB each).
const DEFAULT_INTROSPECTION_CACHE_CAPACITY: u64 = 10_000;
/// Time budget of one Check's introspection (endpoint discovery included): below Envoy's 500 ms
/// ext_authz deadline in `envoy/envoy.yaml`, so cedargate answers `introspection_unavailable`
/// itself instead of Envoy timing out with a 503.
const DEFAULT_INTROSPECTION_TIMEOUT_MS: u64 = 300;

// ---- raw ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApiKeys {
    pub(super) header: Option<Spanned<String>>,
    pub(super) file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntrospection {
    pub(super) endpoint: Option<Spanned<String>>,
    pub(super) client_id: Spanned<String>,
    pub(super) client_secret_file: Spanned<String>,
    pub(super) opaque_tokens: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) only: bool,
    pub(super) cache_max_ttl_seconds: Option<Spanned<u64>>,
    pub(super) cache_capacity: Option<Spanned<u64>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
}

// ---- typed -------------------------------------------------------------------------------------

/// `api_keys`: callers that present a key in a request header instead of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeysConfig {
    /// Lower-case header carrying the key (never recorded, never in the Cedar context).
    pub header: Arc<str>,
    /// The key file (`cedargate apikey create` writes it); watched, reloaded on change.
    pub file: PathBuf,
}

/// An issuer's `introspection`: RFC 7662 for its opaque tokens (or for all of its tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// The endpoint; `None`: discovery's `introspection_endpoint`.
    pub endpoint: Option<String>,
    /// Client id cedargate authenticates with (HTTP Basic, RFC 6749 §2.3.1).
    pub client_id: Arc<str>,
    /// File holding the client secret (the server reads it; never in the config).
    pub client_secret_file: PathBuf,
    /// Bearer tokens that are not JWTs go to this issuer (one issuer at most).
    pub opaque_tokens: bool,
    /// JWTs whose `iss` is this issuer are introspected too, never verified locally.
    pub only: bool,
    /// Longest an answer is reused (never past the token's `exp`).
    pub cache_max_ttl: Duration,
    /// Answers kept; 0: none (every Check asks).
    pub cache_capacity: u64,
    /// Budget for one Check's introspection; past it the Check is denied
    /// `introspection_unavailable`.
    pub timeout: Duration,
}

// ---- validation --------------------------------------------------------------------------------

/// `api_keys`: the header is a plain header name that carries no other credential and is not
/// recorded (`decision_log.headers`) or copied into the context (`context.headers`); the key
/// file parses (its own file:line:column and field are in the message).
pub(super) fn api_keys(
    raw: &Spanned<RawApiKeys>,
    recorded: &[Spanned<String>],
    in_context: &[Spanned<String>],
    base: &Path,
    problems: &mut Collected,
) -> Option<ApiKeysConfig> {
    let header = match &raw.value.header {
        None => DEFAULT_API_KEY_HEADER.to_string(),
        Some(h) => {
            let name = h.value.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
                problems.at(
                    h,
                    format!("api_keys.header `{}` is not a header name", h.value),
                );
                return None;
            }
            if matches!(
                name.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            ) || name.starts_with(':')
            {
                problems.at(
                    h,
                    format!("api_keys.header must not be `{name}`: it has a meaning of its own"),
                );
                return None;
            }
            name
        }
    };
    for (list, field) in [
        (recorded, "decision_log.headers"),
        (in_context, "context.headers"),
    ] {
        if let Some(h) = list.iter().find(|h| h.value.eq_ignore_ascii_case(&header)) {
            problems.at(
                h,
                format!(
                    "{field} must not include `{header}`: it carries API keys (api_keys.header)"
                ),
            );
        }
    }
    let file = resolve(base, &raw.value.file.value);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            if let Err(e) = KeyFile::parse(&text, &file) {
                problems.at(&raw.value.file, format!("api_keys.file: {e}"));
            }
        }
        Err(e) => problems.at(
            &raw.value.file,
            format!(
                "api_keys.file {}: {} (create it with `cedargate apikey create --file …`)",
                file.display(),
                super::io_words(&e)
            ),
        ),
    }
    Some(ApiKeysConfig {
        header: header.into(),
        file,
    })
}

/// An issuer's `introspection`.
pub(super) fn introspection(
    raw: &Spanned<RawIntrospection>,
    allow_insecure_http: bool,
    base: &Path,
    problems: &mut Collected,
) -> Option<IntrospectionConfig> {
    let r = &raw.value;
    if let Some(endpoint) = &r.endpoint
        && let Some(why) = url_problem(&endpoint.value, allow_insecure_http)
    {
        problems.at(endpoint, format!("introspection.endpoint {why}"));
    }
    if r.client_id.value.is_empty() {
        problems.at(&r.client_id, "introspection.client_id must not be empty");
    }
    let secret_file = resolve(base, &r.client_secret_file.value);
    match std::fs::read_to_string(&secret_file) {
        Ok(text) if text.trim().is_empty() => problems.at(
            &r.client_secret_file,
            format!(
                "introspection.client_secret_file {} is empty",
                secret_file.display()
            ),
        ),
        Ok(_) => {}
        Err(e) => problems.at(
            &r.client_secret_file,
            format!(
                "introspection.client_secret_file {}: {}",
                secret_file.display(),
                super::io_words(&e)
            ),
        ),
    }
    let positive = |v: &Option<Spanned<u64>>, default: u64, name: &str, p: &mut Collected| match v {
        Some(v) if v.value == 0 => {
            p.at(v, format!("introspection.{name} must be at least 1"));
            default
        }
        Some(v) => v.value,
        None => default,
    };
    let cache_max_ttl = positive(
        &r.cache_max_ttl_seconds,
        DEFAULT_INTROSPECTION_CACHE_MAX_TTL_SECS,
        "cache_max_ttl_seconds",
        problems,
    );
    let timeout = positive(
        &r.timeout_ms,
        DEFAULT_INTROSPECTION_TIMEOUT_MS,
        "timeout_ms",
        problems,
    );
    Some(IntrospectionConfig {
        endpoint: r.endpoint.as_ref().map(|e| e.value.clone()),
        client_id: r.client_id.value.as_str().into(),
        client_secret_file: secret_file,
        opaque_tokens: r.opaque_tokens.as_ref().is_none_or(|o| o.value),
        only: r.only,
        cache_max_ttl: Duration::from_secs(cache_max_ttl),
        cache_capacity: r
            .cache_capacity
            .as_ref()
            .map_or(DEFAULT_INTROSPECTION_CACHE_CAPACITY, |c| c.value),
        timeout: Duration::from_millis(timeout),
    })
}

/// Opaque tokens carry no `iss`: only one issuer may receive them.
pub(super) fn one_opaque_issuer<T>(
    issuers: &[Arc<super::IssuerConfig>],
    spans: &[&Spanned<T>],
    problems: &mut Collected,
) {
    let mut opaque = issuers
        .iter()
        .zip(spans)
        .filter(|(i, _)| i.introspection.as_ref().is_some_and(|x| x.opaque_tokens));
    if let Some((first, _)) = opaque.next() {
        for (other, span) in opaque {
            problems.at(
                *span,
                format!(
                    "issuers `{}` and `{}` both take opaque tokens: an opaque token names no issuer, so set `introspection.opaque_tokens: false` on all but one",
                    first.name, other.name
                ),
            );
        }
    }
}
