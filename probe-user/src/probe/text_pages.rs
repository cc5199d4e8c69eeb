//! The page map (`probe-ebpf/src/text_pages.rs`) from user space: pages of
//! modules loaded before the session, and text past what the kernel-side
//! loop registers.

use aya::maps::{Array, MapData, MapError};
use probe_common::names::map;

use super::{ModuleProbe, ProbeError};

impl ModuleProbe {
    /// Maps the pages of `[base, base+size)` to `incarnation`. The probes'
    /// own entries (a load seen meanwhile) win.
    pub fn map_text_pages(
        &mut self,
        base: u64,
        size: u64,
        incarnation: u64,
    ) -> Result<(), ProbeError> {
        self.swap_text_pages(base, size, 0, incarnation)
    }

    /// Clears the pages of `[base, base+size)` still mapped to
    /// `incarnation` (text the kernel-side free path does not reach).
    pub fn unmap_text_pages(
        &mut self,
        base: u64,
        size: u64,
        incarnation: u64,
    ) -> Result<(), ProbeError> {
        self.swap_text_pages(base, size, incarnation, 0)
    }

    /// Sets each page of the range that holds `from` to `to`.
    fn swap_text_pages(
        &mut self,
        base: u64,
        size: u64,
        from: u64,
        to: u64,
    ) -> Result<(), ProbeError> {
        if base == 0 || size == 0 {
            return Ok(());
        }
        let config = self.call_config;
        let shift = config.page_shift;
        let mut pages: Array<&mut MapData, u64> = self.map_mut(map::PAGES)?;
        for page in (base >> shift)..=((base + size - 1) >> shift) {
            if let Some(index) = config.page_index(page << shift)
                && pages.get(&index, 0).map_err(pages_err)? == from
            {
                pages.set(index, to, 0).map_err(pages_err)?;
            }
        }
        Ok(())
    }
}

fn pages_err(source: MapError) -> ProbeError {
    ProbeError::Map {
        map: map::PAGES,
        source,
    }
}
