//! The page map (`probe-ebpf/src/text_pages.rs`) from user space: pages of
//! modules loaded before the session, and text past what the kernel-side
//! loop registers.
//!
//! `PAGES` is a memory-mappable array (`BPF_F_MMAPABLE`), mapped into this
//! process once ([`PageWindow`]). A page changes owner with one atomic
//! compare-and-swap on the shared memory, instead of a lookup and an update
//! syscall: seeding 53 present modules (1,162 pages) took 2,324 `bpf(2)`
//! calls at each start, and the swap is now atomic against the probes' own
//! writes, which a lookup followed by an update was not.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use probe_common::names::map;

use super::{ModuleProbe, ProbeError};

/// `PAGES`' slots, shared with the kernel.
pub struct PageWindow {
    slots: NonNull<AtomicU64>,
    len: usize,
    bytes: usize,
}

// SAFETY: the mapping is owned by this value alone and every access to it
// goes through `AtomicU64`, so moving it or sharing it between threads
// cannot race.
unsafe impl Send for PageWindow {}
// SAFETY: as for Send: shared access is atomic operations only.
unsafe impl Sync for PageWindow {}

impl PageWindow {
    /// Maps the whole of `PAGES` (`entries` slots of 8 bytes) read-write.
    fn map(fd: std::os::fd::BorrowedFd<'_>, entries: u32) -> io::Result<Self> {
        let len = entries as usize;
        let page = usize::try_from(crate::kernel::arch::system_page_size()).unwrap_or(4096);
        let bytes = (len * size_of::<u64>()).div_ceil(page) * page;
        // SAFETY: a new shared mapping of `bytes` bytes of the map's
        // descriptor at offset 0 (where an array map's values start); the
        // kernel checks the length against the map's own size.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let slots = NonNull::new(addr.cast::<AtomicU64>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { slots, len, bytes })
    }

    fn slots(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `len` page-aligned, 8-byte slots and
        // lives as long as `self`; AtomicU64 has u64's layout.
        unsafe { std::slice::from_raw_parts(self.slots.as_ptr(), self.len) }
    }
}

impl Drop for PageWindow {
    fn drop(&mut self) {
        // SAFETY: the mapping `map` made, unmapped once; no slice of it
        // outlives `self`.
        unsafe { libc::munmap(self.slots.as_ptr().cast(), self.bytes) };
    }
}

/// Sets each of `slots[indices]` that holds `from` to `to`; a slot the
/// probes changed meanwhile keeps their value.
fn swap_slots(slots: &[AtomicU64], indices: impl Iterator<Item = u32>, from: u64, to: u64) {
    for index in indices {
        if let Some(slot) = slots.get(index as usize) {
            // Failure means another owner: leaving it is the point.
            let _ = slot.compare_exchange(from, to, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

impl ModuleProbe {
    /// Maps `PAGES` into this process: once, after load.
    pub(super) fn map_page_window(ebpf: &aya::Ebpf) -> Result<PageWindow, ProbeError> {
        let Some(aya::maps::Map::Array(data)) = ebpf.map(map::PAGES) else {
            return Err(ProbeError::MissingMap(map::PAGES));
        };
        let entries = data
            .info()
            .map_err(|source| ProbeError::Map {
                map: map::PAGES,
                source,
            })?
            .max_entries();
        PageWindow::map(data.fd().as_fd(), entries).map_err(ProbeError::PageWindow)
    }

    /// Maps the pages of `[base, base+size)` to `incarnation`. The probes'
    /// own entries (a load seen meanwhile) win.
    pub fn map_text_pages(&self, base: u64, size: u64, incarnation: u64) {
        self.swap_text_pages(base, size, 0, incarnation);
    }

    /// Clears the pages of `[base, base+size)` still mapped to
    /// `incarnation` (text the kernel-side free path does not reach).
    pub fn unmap_text_pages(&self, base: u64, size: u64, incarnation: u64) {
        self.swap_text_pages(base, size, incarnation, 0);
    }

    /// Sets each page of the range that holds `from` to `to`.
    fn swap_text_pages(&self, base: u64, size: u64, from: u64, to: u64) {
        if base == 0 || size == 0 {
            return;
        }
        let config = self.call_config;
        let shift = config.page_shift;
        let indices = ((base >> shift)..=((base + size - 1) >> shift))
            .filter_map(|page| config.page_index(page << shift));
        swap_slots(self.pages.slots(), indices, from, to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(values: &[u64]) -> Vec<AtomicU64> {
        values.iter().copied().map(AtomicU64::new).collect()
    }

    fn values(slots: &[AtomicU64]) -> Vec<u64> {
        slots.iter().map(|s| s.load(Ordering::SeqCst)).collect()
    }

    #[test]
    fn only_slots_holding_the_old_owner_change() {
        let s = slots(&[0, 7, 0, 9, 0]);
        swap_slots(&s, 0..5, 0, 3);
        assert_eq!(
            values(&s),
            [3, 7, 3, 9, 3],
            "the probes' owners 7 and 9 stay"
        );
        swap_slots(&s, 1..4, 3, 0);
        assert_eq!(
            values(&s),
            [3, 7, 0, 9, 3],
            "only the range's slots of 3 clear"
        );
    }

    #[test]
    fn indices_past_the_window_are_ignored() {
        let s = slots(&[0, 0]);
        swap_slots(&s, [1, 2, u32::MAX].into_iter(), 0, 5);
        assert_eq!(values(&s), [0, 5]);
    }

    #[test]
    fn a_real_mapping_is_read_and_written_through() {
        // A file's descriptor stands in for the map's: the same mmap
        // flags, the same slot arithmetic, and unmapping on drop.
        let file = tempfile_of(3 * 8);
        let window = PageWindow::map(file.as_fd(), 3).expect("mmap");
        swap_slots(window.slots(), 0..3, 0, 11);
        assert_eq!(values(window.slots()), [11, 11, 11]);
        drop(window);
        let again = PageWindow::map(file.as_fd(), 3).expect("mmap again");
        assert_eq!(values(again.slots()), [11, 11, 11], "writes reach the file");
    }

    fn tempfile_of(len: u64) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("modscope-pages-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("temp file");
        std::fs::remove_file(&path).expect("unlink");
        file.set_len(len).expect("size");
        file
    }
}
