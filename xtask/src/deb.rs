//! The `.deb` packages `cargo xtask dist` builds, one per architecture,
//! with dpkg-deb: the static binary, the man pages and shell completions
//! (made by the x86-64 binary from its own clap definition: they are the
//! same for every architecture), the systemd unit for headless capture and
//! its settings file, and the README.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{artifacts, shell};

/// Debian's name for a Rust musl target's architecture.
pub fn debian_arch(target: &str) -> &'static str {
    if target.starts_with("aarch64") {
        "arm64"
    } else {
        "amd64"
    }
}

/// What every package holds besides the binary, made once.
pub struct SharedFiles {
    dir: PathBuf,
}

/// The man pages and completions, made by running `host_binary`.
pub fn shared_files(host_binary: &Path) -> anyhow::Result<SharedFiles> {
    let dir = artifacts::target_dir().join("dist/shared");
    let _ = std::fs::remove_dir_all(&dir);
    let man = dir.join("man");
    shell::run(
        "writing the man pages",
        Command::new(host_binary).arg("manpages").arg(&man),
    )?;
    shell::run(
        "compressing the man pages",
        Command::new("sh")
            .arg("-c")
            .arg(format!("gzip -9n {}/*.1", man.display())),
    )?;
    for shell_name in ["bash", "zsh", "fish"] {
        let script = shell::output(Command::new(host_binary).args(["completions", shell_name]))
            .with_context(|| format!("modscope completions {shell_name}"))?;
        std::fs::write(dir.join(format!("completion.{shell_name}")), script)?;
    }
    Ok(SharedFiles { dir })
}

/// `target/dist/modscope_VERSION_ARCH.deb`.
pub fn build(binary: &Path, target: &str, shared: &SharedFiles) -> anyhow::Result<PathBuf> {
    let root = artifacts::workspace_root();
    let arch = debian_arch(target);
    let version = env!("CARGO_PKG_VERSION");
    let dist = artifacts::target_dir().join("dist");
    let stage = dist.join(format!("deb-{arch}"));
    let _ = std::fs::remove_dir_all(&stage);
    let packaging = root.join("packaging");
    let mut files: Vec<(PathBuf, &str, u32)> = vec![
        (binary.to_owned(), "usr/bin/modscope", 0o755),
        (
            packaging.join("modscope-record.service"),
            "lib/systemd/system/modscope-record.service",
            0o644,
        ),
        (packaging.join("default"), "etc/default/modscope", 0o644),
        (
            root.join("README.md"),
            "usr/share/doc/modscope/README.md",
            0o644,
        ),
        (
            packaging.join("copyright"),
            "usr/share/doc/modscope/copyright",
            0o644,
        ),
        (
            shared.dir.join("completion.bash"),
            "usr/share/bash-completion/completions/modscope",
            0o644,
        ),
        (
            shared.dir.join("completion.zsh"),
            "usr/share/zsh/vendor-completions/_modscope",
            0o644,
        ),
        (
            shared.dir.join("completion.fish"),
            "usr/share/fish/vendor_completions.d/modscope.fish",
            0o644,
        ),
        (packaging.join("postinst"), "DEBIAN/postinst", 0o755),
        (packaging.join("postrm"), "DEBIAN/postrm", 0o755),
    ];
    let pages = man_pages(&shared.dir.join("man"))?;
    let page_paths: Vec<String> = pages
        .iter()
        .map(|p| {
            format!(
                "usr/share/man/man1/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            )
        })
        .collect();
    for (page, to) in pages.iter().zip(&page_paths) {
        files.push((page.clone(), to.as_str(), 0o644));
    }
    for (from, to, mode) in &files {
        install(from, &stage.join(to), *mode)?;
    }
    std::fs::write(stage.join("DEBIAN/conffiles"), "/etc/default/modscope\n")?;
    std::fs::write(
        stage.join("DEBIAN/control"),
        control(arch, version, installed_kib(&stage)?),
    )?;
    let deb = dist.join(format!("modscope_{version}_{arch}.deb"));
    shell::run(
        "dpkg-deb --build",
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    pages.sort();
    Ok(pages)
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The package's size in KiB, as dpkg wants it (everything but DEBIAN/).
fn installed_kib(stage: &Path) -> anyhow::Result<u64> {
    let out = shell::output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(stage),
    )
    .context("du of the package tree")?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du's answer")
}

fn control(arch: &str, version: &str, kib: u64) -> String {
    format!(
        "Package: modscope
Version: {version}
Architecture: {arch}
Maintainer: modscope developers <modscope@example.invalid>
Installed-Size: {kib}
Section: admin
Priority: optional
Recommends: kmod
Homepage: https://example.invalid/modscope
Description: watch what Linux kernel modules do, and flag the unsafe ones
 modscope checks module files against the running kernel with the loader's
 own rules (vermagic, CRCs, struct layouts, signatures), counts every call
 each module makes with eBPF, catches layout and lock-debug mismatches at
 run time, and shows it all live in a terminal UI. Traces export to Parquet,
 JSON lines and Perfetto. A static binary: no runtime dependencies.
"
    )
}
