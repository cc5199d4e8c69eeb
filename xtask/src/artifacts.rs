//! Building what the VM needs: the modscope binary, the in-guest test
//! binaries, and the test modules against each guest kernel's headers.

use std::{
    io::BufRead as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

use crate::{
    kernels::{Arch, Kernel},
    shell,
};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds `modscope` (release: the guest runs under software emulation).
pub fn modscope() -> anyhow::Result<PathBuf> {
    shell::step("building modscope (release, with its eBPF programs)");
    shell::run(
        "building modscope",
        Command::new("cargo").args([
            "build",
            "--release",
            "--package",
            "probe-user",
            "--bin",
            "modscope",
        ]),
    )?;
    Ok(target_dir().join("release/modscope"))
}

/// The `modscope` a guest of `arch` runs: the host build on x86-64 (vng
/// boots the host's root), a static cross build on arm64 (its eBPF object
/// built for arm64's registers: aya-build follows the target).
pub fn modscope_for(arch: Arch) -> anyhow::Result<PathBuf> {
    match arch {
        Arch::X86_64 => modscope(),
        Arch::Arm64 => static_modscope(arch.musl_target()),
    }
}

/// A static `modscope` for `target` (settings in `.cargo/config.toml`).
pub fn static_modscope(target: &str) -> anyhow::Result<PathBuf> {
    shell::step(&format!("building a static modscope for {target}"));
    shell::run(
        &format!("building modscope for {target}"),
        Command::new("cargo")
            .args(["build", "--release", "--target", target])
            .args(["--package", "probe-user", "--bin", "modscope"]),
    )?;
    Ok(target_dir().join(target).join("release/modscope"))
}

/// Builds the VM test binaries for guests of `arch` without running them
/// (static for arm64's busybox userland); returns their paths.
pub fn vm_test_binaries(arch: Arch) -> anyhow::Result<Vec<PathBuf>> {
    shell::step(&format!("building the VM test binaries ({arch:?})"));
    let mut cmd = Command::new("cargo");
    cmd.args([
        "test",
        "--release",
        "--package",
        "vm-tests",
        "--no-run",
        "--message-format=json",
    ]);
    if arch == Arch::Arm64 {
        cmd.args(["--target", arch.musl_target()]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo test --no-run")?;
    let stdout = child.stdout.take().expect("piped");
    let mut binaries = Vec::new();
    for line in std::io::BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_test = msg["profile"]["test"].as_bool() == Some(true);
        if let (Some(exe), true) = (msg["executable"].as_str(), is_test) {
            binaries.push(PathBuf::from(exe));
        }
    }
    if !child.wait().context("waiting for cargo")?.success() {
        bail!("building the VM test binaries failed");
    }
    binaries.retain(|b| {
        b.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with("vm_tests-"))
    });
    if binaries.is_empty() {
        bail!("cargo built no VM test binaries");
    }
    Ok(binaries)
}

/// Builds the test modules in tests/modules against `kernel`'s headers, in
/// a directory of their own, and returns it.
pub fn test_modules(kernel: &Kernel) -> anyhow::Result<PathBuf> {
    let src = workspace_root().join("tests/modules");
    let out = target_dir().join("vm/modules").join(&kernel.release);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    for entry in std::fs::read_dir(&src).with_context(|| format!("listing {}", src.display()))? {
        let path = entry?.path();
        if path.is_file() {
            let dest = out.join(path.file_name().expect("file has a name"));
            std::fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
        }
    }
    let log = out.join("build.log");
    shell::run_logged(
        &format!("building the test modules for {}", kernel.release),
        Command::new("make")
            .arg("-C")
            .arg(&kernel.build_dir)
            .arg(format!("M={}", out.display()))
            .args(cross_compile(kernel.arch))
            .arg("modules"),
        &log,
    )?;
    Ok(out)
}

/// kbuild's cross-compilation variables for `arch` (none for the host's).
pub fn cross_compile(arch: Arch) -> Vec<&'static str> {
    match arch {
        Arch::X86_64 => Vec::new(),
        Arch::Arm64 => vec!["ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-"],
    }
}
