//! `count_call` on BPF trampolines: an fentry program's copy
//! (`program_copy`) per function, loaded against the function's BTF id and
//! attached by `BPF_RAW_TRACEPOINT_OPEN` (the ids: `kernel::lean_btf::function_ids`). A trampoline calls the program
//! directly, where a kprobe goes through ftrace's handler and `pt_regs`;
//! the cheapest entry the kernel offers, and the only one whose runs are
//! not skipped while another BPF program runs on the CPU.
//!
//! aya 0.14 loads an fentry program against one function, once; the kernel
//! retargets only freplace programs, so every function is a load.

use std::{collections::HashMap, ffi::c_long, io, os::fd::AsRawFd as _};

use super::{
    bpf_syscall::{bpf, owned},
    program_copy::{CopyError, CopyKind, CopyLink, Patch, ProgramCopy},
};

const BPF_RAW_TRACEPOINT_OPEN: c_long = 17;

#[derive(Debug, thiserror::Error)]
pub enum FentryError {
    #[error("the kernel's BTF has no function {0}")]
    NoBtf(String),
    #[error(transparent)]
    Copy(#[from] CopyError),
    #[error("attaching the fentry program: {0}")]
    Attach(#[source] io::Error),
}

/// `copy` loaded on `function`'s trampoline, with `patches` written into
/// it, and attached.
pub fn attach(
    copy: &ProgramCopy,
    function: &str,
    ids: &HashMap<String, u32>,
    patches: &[Patch],
) -> Result<CopyLink, FentryError> {
    let btf_id = *ids
        .get(function)
        .ok_or_else(|| FentryError::NoBtf(function.to_owned()))?;
    let prog = copy.load(CopyKind::Fentry { btf_id }, patches)?;
    let mut attr = RawTracepointOpenAttr {
        name: 0,
        prog_fd: prog.as_raw_fd() as u32,
        ..RawTracepointOpenAttr::default()
    };
    let link = bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
        .map(owned)
        .map_err(FentryError::Attach)?;
    Ok(CopyLink::new(link, prog))
}

/// `union bpf_attr` for `BPF_RAW_TRACEPOINT_OPEN`: no name, so the
/// program's own attach target.
#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    pad: u32,
}
