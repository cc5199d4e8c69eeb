//! Debian's arm64 kernels for the VM suite, booted under
//! `qemu-system-aarch64` (software emulation) from this x86-64 machine.
//!
//! - `ensure` (set-up): downloads the arm64 kernel images and headers named
//!   by Debian's meta packages and a static busybox, and unpacks them under
//!   `root()` without installing them (`dpkg -x`); the headers' kbuild and
//!   common trees are the host's own packages (arch-independent, or x86-64
//!   host tools), installed by apt.
//! - `command`: qemu `-M virt` with a fixed CPU (qemu 7.2's `max`, the one
//!   model with pointer authentication, which Debian's arm64 kernels use),
//!   the kernel's Image, and an initramfs (`initramfs`) whose init loads
//!   9p, mounts the project, `/tmp` and the unpacked kernel tree at the
//!   host's paths, runs the script named on the command line and powers off.
//! - `ensure_bpftrace` (the probe bench only): Debian's arm64 bpftrace and
//!   every library it links, unpacked into the same tree; the guest's init
//!   puts it on the PATH when it is there.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{
    artifacts,
    kernels::Kernel,
    setup,
    shell::{self, skip, step},
};

/// Debian's meta packages: each depends on the current ABI's package.
const META_PACKAGES: &[&str] = &[
    "linux-image-arm64",
    "linux-headers-arm64",
    "linux-image-rt-arm64",
    "linux-headers-rt-arm64",
    "linux-image-6.12-arm64",
    "linux-headers-6.12-arm64",
];
const BUSYBOX: &str = "busybox-static";
/// tmux and what it links, for the live TUI's terminal test: run from the
/// unpacked tree through glibc's loader (the only dynamic program there).
const TMUX: &[&str] = &[
    "tmux",
    "libc6",
    // Its C.utf8 locale: tmux wants UTF-8.
    "libc-bin",
    "libevent-core-2.1-7",
    "libtinfo6",
    "libutempter0",
    "ncurses-base",
];
/// Of those, the architecture-independent ones (`_all.deb`).
const ARCH_ALL: &[&str] = &["ncurses-base"];
/// What the initramfs loads, in dependency order, for the 9p shares.
const NINE_P: &[&str] = &[
    "virtio_mmio",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
];

pub fn root() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
        .join(".cache/modscope/arm64")
}

/// Downloads and unpacks what is missing (idempotent).
pub fn ensure() -> anyhow::Result<()> {
    step("Debian's arm64 kernels and headers, unpacked for qemu-system-aarch64");
    foreign_architecture()?;
    let debs = root().join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let mut packages: Vec<String> = vec![BUSYBOX.into()];
    packages.extend(TMUX.iter().map(|p| (*p).to_owned()));
    for meta in META_PACKAGES {
        packages.push(first_dependency(meta)?);
    }
    let mut host_needs = Vec::new();
    for package in &packages {
        let deb = download(package, &debs)?;
        unpack(&deb)?;
        if package.starts_with("linux-headers-") {
            host_needs.extend(host_dependencies(package)?);
        }
    }
    host_needs.sort();
    host_needs.dedup();
    install_host_packages(&host_needs)?;
    link_kbuild(&host_needs)
}

/// The probe bench's baselines (empty kprobe, empty fentry, bpftrace's
/// attribution) in the arm64 guests: bpftrace and its dependency closure,
/// downloaded and unpacked once (not by set-up: the VM suite needs none).
pub fn ensure_bpftrace() -> anyhow::Result<()> {
    step("Debian's arm64 bpftrace and its libraries, for the probe bench's baselines");
    foreign_architecture()?;
    let debs = root().join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    for package in dependency_closure(BPFTRACE)? {
        unpack(&download(&package, &debs)?)?;
    }
    Ok(())
}

const BPFTRACE: &str = "bpftrace";

/// `package:arm64` and every package it depends on, recursively (apt's own
/// resolution; the first of each set of alternatives).
fn dependency_closure(package: &str) -> anyhow::Result<Vec<String>> {
    let listed = shell::output(Command::new("apt-cache").args([
        "depends",
        "--recurse",
        "--no-recommends",
        "--no-suggests",
        "--no-conflicts",
        "--no-breaks",
        "--no-replaces",
        "--no-enhances",
        &format!("{package}:arm64"),
    ]))
    .with_context(|| format!("apt-cache depends {package}:arm64"))?;
    Ok(closure_names(&listed))
}

/// The package names of `apt-cache depends --recurse`'s output: its
/// unindented lines, the arm64 ones (virtual packages are in angle brackets).
fn closure_names(listed: &str) -> Vec<String> {
    let mut names: Vec<String> = listed
        .lines()
        .filter(|l| !l.starts_with(char::is_whitespace))
        .filter_map(|l| l.trim().strip_suffix(":arm64"))
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn foreign_architecture() -> anyhow::Result<()> {
    let foreign = shell::output(Command::new("dpkg").arg("--print-foreign-architectures"))
        .unwrap_or_default();
    if foreign.lines().any(|l| l.trim() == "arm64") {
        return Ok(());
    }
    shell::run(
        "dpkg --add-architecture arm64 (to download arm64 packages)",
        Command::new("dpkg").args(["--add-architecture", "arm64"]),
    )?;
    shell::run(
        "apt-get update (arm64 package lists)",
        Command::new("apt-get").args(["update", "-q"]),
    )
}

/// `Depends` of `package:arm64`, as package names (no versions, no
/// alternatives).
fn dependencies(package: &str) -> anyhow::Result<Vec<String>> {
    let shown = shell::output(Command::new("apt-cache").args([
        "show",
        "--no-all-versions",
        &format!("{package}:arm64"),
    ]))
    .with_context(|| format!("apt-cache show {package}:arm64 (is the arm64 list there?)"))?;
    let depends = shown
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .unwrap_or_default();
    Ok(depends
        .split(',')
        .filter_map(|d| d.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

fn first_dependency(meta: &str) -> anyhow::Result<String> {
    dependencies(meta)?
        .into_iter()
        .next()
        .with_context(|| format!("{meta}:arm64 depends on nothing"))
}

/// The headers' kbuild and common trees: the host's own packages.
fn host_dependencies(headers: &str) -> anyhow::Result<Vec<String>> {
    Ok(dependencies(headers)?
        .into_iter()
        .filter(|d| d.starts_with("linux-kbuild-") || d.starts_with("linux-headers-"))
        .map(|d| d.trim_end_matches(":arm64").to_owned())
        .collect())
}

fn download(package: &str, debs: &Path) -> anyhow::Result<PathBuf> {
    let find = || {
        std::fs::read_dir(debs)
            .ok()?
            .filter_map(Result::ok)
            .find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let arch_ok = name.ends_with("_arm64.deb") || name.ends_with("_all.deb");
                (name.starts_with(&format!("{package}_")) && arch_ok).then(|| e.path())
            })
    };
    if let Some(deb) = find() {
        return Ok(deb);
    }
    // Architecture-independent packages have no arm64 name.
    let name = if ARCH_ALL.contains(&package) {
        package.to_owned()
    } else {
        format!("{package}:arm64")
    };
    shell::run(
        &format!("apt-get download {name}"),
        Command::new("apt-get")
            .args(["download", "-q", "-o", "APT::Sandbox::User=root"])
            .arg(&name)
            .current_dir(debs),
    )?;
    find().with_context(|| {
        format!(
            "apt-get download left no {package} .deb in {}",
            debs.display()
        )
    })
}

fn unpack(deb: &Path) -> anyhow::Result<()> {
    let name = deb.file_name().expect("a .deb file").to_string_lossy();
    let marker = root().join(".unpacked").join(name.as_ref());
    if marker.exists() {
        skip(&format!("{name} (unpacked)"));
        return Ok(());
    }
    shell::run(
        &format!("unpacking {name}"),
        Command::new("dpkg").arg("-x").arg(deb).arg(root()),
    )?;
    std::fs::create_dir_all(marker.parent().expect("under root"))?;
    std::fs::write(&marker, "").with_context(|| format!("writing {}", marker.display()))
}

fn install_host_packages(packages: &[String]) -> anyhow::Result<()> {
    let names: Vec<&str> = packages.iter().map(String::as_str).collect();
    let missing = setup::missing_packages(&names);
    if missing.is_empty() {
        return Ok(());
    }
    setup::apt_install(
        "apt-get install (the arm64 headers' kbuild and common trees)",
        &missing,
    )
}

/// The headers' `scripts` link `../../lib/linux-kbuild-*`: point the
/// unpacked tree's `usr/lib/linux-kbuild-*` at the host's (x86-64 tools
/// that build for any architecture).
fn link_kbuild(host_packages: &[String]) -> anyhow::Result<()> {
    let lib = root().join("usr/lib");
    std::fs::create_dir_all(&lib)?;
    for kbuild in host_packages
        .iter()
        .filter(|p| p.starts_with("linux-kbuild-"))
    {
        let link = lib.join(kbuild);
        if link.exists() {
            continue;
        }
        std::os::unix::fs::symlink(Path::new("/usr/lib").join(kbuild), &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    Ok(())
}

/// The initramfs for `kernel` (cached beside the unpacked tree).
pub fn initramfs(kernel: &Kernel) -> anyhow::Result<PathBuf> {
    let out = root().join(format!("initramfs-{}.cpio.gz", kernel.release));
    let init = init_script();
    let stamp = root().join(format!("initramfs-{}.init", kernel.release));
    if out.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(init.as_str()) {
        return Ok(out);
    }
    let stage = root().join(format!("initramfs-{}", kernel.release));
    let _ = std::fs::remove_dir_all(&stage);
    for dir in ["bin", "proc", "sys", "dev", "tmp", "mods", "arm64"] {
        std::fs::create_dir_all(stage.join(dir))?;
    }
    std::fs::copy(root().join("bin/busybox"), stage.join("bin/busybox"))
        .context("copying the arm64 busybox (run `cargo xtask setup`)")?;
    let modules = root().join("lib/modules").join(&kernel.release);
    for name in NINE_P {
        copy_module(&modules, name, &stage.join("mods"))?;
    }
    std::fs::write(stage.join("init"), &init)?;
    std::fs::set_permissions(
        stage.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    shell::run(
        "packing the arm64 initramfs",
        Command::new("sh").arg("-c").arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
            stage.display(),
            out.display()
        )),
    )?;
    std::fs::write(&stamp, init)?;
    Ok(out)
}

/// Copies `name.ko` (decompressed when the kernel ships `.ko.xz`).
fn copy_module(modules: &Path, name: &str, to: &Path) -> anyhow::Result<()> {
    let found = walk(modules).into_iter().find(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n == format!("{name}.ko") || n == format!("{name}.ko.xz"))
    });
    let Some(found) = found else {
        // fscache is part of netfs on newer kernels.
        if name == "fscache" {
            return Ok(());
        }
        bail!("{name}.ko is not under {}", modules.display());
    };
    let dest = to.join(format!("{name}.ko"));
    if found.extension().is_some_and(|e| e == "xz") {
        let plain = shell::output(Command::new("sh").arg("-c").arg(format!(
            "xz -dc '{}' > '{}' && echo done",
            found.display(),
            dest.display()
        )));
        if plain.as_deref().map(str::trim) != Some("done") {
            bail!("decompressing {}", found.display());
        }
    } else {
        std::fs::copy(&found, &dest).with_context(|| format!("copying {}", found.display()))?;
    }
    Ok(())
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The guest's `/init`: busybox, 9p, the host's paths, the script, a marker.
fn init_script() -> String {
    let project = artifacts::workspace_root();
    format!(
        "#!/bin/busybox sh\n\
         /bin/busybox --install -s /bin\n\
         export PATH=/bin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n\
         mount -t tracefs tracefs /sys/kernel/tracing\n\
         mount -t debugfs debugfs /sys/kernel/debug\n\
         mount -t bpf bpf /sys/fs/bpf\n\
         for m in {mods}; do [ -e /mods/$m.ko ] && insmod /mods/$m.ko; done\n\
         nine() {{ mkdir -p \"$2\"; mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 \"$1\" \"$2\"; }}\n\
         nine hosttmp /tmp\n\
         nine project '{project}'\n\
         nine arm64 /arm64\n\
         mkdir -p /lib /usr/bin /usr/lib /usr/share /dev/pts /run; ln -s /arm64/boot /boot\n\
         mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run\n\
         # tmux (glibc, from the unpacked tree); its sockets on tmpfs, not 9p.\n\
         ln -s /arm64/lib/ld-linux-aarch64.so.1 /lib/ld-linux-aarch64.so.1\n\
         ln -s /arm64/lib/aarch64-linux-gnu /lib/aarch64-linux-gnu\n\
         ln -s /arm64/usr/lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu\n\
         ln -s /arm64/usr/bin/tmux /usr/bin/tmux; ln -s /arm64/lib/terminfo /lib/terminfo\n\
         # bpftrace, where the probe bench unpacked it (`ensure_bpftrace`).\n\
         [ -e /arm64/usr/bin/bpftrace ] && ln -s /arm64/usr/bin/bpftrace /usr/bin/bpftrace\n\
         ln -s /arm64/usr/share/terminfo /usr/share/terminfo\n\
         ln -s /arm64/usr/lib/locale /usr/lib/locale\n\
         export TMUX_TMPDIR=/run LC_CTYPE=C.UTF-8\n\
         # /lib/modules/RELEASE writable (tests add extra/), its contents the kernel's.\n\
         r=$(uname -r); mkdir -p /lib/modules/$r\n\
         for e in /arm64/lib/modules/$r/*; do ln -s \"$e\" /lib/modules/$r/; done\n\
         ln -s /arm64/usr/src /usr/src\n\
         script=$(sed -n 's/.*modscope.script=\\([^ ]*\\).*/\\1/p' /proc/cmdline)\n\
         sh \"$script\"\n\
         echo \"MODSCOPE-GUEST-EXIT $?\"\n\
         sync\n\
         poweroff -f\n",
        mods = NINE_P.join(" "),
        project = project.display(),
    )
}

/// qemu-system-aarch64 booting `kernel` with the script `script`.
pub fn command(kernel: &Kernel, script: &Path) -> anyhow::Result<Command> {
    let initramfs = initramfs(kernel)?;
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args([
        "-M",
        "virt",
        "-cpu",
        "max,pauth-impdef=on",
        "-smp",
        "2",
        "-m",
        "1G",
    ])
    .args(["-accel", "tcg,thread=single", "-nographic", "-no-reboot"])
    .arg("-kernel")
    .arg(&kernel.image)
    .arg("-initrd")
    .arg(&initramfs)
    .arg("-append")
    .arg(format!(
        "console=ttyAMA0 panic=-1 modscope.script={}",
        script.display()
    ));
    for (tag, path, readonly) in [
        ("hosttmp", PathBuf::from("/tmp"), false),
        ("project", artifacts::workspace_root(), false),
        ("arm64", root(), true),
    ] {
        cmd.arg("-fsdev").arg(format!(
            "local,id={tag},path={},security_model=none{}",
            path.display(),
            if readonly { ",readonly=on" } else { "" }
        ));
        cmd.arg("-device")
            .arg(format!("virtio-9p-device,fsdev={tag},mount_tag={tag}"));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_closure_keeps_the_arm64_packages_once_and_drops_virtual_ones() {
        let listed = "bpftrace:arm64\n  Depends: libc6:arm64\n  Depends: libllvm14:arm64\n\
                      libc6:arm64\n  Depends: libgcc-s1:arm64\n<debconf-2.0>\n\
                      libllvm14:arm64\nlibc6:arm64\nlibgcc-s1:arm64\n";
        assert_eq!(
            closure_names(listed),
            ["bpftrace", "libc6", "libgcc-s1", "libllvm14"]
        );
    }
}
