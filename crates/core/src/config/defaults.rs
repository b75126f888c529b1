//! Every default of `cedargate.yaml`, each a named constant with the reason for its value (the
//! table in `docs/configuration.md` lists them). Values only: no types, no logic.

use jsonwebtoken::Algorithm;

/// Default Check (gRPC) listen address: Envoy's docs and our `envoy/` configs use 9191.
pub(super) const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:9191";
/// Default admin HTTP listen address: next to the gRPC port, loopback only so probes and metrics
/// are not exposed to the network unless the operator says so.
pub(super) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9192";
/// Drain period after SIGTERM: none by default, because a lone process has no load balancer to
/// tell; a fleet behind Envoy's health checks sets it to cover their interval
/// (`deploy/kubernetes/`, `envoy/envoy-fleet.yaml`).
pub(super) const DEFAULT_DRAIN_SECS: u64 = 0;
/// Longest drain period: Kubernetes' default termination grace period is 30 s; beyond a few
/// minutes a shutdown that hangs is more likely than a health check that slow.
pub(super) const MAX_DRAIN_SECS: u64 = 300;
/// Clock-skew allowance for `exp`/`nbf` when an issuer does not set one: 30 s covers NTP-synced
/// fleets without keeping expired tokens useful for long.
pub(super) const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Upper bound on configurable leeway: more than five minutes stops being "skew" and starts
/// being "accepting expired tokens".
pub(super) const MAX_LEEWAY_SECS: u64 = 300;
/// Background JWKS refresh period: IdPs rotate keys on a scale of days and publish new keys ahead
/// of use; five minutes keeps removed keys from lingering while costing the IdP almost nothing.
pub(super) const DEFAULT_JWKS_REFRESH_SECS: u64 = 300;
/// Shortest refresh period a JWKS `Cache-Control: max-age` can ask for: an IdP answering
/// `max-age=0` must not turn into a fetch loop.
pub(super) const DEFAULT_MIN_REFRESH_SECS: u64 = 30;
/// How long the last good keys stay in force while the IdP is unreachable. A day rides out any
/// ordinary outage; past it, an issuer whose keys may have been rotated away fails closed.
pub(super) const DEFAULT_MAX_STALENESS_SECS: u64 = 86_400;
/// Minimum gap between two unknown-`kid` refetches for one issuer, so a flood of forged kids cannot
/// become a flood of requests at the IdP.
pub(super) const DEFAULT_KID_REFETCH_MIN_INTERVAL_SECS: u64 = 10;
/// Timeout for one discovery or JWKS HTTP request.
pub(super) const DEFAULT_FETCH_TIMEOUT_MS: u64 = 2_000;
/// Largest bearer token we will even try to parse. Real access tokens are 1–2 KiB; 8 KiB leaves
/// room for fat group claims while bounding the work an attacker can make us do.
pub(super) const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest total size of the request headers we accept in a CheckRequest (Envoy's own default
/// header limit is 60 KiB); anything larger is denied before parsing.
pub(super) const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
/// Checks in flight per Envoy connection (Envoy opens one per worker). A Check takes tens of
/// microseconds, so 256 in flight is already milliseconds of queue: past that, shedding
/// (RESOURCE_EXHAUSTED, Envoy fails closed) keeps the latency of what is served bounded.
pub(super) const DEFAULT_MAX_CONCURRENT_CHECKS: usize = 256;
/// Verified-token cache entries: ~1 KiB each, so 10k entries cost ~10 MiB.
pub(super) const DEFAULT_TOKEN_CACHE_CAPACITY: u64 = 10_000;
/// Cedar answers kept per policy-set version (`decision_cache.capacity`).
pub const DEFAULT_DECISION_CACHE_CAPACITY: u64 = 10_000;
/// Decision-log queue length between the Check path and the writer task. When full, records are
/// dropped and counted rather than blocking a Check.
pub(super) const DEFAULT_DECISION_LOG_QUEUE: usize = 16_384;
/// Longest header value (and refused request's method, host or path) a decision record keeps
/// before cutting it: 4 KiB holds any real `user-agent`, forwarded chain or `traceparent` whole,
/// while a 58 KB header costs the record 4 KiB instead of twice 58 KB.
pub(super) const DEFAULT_MAX_HEADER_VALUE_BYTES: usize = 4 * 1024;
/// `realm` in `WWW-Authenticate` challenges.
pub(super) const DEFAULT_REALM: &str = "cedargate";
/// Entity type for callers that present no credential.
pub(super) const DEFAULT_ANONYMOUS_TYPE: &str = "Anonymous";
/// The anonymous principal's id, `Anonymous::"anonymous"`: says what it is in every record.
pub(super) const DEFAULT_ANONYMOUS_ID: &str = "anonymous";
/// Entity type of the default resource built from Envoy's `context_extensions.service`.
pub(super) const DEFAULT_RESOURCE_TYPE: &str = "Service";
/// Entity type of group parents built from a groups claim.
pub(super) const DEFAULT_GROUP_TYPE: &str = "Group";
/// Entity type of Cedar actions.
pub(super) const ACTION_TYPE: &str = "Action";
/// Entity type of mTLS peers without a token.
pub(super) const DEFAULT_MTLS_TYPE: &str = "Workload";
/// Policy folder, relative to the config file.
pub(super) const DEFAULT_POLICY_DIR: &str = "policies";
/// Algorithms accepted when an issuer lists none: the two every OIDC provider supports.
pub(super) const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];
/// Principal of human tokens: `User::"<sub>"` (OIDC's stable subject identifier).
pub(super) const DEFAULT_USER_TYPE: &str = "User";
pub(super) const DEFAULT_USER_ID_CLAIM: &str = "sub";
/// Principal of client-only tokens: `Service::"<client_id>"` (RFC 9068 §2.2).
pub(super) const DEFAULT_SERVICE_TYPE: &str = "Service";
pub(super) const DEFAULT_SERVICE_ID_CLAIM: &str = "client_id";
/// Longest a Check waits for an unknown-`kid` refetch before answering; the fetch itself goes on
/// in the background. Below Envoy's usual ext_authz deadline (our configs use 500 ms).
pub(super) const DEFAULT_KID_REFETCH_WAIT_MS: u64 = 300;
/// Size at which the decision-log file is rotated: 100 MiB is some 50,000–100,000 records,
/// small enough to open in an editor or ship in one piece, large enough to rotate rarely.
pub(super) const DEFAULT_ROTATE_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Rotated decision-log files kept: with the default size, up to 600 MiB on disk in all.
pub(super) const DEFAULT_ROTATE_KEEP: usize = 5;
/// Shortest accepted redaction key: 128 bits, so that redacted values can't be recovered by
/// guessing the key.
pub(super) const MIN_REDACTION_KEY_BYTES: usize = 16;
/// Operational log level (an `EnvFilter` directive list; `RUST_LOG` wins when set): startup,
/// reloads and key trouble are info/warn/error, so `info` shows everything an operator acts on
/// without the per-refresh `jwks.loaded` debug lines.
pub(super) const DEFAULT_LOG_LEVEL: &str = "info";
/// `service.name` of exported spans: what trace backends group cedargate's spans under.
pub(super) const DEFAULT_OTLP_SERVICE_NAME: &str = "cedargate";
/// Share of traces sampled when no sampling decision arrives with the request. Parent-based: when
/// Envoy sends a `traceparent`, its decision wins, so this only applies to untraced callers; an
/// operator who switched OTLP on expects to see those too.
pub(super) const DEFAULT_OTLP_SAMPLING_RATIO: f64 = 1.0;
/// Longest one export (connect included) may take before its batch counts as failed: bounds how
/// long a slow or unreachable collector holds the export thread, never a Check.
pub(super) const DEFAULT_OTLP_TIMEOUT_MS: u64 = 2_000;
/// Finished spans waiting for export; past this, new spans are dropped and counted. The
/// OpenTelemetry SDK's default (`OTEL_BSP_MAX_QUEUE_SIZE`): about 2 MiB at ~1 KiB per span.
pub(super) const DEFAULT_OTLP_QUEUE: usize = 2_048;
/// How long spans wait to be batched before export (a full batch of 512 leaves at once). The
/// OpenTelemetry SDK's default (`OTEL_BSP_SCHEDULE_DELAY`).
pub(super) const DEFAULT_OTLP_BATCH_DELAY_MS: u64 = 5_000;
/// Decision records waiting for export to the collector; past this, new ones are dropped and
/// counted. Records are ~1.5 KiB, so this bounds the queue near 12 MiB: at 5k decisions/s it
/// rides out a collector hiccup of over a second without losing one.
pub(super) const DEFAULT_DECISION_LOG_OTLP_QUEUE: usize = 8_192;
/// How long decision records wait to be batched before export: shorter than for spans, because
/// someone investigating an incident looks for the decision that just happened.
pub(super) const DEFAULT_DECISION_LOG_OTLP_BATCH_DELAY_MS: u64 = 1_000;

/// Lifetime of a minted upstream token. It only has to cross one hop (Envoy → upstream, plus
/// that service's own calls made while serving the request), and a token that leaks from an
/// upstream's logs is worthless a minute later.
pub(super) const DEFAULT_UPSTREAM_TOKEN_TTL_SECS: u64 = 60;
/// Longest configurable upstream-token lifetime: past an hour it is no longer short-lived, and
/// the caller's own token should be forwarded instead.
pub(super) const MAX_UPSTREAM_TOKEN_TTL_SECS: u64 = 3_600;
/// How long a minted token is handed out again for the same principal, copied claims and
/// audience: half the default lifetime, so an upstream always gets a token with at least 30 s
/// left, while a busy caller costs one signature per 30 s instead of one per request.
pub(super) const DEFAULT_UPSTREAM_TOKEN_REUSE_SECS: u64 = 30;
/// Where the upstream token goes: `authorization: Bearer …` is what every JWT middleware reads
/// without configuration, and overwriting it also removes the caller's credential.
pub(super) const DEFAULT_UPSTREAM_TOKEN_HEADER: &str = "authorization";
/// Request headers removed on allow when the token goes elsewhere: the caller's credential, so
/// services never hold long-lived tokens.
pub(super) const DEFAULT_UPSTREAM_TOKEN_STRIP: [&str; 1] = ["authorization"];

/// How long a fetch for one Check may take in all when the file doesn't say: well above a
/// loopback or in-cluster lookup (~1 ms) and well below Envoy's ext_authz timeout (200 ms in the
/// shipped configs), so a slow provider is a deny with its own reason, not an Envoy error.
pub(super) const DEFAULT_PROVIDER_TIMEOUT_MS: u64 = 100;
/// Entity data changes by the minute; half a minute of reuse takes the provider off the path of
/// repeated Checks while bounding how long a revoked membership keeps working.
pub(super) const DEFAULT_PROVIDER_CACHE_TTL_SECS: u64 = 30;
/// One answer per uid in use; like the token cache, sized for a busy fleet's active callers.
pub(super) const DEFAULT_PROVIDER_CACHE_CAPACITY: u64 = 10_000;
/// An entity answer is a handful of entities; 1 MiB bounds a runaway provider's cost.
pub(super) const DEFAULT_PROVIDER_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Time between two bundle polls: a conditional GET answered 304 costs the bundle server almost
/// nothing, and 30 s puts a fleet on a new policy revision within a minute.
pub(super) const DEFAULT_BUNDLE_POLL_SECS: u64 = 30;
/// Timeout for one bundle or signature fetch: a large bundle over a slow link still arrives,
/// a hung server does not stall the next poll for long.
pub(super) const DEFAULT_BUNDLE_FETCH_TIMEOUT_MS: u64 = 10_000;
/// The folder inside `policy_bundle.cache_dir` that holds the bundle in force, unpacked: what
/// `policy_dir` is with a bundle, so `cedargate validate` and `test` read what is enforced.
pub(super) const BUNDLE_CURRENT_DIR: &str = "current";
