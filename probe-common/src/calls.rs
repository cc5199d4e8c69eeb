//! Call attribution: which module called which kernel function, how often.
//!
//! A module's text pages map to its incarnation id (the boot-clock time of
//! its load, unique per load) in `PAGES`; a kprobe on a kernel function looks
//! the caller's return address up there and counts the call per CPU under
//! `CallKey`. The first call per key is also sent as a [`FirstUseEvent`].

/// Page size used for the text-page map (x86-64).
pub const PAGE_SHIFT: u64 = 12;

/// Upper bound on the pages one text range registers in the kernel (4 MiB
/// of text): the verifier walks the registration loop to this bound, and at
/// 4096 it gives up. Larger modules are counted for their first 4 MiB.
pub const MAX_TEXT_PAGES: u64 = 1024;

/// Per-call counter key.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CallKey {
    /// The calling module's incarnation (`ModuleRecord::load_ns`, or a
    /// userspace-assigned id for modules loaded before modscope).
    pub incarnation: u64,
    /// Address of the called kernel function (`bpf_get_func_ip`).
    pub func_ip: u64,
}

/// Sent once per (incarnation, function).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FirstUseEvent {
    pub header: crate::EventHeader,
    pub key: CallKey,
    /// The return address: where in the module the call came from.
    pub caller: u64,
}

/// Load-time settings for the call probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallProbeConfig {
    /// Lowest address module text can have (MODULES_VADDR); calls returning
    /// below it come from the core kernel and are skipped before any lookup.
    pub module_area_start: u64,
}

impl CallProbeConfig {
    pub const UNSET: Self = Self {
        module_area_start: u64::MAX,
    };
}

const _: () = assert!(core::mem::size_of::<CallKey>() == 16);
const _: () = assert!(core::mem::size_of::<FirstUseEvent>() == 16 + 16 + 8);
const _: () = assert!(core::mem::size_of::<CallProbeConfig>() == 8);
