//! How a program reads kernel words at an address it computed (the stack
//! at a kprobe, a trampoline's frame): through `bpf_probe_read_kernel`, a
//! helper call, on every kernel; or, from Linux 6.2, as loads through
//! `bpf_rdonly_cast`'s view (`copy_patch`), which the JIT guards against
//! faults: a bad address reads as 0 instead of failing. Programs that read
//! are built once for each (`HelperRead`, `ViewRead`); the loader picks
//! the one the kernel can take.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use probe_common::kernel_view::VIEW_TYPE;

use crate::{copy_patch, maps::READ_ERRORS};

/// A way to read `N` consecutive kernel words.
pub trait WordRead {
    fn words<const N: usize>(address: u64) -> Result<[u64; N], u32>;
}

/// Through the helper, which checks the address.
pub struct HelperRead;

impl WordRead for HelperRead {
    #[inline(always)]
    fn words<const N: usize>(address: u64) -> Result<[u64; N], u32> {
        // SAFETY: bpf_probe_read_kernel checks the address.
        unsafe { bpf_probe_read_kernel(address as *const [u64; N]) }.map_err(|_| READ_ERRORS)
    }
}

/// Loads through a read-only view of the address: the struct whose BTF
/// id the loader writes must have a 64-bit scalar at each word read.
pub struct ViewRead;

impl WordRead for ViewRead {
    #[inline(always)]
    fn words<const N: usize>(address: u64) -> Result<[u64; N], u32> {
        let view = copy_patch::rdonly_cast(address, copy_patch::loader_constant::<VIEW_TYPE>());
        let mut words = [0u64; N];
        let mut i = 0;
        while i < N {
            // SAFETY: the verifier makes each load through an untrusted
            // BTF pointer one the JIT guards: a fault reads 0. Volatile,
            // so each is one load at a constant offset of the view.
            words[i] = unsafe { core::ptr::read_volatile(view.wrapping_add(i)) };
            i += 1;
        }
        Ok(words)
    }
}
