//! Which runtime anomaly detector runs on which kernel function, decided
//! from the running kernel's own BTF: a lock-debug check exists only where
//! the kernel's lock structs carry the debug field (DEBUG_SPINLOCK adds
//! `raw_spinlock.magic`, DEBUG_MUTEXES adds `mutex.magic`), at the offset
//! BTF gives. Pure: the caller supplies the layouts and which functions
//! can be probed. The eBPF side is `probe-ebpf/src/field_checks.rs`.

use probe_common::{Detector, FieldCheck, anomaly::EXPECT_SELF};

use crate::analysis::struct_layout::Layout;

/// `SPINLOCK_MAGIC` (include/linux/spinlock_types_raw.h): what
/// `raw_spin_lock_init` writes with DEBUG_SPINLOCK.
pub const SPINLOCK_MAGIC: u64 = 0xdead_4ead;

/// The config option behind each check, indexed by `FieldCheck::option`.
pub const OPTIONS: [&str; 3] = ["DEBUG_SPINLOCK", "DEBUG_MUTEXES", "TRACEPOINTS"];
const OPT_SPINLOCK: u32 = 0;
const OPT_MUTEXES: u32 = 1;
const OPT_TRACEPOINTS: u32 = 2;

/// Functions that acquire a `raw_spinlock_t *` (a `spinlock_t *` is the same
/// address without PREEMPT_RT). Acquisitions only: the kernel does not
/// repair a bad magic, so checking the unlock too would report each bad
/// lock twice.
const SPIN_ACQUIRE: &[&str] = &[
    "_raw_spin_lock",
    "_raw_spin_lock_irqsave",
    "_raw_spin_lock_irq",
    "_raw_spin_lock_bh",
    "_raw_spin_trylock",
    "_raw_spin_trylock_bh",
    "_raw_spin_lock_nested",
    "_raw_spin_lock_irqsave_nested",
    "_raw_spin_lock_nest_lock",
];

/// Functions that acquire a `struct mutex *` (with DEBUG_LOCK_ALLOC the
/// `_nested` forms replace the plain ones).
const MUTEX_ACQUIRE: &[&str] = &[
    "mutex_lock",
    "mutex_lock_interruptible",
    "mutex_lock_killable",
    "mutex_lock_io",
    "mutex_trylock",
    "mutex_lock_nested",
    "mutex_lock_interruptible_nested",
    "mutex_lock_killable_nested",
    "mutex_lock_io_nested",
    "_mutex_lock_nest_lock",
];

/// A module hooking a kernel tracepoint (`register_trace_*` inlines to
/// these).
const TRACEPOINT_REGISTER: &[&str] = &[
    "tracepoint_probe_register",
    "tracepoint_probe_register_prio",
    "tracepoint_probe_register_prio_may_exist",
];

/// One function's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCheck {
    pub function: &'static str,
    pub check: FieldCheck,
}

/// The byte offset of `member` in `layout`, when it has one.
fn byte_offset(layout: &Layout, member: &str) -> Option<u32> {
    layout
        .members
        .iter()
        .find(|(name, _)| name == member)
        .map(|&(_, bits)| bits / 8)
}

/// The checks for this kernel. `raw_spinlock` and `mutex` are the running
/// kernel's layouts (None when BTF lacks them); `probeable` says whether a
/// function exists and may carry a kprobe.
pub fn plan(
    raw_spinlock: Option<&Layout>,
    mutex: Option<&Layout>,
    probeable: impl Fn(&str) -> bool,
) -> Vec<PlannedCheck> {
    let mut out = Vec::new();
    let mut add = |functions: &[&'static str], check: FieldCheck| {
        out.extend(
            functions
                .iter()
                .filter(|f| probeable(f))
                .map(|&function| PlannedCheck { function, check }),
        );
    };
    if let Some(offset) = raw_spinlock.and_then(|l| byte_offset(l, "magic")) {
        add(
            SPIN_ACQUIRE,
            FieldCheck {
                detector: Detector::SpinlockMagic as u32,
                field_offset: offset,
                field_size: 4,
                option: OPT_SPINLOCK,
                flags: 0,
                _pad: 0,
                expected: SPINLOCK_MAGIC,
            },
        );
    }
    if let Some(offset) = mutex.and_then(|l| byte_offset(l, "magic")) {
        add(
            MUTEX_ACQUIRE,
            FieldCheck {
                detector: Detector::MutexMagic as u32,
                field_offset: offset,
                field_size: 8,
                option: OPT_MUTEXES,
                flags: 0,
                _pad: 0,
                expected: EXPECT_SELF,
            },
        );
    }
    add(
        TRACEPOINT_REGISTER,
        FieldCheck {
            detector: Detector::TracepointProbe as u32,
            field_offset: 0,
            field_size: 0,
            option: OPT_TRACEPOINTS,
            flags: 0,
            _pad: 0,
            expected: 0,
        },
    );
    out
}

/// The option a check's event names (`FieldCheck::option`).
pub fn option_name(index: u32) -> &'static str {
    OPTIONS.get(index as usize).copied().unwrap_or("?")
}

/// Stable detector names, as in JSON and trace files.
pub fn detector_name(d: Detector) -> &'static str {
    match d {
        Detector::SpinlockMagic => "spinlock_magic",
        Detector::MutexMagic => "mutex_magic",
        Detector::TracepointProbe => "tracepoint_probe",
    }
}

/// How serious a detector's finding is for the module's verdict: a lock or
/// `struct module` laid out for another kernel is memory corruption in the
/// making (incompatible); hooking a kernel tracepoint is worth a look
/// (warning).
pub fn severity(detector: &str) -> crate::trace::records::Level {
    use crate::trace::records::Level;
    match detector {
        "spinlock_magic" | "mutex_magic" | LOAD_LAYOUT => Level::Incompatible,
        _ => Level::Warning,
    }
}

/// The load-time layout check's detector name (it has no `FieldCheck`: a
/// kprobe on `load_module`, `probe-ebpf/src/load_check.rs`).
pub const LOAD_LAYOUT: &str = "struct_module_size";

/// Why a `struct module` size mismatch at load matters.
pub fn explain_load_layout(module_size: u64, kernel_size: u64) -> String {
    format!(
        "the module's compiled struct module is {module_size} bytes, this kernel's is \
         {kernel_size}: every field past the first difference is read at the wrong offset \
         (init and exit pointers, parameters, the text layout). Options that change it: lock \
         debugging (struct module embeds a struct mutex), lockdep, ftrace, kprobes, tracepoints, \
         livepatch, PREEMPT_RT. A forced load (-f) skips the CRC check that would refuse it"
    )
}

/// One sentence on what a detector saw and why it matters on this kernel.
pub fn explain(d: Detector, object: u64, expected: u64, observed: u64, option: &str) -> String {
    match d {
        Detector::SpinlockMagic => format!(
            "the spinlock at {object:#x} has debug magic {observed:#x} where this kernel \
             (CONFIG_{option}) keeps {expected:#x}: it was not initialised with this kernel's \
             spinlock layout (built without CONFIG_{option}?), and the kernel will write owner \
             fields past the module's smaller lock"
        ),
        Detector::MutexMagic => format!(
            "the mutex at {object:#x} has debug magic {observed:#x} where this kernel \
             (CONFIG_{option}) keeps the mutex's own address: it was not initialised with this \
             kernel's struct mutex layout (built without CONFIG_{option}?)"
        ),
        Detector::TracepointProbe => format!(
            "registers a probe on the kernel tracepoint at {object:#x}: the module runs code \
             inside kernel events (CONFIG_{option})"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(members: &[(&str, u32)], size: u64) -> Layout {
        Layout {
            size,
            members: members
                .iter()
                .map(|&(n, byte)| (n.to_owned(), byte * 8))
                .collect(),
        }
    }

    /// 6.1 with DEBUG_SPINLOCK + DEBUG_MUTEXES + DEBUG_LOCK_ALLOC
    /// (pahole of the debug kernel's vmlinux).
    fn debug_layouts() -> (Layout, Layout) {
        (
            layout(
                &[
                    ("raw_lock", 0),
                    ("magic", 4),
                    ("owner_cpu", 8),
                    ("owner", 16),
                    ("dep_map", 24),
                ],
                64,
            ),
            layout(
                &[
                    ("owner", 0),
                    ("wait_lock", 8),
                    ("wait_list", 72),
                    ("magic", 88),
                    ("dep_map", 96),
                ],
                136,
            ),
        )
    }

    #[test]
    fn a_debug_kernel_gets_magic_checks_at_its_btf_offsets() {
        let (spin, mutex) = debug_layouts();
        let checks = plan(Some(&spin), Some(&mutex), |_| true);
        let spin_lock = checks
            .iter()
            .find(|c| c.function == "_raw_spin_lock")
            .unwrap();
        assert_eq!(spin_lock.check.field_offset, 4);
        assert_eq!(spin_lock.check.field_size, 4);
        assert_eq!(spin_lock.check.expected, 0xdead_4ead);
        assert_eq!(option_name(spin_lock.check.option), "DEBUG_SPINLOCK");
        let trylock = checks
            .iter()
            .find(|c| c.function == "mutex_trylock")
            .unwrap();
        assert_eq!(trylock.check.field_offset, 88);
        assert_eq!(trylock.check.field_size, 8);
        assert_eq!(trylock.check.expected, EXPECT_SELF);
        assert_eq!(option_name(trylock.check.option), "DEBUG_MUTEXES");
        assert!(
            checks.iter().all(|c| !c.function.contains("unlock")),
            "acquisitions only"
        );
    }

    #[test]
    fn without_lock_debugging_only_registrations_are_watched() {
        // Debian's generic 6.1: no magic members.
        let spin = layout(&[("raw_lock", 0)], 4);
        let mutex = layout(
            &[
                ("owner", 0),
                ("wait_lock", 8),
                ("osq", 12),
                ("wait_list", 16),
            ],
            32,
        );
        let checks = plan(Some(&spin), Some(&mutex), |_| true);
        assert!(!checks.is_empty());
        assert!(
            checks
                .iter()
                .all(|c| c.check.detector == Detector::TracepointProbe as u32),
            "{checks:?}"
        );
        assert!(plan(None, None, |_| true).len() == TRACEPOINT_REGISTER.len());
    }

    #[test]
    fn functions_that_cannot_be_probed_are_left_out() {
        let (spin, mutex) = debug_layouts();
        let checks = plan(Some(&spin), Some(&mutex), |f| {
            f == "_raw_spin_lock" || f == "tracepoint_probe_register"
        });
        let names: Vec<&str> = checks.iter().map(|c| c.function).collect();
        assert_eq!(names, ["_raw_spin_lock", "tracepoint_probe_register"]);
    }
}
