//! Sample records of every kind, and a whole session's story: the test
//! and benchmark data shared by the trace, report and TUI tests.

use crate::trace::records::CountEntry;
use modscope_analysis::verdict::Severity;

use super::records::*;
use crate::kernel::kallsyms::{KernelFunction, NotAttached};

pub fn session() -> SessionStart {
    SessionStart {
        tool_version: "0.1.0".into(),
        kernel_release: "6.1.0-56-amd64".into(),
        boot_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
        hostname: "lab7".into(),
        epoch_at_boot_ns: 1_790_000_000_000_000_000,
        started_ns: 5_000_000_000,
        command: vec!["modscope".into(), "record".into()],
        config_source: "/boot/config-6.1.0-56-amd64".into(),
        config: vec![("DEBUG_SPINLOCK".into(), "y".into())],
        attach_type: "kprobe".into(),
        functions: vec![
            KernelFunction::new("kfree", 0x100),
            KernelFunction::new("kstrdup", 0x200),
        ],
        capped: vec!["msleep".into()],
        not_attached: vec![NotAttached::new("kstrtouint", "EINVAL")],
        module_filter: vec![],
    }
}

pub fn module(name: &str, incarnation: u64) -> ModuleSeen {
    ModuleSeen {
        ts_ns: incarnation,
        origin: ModuleOrigin::Loaded,
        incarnation,
        name: name.into(),
        taints: 1 << 12,
        struct_module: 0xffff_ffff_c000_0040,
        core_text: (0xffff_ffff_c000_0000, 0x2000),
        init_text: (0xffff_ffff_c001_0000, 0x100),
        init_counted: true,
        imports: Some(vec!["kfree".into(), "kstrdup".into(), "_printk".into()]),
        tail_called: Vec::new(),
    }
}

pub fn verdict(incarnation: u64) -> ModuleVerdict {
    ModuleVerdict {
        ts_ns: incarnation + 1,
        incarnation,
        file: "/lib/modules/m.ko".into(),
        severity: Severity::Incompatible,
        kernel_would_refuse: true,
        reasons: vec![
            VerdictReason {
                code: "CRC_MISMATCH".into(),
                severity: Some(Severity::Incompatible),
                symbol: "mutex_lock".into(),
                config: "CONFIG_PREEMPT_RT".into(),
                message: "mutex_lock's CRC differs from this kernel's".into(),
                ..VerdictReason::default()
            },
            VerdictReason {
                code: "OUT_OF_TREE".into(),
                severity: None,
                message: "built outside the kernel tree".into(),
                ..VerdictReason::default()
            },
        ],
    }
}

/// A realistic session: a PREEMPT_RT kernel, a module present from the
/// start, and `rtbad` (built for the generic flavour) force-loaded,
/// calling `mutex_lock` (CRC mismatch) and `kfree` for ten seconds, then
/// unloaded.
pub fn story() -> Vec<TraceRecord> {
    const S: u64 = 1_000_000_000;
    let start = 100 * S;
    let rt = 0xffff_ffff_c100_0000;
    let mut v = vec![TraceRecord::SessionStart(Box::new(SessionStart {
        kernel_release: "6.1.0-56-rt-amd64".into(),
        started_ns: start,
        config: vec![
            ("PREEMPT_RT".into(), "y".into()),
            ("DEBUG_SPINLOCK".into(), "n".into()),
            ("KPROBES".into(), "y".into()),
        ],
        functions: vec![
            KernelFunction::new("mutex_lock", 0x10),
            KernelFunction::new("kfree", 0x20),
            KernelFunction::new("kstrdup", 0x30),
        ],
        ..session()
    }))];
    v.push(TraceRecord::Module(Box::new(ModuleSeen {
        ts_ns: 0,
        origin: ModuleOrigin::Present,
        incarnation: 1,
        name: "ext4".into(),
        taints: 0,
        imports: Some(vec!["kfree".into(), "kstrdup".into()]),
        init_counted: false,
        ..module("ext4", 1)
    })));
    v.push(TraceRecord::Verdict(Box::new(ModuleVerdict {
        ts_ns: start,
        incarnation: 1,
        file: "/lib/modules/6.1.0-56-rt-amd64/kernel/fs/ext4/ext4.ko".into(),
        severity: Severity::Info,
        kernel_would_refuse: false,
        reasons: vec![],
    })));
    let load = start + 2 * S;
    v.push(TraceRecord::Module(Box::new(ModuleSeen {
        ts_ns: load,
        origin: ModuleOrigin::Loaded,
        incarnation: load,
        name: "rtbad".into(),
        taints: (1 << 1) | (1 << 12) | (1 << 13),
        core_text: (rt, 0x3000),
        init_text: (rt + 0x10_0000, 0x200),
        init_counted: true,
        imports: Some(vec!["mutex_lock".into(), "kfree".into(), "_printk".into()]),
        ..module("rtbad", load)
    })));
    v.push(TraceRecord::Verdict(Box::new(ModuleVerdict {
        ts_ns: load,
        incarnation: load,
        file: "/root/rtbad.ko".into(),
        severity: Severity::Incompatible,
        kernel_would_refuse: true,
        reasons: vec![VerdictReason {
            code: "CRC_MISMATCH".into(),
            severity: Some(Severity::Incompatible),
            symbol: "mutex_lock".into(),
            config: "CONFIG_PREEMPT_RT".into(),
            message: "mutex_lock: the module expects CRC 0x1, this kernel has 0x2".into(),
            ..VerdictReason::default()
        }],
    })));
    v.push(TraceRecord::FirstUse {
        ts_ns: load + 1000,
        incarnation: load,
        func_ip: 0x10,
        caller: rt + 0x10_0010,
    });
    for i in 1..=10u64 {
        if i == 3 {
            v.push(TraceRecord::FirstUse {
                ts_ns: load + i * S - 5,
                incarnation: load,
                func_ip: 0x20,
                caller: rt + 0x44,
            });
        }
        let mut entries = vec![CountEntry::new(load, 0x10, 1000 * i)];
        if i >= 3 {
            entries.push(CountEntry::new(load, 0x20, 10 * (i - 2)));
        }
        v.push(TraceRecord::Counts {
            ts_ns: load + i * S,
            entries,
        });
    }
    v.push(TraceRecord::Stats(StatsSnapshot {
        ts_ns: load + 10 * S,
        counters: Stats::default(),
    }));
    v.push(TraceRecord::Unload {
        ts_ns: load + 11 * S,
        incarnation: load,
    });
    v.push(TraceRecord::SessionEnd {
        ts_ns: load + 12 * S,
        reason: EndReason::Interrupt,
    });
    v
}

/// A generic-built module's spinlock on a DEBUG_SPINLOCK kernel.
pub fn anomaly(incarnation: u64, count: u64) -> AnomalyRecord {
    AnomalyRecord {
        ts_ns: incarnation + 500,
        incarnation,
        module: "m".into(),
        detector: "spinlock_magic".into(),
        symbol: "_raw_spin_lock".into(),
        func_ip: 0x400,
        caller: 0xffff_ffff_c000_0123,
        site: "core+0x123".into(),
        object: 0xffff_ffff_c000_4000,
        expected: 0xdead_4ead,
        observed: 0,
        option: "DEBUG_SPINLOCK".into(),
        message: "spinlock magic 0x0, this kernel needs 0xdead4ead".into(),
        count,
    }
}

/// The guard refusing a generic-flavour module on a PREEMPT_RT kernel.
pub fn guard_refusal() -> GuardRecord {
    GuardRecord {
        ts_ns: 6_500_000_000,
        stage: Stage::File,
        decision: Decision::Refused,
        judgement: Judgement::Incompatible,
        policy: Policy::DenyIncompatible,
        pid: 812,
        comm: "insmod".into(),
        module: "modscope_hello".into(),
        file: "/tmp/modscope_hello.ko".into(),
        dev: 0x0080_0001,
        ino: 4242,
        module_size: 0,
        kernel_size: 0,
        reasons: verdict(0).reasons,
    }
}

pub fn all() -> Vec<TraceRecord> {
    vec![
        TraceRecord::SessionStart(Box::new(session())),
        TraceRecord::Module(Box::new(module("m", 6_000_000_000))),
        TraceRecord::Module(Box::new(ModuleSeen {
            origin: ModuleOrigin::Present,
            imports: None,
            init_counted: false,
            ..module("old", 3)
        })),
        TraceRecord::Verdict(Box::new(verdict(6_000_000_000))),
        TraceRecord::FirstUse {
            ts_ns: 6_000_000_100,
            incarnation: 6_000_000_000,
            func_ip: 0x200,
            caller: 0xffff_ffff_c001_0010,
        },
        TraceRecord::Anomaly(Box::new(anomaly(6_000_000_000, 1))),
        TraceRecord::Guard(Box::new(guard_refusal())),
        TraceRecord::Counts {
            ts_ns: 7_000_000_000,
            entries: vec![
                CountEntry::new(6_000_000_000, 0x200, 1000),
                CountEntry::new(6_000_000_000, 0x100, 999),
            ],
        },
        TraceRecord::Stats(StatsSnapshot {
            ts_ns: 7_000_000_000,
            counters: Stats {
                lost_events: 2,
                ..Stats::default()
            },
        }),
        TraceRecord::Functions {
            ts_ns: 7_500_000_000,
            functions: vec![KernelFunction::new("msleep", 0x300)],
        },
        TraceRecord::Unload {
            ts_ns: 8_000_000_000,
            incarnation: 6_000_000_000,
        },
        TraceRecord::SessionEnd {
            ts_ns: 9_000_000_000,
            reason: EndReason::Interrupt,
        },
    ]
}
