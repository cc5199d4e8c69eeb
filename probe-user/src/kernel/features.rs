//! What the running kernel and this process can do, checked before any live
//! command touches BPF, so that a missing feature is reported precisely
//! instead of surfacing as an errno from deep inside a load.

use std::path::{Path, PathBuf};

use modscope_analysis::{
    kconfig::KernelConfig,
    target::{self, TargetError},
};

/// Capability numbers from linux/capability.h.
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unsupported {
    #[error(
        "kernel {release} was built without CONFIG_MODULES ({proc_modules} does not exist): there \
         are no loadable modules to watch here. `cargo xtask run` boots a Debian kernel with \
         modules in a VM and runs modscope there"
    )]
    NoModules {
        release: String,
        proc_modules: String,
    },
    #[error(
        "kernel {release} has no BTF at {path} (CONFIG_DEBUG_INFO_BTF): modscope reads struct \
         module's layout from it. Give it with --btf FILE: a raw BTF file, or the kernel's \
         vmlinux with a .BTF section (`pahole -J vmlinux` adds one to a vmlinux built with \
         debug info)"
    )]
    NoBtf { release: String, path: String },
    #[error(
        "missing capability {missing}: loading modscope's eBPF probes needs CAP_BPF and \
         CAP_PERFMON (or CAP_SYS_ADMIN); run as root"
    )]
    MissingCapability { missing: String },
}

/// Paths of the kernel interfaces consulted; tests point them elsewhere.
#[derive(Debug, Clone)]
pub struct KernelPaths {
    pub proc_modules: PathBuf,
    /// The kernel's BTF: `/sys/kernel/btf/vmlinux`, or `--btf FILE` for a
    /// kernel built without it.
    pub vmlinux_btf: PathBuf,
    /// `--config FILE`: the kernel's config where /proc/config.gz and
    /// /boot/config-RELEASE are missing.
    pub config: Option<PathBuf>,
    pub proc_status: PathBuf,
    pub osrelease: PathBuf,
    /// `/sys/module`: one of the views of the loaded modules.
    pub sys_module: PathBuf,
}

impl Default for KernelPaths {
    fn default() -> Self {
        Self {
            proc_modules: "/proc/modules".into(),
            vmlinux_btf: "/sys/kernel/btf/vmlinux".into(),
            config: None,
            proc_status: "/proc/self/status".into(),
            osrelease: "/proc/sys/kernel/osrelease".into(),
            sys_module: "/sys/module".into(),
        }
    }
}

impl KernelPaths {
    /// The kernel's config: `--config`, else /proc/config.gz or
    /// /boot/config-RELEASE; none is not an error, an unreadable
    /// `--config` is.
    pub fn kernel_config(
        &self,
        release: &str,
    ) -> Result<Option<(String, KernelConfig)>, TargetError> {
        target::config_for(self.config.as_deref(), release)
    }
}

pub fn release(paths: &KernelPaths) -> String {
    super::text_file::read(&paths.osrelease)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "(unknown release)".to_owned())
}

/// Effective capability set from a `/proc/<pid>/status` text.
pub fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The capabilities loading tracing programs needs that `caps` lacks,
/// by name; empty when it has enough.
pub fn missing_tracing_caps(caps: u64) -> Vec<&'static str> {
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) {
        return Vec::new();
    }
    [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|&(cap, _)| !has(cap))
        .map(|(_, name)| name)
        .collect()
}

/// Everything a live module probe needs, in the order a user would fix it:
/// the kernel first (nothing to do about it but pick another), then BTF,
/// then privileges.
pub fn check_live_probe(paths: &KernelPaths) -> Result<(), Unsupported> {
    let release = release(paths);
    if !exists(&paths.proc_modules) {
        return Err(Unsupported::NoModules {
            release,
            proc_modules: paths.proc_modules.display().to_string(),
        });
    }
    if !exists(&paths.vmlinux_btf) {
        return Err(Unsupported::NoBtf {
            release,
            path: paths.vmlinux_btf.display().to_string(),
        });
    }
    let status = super::text_file::read(&paths.proc_status).unwrap_or_default();
    let missing = missing_tracing_caps(effective_caps(&status).unwrap_or(0));
    if !missing.is_empty() {
        return Err(Unsupported::MissingCapability {
            missing: missing.join(" and "),
        });
    }
    Ok(())
}

fn exists(p: &Path) -> bool {
    p.try_exists().unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path, modules: bool, btf: bool, cap_eff: &str) -> KernelPaths {
        let paths = KernelPaths {
            proc_modules: dir.join("modules"),
            vmlinux_btf: dir.join("vmlinux"),
            config: None,
            proc_status: dir.join("status"),
            osrelease: dir.join("osrelease"),
            sys_module: dir.join("sys_module"),
        };
        std::fs::write(&paths.osrelease, "6.1.0-test\n").unwrap();
        std::fs::write(
            &paths.proc_status,
            format!("Name:\tx\nCapEff:\t{cap_eff}\n"),
        )
        .unwrap();
        if modules {
            std::fs::write(&paths.proc_modules, "").unwrap();
        }
        if btf {
            std::fs::write(&paths.vmlinux_btf, "").unwrap();
        }
        paths
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("modscope-kf-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn kernel_without_modules_is_reported_first() {
        let d = tmpdir("nomod");
        let err = check_live_probe(&fake(&d, false, false, "0")).unwrap_err();
        assert!(
            matches!(err, Unsupported::NoModules { ref release, .. } if release == "6.1.0-test")
        );
        assert!(err.to_string().contains("CONFIG_MODULES"));
    }

    #[test]
    fn unprivileged_process_is_told_which_capability() {
        let d = tmpdir("nocap");
        let err = check_live_probe(&fake(&d, true, true, "0000000000000000")).unwrap_err();
        assert_eq!(
            err,
            Unsupported::MissingCapability {
                missing: "CAP_BPF and CAP_PERFMON".into()
            }
        );
        let only_bpf = format!("{:016x}", 1u64 << CAP_BPF);
        let err = check_live_probe(&fake(&d, true, true, &only_bpf)).unwrap_err();
        assert_eq!(
            err,
            Unsupported::MissingCapability {
                missing: "CAP_PERFMON".into()
            }
        );
    }

    #[test]
    fn root_with_modules_and_btf_passes() {
        let d = tmpdir("ok");
        assert_eq!(
            check_live_probe(&fake(&d, true, true, "000001ffffffffff")),
            Ok(())
        );
        let sys_admin_only = format!("{:016x}", 1u64 << CAP_SYS_ADMIN);
        assert_eq!(
            check_live_probe(&fake(&d, true, true, &sys_admin_only)),
            Ok(())
        );
    }

    #[test]
    fn missing_btf_is_named() {
        let d = tmpdir("nobtf");
        let err = check_live_probe(&fake(&d, true, false, "000001ffffffffff")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }
}
