//! `cedargate serve`: the Envoy ext_authz gRPC edge and everything that waits — token
//! verification with JWKS fetching, the entity provider, upstream-token minting, decision-log
//! writers, hot reload, the admin port, metrics and traces — around the pure decision core
//! (`cedargate_core`).
//!
//! # Layout
//!
//! The request path, in order (see `ARCHITECTURE.md`):
//!
//! - [`grpc`] — the gRPC edge: `CheckRequest` → `HttpRequest`, verdict → `CheckResponse`.
//! - [`gate`] — the pipeline: identity → decision → upstream token → decision log.
//! - [`identity`] resolves the caller with [`jwt`] (bearer verification), which reads keys from
//!   [`jwks`]; [`introspection`] (RFC 7662, opaque tokens) and [`api_keys`] (the key file,
//!   watched) are its other sources.
//! - [`sso`] — browser single sign-on: login redirect, callback, sealed session cookie, logout
//!   (answers as ext_authz denied responses; a session's access token goes through [`jwt`]).
//! - [`authorizer`] — cedargate's own `cedargate.v1.Authorizer` gRPC API for application code:
//!   the same identity, policies, entities and decision log, asked directly (`authorizer::ask`).
//! - [`mint`] — on allow, the short-lived JWT cedargate signs for the upstream, and its keys.
//! - [`shadow`] — a candidate policy set evaluated beside the enforced one (recorded only).
//! - [`decision_log`] — records written off the request path; [`decision_otlp`] sends them to an
//!   OpenTelemetry collector.
//!
//! Around it: [`server`] (wiring, drain), [`admin`] (probes, `/metrics`, JWKS), [`reload`] (hot
//! reload of config and policies, and of the signed policy bundles [`bundle_fetch`] polls for),
//! [`metrics`] (Prometheus) and [`telemetry`] (logs, spans). [`probe`] is the other side of the
//! admin port: `cedargate health` asking a running server.
//!
//! # Invariants
//!
//! Never imports `cedargate-cli`: the offline commands and the server share only the core.

pub mod admin;
pub mod api_keys;
pub mod authorizer;
pub mod bundle_fetch;
pub mod decision_log;
pub mod decision_otlp;
pub mod entity_provider;
pub mod gate;
pub mod grpc;
pub mod identity;
pub mod introspection;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod mint;
pub mod probe;
pub mod reload;
pub mod server;
pub mod shadow;
pub mod sso;
pub mod telemetry;
