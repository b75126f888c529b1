//! The validated configuration: the typed values code that holds a `Config` reads, each one
//! already checked. Plain data: no parsing, no validation, no key material.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::routes::RouteTable;

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
    /// How long the Check port keeps answering after SIGTERM, with gRPC health `NOT_SERVING`
    /// and `/readyz` 503, before it stops accepting: the time Envoy's health checks (and a
    /// Kubernetes endpoint update) need to stop sending Checks here.
    pub drain: Duration,
    /// Realm announced in `WWW-Authenticate` challenges.
    pub realm: Arc<str>,
    /// Token issuers, in file order.
    pub issuers: Vec<Arc<IssuerConfig>>,
    /// Principal for mTLS callers without a bearer token, if enabled.
    pub mtls: Option<MtlsConfig>,
    /// API keys in a request header (`api_keys`); `None` (the default): off.
    pub api_keys: Option<super::ApiKeysConfig>,
    /// Entity type for callers with no credential.
    pub anonymous_type: Arc<str>,
    /// Entity id of the anonymous principal.
    pub anonymous_id: Arc<str>,
    /// The HTTP entity source asked at decision time; `None` (the default): off.
    pub entity_provider: Option<EntityProviderConfig>,
    /// cedargate's own `Authorizer` gRPC API for application code; `None` (the default): off.
    pub authorizer_api: Option<super::AuthorizerApiConfig>,
    /// Route table mapping requests to actions and resources.
    pub routes: Arc<RouteTable>,
    /// What to do with a request no route matches.
    pub unmatched: Unmatched,
    /// Entity type for the default resource.
    pub resource_type: Arc<str>,
    /// Request facts copied into the Cedar context.
    pub context: ContextConfig,
    /// Folder with `*.cedar`, `*.cedarschema` and `entities.json`. With `policy_bundle`, the
    /// folder the bundle in force is unpacked to (`<cache_dir>/current`), which the server
    /// points at the bundle it enforces.
    pub policy_dir: PathBuf,
    /// Policies from a signed bundle over HTTP(S) instead of a local `policy_dir`; `None` (the
    /// default): the local folder.
    pub policy_bundle: Option<PolicyBundleConfig>,
    /// Bounds on input sizes.
    pub limits: Limits,
    /// Verified-token cache settings.
    pub token_cache: TokenCacheConfig,
    /// Cedar answers kept per policy-set version (see `decision_cache`); 0: none.
    pub decision_cache_capacity: u64,
    /// Decision-log output.
    pub decision_log: DecisionLogConfig,
    /// Operational logs and OTLP traces.
    pub telemetry: TelemetryConfig,
    /// A candidate policy set evaluated beside the enforced one (shadow mode); `None`: off.
    pub shadow: Option<ShadowConfig>,
    /// Tokens minted for the upstream on allow (`upstream_token`); `None` (the default): off.
    pub upstream_token: Option<UpstreamTokenConfig>,
    /// Browser single sign-on (`sso`); `None`: no browser routes.
    pub sso: Option<super::SsoConfig>,
    /// Legal but likely unintended (routes that overlap), with positions: `validate` prints
    /// them, `serve` logs them; they never stop a load.
    pub warnings: Vec<super::ConfigProblem>,
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
    /// The key files, in order (the first signs, all are published); empty: the server
    /// generates a key at start. Keys are the server's to load and hold: a `Config` names files
    /// and never carries key material, so nothing that only decides holds signing keys.
    pub key_files: Vec<PathBuf>,
    /// `upstream_token.algorithm`: the signing algorithm asked for, if any (the server checks it
    /// against the first key file, or generates a key of it).
    pub algorithm: Option<SigningAlgorithm>,
}

/// Claims cedargate sets itself; `upstream_token.claims` may not copy a caller's claim over them.
pub const RESERVED_CLAIMS: [&str; 9] = [
    "iss",
    "sub",
    "aud",
    "iat",
    "nbf",
    "exp",
    "jti",
    "principal_type",
    "decision_id",
];

/// Signature algorithms cedargate signs upstream tokens with: the two with small keys and fast,
/// constant-time signing in aws-lc-rs, and that every JWT library verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningAlgorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl SigningAlgorithm {
    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// Parses a JOSE name.
    pub fn parse(name: &str) -> Option<SigningAlgorithm> {
        match name {
            "ES256" => Some(SigningAlgorithm::Es256),
            "EdDSA" => Some(SigningAlgorithm::EdDsa),
            _ => None,
        }
    }
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
}

/// `policy_bundle`: where the signed bundle is, who may sign it, how often to ask, and where the
/// last good one is kept. Names key files; never holds keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBundleConfig {
    /// The bundle (a `.tar.gz` from `cedargate bundle build`); https unless loopback.
    pub url: String,
    /// Its detached signature; by default `url` + `.sig`.
    pub signature_url: String,
    /// PEM public keys (Ed25519 or P-256) a bundle may be signed with: any one suffices, so a key
    /// rotation lists the old and the new key.
    pub public_key_files: Vec<PathBuf>,
    /// The last good bundle and its unpacked files, so a restart enforces it with the bundle
    /// server unreachable.
    pub cache_dir: PathBuf,
    /// Time between two polls (conditional GETs with `If-None-Match`).
    pub poll_interval: Duration,
    /// Timeout for one fetch (bundle and signature).
    pub fetch_timeout: Duration,
    /// Largest bundle accepted, compressed.
    pub max_bytes: u64,
}

/// Shadow mode: where the candidate policy set is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowConfig {
    /// Folder with the candidate `*.cedar`, `*.cedarschema` and `entities.json`.
    pub policy_dir: PathBuf,
}

/// A JOSE `typ` value as the media type it names, for comparison: lower case (media types are
/// case-insensitive, RFC 2045), with `application/` put in front of a value without `/` (RFC 7515
/// §4.1.9 says to treat `at+jwt` as `application/at+jwt`). Parameters are not stripped: a `typ`
/// with them never equals a configured one.
pub fn media_type(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    if lower.contains('/') {
        lower
    } else {
        format!("application/{lower}")
    }
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
    /// `require_typ`: the JOSE header `typ` every token must carry, as a media type in lower case
    /// with `application/` (`application/at+jwt`); `None` (the default): not checked.
    pub require_typ: Option<Arc<str>>,
    /// `max_token_lifetime_seconds`: refuse a token whose `exp - iat` is longer (and one without
    /// `iat`); `None` (the default): not checked.
    pub max_token_lifetime: Option<Duration>,
    /// `reject_future_iat`: refuse a token whose `iat` is more than `leeway` in the future;
    /// `false` (the default): `iat` is not judged.
    pub reject_future_iat: bool,
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
    /// RFC 7662 introspection of this issuer's opaque tokens (`introspection`); `None`: off.
    pub introspection: Option<super::IntrospectionConfig>,
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
pub const BUILTIN_CONTEXT_KEYS: [&str; 7] = [
    "request",
    "source",
    "authenticated",
    "token",
    "api_key",
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
    /// Longest header value a record keeps (in `headers` and in `cedar.context`), and longest
    /// method, host and path of a refused request (`request`); longer ones are cut on a UTF-8
    /// boundary and marked. Only the record is cut: Cedar evaluates the whole value.
    pub max_header_value_bytes: usize,
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
pub struct RedactionKey(pub(super) Arc<[u8]>);

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

/// The Cedar action entity type.
pub const fn action_type() -> &'static str {
    super::defaults::ACTION_TYPE
}
