//! `cargo xtask lint`, the lint gate `cargo xtask test` runs first:
//! rustfmt's check over the workspace, clippy with `-D warnings` over the
//! host crates (all targets, the eBPF build skipped: AYA_BUILD_SKIP=1) and
//! over the eBPF crate for its own target. The workspace's `[lints]` table
//! (Cargo.toml) says which lints are errors.

use std::process::Command;

use crate::shell;

pub fn run() -> anyhow::Result<()> {
    shell::step(
        "lint gate: rustfmt --check, clippy -D warnings (host crates, then the eBPF crate)",
    );
    for (toolchain, components) in [
        ("stable", &["clippy", "rustfmt"][..]),
        ("nightly", &["clippy"][..]),
    ] {
        shell::run(
            "rustup component add (clippy, rustfmt)",
            Command::new("rustup")
                .args(["component", "add", "--toolchain", toolchain])
                .args(components),
        )?;
    }
    shell::run(
        "cargo fmt --check (run `cargo fmt --all` to fix)",
        Command::new("cargo").args(["fmt", "--all", "--check"]),
    )?;
    shell::run(
        "clippy on the host crates",
        Command::new("cargo")
            .env("AYA_BUILD_SKIP", "1")
            .env("CARGO_TARGET_DIR", "target/lint")
            .args([
                "clippy",
                "--workspace",
                "--exclude",
                "probe-ebpf",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
    )?;
    // The programs read each architecture's registers: lint both builds.
    for arch in ["x86_64", "aarch64"] {
        shell::run(
            &format!("clippy on the eBPF crate (bpfel-unknown-none, {arch} registers)"),
            Command::new("cargo")
                .current_dir("probe-ebpf")
                .env("CARGO_TARGET_DIR", format!("../target/lint-ebpf-{arch}"))
                .env("AYA_BPF_TARGET_ARCH", arch)
                .args([
                    "+nightly",
                    "clippy",
                    "--release",
                    "--target",
                    "bpfel-unknown-none",
                    "-Z",
                    "build-std=core",
                    "--",
                    "-D",
                    "warnings",
                ]),
        )?;
    }
    Ok(())
}
