//! Verified-token types and the token claim rules: [`TokenError`] (one variant per reason
//! code), [`VerifiedToken`], and [`validation`], the one place that says which claims a token
//! must carry and how `exp`, `nbf`, `iss` and `aud` are judged (with the issuer's leeway). The
//! server's verifier and the policy test runner both judge claims through it, so a policy test
//! can't accept a token `serve` refuses. No IO, no keys: signatures are the server's business.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::config::IssuerConfig;

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
    /// The header `typ` is not the issuer's `require_typ` (or is missing).
    #[error("token type is not the required one")]
    WrongType,
    /// `exp - iat` is longer than the issuer's `max_token_lifetime_seconds`.
    #[error("token lifetime is longer than allowed")]
    LifetimeTooLong,
    /// `iat` is in the future (beyond leeway) and the issuer has `reject_future_iat`.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// The issuer's introspection endpoint answered `active: false` (revoked, expired or never
    /// issued).
    #[error("token is not active")]
    Inactive,
    /// The introspection endpoint could not be asked in time or answered something that is not
    /// an RFC 7662 response: fail closed.
    #[error("token introspection is unavailable")]
    IntrospectionUnavailable,
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
            TokenError::WrongType => "token_wrong_typ",
            TokenError::LifetimeTooLong => "token_lifetime_too_long",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::Inactive => "token_inactive",
            TokenError::IntrospectionUnavailable => "introspection_unavailable",
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
    /// Key-set version it verified under (the verifier's cache serves it only while the
    /// issuer's keys are that version).
    pub keys_version: u64,
    /// What the mapping derives from this token alone, built by its first Check and kept with
    /// the cached token for the next ones (the issuer's mapping is fixed for the token's life).
    pub mapped: OnceLock<Option<TokenFacts>>,
}

/// The Cedar facts of one token that depend on nothing else: its principal, what it says about
/// the principal (an entity in Cedar's JSON form, when it says anything) and the `context.token`
/// record. Filled by [`crate::mapping`]; `None` in [`VerifiedToken::mapped`] when the principal
/// claim is missing.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    /// The principal's entity type.
    pub principal_type: Arc<str>,
    /// The principal's id.
    pub principal_id: String,
    /// The credential's entity for the principal.
    pub entity: Option<Value>,
    /// `context.token`.
    pub context: Value,
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
            mapped: OnceLock::new(),
        }
    }

    /// A string claim.
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What `jsonwebtoken` checks of a token of `issuer` signed with `alg`: the algorithm and the
/// signature, nothing else. The claims are judged by [`check_claims`], after the signature
/// verified, so that the server and the policy test runner judge them by one rule at a time each
/// chooses (the runner's cases carry their own time).
pub fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.algorithms = vec![alg];
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

/// The header rule: with `require_typ`, the JOSE header's `typ` (given as found: `None` when
/// absent, `Some(non-string)` is refused too) names the same media type, compared as RFC 8725
/// §3.11 and RFC 9068 §4 say: case-insensitively, `at+jwt` the same as `application/at+jwt`
/// (`token_wrong_typ`). Without `require_typ`, `typ` is not looked at.
pub fn check_typ(issuer: &IssuerConfig, typ: Option<&Value>) -> Result<(), TokenError> {
    let Some(required) = &issuer.require_typ else {
        return Ok(());
    };
    match typ.and_then(Value::as_str) {
        Some(typ) if crate::config::media_type(typ) == **required => Ok(()),
        _ => Err(TokenError::WrongType),
    }
}

/// The token claim rules, judged at `now` (seconds since the epoch), in the order `jsonwebtoken`
/// judges them, so the reason codes are the ones it would give:
/// - `exp` and `nbf`, when present, are non-negative integers and `iss` a string; so is `iat`
///   when an option below judges it (`token_invalid_claim`);
/// - `exp`, `iss` and `aud` (a string or a list of strings) are present, and `iat` with
///   `max_token_lifetime_seconds` (`token_missing_claim`);
/// - `exp` is not more than the issuer's leeway in the past (`token_expired`);
/// - `nbf` is not more than the leeway in the future (`token_not_yet_valid`);
/// - `iss` is the issuer's, exactly (`token_wrong_issuer`);
/// - one `aud` value is one of the issuer's audiences (`token_wrong_audience`);
/// - with `reject_future_iat`, `iat` is not more than the leeway in the future
///   (`token_issued_in_future`);
/// - with `max_token_lifetime_seconds`, `exp - iat` is not longer (`token_lifetime_too_long`).
pub fn check_claims(
    issuer: &IssuerConfig,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<(), TokenError> {
    let number = |name: &str| claims.get(name).map(Value::as_u64);
    let iat_judged = issuer.reject_future_iat || issuer.max_token_lifetime.is_some();
    if matches!(number("exp"), Some(None))
        || matches!(number("nbf"), Some(None))
        || (iat_judged && matches!(number("iat"), Some(None)))
    {
        return Err(TokenError::InvalidClaim);
    }
    if issuer.max_token_lifetime.is_some() && claims.get("iat").is_none() {
        return Err(TokenError::MissingClaim);
    }
    if claims.get("iss").is_some_and(|v| !v.is_string()) {
        return Err(TokenError::InvalidClaim);
    }
    let audiences: Option<Vec<&str>> = match claims.get("aud") {
        Some(Value::String(a)) => Some(vec![a.as_str()]),
        Some(Value::Array(items)) => items.iter().map(Value::as_str).collect(),
        _ => None,
    };
    let (Some(Some(exp)), Some(iss), Some(audiences)) = (
        number("exp"),
        claims.get("iss").and_then(Value::as_str),
        audiences,
    ) else {
        return Err(TokenError::MissingClaim);
    };
    let leeway = issuer.leeway.as_secs();
    if exp < now.saturating_sub(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(Some(nbf)) = number("nbf")
        && nbf > now.saturating_add(leeway)
    {
        return Err(TokenError::NotYetValid);
    }
    if iss != &*issuer.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|ok| ok == a))
    {
        return Err(TokenError::WrongAudience);
    }
    let iat = number("iat").flatten();
    if issuer.reject_future_iat
        && let Some(iat) = iat
        && iat > now.saturating_add(leeway)
    {
        return Err(TokenError::IssuedInFuture);
    }
    if let (Some(max), Some(iat)) = (issuer.max_token_lifetime, iat)
        && exp.saturating_sub(iat) > max.as_secs()
    {
        return Err(TokenError::LifetimeTooLong);
    }
    Ok(())
}

/// The reason code for a `jsonwebtoken` error.
pub fn map_error(kind: &ErrorKind) -> TokenError {
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

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// First 8 bytes of a digest as hex: enough to correlate log lines, useless for recovering input.
pub fn hex_prefix(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn issuer() -> Arc<IssuerConfig> {
        let config = crate::config::Config::parse(
            "issuers:\n  - issuer: https://idp.test\n    audiences: [api, other]\n    jwks_uri: https://idp.test/jwks\n    leeway_seconds: 30\n",
            Path::new("c.yaml"),
        )
        .unwrap();
        config.issuers[0].clone()
    }

    #[test]
    fn claim_str_reads_string_claims_only() {
        let claims = json!({"sub": "alice", "n": 7, "list": ["a"], "empty": ""});
        let token = VerifiedToken::from_claims(issuer(), claims.as_object().unwrap().clone());
        assert_eq!(token.claim_str("sub"), Some("alice"));
        assert_eq!(token.claim_str("empty"), Some(""));
        for absent in ["n", "list", "missing"] {
            assert_eq!(token.claim_str(absent), None, "{absent}");
        }
    }

    /// The server's clock for `exp`, `nbf` and cache expiry: the real time, not a constant.
    #[test]
    fn now_secs_is_the_system_clock() {
        let system = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            now_secs().abs_diff(system) <= 1,
            "{} vs {system}",
            now_secs()
        );
    }

    /// Reason codes are a public contract (decision logs, dashboards, alerts, policy tests):
    /// each variant has its own, spelled exactly as documented in docs/configuration.md.
    #[test]
    fn every_token_error_has_its_documented_reason_code() {
        use TokenError::*;
        let table = [
            (TooLarge, "token_too_large"),
            (Malformed, "token_malformed"),
            (AlgorithmNotAllowed, "token_alg_not_allowed"),
            (CriticalHeader, "token_crit_unsupported"),
            (UnknownIssuer, "token_unknown_issuer"),
            (UnknownKid, "token_unknown_kid"),
            (KeysUnavailable, "token_keys_unavailable"),
            (KeysStale, "token_keys_stale"),
            (BadSignature, "token_bad_signature"),
            (Expired, "token_expired"),
            (NotYetValid, "token_not_yet_valid"),
            (WrongAudience, "token_wrong_audience"),
            (WrongIssuer, "token_wrong_issuer"),
            (MissingClaim, "token_missing_claim"),
            (InvalidClaim, "token_invalid_claim"),
            (MissingPrincipalClaim, "token_missing_principal_claim"),
            (WrongType, "token_wrong_typ"),
            (LifetimeTooLong, "token_lifetime_too_long"),
            (IssuedInFuture, "token_issued_in_future"),
            (Inactive, "token_inactive"),
            (IntrospectionUnavailable, "introspection_unavailable"),
        ];
        let docs = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for (error, code) in table {
            assert_eq!(error.reason(), code, "{error:?}");
            assert!(seen.insert(code), "{code} twice");
            assert!(
                docs.contains(&format!("`{code}`")),
                "{code} is not documented"
            );
        }
    }

    /// One table for the rules `serve` and the policy test runner share: the leeway counts on
    /// both sides of `exp` and `nbf`, exactly at the edge.
    #[test]
    fn claim_rules_judge_with_the_issuers_leeway() {
        let now = 1_000_000;
        let base = json!({"iss": "https://idp.test", "aud": "api", "exp": now + 60});
        let cases: Vec<(serde_json::Value, Result<(), TokenError>)> = vec![
            (json!({}), Ok(())),
            (json!({"exp": now - 30}), Ok(())),
            (json!({"exp": now - 31}), Err(TokenError::Expired)),
            (json!({"nbf": now + 30}), Ok(())),
            (json!({"nbf": now + 31}), Err(TokenError::NotYetValid)),
            (json!({"exp": "soon"}), Err(TokenError::InvalidClaim)),
            (json!({"nbf": -1}), Err(TokenError::InvalidClaim)),
            (json!({"iss": 7}), Err(TokenError::InvalidClaim)),
            (json!({"exp": null}), Err(TokenError::InvalidClaim)),
            (json!({"aud": 7}), Err(TokenError::MissingClaim)),
            (
                json!({"iss": "https://idp.test/"}),
                Err(TokenError::WrongIssuer),
            ),
            (json!({"aud": ["x", "other"]}), Ok(())),
            (json!({"aud": ["x"]}), Err(TokenError::WrongAudience)),
            (json!({"aud": "API"}), Err(TokenError::WrongAudience)),
        ];
        for (overlay, expected) in cases {
            let mut claims = base.as_object().unwrap().clone();
            for (k, v) in overlay.as_object().unwrap() {
                claims.insert(k.clone(), v.clone());
            }
            assert_eq!(check_claims(&issuer(), &claims, now), expected, "{overlay}");
        }
        let mut missing = base.as_object().unwrap().clone();
        missing.remove("exp");
        assert_eq!(
            check_claims(&issuer(), &missing, now),
            Err(TokenError::MissingClaim)
        );
    }

    fn issuer_with(extra: &str) -> Arc<IssuerConfig> {
        let config = crate::config::Config::parse(
            &format!(
                "issuers:\n  - issuer: https://idp.test\n    audiences: [api]\n    jwks_uri: https://idp.test/jwks\n    leeway_seconds: 30\n{extra}"
            ),
            Path::new("c.yaml"),
        )
        .unwrap();
        config.issuers[0].clone()
    }

    /// Off by default: `iat` and `typ` are not judged at all.
    #[test]
    fn token_options_are_off_by_default() {
        let issuer = issuer();
        let now = 1_000_000;
        let claims = json!({"iss": "https://idp.test", "aud": "api", "exp": now + 86_400 * 365, "iat": now + 9_999})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(check_claims(&issuer, &claims, now), Ok(()));
        assert_eq!(check_typ(&issuer, None), Ok(()));
        assert_eq!(check_typ(&issuer, Some(&json!("JWT"))), Ok(()));
    }

    #[test]
    fn lifetime_and_future_iat_are_judged_when_set() {
        let now = 1_000_000;
        let issuer =
            issuer_with("    max_token_lifetime_seconds: 3600\n    reject_future_iat: true\n");
        let base = json!({"iss": "https://idp.test", "aud": "api", "iat": now, "exp": now + 3600});
        let cases: Vec<(serde_json::Value, Result<(), TokenError>)> = vec![
            (json!({}), Ok(())),
            (json!({"exp": now + 3601}), Err(TokenError::LifetimeTooLong)),
            // An `iat` in the future within the leeway is clock skew, not an attack.
            (json!({"iat": now + 30, "exp": now + 3630}), Ok(())),
            (
                json!({"iat": now + 31, "exp": now + 3631}),
                Err(TokenError::IssuedInFuture),
            ),
            (json!({"iat": "now"}), Err(TokenError::InvalidClaim)),
            (json!({"iat": -5}), Err(TokenError::InvalidClaim)),
            // `exp` before `iat`: a lifetime of zero, never too long.
            (json!({"iat": now, "exp": now - 10}), Ok(())),
        ];
        for (overlay, expected) in cases {
            let mut claims = base.as_object().unwrap().clone();
            for (k, v) in overlay.as_object().unwrap() {
                claims.insert(k.clone(), v.clone());
            }
            assert_eq!(check_claims(&issuer, &claims, now), expected, "{overlay}");
        }
        let mut no_iat = base.as_object().unwrap().clone();
        no_iat.remove("iat");
        assert_eq!(
            check_claims(&issuer, &no_iat, now),
            Err(TokenError::MissingClaim)
        );
        // Only the future bound: a token without `iat` is fine, and any lifetime.
        let future_only = issuer_with("    reject_future_iat: true\n");
        assert_eq!(check_claims(&future_only, &no_iat, now), Ok(()));
        let mut long = base.as_object().unwrap().clone();
        long.insert("exp".into(), json!(now + 86_400 * 30));
        assert_eq!(check_claims(&future_only, &long, now), Ok(()));
        // Either option alone judges `iat`'s type: a string `iat` is refused, not ignored.
        let lifetime_only = issuer_with("    max_token_lifetime_seconds: 3600\n");
        let mut string_iat = base.as_object().unwrap().clone();
        string_iat.insert("iat".into(), json!("now"));
        for one in [&future_only, &lifetime_only] {
            assert_eq!(
                check_claims(one, &string_iat, now),
                Err(TokenError::InvalidClaim)
            );
        }
        // Without either, `iat` is not looked at.
        assert_eq!(check_claims(&issuer_with(""), &string_iat, now), Ok(()));
    }

    /// The token cache is keyed by this digest and records carry its prefix: a known vector
    /// (FIPS 180-2, "abc"), and different tokens never share a key.
    #[test]
    fn sha256_and_its_prefix_are_the_real_digest() {
        let abc = sha256(b"abc");
        assert_eq!(hex_prefix(&abc), "ba7816bf8f01cfea");
        assert_eq!(
            abc.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(sha256(b"token-a"), sha256(b"token-b"));
        assert_eq!(hex_prefix(&[0xab; 32]).len(), 16);
    }

    /// Each `jsonwebtoken` error becomes its own reason code; anything else is malformed.
    #[test]
    fn jsonwebtoken_errors_map_to_their_reasons() {
        use jsonwebtoken::errors::ErrorKind as K;
        let table = [
            (K::InvalidSignature, TokenError::BadSignature),
            (K::ExpiredSignature, TokenError::Expired),
            (K::ImmatureSignature, TokenError::NotYetValid),
            (K::InvalidAudience, TokenError::WrongAudience),
            (K::InvalidIssuer, TokenError::WrongIssuer),
            (
                K::MissingRequiredClaim("exp".into()),
                TokenError::MissingClaim,
            ),
            (
                K::InvalidClaimFormat("exp".into()),
                TokenError::InvalidClaim,
            ),
            (K::InvalidAlgorithm, TokenError::AlgorithmNotAllowed),
            (K::MissingAlgorithm, TokenError::AlgorithmNotAllowed),
            (K::InvalidToken, TokenError::Malformed),
            (K::InvalidKeyFormat, TokenError::Malformed),
        ];
        for (kind, reason) in table {
            assert_eq!(map_error(&kind), reason, "{kind:?}");
        }
    }

    /// jsonwebtoken checks the algorithm and the signature only; every claim is ours to judge.
    #[test]
    fn validation_checks_only_the_algorithm() {
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
            let v = validation(alg);
            assert_eq!(v.algorithms, vec![alg]);
            assert!(v.required_spec_claims.is_empty());
            assert!(!v.validate_exp && !v.validate_nbf && !v.validate_aud);
            assert_eq!(v.leeway, 0);
        }
    }

    #[test]
    fn typ_is_compared_as_a_media_type() {
        let issuer = issuer_with("    require_typ: at+jwt\n");
        for (typ, ok) in [
            (Some(json!("at+jwt")), true),
            (Some(json!("AT+JWT")), true),
            (Some(json!("application/at+jwt")), true),
            (Some(json!("Application/At+JWT")), true),
            (Some(json!("JWT")), false),
            (Some(json!("jwt")), false),
            (Some(json!("at+jwt; q=1")), false),
            (Some(json!("text/at+jwt")), false),
            (Some(json!("application/jwt")), false),
            (Some(json!(7)), false),
            (None, false),
        ] {
            let want = if ok {
                Ok(())
            } else {
                Err(TokenError::WrongType)
            };
            assert_eq!(check_typ(&issuer, typ.as_ref()), want, "{typ:?}");
        }
        // Configured with the prefix and in capitals: the same rule.
        let prefixed = issuer_with("    require_typ: Application/AT+JWT\n");
        assert_eq!(check_typ(&prefixed, Some(&json!("at+jwt"))), Ok(()));
    }

    #[test]
    fn token_option_config_errors_are_positioned() {
        for (extra, want) in [
            (
                "    require_typ: \"at jwt\"\n",
                "6:18 require_typ `at jwt` is not a media type",
            ),
            (
                "    require_typ: /jwt\n",
                "6:18 require_typ `/jwt` is not a media type",
            ),
            (
                "    max_token_lifetime_seconds: 0\n",
                "6:33 max_token_lifetime_seconds must be at least 1",
            ),
        ] {
            let yaml = format!(
                "issuers:\n  - issuer: https://idp.test\n    audiences: [api]\n    jwks_uri: https://idp.test/jwks\n    leeway_seconds: 30\n{extra}"
            );
            match crate::config::Config::parse(&yaml, Path::new("c.yaml")) {
                Err(crate::config::ConfigError::Invalid { problems, .. }) => {
                    let got = format!(
                        "{}:{} {}",
                        problems[0].line, problems[0].column, problems[0].message
                    );
                    assert!(got.starts_with(want), "{got}");
                }
                other => panic!("{extra}: {other:?}"),
            }
        }
    }
}
