//! Compiles `herald/v1/*.proto` with a vendored `protoc`, so no system
//! install is needed, and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = ["herald/v1/common.proto", "herald/v1/registry.proto", "herald/v1/dispatch.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("herald_descriptor.bin"))
        .compile_with_config(config, &protos, &["."])?;
    Ok(())
}
