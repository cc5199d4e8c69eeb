//! The module load and free paths. `module:module_load` fires in
//! `load_module()` after the module is laid out and relocated, just before
//! `do_init_module()` calls its init: the registry is filled in before any
//! of the module's code runs. `module:module_free` fires in `free_module()`.
//!
//! Records are built in a per-CPU scratch slot and copied into the map and
//! the ring buffer from there, keeping the BPF stack small.

use aya_ebpf::{
    helpers::{
        bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use probe_common::{EventHeader, EventKind, ModuleEvent, ModuleLayout, ModuleRecord};

use aya_log_ebpf::debug;
use core::intrinsics::{AtomicOrdering::SeqCst, atomic_cxchg};

use crate::{
    maps::{self, EVENTS, LOST_EVENTS, MODULES, READ_ERRORS, REGISTRY_FULL, ROWS, SCRATCH},
    text_pages,
};

#[raw_tracepoint(tracepoint = "module_load")]
pub fn module_load(ctx: RawTracePointContext) -> i32 {
    if let Err(slot) = try_module_load(&ctx) {
        maps::failed(&ctx, "module_load", slot);
    }
    0
}

#[raw_tracepoint(tracepoint = "module_free")]
pub fn module_free(ctx: RawTracePointContext) -> i32 {
    if let Err(slot) = try_module_free(&ctx) {
        maps::failed(&ctx, "module_free", slot);
    }
    0
}

#[inline(always)]
fn try_module_load(ctx: &RawTracePointContext) -> Result<(), u32> {
    let layout = maps::layout();
    if layout.valid == 0 {
        return Ok(());
    }
    let module: u64 = ctx.arg(0);
    // SAFETY: a helper call without arguments; it reads the boot clock.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let record = scratch()?;
    read_record(module, &layout, now, record)?;
    let record: &ModuleRecord = record;
    // A stale entry under the same name (a module whose free we missed)
    // is replaced: the newest incarnation is the one whose text is live.
    MODULES
        .insert(&record.name, record, 0)
        .map_err(|_| REGISTRY_FULL)?;
    // The row and the pages go in before the load event: a call from init
    // is attributed and counted even if userspace has not read the event.
    claim_row(record.incarnation);
    text_pages::register(
        record.core_text_base,
        record.core_text_size,
        record.incarnation,
    )?;
    text_pages::register(
        record.init_text_base,
        record.init_text_size,
        record.incarnation,
    )?;
    emit(EventKind::ModuleLoad, now, record)?;
    debug!(
        ctx,
        "module_load: registered incarnation {} before its init", record.incarnation
    );
    Ok(())
}

/// Takes the count table's row for a new incarnation when it is free.
/// Left as it is on free: user space frees it once the incarnation's totals
/// are read and its cells zeroed. A taken row means the hash map counts.
#[inline(always)]
fn claim_row(incarnation: u64) {
    let Some(row) = maps::count_table().row(incarnation) else {
        return;
    };
    let Some(owner) = ROWS.get_ptr_mut(row) else {
        return;
    };
    // SAFETY: an aligned u64 array slot, valid while the program runs;
    // compare-and-swap (BPF_CMPXCHG; core's atomics do not offer it on the
    // BPF target), because loads on two CPUs may want one row.
    let _ = unsafe { atomic_cxchg::<u64, { SeqCst }, { SeqCst }>(owner, 0, incarnation) };
}

#[inline(always)]
fn try_module_free(ctx: &RawTracePointContext) -> Result<(), u32> {
    let layout = maps::layout();
    if layout.valid == 0 {
        return Ok(());
    }
    let module: u64 = ctx.arg(0);
    // SAFETY: a helper call without arguments; it reads the boot clock.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let record = scratch()?;
    read_name(module, &layout, record)?;
    // Prefer what the registry recorded at load (it knows the load time and
    // the init range, both gone by now); fall back to reading the struct.
    // SAFETY: the value is copied out at once, before anything could
    // delete the entry it points to (the remove below comes after).
    let known = unsafe { MODULES.get(&record.name) };
    match known {
        Some(known) if known.module_addr == module => copy_record(record, known),
        _ => read_record(module, &layout, 0, record)?,
    }
    let _ = MODULES.remove(&record.name);
    text_pages::unregister(
        record.core_text_base,
        record.core_text_size,
        record.incarnation,
    );
    text_pages::unregister(
        record.init_text_base,
        record.init_text_size,
        record.incarnation,
    );
    emit(EventKind::ModuleFree, now, record)
}

#[inline(always)]
fn scratch() -> Result<&'static mut ModuleRecord, u32> {
    let ptr = SCRATCH.get_ptr_mut(0).ok_or(READ_ERRORS)?;
    // SAFETY: a per-CPU slot, used by one program at a time on this CPU
    // (tracepoint programs do not nest on one CPU).
    Ok(unsafe { &mut *ptr })
}

#[inline(always)]
fn read<T>(addr: u64) -> Result<T, u32> {
    // SAFETY: bpf_probe_read_kernel validates the address and fails
    // cleanly on a bad one; the result is a plain-integer type.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|_| READ_ERRORS)
}

#[inline(always)]
fn read_size(addr: u64, width: u32) -> Result<u64, u32> {
    if width == 8 {
        read::<u64>(addr)
    } else {
        read::<u32>(addr).map(u64::from)
    }
}

#[inline(always)]
fn read_name(module: u64, layout: &ModuleLayout, record: &mut ModuleRecord) -> Result<(), u32> {
    let src = (module + layout.name as u64) as *const u8;
    // SAFETY: as for `read`; the destination is the record's own array.
    unsafe { bpf_probe_read_kernel_buf(src, &mut record.name.0) }.map_err(|_| READ_ERRORS)
}

#[inline(always)]
fn read_record(
    module: u64,
    layout: &ModuleLayout,
    now: u64,
    record: &mut ModuleRecord,
) -> Result<(), u32> {
    read_name(module, layout, record)?;
    record.taints = read(module + layout.taints as u64)?;
    record.module_addr = module;
    record.core_text_base = read(module + layout.core_text_base as u64)?;
    record.core_text_size = read_size(
        module + layout.core_text_size as u64,
        layout.text_size_width,
    )?;
    record.init_text_base = read(module + layout.init_text_base as u64)?;
    record.init_text_size = read_size(
        module + layout.init_text_size as u64,
        layout.text_size_width,
    )?;
    // Volatile: with `now` a constant 0 (the free path), LLVM would merge
    // these stores into a memset call, which BPF cannot make.
    // SAFETY: plain stores to fields of a valid, exclusive record.
    unsafe {
        core::ptr::write_volatile(&mut record.load_ns, now);
        core::ptr::write_volatile(&mut record.incarnation, now);
        core::ptr::write_volatile(&mut record.flags, 0);
        core::ptr::write_volatile(&mut record._pad, 0);
    }
    Ok(())
}

#[inline(always)]
fn emit(kind: EventKind, now: u64, record: &ModuleRecord) -> Result<(), u32> {
    let Some(mut entry) = EVENTS.reserve::<ModuleEvent>(0) else {
        return Err(LOST_EVENTS);
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at reserved, writable ring-buffer memory of
    // the right size; fields are written in place, never via the stack.
    unsafe {
        (*event).header = EventHeader {
            kind: kind as u32,
            cpu: bpf_get_smp_processor_id(),
            ts_ns: now,
        };
        copy_record(&mut (*event).record, record);
    }
    entry.submit(0);
    Ok(())
}

/// Copies a record field by field: a whole-struct copy of this size becomes
/// a call to memcpy, which BPF cannot make.
#[inline(always)]
fn copy_record(dst: &mut ModuleRecord, src: &ModuleRecord) {
    // SAFETY: two distinct, valid 56-byte arrays (the scratch slot or ring
    // entry, and a map value); a fixed-size copy the backend inlines.
    unsafe {
        core::ptr::copy_nonoverlapping(
            src.name.0.as_ptr(),
            dst.name.0.as_mut_ptr(),
            src.name.0.len(),
        );
    }
    dst.taints = src.taints;
    dst.module_addr = src.module_addr;
    dst.core_text_base = src.core_text_base;
    dst.core_text_size = src.core_text_size;
    dst.init_text_base = src.init_text_base;
    dst.init_text_size = src.init_text_size;
    dst.load_ns = src.load_ns;
    dst.incarnation = src.incarnation;
    dst.flags = src.flags;
    dst._pad = src._pad;
}
