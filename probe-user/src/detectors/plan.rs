//! Which runtime anomaly detector runs on which kernel function, decided
//! from the running kernel's own BTF: a lock-debug check exists only where
//! the kernel's lock structs carry the debug field (DEBUG_SPINLOCK adds
//! `raw_spinlock.magic`, DEBUG_MUTEXES adds `mutex.magic`), at the offset
//! BTF gives. Pure: the caller supplies the layouts and which functions
//! can be probed. The eBPF side is `probe-ebpf/src/field_checks.rs`.

use probe_common::{Detector, FieldCheck, anomaly::EXPECT_SELF};

use modscope_analysis::struct_layout::Layout;

/// `SPINLOCK_MAGIC` (include/linux/spinlock_types_raw.h): what
/// `raw_spin_lock_init` writes with DEBUG_SPINLOCK.
pub const SPINLOCK_MAGIC: u64 = 0xdead_4ead;

/// The config option behind each check, indexed by `FieldCheck::option`
/// (and `bounds_option`); the empty name: no option, the layout itself.
pub const OPTIONS: [&str; 7] = [
    "DEBUG_SPINLOCK",
    "DEBUG_MUTEXES",
    "TRACEPOINTS",
    "PREEMPT_RT",
    "DEBUG_LOCK_ALLOC",
    "DEBUG_RWSEMS",
    "",
];
const OPT_SPINLOCK: u32 = 0;
const OPT_MUTEXES: u32 = 1;
const OPT_TRACEPOINTS: u32 = 2;
const OPT_NONE: u32 = 6;

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
                expected: SPINLOCK_MAGIC,
                ..FieldCheck::NONE
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
                expected: EXPECT_SELF,
                ..FieldCheck::NONE
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
            ..FieldCheck::NONE
        },
    );
    out
}

/// Kernel types a module hands to kernel functions by pointer, the
/// functions that take one as their first argument, and the options that
/// change the type's size (the first one this kernel has explains it).
const BOUNDED: &[(&str, &[&str], &[&str])] = &[
    (
        "raw_spinlock",
        &[
            "_raw_spin_lock",
            "_raw_spin_lock_irqsave",
            "_raw_spin_lock_irq",
            "_raw_spin_lock_bh",
            "_raw_spin_trylock",
            "_raw_spin_lock_nested",
            "__raw_spin_lock_init",
        ],
        &["DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC"],
    ),
    (
        "spinlock",
        &[
            "rt_spin_lock",
            "rt_spin_trylock",
            "rt_spin_lock_nested",
            "__rt_spin_lock_init",
        ],
        &["PREEMPT_RT", "DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC"],
    ),
    (
        "mutex",
        &[
            "mutex_lock",
            "mutex_lock_interruptible",
            "mutex_lock_killable",
            "mutex_trylock",
            "mutex_lock_nested",
            "__mutex_init",
            "__mutex_rt_init",
        ],
        &[
            "PREEMPT_RT",
            "DEBUG_MUTEXES",
            "DEBUG_LOCK_ALLOC",
            "DEBUG_SPINLOCK",
        ],
    ),
    (
        "wait_queue_head",
        &[
            "__init_waitqueue_head",
            "add_wait_queue",
            "add_wait_queue_exclusive",
            "prepare_to_wait_event",
            "__wake_up",
        ],
        &["PREEMPT_RT", "DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC"],
    ),
    (
        "completion",
        &[
            "complete",
            "complete_all",
            "wait_for_completion",
            "wait_for_completion_timeout",
            "wait_for_completion_interruptible",
        ],
        &["PREEMPT_RT", "DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC"],
    ),
    (
        "rw_semaphore",
        &[
            "down_read",
            "down_write",
            "down_read_trylock",
            "__init_rwsem",
        ],
        &[
            "PREEMPT_RT",
            "DEBUG_RWSEMS",
            "DEBUG_LOCK_ALLOC",
            "DEBUG_SPINLOCK",
        ],
    ),
    (
        "timer_list",
        &["init_timer_key", "add_timer", "mod_timer"],
        &["DEBUG_LOCK_ALLOC"],
    ),
];

/// Allocators a module calls directly (`kmalloc`/`kzalloc` inline to
/// these on 6.1 and 6.12), with the size's argument index.
pub const ALLOCATORS: &[(&str, u32)] = &[
    ("__kmalloc", 0),
    ("kmalloc_trace", 2),
    ("__kmalloc_node", 0),
    ("kmalloc_node_trace", 3),
    ("kmalloc_large", 0),
    ("kmalloc_large_node", 0),
    ("kvmalloc_node", 0),
    ("krealloc", 1),
    ("krealloc_noprof", 1),
    ("__kmalloc_noprof", 0),
    ("__kmalloc_cache_noprof", 2),
    ("__kmalloc_node_noprof", 0),
    ("__kmalloc_cache_node_noprof", 3),
    ("__kmalloc_large_noprof", 0),
    ("__kmalloc_large_node_noprof", 0),
    ("__kvmalloc_node_noprof", 0),
    ("kvmalloc_node_noprof", 0),
];

/// Functions that free the object passed first.
pub const FREES: &[&str] = &["kfree", "kvfree", "kfree_sensitive"];

/// An object-bounds check: calls to `function` pass a `type_name`, which
/// is `object_size` bytes on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundsCheck {
    pub function: &'static str,
    pub type_name: &'static str,
    pub object_size: u32,
    pub option: u32,
}

/// The object-bounds checks for this kernel: `size_of` gives a struct's
/// size from its BTF, `enabled` whether a config option is on, `wanted`
/// whether a function is probed (in the call plan) at all.
pub fn bounds_plan(
    size_of: impl Fn(&str) -> Option<u64>,
    enabled: impl Fn(&str) -> bool,
    wanted: impl Fn(&str) -> bool,
) -> Vec<BoundsCheck> {
    let mut out = Vec::new();
    for &(type_name, functions, options) in BOUNDED {
        let Some(size) = size_of(type_name).and_then(|s| u32::try_from(s).ok()) else {
            continue;
        };
        let option = options
            .iter()
            .find(|o| enabled(o))
            .and_then(|o| OPTIONS.iter().position(|known| known == o))
            .map_or(OPT_NONE, |i| i as u32);
        out.extend(
            functions
                .iter()
                .filter(|f| wanted(f))
                .map(|&function| BoundsCheck {
                    function,
                    type_name,
                    object_size: size,
                    option,
                }),
        );
    }
    out
}

/// Adds the bounds checks to a function's check (a new check where the
/// function had none).
pub fn add_bounds(check: Option<FieldCheck>, bounds: &BoundsCheck) -> FieldCheck {
    FieldCheck {
        object_size: bounds.object_size,
        bounds_option: bounds.option,
        ..check.unwrap_or(FieldCheck::NONE)
    }
}

/// The kernel type a bounds-checked function takes first.
pub fn bounded_type(function: &str) -> Option<&'static str> {
    BOUNDED
        .iter()
        .find(|(_, functions, _)| functions.contains(&function))
        .map(|&(type_name, _, _)| type_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::explain::{option_name, with_findings};

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
    fn bounds_checks_go_on_probed_functions_with_the_kernels_size_and_option() {
        let sizes = |t: &str| match t {
            "wait_queue_head" => Some(48),
            "mutex" => Some(32),
            _ => None,
        };
        let rt = |o: &str| o == "PREEMPT_RT";
        let wanted = |f: &str| f == "__init_waitqueue_head" || f == "mutex_lock";
        let checks = bounds_plan(sizes, rt, wanted);
        assert_eq!(
            checks,
            [
                BoundsCheck {
                    function: "mutex_lock",
                    type_name: "mutex",
                    object_size: 32,
                    option: 3,
                },
                BoundsCheck {
                    function: "__init_waitqueue_head",
                    type_name: "wait_queue_head",
                    object_size: 48,
                    option: 3,
                },
            ]
        );
        assert_eq!(option_name(checks[0].option), "PREEMPT_RT");
        // No option explains the size on a generic kernel: the layout itself.
        let generic = bounds_plan(sizes, |_| false, wanted);
        assert_eq!(option_name(generic[1].option), "");
        assert_eq!(
            bounded_type("__init_waitqueue_head"),
            Some("wait_queue_head")
        );
        assert_eq!(bounded_type("kfree"), None);
    }

    #[test]
    fn a_bounds_check_joins_a_functions_magic_check_without_changing_it() {
        let (spin, mutex) = debug_layouts();
        let magic = plan(Some(&spin), Some(&mutex), |f| f == "_raw_spin_lock")[0].check;
        let bounds = BoundsCheck {
            function: "_raw_spin_lock",
            type_name: "raw_spinlock",
            object_size: 64,
            option: OPT_SPINLOCK,
        };
        let both = add_bounds(Some(magic), &bounds);
        assert_eq!(both.detector, Detector::SpinlockMagic as u32);
        assert_eq!(both.field_offset, magic.field_offset);
        assert_eq!(both.expected, SPINLOCK_MAGIC);
        assert_eq!((both.object_size, both.bounds_option), (64, OPT_SPINLOCK));
        let alone = add_bounds(None, &bounds);
        assert_eq!(alone.detector, probe_common::anomaly::NO_FIELD_CHECK);
        assert_eq!(alone.object_size, 64);
    }

    #[test]
    fn findings_raise_a_verdict_and_never_lower_it() {
        use modscope_analysis::verdict::Severity;
        assert_eq!(
            with_findings(Some(Severity::Warning), ["object_bounds"]),
            Some(Severity::Incompatible)
        );
        assert_eq!(
            with_findings(None, ["tracepoint_probe"]),
            Some(Severity::Warning)
        );
        assert_eq!(
            with_findings(Some(Severity::Incompatible), ["tracepoint_probe"]),
            Some(Severity::Incompatible)
        );
        assert_eq!(
            with_findings(Some(Severity::Info), []),
            Some(Severity::Info)
        );
        assert_eq!(with_findings(None, []), None);
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
