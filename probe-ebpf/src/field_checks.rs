//! The anomaly detectors' kprobe (`probe_common::anomaly`). Attached only to
//! the functions userspace gave a check, so plain call counting elsewhere
//! pays nothing. For a call made by a module: look the function's check
//! up, read the field of the object passed as the first argument, and when
//! it is not what this kernel's layout requires (or, for registrations,
//! always) count the call per site and report the site's first one. Where
//! the function takes a kernel-typed object, also check that the object
//! ends inside the module's own allocation (`alloc_ring.rs`). On a
//! function that is also in the call plan it counts the call too, in place
//! of `count_call` (one kprobe per call, not two).

use aya_ebpf::{
    EbpfContext as _,
    helpers::{
        bpf_get_func_ip, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
    },
    macros::kprobe,
    programs::ProbeContext,
};
use probe_common::{
    AnomalyEvent, AnomalyKey, Detector, EventHeader, EventKind, FieldCheck,
    anomaly::{COUNT_CALLS, EXPECT_SELF, NO_FIELD_CHECK},
};

use crate::{
    alloc_ring,
    attribution::{self, Caller},
    call_counter::{self, Callee, NOEXIST},
    kernel_words::HelperRead,
    maps::{
        self, ANOMALIES, ANOMALIES_SEEN, CALL_MAP_FULL, EVENTS, FIELD_CHECKS, LAST_CHECKED,
        LOST_EVENTS, READ_ERRORS,
    },
    regs,
};

#[kprobe]
pub fn check_fields(ctx: ProbeContext) -> u32 {
    if let Err(slot) = try_check_fields(&ctx) {
        maps::failed(&ctx, "check_fields", slot);
    }
    0
}

#[inline(always)]
fn try_check_fields(ctx: &ProbeContext) -> Result<(), u32> {
    let attributed = attribution::caller::<HelperRead>(ctx)?;
    if let Caller::Kernel = attributed {
        return Ok(());
    }
    // SAFETY: the helper only reads the context it is given.
    let func_ip = unsafe { bpf_get_func_ip(ctx.as_ptr()) };
    // SAFETY: a plain-data value; the map is only written by userspace.
    let Some(check) = (unsafe { FIELD_CHECKS.get(&func_ip) }).copied() else {
        return Ok(());
    };
    if check.flags & COUNT_CALLS != 0 {
        call_counter::count_caller(attributed, Callee::at(func_ip))?;
    }
    let Some((incarnation, caller)) = attributed.module() else {
        return Ok(());
    };
    let object: u64 = ctx.arg(0).unwrap_or(0);
    // One call seen twice: a checked kernel function that tail-calls
    // another (`tracepoint_probe_register` jumps to `..._prio`) enters the
    // second with the same stack pointer and return address. A loop calling
    // one function from one site repeats the same function, so it counts.
    let sp = regs::stack_pointer(ctx);
    if let Some(last) = LAST_CHECKED.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; kprobe programs do not nest on one CPU.
        let last = unsafe { &mut *last };
        let same_call = last[0] == sp && last[1] == caller && last[2] != func_ip;
        *last = [sp, caller, func_ip];
        if same_call {
            return Ok(());
        }
    }
    if check.object_size != 0
        && let Some(room) = alloc_ring::room_at(incarnation, object)
        && room < u64::from(check.object_size)
    {
        let found = Found {
            detector: Detector::ObjectBounds as u32,
            object,
            expected: u64::from(check.object_size),
            observed: room,
            option: check.bounds_option,
        };
        report(incarnation, caller, func_ip, &found)?;
    }
    if check.detector == NO_FIELD_CHECK {
        return Ok(());
    }
    let expected = if check.expected == EXPECT_SELF {
        object
    } else {
        check.expected
    };
    let observed = read_field(object, &check)?;
    if check.field_size != 0 && observed == expected {
        return Ok(());
    }
    let found = Found {
        detector: check.detector,
        object,
        expected,
        observed,
        option: check.option,
    };
    report(incarnation, caller, func_ip, &found)
}

/// What one detector saw on one call.
struct Found {
    detector: u32,
    object: u64,
    expected: u64,
    observed: u64,
    option: u32,
}

/// Counts an anomalous call at its site; the site's first one becomes an
/// event.
#[inline(always)]
fn report(incarnation: u64, caller: u64, func_ip: u64, found: &Found) -> Result<(), u32> {
    let key = AnomalyKey {
        incarnation,
        caller,
        func_ip,
        detector: found.detector,
        _pad: 0,
    };
    if let Some(count) = ANOMALIES.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot; kprobe programs do not nest on one CPU.
        unsafe { *count += 1 };
        return Ok(());
    }
    ANOMALIES.insert(&key, &1, 0).map_err(|_| CALL_MAP_FULL)?;
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if ANOMALIES_SEEN.insert(&key, &now, NOEXIST).is_err() {
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<AnomalyEvent>(0) else {
        return Err(LOST_EVENTS);
    };
    entry.write(AnomalyEvent {
        header: EventHeader {
            kind: EventKind::Anomaly as u32,
            // SAFETY: no preconditions.
            cpu: unsafe { bpf_get_smp_processor_id() },
            ts_ns: now,
        },
        key,
        object: found.object,
        expected: found.expected,
        observed: found.observed,
        option: found.option,
        _pad: 0,
    });
    entry.submit(0);
    Ok(())
}

/// The checked field's value, zero-extended; 0 when the check reads none.
#[inline(always)]
fn read_field(object: u64, check: &FieldCheck) -> Result<u64, u32> {
    let at = object.wrapping_add(u64::from(check.field_offset));
    match check.field_size {
        // SAFETY: bpf_probe_read_kernel checks the address; a bad pointer
        // is an error, counted, not a fault.
        4 => unsafe { bpf_probe_read_kernel(at as *const u32) }
            .map(u64::from)
            .map_err(|_| READ_ERRORS),
        // SAFETY: as above.
        8 => unsafe { bpf_probe_read_kernel(at as *const u64) }.map_err(|_| READ_ERRORS),
        _ => Ok(0),
    }
}
