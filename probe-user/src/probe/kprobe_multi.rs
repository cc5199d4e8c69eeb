//! One kprobe_multi link for many functions (`BPF_TRACE_KPROBE_MULTI`,
//! fprobe; kernels with `CONFIG_FPROBE`, Debian's from 6.12): one
//! `BPF_LINK_CREATE` and one ftrace update attach every function, and one
//! close detaches them, where a kprobe each costs a `perf_event_open`, an
//! ftrace update and, at the end, an RCU grace period.
//!
//! aya 0.14 loads kprobe programs without an expected attach type, and the
//! kernel refuses a kprobe_multi link to such a program. So the link's
//! program is a second copy of the one aya loaded (`program_copy`), loaded
//! with the kprobe_multi attach type.

use std::{
    collections::BTreeMap,
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, BorrowedFd, OwnedFd},
};

use probe_common::CallProbeConfig;

use super::{
    bpf_syscall::{BPF_LINK_CREATE, bpf, owned},
    program_copy::{CopyError, CopyKind},
};

#[derive(Debug, thiserror::Error)]
pub enum MultiError {
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("creating the kprobe_multi link for {functions} functions: {source}")]
    Link { functions: usize, source: io::Error },
    #[error("a function name holds a NUL byte: {0:?}")]
    BadName(String),
}

/// `functions` split into those in the core kernel's text, which one link
/// takes, and the rest (a module's, or of unknown place), which get a
/// kprobe each: a kprobe_multi link holds a reference on every module it
/// probes, and `rmmod` of such a module would fail while the session runs.
pub fn split_core(
    functions: &[String],
    addresses: &BTreeMap<String, u64>,
    config: &CallProbeConfig,
) -> (Vec<String>, Vec<String>) {
    let core = config.core_text_start..config.core_text_end;
    functions
        .iter()
        .cloned()
        .partition(|f| addresses.get(f).is_some_and(|a| core.contains(a)))
}

/// `union bpf_attr` for `BPF_LINK_CREATE` with its `kprobe_multi` part.
#[repr(C)]
#[derive(Default)]
struct KprobeMultiLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    multi_flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

const _: () = assert!(std::mem::size_of::<KprobeMultiLinkAttr>() == 48);

/// Attaches `prog` (a `CopyKind::KprobeMulti` copy) to every function of
/// `functions` in one link; the kernel refuses all of them if it refuses
/// one.
pub fn attach(prog: BorrowedFd<'_>, functions: &[String]) -> Result<OwnedFd, MultiError> {
    let names: Vec<CString> = functions
        .iter()
        .map(|f| CString::new(f.as_str()).map_err(|_| MultiError::BadName(f.clone())))
        .collect::<Result<_, _>>()?;
    let pointers: Vec<u64> = names.iter().map(|n| n.as_ptr() as u64).collect();
    let mut attr = KprobeMultiLinkAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type: CopyKind::BPF_TRACE_KPROBE_MULTI,
        cnt: u32::try_from(pointers.len()).unwrap_or(u32::MAX),
        syms: pointers.as_ptr() as u64,
        ..KprobeMultiLinkAttr::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr)
        .map(owned)
        .map_err(|source| MultiError::Link {
            functions: functions.len(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::split_core;
    use probe_common::CallProbeConfig;

    #[test]
    fn only_functions_in_the_core_kernels_text_share_the_link() {
        let config = CallProbeConfig {
            core_text_start: 0x1000,
            core_text_end: 0x2000,
            ..CallProbeConfig::UNSET
        };
        let addresses = [
            ("kfree", 0x1000),
            ("kstrdup", 0x1fff),
            ("snd_pcm_new", 0x9000),
        ]
        .into_iter()
        .map(|(n, a)| (n.to_owned(), a))
        .collect();
        let functions: Vec<String> = ["kfree", "snd_pcm_new", "unknown", "kstrdup"]
            .into_iter()
            .map(String::from)
            .collect();
        let (core, others) = split_core(&functions, &addresses, &config);
        assert_eq!(core, ["kfree", "kstrdup"]);
        assert_eq!(others, ["snd_pcm_new", "unknown"]);
        let unset = split_core(&functions, &addresses, &CallProbeConfig::UNSET);
        assert!(unset.0.is_empty(), "no core text known: a kprobe each");
    }
}
