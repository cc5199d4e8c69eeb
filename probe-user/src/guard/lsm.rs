//! Whether this kernel runs BPF-LSM, and if not, exactly why and what turns
//! it on: `CONFIG_BPF_LSM` at build time and `bpf` in the active LSM list
//! (`/sys/kernel/security/lsm`, set by the `lsm=` boot parameter or the
//! build's `CONFIG_LSM`).

use std::path::Path;

/// The active LSMs, as securityfs lists them.
pub const LSM_LIST: &str = "/sys/kernel/security/lsm";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LsmState {
    Active,
    /// Built in, but not in the active list.
    NotActive {
        active: String,
    },
    /// Built without `CONFIG_BPF_LSM`.
    NotBuilt,
    /// The list cannot be read (securityfs missing).
    Unknown {
        error: String,
    },
}

impl LsmState {
    /// From the active list (`None`: unreadable, with why) and whether the
    /// kernel's config has `CONFIG_BPF_LSM=y` (`None`: no config).
    pub fn from_facts(list: Result<&str, String>, built: Option<bool>) -> Self {
        if built == Some(false) {
            return Self::NotBuilt;
        }
        match list {
            Ok(l) if l.trim().split(',').any(|m| m == "bpf") => Self::Active,
            Ok(l) => Self::NotActive {
                active: l.trim().to_owned(),
            },
            Err(error) => Self::Unknown { error },
        }
    }

    /// Reads the list (mounting securityfs where nothing has) and the
    /// config. A kernel without securityfs has no list: there the active
    /// LSMs are the build's `CONFIG_LSM` unless the command line's `lsm=`
    /// names others.
    pub fn read(config: Option<&modscope_analysis::kconfig::KernelConfig>) -> Self {
        let path = Path::new(LSM_LIST);
        if !path.exists() {
            mount_securityfs();
        }
        let list = std::fs::read_to_string(path)
            .map_err(|e| format!("{LSM_LIST}: {e}"))
            .or_else(|e| {
                let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
                active_without_securityfs(&cmdline, config.and_then(|c| c.get("LSM"))).ok_or(e)
            });
        Self::from_facts(
            list.as_deref().map_err(Clone::clone),
            config.map(|c| c.builtin("BPF_LSM")),
        )
    }

    /// What to tell a person when it is not `Active`.
    pub fn explain(&self) -> Option<String> {
        match self {
            Self::Active => None,
            Self::NotBuilt => Some(
                "this kernel was built without CONFIG_BPF_LSM: the guard cannot refuse loads \
                 here (rebuild with CONFIG_BPF_LSM=y, or use --policy audit, which observes \
                 through kprobes)"
                    .into(),
            ),
            Self::NotActive { active } => Some(format!(
                "BPF-LSM is built in but not active: the active LSMs are \"{active}\" \
                 ({LSM_LIST}). Add bpf to the lsm= boot parameter, e.g. lsm={active},bpf, and \
                 reboot; or use --policy audit, which observes through kprobes"
            )),
            Self::Unknown { error } => Some(format!(
                "cannot tell whether BPF-LSM is active ({error}); mount securityfs on \
                 /sys/kernel/security"
            )),
        }
    }
}

/// The active LSM list where securityfs cannot say: `lsm=` on the command
/// line, else the build's `CONFIG_LSM` (quoted in the config).
fn active_without_securityfs(cmdline: &str, config_lsm: Option<&str>) -> Option<String> {
    let given = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("lsm="));
    match given {
        Some(list) => Some(list.to_owned()),
        None => config_lsm.map(|l| l.trim_matches('"').to_owned()),
    }
}

fn mount_securityfs() {
    let target = c"/sys/kernel/security";
    let fstype = c"securityfs";
    // SAFETY: NUL-terminated static strings; a failure (not root, already
    // mounted) leaves things as they were and is reported by the read.
    unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_must_be_in_the_active_list_and_built_in() {
        assert_eq!(
            LsmState::from_facts(
                Ok("lockdown,capability,landlock,yama,apparmor,bpf\n"),
                Some(true)
            ),
            LsmState::Active
        );
        let off = LsmState::from_facts(Ok("lockdown,capability,apparmor\n"), None);
        assert_eq!(
            off,
            LsmState::NotActive {
                active: "lockdown,capability,apparmor".into()
            }
        );
        let text = off.explain().unwrap();
        assert!(
            text.contains("lsm=lockdown,capability,apparmor,bpf"),
            "{text}"
        );
        assert_eq!(
            LsmState::from_facts(Ok("bpf"), Some(false)),
            LsmState::NotBuilt
        );
        assert!(matches!(
            LsmState::from_facts(Err("gone".into()), Some(true)),
            LsmState::Unknown { .. }
        ));
        assert_eq!(
            active_without_securityfs("ro console=ttyS0", Some("\"landlock,yama,bpf\"")),
            Some("landlock,yama,bpf".into())
        );
        assert_eq!(
            active_without_securityfs("ro lsm=apparmor quiet", Some("\"yama,bpf\"")),
            Some("apparmor".into())
        );
        assert_eq!(active_without_securityfs("ro", None), None);
        // "bpfx" is not "bpf".
        assert!(matches!(
            LsmState::from_facts(Ok("bpfx,yama"), Some(true)),
            LsmState::NotActive { .. }
        ));
    }
}
