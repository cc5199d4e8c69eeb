use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

/// Builds probe-ebpf for the bpf target with aya-build and leaves the object
/// in OUT_DIR for `include_bytes_aligned!`. With AYA_BUILD_SKIP=1 an empty
/// placeholder is written instead, so `cargo check`, clippy and the host
/// unit tests work without nightly's rust-src or bpf-linker; such a binary
/// refuses live commands with a message that says how it was built.
fn main() -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let placeholder = out_dir.join("modscope-probe");
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    let skip = env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        fs::write(&placeholder, [])
            .with_context(|| format!("writing {}", placeholder.display()))?;
        return Ok(());
    }
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "probe-ebpf")
        .ok_or_else(|| anyhow!("probe-ebpf is not in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("probe-ebpf manifest has no parent directory"))?
        .as_str()
        .to_owned();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "probe-ebpf",
            root_dir: &root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
