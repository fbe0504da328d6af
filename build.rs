//! Compiles `proto/` with protox (pure Rust, no system `protoc`) into the
//! tonic server and client code, and writes the encoded descriptor set that
//! server reflection serves.

use std::path::PathBuf;

use anyhow::Context;
use prost::Message;

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["check.proto", "admin.proto", "watch.proto", "types.proto"].map(|f| format!("proto/warden/v1/{f}"));
    let descriptors = protox::compile(&files, ["proto"]).context("compiling proto/")?;

    // `file_descriptor_set_path` does nothing on the `compile_fds` path, so the
    // descriptor set for reflection is written here.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR is not set")?);
    std::fs::write(out_dir.join("warden_descriptor.bin"), descriptors.encode_to_vec())
        .context("writing the descriptor set")?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)
        .context("generating Rust code from proto/")?;
    Ok(())
}
