//! cedargate's integration tests: one binary, real sockets on 127.0.0.1, ephemeral ports.
//!
//! - `authorizer_api`: cedargate's own `cedargate.v1.Authorizer` gRPC API against the real
//!   binary with real IdP tokens: reflection, health, allow/deny, callers refused by policy or
//!   unauthenticated, a batch of 100 equal to `cedar_policy::Authorizer` from the Rust and the
//!   Python example, records replayed (issue 18).
//! - `authorizer_callers`: workloads calling that API over mTLS (`authorizer_api.tls`, certificates
//!   made by rcgen): answered, untrusted trust domain refused, other CA / no certificate refused at
//!   the handshake, a token beside a certificate decides; a key that is not the certificate's
//!   stops `serve`.
//! - `authorizer_records`: that API's records against a golden file; its span and records join
//!   the caller's `traceparent` (OTLP off and on).
//! - `conformance`: cedargate through the real Envoy against `cedar_policy::Authorizer` on the
//!   complete entity set, for three policy sets with entity data split across token claims,
//!   `entities.json` and the HTTP entity provider (issue 12).
//! - `bad_input`: broken configs and policy folders fed to the real binary (`validate`,
//!   `serve`): exit code and a message naming file, line or field, and what to do (issue 15).
//! - `cli_conventions`: `--version`, `CEDARGATE_CONFIG`, `--color`/`NO_COLOR`, `validate
//!   --format json`, through the real binary.
//! - `check`, `tokens`: the Check API through a tonic client with keys served over HTTP.
//! - `jwt_attacks`: the JWT attack list (RFC 8725, jwt_tool, CVEs) through the real Envoy: every
//!   case 401 with its reason, no token text in any log.
//! - `token_cache`: a cached token refused once it expires and once its key leaves the real
//!   IdP's JWKS.
//! - `decision_logs`: records from a real run read back by `logs`, replayed by `replay`.
//! - `decision_otlp`: records to a real OTLP/gRPC logs receiver; a collector that never answers.
//! - `record_bounds`: a long header value cut in the record but decided whole; replay reports
//!   such a record as not replayable exactly.
//! - `e2e`: the real Envoy and the real oidc-provider (processes owned by `stack`).
//! - `edge_e2e`: header names with `_` refused by the shipped Envoy configs; the token options
//!   on real at+jwt tokens; a cached token refused once its key leaves the JWKS; refused probes
//!   (`no_route`, a malformed token, `headers_too_large`) recorded with method and path.
//! - `route_properties`: nothing the route table doesn't match is allowed (randomized,
//!   in-process, against an oracle); tricky paths through the real Envoy are authorized as the
//!   upstream receives them.
//! - `faults`: fault injection on that stack (IdP outage, key rotation, kid flood, bad policy).
//! - `fleet`: three replicas behind `envoy/envoy-fleet.yaml` under load: one SIGKILLed, then a
//!   rolling restart with drain (issue 16).
//! - `log_liveness`: `/healthz` fails while the decision-log writer is stuck on a FIFO nobody
//!   reads, and recovers when it is read again.
//! - `health_cli`: `cedargate health` against the real binary (ready, loading, draining, down);
//!   liveness while policies load.
//! - `manifests`: `deploy/kubernetes/` rendered by `kubectl kustomize` and validated offline by
//!   `kubernetes-validate`; the Dockerfile and docker-compose.yml read for what they promise.
//! - `upstream_token`: minted upstream tokens verified against cedargate's JWKS, key rotation and
//!   a bad key file on reload (in-process), and through the real Envoy to the echo upstream.
//! - `entity_provider`: the HTTP entity provider against the real upstream process serving
//!   entities: decisions only its data explains, every failure (down, slow, garbage, huge,
//!   undeclared type) denied `entities_unavailable`, one fetch per uid, records that replay.
//! - `bundles`: signed policy bundles served over real HTTP to the real binary behind the real
//!   Envoy: enforced, updated within the poll interval, 304 without reload, tampered / unsigned /
//!   truncated / wrongly signed bundles refused, restart from the cache; the `bundle` commands.
//! - `api_keys`: keys made by `cedargate apikey`, through the real Envoy: mapped principals,
//!   rotation, removal, revocation, expiry, a wrong secret, hot reload; no key in any output.
//! - `introspection`: opaque tokens from the real oidc-provider introspected (RFC 7662) through
//!   the real Envoy: policy decisions, one IdP request for repeated Checks, revoked/inactive
//!   tokens, the IdP down (`introspection_unavailable`).
//! - `observability`: traces joined with Envoy's (real OTLP receiver), `/metrics` after known
//!   traffic, an unreachable collector, alert rules (promtool) and the dashboard.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api_keys;
mod authorizer_api;
mod authorizer_callers;
mod authorizer_records;
mod authorizer_support;
mod bad_input;
mod browser_sso;
mod bundles;
mod check;
mod cli_conventions;
mod conformance;
mod decision_logs;
mod decision_otlp;
mod e2e;
mod edge_e2e;
mod entity_provider;
mod faults;
mod fleet;
mod health_cli;
mod introspection;
mod jwt_attacks;
mod log_liveness;
mod manifests;
mod observability;
mod policy_cli;
mod record_bounds;
mod route_properties;
mod stack;
mod support;
mod token_cache;
mod tokens;
mod upstream_token;
