//! cedargate: an Envoy ext_authz service that verifies who is calling (OIDC/OAuth2 JWTs, mTLS
//! peers), decides with Cedar policies, answers Envoy, and writes a replayable decision log.
//!
//! # Layout
//!
//! The request path, in order (see `ARCHITECTURE.md`):
//!
//! - [`grpc`] — the gRPC edge: `CheckRequest` → [`request::HttpRequest`], verdict → `CheckResponse`.
//! - [`gate`] — the pipeline: identity → decision → upstream token → decision log.
//! - [`identity`] — credential extraction; [`jwt`] verifies bearer tokens; [`jwks`] holds keys.
//! - [`mapping`] — request + identity → Cedar `(principal, action, resource, context)`;
//!   [`routes`] matches path templates.
//! - [`decision`] — the decision core (sync, no IO): every failure becomes a deny here.
//! - [`mint`] — on allow, the short-lived JWT cedargate signs for the upstream, and its keys
//!   (published at `/.well-known/jwks.json` on the admin port).
//! - [`policy`] — loading and evaluating the Cedar policy set, through [`policy_index`] (only
//!   the policies whose scope can match); [`shadow`] evaluates a candidate set beside it
//!   (recorded, never enforced).
//! - [`decision_log`] — versioned records, written off the request path; [`redaction`] decides
//!   what of the request a record may carry (header allow-list, trace id, redacted claims);
//!   [`decision_otlp`] sends records to an OpenTelemetry collector as OTLP logs.
//!
//! Around it: [`config`] (two-phase YAML config), [`server`] (wiring, drain), [`admin`] (probes),
//! [`reload`] (hot reload of config and policies), [`cli`] (the policy author's `validate`,
//! `test`, `check` and `schema` commands), [`metrics`] (Prometheus `/metrics`) and
//! [`telemetry`] (logs, and OTLP spans that join Envoy's traces).

pub mod admin;
pub mod cli;
pub mod config;
pub mod decision;
pub mod decision_log;
pub mod decision_otlp;
pub mod gate;
pub mod grpc;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod mapping;
pub mod metrics;
pub mod mint;
pub mod policy;
pub mod policy_index;
pub mod redaction;
pub mod reload;
pub mod request;
pub mod routes;
pub mod server;
pub mod shadow;
pub mod shapes;
pub mod telemetry;
