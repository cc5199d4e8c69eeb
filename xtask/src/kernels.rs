//! The kernels installed in /boot that the VM suite can boot: each needs
//! its image, its config and its headers (to build the test modules).
//! Versions are read from the machine, never written into the code.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flavour {
    Generic,
    PreemptRt,
    /// Lock debugging on (DEBUG_SPINLOCK, DEBUG_MUTEXES, DEBUG_LOCK_ALLOC):
    /// the kernel `debug_kernel.rs` builds.
    Debug,
}

/// The machine a kernel runs on: x86-64 boots under vng with the host's
/// root, arm64 under qemu-system-aarch64 with an initramfs (`arm64.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// The Rust target of the static binaries a guest of this kind runs.
    pub fn musl_target(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-unknown-linux-musl",
            Self::Arm64 => "aarch64-unknown-linux-musl",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Kernel {
    pub release: String,
    pub image: PathBuf,
    pub build_dir: PathBuf,
    pub flavour: Flavour,
    /// (major, minor) from the release string.
    pub version: (u32, u32),
    pub arch: Arch,
    /// `CONFIG_FPROBE=y`: kprobe_multi links attach (the VM tests expect
    /// modscope's call counter to attach through one).
    pub fprobe: bool,
    /// BPF trampolines on ftrace's direct calls, and the BTF that names
    /// their targets: fentry programs attach (the VM tests expect the call
    /// counter on fentry).
    pub fentry: bool,
}

impl Kernel {
    pub fn describe(&self) -> String {
        let flavour = match self.flavour {
            Flavour::Generic => "generic",
            Flavour::PreemptRt => "PREEMPT_RT",
            Flavour::Debug => "lock debugging",
        };
        format!("{} ({flavour})", self.release)
    }
}

/// Every kernel the suite can boot: the host's x86-64 kernels in /boot and
/// the arm64 kernels `cargo xtask setup` unpacked (`arm64::root`).
pub fn all() -> anyhow::Result<Vec<Kernel>> {
    let mut kernels = installed(Path::new("/boot"), Path::new("/lib/modules"))?;
    let arm = crate::arm64::root();
    if arm.join("boot").is_dir() {
        kernels.extend(unpacked_arm64(&arm)?);
    }
    Ok(kernels)
}

fn version_of(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Every kernel in `boot` with headers under `modules_root/<release>/build`.
pub fn installed(boot: &Path, modules_root: &Path) -> anyhow::Result<Vec<Kernel>> {
    in_boot_dir(boot, Arch::X86_64, |release| {
        modules_root.join(release).join("build")
    })
}

/// The arm64 kernels unpacked under `root` (`boot/`, `usr/src/linux-headers-*`).
pub fn unpacked_arm64(root: &Path) -> anyhow::Result<Vec<Kernel>> {
    in_boot_dir(&root.join("boot"), Arch::Arm64, |release| {
        root.join("usr/src")
            .join(format!("linux-headers-{release}"))
    })
}

fn in_boot_dir(
    boot: &Path,
    arch: Arch,
    build_dir_of: impl Fn(&str) -> PathBuf,
) -> anyhow::Result<Vec<Kernel>> {
    let mut kernels = Vec::new();
    let entries = std::fs::read_dir(boot).with_context(|| format!("listing {}", boot.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(release) = name.strip_prefix("vmlinuz-") else {
            continue;
        };
        let build_dir = build_dir_of(release);
        let config =
            std::fs::read_to_string(boot.join(format!("config-{release}"))).unwrap_or_default();
        let (Some(version), true) = (version_of(release), build_dir.join("Makefile").exists())
        else {
            continue;
        };
        let has = |option: &str| config.lines().any(|l| l == format!("CONFIG_{option}=y"));
        let flavour = if has("PREEMPT_RT") {
            Flavour::PreemptRt
        } else if has("DEBUG_SPINLOCK") && has("DEBUG_MUTEXES") {
            Flavour::Debug
        } else {
            Flavour::Generic
        };
        kernels.push(Kernel {
            release: release.to_owned(),
            image: entry.path(),
            build_dir,
            flavour,
            version,
            arch,
            fprobe: has("FPROBE"),
            fentry: has("DYNAMIC_FTRACE_WITH_DIRECT_CALLS") && has("DEBUG_INFO_BTF"),
        });
    }
    kernels.sort_by(|a, b| a.version.cmp(&b.version).then(a.release.cmp(&b.release)));
    Ok(kernels)
}

/// The suite's required set: on x86-64 a generic and a PREEMPT_RT kernel of
/// one release before 6.4, a kernel with the `mem[]` module layout (6.4+)
/// and the lock-debugging build; on arm64 the same without the debug build.
pub fn required_set(all: &[Kernel]) -> anyhow::Result<Vec<Kernel>> {
    let mut set = x86_64_set(all)?;
    set.extend(arm64_set(all)?);
    Ok(set)
}

/// The newest kernel of `arch` and `flavour` whose version passes `when`.
fn newest(
    all: &[Kernel],
    arch: Arch,
    flavour: Flavour,
    when: impl Fn((u32, u32)) -> bool,
) -> Option<&Kernel> {
    all.iter()
        .rfind(|k| k.arch == arch && k.flavour == flavour && when(k.version))
}

/// The generic x86-64 kernel before 6.4: the benchmarks' default.
pub fn generic_x86_64(all: &[Kernel]) -> Option<&Kernel> {
    newest(all, Arch::X86_64, Flavour::Generic, |v| v < (6, 4))
}

pub fn x86_64_set(all: &[Kernel]) -> anyhow::Result<Vec<Kernel>> {
    let generic = generic_x86_64(all);
    let rt = newest(all, Arch::X86_64, Flavour::PreemptRt, |v| v < (6, 4));
    let newer = newest(all, Arch::X86_64, Flavour::Generic, |v| v >= (6, 4));
    let debug = newest(all, Arch::X86_64, Flavour::Debug, |v| {
        Some(v) == generic.map(|g| g.version)
    });
    match (generic, rt, newer, debug) {
        (Some(g), Some(r), Some(n), Some(d)) => {
            Ok(vec![g.clone(), r.clone(), n.clone(), d.clone()])
        }
        _ => bail!(
            "the VM suite needs a generic and a PREEMPT_RT kernel before 6.4, a 6.4+ kernel, each with \
             headers, and the lock-debugging build of the generic kernel's version; found {:?}. \
             `cargo xtask setup` installs Debian's linux-image-amd64, linux-image-rt-amd64 and \
             linux-image-6.12-amd64 with their headers, and builds the debug kernel",
            all.iter().map(Kernel::describe).collect::<Vec<_>>()
        ),
    }
}

fn arm64_set(all: &[Kernel]) -> anyhow::Result<Vec<Kernel>> {
    let generic = newest(all, Arch::Arm64, Flavour::Generic, |v| v < (6, 4));
    let rt = newest(all, Arch::Arm64, Flavour::PreemptRt, |v| v < (6, 4));
    let newer = newest(all, Arch::Arm64, Flavour::Generic, |v| v >= (6, 4));
    match (generic, rt, newer) {
        (Some(g), Some(r), Some(n)) => Ok(vec![g.clone(), r.clone(), n.clone()]),
        _ => bail!(
            "the VM suite needs Debian's arm64 kernels (generic and PREEMPT_RT 6.1, 6.12) with \
             their headers under {}; `cargo xtask setup` downloads and unpacks them",
            crate::arm64::root().display()
        ),
    }
}

/// The kernel of the same version whose test modules are cross-loaded into
/// `kernel`: generic <-> PREEMPT_RT, and generic into the debug kernel (a
/// module built without lock debugging on a kernel with it).
pub fn sibling<'a>(all: &'a [Kernel], kernel: &Kernel) -> Option<&'a Kernel> {
    let wanted = match kernel.flavour {
        Flavour::Generic => Flavour::PreemptRt,
        Flavour::PreemptRt | Flavour::Debug => Flavour::Generic,
    };
    all.iter()
        .rfind(|k| k.arch == kernel.arch && k.version == kernel.version && k.flavour == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (release, config, has headers)
    fn fake_boot(dir: &Path, kernels: &[(&str, &str, bool)]) {
        for &(release, config, headers) in kernels {
            std::fs::write(dir.join(format!("vmlinuz-{release}")), "").unwrap();
            std::fs::write(dir.join(format!("config-{release}")), config).unwrap();
            if headers {
                let build = dir.join("lib").join(release).join("build");
                std::fs::create_dir_all(&build).unwrap();
                std::fs::write(build.join("Makefile"), "").unwrap();
            }
        }
    }

    const GENERIC: &str = "# CONFIG_PREEMPT_RT is not set\n";
    const RT: &str = "CONFIG_PREEMPT_RT=y\n";
    const DEBUG: &str = "CONFIG_DEBUG_SPINLOCK=y\nCONFIG_DEBUG_MUTEXES=y\n";

    #[test]
    fn finds_the_four_kernels_and_skips_kernels_without_headers() {
        let dir = std::env::temp_dir().join(format!("xtask-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        fake_boot(
            &dir,
            &[
                ("6.1.0-56-amd64", GENERIC, true),
                ("6.1.0-56-rt-amd64", RT, true),
                ("6.12.117+deb12-amd64", GENERIC, true),
                ("6.1.0-40-amd64", GENERIC, false),
                ("6.1.192-modscope-debug", DEBUG, true),
            ],
        );
        let all = installed(&dir, &dir.join("lib")).unwrap();
        assert_eq!(all.len(), 4, "{all:?}");
        let set = x86_64_set(&all).unwrap();
        let releases: Vec<_> = set.iter().map(|k| k.release.as_str()).collect();
        assert_eq!(
            releases,
            [
                "6.1.0-56-amd64",
                "6.1.0-56-rt-amd64",
                "6.12.117+deb12-amd64",
                "6.1.192-modscope-debug"
            ]
        );
        assert_eq!(set[3].flavour, Flavour::Debug);
        assert_eq!(
            sibling(&all, &set[3]).map(|k| k.release.as_str()),
            Some("6.1.0-56-amd64"),
            "generic-built modules are cross-loaded into the debug kernel"
        );
        assert_eq!(set[1].flavour, Flavour::PreemptRt);
        assert_eq!(set[2].version, (6, 12));
        assert_eq!(
            sibling(&all, &set[0]).map(|k| k.release.as_str()),
            Some("6.1.0-56-rt-amd64")
        );
        assert_eq!(
            sibling(&all, &set[1]).map(|k| k.release.as_str()),
            Some("6.1.0-56-amd64")
        );
        assert!(sibling(&all, &set[2]).is_none());
    }

    #[test]
    fn missing_flavour_names_the_packages() {
        let dir =
            std::env::temp_dir().join(format!("xtask-kernels-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        fake_boot(&dir, &[("6.1.0-56-amd64", GENERIC, true)]);
        let err = x86_64_set(&installed(&dir, &dir.join("lib")).unwrap()).unwrap_err();
        assert!(err.to_string().contains("linux-image-rt-amd64"), "{err}");
    }

    #[test]
    fn arm64_kernels_come_from_the_unpacked_tree_and_never_pair_across_architectures() {
        let dir = std::env::temp_dir().join(format!("xtask-kernels-arm-{}", std::process::id()));
        let boot = dir.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        for (release, config) in [
            ("6.1.0-57-arm64", GENERIC),
            ("6.1.0-57-rt-arm64", RT),
            ("6.12.117+deb12-arm64", GENERIC),
        ] {
            std::fs::write(boot.join(format!("vmlinuz-{release}")), "").unwrap();
            std::fs::write(boot.join(format!("config-{release}")), config).unwrap();
            let build = dir.join("usr/src").join(format!("linux-headers-{release}"));
            std::fs::create_dir_all(&build).unwrap();
            std::fs::write(build.join("Makefile"), "").unwrap();
        }
        let arm = unpacked_arm64(&dir).unwrap();
        assert_eq!(arm.len(), 3);
        assert!(arm.iter().all(|k| k.arch == Arch::Arm64));
        let set = arm64_set(&arm).unwrap();
        assert_eq!(set[1].flavour, Flavour::PreemptRt);
        assert_eq!(set[2].version, (6, 12));
        let mut x86 = set[0].clone();
        x86.arch = Arch::X86_64;
        x86.release = "6.1.0-57-amd64".into();
        let mut both = arm.clone();
        both.push(x86.clone());
        assert!(
            sibling(&both, &x86).is_none(),
            "an arm64 RT kernel is no x86 sibling"
        );
        assert_eq!(
            sibling(&both, &set[1]).map(|k| k.release.as_str()),
            Some("6.1.0-57-arm64")
        );
        let err = arm64_set(&[x86]).unwrap_err();
        assert!(err.to_string().contains("cargo xtask setup"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
