//! The debug-flavoured kernel of the VM suite: Debian's own 6.1 source
//! (`linux-source-6.1`) on a trimmed config with lock debugging on
//! (DEBUG_SPINLOCK, DEBUG_MUTEXES, DEBUG_LOCK_ALLOC, which brings LOCKDEP),
//! keeping what modscope and virtme-ng need (modules with modversions and
//! forced loads, kprobes, BPF, BTF, 9p root). Built once, cached under
//! `~/.cache/modscope/debug-kernel`, and installed like any other kernel
//! (`/boot/vmlinuz-<release>`, `/boot/config-<release>`,
//! `/lib/modules/<release>/build` → the tree), so the suite and modscope
//! find it the usual way. About 10 minutes on 2 cores; a stamp of the
//! option list and the source tarball decides when to rebuild.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, bail};

use crate::shell::{self, skip, step};

/// Debian's packaged source of the generic 6.1 kernel.
const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";
const SOURCE_DIR: &str = "linux-source-6.1";
/// Appended to the release, so it never collides with a Debian kernel.
pub const LOCALVERSION: &str = "-modscope-debug";

/// On top of `make tinyconfig`. Grouped by why they are there.
const OPTIONS: &[&str] = &[
    // The point of this kernel: lock debugging changes spinlock_t,
    // struct mutex and everything that embeds them.
    "DEBUG_KERNEL",
    "DEBUG_SPINLOCK",
    "DEBUG_MUTEXES",
    "DEBUG_LOCK_ALLOC",
    // Modules the way Debian builds them, and forced loads.
    "MODULES",
    "MODULE_UNLOAD",
    "MODVERSIONS",
    "MODULE_FORCE_LOAD",
    "KALLSYMS",
    "KALLSYMS_ALL",
    // What modscope's probes use.
    "PERF_EVENTS",
    "TRACEPOINTS",
    "KPROBES",
    "FTRACE",
    "FUNCTION_TRACER",
    "DYNAMIC_FTRACE",
    "KPROBE_EVENTS",
    "BPF",
    "BPF_SYSCALL",
    "BPF_JIT",
    "BPF_EVENTS",
    // `modscope guard`'s programs (BPF-LSM; `bpf` is in CONFIG_LSM's
    // default list). struct module does not depend on either.
    "SECURITY",
    "BPF_LSM",
    "DEBUG_INFO",
    "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT",
    "DEBUG_INFO_BTF",
    "DEBUG_INFO_BTF_MODULES",
    "DEBUG_FS",
    "IKCONFIG",
    "IKCONFIG_PROC",
    "JUMP_LABEL",
    // `struct module` exactly as Debian's generic 6.1 has it (the loader
    // compares its size even under -f), so a module built for the generic
    // kernel can be force-loaded here: every option its layout depends on,
    // and what its imports need (return thunks, stack protector, BUG).
    "BUG",
    "GENERIC_BUG",
    "LIVEPATCH",
    "MODULE_SIG",
    "UNWINDER_ORC",
    "CPU_MITIGATIONS",
    "RETPOLINE",
    "RETHUNK",
    "CPU_UNRET_ENTRY",
    "CPU_IBPB_ENTRY",
    "CPU_IBRS_ENTRY",
    "CPU_SRSO",
    "SLS",
    "MITIGATION_ITS",
    "STACKPROTECTOR",
    "STACKPROTECTOR_STRONG",
    // A userland: the host's, over 9p (virtme-ng), with tmux and a shell.
    "64BIT",
    "SMP",
    "PRINTK",
    "TTY",
    "VT",
    "UNIX98_PTYS",
    "SERIAL_8250",
    "SERIAL_8250_CONSOLE",
    "BLK_DEV_INITRD",
    "RD_GZIP",
    "BINFMT_ELF",
    "BINFMT_SCRIPT",
    "PROC_FS",
    "PROC_SYSCTL",
    "SYSFS",
    "DEVTMPFS",
    "DEVTMPFS_MOUNT",
    "TMPFS",
    "SHMEM",
    "MULTIUSER",
    "FUTEX",
    "EPOLL",
    "EVENTFD",
    "SIGNALFD",
    "TIMERFD",
    "POSIX_TIMERS",
    "FILE_LOCKING",
    "INOTIFY_USER",
    "FHANDLE",
    "SYSVIPC",
    "CGROUPS",
    "BLOCK",
    "PCI",
    "PCI_MSI",
    "VIRTIO_MENU",
    "VIRTIO",
    "VIRTIO_PCI",
    "VIRTIO_CONSOLE",
    "NET",
    "UNIX",
    "INET",
    "NETWORK_FILESYSTEMS",
    "NET_9P",
    "NET_9P_VIRTIO",
    "9P_FS",
    "9P_FS_POSIX_ACL",
    "OVERLAY_FS",
];

fn cache_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/root".into())
        .join(".cache/modscope/debug-kernel")
}

/// What the build depends on: the option list and the tarball's size and
/// modification time (a new Debian upload rebuilds).
fn stamp() -> anyhow::Result<String> {
    let meta = std::fs::metadata(SOURCE_TARBALL)
        .with_context(|| format!("{SOURCE_TARBALL} (Debian's linux-source-6.1 package)"))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    Ok(format!(
        "tarball {} {mtime}\nlocalversion {LOCALVERSION}\noptions {}\n",
        meta.len(),
        OPTIONS.join(" ")
    ))
}

/// The release string of the installed debug kernel, if it is installed and
/// current.
pub fn installed_release() -> Option<String> {
    let dir = cache_dir();
    let done = std::fs::read_to_string(dir.join("installed")).ok()?;
    let (release, recorded) = done.split_once('\n')?;
    (recorded == stamp().ok()?
        && Path::new(&format!("/boot/vmlinuz-{release}")).exists()
        && Path::new(&format!("/lib/modules/{release}/build/Makefile")).exists())
    .then(|| release.to_owned())
}

/// Builds and installs the debug kernel unless the current one is there
/// (a build `build_in_background` finished is only installed).
pub fn ensure() -> anyhow::Result<()> {
    step("debug-flavoured kernel (Debian's 6.1 source, lock debugging on; built once, cached)");
    if let Some(release) = installed_release() {
        skip(&format!("debug kernel {release}"));
        return Ok(());
    }
    let tree = build()?;
    let release = make_output(&tree, "kernelrelease")?;
    install(&tree, &release)?;
    std::fs::write(
        cache_dir().join("installed"),
        format!("{release}\n{}", stamp()?),
    )?;
    eprintln!("    debug kernel {release} installed");
    Ok(())
}

/// Builds the debug kernel (without installing it) on a thread of its own
/// at the lowest priority, so that it takes the cores the host tests leave
/// idle (cargo's serial steps, single-threaded tests). Nothing is
/// installed: the host tests read /boot. `ensure` installs it later.
pub fn build_in_background() -> std::thread::JoinHandle<anyhow::Result<()>> {
    std::thread::spawn(|| {
        if installed_release().is_some() {
            return Ok(());
        }
        // SAFETY: setpriority on the calling thread (who 0 is the thread
        // under PRIO_PROCESS on Linux); the children it starts inherit it.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
        build().map(|_| ())
    })
}

/// The built tree, built now unless the current build is there.
fn build() -> anyhow::Result<PathBuf> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let tree = dir.join(SOURCE_DIR);
    let built_stamp = dir.join("built");
    if std::fs::read_to_string(&built_stamp).ok() == Some(stamp()?) {
        return Ok(tree);
    }
    let start = Instant::now();
    if !tree.join("Makefile").exists() {
        eprintln!("    unpacking {SOURCE_TARBALL}");
        shell::run(
            "unpacking the kernel source",
            Command::new("tar")
                .arg("xJf")
                .arg(SOURCE_TARBALL)
                .arg("-C")
                .arg(&dir),
        )?;
    }
    configure(&tree)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!("    building bzImage and modules with {jobs} jobs (about 10 minutes on 2 cores)");
    shell::run_logged(
        "building the debug kernel",
        Command::new("make")
            .current_dir(&tree)
            .arg(format!("-j{jobs}"))
            .args(["bzImage", "modules"]),
        &dir.join("build.log"),
    )?;
    std::fs::write(&built_stamp, stamp()?)?;
    eprintln!(
        "    debug kernel built in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(tree)
}

fn configure(tree: &Path) -> anyhow::Result<()> {
    shell::run(
        "make tinyconfig",
        Command::new("make")
            .current_dir(tree)
            .arg("tinyconfig")
            .stdout(std::process::Stdio::null()),
    )?;
    let mut config = Command::new("scripts/config");
    config.current_dir(tree);
    for option in OPTIONS {
        config.args(["-e", option]);
    }
    config.args(["--set-str", "LOCALVERSION", LOCALVERSION]);
    config.args(["-d", "LOCALVERSION_AUTO"]);
    shell::run("scripts/config", &mut config)?;
    shell::run(
        "make olddefconfig",
        Command::new("make")
            .current_dir(tree)
            .arg("olddefconfig")
            .stdout(std::process::Stdio::null()),
    )?;
    let text = std::fs::read_to_string(tree.join(".config"))?;
    let missing: Vec<&str> = OPTIONS
        .iter()
        .copied()
        .filter(|o| !text.lines().any(|l| l == format!("CONFIG_{o}=y")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "the debug kernel's config lost {missing:?} after olddefconfig (a dependency is missing)"
        );
    }
    Ok(())
}

fn make_output(tree: &Path, target: &str) -> anyhow::Result<String> {
    shell::output(Command::new("make").current_dir(tree).args(["-s", target]))
        .map(|s| s.trim().to_owned())
        .with_context(|| format!("make -s {target} in {}", tree.display()))
}

/// Like a distribution kernel: image and config in /boot, modules (with the
/// `build` link to the tree, where Module.symvers is) in /lib/modules.
fn install(tree: &Path, release: &str) -> anyhow::Result<()> {
    for (from, to) in [
        ("arch/x86/boot/bzImage", format!("/boot/vmlinuz-{release}")),
        (".config", format!("/boot/config-{release}")),
        ("System.map", format!("/boot/System.map-{release}")),
    ] {
        std::fs::copy(tree.join(from), &to).with_context(|| format!("installing {to}"))?;
    }
    shell::run(
        "make modules_install",
        Command::new("make")
            .current_dir(tree)
            .arg("modules_install")
            .stdout(std::process::Stdio::null()),
    )?;
    let build = PathBuf::from(format!("/lib/modules/{release}/build"));
    if !build.join("Makefile").exists() {
        let _ = std::fs::remove_file(&build);
        std::os::unix::fs::symlink(tree, &build)
            .with_context(|| format!("linking {}", build.display()))?;
    }
    Ok(())
}
