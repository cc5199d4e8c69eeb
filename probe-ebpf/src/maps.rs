//! Maps shared by the programs, and the load-time globals userspace fills in.

use aya_ebpf::EbpfContext;
use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray, PerCpuHashMap, RingBuf},
};
use aya_log_ebpf::{error, warn};
use probe_common::{
    AnomalyKey, CallKey, CallProbeConfig, CountTableConfig, FieldCheck, FileKey, FunctionColumn,
    GuardConfig, LoadCheckConfig, ModuleLayout, ModuleName, ModuleRecord, UnownedCallKey,
    anomaly::{AllocRing, PendingAlloc},
    calls::DEFAULT_WINDOW_PAGES,
};

/// Offsets inside `struct module`, read from the running kernel's BTF by
/// userspace and written here before the programs load.
#[unsafe(no_mangle)]
pub static MODULE_LAYOUT: ModuleLayout = ModuleLayout::UNSET;

/// Settings for the load-time layout check, written by the loader.
#[unsafe(no_mangle)]
pub static LOAD_CHECK: LoadCheckConfig = LoadCheckConfig::UNSET;

/// The guard's settings (`guard.rs`), written by the loader.
#[unsafe(no_mangle)]
pub static GUARD: GuardConfig = GuardConfig::UNSET;

/// File identity (device, inode, change time) -> `guard::Judgement` tag:
/// the verdicts user space computed for the module files it checked.
#[map]
pub static GUARD_FILES: HashMap<FileKey, u32> = HashMap::with_max_entries(65_536, 0);

/// Upper bound on modules tracked at once; Debian kernels run with ~100.
pub const MAX_MODULES: u32 = 4096;

/// The in-kernel module registry: every loaded module's text ranges, keyed
/// by name. Later probes attribute calls by looking return addresses up here.
#[map]
pub static MODULES: HashMap<ModuleName, ModuleRecord> = HashMap::with_max_entries(MAX_MODULES, 0);

/// Settings for the call probe, written by the loader.
#[unsafe(no_mangle)]
pub static CALL_PROBE: CallProbeConfig = CallProbeConfig::UNSET;

/// Page of the module area (`calls::page_index`) -> incarnation of the
/// module whose core or init text holds it, 0 for none. Filled before the
/// module's init runs. Memory-mappable: user space seeds and clears pages
/// with atomic stores into its mapping, not a syscall per page.
#[map]
pub static PAGES: Array<u64> = Array::with_max_entries(DEFAULT_WINDOW_PAGES, BPF_F_MMAPABLE);

/// The count table's shape (`probe_common::count_table`), written by the
/// loader; `ROWS`, `COLUMNS` and `COUNTS` are sized from it.
#[unsafe(no_mangle)]
pub static COUNT_TABLE: CountTableConfig = CountTableConfig::UNSET;

/// Row -> the incarnation that owns it, 0 for a free row.
#[map]
pub static ROWS: Array<u64> = Array::with_max_entries(1, 0);

/// The functions' columns, open-addressed by address (user space fills it).
#[map]
pub static COLUMNS: Array<FunctionColumn> = Array::with_max_entries(1, 0);

/// Calls per (row, column), per CPU: the hot path's counters.
#[map]
pub static COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Calls per (module incarnation, kernel function), per CPU, for those the
/// count table has no cell for: exact, and never contended.
#[map]
pub static CALLS: PerCpuHashMap<CallKey, u64> = PerCpuHashMap::with_max_entries(65_536, 0);

/// Calls from module-area pages that map to no incarnation, per (return
/// address, function), per CPU. LRU: whatever calls from there, the map
/// stays bounded and keeps the recent sites.
#[map]
pub static UNOWNED_CALLS: LruPerCpuHashMap<UnownedCallKey, u64> =
    LruPerCpuHashMap::with_max_entries(1024, 0);

/// (module incarnation, kernel function) pairs already reported, with the
/// boot-clock time of the first call.
#[map]
pub static SEEN: HashMap<CallKey, u64> = HashMap::with_max_entries(65_536, 0);

/// Kernel function address -> the check `check_fields` runs on calls to it
/// from modules (written by userspace from the running kernel's BTF).
#[map]
pub static FIELD_CHECKS: HashMap<u64, FieldCheck> = HashMap::with_max_entries(256, 0);

/// Anomalous calls per (incarnation, call site, function, detector), per CPU.
#[map]
pub static ANOMALIES: PerCpuHashMap<AnomalyKey, u64> = PerCpuHashMap::with_max_entries(16_384, 0);

/// The last checked call on this CPU: (stack pointer, return address,
/// function), to see a tail call between checked functions as one call.
#[map]
pub static LAST_CHECKED: PerCpuArray<[u64; 3]> = PerCpuArray::with_max_entries(1, 0);

/// Anomaly sites already reported, with the boot-clock time of the first.
#[map]
pub static ANOMALIES_SEEN: HashMap<AnomalyKey, u64> = HashMap::with_max_entries(16_384, 0);

/// Allocator function address -> which argument (0-based) is the size,
/// for the allocators the object-bounds check follows (userspace fills it).
#[map]
pub static ALLOC_FUNCS: HashMap<u64, u32> = HashMap::with_max_entries(32, 0);

/// Thread (pid_tgid) -> a module's allocation between the allocator's entry
/// and its return.
#[map]
pub static PENDING_ALLOCS: HashMap<u64, PendingAlloc> = HashMap::with_max_entries(1024, 0);

/// Module incarnation -> its most recent allocations (least recently used
/// incarnations make room for new ones).
#[map]
pub static ALLOC_RINGS: LruHashMap<u64, AllocRing> = LruHashMap::with_max_entries(1024, 0);

/// Never written: the zeroed ring a new incarnation starts from (a map
/// value, as the update helper wants, and too large for the stack).
#[map]
pub static EMPTY_RING: PerCpuArray<AllocRing> = PerCpuArray::with_max_entries(1, 0);

/// Thread (pid_tgid) -> `struct module *` whose init is running there.
#[map]
pub static INIT_PENDING: HashMap<u64, u64> = HashMap::with_max_entries(1024, 0);

/// One record's worth of per-CPU scratch space: a `ModuleRecord` is too
/// large to build on the 512-byte BPF stack next to the ring-buffer event.
#[map]
pub static SCRATCH: PerCpuArray<ModuleRecord> = PerCpuArray::with_max_entries(1, 0);

/// Load, free and (later) anomaly records for userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Counters userspace reports: index [`LOST_EVENTS`] counts records dropped
/// because the ring buffer was full, [`READ_ERRORS`] failed kernel reads,
/// [`REGISTRY_FULL`] modules the registry could not hold.
#[map]
pub static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(probe_common::COUNTER_SLOTS, 0);

pub use probe_common::{CALL_MAP_FULL, LOST_EVENTS, PAGE_MAP_FULL, READ_ERRORS, REGISTRY_FULL};

/// Counts a failure in its `COUNTERS` slot and, when user space asked for
/// diagnostics (`--log-level`; `AYA_LOG_LEVEL` is 0, off, by default), says
/// which program failed and how.
#[inline(always)]
pub fn failed<C: EbpfContext>(ctx: &C, program: &str, slot: u32) {
    bump(slot);
    match slot {
        LOST_EVENTS => warn!(
            ctx,
            "{}: the ring buffer is full, an event was dropped", program
        ),
        READ_ERRORS => warn!(ctx, "{}: a kernel read failed", program),
        REGISTRY_FULL => warn!(ctx, "{}: the module registry is full", program),
        PAGE_MAP_FULL => warn!(ctx, "{}: a module text page could not be mapped", program),
        CALL_MAP_FULL => warn!(ctx, "{}: a call counter could not be added", program),
        _ => error!(ctx, "{}: failure in unknown counter slot {}", program, slot),
    }
}

/// Counts a failure in its `COUNTERS` slot, without a diagnostic: for a
/// program loaded once per function (`count_call_fentry`), where the log's
/// formatting would make every copy several times bigger and its
/// verification as much slower.
pub fn bump(slot: u32) {
    if let Some(counter) = COUNTERS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot; no other context writes it concurrently
        // on this CPU while this program runs.
        unsafe { *counter += 1 };
    }
}

pub fn layout() -> ModuleLayout {
    // SAFETY: a global the loader rewrites before load; the volatile read
    // keeps the compiler from folding in the UNSET initialiser.
    unsafe { core::ptr::read_volatile(&MODULE_LAYOUT) }
}

pub fn call_probe() -> CallProbeConfig {
    // SAFETY: as for `layout`.
    unsafe { core::ptr::read_volatile(&CALL_PROBE) }
}

pub fn count_table() -> CountTableConfig {
    // SAFETY: as for `layout`.
    unsafe { core::ptr::read_volatile(&COUNT_TABLE) }
}

pub fn load_check() -> LoadCheckConfig {
    // SAFETY: as for `layout`.
    unsafe { core::ptr::read_volatile(&LOAD_CHECK) }
}

pub fn guard() -> GuardConfig {
    // SAFETY: as for `layout`.
    unsafe { core::ptr::read_volatile(&GUARD) }
}
