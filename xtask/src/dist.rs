//! `cargo xtask dist`: a static (musl) `modscope` to copy onto a machine
//! that has no Rust and no matching libc, with its eBPF programs inside,
//! packed with the README and the licence into
//! `target/dist/modscope-VERSION-TARGET.tar.gz`, and as a Debian package,
//! `target/dist/modscope_VERSION_ARCH.deb` (`deb.rs`).
//!
//! Built for x86-64 and aarch64 (`.cargo/config.toml` holds the static
//! flags and arm64's cross linker): aya-build compiles the eBPF object for
//! the target's registers, so each binary attributes calls on its own
//! architecture.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

use crate::{artifacts, deb, shell};

const TARGETS: [&str; 2] = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

/// The packages built, per Debian architecture.
pub struct Built {
    pub debs: Vec<(&'static str, PathBuf)>,
}

pub fn run() -> anyhow::Result<Built> {
    let mut binaries = Vec::new();
    for target in TARGETS {
        shell::run(
            "rustup target add (the musl standard library)",
            Command::new("rustup").args(["target", "add", target]),
        )?;
        let binary = artifacts::static_modscope(target)?;
        check_static(&binary)?;
        let archive = pack(&binary, target)?;
        println!("dist: {}", archive.display());
        binaries.push((target, binary));
    }
    // The x86-64 binary runs here: it writes the pages and completions.
    let shared = deb::shared_files(&binaries[0].1)?;
    let mut debs = Vec::new();
    for (target, binary) in &binaries {
        let package = deb::build(binary, target, &shared)?;
        println!("dist: {}", package.display());
        debs.push((deb::debian_arch(target), package));
    }
    Ok(Built { debs })
}

/// A static executable has no program interpreter (`PT_INTERP`) and no
/// dynamic section; `file` says "statically linked" for it.
fn check_static(binary: &std::path::Path) -> anyhow::Result<()> {
    let said = shell::output(Command::new("file").arg("-b").arg(binary))
        .with_context(|| format!("running file on {}", binary.display()))?;
    if !said.contains("statically linked") {
        bail!(
            "{} is not statically linked: file says {said:?}",
            binary.display()
        );
    }
    Ok(())
}

/// `target/dist/modscope-VERSION-TARGET.tar.gz` with the binary, the README
/// and the licence under one folder of that name.
fn pack(binary: &std::path::Path, target: &str) -> anyhow::Result<PathBuf> {
    let root = artifacts::workspace_root();
    let name = format!("modscope-{}-{target}", env!("CARGO_PKG_VERSION"));
    let dist = artifacts::target_dir().join("dist");
    let stage = dist.join(&name);
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).with_context(|| format!("creating {}", stage.display()))?;
    for (from, to) in [
        (binary.to_owned(), "modscope"),
        (root.join("README.md"), "README.md"),
        (root.join("LICENSE"), "LICENSE"),
    ] {
        std::fs::copy(&from, stage.join(to))
            .with_context(|| format!("copying {} into {}", from.display(), stage.display()))?;
    }
    let archive = dist.join(format!("{name}.tar.gz"));
    shell::run(
        "packing the archive",
        Command::new("tar")
            .arg("-czf")
            .arg(&archive)
            .arg("-C")
            .arg(&dist)
            .arg(&name),
    )?;
    Ok(archive)
}
