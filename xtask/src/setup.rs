//! `cargo xtask setup`: installs, idempotently, everything the README's two
//! commands need on a fresh Debian 12 machine with rustup's stable and
//! nightly toolchains. Each step checks first and says what it does.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::shell::{self, skip, step};

/// Debian packages: qemu and the kernels the VM suite boots (generic,
/// PREEMPT_RT and the 6.12 backport that Debian 12 ships, each with its
/// headers for building test modules), plus what the guest scenarios use.
pub const APT_PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "linux-image-amd64",
    "linux-headers-amd64",
    "linux-image-rt-amd64",
    "linux-headers-rt-amd64",
    "linux-image-6.12-amd64",
    "linux-headers-6.12-amd64",
    "kmod",
    "busybox-static",
    "cpio",
    "bpftool",
    "bpftrace",
    "tmux",
    "util-linux",
    "make",
    "gcc",
    // The debug-flavoured kernel, built from Debian's source (debug_kernel.rs).
    "linux-source-6.1",
    "bc",
    "flex",
    "bison",
    "libelf-dev",
    "libssl-dev",
    "dwarves",
    "xz-utils",
    // VM tests: a stranger's signing key for Debian's sign-file
    // (signatures.rs), and an ext4 image that fails under a capture
    // (trace_faults.rs).
    "openssl",
    "e2fsprogs",
    // The real Prometheus server that scrapes `--metrics` in the x86-64
    // guests (metrics.rs).
    "prometheus",
    // `cargo xtask dist` checks that its binary is static, and the test
    // installs its .deb and reads its man page and bash completion.
    "file",
    "man-db",
    "bash-completion",
    // arm64: the emulator, and the cross compiler for test modules and the
    // static aarch64 binaries (arm64.rs downloads the kernels).
    "qemu-system-arm",
    "gcc-aarch64-linux-gnu",
];

/// The static binaries' standard libraries (dist, the arm64 guests).
const MUSL_TARGETS: &[&str] = &["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];

/// virtme-ng boots the host's own root filesystem over 9p in the guest.
const VIRTME_NG: &str = "virtme-ng==1.42";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The real consumers the export tests query (`probe-user/tests/exports.rs`):
/// DuckDB, and Perfetto's generated protobuf classes with the runtime they
/// need.
const EXPORT_CONSUMERS: &[&str] = &["duckdb==2.0.1", "perfetto==0.59.1", "protobuf==7.36.2"];

pub fn run() -> anyhow::Result<()> {
    apt_packages()?;
    rust_src()?;
    musl_targets()?;
    require_root(
        "arm64 kernels",
        "dpkg --add-architecture arm64; apt-get download ...",
    )?;
    crate::arm64::ensure()?;
    bpf_linker()?;
    virtme_ng()?;
    export_consumers()?;
    tracefs()?;
    eprintln!("==> set-up complete");
    Ok(())
}

/// Steps that change the system need root; say which step and what it would do.
fn require_root(step: &str, instead: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "set-up step {step} needs root: run `sudo cargo xtask setup` once, or by hand: {instead}"
        );
    }
    Ok(())
}

/// The packages of `packages` dpkg does not have installed.
pub fn missing_packages<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            let status = shell::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]));
            status.as_deref() != Some("install ok installed")
        })
        .collect()
}

/// `apt-get install` of `packages` (`what` names the step).
pub fn apt_install(what: &str, packages: &[&str]) -> anyhow::Result<()> {
    shell::run(
        what,
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn apt_packages() -> anyhow::Result<()> {
    step(
        "Debian packages (qemu, generic/rt/6.12 kernels and headers, kmod, bpftool, bpftrace, tmux)",
    );
    let missing = missing_packages(APT_PACKAGES);
    if missing.is_empty() {
        skip("all packages");
        return Ok(());
    }
    require_root(
        "`apt-get install`",
        &format!("apt-get install {}", missing.join(" ")),
    )?;
    eprintln!("    installing: {}", missing.join(" "));
    shell::run(
        "set-up step `apt-get update` (is Debian's package registry reachable?)",
        Command::new("apt-get").args(["update", "-q"]),
    )?;
    apt_install("set-up step `apt-get install`", &missing)
}

fn rust_src() -> anyhow::Result<()> {
    step("rust-src for the nightly toolchain (eBPF builds use -Z build-std=core)");
    let installed = shell::output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))
        .context("set-up step rust-src: `rustup component list --toolchain nightly` failed; is the nightly toolchain installed?")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        skip("rust-src");
        return Ok(());
    }
    shell::run(
        "set-up step rust-src",
        Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
    )
}

fn musl_targets() -> anyhow::Result<()> {
    step("the musl targets' standard libraries (static binaries)");
    let installed = shell::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .unwrap_or_default();
    let missing: Vec<&str> = MUSL_TARGETS
        .iter()
        .copied()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        skip("musl targets");
        return Ok(());
    }
    shell::run(
        "set-up step rustup target add",
        Command::new("rustup")
            .args(["target", "add"])
            .args(&missing),
    )
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cargo"))
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
}

/// bpf-linker must use the LLVM that nightly rustc uses (22 here), which
/// Debian does not ship: it is linked against the toolchain's own libLLVM,
/// through a stable symlink the binary keeps as its rpath.
fn bpf_linker() -> anyhow::Result<()> {
    step(&format!(
        "bpf-linker {BPF_LINKER_VERSION}, linked against nightly's own libLLVM"
    ));
    let sysroot = shell::output(Command::new("rustc").args(["+nightly", "--print", "sysroot"]))
        .context("set-up step bpf-linker: `rustc +nightly --print sysroot` failed")?;
    let libdir = Path::new(sysroot.trim()).join("lib");
    // It finds libLLVM through the library path cargo gives rustc's tools.
    let linker = cargo_home().join("bin/bpf-linker");
    let version = shell::output(
        Command::new(&linker)
            .arg("--version")
            .env("LD_LIBRARY_PATH", &libdir),
    )
    .unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        skip(&format!("bpf-linker ({})", version.trim()));
        return Ok(());
    }
    let libllvm = std::fs::read_dir(&libdir)
        .with_context(|| format!("set-up step bpf-linker: reading {}", libdir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .with_context(|| {
            format!(
                "set-up step bpf-linker: no libLLVM.so.* in {}",
                libdir.display()
            )
        })?;
    let major = libllvm
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libLLVM.so."))
        .and_then(|v| v.split('.').next())
        .map(str::to_owned)
        .context("set-up step bpf-linker: cannot read the LLVM version from libLLVM's file name")?;
    let prefix = home().join(".cache/modscope/llvm");
    let link = prefix.join("lib/libLLVM.so");
    std::fs::create_dir_all(prefix.join("lib"))
        .with_context(|| format!("creating {}", prefix.display()))?;
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link).with_context(|| {
        format!(
            "set-up step bpf-linker: linking {} to {}",
            link.display(),
            libllvm.display()
        )
    })?;
    eprintln!(
        "    building bpf-linker against {} (LLVM {major}; about 3 minutes)",
        libllvm.display()
    );
    shell::run(
        "set-up step bpf-linker (is crates.io reachable?)",
        Command::new("cargo")
            .args([
                "+nightly",
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )
}

fn virtme_ng() -> anyhow::Result<()> {
    step("virtme-ng (boots the Debian kernels with this machine's root filesystem)");
    if shell::output(Command::new(vng()).arg("--version")).is_some() {
        skip("vng");
        return Ok(());
    }
    shell::run(
        "set-up step virtme-ng (is PyPI reachable?)",
        Command::new("python3").args(["-m", "pip", "install", "--quiet", VIRTME_NG]),
    )
}

fn export_consumers() -> anyhow::Result<()> {
    step("DuckDB and Perfetto's protobuf classes (what the export tests check against)");
    let have = Command::new("python3")
        .args(["-c", "import duckdb, google.protobuf, perfetto.protos"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        skip("duckdb, perfetto, protobuf");
        return Ok(());
    }
    shell::run(
        "set-up step DuckDB and Perfetto (is PyPI reachable?)",
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(EXPORT_CONSUMERS),
    )
}

/// The live probe's kprobes are managed through tracefs, which this kind
/// of machine does not mount by default.
fn tracefs() -> anyhow::Result<()> {
    step("tracefs at /sys/kernel/tracing");
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
    {
        skip("tracefs");
        return Ok(());
    }
    let supported = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if !supported.lines().any(|l| l.trim_end().ends_with("tracefs")) {
        eprintln!("    this kernel has no tracefs; live probes run in the VM instead");
        return Ok(());
    }
    require_root("tracefs", "mount -t tracefs tracefs /sys/kernel/tracing")?;
    shell::run(
        "set-up step tracefs",
        Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]),
    )
}

/// The `vng` to run: pip's scripts directory for this python3 first (a
/// fresh pyenv install may not have its shim yet), then PATH.
pub fn vng() -> PathBuf {
    let scripts = shell::output(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ]));
    match scripts.map(|dir| Path::new(dir.trim()).join("vng")) {
        Some(path) if path.exists() => path,
        _ => "vng".into(),
    }
}
