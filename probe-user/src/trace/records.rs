//! What a trace holds: one enum of records, each encoded as a kind byte and
//! its fields. Times are boot-clock nanoseconds (the probes' clock); the
//! session header carries the wall-clock offset and the boot id that make
//! them meaningful on another machine.

use crate::kernel::kallsyms::{KernelFunction, NotAttached};
use modscope_analysis::verdict::Severity;
pub use probe_common::guard::{Decision, Judgement, Policy, Stage};
use serde::Serialize;

/// The first record of every capture session (a file holds one or more).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionStart {
    pub tool_version: String,
    pub kernel_release: String,
    /// `/proc/sys/kernel/random/boot_id`: times in this session compare
    /// only with times of the same boot.
    pub boot_id: String,
    pub hostname: String,
    /// Wall-clock nanoseconds since the epoch at boot-clock zero.
    pub epoch_at_boot_ns: u64,
    pub started_ns: u64,
    /// The command line that made the capture.
    pub command: Vec<String>,
    /// Where the configuration below came from (`/boot/config-…`), or empty.
    pub config_source: String,
    /// ABI-relevant kernel options and their values (`y`, `m`, or unset = absent).
    pub config: Vec<(String, String)>,
    /// How calls are caught (`kprobe`).
    pub attach_type: String,
    /// Probed kernel functions and their addresses.
    pub functions: Vec<KernelFunction>,
    /// Functions left out by the probe cap.
    pub capped: Vec<String>,
    /// Functions the kernel refused to probe, with its reason.
    pub not_attached: Vec<NotAttached>,
    /// Modules the capture was limited to (empty: all).
    pub module_filter: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleOrigin {
    /// Loaded before the capture started.
    Present,
    /// Loaded during the capture.
    Loaded,
}

impl SessionStart {
    /// Whether `self` is the header of the same capture session as `other`:
    /// a rotated file goes on with its session's header.
    pub fn continues(&self, other: &SessionStart) -> bool {
        (
            self.boot_id.as_str(),
            self.started_ns,
            self.hostname.as_str(),
        ) == (
            other.boot_id.as_str(),
            other.started_ns,
            other.hostname.as_str(),
        )
    }
}

/// A module incarnation entering the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSeen {
    pub ts_ns: u64,
    pub origin: ModuleOrigin,
    pub incarnation: u64,
    pub name: String,
    pub taints: u64,
    pub struct_module: u64,
    pub core_text: (u64, u64),
    pub init_text: (u64, u64),
    /// Probes were live before its init ran.
    pub init_counted: bool,
    /// Its imported functions, when its file was found.
    pub imports: Option<Vec<String>>,
    /// Those its code reaches by a tail call (their calls are credited to
    /// the module's caller). Written only when there are some: a record
    /// without any ends after `imports`, as traces before this field did.
    pub tail_called: Vec<String>,
}

/// Probe counters as reported.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Default)]
pub struct Stats {
    pub lost_events: u64,
    pub read_errors: u64,
    pub registry_full: u64,
    pub page_map_full: u64,
    pub call_map_full: u64,
    pub decode_errors: u64,
    /// Runs of the session's programs the kernel skipped (another BPF
    /// program or map syscall under way on that CPU): calls and loads not
    /// seen. Kernels from 6.7 count them; written only when not 0, so a
    /// record without it is what traces held before.
    pub skipped_runs: u64,
}

/// One counter's total in a `Counts` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountEntry {
    pub incarnation: u64,
    pub func_ip: u64,
    /// Calls so far (a total, not a delta).
    pub calls: u64,
}

impl CountEntry {
    pub const fn new(incarnation: u64, func_ip: u64, calls: u64) -> Self {
        Self {
            incarnation,
            func_ip,
            calls,
        }
    }
}

/// Probe counters at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub ts_ns: u64,
    pub counters: Stats,
}

/// One reason of a static verdict, as `check` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerdictReason {
    /// Stable reason code (`CRC_MISMATCH`).
    pub code: String,
    pub severity: Option<Severity>,
    /// Symbol, struct and config option it names (empty: none).
    pub symbol: String,
    pub struct_name: String,
    pub config: String,
    pub message: String,
}

/// The static analysis of a module's file against the running kernel,
/// written when the module is seen (when its file was found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleVerdict {
    pub ts_ns: u64,
    pub incarnation: u64,
    /// The file that was checked.
    pub file: String,
    /// The worst reason's severity (`Info`: compatible).
    pub severity: Severity,
    /// Plain insmod would refuse it (so it was forced, if it is loaded).
    pub kernel_would_refuse: bool,
    pub reasons: Vec<VerdictReason>,
}

/// `check`'s reasons for a report, as the trace keeps them.
pub fn reasons_of(report: &modscope_analysis::ModuleReport) -> Vec<VerdictReason> {
    report
        .reasons
        .iter()
        .map(|r| VerdictReason {
            code: r.code.as_str(),
            severity: Some(r.severity),
            symbol: r.symbol.clone().unwrap_or_default(),
            struct_name: r.struct_name.clone().unwrap_or_default(),
            config: r.config.clone().unwrap_or_default(),
            message: r.message.clone(),
        })
        .collect()
}

/// One decision of the guard (`modscope guard`): a module load allowed,
/// refused, or allowed that the policy would refuse, with the verdict it
/// came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardRecord {
    pub ts_ns: u64,
    pub stage: Stage,
    pub decision: Decision,
    pub judgement: Judgement,
    pub policy: Policy,
    /// The loading task.
    pub pid: u32,
    pub comm: String,
    /// The module's name, when known (from its file's check, its image, or
    /// the name a request asked for).
    pub module: String,
    /// The file, when the guard checked it (empty: a buffer, or a file it
    /// never saw).
    pub file: String,
    /// Its identity as the kernel gave it.
    pub dev: u64,
    pub ino: u64,
    /// A foreign `struct module`: the image's size and this kernel's.
    pub module_size: u64,
    pub kernel_size: u64,
    /// `check`'s reasons for the verdict.
    pub reasons: Vec<VerdictReason>,
}

/// A runtime anomaly at one call site (`probe_common::anomaly`): written at
/// the site's first anomaly, and again with the new total whenever it
/// changes (snapshots, the end). The last one per site has the exact count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnomalyRecord {
    /// The first anomalous call (boot clock).
    pub ts_ns: u64,
    /// 0 when the module had no incarnation yet (a check at load time).
    pub incarnation: u64,
    pub module: String,
    /// Stable detector name (`spinlock_magic`).
    pub detector: String,
    /// The kernel function called, and its address.
    pub symbol: String,
    pub func_ip: u64,
    /// Return address, and where it is in the module (`core+0x1a4`).
    pub caller: u64,
    pub site: String,
    /// The object passed, the field value the kernel's layout requires and
    /// the one found.
    pub object: u64,
    pub expected: u64,
    pub observed: u64,
    /// The config option that explains it (`DEBUG_SPINLOCK`).
    pub option: String,
    /// One sentence for people.
    pub message: String,
    /// Anomalous calls at this site so far.
    pub count: u64,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Duration,
    Interrupt,
    Terminate,
    /// The user quit the live TUI.
    Quit,
    /// The file was full (`record --rotate-size/--rotate-time`): the
    /// session goes on in the next file, which starts with the same header.
    Rotated,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Duration => "duration",
            EndReason::Interrupt => "SIGINT",
            EndReason::Terminate => "SIGTERM",
            EndReason::Quit => "quit",
            EndReason::Rotated => "rotated",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceRecord {
    SessionStart(Box<SessionStart>),
    Module(Box<ModuleSeen>),
    Unload {
        ts_ns: u64,
        incarnation: u64,
    },
    FirstUse {
        ts_ns: u64,
        incarnation: u64,
        func_ip: u64,
        caller: u64,
    },
    /// Totals of the counters that changed since the previous snapshot:
    /// `(incarnation, function address, calls so far)`. Totals, not deltas,
    /// so a reader that lost a snapshot is still exact at the next one.
    Counts {
        ts_ns: u64,
        entries: Vec<CountEntry>,
    },
    Stats(StatsSnapshot),
    SessionEnd {
        ts_ns: u64,
        reason: EndReason,
    },
    /// Functions probed from this time on (imports of a module loaded
    /// during the session).
    Functions {
        ts_ns: u64,
        functions: Vec<KernelFunction>,
    },
    /// The static verdict on a module incarnation's file.
    Verdict(Box<ModuleVerdict>),
    Anomaly(Box<AnomalyRecord>),
    Guard(Box<GuardRecord>),
}

impl TraceRecord {
    /// When it happened (boot clock); the session header's start time for it.
    pub fn ts_ns(&self) -> u64 {
        match self {
            TraceRecord::SessionStart(s) => s.started_ns,
            TraceRecord::Module(m) => m.ts_ns,
            TraceRecord::Verdict(v) => v.ts_ns,
            TraceRecord::Anomaly(a) => a.ts_ns,
            TraceRecord::Guard(g) => g.ts_ns,
            TraceRecord::Stats(s) => s.ts_ns,
            TraceRecord::Unload { ts_ns, .. }
            | TraceRecord::FirstUse { ts_ns, .. }
            | TraceRecord::Counts { ts_ns, .. }
            | TraceRecord::SessionEnd { ts_ns, .. }
            | TraceRecord::Functions { ts_ns, .. } => *ts_ns,
        }
    }
}
