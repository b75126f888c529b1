//! Configuration: `cedargate.yaml` parsed in two phases.
//!
//! Phase one deserializes YAML into `Raw*` structs that mirror the file (unknown fields are
//! errors, so typos never silently fall back to a default). Phase two validates every field into
//! a typed [`Config`] that cannot be invalid, collecting *every* problem with its line and column
//! instead of stopping at the first. This module does no network IO and reads only the config
//! file itself (and the redaction key file and upstream-token key files it may name, parsed by
//! `mint`); policies are loaded by `policy`, keys by `jwks`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::mint::{KeyRing, RESERVED_CLAIMS, SigningAlgorithm};
use crate::routes::{PathTemplate, Route, RouteTable};

/// Default Check (gRPC) listen address: Envoy's docs and our `envoy/` configs use 9191.
const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:9191";
/// Default admin HTTP listen address: next to the gRPC port, loopback only so probes and metrics
/// are not exposed to the network unless the operator says so.
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9192";
/// Clock-skew allowance for `exp`/`nbf` when an issuer does not set one: 30 s covers NTP-synced
/// fleets without keeping expired tokens useful for long.
const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Upper bound on configurable leeway: more than five minutes stops being "skew" and starts
/// being "accepting expired tokens".
const MAX_LEEWAY_SECS: u64 = 300;
/// Background JWKS refresh period: IdPs rotate keys on a scale of days and publish new keys ahead
/// of use; five minutes keeps removed keys from lingering while costing the IdP almost nothing.
const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;
/// Shortest refresh period a JWKS `Cache-Control: max-age` can ask for: an IdP answering
/// `max-age=0` must not turn into a fetch loop.
const DEFAULT_MIN_REFRESH_SECS: u64 = 30;
/// How long the last good keys stay in force while the IdP is unreachable. A day rides out any
/// ordinary outage; past it, an issuer whose keys may have been rotated away fails closed.
const DEFAULT_MAX_STALENESS_SECS: u64 = 86_400;
/// Minimum gap between two unknown-`kid` refetches for one issuer, so a flood of forged kids cannot
/// become a flood of requests at the IdP.
const DEFAULT_KID_REFETCH_MIN_INTERVAL_SECS: u64 = 10;
/// Timeout for one discovery or JWKS HTTP request.
const DEFAULT_FETCH_TIMEOUT_MS: u64 = 2_000;
/// Largest bearer token we will even try to parse. Real access tokens are 1–2 KiB; 8 KiB leaves
/// room for fat group claims while bounding the work an attacker can make us do.
const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest total size of the request headers we accept in a CheckRequest (Envoy's own default
/// header limit is 60 KiB); anything larger is denied before parsing.
const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Checks in flight per Envoy connection (Envoy opens one per worker). A Check takes tens of
/// microseconds, so 256 in flight is already milliseconds of queue: past that, shedding
/// (RESOURCE_EXHAUSTED, Envoy fails closed) keeps the latency of what is served bounded.
const DEFAULT_MAX_CONCURRENT_CHECKS: usize = 256;
/// Verified-token cache entries: ~1 KiB each, so 10k entries cost ~10 MiB.
const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;
/// Decision-log queue length between the Check path and the writer task. When full, records are
/// dropped and counted rather than blocking a Check.
const DEFAULT_DECISION_LOG_QUEUE: usize = 16_384;
/// `realm` in `WWW-Authenticate` challenges.
const DEFAULT_REALM: &str = "cedargate";
/// Entity type for callers that present no credential.
const DEFAULT_ANONYMOUS_TYPE: &str = "Anonymous";
/// The anonymous principal's id, `Anonymous::"anonymous"`: says what it is in every record.
const DEFAULT_ANONYMOUS_ID: &str = "anonymous";
/// Entity type of the default resource built from Envoy's `context_extensions.service`.
const DEFAULT_RESOURCE_TYPE: &str = "Service";
/// Entity type of group parents built from a groups claim.
const DEFAULT_GROUP_TYPE: &str = "Group";
/// Entity type of Cedar actions.
const ACTION_TYPE: &str = "Action";
/// Entity type of mTLS peers without a token.
const DEFAULT_MTLS_TYPE: &str = "Workload";
/// Policy folder, relative to the config file.
const DEFAULT_POLICY_DIR: &str = "policies";
/// Algorithms accepted when an issuer lists none: the two every OIDC provider supports.
const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// Principal of human tokens: `User::"<sub>"` (OIDC's stable subject identifier).
const DEFAULT_USER_TYPE: &str = "User";
const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// Principal of client-only tokens: `Service::"<client_id>"` (RFC 9068 §2.2).
const DEFAULT_SERVICE_TYPE: &str = "Service";
const DEFAULT_SERVICE_ID_CLAIM: &str = "client_id";
/// Longest a Check waits for an unknown-`kid` refetch before answering; the fetch itself goes on
/// in the background. Below Envoy's usual ext_authz deadline (our configs use 500 ms).
const DEFAULT_KID_REFETCH_WAIT_MS: u64 = 300;
/// Size at which the decision-log file is rotated: 100 MiB is some 50,000–100,000 records,
/// small enough to open in an editor or ship in one piece, large enough to rotate rarely.
const DEFAULT_ROTATE_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Rotated decision-log files kept: with the default size, up to 600 MiB on disk in all.
const DEFAULT_ROTATE_KEEP: usize = 5;
/// Shortest accepted redaction key: 128 bits, so that redacted values can't be recovered by
/// guessing the key.
const MIN_REDACTION_KEY_BYTES: usize = 16;
/// Operational log level (an `EnvFilter` directive list; `RUST_LOG` wins when set): startup,
/// reloads and key trouble are info/warn/error, so `info` shows everything an operator acts on
/// without the per-refresh `jwks.loaded` debug lines.
const DEFAULT_LOG_LEVEL: &str = "info";
/// `service.name` of exported spans: what trace backends group cedargate's spans under.
const DEFAULT_OTLP_SERVICE_NAME: &str = "cedargate";
/// Share of traces sampled when no sampling decision arrives with the request. Parent-based: when
/// Envoy sends a `traceparent`, its decision wins, so this only applies to untraced callers; an
/// operator who switched OTLP on expects to see those too.
const DEFAULT_OTLP_SAMPLING_RATIO: f64 = 1.0;
/// Longest one export (connect included) may take before its batch counts as failed: bounds how
/// long a slow or unreachable collector holds the export thread, never a Check.
const DEFAULT_OTLP_TIMEOUT_MS: u64 = 2_000;
/// Finished spans waiting for export; past this, new spans are dropped and counted. The
/// OpenTelemetry SDK's default (`OTEL_BSP_MAX_QUEUE_SIZE`): about 2 MiB at ~1 KiB per span.
const DEFAULT_OTLP_QUEUE: usize = 2_048;
/// How long spans wait to be batched before export (a full batch of 512 leaves at once). The
/// OpenTelemetry SDK's default (`OTEL_BSP_SCHEDULE_DELAY`).
const DEFAULT_OTLP_BATCH_DELAY_MS: u64 = 5_000;
/// Decision records waiting for export to the collector; past this, new ones are dropped and
/// counted. Records are ~1.5 KiB, so this bounds the queue near 12 MiB: at 5k decisions/s it
/// rides out a collector hiccup of over a second without losing one.
const DEFAULT_DECISION_LOG_OTLP_QUEUE: usize = 8_192;
/// How long decision records wait to be batched before export: shorter than for spans, because
/// someone investigating an incident looks for the decision that just happened.
const DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS: u64 = 1_000;

/// Lifetime of a minted upstream token. It only has to cross one hop (Envoy → upstream, plus
/// that service's own calls made while serving the request), and a token that leaks from an
/// upstream's logs is worthless a minute later.
const DEFAULT_UPSTREAM_TOKEN_TTL_SECS: u64 = 60;
/// Longest configurable upstream-token lifetime: past an hour it is no longer short-lived, and
/// the caller's own token should be forwarded instead.
const MAX_UPSTREAM_TOKEN_TTL_SECS: u64 = 3_600;
/// How long a minted token is handed out again for the same principal, copied claims and
/// audience: half the default lifetime, so an upstream always gets a token with at least 30 s
/// left, while a busy caller costs one signature per 30 s instead of one per request.
const DEFAULT_UPSTREAM_TOKEN_REUSE_SECS: u64 = 30;
/// Where the upstream token goes: `authorization: Bearer …` is what every JWT middleware reads
/// without configuration, and overwriting it also removes the caller's credential.
const DEFAULT_UPSTREAM_TOKEN_HEADER: &str = "authorization";
/// Request headers removed on allow when the token goes elsewhere: the caller's credential, so
/// services never hold long-lived tokens.
const DEFAULT_UPSTREAM_TOKEN_STRIP: [&str; 1] = ["authorization"];
/// Algorithm of a key generated at start: ES256, the asymmetric JOSE algorithm every JWT library
/// verifies, with small keys and signatures.
const DEFAULT_UPSTREAM_TOKEN_ALGORITHM: SigningAlgorithm = SigningAlgorithm::Es256;

/// The validated configuration. Every value here has been checked; code that holds a `Config`
/// never re-validates.
#[derive(Debug, Clone)]
pub struct Config {
    /// File the config was read from; relative paths inside it are resolved against its folder.
    pub source: PathBuf,
    /// Where the Check gRPC service (and gRPC health) listens.
    pub grpc_listen: SocketAddr,
    /// Where the admin HTTP endpoints listen.
    pub admin_listen: SocketAddr,
    /// Realm announced in `WWW-Authenticate` challenges.
    pub realm: Arc<str>,
    /// Token issuers, in file order.
    pub issuers: Vec<Arc<IssuerConfig>>,
    /// Principal for mTLS callers without a bearer token, if enabled.
    pub mtls: Option<MtlsConfig>,
    /// Entity type for callers with no credential.
    pub anonymous_type: Arc<str>,
    /// Entity id of the anonymous principal.
    pub anonymous_id: Arc<str>,
    /// The HTTP entity source asked at decision time; `None` (the default): off.
    pub entity_provider: Option<EntityProviderConfig>,
    /// Route table mapping requests to actions and resources.
    pub routes: Arc<RouteTable>,
    /// What to do with a request no route matches.
    pub unmatched: Unmatched,
    /// Entity type for the default resource.
    pub resource_type: Arc<str>,
    /// Request facts copied into the Cedar context.
    pub context: ContextConfig,
    /// Folder with `*.cedar`, `*.cedarschema` and `entities.json`.
    pub policy_dir: PathBuf,
    /// Bounds on input sizes.
    pub limits: Limits,
    /// Verified-token cache settings.
    pub token_cache: TokenCacheConfig,
    /// Decision-log output.
    pub decision_log: DecisionLogConfig,
    /// Operational logs and OTLP traces.
    pub telemetry: TelemetryConfig,
    /// A candidate policy set evaluated beside the enforced one (shadow mode); `None`: off.
    pub shadow: Option<ShadowConfig>,
    /// Tokens minted for the upstream on allow (`upstream_token`); `None` (the default): off.
    pub upstream_token: Option<UpstreamTokenConfig>,
}

/// `upstream_token`: the short-lived JWT cedargate mints for the upstream on every allow.
#[derive(Debug, Clone)]
pub struct UpstreamTokenConfig {
    /// `iss` of minted tokens.
    pub issuer: Arc<str>,
    /// `aud` of minted tokens, unless the service has its own in `service_audiences`.
    pub audience: Arc<str>,
    /// `aud` by Envoy's `context_extensions.service`, so each service gets tokens only it accepts.
    pub service_audiences: BTreeMap<String, Arc<str>>,
    /// Lifetime (`exp - iat`).
    pub ttl: Duration,
    /// How long one token is handed out again for the same principal, claims and audience; zero:
    /// a fresh token (and `jti`) for every allow. Always shorter than `ttl`.
    pub reuse: Duration,
    /// Lower-case request header that carries the token (`authorization` gets `Bearer <jwt>`).
    pub header: Arc<str>,
    /// Verified claims copied from the caller's token into minted ones.
    pub claims: Vec<String>,
    /// Lower-case request headers removed on allow (the token's own header is overwritten
    /// instead, so it is never listed here).
    pub strip_headers: Arc<[String]>,
    /// The key files, in order (empty when the key was generated).
    pub key_files: Vec<PathBuf>,
    /// The signing and published keys.
    pub keys: Arc<KeyRing>,
}

impl UpstreamTokenConfig {
    /// The `aud` for a request to `service` (Envoy's `context_extensions.service`).
    pub fn audience_for(&self, service: Option<&str>) -> Arc<str> {
        service
            .and_then(|s| self.service_audiences.get(s))
            .unwrap_or(&self.audience)
            .clone()
    }

    /// The header value carrying `token`.
    pub fn header_value(&self, token: &str) -> String {
        if &*self.header == "authorization" {
            format!("Bearer {token}")
        } else {
            token.to_string()
        }
    }

    /// A config for unit tests elsewhere in the crate.
    #[cfg(test)]
    pub(crate) fn for_tests(keys: Arc<KeyRing>, reuse_seconds: u64) -> UpstreamTokenConfig {
        UpstreamTokenConfig {
            issuer: "https://cedargate.internal".into(),
            audience: "internal".into(),
            service_audiences: [("orders".to_string(), Arc::from("orders"))].into(),
            ttl: Duration::from_secs(DEFAULT_UPSTREAM_TOKEN_TTL_SECS),
            reuse: Duration::from_secs(reuse_seconds),
            header: DEFAULT_UPSTREAM_TOKEN_HEADER.into(),
            claims: vec!["groups".into(), "tenant".into()],
            strip_headers: Arc::new([]),
            key_files: Vec::new(),
            keys,
        }
    }
}

/// Shadow mode: where the candidate policy set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowConfig {
    /// Folder with the candidate `*.cedar`, `*.cedarschema` and `entities.json`.
    pub policy_dir: PathBuf,
}

/// One trusted token issuer.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerConfig {
    /// Short name used in logs, metrics and policy tests.
    pub name: Arc<str>,
    /// Exact `iss` value; also the base of OIDC discovery.
    pub issuer: Arc<str>,
    /// Accepted `aud` values; a token must carry at least one.
    pub audiences: Vec<String>,
    /// Accepted signing algorithms (asymmetric only).
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew allowance for `exp`/`nbf`.
    pub leeway: Duration,
    /// Where the keys come from.
    pub keys: KeySource,
    /// Background refresh period for remote keys when the JWKS response sets no
    /// `Cache-Control: max-age`; also the longest period a `max-age` can ask for.
    pub refresh: Duration,
    /// Shortest refresh period a `max-age` can ask for (also caps the outage retry backoff).
    pub min_refresh: Duration,
    /// Keys older than this (no successful fetch since) stop verifying: the issuer fails closed.
    pub max_staleness: Duration,
    /// Minimum gap between unknown-`kid` refetches.
    pub kid_refetch_min_interval: Duration,
    /// Timeout of one HTTP fetch.
    pub fetch_timeout: Duration,
    /// Longest a Check waits for an unknown-`kid` refetch.
    pub kid_refetch_wait: Duration,
    /// Whether plain-http issuer/JWKS URLs are accepted beyond loopback (explicit opt-in).
    pub allow_insecure_http: bool,
    /// How human (end-user) tokens become principals.
    pub user: PrincipalMapping,
    /// How client-only tokens (client_credentials: `sub` absent or equal to `client_id`, per
    /// RFC 9068 §2.2) become principals; `None` maps them like users.
    pub service: Option<PrincipalMapping>,
}

/// Where an issuer's verification keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// OIDC discovery at `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery,
    /// A JWKS URL given directly (no discovery).
    JwksUri(String),
    /// A local JWKS file, read at start and on reload.
    File(PathBuf),
}

/// Claims → Cedar principal entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalMapping {
    /// Cedar entity type, e.g. `User` or `Service`.
    pub entity_type: Arc<str>,
    /// Claim whose string value is the entity id.
    pub id_claim: Arc<str>,
    /// Claims whose values become parent entities, each with its own entity type (`groups` →
    /// `UserGroup`, `teams` → `Team`). `groups_claim` + `group_type` in the file is shorthand for
    /// one entry.
    pub parents: Vec<ParentMapping>,
    /// Cedar attribute name → claim name, copied onto the principal (ABAC). These overlay the
    /// attributes the entity sources hold for the same uid: the verified token is the freshest
    /// statement about its subject.
    pub attributes: BTreeMap<String, String>,
}

/// One claim → parent mapping: every name in `claim` (an array of strings or a space-separated
/// string) becomes a parent `entity_type::"name"` of the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentMapping {
    /// The claim holding the names.
    pub claim: Arc<str>,
    /// Entity type of the parents.
    pub entity_type: Arc<str>,
}

/// mTLS caller identity (Envoy's `source.principal`, e.g. a SPIFFE ID).
#[derive(Debug, Clone)]
pub struct MtlsConfig {
    /// Entity type of mTLS principals.
    pub entity_type: Arc<str>,
    /// Accepted SPIFFE trust domains; empty means any peer principal Envoy verified.
    pub trust_domains: BTreeSet<String>,
}

/// Handling of requests that no route matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// Deny with reason `no_route` (the default: an unlisted endpoint is closed).
    Deny,
    /// Action `"<METHOD> <path>"` on the service resource, left to the policies.
    Default,
}

/// Request facts copied into the Cedar context beyond the fixed ones.
#[derive(Debug, Clone, Default)]
pub struct ContextConfig {
    /// Lower-case header names copied into `context.request.headers`.
    pub headers: Vec<String>,
    /// Query parameter names copied into `context.request.query`. An allow-list, because query
    /// strings carry secrets too (`?access_token=`, API keys) and the context is logged.
    pub query: Vec<String>,
    /// Attributes named by the user at the top level of the context (`is_authenticated`,
    /// `tenant`, …), in file order, so policies written for another host's context shape run
    /// unchanged.
    pub attributes: Vec<(String, ContextValue)>,
}

/// Where a user-named context attribute's value comes from. An attribute whose source has no
/// value for a request (no token, no such claim, header or parameter) is absent from the context,
/// never an empty string: declare it optional (`name?: …`) in the schema.
#[derive(Debug, Clone, PartialEq)]
pub enum ContextValue {
    /// A fact cedargate knows about every request.
    Fact(ContextFact),
    /// A verified token claim, in its Cedar form.
    Claim(String),
    /// A request header (lower-case name), as a string.
    Header(String),
    /// A path parameter of the matched route.
    Param(String),
    /// A constant, in Cedar's JSON form.
    Value(serde_json::Value),
}

/// The request facts a context attribute can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextFact {
    /// The caller presented a verified credential (Bool).
    Authenticated,
    /// HTTP method (String).
    Method,
    /// Path without the query (String).
    Path,
    /// Host without the port (String).
    Host,
    /// The principal's entity type name (String), e.g. `User`.
    PrincipalType,
}

impl ContextFact {
    /// Every fact with its name in the file.
    pub const ALL: [(&'static str, ContextFact); 5] = [
        ("authenticated", ContextFact::Authenticated),
        ("method", ContextFact::Method),
        ("path", ContextFact::Path),
        ("host", ContextFact::Host),
        ("principal_type", ContextFact::PrincipalType),
    ];
}

/// Context keys cedargate always writes itself; a user-named attribute may not take one.
pub const BUILTIN_CONTEXT_KEYS: [&str; 6] = [
    "request",
    "source",
    "authenticated",
    "token",
    "grpc",
    "time",
];

/// `entity_provider`: an HTTP service cedargate asks, at decision time, for the entities of a
/// request's principal and resource (`GET {url}?type=T&id=I` → a JSON array of Cedar entities).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityProviderConfig {
    /// The endpoint, without query; https unless loopback.
    pub url: String,
    /// Entity types asked about: the principal's and the resource's uid, when their type is one
    /// of these.
    pub types: BTreeSet<String>,
    /// Budget for all fetches of one Check; past it the Check is denied `entities_unavailable`.
    pub timeout: std::time::Duration,
    /// How long an answer for one uid is reused.
    pub cache_ttl: std::time::Duration,
    /// Answers kept (one per uid).
    pub cache_capacity: u64,
    /// Largest answer body accepted.
    pub max_body_bytes: usize,
}

/// Input size bounds.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest bearer token parsed.
    pub max_token_bytes: usize,
    /// Largest total header size accepted.
    pub max_header_bytes: usize,
    /// Checks in flight per Envoy connection; beyond it cedargate sheds load with
    /// RESOURCE_EXHAUSTED (Envoy then fails closed) instead of queueing without bound.
    pub max_concurrent_checks: usize,
}

/// Verified-token cache settings.
#[derive(Debug, Clone, Copy)]
pub struct TokenCacheConfig {
    /// Maximum entries; 0 disables the cache.
    pub capacity: u64,
}

/// Decision-log settings.
#[derive(Debug, Clone)]
pub struct DecisionLogConfig {
    /// Where records go.
    pub output: LogOutput,
    /// Queue length between Checks and the writer.
    pub queue: usize,
    /// Request headers copied into the record's `headers` (lower-case). An allow-list, and never
    /// a credential header (refused at load).
    pub headers: Vec<String>,
    /// Claims whose values are replaced by a hash wherever they appear in a record.
    pub redact_claims: Vec<String>,
    /// Key of the redaction hash (HMAC-SHA-256); without one, plain SHA-256.
    pub redaction_key: Option<RedactionKey>,
    /// The file the key was read from (watched, so replacing the key reloads it).
    pub redaction_key_file: Option<PathBuf>,
    /// Size-based rotation of a `file` output; `None` lets the file grow.
    pub rotate: Option<Rotation>,
    /// Records also sent to an OpenTelemetry collector as OTLP log records; `None` (the
    /// default) sends nothing. `sampling_ratio` is always 1: every decision is exported.
    pub otlp: Option<OtlpConfig>,
}

/// When and how the decision-log file is rotated: `path` → `path.1` → … → `path.<keep>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate before a write would take the file past this size.
    pub max_bytes: u64,
    /// Rotated files kept; the oldest beyond this is overwritten.
    pub keep: usize,
}

/// The redaction key's bytes, never printed (not even by `Debug`).
#[derive(Clone)]
pub struct RedactionKey(Arc<[u8]>);

impl RedactionKey {
    /// The key.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for RedactionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactionKey(..)")
    }
}

/// Operational logs (stderr) and trace export.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Level and format of operational logs.
    pub log: LogConfig,
    /// OTLP/gRPC trace export; `None` (the default) exports nothing and creates no spans.
    pub otlp: Option<OtlpConfig>,
}

/// Operational log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `EnvFilter` directives, e.g. `info` or `info,cedargate::jwks=debug` (checked at load).
    pub level: String,
    /// Human-readable text or one JSON object per line.
    pub format: LogFormat,
}

/// Operational log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Where and how spans (`telemetry.otlp`) or decision records (`decision_log.otlp`) are exported
/// (OTLP over gRPC).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// Collector URL, `http://host:4317` or `https://…` (system CA roots).
    pub endpoint: String,
    /// Share of root traces sampled, in [0, 1]; a sampled/unsampled parent decides for its children.
    pub sampling_ratio: f64,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// Extra resource attributes (`deployment.environment`, `k8s.cluster.name`, …).
    pub resource_attributes: BTreeMap<String, String>,
    /// Bound on one export, connection included.
    pub timeout: Duration,
    /// Finished spans queued for export at most; more are dropped and counted.
    pub queue: usize,
    /// Batching delay before export.
    pub batch_delay: Duration,
}

/// Decision-log destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// One JSON line per decision on stdout.
    Stdout,
    /// One JSON line per decision on stderr.
    Stderr,
    /// Appended to a file.
    File(PathBuf),
    /// Not written.
    Off,
}

// ---------------------------------------------------------------------------------------------
// Phase one: the file as written.

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    listen: RawListen,
    realm: Option<Spanned<String>>,
    #[serde(default)]
    issuers: Vec<Spanned<RawIssuer>>,
    mtls: Option<Spanned<RawMtls>>,
    anonymous_type: Option<Spanned<String>>,
    anonymous_id: Option<Spanned<String>>,
    entity_provider: Option<Spanned<RawEntityProvider>>,
    resource_type: Option<Spanned<String>>,
    #[serde(default)]
    routes: Vec<Spanned<RawRoute>>,
    unmatched_route: Option<Spanned<String>>,
    #[serde(default)]
    context: RawContext,
    policy_dir: Option<String>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    token_cache: RawTokenCache,
    #[serde(default)]
    decision_log: RawDecisionLog,
    #[serde(default)]
    telemetry: RawTelemetry,
    shadow: Option<RawShadow>,
    upstream_token: Option<Spanned<RawUpstreamToken>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamToken {
    issuer: Spanned<String>,
    audience: Spanned<String>,
    #[serde(default)]
    service_audiences: BTreeMap<String, Spanned<String>>,
    ttl_seconds: Option<Spanned<u64>>,
    reuse_seconds: Option<Spanned<u64>>,
    header: Option<Spanned<String>>,
    #[serde(default)]
    claims: Vec<Spanned<String>>,
    strip_headers: Option<Vec<Spanned<String>>>,
    key_files: Option<Spanned<Vec<Spanned<String>>>>,
    algorithm: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShadow {
    policy_dir: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListen {
    grpc: Option<Spanned<String>>,
    admin: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIssuer {
    name: Option<String>,
    issuer: Spanned<String>,
    #[serde(default)]
    audiences: Vec<String>,
    algorithms: Option<Vec<Spanned<String>>>,
    leeway_seconds: Option<Spanned<u64>>,
    jwks_uri: Option<Spanned<String>>,
    jwks_file: Option<String>,
    refresh_seconds: Option<Spanned<u64>>,
    min_refresh_seconds: Option<Spanned<u64>>,
    max_staleness_seconds: Option<Spanned<u64>>,
    kid_refetch_min_interval_seconds: Option<Spanned<u64>>,
    kid_refetch_wait_ms: Option<Spanned<u64>>,
    fetch_timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    principal: RawPrincipal,
    service_principal: Option<RawPrincipal>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    #[serde(rename = "type")]
    entity_type: Option<Spanned<String>>,
    id_claim: Option<String>,
    groups_claim: Option<String>,
    group_type: Option<Spanned<String>>,
    #[serde(default)]
    parents: Vec<Spanned<RawParent>>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParent {
    claim: String,
    #[serde(rename = "type")]
    entity_type: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntityProvider {
    url: Spanned<String>,
    types: Spanned<Vec<Spanned<String>>>,
    timeout_ms: Option<Spanned<u64>>,
    cache_ttl_seconds: Option<Spanned<u64>>,
    cache_capacity: Option<Spanned<u64>>,
    max_body_bytes: Option<Spanned<usize>>,
    #[serde(default)]
    allow_insecure_http: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    #[serde(rename = "type")]
    entity_type: Option<Spanned<String>>,
    #[serde(default)]
    trust_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    service: Option<String>,
    host: Option<String>,
    #[serde(default)]
    methods: Vec<Spanned<String>>,
    path: Spanned<String>,
    action: Option<String>,
    resource: Option<RawResource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResource {
    #[serde(rename = "type")]
    entity_type: Spanned<String>,
    id: Spanned<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawContext {
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    #[serde(default)]
    query: Vec<Spanned<String>>,
    #[serde(default)]
    attributes: BTreeMap<String, Spanned<RawContextValue>>,
}

/// One of `fact`, `claim`, `header`, `param`, `value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContextValue {
    fact: Option<String>,
    claim: Option<String>,
    header: Option<String>,
    param: Option<String>,
    value: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_token_bytes: Option<usize>,
    max_header_bytes: Option<usize>,
    max_concurrent_checks: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokenCache {
    capacity: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDecisionLog {
    output: Option<String>,
    path: Option<String>,
    queue: Option<Spanned<usize>>,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    #[serde(default)]
    redact_claims: Vec<Spanned<String>>,
    redaction_key_file: Option<Spanned<String>>,
    rotate: Option<Spanned<RawRotate>>,
    otlp: Option<Spanned<RawOtlp>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRotate {
    max_bytes: Option<Spanned<u64>>,
    keep: Option<Spanned<usize>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    #[serde(default)]
    log: RawLog,
    otlp: Option<Spanned<RawOtlp>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: Spanned<String>,
    sampling_ratio: Option<Spanned<f64>>,
    service_name: Option<Spanned<String>>,
    #[serde(default)]
    resource_attributes: BTreeMap<String, String>,
    timeout_ms: Option<Spanned<u64>>,
    queue: Option<Spanned<usize>>,
    batch_delay_ms: Option<Spanned<u64>>,
}

// ---------------------------------------------------------------------------------------------
// Errors.

/// One problem in the config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, 0 when unknown.
    pub line: u64,
    /// 1-based column, 0 when unknown.
    pub column: u64,
    /// What is wrong and what would be right.
    pub message: String,
}

/// Why a config could not be loaded: either it could not be read, or it holds problems (all of
/// them, not just the first).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid config.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if p.line > 0 {
            out.push_str(&format!(
                "{}:{}:{}: {}",
                path.display(),
                p.line,
                p.column,
                p.message
            ));
        } else {
            out.push_str(&format!("{}: {}", path.display(), p.message));
        }
    }
    out
}

/// Collects problems during validation.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn at<T>(&mut self, spanned: &Spanned<T>, message: impl Into<String>) {
        self.0.push(Problem {
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            message: message.into(),
        });
    }

    fn nowhere(&mut self, message: impl Into<String>) {
        self.0.push(Problem {
            line: 0,
            column: 0,
            message: message.into(),
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Phase two: validation.

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates config text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: vec![Problem {
                    line,
                    column,
                    message: first_line(&e.to_string()),
                }],
            }
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut problems = Problems::default();
        let config = validate(raw, path, &base, &mut problems);
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: problems.0,
            })
        }
    }

    /// Keeps the upstream-token key that `previous` generated at start when this config would
    /// generate one too: a reload must not change the key the upstreams trust. Called by the
    /// reloader on every new config.
    pub fn keep_generated_keys(&mut self, previous: &Config) {
        if let (Some(new), Some(old)) = (&mut self.upstream_token, &previous.upstream_token)
            && new.keys.generated()
            && old.keys.generated()
            && new.keys.algorithm() == old.keys.algorithm()
        {
            new.keys = old.keys.clone();
        }
    }

    /// Finds the issuer configured for an `iss` value.
    pub fn issuer(&self, iss: &str) -> Option<&Arc<IssuerConfig>> {
        self.issuers.iter().find(|i| &*i.issuer == iss)
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).to_string()
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn validate(raw: RawConfig, path: &Path, base: &Path, problems: &mut Problems) -> Config {
    let grpc_listen = listen_addr(raw.listen.grpc.as_ref(), DEFAULT_GRPC_LISTEN, problems);
    let admin_listen = listen_addr(raw.listen.admin.as_ref(), DEFAULT_ADMIN_LISTEN, problems);
    if grpc_listen == admin_listen && grpc_listen.port() != 0 {
        problems.nowhere("listen.grpc and listen.admin must differ");
    }

    let mut names = BTreeSet::new();
    let mut issuer_urls = BTreeSet::new();
    let mut issuers = Vec::new();
    for (i, spanned) in raw.issuers.iter().enumerate() {
        let issuer = validate_issuer(i, spanned, base, problems);
        if !names.insert(issuer.name.clone()) {
            problems.at(
                spanned,
                format!("issuer name `{}` is used twice", issuer.name),
            );
        }
        if !issuer_urls.insert(issuer.issuer.clone()) {
            problems.at(
                &spanned.value.issuer,
                format!("issuer `{}` is configured twice", issuer.issuer),
            );
        }
        issuers.push(Arc::new(issuer));
    }

    let mtls = raw.mtls.as_ref().map(|m| MtlsConfig {
        entity_type: entity_type(m.value.entity_type.as_ref(), DEFAULT_MTLS_TYPE, problems),
        trust_domains: m.value.trust_domains.iter().cloned().collect(),
    });

    let anonymous_type = entity_type(
        raw.anonymous_type.as_ref(),
        DEFAULT_ANONYMOUS_TYPE,
        problems,
    );
    let anonymous_id: Arc<str> = match &raw.anonymous_id {
        Some(id) if id.value.is_empty() => {
            problems.at(id, "anonymous_id must not be empty");
            DEFAULT_ANONYMOUS_ID.into()
        }
        Some(id) => id.value.as_str().into(),
        None => DEFAULT_ANONYMOUS_ID.into(),
    };
    let entity_provider = raw
        .entity_provider
        .as_ref()
        .and_then(|p| entity_provider(p, problems));
    let resource_type = entity_type(raw.resource_type.as_ref(), DEFAULT_RESOURCE_TYPE, problems);

    let mut routes = Vec::new();
    for spanned in &raw.routes {
        if let Some(route) = validate_route(spanned, problems) {
            routes.push(route);
        }
    }

    let unmatched = match raw.unmatched_route.as_ref() {
        None => Unmatched::Deny,
        Some(s) => match s.value.as_str() {
            "deny" => Unmatched::Deny,
            "default" => Unmatched::Default,
            other => {
                problems.at(
                    s,
                    format!("unmatched_route must be `deny` or `default`, not `{other}`"),
                );
                Unmatched::Deny
            }
        },
    };

    let mut headers = Vec::new();
    for h in &raw.context.headers {
        let name = h.value.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "authorization" | "cookie" | "proxy-authorization"
        ) {
            problems.at(
                h,
                format!("context.headers must not include `{name}`: it carries credentials"),
            );
        } else if name.is_empty() || name.contains(|c: char| c.is_whitespace()) {
            problems.at(h, format!("`{}` is not a header name", h.value));
        } else {
            headers.push(name);
        }
    }

    let mut query = Vec::new();
    for q in &raw.context.query {
        if matches!(
            q.value.as_str(),
            "access_token" | "id_token" | "code" | "client_secret"
        ) {
            problems.at(
                q,
                format!(
                    "context.query must not include `{}`: it carries credentials",
                    q.value
                ),
            );
        } else if q.value.starts_with("__") {
            problems.at(
                q,
                format!(
                    "`{}`: names starting with `__` are reserved by Cedar",
                    q.value
                ),
            );
        } else {
            query.push(q.value.clone());
        }
    }

    let policy_dir = resolve(
        base,
        raw.policy_dir.as_deref().unwrap_or(DEFAULT_POLICY_DIR),
    );

    let limits = Limits {
        max_token_bytes: raw
            .limits
            .max_token_bytes
            .unwrap_or(DEFAULT_MAX_TOKEN_BYTES),
        max_header_bytes: raw
            .limits
            .max_header_bytes
            .unwrap_or(DEFAULT_MAX_HEADER_BYTES),
        max_concurrent_checks: positive(
            raw.limits.max_concurrent_checks.as_ref(),
            DEFAULT_MAX_CONCURRENT_CHECKS,
            "limits.max_concurrent_checks",
            problems,
        ),
    };
    if limits.max_token_bytes == 0 || limits.max_header_bytes == 0 {
        problems.nowhere("limits must be greater than zero");
    }

    let output = match (
        raw.decision_log.output.as_deref(),
        raw.decision_log.path.as_deref(),
    ) {
        (None | Some("stdout"), None) => LogOutput::Stdout,
        (Some("stderr"), None) => LogOutput::Stderr,
        (Some("off"), None) => LogOutput::Off,
        (None | Some("file"), Some(p)) => LogOutput::File(resolve(base, p)),
        (Some("file"), None) => {
            problems.nowhere("decision_log.output `file` needs decision_log.path");
            LogOutput::Stdout
        }
        (Some(out @ ("stdout" | "stderr" | "off")), Some(_)) => {
            problems.nowhere(format!(
                "decision_log.path is only for output `file`, not `{out}`"
            ));
            LogOutput::Stdout
        }
        (Some(other), _) => {
            problems.nowhere(format!(
                "decision_log.output must be stdout, stderr, file or off, not `{other}`"
            ));
            LogOutput::Stdout
        }
    };

    let rotate = raw
        .decision_log
        .rotate
        .as_ref()
        .and_then(|r| rotation(r, &output, problems));
    Config {
        source: path.to_path_buf(),
        grpc_listen,
        admin_listen,
        realm: realm(raw.realm.as_ref(), problems),
        issuers,
        mtls,
        anonymous_type,
        anonymous_id,
        entity_provider,
        routes: Arc::new(RouteTable::new(routes)),
        unmatched,
        resource_type,
        context: ContextConfig {
            headers,
            query,
            attributes: context_attributes(&raw.context.attributes, problems),
        },
        policy_dir,
        limits,
        token_cache: TokenCacheConfig {
            capacity: raw
                .token_cache
                .capacity
                .unwrap_or(DEFAULT_TOKEN_CACHE_CAPACITY),
        },
        decision_log: DecisionLogConfig {
            output,
            queue: positive(
                raw.decision_log.queue.as_ref(),
                DEFAULT_DECISION_LOG_QUEUE,
                "decision_log.queue",
                problems,
            ),
            headers: record_headers(&raw.decision_log.headers, problems),
            redact_claims: redact_claims(&raw.decision_log.redact_claims, problems),
            redaction_key: raw
                .decision_log
                .redaction_key_file
                .as_ref()
                .and_then(|file| redaction_key(file, base, problems)),
            redaction_key_file: raw
                .decision_log
                .redaction_key_file
                .as_ref()
                .map(|file| resolve(base, &file.value)),
            rotate,
            otlp: raw
                .decision_log
                .otlp
                .as_ref()
                .map(|o| otlp(o, OtlpSection::DecisionLog, problems)),
        },
        telemetry: telemetry(&raw.telemetry, problems),
        shadow: raw.shadow.as_ref().map(|s| ShadowConfig {
            policy_dir: resolve(base, &s.policy_dir),
        }),
        upstream_token: raw
            .upstream_token
            .as_ref()
            .and_then(|u| upstream_token(u, base, problems)),
    }
}

/// A header name cedargate may set or remove: lower-case token characters, not a pseudo-header
/// and not `host` (Envoy routes on it and refuses to change either).
fn mutable_header(raw: &Spanned<String>, field: &str, problems: &mut Problems) -> Option<String> {
    let name = raw.value.to_ascii_lowercase();
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        problems.at(
            raw,
            format!("{field}: `{}` is not a header name", raw.value),
        );
        None
    } else if name == "host" {
        problems.at(raw, format!("{field}: `host` cannot be changed"));
        None
    } else {
        Some(name)
    }
}

/// `upstream_token`: every field checked, key files read (or a key generated).
fn upstream_token(
    spanned: &Spanned<RawUpstreamToken>,
    base: &Path,
    problems: &mut Problems,
) -> Option<UpstreamTokenConfig> {
    let raw = &spanned.value;
    let text = |s: &Spanned<String>, field: &str, problems: &mut Problems| -> Arc<str> {
        if s.value.trim().is_empty() || s.value.contains(char::is_whitespace) {
            problems.at(
                s,
                format!("upstream_token.{field} must be a non-empty string without spaces"),
            );
        }
        s.value.as_str().into()
    };
    let issuer = text(&raw.issuer, "issuer", problems);
    let audience = text(&raw.audience, "audience", problems);
    let service_audiences = raw
        .service_audiences
        .iter()
        .map(|(service, aud)| (service.clone(), text(aud, "service_audiences", problems)))
        .collect();
    let ttl = match &raw.ttl_seconds {
        Some(t) if t.value > MAX_UPSTREAM_TOKEN_TTL_SECS => {
            problems.at(
                t,
                format!(
                    "upstream_token.ttl_seconds {} exceeds the maximum {MAX_UPSTREAM_TOKEN_TTL_SECS}: upstream tokens are short-lived",
                    t.value
                ),
            );
            DEFAULT_UPSTREAM_TOKEN_TTL_SECS
        }
        other => positive(
            other.as_ref(),
            DEFAULT_UPSTREAM_TOKEN_TTL_SECS,
            "upstream_token.ttl_seconds",
            problems,
        ),
    };
    let reuse = match &raw.reuse_seconds {
        None => DEFAULT_UPSTREAM_TOKEN_REUSE_SECS.min(ttl / 2),
        Some(r) if r.value >= ttl => {
            problems.at(
                r,
                format!(
                    "upstream_token.reuse_seconds {} must be less than ttl_seconds {ttl}, or upstreams get tokens about to expire",
                    r.value
                ),
            );
            0
        }
        Some(r) => r.value,
    };
    let header = match &raw.header {
        None => DEFAULT_UPSTREAM_TOKEN_HEADER.to_string(),
        Some(h) => mutable_header(h, "upstream_token.header", problems)
            .unwrap_or_else(|| DEFAULT_UPSTREAM_TOKEN_HEADER.to_string()),
    };
    let mut claims = Vec::new();
    for c in &raw.claims {
        if c.value.trim().is_empty() {
            problems.at(c, "upstream_token.claims has an empty claim name");
        } else if RESERVED_CLAIMS.contains(&c.value.as_str()) {
            problems.at(
                c,
                format!(
                    "upstream_token.claims: `{}` is set by cedargate and cannot be copied from the caller's token",
                    c.value
                ),
            );
        } else if !claims.contains(&c.value) {
            claims.push(c.value.clone());
        }
    }
    let mut strip_headers = Vec::new();
    let strip: Vec<Option<String>> = match &raw.strip_headers {
        None => DEFAULT_UPSTREAM_TOKEN_STRIP
            .iter()
            .map(|h| Some(h.to_string()))
            .collect(),
        Some(list) => list
            .iter()
            .map(|h| mutable_header(h, "upstream_token.strip_headers", problems))
            .collect(),
    };
    for name in strip.into_iter().flatten() {
        // The token's own header is overwritten; removing it too would race the overwrite.
        if name != header && !strip_headers.contains(&name) {
            strip_headers.push(name);
        }
    }
    let algorithm = raw.algorithm.as_ref().map(|a| {
        SigningAlgorithm::parse(&a.value).unwrap_or_else(|| {
            problems.at(
                a,
                format!(
                    "upstream_token.algorithm must be `ES256` or `EdDSA`, not `{}`",
                    a.value
                ),
            );
            DEFAULT_UPSTREAM_TOKEN_ALGORITHM
        })
    });
    let (key_files, keys) = match &raw.key_files {
        Some(files) if files.value.is_empty() => {
            problems.at(
                files,
                "upstream_token.key_files is empty: list PEM files, or leave it out to generate a key at start",
            );
            return None;
        }
        Some(files) => {
            let paths: Vec<PathBuf> = files
                .value
                .iter()
                .map(|f| resolve(base, &f.value))
                .collect();
            match KeyRing::from_files(&paths) {
                Ok(keys) => {
                    if let (Some(a), Some(wanted)) = (&raw.algorithm, algorithm)
                        && keys.algorithm() != Some(wanted)
                    {
                        problems.at(
                            a,
                            format!(
                                "upstream_token.algorithm is {} but the first key file holds a {} key",
                                wanted.name(),
                                keys.algorithm().map_or("different", SigningAlgorithm::name)
                            ),
                        );
                    }
                    (paths, keys)
                }
                Err(e) => {
                    // Point at the file the error names.
                    let message = format!("upstream_token.key_files: {e}");
                    match e
                        .path()
                        .and_then(|p| files.value.iter().zip(&paths).find(|(_, q)| *q == p))
                    {
                        Some((entry, _)) => problems.at(entry, message),
                        None => problems.at(files, message),
                    }
                    return None;
                }
            }
        }
        None => match KeyRing::generate(algorithm.unwrap_or(DEFAULT_UPSTREAM_TOKEN_ALGORITHM)) {
            Ok(keys) => (Vec::new(), keys),
            Err(e) => {
                problems.at(spanned, format!("upstream_token: {e}"));
                return None;
            }
        },
    };
    Some(UpstreamTokenConfig {
        issuer,
        audience,
        service_audiences,
        ttl: Duration::from_secs(ttl),
        reuse: Duration::from_secs(reuse),
        header: header.into(),
        claims,
        strip_headers: strip_headers.into(),
        key_files,
        keys: Arc::new(keys),
    })
}

/// `decision_log.rotate`: only for a `file` output; both bounds at least 1.
fn rotation(
    raw: &Spanned<RawRotate>,
    output: &LogOutput,
    problems: &mut Problems,
) -> Option<Rotation> {
    if !matches!(output, LogOutput::File(_)) {
        problems.at(raw, "decision_log.rotate is only for output `file`");
        return None;
    }
    let max_bytes = positive(
        raw.value.max_bytes.as_ref(),
        DEFAULT_ROTATE_MAX_BYTES,
        "decision_log.rotate.max_bytes",
        problems,
    );
    let keep = positive(
        raw.value.keep.as_ref(),
        DEFAULT_ROTATE_KEEP,
        "decision_log.rotate.keep",
        problems,
    );
    Some(Rotation { max_bytes, keep })
}

/// `decision_log.headers`: lower-cased, credential headers refused.
fn record_headers(raw: &[Spanned<String>], problems: &mut Problems) -> Vec<String> {
    let mut headers = Vec::new();
    for h in raw {
        let name = h.value.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "authorization" | "cookie" | "proxy-authorization" | "set-cookie"
        ) {
            problems.at(
                h,
                format!("decision_log.headers must not include `{name}`: it carries credentials"),
            );
        } else if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
            problems.at(h, format!("`{}` is not a header name", h.value));
        } else if !headers.contains(&name) {
            headers.push(name);
        }
    }
    headers
}

/// `decision_log.redact_claims`: claim names.
fn redact_claims(raw: &[Spanned<String>], problems: &mut Problems) -> Vec<String> {
    let mut claims = Vec::new();
    for c in raw {
        if c.value.trim().is_empty() {
            problems.at(c, "decision_log.redact_claims has an empty claim name");
        } else if !claims.contains(&c.value) {
            claims.push(c.value.clone());
        }
    }
    claims
}

/// `decision_log.redaction_key_file`: read at load (and on reload), at least
/// [`MIN_REDACTION_KEY_BYTES`] bytes after trimming a trailing newline.
fn redaction_key(
    file: &Spanned<String>,
    base: &Path,
    problems: &mut Problems,
) -> Option<RedactionKey> {
    let path = resolve(base, &file.value);
    match std::fs::read(&path) {
        Ok(mut bytes) => {
            while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                bytes.pop();
            }
            if bytes.len() < MIN_REDACTION_KEY_BYTES {
                problems.at(
                    file,
                    format!(
                        "decision_log.redaction_key_file {} holds {} bytes; use at least {MIN_REDACTION_KEY_BYTES} random bytes (e.g. `openssl rand -hex 32`)",
                        path.display(),
                        bytes.len()
                    ),
                );
                return None;
            }
            Some(RedactionKey(bytes.into()))
        }
        Err(e) => {
            problems.at(
                file,
                format!("decision_log.redaction_key_file {}: {e}", path.display()),
            );
            None
        }
    }
}

fn telemetry(raw: &RawTelemetry, problems: &mut Problems) -> TelemetryConfig {
    let level = match &raw.log.level {
        None => DEFAULT_LOG_LEVEL.to_string(),
        Some(l) => {
            if l.value.trim().is_empty()
                || tracing_subscriber::EnvFilter::try_new(&l.value).is_err()
            {
                problems.at(
                    l,
                    format!(
                        "telemetry.log.level `{}` is not a log filter (e.g. `info` or `warn,cedargate=debug`)",
                        l.value
                    ),
                );
            }
            l.value.clone()
        }
    };
    let format = match raw.log.format.as_ref() {
        None => LogFormat::Text,
        Some(f) => match f.value.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                problems.at(
                    f,
                    format!("telemetry.log.format must be `text` or `json`, not `{other}`"),
                );
                LogFormat::Text
            }
        },
    };
    TelemetryConfig {
        log: LogConfig { level, format },
        otlp: raw
            .otlp
            .as_ref()
            .map(|o| otlp(o, OtlpSection::Telemetry, problems)),
    }
}

/// Which `otlp` section is being read: traces, or decision records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtlpSection {
    /// `telemetry.otlp`: Check spans.
    Telemetry,
    /// `decision_log.otlp`: decision records as OTLP logs.
    DecisionLog,
}

fn otlp(spanned: &Spanned<RawOtlp>, section: OtlpSection, problems: &mut Problems) -> OtlpConfig {
    let (prefix, default_queue, default_delay) = match section {
        OtlpSection::Telemetry => (
            "telemetry.otlp",
            DEFAULT_OTLP_QUEUE,
            DEFAULT_OTLP_BATCH_DELAY_MS,
        ),
        OtlpSection::DecisionLog => (
            "decision_log.otlp",
            DEFAULT_DECISION_LOG_OTLP_QUEUE,
            DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS,
        ),
    };
    let raw = &spanned.value;
    let endpoint = raw.endpoint.value.trim_end_matches('/').to_string();
    if let Err(why) = check_otlp_endpoint(&endpoint) {
        problems.at(
            &raw.endpoint,
            format!("{prefix}.endpoint `{}` {why}", raw.endpoint.value),
        );
    }
    let sampling_ratio = match &raw.sampling_ratio {
        None => DEFAULT_OTLP_SAMPLING_RATIO,
        Some(r) if section == OtlpSection::DecisionLog => {
            problems.at(
                r,
                "decision_log.otlp.sampling_ratio: every decision is exported; sampling is for traces (telemetry.otlp)",
            );
            DEFAULT_OTLP_SAMPLING_RATIO
        }
        Some(r) if !(0.0..=1.0).contains(&r.value) => {
            problems.at(
                r,
                format!(
                    "{prefix}.sampling_ratio {} must be between 0 and 1",
                    r.value
                ),
            );
            DEFAULT_OTLP_SAMPLING_RATIO
        }
        Some(r) => r.value,
    };
    let service_name = match &raw.service_name {
        None => DEFAULT_OTLP_SERVICE_NAME.to_string(),
        Some(n) if n.value.trim().is_empty() => {
            problems.at(n, format!("{prefix}.service_name must not be empty"));
            DEFAULT_OTLP_SERVICE_NAME.to_string()
        }
        Some(n) => n.value.clone(),
    };
    if raw.resource_attributes.keys().any(|k| k.trim().is_empty()) {
        problems.at(
            spanned,
            format!("{prefix}.resource_attributes has an empty name"),
        );
    }
    OtlpConfig {
        endpoint,
        sampling_ratio,
        service_name,
        resource_attributes: raw.resource_attributes.clone(),
        timeout: Duration::from_millis(positive(
            raw.timeout_ms.as_ref(),
            DEFAULT_OTLP_TIMEOUT_MS,
            &format!("{prefix}.timeout_ms"),
            problems,
        )),
        queue: positive(
            raw.queue.as_ref(),
            default_queue,
            &format!("{prefix}.queue"),
            problems,
        ),
        batch_delay: Duration::from_millis(positive(
            raw.batch_delay_ms.as_ref(),
            default_delay,
            &format!("{prefix}.batch_delay_ms"),
            problems,
        )),
    }
}

/// An OTLP/gRPC endpoint is `http(s)://host[:port]`, nothing after the authority: a path such
/// as `/v1/traces` belongs to OTLP/HTTP, which cedargate does not speak.
fn check_otlp_endpoint(endpoint: &str) -> Result<(), &'static str> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err("needs a host (and port), e.g. http://127.0.0.1:4317");
    }
    if rest.contains(['/', '?', '#']) {
        return Err(
            "must not have a path: OTLP/gRPC (port 4317) is spoken, not OTLP/HTTP (/v1/traces)",
        );
    }
    Ok(())
}

/// The realm goes inside a quoted `WWW-Authenticate` parameter: printable ASCII, no quote or
/// backslash, so it can never break the header.
fn realm(raw: Option<&Spanned<String>>, problems: &mut Problems) -> Arc<str> {
    match raw {
        None => DEFAULT_REALM.into(),
        Some(r) => {
            let ok = !r.value.is_empty()
                && r.value
                    .bytes()
                    .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
            if !ok {
                problems.at(r, "realm must be printable ASCII without `\"` or `\\`");
            }
            r.value.as_str().into()
        }
    }
}

fn listen_addr(
    raw: Option<&Spanned<String>>,
    default: &str,
    problems: &mut Problems,
) -> SocketAddr {
    let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
    match raw {
        None => default.parse().unwrap_or(fallback),
        Some(s) => s.value.parse().unwrap_or_else(|_| {
            problems.at(s, format!("`{}` is not an ip:port address", s.value));
            fallback
        }),
    }
}

/// Checks a Cedar entity type name (`Type` or `Namespace::Type`).
fn entity_type(raw: Option<&Spanned<String>>, default: &str, problems: &mut Problems) -> Arc<str> {
    match raw {
        None => default.into(),
        Some(s) => {
            if cedar_policy::EntityTypeName::from_str(&s.value).is_err() {
                problems.at(s, format!("`{}` is not a Cedar entity type name", s.value));
            }
            s.value.as_str().into()
        }
    }
}

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

fn validate_issuer(
    index: usize,
    spanned: &Spanned<RawIssuer>,
    base: &Path,
    problems: &mut Problems,
) -> IssuerConfig {
    let raw = &spanned.value;
    // `iss` is compared exactly, so the configured value is kept as written.
    let issuer = raw.issuer.value.clone();
    if !raw.allow_insecure_http && !is_secure_url(&issuer) {
        problems.at(
            &raw.issuer,
            format!(
                "issuer `{issuer}` must be an https URL (http is accepted for loopback hosts, or with allow_insecure_http: true)"
            ),
        );
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
    let keys = match (&raw.jwks_uri, &raw.jwks_file) {
        (Some(_), Some(_)) => {
            problems.at(spanned, "set jwks_uri or jwks_file, not both");
            KeySource::Discovery
        }
        (Some(uri), None) => {
            if !raw.allow_insecure_http && !is_secure_url(&uri.value) {
                problems.at(uri, "jwks_uri must be https (http only for loopback hosts)");
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
    }
}

/// A number that must be at least 1; reports 0 instead of silently changing it.
fn positive<T: Copy + PartialOrd + From<u8>>(
    raw: Option<&Spanned<T>>,
    default: T,
    name: &str,
    problems: &mut Problems,
) -> T {
    match raw {
        None => default,
        Some(v) if v.value < T::from(1) => {
            problems.at(v, format!("{name} must be at least 1"));
            default
        }
        Some(v) => v.value,
    }
}

fn principal_mapping(
    raw: &RawPrincipal,
    default_type: &str,
    default_id_claim: &str,
    problems: &mut Problems,
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

/// `context.attributes`: each names exactly one source; names are Cedar identifiers that don't
/// take a key cedargate writes itself.
fn context_attributes(
    raw: &BTreeMap<String, Spanned<RawContextValue>>,
    problems: &mut Problems,
) -> Vec<(String, ContextValue)> {
    let mut out = Vec::new();
    for (name, spanned) in raw {
        let v = &spanned.value;
        if BUILTIN_CONTEXT_KEYS.contains(&name.as_str()) {
            problems.at(
                spanned,
                format!("context.attributes.{name}: `{name}` is written by cedargate itself; choose another name"),
            );
            continue;
        }
        if !is_identifier(name) {
            problems.at(
                spanned,
                format!("context.attributes: `{name}` is not a Cedar identifier (letters, digits, `_`; not starting with a digit or `__`)"),
            );
            continue;
        }
        let given = [
            v.fact.is_some(),
            v.claim.is_some(),
            v.header.is_some(),
            v.param.is_some(),
            v.value.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if given != 1 {
            problems.at(
                spanned,
                format!("context.attributes.{name} needs exactly one of fact, claim, header, param, value"),
            );
            continue;
        }
        let value = if let Some(fact) = &v.fact {
            match ContextFact::ALL.iter().find(|(n, _)| n == fact) {
                Some((_, f)) => ContextValue::Fact(*f),
                None => {
                    let names: Vec<&str> = ContextFact::ALL.iter().map(|(n, _)| *n).collect();
                    problems.at(
                        spanned,
                        format!(
                            "context.attributes.{name}: unknown fact `{fact}` (one of: {})",
                            names.join(", ")
                        ),
                    );
                    continue;
                }
            }
        } else if let Some(claim) = &v.claim {
            ContextValue::Claim(claim.clone())
        } else if let Some(header) = &v.header {
            let header = header.to_ascii_lowercase();
            if matches!(
                header.as_str(),
                "authorization" | "cookie" | "proxy-authorization"
            ) {
                problems.at(
                    spanned,
                    format!(
                        "context.attributes.{name} must not read `{header}`: it carries credentials"
                    ),
                );
                continue;
            }
            ContextValue::Header(header)
        } else if let Some(param) = &v.param {
            ContextValue::Param(param.clone())
        } else if let Some(value) = &v.value {
            match crate::mapping::cedar_value(value) {
                Some(cedar) if cedar == *value => ContextValue::Value(cedar),
                _ => {
                    problems.at(
                        spanned,
                        format!("context.attributes.{name}: value must be a string, integer, boolean, list or map of those"),
                    );
                    continue;
                }
            }
        } else {
            continue;
        };
        out.push((name.clone(), value));
    }
    out
}

/// A Cedar identifier that isn't reserved for Cedar's JSON escapes.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// How long a fetch for one Check may take in all when the file doesn't say: well above a
/// loopback or in-cluster lookup (~1 ms) and well below Envoy's ext_authz timeout (200 ms in the
/// shipped configs), so a slow provider is a deny with its own reason, not an Envoy error.
const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 100;
/// Entity data changes by the minute; half a minute of reuse takes the provider off the path of
/// repeated Checks while bounding how long a revoked membership keeps working.
const DEFAULT_PROVIDER_CACHE_TTL_SECS: u64 = 30;
/// One answer per uid in use; like the token cache, sized for a busy fleet's active callers.
const DEFAULT_PROVIDER_CACHE_CAPACITY: u64 = 10_000;
/// An entity answer is a handful of entities; 1 MiB bounds a runaway provider's cost.
const DEFAULT_PROVIDER_MAX_BODY_BYTES: usize = 1024 * 1024;

fn entity_provider(
    spanned: &Spanned<RawEntityProvider>,
    problems: &mut Problems,
) -> Option<EntityProviderConfig> {
    let raw = &spanned.value;
    let url = match url::Url::parse(&raw.url.value) {
        Ok(u) => u,
        Err(e) => {
            problems.at(&raw.url, format!("entity_provider.url: {e}"));
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        problems.at(
            &raw.url,
            "entity_provider.url must not carry user info (`user@`)",
        );
        return None;
    }
    if url.query().is_some() || url.fragment().is_some() {
        problems.at(
            &raw.url,
            "entity_provider.url must not have a query or fragment: cedargate adds `?type=…&id=…`",
        );
        return None;
    }
    let loopback = match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback || raw.allow_insecure_http => {}
        "http" => {
            problems.at(
                &raw.url,
                "entity_provider.url must be https (plain http only on loopback, or with allow_insecure_http: true)",
            );
            return None;
        }
        other => {
            problems.at(
                &raw.url,
                format!("entity_provider.url: scheme `{other}` is not http(s)"),
            );
            return None;
        }
    }
    if raw.types.value.is_empty() {
        problems.at(
            &raw.types,
            "entity_provider.types must name at least one entity type",
        );
    }
    let types = raw
        .types
        .value
        .iter()
        .map(|t| entity_type(Some(t), DEFAULT_GROUP_TYPE, problems).to_string())
        .collect();
    let millis = |v: Option<&Spanned<u64>>, default: u64, name: &str, problems: &mut Problems| {
        std::time::Duration::from_millis(positive(v, default, name, problems))
    };
    Some(EntityProviderConfig {
        url: url.to_string(),
        types,
        timeout: millis(
            raw.timeout_ms.as_ref(),
            DEFAULT_PROVIDER_TIMEOUT_MS,
            "entity_provider.timeout_ms",
            problems,
        ),
        cache_ttl: std::time::Duration::from_secs(positive(
            raw.cache_ttl_seconds.as_ref(),
            DEFAULT_PROVIDER_CACHE_TTL_SECS,
            "entity_provider.cache_ttl_seconds",
            problems,
        )),
        cache_capacity: positive(
            raw.cache_capacity.as_ref(),
            DEFAULT_PROVIDER_CACHE_CAPACITY,
            "entity_provider.cache_capacity",
            problems,
        ),
        max_body_bytes: positive(
            raw.max_body_bytes.as_ref(),
            DEFAULT_PROVIDER_MAX_BODY_BYTES,
            "entity_provider.max_body_bytes",
            problems,
        ),
    })
}

/// https anywhere; http only where the traffic cannot leave the machine.
pub fn is_secure_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host_port = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn validate_route(spanned: &Spanned<RawRoute>, problems: &mut Problems) -> Option<Route> {
    let raw = &spanned.value;
    let template = match PathTemplate::parse(&raw.path.value) {
        Ok(t) => t,
        Err(msg) => {
            problems.at(&raw.path, msg);
            return None;
        }
    };
    let mut methods = Vec::new();
    for m in &raw.methods {
        let upper = m.value.to_ascii_uppercase();
        if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_uppercase()) {
            problems.at(m, format!("`{}` is not an HTTP method", m.value));
        } else {
            methods.push(upper);
        }
    }
    if let Some(action) = &raw.action {
        let uid = format!(
            "{ACTION_TYPE}::{}",
            serde_json::Value::from(action.as_str())
        );
        if cedar_policy::EntityUid::from_str(&uid).is_err() {
            problems.at(
                spanned,
                format!("action `{action}` is not a valid Cedar action id"),
            );
        }
    }
    let resource = raw.resource.as_ref().map(|r| {
        if cedar_policy::EntityTypeName::from_str(&r.entity_type.value).is_err() {
            problems.at(
                &r.entity_type,
                format!("`{}` is not a Cedar entity type name", r.entity_type.value),
            );
        }
        for param in placeholders(&r.id.value) {
            if !template.params().any(|p| p == param) && param != "service" && param != "host" {
                problems.at(
                    &r.id,
                    format!(
                        "resource id uses `{{{param}}}`, which the path `{}` does not capture",
                        raw.path.value
                    ),
                );
            }
        }
        (
            Arc::<str>::from(r.entity_type.value.as_str()),
            r.id.value.clone(),
        )
    });
    Some(Route {
        name: raw
            .name
            .clone()
            .unwrap_or_else(|| raw.path.value.clone())
            .into(),
        service: raw.service.clone(),
        host: raw.host.as_ref().map(|h| h.to_ascii_lowercase()),
        methods,
        template,
        action: raw.action.clone().map(Into::into),
        resource,
    })
}

/// `{name}` placeholders in a resource id template.
pub(crate) fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
}

/// The Cedar action entity type.
pub const fn action_type() -> &'static str {
    ACTION_TYPE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = Config::parse("{}", Path::new("/etc/cg/c.yaml"));
        let config = match config {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.grpc_listen.to_string(), DEFAULT_GRPC_LISTEN);
        assert_eq!(config.policy_dir, PathBuf::from("/etc/cg/policies"));
        assert_eq!(config.unmatched, Unmatched::Deny);
        assert_eq!(config.decision_log.output, LogOutput::Stdout);
    }

    #[test]
    fn every_problem_is_reported_with_its_position() {
        let yaml = "\
issuers:
  - name: a
    issuer: http://idp.example.com
    audiences: []
    algorithms: [HS256, ES256, XX1]
    leeway_seconds: 9000
routes:
  - path: /orders/{id
unmatched_route: maybe
context:
  headers: [cookie]
";
        let got = problems(yaml);
        assert_eq!(got.len(), 8, "{got:#?}");
        assert!(
            got.iter()
                .any(|p| p.starts_with("2:5 issuer needs at least one audience"))
        );
        assert!(got[0].starts_with("3:13 issuer `http://idp.example.com` must be an https URL"));
        assert!(
            got.iter()
                .any(|p| p.starts_with("5:18 `HS256` is symmetric")),
            "{got:#?}"
        );
        assert!(got.iter().any(|p| p.contains("unknown algorithm `XX1`")));
        assert!(
            got.iter()
                .any(|p| p.starts_with("6:21 leeway_seconds 9000"))
        );
        assert!(got.iter().any(|p| p.starts_with("8:11 ")));
        assert!(got.iter().any(|p| p.contains("unmatched_route must be")));
        assert!(got.iter().any(|p| p.contains("must not include `cookie`")));
    }

    #[test]
    fn unknown_fields_are_errors_not_silent_defaults() {
        let got = problems("issuers:\n  - issuer: https://x\n    audience: [a]\n");
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("audience"), "{got:#?}");
    }

    #[test]
    fn zero_values_and_unsafe_choices_are_reported_not_clamped() {
        let yaml = "\
realm: 'bad\"realm'
issuers:
  - issuer: https://idp.example.com
    audiences: [a]
    refresh_seconds: 0
    kid_refetch_min_interval_seconds: 0
    fetch_timeout_ms: 0
context:
  query: [access_token, limit]
decision_log:
  queue: 0
";
        let got = problems(yaml);
        for needle in [
            "1:8 realm must be printable ASCII",
            "5:22 refresh_seconds must be at least 1",
            "6:39 kid_refetch_min_interval_seconds",
            "7:23 fetch_timeout_ms must be at least 1",
            "9:11 context.query must not include `access_token`",
            "11:10 decision_log.queue must be at least 1",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        assert_eq!(got.len(), 6, "{got:#?}");
    }

    #[test]
    fn plain_http_needs_an_explicit_opt_in_beyond_loopback() {
        let yaml = "issuers:\n  - issuer: http://idp:9400\n    audiences: [a]\n    allow_insecure_http: true\n";
        assert_eq!(problems(yaml), Vec::<String>::new());
    }

    #[test]
    fn resource_placeholders_must_be_captured_by_the_path() {
        let yaml =
            "routes:\n  - path: /orders/{id}\n    resource: { type: Order, id: \"{order}\" }\n";
        let got = problems(yaml);
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("3:34 resource id uses `{order}`"),
            "{got:#?}"
        );
    }

    #[test]
    fn telemetry_defaults_to_text_logs_at_info_and_no_export() {
        let config = match Config::parse("{}", Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.telemetry.log.level, DEFAULT_LOG_LEVEL);
        assert_eq!(config.telemetry.log.format, LogFormat::Text);
        assert_eq!(config.telemetry.otlp, None);
    }

    #[test]
    fn an_otlp_section_gets_its_defaults() {
        let yaml = "\
telemetry:
  log: { level: 'warn,cedargate=debug', format: json }
  otlp:
    endpoint: https://otel.example.com:4317/
    resource_attributes: { deployment.environment: prod }
";
        let config = match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.telemetry.log.format, LogFormat::Json);
        let otlp = config.telemetry.otlp.unwrap_or_else(|| unreachable!());
        assert_eq!(otlp.endpoint, "https://otel.example.com:4317");
        assert_eq!(otlp.sampling_ratio, DEFAULT_OTLP_SAMPLING_RATIO);
        assert_eq!(otlp.service_name, DEFAULT_OTLP_SERVICE_NAME);
        assert_eq!(otlp.queue, DEFAULT_OTLP_QUEUE);
        assert_eq!(otlp.timeout, Duration::from_millis(DEFAULT_OTLP_TIMEOUT_MS));
        assert_eq!(
            otlp.resource_attributes.get("deployment.environment"),
            Some(&"prod".to_string())
        );
    }

    #[test]
    fn decision_log_otlp_is_off_by_default_and_has_its_own_defaults() {
        let off = match Config::parse("{}", Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(off.decision_log.otlp, None);
        let yaml = "decision_log:\n  output: off\n  otlp: { endpoint: http://collector:4317 }\n";
        let config = match Config::parse(yaml, Path::new("c.yaml")) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(config.decision_log.output, LogOutput::Off);
        let otlp = config.decision_log.otlp.unwrap_or_else(|| unreachable!());
        assert_eq!(otlp.endpoint, "http://collector:4317");
        assert_eq!(otlp.queue, DEFAULT_DECISION_LOG_OTLP_QUEUE);
        assert_eq!(
            otlp.batch_delay,
            Duration::from_millis(DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS)
        );
        assert_eq!(otlp.sampling_ratio, 1.0, "every decision is exported");
        // Trace export stays off: the two sections are independent.
        assert_eq!(config.telemetry.otlp, None);
    }

    #[test]
    fn decision_log_otlp_problems_name_their_section() {
        let yaml = "\
decision_log:
  otlp:
    endpoint: http://collector:4318/v1/logs
    sampling_ratio: 0.5
    queue: 0
";
        let got = problems(yaml);
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("3:15 decision_log.otlp.endpoint `http://collector:4318/v1/logs` must not have a path"),
            "{got:#?}"
        );
        assert!(
            got[1].starts_with("4:21 decision_log.otlp.sampling_ratio: every decision is exported"),
            "{got:#?}"
        );
        assert!(
            got[2].starts_with("5:12 decision_log.otlp.queue must be at least 1"),
            "{got:#?}"
        );
    }

    #[test]
    fn telemetry_problems_are_reported_with_their_positions() {
        let yaml = "\
telemetry:
  log:
    level: 'info,[bad'
    format: xml
  otlp:
    endpoint: http://collector:4318/v1/traces
    sampling_ratio: 1.5
    service_name: ' '
    queue: 0
    timeout_ms: 0
";
        let got = problems(yaml);
        for needle in [
            "3:12 telemetry.log.level `info,[bad` is not a log filter",
            "4:13 telemetry.log.format must be `text` or `json`, not `xml`",
            "6:15 telemetry.otlp.endpoint `http://collector:4318/v1/traces` must not have a path",
            "7:21 telemetry.otlp.sampling_ratio 1.5 must be between 0 and 1",
            "8:19 telemetry.otlp.service_name must not be empty",
            "9:12 telemetry.otlp.queue must be at least 1",
            "10:17 telemetry.otlp.timeout_ms must be at least 1",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        assert_eq!(got.len(), 7, "{got:#?}");
        for bad in ["collector:4317", "grpc://c:4317", "http://", "http://a b"] {
            assert!(check_otlp_endpoint(bad).is_err(), "{bad}");
        }
        assert!(check_otlp_endpoint("http://[::1]:4317").is_ok());
    }

    #[test]
    fn loopback_http_is_allowed_elsewhere_https_required() {
        assert!(is_secure_url("http://127.0.0.1:8080"));
        assert!(is_secure_url("http://localhost/x"));
        assert!(is_secure_url("http://[::1]:9/"));
        assert!(is_secure_url("https://idp.example.com"));
        assert!(!is_secure_url("http://idp.example.com"));
        assert!(!is_secure_url("http://127.0.0.1.evil.com"));
        assert!(!is_secure_url("ftp://127.0.0.1"));
    }

    /// A folder with the test key fixtures, for configs that name key files.
    fn key_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upstream-keys")
    }

    #[test]
    fn upstream_token_is_off_by_default_and_gets_its_defaults() {
        let parse = |yaml: &str| Config::parse(yaml, &key_dir().join("c.yaml")).unwrap();
        assert!(parse("{}").upstream_token.is_none());
        let config =
            parse("upstream_token:\n  issuer: https://cedargate.internal\n  audience: internal\n");
        let u = config.upstream_token.unwrap();
        assert_eq!(u.ttl, Duration::from_secs(DEFAULT_UPSTREAM_TOKEN_TTL_SECS));
        assert_eq!(
            u.reuse,
            Duration::from_secs(DEFAULT_UPSTREAM_TOKEN_REUSE_SECS)
        );
        assert_eq!(&*u.header, "authorization");
        // The token overwrites `authorization`, so nothing is left to remove.
        assert!(u.strip_headers.is_empty());
        assert!(u.keys.generated());
        assert_eq!(u.keys.algorithm(), Some(SigningAlgorithm::Es256));
        assert_eq!(u.header_value("t"), "Bearer t");

        let config = parse(
            "upstream_token:\n  issuer: https://cedargate.internal\n  audience: internal\n  service_audiences: { orders: https://orders.internal }\n  ttl_seconds: 20\n  header: X-Cedargate-Token\n  claims: [groups, tenant, groups]\n  key_files: [es256-a.pem, ed25519.pem]\n",
        );
        let u = config.upstream_token.unwrap();
        assert_eq!(
            u.reuse,
            Duration::from_secs(10),
            "reuse defaults to at most half the ttl"
        );
        assert_eq!(&*u.header, "x-cedargate-token");
        assert_eq!(u.header_value("t"), "t");
        assert_eq!(&*u.strip_headers, ["authorization".to_string()]);
        assert_eq!(u.claims, ["groups", "tenant"]);
        assert_eq!(u.key_files.len(), 2);
        assert!(!u.keys.generated());
        assert_eq!(u.keys.kids().len(), 2);
        assert_eq!(&*u.audience_for(Some("orders")), "https://orders.internal");
        assert_eq!(&*u.audience_for(Some("payments")), "internal");
        assert_eq!(&*u.audience_for(None), "internal");
    }

    #[test]
    fn upstream_token_problems_are_reported_with_their_positions() {
        let got = |yaml: &str| match Config::parse(yaml, &key_dir().join("c.yaml")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect::<Vec<_>>(),
            Err(e) => vec![e.to_string()],
        };
        let problems = got(
            "upstream_token:\n  issuer: ''\n  audience: a b\n  ttl_seconds: 7200\n  reuse_seconds: 90\n  header: ':path'\n  claims: [sub, '']\n  strip_headers: [host]\n  algorithm: RS256\n",
        );
        for needle in [
            "2:11 upstream_token.issuer must be a non-empty string",
            "3:13 upstream_token.audience must be a non-empty string",
            "4:16 upstream_token.ttl_seconds 7200 exceeds the maximum 3600",
            "5:18 upstream_token.reuse_seconds 90 must be less than ttl_seconds 60",
            "6:11 upstream_token.header: `:path` is not a header name",
            "7:12 upstream_token.claims: `sub` is set by cedargate",
            "7:17 upstream_token.claims has an empty claim name",
            "8:19 upstream_token.strip_headers: `host` cannot be changed",
            "9:14 upstream_token.algorithm must be `ES256` or `EdDSA`, not `RS256`",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {problems:#?}"
            );
        }
        // A bad key file is named, at its own list entry, without its bytes.
        let problems = got(
            "upstream_token:\n  issuer: i\n  audience: a\n  key_files:\n    - es256-a.pem\n    - rsa.pem\n",
        );
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].starts_with("6:7 upstream_token.key_files: "),
            "{problems:#?}"
        );
        assert!(problems[0].contains("rsa.pem: is not a P-256 (ES256) or Ed25519"));
        assert!(!problems[0].contains("MII"));
        let problems =
            got("upstream_token:\n  issuer: i\n  audience: a\n  key_files: [missing.pem]\n");
        assert!(
            problems[0].starts_with("4:15 upstream_token.key_files: ")
                && problems[0].contains("missing.pem: cannot read"),
            "{problems:#?}"
        );
        let problems = got("upstream_token:\n  issuer: i\n  audience: a\n  key_files: []\n");
        assert!(problems[0].contains("key_files is empty"), "{problems:#?}");
        let problems = got(
            "upstream_token:\n  issuer: i\n  audience: a\n  algorithm: EdDSA\n  key_files: [es256-a.pem]\n",
        );
        assert!(
            problems[0].starts_with(
                "4:14 upstream_token.algorithm is EdDSA but the first key file holds a ES256 key"
            ),
            "{problems:#?}"
        );
        let problems = got("upstream_token:\n  issuer: i\n");
        assert!(problems[0].contains("audience"), "{problems:#?}");
    }

    #[test]
    fn a_reload_keeps_the_key_generated_at_start() {
        let yaml = "upstream_token:\n  issuer: i\n  audience: a\n";
        let first = Config::parse(yaml, Path::new("c.yaml")).unwrap();
        let mut second = Config::parse(yaml, Path::new("c.yaml")).unwrap();
        let kid = |c: &Config| c.upstream_token.as_ref().unwrap().keys.kids()[0].to_string();
        assert_ne!(kid(&first), kid(&second));
        second.keep_generated_keys(&first);
        assert_eq!(kid(&first), kid(&second));
        // Key files always win over a generated key.
        let mut files = Config::parse(
            "upstream_token:\n  issuer: i\n  audience: a\n  key_files: [es256-a.pem]\n",
            &key_dir().join("c.yaml"),
        )
        .unwrap();
        let from_file = kid(&files);
        files.keep_generated_keys(&first);
        assert_eq!(kid(&files), from_file);
    }

    #[test]
    fn decision_log_headers_and_redaction_are_checked() {
        let dir = std::env::temp_dir().join(format!("cedargate-redaction-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(dir.join("short.key"), "abc\n").unwrap_or_else(|e| unreachable!("{e}"));
        std::fs::write(dir.join("good.key"), "0123456789abcdef0123456789abcdef\n")
            .unwrap_or_else(|e| unreachable!("{e}"));
        let parse = |yaml: &str| Config::parse(yaml, &dir.join("c.yaml"));
        let good = "decision_log:\n  headers: [User-Agent, x-forwarded-for, user-agent]\n  redact_claims: [email, email]\n  redaction_key_file: good.key\n";
        let config = match parse(good) {
            Ok(c) => c,
            Err(e) => unreachable!("{e}"),
        };
        assert_eq!(
            config.decision_log.headers,
            ["user-agent", "x-forwarded-for"]
        );
        assert_eq!(config.decision_log.redact_claims, ["email"]);
        let key = config
            .decision_log
            .redaction_key
            .unwrap_or_else(|| unreachable!());
        assert_eq!(key.bytes(), b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            format!("{key:?}"),
            "RedactionKey(..)",
            "Debug never shows the key"
        );

        let bad = "decision_log:\n  headers: [Cookie, authorization, 'a b']\n  redact_claims: ['']\n  redaction_key_file: short.key\n";
        let got = match parse(bad) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.line, p.column, p.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        };
        for needle in [
            "2:13 decision_log.headers must not include `cookie`",
            "2:21 decision_log.headers must not include `authorization`",
            "2:36 `a b` is not a header name",
            "3:19 decision_log.redact_claims has an empty claim name",
            "4:23 decision_log.redaction_key_file",
        ] {
            assert!(
                got.iter().any(|p| p.starts_with(needle)),
                "{needle} missing in {got:#?}"
            );
        }
        let rotating = parse(
            "decision_log:\n  output: file\n  path: d.jsonl\n  rotate: { max_bytes: 1000 }\n",
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            rotating.decision_log.rotate,
            Some(Rotation {
                max_bytes: 1000,
                keep: DEFAULT_ROTATE_KEEP
            })
        );
        let got = problems("decision_log:\n  rotate: { keep: 0 }\n");
        assert!(
            got.iter()
                .any(|p| p.starts_with("2:11 decision_log.rotate is only for output `file`")),
            "{got:#?}"
        );
        let got = problems(
            "decision_log:\n  output: file\n  path: d.jsonl\n  rotate: { max_bytes: 0, keep: 0 }\n",
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("4:24 decision_log.rotate.max_bytes must be at least 1")),
            "{got:#?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("4:33 decision_log.rotate.keep must be at least 1")),
            "{got:#?}"
        );
        assert!(
            problems("decision_log: { redaction_key_file: /no/such/key }")
                .iter()
                .any(|p| p.contains("/no/such/key"))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
