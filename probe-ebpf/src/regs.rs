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
//! - An fentry program's caller: the trampoline saved the word its patched
//!   call returns to (a few bytes into the traced function) and, above it,
//!   the traced function's own return address: the next word on x86-64;
//!   two words up on arm64, past the frame record the trampoline made for
//!   the caller. The arguments come first, and between them and those words
//!   lie slots whose number changes with the kernel and the programs
//!   attached, so the words are found, not assumed to be at one offset.

use aya_ebpf::{
    EbpfContext as _,
    helpers::bpf_get_func_arg_cnt,
    programs::{FEntryContext, ProbeContext},
};

use crate::{
    kernel_words::{HelperRead, WordRead},
    maps::READ_ERRORS,
};

/// How far above the trampoline's saved return-into-the-function word the
/// caller's return address lies, in words.
#[cfg(bpf_target_arch = "x86_64")]
const CALLER_ABOVE_ENTRY: usize = 1;
#[cfg(bpf_target_arch = "aarch64")]
const CALLER_ABOVE_ENTRY: usize = 2;
/// The words read first, from the end of the arguments up: on x86-64 a
/// return value's slot (when another program needs one), the saved frame
/// pointer, the return into the function and the caller; on arm64 also the
/// two saved registers, alignment and the frame records.
#[cfg(bpf_target_arch = "x86_64")]
const ABOVE_ARGS_WORDS: usize = 4;
#[cfg(bpf_target_arch = "aarch64")]
const ABOVE_ARGS_WORDS: usize = 8;
/// The most arguments a trampoline passes (`MAX_BPF_FUNC_ARGS`).
const MAX_ARGS: i64 = 12;
/// Where that first read finds nothing (an argument passed in two
/// registers makes them more than the count says): the frame from the
/// first argument up.
const TRAMPOLINE_WORDS: usize = 20;
/// The patched call returns this close after the function's address
/// (5 or 9 bytes on x86-64, 8 or 12 on arm64).
const PATCHED_CALL_END: u64 = 16;

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
/// may carry a pointer-authentication signature once a prologue signed it),
/// read the `R` way.
#[cfg(bpf_target_arch = "x86_64")]
#[inline(always)]
pub fn return_address<R: WordRead>(ctx: &ProbeContext) -> Result<u64, u32> {
    let [address] = R::words::<1>(stack_pointer(ctx))?;
    Ok(address)
}

/// Where the probed function returns to: the link register, no read.
#[cfg(bpf_target_arch = "aarch64")]
#[inline(always)]
pub fn return_address<R: WordRead>(ctx: &ProbeContext) -> Result<u64, u32> {
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

/// The traced function's return address, at an fentry program in the
/// function's trampoline: the word `CALLER_ABOVE_ENTRY` above the first
/// word past the arguments that returns into `func_ip`. The few words just
/// past the arguments first, read the `R` way: a wider read costs more,
/// under emulation most of all. The rare wider read goes through the
/// helper.
#[inline(always)]
pub fn trampoline_caller<R: WordRead>(ctx: &FEntryContext, func_ip: u64) -> Result<u64, u32> {
    // SAFETY: the helper reads the argument count the trampoline stored.
    let args = unsafe { bpf_get_func_arg_cnt(ctx.as_ptr()) }.clamp(0, MAX_ARGS) as usize;
    let above_args = (ctx.as_ptr() as *const u64).wrapping_add(args);
    let near = R::words::<ABOVE_ARGS_WORDS>(above_args as u64)?;
    if let Some(caller) = caller_above_entry(&near, 0, func_ip) {
        return Ok(caller);
    }
    let frame = HelperRead::words::<TRAMPOLINE_WORDS>(ctx.as_ptr() as u64)?;
    caller_above_entry(&frame, args, func_ip).ok_or(READ_ERRORS)
}

/// The word `CALLER_ABOVE_ENTRY` above the lowest of `words`, from index
/// `from`, that returns into `func_ip`.
#[inline(always)]
fn caller_above_entry<const N: usize>(words: &[u64; N], from: usize, func_ip: u64) -> Option<u64> {
    // Downwards, without an early exit, so the lowest match wins and the
    // loop unrolls into selects rather than a copy of the caller's code
    // per exit.
    let mut caller = 0;
    let mut i = N - CALLER_ABOVE_ENTRY;
    while i > 0 {
        i -= 1;
        if i >= from && words[i].wrapping_sub(func_ip) < PATCHED_CALL_END {
            caller = words[i + CALLER_ABOVE_ENTRY];
        }
    }
    (caller != 0).then_some(caller)
}
