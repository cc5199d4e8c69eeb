//! The program attached to every watched kernel function: a kprobe, or an
//! fentry program where the function has a BTF trampoline. At function
//! entry the return address is at the top of the stack (or in the
//! trampoline's frame); its page tells which module, if any, made the call.
//! Calls from the core kernel return below the module area and cost one
//! comparison.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_func_ip, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};
use probe_common::{
    CallKey, CountTableConfig, EventHeader, EventKind, FirstUseEvent, UnownedCallKey,
    count_table::{COLUMN_PROBES, copy_constant},
};

use crate::{
    attribution::{self, Caller},
    copy_patch::loader_constant,
    kernel_words::{HelperRead, ViewRead, WordRead},
    maps::{
        self, CALL_MAP_FULL, CALLS, COLUMNS, COUNTS, EVENTS, LOST_EVENTS, ROWS, SEEN, UNOWNED_CALLS,
    },
    regs,
};

/// `BPF_NOEXIST`.
pub const NOEXIST: u64 = 1;

#[kprobe]
pub fn count_call(ctx: ProbeContext) -> u32 {
    if let Err(slot) = try_count_call::<HelperRead>(&ctx) {
        maps::failed(&ctx, "count_call", slot);
    }
    0
}

/// `count_call` reading the return address through a view
/// (`kernel_words::ViewRead`), for a copy the loader patched
/// (`probe-user`'s `program_copy`): a kprobe_multi link on a kernel with
/// `bpf_rdonly_cast`. Only x86-64 reads memory for it.
#[cfg(bpf_target_arch = "x86_64")]
#[kprobe]
pub fn count_call_view(ctx: ProbeContext) -> u32 {
    if let Err(slot) = try_count_call::<ViewRead>(&ctx) {
        maps::failed(&ctx, "count_call", slot);
    }
    0
}

#[inline(always)]
fn try_count_call<R: WordRead>(ctx: &ProbeContext) -> Result<(), u32> {
    let caller = attribution::caller::<R>(ctx)?;
    if let Caller::Kernel = caller {
        return Ok(());
    }
    // SAFETY: the helper only reads the context it is given.
    let func_ip = unsafe { bpf_get_func_ip(ctx.as_ptr()) };
    count_caller(caller, Callee::at(func_ip))
}

/// `count_call` for a trampoline: one copy is loaded per function, against
/// its BTF id, by the loader shim (`probe-user`'s `probe::fentry`), which
/// writes the function's address and column into the copy
/// (`copy_constant`); the section names no function. Its failures are
/// counted, not logged (`maps::bump`).
#[fentry]
pub fn count_call_fentry(ctx: FEntryContext) -> u32 {
    if let Err(slot) = try_count_call_fentry::<HelperRead>(&ctx) {
        maps::bump(slot);
    }
    0
}

/// `count_call_fentry` reading the trampoline's frame through a view
/// (`kernel_words::ViewRead`), for a kernel with `bpf_rdonly_cast`.
#[fentry]
pub fn count_call_fentry_view(ctx: FEntryContext) -> u32 {
    if let Err(slot) = try_count_call_fentry::<ViewRead>(&ctx) {
        maps::bump(slot);
    }
    0
}

#[inline(always)]
fn try_count_call_fentry<R: WordRead>(ctx: &FEntryContext) -> Result<(), u32> {
    let callee = Callee {
        ip: loader_constant::<{ copy_constant::FUNC_IP }>(),
        column: Some(loader_constant::<{ copy_constant::COLUMN }>() as u32),
    };
    let caller = attribution::owner(regs::trampoline_caller::<R>(ctx, callee.ip)?);
    count_caller(caller, callee)
}

/// The function called: its address, and its count-table column when the
/// program knows it (an fentry copy), else it is searched in `COLUMNS`.
#[derive(Clone, Copy)]
pub struct Callee {
    pub ip: u64,
    column: Option<u32>,
}

impl Callee {
    /// A function whose column is searched for.
    #[inline(always)]
    pub fn at(ip: u64) -> Self {
        Self { ip, column: None }
    }
}

/// Counts a call by whoever made it: a module's, or one from module memory
/// no module owns (the evidence of a module hidden from modscope).
#[inline(always)]
pub fn count_caller(caller: Caller, callee: Callee) -> Result<(), u32> {
    match caller {
        Caller::Kernel => Ok(()),
        Caller::Module {
            incarnation,
            address,
        } => count(incarnation, address, callee),
        Caller::Unowned(address) => {
            count_unowned(address, callee.ip);
            Ok(())
        }
    }
}

/// A rare path: an LRU map, so a flood from unowned code evicts old sites
/// rather than failing.
#[inline(always)]
fn count_unowned(caller: u64, func_ip: u64) {
    let key = UnownedCallKey { caller, func_ip };
    if let Some(count) = UNOWNED_CALLS.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot; kprobe programs do not nest on one CPU.
        unsafe { *count += 1 };
    } else {
        let _ = UNOWNED_CALLS.insert(&key, &1, 0);
    }
}

/// Counts one attributed call (also used by `check_fields`, which replaces
/// this program on the functions it checks, so a checked call is one kprobe).
/// The count table's cell when the module has a row and the function a
/// column (`probe_common::count_table`), else the hash map.
#[inline(always)]
pub fn count(incarnation: u64, caller: u64, callee: Callee) -> Result<(), u32> {
    let key = CallKey {
        incarnation,
        func_ip: callee.ip,
    };
    if let Some(count) = table_cell(incarnation, callee).and_then(|c| COUNTS.get_ptr_mut(c)) {
        // SAFETY: this CPU's slot; kprobe programs do not nest on one CPU.
        let before = unsafe { *count };
        // SAFETY: as above.
        unsafe { *count = before + 1 };
        // The first call on this CPU: perhaps the first anywhere.
        return if before == 0 {
            first_seen(key, caller)
        } else {
            Ok(())
        };
    }
    if let Some(count) = CALLS.get_ptr_mut(&key) {
        // SAFETY: this CPU's slot; kprobe programs do not nest on one CPU.
        unsafe { *count += 1 };
        return Ok(());
    }
    // First call on this CPU. The kernel inserts under the bucket lock and
    // updates in place if another CPU got there first: no count is lost.
    CALLS.insert(&key, &1, 0).map_err(|_| CALL_MAP_FULL)?;
    first_seen(key, caller)
}

/// `COUNTS`' index for the call, when the incarnation owns its row and the
/// function has a column.
#[inline(always)]
fn table_cell(incarnation: u64, callee: Callee) -> Option<u32> {
    let table = maps::count_table();
    let row = table.row(incarnation)?;
    if *ROWS.get(row)? != incarnation {
        return None;
    }
    let column = match callee.column {
        Some(column) => column,
        None => find_column(&table, callee.ip)?,
    };
    table.cell(row, column)
}

/// The function's column in `COLUMNS`, within `COLUMN_PROBES` buckets.
#[inline(always)]
fn find_column(table: &CountTableConfig, func_ip: u64) -> Option<u32> {
    let mut probe = 0;
    while probe < COLUMN_PROBES {
        let bucket = COLUMNS.get(table.bucket(func_ip, probe))?;
        if bucket.func_ip == func_ip {
            return Some(bucket.column);
        }
        if bucket.func_ip == 0 {
            return None;
        }
        probe += 1;
    }
    None
}

/// The first call of a (module, function) pair on some CPU: the first on
/// any CPU is recorded in `SEEN` with its time and reported.
#[inline(always)]
fn first_seen(key: CallKey, caller: u64) -> Result<(), u32> {
    // SAFETY: no preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if SEEN.insert(&key, &now, NOEXIST).is_ok() {
        first_use(key, caller, now)?;
    }
    Ok(())
}

#[inline(always)]
fn first_use(key: CallKey, caller: u64, now: u64) -> Result<(), u32> {
    let Some(mut entry) = EVENTS.reserve::<FirstUseEvent>(0) else {
        return Err(LOST_EVENTS);
    };
    entry.write(FirstUseEvent {
        header: EventHeader {
            kind: EventKind::FirstUse as u32,
            // SAFETY: no preconditions.
            cpu: unsafe { bpf_get_smp_processor_id() },
            ts_ns: now,
        },
        key,
        caller,
    });
    entry.submit(0);
    Ok(())
}
