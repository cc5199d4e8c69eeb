//! The module allocations the object-bounds check measures objects
//! against: an entry kprobe on each followed allocator notes the size a
//! module asked for (attributed like every call), its return probe puts
//! the returned address in that module incarnation's ring of recent
//! allocations, and a module's `kfree` takes it out again (`count_free`,
//! which counts the call too, in place of `count_call`).

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, bpf_get_func_ip},
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use probe_common::anomaly::{ALLOC_RING_LEN, PendingAlloc};

use crate::{
    attribution::{self, Caller},
    call_counter::{self, Callee, NOEXIST},
    kernel_words::HelperRead,
    maps::{self, ALLOC_FUNCS, ALLOC_RINGS, CALL_MAP_FULL, EMPTY_RING, PENDING_ALLOCS},
    regs,
};

/// `ZERO_SIZE_PTR` and NULL: nothing was allocated.
const NOT_AN_ALLOCATION: u64 = 16;

#[kprobe]
pub fn alloc_entry(ctx: ProbeContext) -> u32 {
    if let Err(slot) = try_alloc_entry(&ctx) {
        maps::failed(&ctx, "alloc_entry", slot);
    }
    0
}

#[inline(always)]
fn try_alloc_entry(ctx: &ProbeContext) -> Result<(), u32> {
    let Some((incarnation, _)) = attribution::caller::<HelperRead>(ctx)?.module() else {
        return Ok(());
    };
    // SAFETY: the helper only reads the context it is given.
    let func_ip = unsafe { bpf_get_func_ip(ctx.as_ptr()) };
    // SAFETY: a plain u32; the map is only written by userspace.
    let Some(&arg) = (unsafe { ALLOC_FUNCS.get(&func_ip) }) else {
        return Ok(());
    };
    let args = regs::first_four_args(ctx);
    let size = match arg {
        0 => args[0],
        1 => args[1],
        2 => args[2],
        3 => args[3],
        _ => 0,
    };
    let pending = PendingAlloc { incarnation, size };
    let thread = bpf_get_current_pid_tgid();
    PENDING_ALLOCS
        .insert(&thread, &pending, 0)
        .map_err(|_| CALL_MAP_FULL)
}

#[kretprobe]
pub fn alloc_return(ctx: RetProbeContext) -> u32 {
    if let Err(slot) = try_alloc_return(&ctx) {
        maps::failed(&ctx, "alloc_return", slot);
    }
    0
}

#[inline(always)]
fn try_alloc_return(ctx: &RetProbeContext) -> Result<(), u32> {
    let thread = bpf_get_current_pid_tgid();
    // SAFETY: a plain-data value, copied out at once.
    let Some(pending) = (unsafe { PENDING_ALLOCS.get(&thread) }).copied() else {
        return Ok(());
    };
    let _ = PENDING_ALLOCS.remove(&thread);
    let base: u64 = ctx.ret();
    if base <= NOT_AN_ALLOCATION {
        return Ok(());
    }
    if ALLOC_RINGS.get_ptr_mut(&pending.incarnation).is_none() {
        let Some(empty) = EMPTY_RING.get(0) else {
            return Ok(());
        };
        ALLOC_RINGS
            .insert(&pending.incarnation, empty, NOEXIST)
            .ok();
    }
    let Some(ring) = ALLOC_RINGS.get_ptr_mut(&pending.incarnation) else {
        return Err(CALL_MAP_FULL);
    };
    // SAFETY: a map value that lives while the program runs; two CPUs
    // writing one incarnation's ring at once may lose a slot (best effort).
    let ring = unsafe { &mut *ring };
    // The same address again (`krealloc` in place, or a free this probe
    // did not see): the allocation's size is the new one.
    for slot in 0..ALLOC_RING_LEN {
        if ring.base[slot] == base {
            ring.size[slot] = pending.size;
            return Ok(());
        }
    }
    let slot = (ring.next as usize) % ALLOC_RING_LEN;
    ring.base[slot] = base;
    ring.size[slot] = pending.size;
    ring.next = ring.next.wrapping_add(1);
    Ok(())
}

/// On the functions that free (`kfree`, ...) while allocations are
/// followed: counts a module's call, as `count_call` would, and forgets the
/// allocation it frees. Its own program, so a free pays no check lookup.
#[kprobe]
pub fn count_free(ctx: ProbeContext) -> u32 {
    if let Err(slot) = try_count_free(&ctx) {
        maps::failed(&ctx, "count_free", slot);
    }
    0
}

#[inline(always)]
fn try_count_free(ctx: &ProbeContext) -> Result<(), u32> {
    let caller = attribution::caller::<HelperRead>(ctx)?;
    if let Caller::Kernel = caller {
        return Ok(());
    }
    // SAFETY: the helper only reads the context it is given.
    let func_ip = unsafe { bpf_get_func_ip(ctx.as_ptr()) };
    call_counter::count_caller(caller, Callee::at(func_ip))?;
    if let Some((incarnation, _)) = caller.module() {
        forget(incarnation, ctx.arg(0).unwrap_or(0));
    }
    Ok(())
}

/// The module freed `object`: it is no longer one of its allocations.
#[inline(always)]
fn forget(incarnation: u64, object: u64) {
    let Some(ring) = ALLOC_RINGS.get_ptr_mut(&incarnation) else {
        return;
    };
    // SAFETY: as in `try_alloc_return`.
    let ring = unsafe { &mut *ring };
    for slot in 0..ALLOC_RING_LEN {
        if ring.base[slot] == object {
            ring.base[slot] = 0;
            ring.size[slot] = 0;
        }
    }
}

/// When `object` lies inside one of the module's recent allocations: the
/// bytes from `object` to that allocation's end.
#[inline(always)]
pub fn room_at(incarnation: u64, object: u64) -> Option<u64> {
    // SAFETY: a plain-data map value, read in place.
    let ring = unsafe { ALLOC_RINGS.get(&incarnation) }?;
    for slot in 0..ALLOC_RING_LEN {
        let (base, size) = (ring.base[slot], ring.size[slot]);
        if base != 0 && object >= base && object - base < size {
            return Some(size - (object - base));
        }
    }
    None
}
