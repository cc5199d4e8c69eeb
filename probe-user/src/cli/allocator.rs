//! The allocator's policy for a long session. glibc's malloc raises its
//! mmap threshold to the largest block freed (up to 32 MiB on 64-bit), and
//! its trim threshold to twice that: once start-up has freed its big
//! buffers (the kernel's BTF, kallsyms, the functions ftrace can trace),
//! later blocks of that size come from the heap and the freed heap is kept.
//! A session on 6.12 x86-64 then held 30 MB after 30 s busy, against 21.7
//! MB with the thresholds fixed (`cargo xtask vm`, four runs each, stop
//! 31). Fixed at glibc's defaults, a block of 128 KiB or more is mapped on
//! its own and unmapped when freed, and a free heap top of that size is
//! given back. musl's allocator (the static builds) keeps neither.

/// glibc's default thresholds, which it no longer moves once set.
#[cfg(target_env = "gnu")]
const THRESHOLD_BYTES: libc::c_int = 128 * 1024;

/// Keeps the thresholds where they start; before any thread does.
#[cfg(target_env = "gnu")]
pub fn return_freed_memory() {
    // SAFETY: mallopt only sets the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD_BYTES);
        libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD_BYTES);
    }
}

/// Other allocators return large blocks already.
#[cfg(not(target_env = "gnu"))]
pub fn return_freed_memory() {}

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    /// The heap glibc's arenas hold, in bytes.
    fn heap_bytes() -> usize {
        // SAFETY: mallinfo2 only reads the allocator's statistics.
        unsafe { libc::mallinfo2() }.arena
    }

    /// Once a 4 MiB block has been freed, a second one would come from
    /// the heap and stay there after its free; with the thresholds fixed,
    /// it is mapped on its own and the heap does not grow by it.
    #[test]
    fn a_large_block_freed_leaves_the_heap_as_it_was() {
        const BLOCK: usize = 4 << 20;
        super::return_freed_memory();
        drop(std::hint::black_box(vec![1u8; BLOCK]));
        let before = heap_bytes();
        drop(std::hint::black_box(vec![1u8; BLOCK]));
        let after = heap_bytes();
        assert!(
            after < before + BLOCK / 2,
            "the heap grew from {before} to {after} bytes"
        );
    }
}
