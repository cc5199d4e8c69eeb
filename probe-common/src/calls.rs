//! Call attribution: which module called which kernel function, how often.
//!
//! A module's text pages map to its incarnation id (the boot-clock time of
//! its load, unique per load) in `PAGES`, an array indexed by page number
//! from the start of the module area (a lookup the verifier inlines: no
//! helper call, no hashing on the hot path); a kprobe on a kernel function looks
//! the caller's return address up there and counts the call per CPU under
//! `CallKey`. The first call per key is also sent as a [`FirstUseEvent`].

/// Page size used for the text-page map (x86-64).
pub const PAGE_SHIFT: u64 = 12;

/// Upper bound on the pages one text range registers in the kernel (4 MiB
/// of text): the verifier walks the registration loop to this bound, and at
/// 4096 it gives up. Larger modules are counted for their first 4 MiB.
pub const MAX_TEXT_PAGES: u64 = 1024;

/// Pages in the x86-64 module area, MODULES_VADDR (0xffffffffa0000000
/// without KASLR, higher with it) to MODULES_END (0xffffffffff000000):
/// the length of the `PAGES` array (3 MiB of u64).
pub const MODULE_AREA_PAGES: u64 = (0xffff_ffff_ff00_0000 - 0xffff_ffff_a000_0000) >> PAGE_SHIFT;

/// Index in `PAGES` of the page holding `addr`, when it is in the module
/// area that starts at `area_start`.
#[inline(always)]
pub fn page_index(addr: u64, area_start: u64) -> Option<u32> {
    if addr < area_start {
        return None;
    }
    let i = (addr - area_start) >> PAGE_SHIFT;
    if i < MODULE_AREA_PAGES {
        Some(i as u32)
    } else {
        None
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_index_covers_exactly_the_module_area() {
        let start = 0xffff_ffff_a000_0000;
        assert_eq!(page_index(start - 1, start), None);
        assert_eq!(page_index(start, start), Some(0));
        assert_eq!(page_index(start + 0x1fff, start), Some(1));
        assert_eq!(
            page_index(0xffff_ffff_feff_ffff, start),
            Some(MODULE_AREA_PAGES as u32 - 1)
        );
        assert_eq!(page_index(0xffff_ffff_ff00_0000, start), None);
        assert_eq!(
            page_index(
                0xffff_ffff_c000_0000,
                CallProbeConfig::UNSET.module_area_start
            ),
            None,
            "no call probe: no page is registered"
        );
    }
}
