//! The instructions the loader rewrites in a copy of a program
//! (`probe-user`'s `program_copy`): 64-bit immediates it writes a value
//! over (`loader_constant`), and the helper call it turns into a call of
//! the `bpf_rdonly_cast` kfunc (`rdonly_cast`). Both are inline assembly,
//! so the compiler can neither fold, split nor drop what the loader looks
//! for.

use probe_common::kernel_view::CAST_CALL;

/// A value the loader writes into this copy of the program: an `ld_imm64`
/// of `MARKER`, which the compiler can neither fold nor fuse into other
/// arithmetic, so the loader finds it whole.
#[inline(always)]
pub fn loader_constant<const MARKER: u64>() -> u64 {
    let value: u64;
    // SAFETY: loads an immediate into a register; touches nothing else.
    unsafe {
        core::arch::asm!(
            "{value} = {marker} ll",
            value = out(reg) value,
            marker = const MARKER,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    value
}

/// `address` as a read-only, untrusted pointer to the BTF struct
/// `type_id` names: the kfunc `bpf_rdonly_cast`, once the loader has made
/// this call one (the verifier refuses the copy otherwise; it never runs
/// as written). The verifier inlines it as a move of `address`.
#[inline(always)]
pub fn rdonly_cast(address: u64, type_id: u64) -> *const u64 {
    let view: u64;
    // SAFETY: a call with the BPF calling convention: arguments in r1 and
    // r2, the result in r0, r1 to r5 clobbered; it reads no memory of the
    // program's.
    unsafe {
        core::arch::asm!(
            "call {helper}",
            helper = const CAST_CALL,
            inlateout("r1") address => _,
            inlateout("r2") type_id => _,
            lateout("r0") view,
            lateout("r3") _,
            lateout("r4") _,
            lateout("r5") _,
            options(pure, nomem, nostack),
        );
    }
    view as *const u64
}
