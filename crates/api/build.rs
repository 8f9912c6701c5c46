//! Compiles `proto/` with protox (no system `protoc`) and generates tonic clients and servers.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "doorstep/v1/complaints.proto",
        "doorstep/v1/contractors.proto",
        "doorstep/v1/escalations.proto",
        "doorstep/v1/events.proto",
        "doorstep/v1/inspections.proto",
        "doorstep/v1/performance.proto",
    ];
    let descriptors = protox::compile(files, [&proto_root])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("doorstep_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    Ok(())
}
