//! The one place that knows the architecture's registers at a kprobe on a
//! function's entry (`bpf_target_arch`, set by aya-build from the
//! user-space target, or by `build.rs` for a direct build).
//!
//! - The return address: x86-64's `call` pushes it, so it is the word at
//!   `sp`; arm64's `bl` puts it in the link register `x30`, which is read,
//!   never dereferenced.
//! - The first four arguments: `rdi, rsi, rdx, rcx` on x86-64, `x0..x3` on
//!   arm64. Each is read at its own fixed offset (volatile, so the compiler
//!   cannot turn a choice among them into a computed context offset, which
//!   the verifier refuses).

#[cfg(bpf_target_arch = "x86_64")]
use aya_ebpf::helpers::bpf_probe_read_kernel;
use aya_ebpf::programs::ProbeContext;

#[cfg(bpf_target_arch = "x86_64")]
use crate::maps::READ_ERRORS;

/// The stack pointer at entry.
#[inline(always)]
pub fn stack_pointer(ctx: &ProbeContext) -> u64 {
    // SAFETY: regs is the kprobe's pt_regs, valid for the program's run.
    unsafe {
        #[cfg(bpf_target_arch = "x86_64")]
        let sp = (*ctx.regs).rsp;
        #[cfg(bpf_target_arch = "aarch64")]
        let sp = (*ctx.regs).sp;
        sp
    }
}

/// Where the probed function returns to (as the CPU holds it: on arm64 it
/// may carry a pointer-authentication signature once a prologue signed it).
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub fn return_address(ctx: &ProbeContext) -> Result<u64, u32> {
    let sp = stack_pointer(ctx);
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(sp as *const u64) }.map_err(|_| READ_ERRORS)
}

/// Where the probed function returns to: the link register.
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
pub fn return_address(ctx: &ProbeContext) -> Result<u64, u32> {
    // SAFETY: regs is the kprobe's pt_regs, valid for the program's run.
    Ok(unsafe { (*ctx.regs).regs[30] })
}

/// The first four integer arguments.
#[inline(always)]
pub fn first_four_args(ctx: &ProbeContext) -> [u64; 4] {
    let regs = ctx.regs;
    // SAFETY: regs is the kprobe's pt_regs, valid for the program's run.
    unsafe {
        #[cfg(bpf_target_arch = "x86_64")]
        let args = [
            core::ptr::read_volatile(&(*regs).rdi),
            core::ptr::read_volatile(&(*regs).rsi),
            core::ptr::read_volatile(&(*regs).rdx),
            core::ptr::read_volatile(&(*regs).rcx),
        ];
        #[cfg(bpf_target_arch = "aarch64")]
        let args = [
            core::ptr::read_volatile(&(*regs).regs[0]),
            core::ptr::read_volatile(&(*regs).regs[1]),
            core::ptr::read_volatile(&(*regs).regs[2]),
            core::ptr::read_volatile(&(*regs).regs[3]),
        ];
        args
    }
}
