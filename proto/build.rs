//! Compiles `herald/v1/*.proto` with a vendored `protoc`, so no system
//! install is needed, and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["herald/v1/common.proto", "herald/v1/registry.proto", "herald/v1/dispatch.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_build::configure()
        .file_descriptor_set_path(out_dir.join("herald_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    Ok(())
}
