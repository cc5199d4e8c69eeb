//! modscope's eBPF programs. Each program is a thin shell over a `try_*`
//! function that returns `Result`; errors are counted, never fatal.
#![no_std]
#![no_main]
// `atomic_cxchg`: the one compare-and-swap (`module_registry::claim_row`).
#![feature(core_intrinsics)]
// `asm!` on BPF: what the loader rewrites in a program's copy (`copy_patch`).
#![feature(asm_experimental_arch)]
#![allow(internal_features)]
// aya-ebpf's map methods take `impl Borrow<K>`; every program passes the
// key by reference, the form the verifier has accepted on each kernel of
// the suite. Passing it by value changes the stack the verifier walks, for
// no gain, so clippy's preference is declined for the whole object.
#![allow(clippy::needless_borrows_for_generic_args)]

mod alloc_ring;
mod attribution;
mod call_counter;
mod copy_patch;
mod field_checks;
mod guard;
mod init_done;
mod kernel_words;
mod load_check;
mod maps;
mod module_registry;
mod regs;
mod text_pages;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach here.
    loop {}
}

// bpf_probe_read_kernel and the ring buffer helpers are GPL-only.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
