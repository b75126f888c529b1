//! The `issuers` section: one issuer's fields checked into an [`IssuerConfig`] (URL, audiences,
//! algorithms — asymmetric only —, leeway, key source and refresh bounds, principal mappings).
//! Duplicate names across issuers are the caller's check (`validate`). Reads no file and does no
//! network IO: keys are fetched by the server.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde_saphyr::Spanned;

use super::defaults::*;
use super::fields::{entity_type, positive};
use super::model::*;
use super::problems::Collected;
use super::raw::*;
use super::urls::{has_user_info, resolve, url_problem};

/// Algorithms an issuer may allow: asymmetric only, so a key published in a JWKS can never be
/// used as an HMAC secret.
fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    let alg = Algorithm::from_str(name).map_err(|_| format!("unknown algorithm `{name}`"))?;
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Err(format!(
            "`{name}` is symmetric; only RS*, PS*, ES256, ES384 and EdDSA are allowed with published keys"
        )),
        _ => Ok(alg),
    }
}

pub(super) fn validate_issuer(
    index: usize,
    spanned: &Spanned<RawIssuer>,
    base: &Path,
    problems: &mut Collected,
) -> IssuerConfig {
    let raw = &spanned.value;
    // `iss` is compared exactly, so the configured value is kept as written.
    let issuer = raw.issuer.value.clone();
    if let Some(why) = url_problem(&issuer, raw.allow_insecure_http) {
        // User info may hold a password: never echoed (the position says which line).
        let shown = if has_user_info(&issuer) {
            String::new()
        } else {
            format!("`{issuer}` ")
        };
        problems.at(&raw.issuer, format!("issuer {shown}{why}"));
    }
    if raw.audiences.is_empty() {
        problems.at(
            spanned,
            "issuer needs at least one audience: tokens minted for other services must not be accepted",
        );
    }
    let algorithms = match &raw.algorithms {
        None => DEFAULT_ALGORITHMS.to_vec(),
        Some(list) => {
            let mut out = Vec::new();
            for a in list {
                match parse_algorithm(&a.value) {
                    Ok(alg) => out.push(alg),
                    Err(msg) => problems.at(a, msg),
                }
            }
            if list.is_empty() {
                problems.at(spanned, "algorithms must not be empty");
            }
            out
        }
    };
    let leeway = match &raw.leeway_seconds {
        None => DEFAULT_LEEWAY_SECS,
        Some(l) if l.value > MAX_LEEWAY_SECS => {
            problems.at(
                l,
                format!(
                    "leeway_seconds {} exceeds the maximum {MAX_LEEWAY_SECS}",
                    l.value
                ),
            );
            MAX_LEEWAY_SECS
        }
        Some(l) => l.value,
    };
    let require_typ = raw.require_typ.as_ref().and_then(|t| {
        let valid = !t.value.is_empty()
            && t.value.bytes().all(|b| b.is_ascii_graphic() && b != b';')
            && t.value.matches('/').count() <= 1
            && !t.value.starts_with('/')
            && !t.value.ends_with('/');
        if valid {
            Some(media_type(&t.value).into())
        } else {
            problems.at(
                t,
                format!(
                    "require_typ `{}` is not a media type: write it like `at+jwt` (RFC 9068 access tokens) or `application/at+jwt`",
                    t.value
                ),
            );
            None
        }
    });
    let max_token_lifetime = raw
        .max_token_lifetime_seconds
        .as_ref()
        .map(|m| Duration::from_secs(positive(Some(m), 1, "max_token_lifetime_seconds", problems)));
    let keys = match (&raw.jwks_uri, &raw.jwks_file) {
        (Some(_), Some(_)) => {
            problems.at(spanned, "set jwks_uri or jwks_file, not both");
            KeySource::Discovery
        }
        (Some(uri), None) => {
            if let Some(why) = url_problem(&uri.value, raw.allow_insecure_http) {
                problems.at(uri, format!("jwks_uri {why}"));
            }
            KeySource::JwksUri(uri.value.clone())
        }
        (None, Some(file)) => KeySource::File(resolve(base, file)),
        (None, None) => KeySource::Discovery,
    };
    let refresh = positive(
        raw.refresh_seconds.as_ref(),
        DEFAULT_JWKS_REFRESH_SECS,
        "refresh_seconds",
        problems,
    );
    let min_refresh = match &raw.min_refresh_seconds {
        Some(m) if m.value > refresh => {
            problems.at(
                m,
                format!(
                    "min_refresh_seconds {} exceeds refresh_seconds {refresh}",
                    m.value
                ),
            );
            refresh
        }
        other => positive(
            other.as_ref(),
            DEFAULT_MIN_REFRESH_SECS.min(refresh),
            "min_refresh_seconds",
            problems,
        ),
    };
    let max_staleness = match &raw.max_staleness_seconds {
        Some(m) if m.value <= refresh => {
            problems.at(
                m,
                format!(
                    "max_staleness_seconds {} must exceed refresh_seconds {refresh}, or keys go stale between refreshes",
                    m.value
                ),
            );
            DEFAULT_MAX_STALENESS_SECS.max(refresh + 1)
        }
        Some(m) => m.value,
        None => DEFAULT_MAX_STALENESS_SECS.max(refresh + 1),
    };
    let user = principal_mapping(
        &raw.principal,
        DEFAULT_USER_TYPE,
        DEFAULT_USER_ID_CLAIM,
        problems,
    );
    let service = raw
        .service_principal
        .as_ref()
        .map(|p| principal_mapping(p, DEFAULT_SERVICE_TYPE, DEFAULT_SERVICE_ID_CLAIM, problems));
    IssuerConfig {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| format!("issuer{index}"))
            .into(),
        issuer: issuer.into(),
        audiences: raw.audiences.clone(),
        algorithms,
        leeway: Duration::from_secs(leeway),
        require_typ,
        max_token_lifetime,
        reject_future_iat: raw.reject_future_iat,
        keys,
        refresh: Duration::from_secs(refresh),
        min_refresh: Duration::from_secs(min_refresh),
        max_staleness: Duration::from_secs(max_staleness),
        kid_refetch_min_interval: Duration::from_secs(positive(
            raw.kid_refetch_min_interval_seconds.as_ref(),
            DEFAULT_KID_REFETCH_MIN_INTERVAL_SECS,
            "kid_refetch_min_interval_seconds (the rate limit on refetches cannot be off)",
            problems,
        )),
        kid_refetch_wait: Duration::from_millis(positive(
            raw.kid_refetch_wait_ms.as_ref(),
            DEFAULT_KID_REFETCH_WAIT_MS,
            "kid_refetch_wait_ms",
            problems,
        )),
        fetch_timeout: Duration::from_millis(positive(
            raw.fetch_timeout_ms.as_ref(),
            DEFAULT_FETCH_TIMEOUT_MS,
            "fetch_timeout_ms",
            problems,
        )),
        allow_insecure_http: raw.allow_insecure_http,
        user,
        service,
        introspection: raw.introspection.as_ref().and_then(|i| {
            super::identity_sources::introspection(i, raw.allow_insecure_http, base, problems)
        }),
    }
}

fn principal_mapping(
    raw: &RawPrincipal,
    default_type: &str,
    default_id_claim: &str,
    problems: &mut Collected,
) -> PrincipalMapping {
    let mut parents = Vec::new();
    if let Some(claim) = raw.groups_claim.as_deref() {
        parents.push(ParentMapping {
            claim: claim.into(),
            entity_type: entity_type(raw.group_type.as_ref(), DEFAULT_GROUP_TYPE, problems),
        });
    } else if let Some(ty) = &raw.group_type {
        problems.at(ty, "group_type needs groups_claim (or use `parents:`)");
    }
    for p in &raw.parents {
        let mapping = ParentMapping {
            claim: p.value.claim.as_str().into(),
            entity_type: entity_type(Some(&p.value.entity_type), DEFAULT_GROUP_TYPE, problems),
        };
        if parents.contains(&mapping) {
            problems.at(
                p,
                format!(
                    "claim `{}` → `{}` is mapped twice",
                    mapping.claim, mapping.entity_type
                ),
            );
        } else {
            parents.push(mapping);
        }
    }
    PrincipalMapping {
        entity_type: entity_type(raw.entity_type.as_ref(), default_type, problems),
        id_claim: raw.id_claim.as_deref().unwrap_or(default_id_claim).into(),
        parents,
        attributes: raw.attributes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::fields::problems;

    #[test]
    fn plain_http_needs_an_explicit_opt_in_beyond_loopback() {
        let yaml = "issuers:\n  - issuer: http://idp:9400\n    audiences: [a]\n    allow_insecure_http: true\n";
        assert_eq!(problems(yaml), Vec::<String>::new());
    }
}
