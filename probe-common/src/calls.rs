//! Call attribution: which module called which kernel function, how often.
//!
//! A module's text pages map to its incarnation id (the boot-clock time of
//! its load, unique per load) in `PAGES`, an array indexed by page number
//! from the start of the module area (a lookup the verifier inlines: no
//! helper call, no hashing on the hot path); a kprobe on a kernel function looks
//! the caller's return address up there and counts the call per CPU under
//! `CallKey`. The first call per key is also sent as a [`FirstUseEvent`].

/// Upper bound on the pages one text range registers in the kernel (4 MiB
/// of text with 4 KiB pages): the verifier walks the registration loop to
/// this bound, and at 4096 it gives up. Larger modules have the rest of
/// their text mapped from user space.
pub const MAX_TEXT_PAGES: u64 = 1024;

/// The length `PAGES` is declared with; user space sets the real one from
/// the running kernel's module window before load.
pub const DEFAULT_WINDOW_PAGES: u32 = 1 << 16;

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

/// A call from module memory that no module modscope knows owns: the
/// return address itself (not an incarnation) and the function called.
/// Such code belongs to a module that left the kernel's lists before
/// modscope saw it, or to other executable allocations in the module area
/// (BPF programs and trampolines, ftrace and kprobe slots), which user
/// space tells apart by `/proc/kallsyms`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct UnownedCallKey {
    pub caller: u64,
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

/// Load-time settings for the call probe: the running kernel's facts
/// (user space's `kernel::arch`), so nothing here assumes one architecture.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallProbeConfig {
    /// Lowest address module text can have; calls returning below it come
    /// from the core kernel and are skipped before any lookup.
    pub module_area_start: u64,
    /// Pages from `module_area_start` where module text can be: the length
    /// of `PAGES`.
    pub module_area_pages: u64,
    /// log2 of the kernel's page size (12, 14 or 16).
    pub page_shift: u64,
    /// The core kernel's text, `[start, end)`: skipped with two comparisons
    /// where the module window surrounds the kernel image (arm64).
    pub core_text_start: u64,
    pub core_text_end: u64,
    /// Bits a signed return address carries (arm64 pointer authentication,
    /// the kernel's `KERNELPACMASK`): set to 1 to strip the signature from
    /// a kernel address. 0 where return addresses are never signed.
    pub pac_mask: u64,
}

impl CallProbeConfig {
    pub const UNSET: Self = Self {
        module_area_start: u64::MAX,
        module_area_pages: 0,
        page_shift: 12,
        core_text_start: 0,
        core_text_end: 0,
        pac_mask: 0,
    };

    /// Index in `PAGES` of the page holding `addr`, when it can be module
    /// text.
    #[inline(always)]
    pub fn page_index(&self, addr: u64) -> Option<u32> {
        if addr >= self.core_text_start && addr < self.core_text_end {
            return None;
        }
        if addr < self.module_area_start {
            return None;
        }
        let i = (addr - self.module_area_start) >> (self.page_shift & 63);
        if i < self.module_area_pages {
            Some(i as u32)
        } else {
            None
        }
    }

    /// The kernel's page size in bytes.
    #[inline(always)]
    pub fn page_size(&self) -> u64 {
        1 << (self.page_shift & 63)
    }

    /// Pages `[base, base+size)` touches (0 for an empty range).
    #[inline(always)]
    pub fn pages_spanned(&self, base: u64, size: u64) -> u64 {
        if size == 0 {
            return 0;
        }
        let shift = self.page_shift & 63;
        ((base + size - 1) >> shift) - (base >> shift) + 1
    }

    /// The return address with any pointer-authentication signature
    /// stripped (kernel addresses have every bit above the VA range set).
    #[inline(always)]
    pub fn strip_signature(&self, return_address: u64) -> u64 {
        return_address | self.pac_mask
    }
}

const _: () = assert!(core::mem::size_of::<CallKey>() == 16);
const _: () = assert!(core::mem::size_of::<UnownedCallKey>() == 16);
const _: () = assert!(core::mem::size_of::<FirstUseEvent>() == 16 + 16 + 8);
const _: () = assert!(core::mem::size_of::<CallProbeConfig>() == 48);

#[cfg(test)]
mod tests {
    use super::*;

    /// x86-64 with KASLR: modules above the kernel image.
    const X86: CallProbeConfig = CallProbeConfig {
        module_area_start: 0xffff_ffff_c000_0000,
        module_area_pages: (0xffff_ffff_ff00_0000 - 0xffff_ffff_c000_0000) >> 12,
        page_shift: 12,
        core_text_start: 0xffff_ffff_8100_0000,
        core_text_end: 0xffff_ffff_8200_0000,
        pac_mask: 0,
    };

    #[test]
    fn page_index_covers_exactly_the_module_window() {
        let start = X86.module_area_start;
        assert_eq!(X86.page_index(start - 1), None);
        assert_eq!(X86.page_index(start), Some(0));
        assert_eq!(X86.page_index(start + 0x1fff), Some(1));
        assert_eq!(
            X86.page_index(0xffff_ffff_feff_ffff),
            Some(X86.module_area_pages as u32 - 1)
        );
        assert_eq!(X86.page_index(0xffff_ffff_ff00_0000), None);
        assert_eq!(
            CallProbeConfig::UNSET.page_index(0xffff_ffff_c000_0000),
            None,
            "no call probe: no page is registered"
        );
    }

    #[test]
    fn core_text_inside_the_window_is_never_module_text() {
        // arm64: a 2 GiB window around a kernel image, 16 KiB pages.
        let arm = CallProbeConfig {
            module_area_start: 0xffff_d000_0000_0000,
            module_area_pages: (4 << 30) >> 14,
            page_shift: 14,
            core_text_start: 0xffff_d000_8000_0000,
            core_text_end: 0xffff_d000_8100_0000,
            pac_mask: 0xffff_0000_0000_0000,
        };
        assert_eq!(arm.page_index(0xffff_d000_8000_0000), None);
        assert_eq!(arm.page_index(0xffff_d000_80ff_ffff), None);
        assert_eq!(
            arm.page_index(0xffff_d000_8100_0000),
            Some(0x8100_0000 >> 14)
        );
        assert_eq!(arm.page_index(0xffff_d000_0000_4000), Some(1));
        assert_eq!(arm.page_size(), 16384);
        assert_eq!(arm.pages_spanned(0xffff_d000_0000_3fff, 2), 2);
        assert_eq!(arm.pages_spanned(0xffff_d000_0000_4000, 0x4000), 1);
        assert_eq!(arm.pages_spanned(0xffff_d000_0000_4000, 0), 0);
    }

    #[test]
    fn a_signed_return_address_is_stripped_to_the_kernel_address() {
        let mask = 0xffff_0000_0000_0000;
        let cfg = CallProbeConfig {
            pac_mask: mask,
            ..X86
        };
        assert_eq!(
            cfg.strip_signature(0xff3a_d3d9_6721_0040),
            0xffff_d3d9_6721_0040
        );
        assert_eq!(
            cfg.strip_signature(0xffff_d3d9_6721_0040),
            0xffff_d3d9_6721_0040
        );
        assert_eq!(
            X86.strip_signature(0xffff_ffff_c000_1234),
            0xffff_ffff_c000_1234
        );
    }
}
