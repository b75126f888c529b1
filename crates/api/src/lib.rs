//! cedargate's own gRPC API, generated at build time from `proto/cedargate/v1/authorizer.proto`
//! (see `build.rs`: `protox` + `tonic-prost-build`, no `protoc`).
//!
//! # Layout
//!
//! - [`v1`] — package `cedargate.v1`: the `Authorizer` service's messages,
//!   [`v1::authorizer_client::AuthorizerClient`] for applications and
//!   [`v1::authorizer_server`] for `cedargate serve`.
//! - [`FILE_DESCRIPTOR_SET`] — the compiled descriptors, for gRPC server reflection.
//!
//! # Invariants
//!
//! Generated code and descriptors only: no decisions, no IO. Both the server and the example
//! clients depend on this crate, so they can't disagree about the wire format.

/// Package `cedargate.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("cedargate.v1");
}

/// The encoded `FileDescriptorSet` of `cedargate.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cedargate_v1_descriptor.bin"));
