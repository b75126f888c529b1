//! cedargate's decision core: the request as cedargate sees it, the config as plain validated
//! data, identities and token claim rules, the mapping onto Cedar, the policy set, the decision,
//! and the decision record. No async runtime, no network, no keys: everything here is a
//! function of its inputs, so the server, the offline commands and the tests decide alike.
//!
//! # Layout
//!
//! In the order a decision needs them (each module imports only modules above it):
//!
//! - [`request`] — `HttpRequest`, the protocol-free request; [`routes`] — path templates and the
//!   route table.
//! - [`cedar_value`] — claim and constant values in Cedar's JSON form; [`api_keys`] — the API key
//!   format, the key file (salted hashes) and the constant-time check of a presented key.
//! - [`session`] — browser sessions, the pure parts: the sealed cookie (AES-256-GCM, rotating
//!   keys), return-URL and CSRF checks.
//! - [`config`] — `cedargate.yaml`: the raw file mirror, validation into a typed `Config`.
//! - [`token`] — verified-token types and the one set of token claim rules; [`identity`] — who is
//!   calling (types, bearer and mTLS extraction).
//! - [`mapping`] — request + identity → Cedar `(principal, action, resource, context)`.
//! - [`policy_folder`] — that the policy folder is a folder whose entries can all be followed;
//!   [`policy_text`] — a policy file cut into statements; [`policy`] — the policy set (load,
//!   merge of entity data, evaluation) through [`policy_index`]; [`shapes`] — the load-time
//!   check that policies fit what mapping builds.
//! - [`bundle`] — a policy folder packed into one signed file: format, manifest, archive checks;
//!   [`bundle_signature`] — its detached Ed25519 / ES256 signature.
//! - [`decision`] — every failure becomes a deny here, with one reason code.
//! - [`record`] — the decision record; [`redaction`] — what of a request a record may carry.
//!
//! # Invariants
//!
//! This crate never depends on tokio, tonic, reqwest or OpenTelemetry (`cargo tree -p
//! cedargate-core` shows it), never does network IO, and reads files only when asked to load a
//! config or a policy folder.

pub mod api_keys;
pub mod bundle;
pub mod bundle_signature;
pub mod cedar_value;
pub mod config;
pub mod decision;
pub mod decision_cache;
pub mod identity;
pub mod mapping;
pub mod policy;
pub mod policy_folder;
pub mod policy_index;
pub mod policy_text;
pub mod record;
pub mod redaction;
pub mod request;
pub mod routes;
pub mod session;
pub mod shapes;
pub mod token;
