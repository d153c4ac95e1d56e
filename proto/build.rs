//! Generates the `cairn.v1` tonic code from `cairn/v1/*.proto`.
//!
//! protoc comes from the `protoc-bin-vendored` crate, so a clean clone needs no
//! system protobuf compiler; set `PROTOC` to use another one.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // prost-build takes the protoc path only from the PROTOC variable.
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        set_protoc(protoc);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["cairn/v1/retrieval.proto", "cairn/v1/indexer.proto"];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("cairn_v1_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}

#[allow(unsafe_code)]
fn set_protoc(path: PathBuf) {
    // SAFETY: build scripts run single-threaded; no other thread reads the environment.
    unsafe { std::env::set_var("PROTOC", path) };
}
