//! The guard's programs (`probe-ebpf/src/guard.rs`): BPF-LSM on the module
//! load hooks, or, where BPF-LSM cannot attach, kprobes on the same
//! security functions, which observe only; the verdicts map; pinning the
//! LSM links in bpffs so they outlive the process.

use std::path::{Path, PathBuf};

use aya::{
    maps::HashMap,
    programs::{Lsm, links::FdLink},
};
use probe_common::{
    FileKey,
    guard::Judgement,
    names::{hook, map, program},
};

use super::{ModuleProbe, ProbeError};

/// How the guard is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardMode {
    /// BPF-LSM: loads are refused as the policy says.
    Lsm,
    /// kprobes on the security functions: decisions are recorded, nothing
    /// is refused. With the reason BPF-LSM did not attach.
    Kprobes { lsm_refused: String },
}

/// The LSM programs and their hooks, in attach order: the image check
/// first, so a refusal at the file stage never leaves a half-attached
/// check behind.
const LSM_PROGRAMS: [(&str, &str); 5] = [
    (program::GUARD_POST_READ_FILE, hook::LSM_POST_READ_FILE),
    (program::GUARD_POST_LOAD_DATA, hook::LSM_POST_LOAD_DATA),
    (program::GUARD_MODULE_REQUEST, hook::LSM_MODULE_REQUEST),
    (program::GUARD_LOAD_DATA, hook::LSM_LOAD_DATA),
    (program::GUARD_READ_FILE, hook::LSM_READ_FILE),
];

const KPROBE_PROGRAMS: [(&str, &str); 3] = [
    (
        program::GUARD_POST_READ_FILE_KPROBE,
        hook::SECURITY_POST_READ_FILE,
    ),
    (program::GUARD_LOAD_DATA_KPROBE, hook::SECURITY_LOAD_DATA),
    (program::GUARD_READ_FILE_KPROBE, hook::SECURITY_READ_FILE),
];

impl ModuleProbe {
    /// Attaches the guard: BPF-LSM when the kernel takes it, else the
    /// kprobe fallback. With `pin`, the LSM links are pinned in that bpffs
    /// directory and stay attached after the process ends.
    pub fn attach_guard(
        &mut self,
        btf: &aya::Btf,
        pin: Option<&Path>,
    ) -> Result<GuardMode, ProbeError> {
        match self.attach_lsm(btf, pin) {
            Ok(()) => Ok(GuardMode::Lsm),
            Err(e) if pin.is_none() => {
                self.attach_guard_kprobes()?;
                Ok(GuardMode::Kprobes {
                    lsm_refused: e.to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    fn attach_lsm(&mut self, btf: &aya::Btf, pin: Option<&Path>) -> Result<(), ProbeError> {
        let mut links = Vec::new();
        for (name, hook) in LSM_PROGRAMS {
            let prog: &mut Lsm = self.program(name)?;
            prog.load(hook, btf)
                .map_err(|source| ProbeError::ProgramLoad {
                    program: name,
                    source,
                })?;
            let id = prog.attach().map_err(|source| ProbeError::Attach {
                program: name,
                function: hook,
                source,
            })?;
            if pin.is_some() {
                let link = prog.take_link(id).map_err(|source| ProbeError::Attach {
                    program: name,
                    function: hook,
                    source,
                })?;
                links.push((name, FdLink::from(link)));
            }
            self.attached.push(format!("lsm/{hook}"));
        }
        if let Some(dir) = pin {
            for (name, link) in links {
                let path = dir.join(name);
                link.pin(&path)
                    .map_err(|source| ProbeError::Pin { path, source })?;
            }
        }
        Ok(())
    }

    /// The fallback: kprobes on the security functions, observing only.
    pub fn attach_guard_kprobes(&mut self) -> Result<(), ProbeError> {
        for (name, function) in KPROBE_PROGRAMS {
            let prog = self.loaded_kprobe(name)?;
            prog.attach(function, 0)
                .map_err(|source| ProbeError::Attach {
                    program: name,
                    function,
                    source,
                })?;
            self.attached
                .push(format!("kprobe/{function} (audit only)"));
        }
        Ok(())
    }

    /// Records the verdict on a file as it is now.
    pub fn judge_file(&mut self, key: &FileKey, judgement: Judgement) -> Result<(), ProbeError> {
        let mut files: HashMap<_, FileKey, u32> = self.map_mut(map::GUARD_FILES)?;
        files
            .insert(key, judgement as u32, 0)
            .map_err(|source| ProbeError::Map {
                map: map::GUARD_FILES,
                source,
            })
    }

    /// Forgets a file's old identity (it changed or went away).
    pub fn forget_file(&mut self, key: &FileKey) -> Result<(), ProbeError> {
        let mut files: HashMap<_, FileKey, u32> = self.map_mut(map::GUARD_FILES)?;
        match files.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(ProbeError::Map {
                map: map::GUARD_FILES,
                source,
            }),
        }
    }
}

/// Removes the pinned guard in `dir`: each link's pin, then the directory.
/// The programs detach as their last reference goes. Returns what was
/// removed.
pub fn remove_pinned(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        std::fs::remove_file(&path)?;
        removed.push(path);
    }
    std::fs::remove_dir(dir)?;
    removed.sort();
    Ok(removed)
}
