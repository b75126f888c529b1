//! Phase one: `cedargate.yaml` as written. These structs mirror the file; unknown fields are
//! errors (`deny_unknown_fields`), so a typo never silently falls back to a default. Positions
//! (`Spanned`) are kept for the problems phase two reports.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) listen: RawListen,
    pub(super) realm: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) issuers: Vec<Spanned<RawIssuer>>,
    pub(super) mtls: Option<Spanned<RawMtls>>,
    pub(super) api_keys: Option<Spanned<super::identity_sources::RawApiKeys>>,
    pub(super) anonymous_type: Option<Spanned<String>>,
    pub(super) anonymous_id: Option<Spanned<String>>,
    pub(super) entity_provider: Option<Spanned<RawEntityProvider>>,
    pub(super) authorizer_api: Option<Spanned<super::authorizer_api::RawAuthorizerApi>>,
    pub(super) resource_type: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) routes: Vec<Spanned<RawRoute>>,
    pub(super) unmatched_route: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) context: RawContext,
    pub(super) policy_dir: Option<String>,
    pub(super) policy_bundle: Option<Spanned<RawPolicyBundle>>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) token_cache: RawCapacity,
    #[serde(default)]
    pub(super) decision_cache: RawCapacity,
    #[serde(default)]
    pub(super) decision_log: RawDecisionLog,
    #[serde(default)]
    pub(super) telemetry: RawTelemetry,
    pub(super) shadow: Option<RawShadow>,
    pub(super) upstream_token: Option<Spanned<RawUpstreamToken>>,
    pub(super) sso: Option<Spanned<super::sso::RawSso>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamToken {
    pub(super) issuer: Spanned<String>,
    pub(super) audience: Spanned<String>,
    #[serde(default)]
    pub(super) service_audiences: BTreeMap<String, Spanned<String>>,
    pub(super) ttl_seconds: Option<Spanned<u64>>,
    pub(super) reuse_seconds: Option<Spanned<u64>>,
    pub(super) header: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) claims: Vec<Spanned<String>>,
    pub(super) strip_headers: Option<Vec<Spanned<String>>>,
    pub(super) key_files: Option<Spanned<Vec<Spanned<String>>>>,
    pub(super) algorithm: Option<Spanned<String>>,
}

/// `policy_bundle`: policies from a signed bundle fetched over HTTP(S).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicyBundle {
    pub(super) url: Spanned<String>,
    pub(super) signature_url: Option<Spanned<String>>,
    pub(super) public_key_files: Spanned<Vec<Spanned<String>>>,
    pub(super) cache_dir: Spanned<String>,
    pub(super) poll_interval_seconds: Option<Spanned<u64>>,
    pub(super) fetch_timeout_ms: Option<Spanned<u64>>,
    pub(super) max_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShadow {
    pub(super) policy_dir: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    pub(super) grpc: Option<Spanned<String>>,
    pub(super) admin: Option<Spanned<String>>,
    pub(super) drain_seconds: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    pub(super) name: Option<String>,
    pub(super) issuer: Spanned<String>,
    #[serde(default)]
    pub(super) audiences: Vec<String>,
    pub(super) algorithms: Option<Vec<Spanned<String>>>,
    pub(super) leeway_seconds: Option<Spanned<u64>>,
    pub(super) require_typ: Option<Spanned<String>>,
    pub(super) max_token_lifetime_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) reject_future_iat: bool,
    pub(super) jwks_uri: Option<Spanned<String>>,
    pub(super) jwks_file: Option<String>,
    pub(super) refresh_seconds: Option<Spanned<u64>>,
    pub(super) min_refresh_seconds: Option<Spanned<u64>>,
    pub(super) max_staleness_seconds: Option<Spanned<u64>>,
    pub(super) kid_refetch_min_interval_seconds: Option<Spanned<u64>>,
    pub(super) kid_refetch_wait_ms: Option<Spanned<u64>>,
    pub(super) fetch_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    #[serde(default)]
    pub(super) principal: RawPrincipal,
    pub(super) service_principal: Option<RawPrincipal>,
    pub(super) introspection: Option<Spanned<super::identity_sources::RawIntrospection>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrincipal {
    #[serde(rename = "type")]
    pub(super) entity_type: Option<Spanned<String>>,
    pub(super) id_claim: Option<String>,
    pub(super) groups_claim: Option<String>,
    pub(super) group_type: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) parents: Vec<Spanned<RawParent>>,
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawParent {
    pub(super) claim: String,
    #[serde(rename = "type")]
    pub(super) entity_type: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEntityProvider {
    pub(super) url: Spanned<String>,
    pub(super) types: Spanned<Vec<Spanned<String>>>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) cache_ttl_seconds: Option<Spanned<u64>>,
    pub(super) cache_capacity: Option<Spanned<u64>>,
    pub(super) max_body_bytes: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMtls {
    #[serde(rename = "type")]
    pub(super) entity_type: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) trust_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    pub(super) name: Option<String>,
    pub(super) service: Option<String>,
    pub(super) host: Option<String>,
    #[serde(default)]
    pub(super) methods: Vec<Spanned<String>>,
    pub(super) path: Spanned<String>,
    pub(super) action: Option<String>,
    pub(super) resource: Option<RawResource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawResource {
    #[serde(rename = "type")]
    pub(super) entity_type: Spanned<String>,
    pub(super) id: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContext {
    #[serde(default)]
    pub(super) headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) query: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) attributes: BTreeMap<String, Spanned<RawContextValue>>,
}

/// One of `fact`, `claim`, `header`, `param`, `value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContextValue {
    pub(super) fact: Option<String>,
    pub(super) claim: Option<String>,
    pub(super) header: Option<String>,
    pub(super) param: Option<String>,
    pub(super) value: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_token_bytes: Option<Spanned<usize>>,
    pub(super) max_header_bytes: Option<Spanned<usize>>,
    pub(super) max_concurrent_checks: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
/// `token_cache` and `decision_cache`: a capacity.
pub(super) struct RawCapacity {
    pub(super) capacity: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDecisionLog {
    pub(super) output: Option<String>,
    pub(super) path: Option<String>,
    pub(super) queue: Option<Spanned<usize>>,
    #[serde(default)]
    pub(super) headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) redact_claims: Vec<Spanned<String>>,
    pub(super) redaction_key_file: Option<Spanned<String>>,
    pub(super) max_header_value_bytes: Option<Spanned<usize>>,
    pub(super) rotate: Option<Spanned<RawRotate>>,
    pub(super) otlp: Option<Spanned<RawOtlp>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRotate {
    pub(super) max_bytes: Option<Spanned<u64>>,
    pub(super) keep: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    #[serde(default)]
    pub(super) log: RawLog,
    pub(super) otlp: Option<Spanned<RawOtlp>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub(super) level: Option<Spanned<String>>,
    pub(super) format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtlp {
    pub(super) endpoint: Spanned<String>,
    pub(super) sampling_ratio: Option<Spanned<f64>>,
    pub(super) service_name: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) resource_attributes: BTreeMap<String, String>,
    pub(super) timeout_ms: Option<Spanned<u64>>,
    pub(super) queue: Option<Spanned<usize>>,
    pub(super) batch_delay_ms: Option<Spanned<u64>>,
}
