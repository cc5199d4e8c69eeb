//! Kernel symbols that exist because of a debug, tracing or hardening
//! feature, each tied to the config option that provides it. A module built
//! with the feature imports them; a kernel built without it does not export
//! them, and the loader's "Unknown symbol" is really "needs CONFIG_X".
//!
//! Also: lock-API symbols whose argument structs change layout with lock
//! debugging or PREEMPT_RT, used to explain CRC mismatches.

use std::{collections::HashMap, sync::OnceLock};

/// What provides a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feature {
    /// Config option, without `CONFIG_`.
    pub option: &'static str,
    /// What the feature is, for sentences.
    pub what: &'static str,
}

/// (match, feature); a match ending in `*` is a prefix.
const CATALOGUE: &[(&str, Feature)] = &[
    (
        "__fentry__",
        Feature {
            option: "FUNCTION_TRACER",
            what: "ftrace function entry hooks",
        },
    ),
    (
        "mcount",
        Feature {
            option: "FUNCTION_TRACER",
            what: "ftrace function entry hooks (mcount)",
        },
    ),
    (
        "__x86_return_thunk",
        Feature {
            option: "RETHUNK",
            what: "return-thunk speculative-execution mitigation",
        },
    ),
    (
        "__x86_indirect_thunk_*",
        Feature {
            option: "RETPOLINE",
            what: "retpoline indirect-branch mitigation",
        },
    ),
    (
        "__x86_indirect_call_thunk_*",
        Feature {
            option: "CALL_THUNKS",
            what: "call-depth tracking thunks",
        },
    ),
    (
        "__x86_indirect_jump_thunk_*",
        Feature {
            option: "CALL_THUNKS",
            what: "call-depth tracking thunks",
        },
    ),
    (
        "lockdep_init_map*",
        Feature {
            option: "LOCKDEP",
            what: "lock dependency validator (lockdep)",
        },
    ),
    (
        "lock_acquire",
        Feature {
            option: "LOCKDEP",
            what: "lock dependency validator (lockdep)",
        },
    ),
    (
        "lock_release",
        Feature {
            option: "LOCKDEP",
            what: "lock dependency validator (lockdep)",
        },
    ),
    (
        "lock_is_held_type",
        Feature {
            option: "LOCKDEP",
            what: "lock dependency validator (lockdep)",
        },
    ),
    (
        "lockdep_*",
        Feature {
            option: "LOCKDEP",
            what: "lock dependency validator (lockdep)",
        },
    ),
    (
        "__lockdep_*",
        Feature {
            option: "LOCKDEP",
            what: "lock dependency validator (lockdep)",
        },
    ),
    (
        "debug_lockdep_rcu_enabled",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "RCU lockdep checking",
        },
    ),
    (
        "rcu_read_lock_held*",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "RCU lockdep checking",
        },
    ),
    (
        "mutex_lock_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "mutex_lock_interruptible_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "mutex_lock_killable_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "_raw_spin_lock_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "_raw_spin_lock_irqsave_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "down_read_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "down_write_nested",
        Feature {
            option: "DEBUG_LOCK_ALLOC",
            what: "lock class annotations",
        },
    ),
    (
        "__raw_spin_lock_init",
        Feature {
            option: "DEBUG_SPINLOCK",
            what: "spinlock debugging",
        },
    ),
    (
        "do_raw_spin_lock",
        Feature {
            option: "DEBUG_SPINLOCK",
            what: "spinlock debugging",
        },
    ),
    (
        "do_raw_spin_unlock",
        Feature {
            option: "DEBUG_SPINLOCK",
            what: "spinlock debugging",
        },
    ),
    (
        "__rwlock_init",
        Feature {
            option: "DEBUG_SPINLOCK",
            what: "rwlock debugging",
        },
    ),
    (
        "mutex_destroy",
        Feature {
            option: "DEBUG_MUTEXES",
            what: "mutex debugging",
        },
    ),
    (
        "rt_spin_*",
        Feature {
            option: "PREEMPT_RT",
            what: "PREEMPT_RT sleeping spinlocks",
        },
    ),
    (
        "__rt_spin_lock_init",
        Feature {
            option: "PREEMPT_RT",
            what: "PREEMPT_RT sleeping spinlocks",
        },
    ),
    (
        "rt_read_*",
        Feature {
            option: "PREEMPT_RT",
            what: "PREEMPT_RT rwlocks",
        },
    ),
    (
        "rt_write_*",
        Feature {
            option: "PREEMPT_RT",
            what: "PREEMPT_RT rwlocks",
        },
    ),
    (
        "__rt_rwlock_init",
        Feature {
            option: "PREEMPT_RT",
            what: "PREEMPT_RT rwlocks",
        },
    ),
    (
        "__rt_mutex_init",
        Feature {
            option: "RT_MUTEXES",
            what: "rt-mutexes",
        },
    ),
    (
        "__asan_*",
        Feature {
            option: "KASAN",
            what: "kernel address sanitizer",
        },
    ),
    (
        "__kasan_*",
        Feature {
            option: "KASAN",
            what: "kernel address sanitizer",
        },
    ),
    (
        "__ubsan_handle_*",
        Feature {
            option: "UBSAN",
            what: "undefined-behaviour sanitizer",
        },
    ),
    (
        "__sanitizer_cov_*",
        Feature {
            option: "KCOV",
            what: "coverage collection (kcov)",
        },
    ),
    (
        "__tsan_*",
        Feature {
            option: "KCSAN",
            what: "concurrency sanitizer",
        },
    ),
    (
        "__kcsan_*",
        Feature {
            option: "KCSAN",
            what: "concurrency sanitizer",
        },
    ),
    (
        "__msan_*",
        Feature {
            option: "KMSAN",
            what: "memory sanitizer",
        },
    ),
    (
        "__gcov_*",
        Feature {
            option: "GCOV_KERNEL",
            what: "gcov coverage",
        },
    ),
    (
        "__stack_chk_fail",
        Feature {
            option: "STACKPROTECTOR",
            what: "stack protector",
        },
    ),
    (
        "__check_object_size",
        Feature {
            option: "HARDENED_USERCOPY",
            what: "hardened usercopy",
        },
    ),
    (
        "fortify_panic",
        Feature {
            option: "FORTIFY_SOURCE",
            what: "fortified string functions",
        },
    ),
    (
        "__fortify_panic",
        Feature {
            option: "FORTIFY_SOURCE",
            what: "fortified string functions",
        },
    ),
    (
        "__tracepoint_*",
        Feature {
            option: "TRACEPOINTS",
            what: "static tracepoints",
        },
    ),
    (
        "__SCK__tp_func_*",
        Feature {
            option: "TRACEPOINTS",
            what: "static tracepoints (static calls)",
        },
    ),
    (
        "__SCT__tp_func_*",
        Feature {
            option: "TRACEPOINTS",
            what: "static tracepoints (static calls)",
        },
    ),
    (
        "tracepoint_probe_register*",
        Feature {
            option: "TRACEPOINTS",
            what: "tracepoint probe registration",
        },
    ),
    (
        "tracepoint_probe_unregister",
        Feature {
            option: "TRACEPOINTS",
            what: "tracepoint probe registration",
        },
    ),
    (
        "trace_event_*",
        Feature {
            option: "EVENT_TRACING",
            what: "trace events",
        },
    ),
    (
        "trace_raw_output_prep",
        Feature {
            option: "EVENT_TRACING",
            what: "trace events",
        },
    ),
    (
        "trace_handle_return",
        Feature {
            option: "EVENT_TRACING",
            what: "trace events",
        },
    ),
    (
        "event_triggers_call",
        Feature {
            option: "EVENT_TRACING",
            what: "trace events",
        },
    ),
    (
        "perf_trace_*",
        Feature {
            option: "PERF_EVENTS",
            what: "perf trace events",
        },
    ),
    (
        "perf_event_*",
        Feature {
            option: "PERF_EVENTS",
            what: "perf events",
        },
    ),
    (
        "register_kprobe*",
        Feature {
            option: "KPROBES",
            what: "kprobes",
        },
    ),
    (
        "unregister_kprobe*",
        Feature {
            option: "KPROBES",
            what: "kprobes",
        },
    ),
    (
        "register_kretprobe*",
        Feature {
            option: "KRETPROBES",
            what: "kretprobes",
        },
    ),
    (
        "register_ftrace_function",
        Feature {
            option: "FUNCTION_TRACER",
            what: "ftrace function hooks",
        },
    ),
    (
        "ftrace_set_filter*",
        Feature {
            option: "DYNAMIC_FTRACE",
            what: "dynamic ftrace",
        },
    ),
];

fn matches(pattern: &str, symbol: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => symbol.starts_with(prefix),
        None => pattern == symbol,
    }
}

/// The catalogue split for lookup: exact names hashed; prefixes grouped by
/// their first two bytes, so a symbol meets only the few that could match.
struct Index {
    exact: HashMap<&'static str, Feature>,
    prefixes: HashMap<[u8; 2], Vec<(&'static str, Feature)>>,
}

fn two_bytes(s: &str) -> Option<[u8; 2]> {
    s.as_bytes().get(..2).map(|b| [b[0], b[1]])
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index = Index {
            exact: HashMap::new(),
            prefixes: HashMap::new(),
        };
        for &(pattern, feature) in CATALOGUE {
            match pattern.strip_suffix('*') {
                Some(prefix) => {
                    let key = two_bytes(prefix).expect("catalogue prefixes have two or more bytes");
                    index
                        .prefixes
                        .entry(key)
                        .or_default()
                        .push((prefix, feature));
                }
                None => {
                    index.exact.entry(pattern).or_insert(feature);
                }
            }
        }
        index
    })
}

/// The feature that provides `symbol`, if it is one of the catalogued ones:
/// an exact entry first, then the first matching prefix in catalogue order.
pub fn feature_of(symbol: &str) -> Option<Feature> {
    let index = index();
    if let Some(&f) = index.exact.get(symbol) {
        return Some(f);
    }
    let candidates = index.prefixes.get(&two_bytes(symbol)?)?;
    candidates
        .iter()
        .find(|(p, _)| symbol.starts_with(p))
        .map(|&(_, f)| f)
}

/// Lock APIs whose argument structs (spinlock_t, struct mutex,
/// rw_semaphore, …) change layout with these options; a CRC change on one
/// of them points at lock debugging or PREEMPT_RT.
const LOCK_LAYOUT_OPTIONS: &[&str] = &[
    "PREEMPT_RT",
    "DEBUG_SPINLOCK",
    "DEBUG_MUTEXES",
    "DEBUG_LOCK_ALLOC",
    "DEBUG_RWSEMS",
    "LOCKDEP",
];

const LOCK_API: &[&str] = &[
    "mutex_*",
    "__mutex_init",
    "_raw_spin_*",
    "_raw_read_*",
    "_raw_write_*",
    "down_*",
    "up_*",
    "__init_rwsem",
    "__init_waitqueue_head",
    "__wake_up*",
    "prepare_to_wait*",
    "finish_wait",
    "init_wait_entry",
    "complete*",
    "wait_for_completion*",
    "rt_spin_*",
    "rt_mutex_*",
    "__rt_mutex_init",
];

/// For a lock API symbol: the options that change the structs it takes.
pub fn lock_layout_options(symbol: &str) -> Option<&'static [&'static str]> {
    LOCK_API
        .iter()
        .any(|p| matches(p, symbol))
        .then_some(LOCK_LAYOUT_OPTIONS)
}

/// Kernel structs whose layout debug and locking options change, with those
/// options: the structs the first seed article is about. Reports list them
/// first.
pub const WATCHED_STRUCTS: &[(&str, &[&str])] = &[
    ("raw_spinlock", &["DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC"]),
    (
        "spinlock",
        &["DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC", "PREEMPT_RT"],
    ),
    (
        "mutex",
        &[
            "DEBUG_MUTEXES",
            "DEBUG_LOCK_ALLOC",
            "PREEMPT_RT",
            "MUTEX_SPIN_ON_OWNER",
        ],
    ),
    (
        "rw_semaphore",
        &[
            "DEBUG_RWSEMS",
            "DEBUG_LOCK_ALLOC",
            "PREEMPT_RT",
            "RWSEM_SPIN_ON_OWNER",
        ],
    ),
    (
        "wait_queue_head",
        &["DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC", "PREEMPT_RT"],
    ),
    (
        "completion",
        &["DEBUG_SPINLOCK", "DEBUG_LOCK_ALLOC", "PREEMPT_RT"],
    ),
    ("lockdep_map", &["LOCKDEP", "LOCK_STAT"]),
    ("timer_list", &["LOCKDEP"]),
    ("work_struct", &["LOCKDEP"]),
    (
        "module",
        &[
            "FUNCTION_TRACER",
            "TRACEPOINTS",
            "KPROBES",
            "EVENT_TRACING",
            "BPF_EVENTS",
            "LIVEPATCH",
            "PREEMPT_RT",
        ],
    ),
];

/// Where `name` sits in [`WATCHED_STRUCTS`], for ordering reports.
pub fn watched_rank(name: &str) -> Option<usize> {
    WATCHED_STRUCTS.iter().position(|(s, _)| *s == name)
}

/// Options that change what the loader checks or the layout of structs every
/// module shares, beyond those the catalogue ties to symbols.
const MODULE_ABI_OPTIONS: &[&str] = &[
    "SMP",
    "PREEMPT",
    "PREEMPT_DYNAMIC",
    "MODULE_UNLOAD",
    "MODVERSIONS",
    "MODULE_SIG",
    "MODULE_SIG_FORCE",
    "RANDSTRUCT_FULL",
    "RANDSTRUCT_PERFORMANCE",
    "PROVE_LOCKING",
    "KASAN",
    "KCSAN",
    "DEBUG_KMEMLEAK",
    "DEBUG_OBJECTS",
    "MEMCG",
    "ARM64_PTR_AUTH",
];

/// Every option known to change module ABI: those the catalogue knows, the
/// lock and watched-struct options, and the loader's own, for `diff` and
/// the header of reports.
pub fn layout_relevant_options() -> Vec<&'static str> {
    let mut v: Vec<&str> = CATALOGUE
        .iter()
        .map(|(_, f)| f.option)
        .chain(LOCK_LAYOUT_OPTIONS.iter().copied())
        .chain(WATCHED_STRUCTS.iter().flat_map(|(_, o)| o.iter().copied()))
        .chain(MODULE_ABI_OPTIONS.iter().copied())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_exact_and_prefix_matches() {
        assert_eq!(feature_of("__fentry__").unwrap().option, "FUNCTION_TRACER");
        assert_eq!(
            feature_of("__x86_indirect_thunk_rax").unwrap().option,
            "RETPOLINE"
        );
        assert_eq!(
            feature_of("__tracepoint_sched_switch").unwrap().option,
            "TRACEPOINTS"
        );
        assert_eq!(feature_of("rt_spin_lock").unwrap().option, "PREEMPT_RT");
        assert_eq!(
            feature_of("mutex_lock_nested").unwrap().option,
            "DEBUG_LOCK_ALLOC"
        );
        assert_eq!(feature_of("kmalloc"), None);
        assert_eq!(
            feature_of("mcount_not"),
            None,
            "exact names are not prefixes"
        );
    }

    #[test]
    fn lock_api_points_at_lock_options() {
        assert!(
            lock_layout_options("mutex_lock")
                .unwrap()
                .contains(&"PREEMPT_RT")
        );
        assert!(lock_layout_options("_raw_spin_lock_irqsave").is_some());
        assert!(lock_layout_options("kfree").is_none());
    }
}
