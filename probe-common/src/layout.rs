//! Where the fields of `struct module` sit in the running kernel.
//!
//! The layout differs between releases (`core_layout`/`init_layout` before
//! 6.4, `mem[MOD_MEM_NUM_TYPES]` since) and between configurations, so
//! userspace computes these offsets from the kernel's BTF and hands them to
//! the eBPF programs as a load-time global. Nothing here is hard-coded.

/// Byte offsets inside `struct module`, and the width of the text-size
/// fields (`unsigned int` in every layout seen so far, but read from BTF).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleLayout {
    /// Non-zero once userspace has filled the struct in; the programs do
    /// nothing until then.
    pub valid: u32,
    pub name: u32,
    pub taints: u32,
    pub core_text_base: u32,
    pub core_text_size: u32,
    pub init_text_base: u32,
    pub init_text_size: u32,
    /// Width in bytes (4 or 8) of the two text-size fields.
    pub text_size_width: u32,
}

impl ModuleLayout {
    pub const UNSET: Self = Self {
        valid: 0,
        name: 0,
        taints: 0,
        core_text_base: 0,
        core_text_size: 0,
        init_text_base: 0,
        init_text_size: 0,
        text_size_width: 0,
    };
}

const _: () = assert!(core::mem::size_of::<ModuleLayout>() == 32);
