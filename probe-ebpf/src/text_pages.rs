//! The text-page map: which module incarnation owns each page of module
//! text. Filled on the load path (before init runs) and emptied on the free
//! path, only of pages still owned by the module being freed, so a module
//! loaded at a reused address keeps its own entries.

use probe_common::calls::{MAX_TEXT_PAGES, PAGE_SHIFT};

use crate::maps::{PAGE_MAP_FULL, PAGES};

#[inline(always)]
fn pages(base: u64, size: u64) -> (u64, u64) {
    if base == 0 || size == 0 {
        return (0, 0);
    }
    let first = base >> PAGE_SHIFT;
    (first, ((base + size - 1) >> PAGE_SHIFT) - first + 1)
}

#[inline(always)]
pub fn register(base: u64, size: u64, incarnation: u64) -> Result<(), u32> {
    let (first, count) = pages(base, size);
    for i in 0..MAX_TEXT_PAGES {
        if i >= count {
            break;
        }
        PAGES
            .insert(&(first + i), &incarnation, 0)
            .map_err(|_| PAGE_MAP_FULL)?;
    }
    Ok(())
}

#[inline(always)]
pub fn unregister(base: u64, size: u64, incarnation: u64) {
    let (first, count) = pages(base, size);
    for i in 0..MAX_TEXT_PAGES {
        if i >= count {
            break;
        }
        let page = first + i;
        // SAFETY: a plain u64 value read from a map slot.
        if unsafe { PAGES.get(&page) }.is_some_and(|owner| *owner == incarnation) {
            let _ = PAGES.remove(&page);
        }
    }
}
