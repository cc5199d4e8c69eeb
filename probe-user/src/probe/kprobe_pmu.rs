//! A kprobe each for a program aya did not load (a loader copy,
//! `program_copy`): the kprobe opened as a perf event on the kernel's
//! kprobe PMU (`perf_event_open`), and the copy attached to it by a perf
//! link (`BPF_LINK_CREATE`, `BPF_PERF_EVENT`). This is what aya 0.14 does
//! for its own kprobe programs, but it takes only those.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, OwnedFd},
    path::Path,
};

use super::bpf_syscall::{BPF_LINK_CREATE, bpf, owned};

/// Where the kernel says which perf event type its kprobe PMU has.
const PMU_TYPE_FILE: &str = "/sys/bus/event_source/devices/kprobe/type";

#[derive(Debug, thiserror::Error)]
pub enum PmuError {
    #[error("reading the kprobe PMU's type from {path}: {source}")]
    PmuType { path: String, source: io::Error },
    #[error("the kprobe PMU's type in {path} is not a number: {text:?}")]
    BadPmuType { path: String, text: String },
    #[error("a function name holds a NUL byte: {0:?}")]
    BadName(String),
    #[error("opening a kprobe on {function} (perf_event_open): {source}")]
    Open { function: String, source: io::Error },
    #[error("linking the program to the kprobe on {function}: {source}")]
    Link { function: String, source: io::Error },
}

/// The kernel's kprobe PMU, by its perf event type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KprobePmu(u32);

impl KprobePmu {
    /// The running kernel's (`PMU_TYPE_FILE`).
    pub fn of_kernel() -> Result<Self, PmuError> {
        Self::read(Path::new(PMU_TYPE_FILE))
    }

    fn read(path: &Path) -> Result<Self, PmuError> {
        let text = std::fs::read_to_string(path).map_err(|source| PmuError::PmuType {
            path: path.display().to_string(),
            source,
        })?;
        text.trim()
            .parse()
            .map(Self)
            .map_err(|_| PmuError::BadPmuType {
                path: path.display().to_string(),
                text,
            })
    }

    /// A kprobe on the entry of `function` running `prog` (a kprobe
    /// program), attached until the returned link is dropped.
    pub fn attach(self, prog: BorrowedFd<'_>, function: &str) -> Result<PmuKprobe, PmuError> {
        let name = CString::new(function).map_err(|_| PmuError::BadName(function.to_owned()))?;
        let event = self.open(&name).map_err(|source| PmuError::Open {
            function: function.to_owned(),
            source,
        })?;
        let mut attr = PerfLinkAttr {
            prog_fd: prog.as_raw_fd() as u32,
            target_fd: event.as_raw_fd() as u32,
            attach_type: BPF_PERF_EVENT,
            ..PerfLinkAttr::default()
        };
        let link = bpf(BPF_LINK_CREATE, &mut attr)
            .map(owned)
            .map_err(|source| PmuError::Link {
                function: function.to_owned(),
                source,
            })?;
        Ok(PmuKprobe {
            _link: link,
            _event: event,
        })
    }

    /// The kprobe's perf event, on every process, its program run wherever
    /// the probe fires (a kprobe ignores the CPU it was opened on).
    fn open(self, function: &CString) -> io::Result<OwnedFd> {
        let attr = KprobeEventAttr {
            type_: self.0,
            size: std::mem::size_of::<KprobeEventAttr>() as u32,
            kprobe_func: function.as_ptr() as u64,
            ..KprobeEventAttr::default()
        };
        const ALL_PROCESSES: libc::c_int = -1;
        const CPU: libc::c_int = 0;
        const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
        // SAFETY: attr is a live, initialised `perf_event_attr` of the size
        // it states (PERF_ATTR_SIZE_VER5); `kprobe_func` points at a C string
        // that outlives the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                std::ptr::from_ref(&attr),
                ALL_PROCESSES,
                CPU,
                -1 as libc::c_int,
                PERF_FLAG_FD_CLOEXEC,
            )
        };
        if fd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(owned(fd))
        }
    }
}

/// A kprobe and the link that runs a program on it. Dropping it closes the
/// link (the program stops running), then the event (the kernel takes the
/// kprobe out and waits an RCU grace period: `kprobe_links` drops many at
/// once).
pub struct PmuKprobe {
    _link: OwnedFd,
    _event: OwnedFd,
}

/// `enum bpf_attach_type`'s `BPF_PERF_EVENT`.
const BPF_PERF_EVENT: u32 = 41;

/// `union bpf_attr` for `BPF_LINK_CREATE`, up to its flags.
#[repr(C)]
#[derive(Default)]
struct PerfLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
}

/// `struct perf_event_attr` as far as `PERF_ATTR_SIZE_VER5`, with the
/// kprobe PMU's names for `config1` and `config2`; `config` 0 is a kprobe
/// (bit 0 would make it a kretprobe), `probe_offset` 0 the entry.
#[repr(C)]
#[derive(Default)]
struct KprobeEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    kprobe_func: u64,
    probe_offset: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

const _: () = assert!(std::mem::size_of::<KprobeEventAttr>() == 112);
const _: () = assert!(std::mem::offset_of!(KprobeEventAttr, kprobe_func) == 56);

#[cfg(test)]
mod tests {
    use super::{KprobePmu, PmuError};

    /// A type file holding `text`, in a directory of its own.
    fn written(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("modscope-pmu-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("type");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn the_pmu_type_is_the_number_the_kernel_wrote() {
        let path = written("number", "6\n");
        assert_eq!(KprobePmu::read(&path).unwrap(), KprobePmu(6));
    }

    #[test]
    fn a_missing_or_garbled_type_file_is_named() {
        let path = written("garbled", "kprobe\n");
        let garbled = KprobePmu::read(&path).unwrap_err();
        assert!(matches!(garbled, PmuError::BadPmuType { .. }), "{garbled}");
        assert!(garbled.to_string().contains("\"kprobe\\n\""), "{garbled}");
        let missing = KprobePmu::read(&path.with_file_name("none")).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }
}
