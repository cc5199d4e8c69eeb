//! What the kernel counts of each loaded program (`BPF_OBJ_GET_INFO_BY_FD`):
//! its run time and runs (while BPF statistics are on), and the
//! runs it skipped. A kprobe program is skipped, not run, on a CPU where
//! another BPF program or a BPF map syscall is under way
//! (`bpf_prog_active`); kernels from 6.7 count those skips in
//! `recursion_misses`, earlier ones leave it 0. aya 0.14's `ProgramInfo`
//! does not read that field, so this reads the head of `bpf_prog_info`.

use std::{
    io,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use super::bpf_syscall::{BPF_OBJ_GET_INFO_BY_FD, bpf};

/// `struct bpf_prog_info` up to `recursion_misses` (uapi `linux/bpf.h`);
/// the fields between are left as the kernel writes them.
#[repr(C)]
#[derive(Default)]
struct ProgInfoHead {
    prog_type: u32,
    id: u32,
    between: [u64; 23],
    run_time_ns: u64,
    run_cnt: u64,
    recursion_misses: u64,
}

const _: () = assert!(std::mem::offset_of!(ProgInfoHead, run_time_ns) == 192);
const _: () = assert!(std::mem::offset_of!(ProgInfoHead, recursion_misses) == 208);

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// One program's figures, as the kernel counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgramStats {
    pub run_time_ns: u64,
    pub runs: u64,
    /// Runs the kernel skipped (counted from 6.7 for kprobes; 0 before).
    pub skipped: u64,
}

/// Runs of the session's programs the kernel skipped, over
/// `ModuleProbe::program_stats`: calls, loads and checks modscope did not
/// see (counted by kernels from 6.7).
pub fn skipped_runs(programs: &[(String, ProgramStats)]) -> u64 {
    programs
        .iter()
        .fold(0, |sum, (_, s)| sum.saturating_add(s.skipped))
}

/// The figures of the program `prog`.
pub fn read(prog: BorrowedFd<'_>) -> io::Result<ProgramStats> {
    let mut info = ProgInfoHead::default();
    let mut attr = InfoAttr {
        bpf_fd: u32::try_from(prog.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?,
        info_len: std::mem::size_of::<ProgInfoHead>() as u32,
        info: std::ptr::from_mut(&mut info) as u64,
    };
    // `info` is a zeroed buffer of `info_len` bytes that outlives the call;
    // a kernel with a shorter `bpf_prog_info` fills only its own part.
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(ProgramStats {
        run_time_ns: info.run_time_ns,
        runs: info.run_cnt,
        skipped: info.recursion_misses,
    })
}
