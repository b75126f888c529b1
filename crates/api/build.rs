//! Compiles `proto/cedargate/v1/authorizer.proto` with no `protoc`: `protox` (a protobuf compiler
//! in Rust) parses it into a file descriptor set, `tonic-prost-build` generates the messages, the
//! client and the server from that set, and the set itself is written to `OUT_DIR` for gRPC
//! server reflection. A clean checkout builds with `cargo build` alone.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let file = proto_root.join("cedargate/v1/authorizer.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let descriptors = protox::compile([&file], [&proto_root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("cedargate_v1_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
