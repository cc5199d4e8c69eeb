//! The raw `bpf(2)` calls aya 0.14 does not make for us (the kprobe_multi
//! shim's load and link, `bpf_prog_info`'s skipped runs): one wrapper, so
//! each caller only builds its `union bpf_attr` prefix.

use std::{
    ffi::c_long,
    io,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
};

pub const BPF_PROG_LOAD: c_long = 5;
pub const BPF_OBJ_GET_INFO_BY_FD: c_long = 15;
pub const BPF_LINK_CREATE: c_long = 28;

/// Calls `bpf(cmd, attr)`; a descriptor or a count on success.
pub fn bpf<T>(cmd: c_long, attr: &mut T) -> io::Result<c_long> {
    let size = std::mem::size_of::<T>();
    // SAFETY: attr is a live, initialised `bpf_attr` prefix of `size` bytes
    // (a kernel with a longer union reads the rest as zero); every pointer
    // in it points at memory that outlives the call.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A descriptor the kernel just returned, owned.
pub fn owned(fd: c_long) -> OwnedFd {
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}
