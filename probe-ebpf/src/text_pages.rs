//! The text-page map: which module incarnation owns each page of module
//! text. Filled on the load path (before init runs) and cleared on the free
//! path, only of pages still owned by the module being freed, so a module
//! loaded at a reused address keeps its own entries.

use probe_common::calls::MAX_TEXT_PAGES;

use crate::maps::{self, PAGE_MAP_FULL, PAGES};

/// First page index and page count of `[base, base+size)`.
#[inline(always)]
fn pages(base: u64, size: u64) -> Option<(u32, u64)> {
    if base == 0 || size == 0 {
        return None;
    }
    let config = maps::call_probe();
    let first = config.page_index(base)?;
    Some((first, config.pages_spanned(base, size)))
}

#[inline(always)]
pub fn register(base: u64, size: u64, incarnation: u64) -> Result<(), u32> {
    let Some((first, count)) = pages(base, size) else {
        return Ok(());
    };
    for i in 0..MAX_TEXT_PAGES as u32 {
        if u64::from(i) >= count {
            break;
        }
        // Past the end of the module area: not module text.
        let slot = PAGES.get_ptr_mut(first + i).ok_or(PAGE_MAP_FULL)?;
        // SAFETY: an array slot of this map, valid while the program runs.
        unsafe { core::ptr::write_volatile(slot, incarnation) };
    }
    Ok(())
}

#[inline(always)]
pub fn unregister(base: u64, size: u64, incarnation: u64) {
    let Some((first, count)) = pages(base, size) else {
        return;
    };
    for i in 0..MAX_TEXT_PAGES as u32 {
        if u64::from(i) >= count {
            break;
        }
        if let Some(slot) = PAGES.get_ptr_mut(first + i) {
            // SAFETY: an array slot of this map, valid while the program runs.
            unsafe {
                if core::ptr::read_volatile(slot) == incarnation {
                    core::ptr::write_volatile(slot, 0);
                }
            }
        }
    }
}
