//! The architecture's facts the call probe needs, read from the running
//! kernel (never constants of one architecture): where module text can
//! be, where the core kernel's text is, the page size, and the bits a
//! signed return address carries. ARCHITECTURE.md names each source.
//!
//! - `/proc/kcore` (root, `CONFIG_PROC_KCORE`): its program headers are the
//!   kernel's own memory map (the image `[_text, _end)`, the module area on
//!   x86-64 `[MODULES_VADDR, MODULES_END)` after KASLR), and its VMCOREINFO
//!   note carries `PAGESIZE`, arm64's `MODULES_VADDR` and `KERNELPACMASK`.
//!   Only the headers and the note are read (`kcore`).
//! - `/proc/kallsyms`: `_stext`/`_etext` (the core text), and the image's
//!   bounds where kcore is not there.
//! - `sysconf(_SC_PAGESIZE)`: the page size the kernel told this process.

use std::ops::Range;

use probe_common::CallProbeConfig;

use super::kcore::{self, Kcore};

/// x86-64's module area ends at MODULES_END, a constant of its memory map
/// (`Documentation/arch/x86/x86_64/mm.rst`); its start moves with KASLR's
/// image size and is read from kcore.
const X86_64_MODULES_END: u64 = 0xffff_ffff_ff00_0000;
/// The lowest MODULES_VADDR x86-64 has (no KASLR: a 512 MiB image), for a
/// kernel whose kcore cannot be read: a superset of the real area.
const X86_64_LOWEST_MODULES_VADDR: u64 = 0xffff_ffff_a000_0000;
/// arm64 places modules in a region chosen at boot that covers the kernel
/// image: 128 MiB for direct branches, 2 GiB with PLTs
/// (`arch/arm64/kernel/module.c`, `kaslr.c`). Every such region lies in
/// `[_end - 2 GiB, _text + 2 GiB)`.
const ARM64_PLT_REGION: u64 = 2 << 30;

#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    #[error(
        "call attribution supports x86-64 and arm64; this is {0} (the registry and static \
         checks still work)"
    )]
    Unsupported(&'static str),
    #[error("/proc/kallsyms has no {0} (are addresses hidden? run as root, kptr_restrict)")]
    MissingSymbol(&'static str),
    #[error("the kernel reports a page size of {0} bytes, not a power of two")]
    PageSize(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// The architecture this binary (and its eBPF object) was built for.
    pub fn this_build() -> Result<Self, ArchError> {
        match std::env::consts::ARCH {
            "x86_64" => Ok(Self::X86_64),
            "aarch64" => Ok(Self::Aarch64),
            other => Err(ArchError::Unsupported(other)),
        }
    }
}

/// Where a fact came from, for the session's status line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactSource {
    Kcore,
    /// The architecture's widest layout around what kallsyms gave.
    Superset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchFacts {
    pub arch: Arch,
    pub page_size: u64,
    /// Every address module text can have.
    pub module_window: Range<u64>,
    pub window_source: FactSource,
    /// `[_stext, _etext)`.
    pub core_text: Range<u64>,
    pub pac_mask: u64,
}

/// The kernel image's symbols in `/proc/kallsyms`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImageSymbols {
    pub stext: Option<u64>,
    pub etext: Option<u64>,
    pub end: Option<u64>,
}

impl ImageSymbols {
    pub fn parse(kallsyms: &str) -> Self {
        let mut out = Self::default();
        for line in kallsyms.lines() {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(_), Some(name), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                continue;
            };
            let slot = match name {
                "_stext" => &mut out.stext,
                "_etext" => &mut out.etext,
                "_end" => &mut out.end,
                _ => continue,
            };
            if let Ok(a) = u64::from_str_radix(addr, 16)
                && a != 0
            {
                slot.get_or_insert(a);
            }
        }
        out
    }
}

impl ArchFacts {
    /// Reads this kernel's facts for the architecture this binary runs on,
    /// around the image's `symbols` (from /proc/kallsyms).
    pub fn read(symbols: &ImageSymbols) -> Result<Self, ArchError> {
        let arch = Arch::this_build()?;
        let kcore = kcore::read_headers(kcore::PROC_KCORE).ok();
        Self::derive(arch, system_page_size(), symbols, kcore.as_ref())
    }

    /// The facts from what was read (pure: the rules per architecture).
    pub fn derive(
        arch: Arch,
        page_size: u64,
        symbols: &ImageSymbols,
        kcore: Option<&Kcore>,
    ) -> Result<Self, ArchError> {
        let page_size = kcore
            .and_then(|k| k.number("PAGESIZE"))
            .unwrap_or(page_size);
        if !page_size.is_power_of_two() || page_size < 4096 {
            return Err(ArchError::PageSize(page_size));
        }
        let stext = symbols.stext.ok_or(ArchError::MissingSymbol("_stext"))?;
        let etext = symbols.etext.ok_or(ArchError::MissingSymbol("_etext"))?;
        let image = kcore.and_then(|k| k.segment_holding(stext));
        let (module_window, window_source) = match arch {
            Arch::X86_64 => x86_64_window(kcore, image.clone(), etext),
            Arch::Aarch64 => arm64_window(kcore, image, symbols, etext),
        };
        Ok(Self {
            arch,
            page_size,
            module_window,
            window_source,
            core_text: stext..etext,
            pac_mask: kcore
                .and_then(|k| k.number("NUMBER(KERNELPACMASK)"))
                .unwrap_or(0),
        })
    }

    /// The call probe's load-time settings.
    pub fn call_probe_config(&self) -> CallProbeConfig {
        let page_shift = u64::from(self.page_size.trailing_zeros());
        let pages = (self.module_window.end - self.module_window.start).div_ceil(self.page_size);
        CallProbeConfig {
            module_area_start: self.module_window.start,
            module_area_pages: pages,
            page_shift,
            core_text_start: self.core_text.start,
            core_text_end: self.core_text.end,
            pac_mask: self.pac_mask,
        }
    }

    /// One line for status output.
    pub fn describe(&self) -> String {
        let source = match self.window_source {
            FactSource::Kcore => "from /proc/kcore",
            FactSource::Superset => "the architecture's widest layout (no /proc/kcore)",
        };
        format!(
            "{:?}, {} KiB pages, module text in {:#x}..{:#x} ({source}), core text {:#x}..{:#x}, \
             pointer-auth mask {:#x}",
            self.arch,
            self.page_size / 1024,
            self.module_window.start,
            self.module_window.end,
            self.core_text.start,
            self.core_text.end,
            self.pac_mask
        )
    }
}

/// x86-64: kcore's module segment, the one between the image and
/// MODULES_END; without kcore, the lowest MODULES_VADDR onwards.
fn x86_64_window(
    kcore: Option<&Kcore>,
    image: Option<Range<u64>>,
    etext: u64,
) -> (Range<u64>, FactSource) {
    let image_end = image.map_or(etext, |r| r.end);
    let from_kcore = kcore.and_then(|k| {
        k.segments
            .iter()
            .map(|s| &s.vaddr)
            .find(|s| s.start >= image_end && s.end <= X86_64_MODULES_END && s.start < s.end)
            .cloned()
    });
    match from_kcore {
        Some(window) => (window, FactSource::Kcore),
        None => (
            X86_64_LOWEST_MODULES_VADDR..X86_64_MODULES_END,
            FactSource::Superset,
        ),
    }
}

/// arm64: every region the loader can choose covers the image and spans at
/// most 2 GiB, and none starts below MODULES_VADDR.
fn arm64_window(
    kcore: Option<&Kcore>,
    image: Option<Range<u64>>,
    symbols: &ImageSymbols,
    etext: u64,
) -> (Range<u64>, FactSource) {
    let (image, source) = match image {
        Some(r) => (r, FactSource::Kcore),
        // _end bounds the image; without it _etext is a lower bound of _end.
        None => (
            symbols.stext.unwrap_or(etext)..symbols.end.unwrap_or(etext),
            FactSource::Superset,
        ),
    };
    let floor = kcore
        .and_then(|k| k.number("NUMBER(MODULES_VADDR)"))
        .unwrap_or(0);
    let start = image.end.saturating_sub(ARM64_PLT_REGION).max(floor);
    let end = image.start.saturating_add(ARM64_PLT_REGION);
    (start..end, source)
}

/// The page size this process runs with (`sysconf(_SC_PAGESIZE)`).
pub fn system_page_size() -> u64 {
    // SAFETY: sysconf reads a constant the kernel passed at exec.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
#[path = "arch_tests.rs"]
mod tests;
