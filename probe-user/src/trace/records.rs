//! What a trace holds: one enum of records, each encoded as a kind byte and
//! its fields. Times are boot-clock nanoseconds (the probes' clock); the
//! session header carries the wall-clock offset and the boot id that make
//! them meaningful on another machine.

use super::codec::{DecodeError, Decoder, Encoder};
use modscope_analysis::verdict::Severity;
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
    pub functions: Vec<(String, u64)>,
    /// Functions left out by the probe cap.
    pub capped: Vec<String>,
    /// Functions the kernel refused to probe, with its reason.
    pub not_attached: Vec<(String, String)>,
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
}

/// Probe counters at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub ts_ns: u64,
    pub counters: Stats,
}

/// A severity's byte in the trace (`Severity` is the analysis' own).
fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Warning => 1,
        Severity::Incompatible => 2,
    }
}

fn severity_from_code(v: u8) -> Result<Severity, DecodeError> {
    match v {
        0 => Ok(Severity::Info),
        1 => Ok(Severity::Warning),
        2 => Ok(Severity::Incompatible),
        v => Err(DecodeError::Invalid {
            what: "severity",
            value: u64::from(v),
        }),
    }
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
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Duration => "duration",
            EndReason::Interrupt => "SIGINT",
            EndReason::Terminate => "SIGTERM",
            EndReason::Quit => "quit",
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
        entries: Vec<(u64, u64, u64)>,
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
        functions: Vec<(String, u64)>,
    },
    /// The static verdict on a module incarnation's file.
    Verdict(Box<ModuleVerdict>),
    Anomaly(Box<AnomalyRecord>),
}

mod kind {
    pub const SESSION_START: u8 = 1;
    pub const MODULE: u8 = 2;
    pub const UNLOAD: u8 = 3;
    pub const FIRST_USE: u8 = 4;
    pub const COUNTS: u8 = 5;
    pub const STATS: u8 = 6;
    pub const SESSION_END: u8 = 7;
    pub const FUNCTIONS: u8 = 8;
    pub const VERDICT: u8 = 9;
    pub const ANOMALY: u8 = 10;
}

impl TraceRecord {
    pub fn encode(&self, e: &mut Encoder) {
        match self {
            TraceRecord::SessionStart(s) => {
                e.u8(kind::SESSION_START);
                e.str(&s.tool_version);
                e.str(&s.kernel_release);
                e.str(&s.boot_id);
                e.str(&s.hostname);
                e.varint(s.epoch_at_boot_ns);
                e.varint(s.started_ns);
                e.strs(s.command.iter());
                e.str(&s.config_source);
                e.varint(s.config.len() as u64);
                for (k, v) in &s.config {
                    e.str(k);
                    e.str(v);
                }
                e.str(&s.attach_type);
                e.varint(s.functions.len() as u64);
                for (name, addr) in &s.functions {
                    e.str(name);
                    e.varint(*addr);
                }
                e.strs(s.capped.iter());
                e.varint(s.not_attached.len() as u64);
                for (f, why) in &s.not_attached {
                    e.str(f);
                    e.str(why);
                }
                e.strs(s.module_filter.iter());
            }
            TraceRecord::Module(m) => {
                e.u8(kind::MODULE);
                e.varint(m.ts_ns);
                e.u8(match m.origin {
                    ModuleOrigin::Present => 0,
                    ModuleOrigin::Loaded => 1,
                });
                e.varint(m.incarnation);
                e.str(&m.name);
                e.varint(m.taints);
                e.varint(m.struct_module);
                e.varint(m.core_text.0);
                e.varint(m.core_text.1);
                e.varint(m.init_text.0);
                e.varint(m.init_text.1);
                e.bool(m.init_counted);
                match &m.imports {
                    None => e.u8(0),
                    Some(list) => {
                        e.u8(1);
                        e.strs(list.iter());
                    }
                }
            }
            TraceRecord::Unload { ts_ns, incarnation } => {
                e.u8(kind::UNLOAD);
                e.varint(*ts_ns);
                e.varint(*incarnation);
            }
            TraceRecord::FirstUse {
                ts_ns,
                incarnation,
                func_ip,
                caller,
            } => {
                e.u8(kind::FIRST_USE);
                e.varint(*ts_ns);
                e.varint(*incarnation);
                e.varint(*func_ip);
                e.varint(*caller);
            }
            TraceRecord::Counts { ts_ns, entries } => {
                e.u8(kind::COUNTS);
                e.varint(*ts_ns);
                e.varint(entries.len() as u64);
                for (inc, ip, n) in entries {
                    e.varint(*inc);
                    e.varint(*ip);
                    e.varint(*n);
                }
            }
            TraceRecord::Stats(s) => {
                e.u8(kind::STATS);
                let c = &s.counters;
                for v in [
                    s.ts_ns,
                    c.lost_events,
                    c.read_errors,
                    c.registry_full,
                    c.page_map_full,
                    c.call_map_full,
                    c.decode_errors,
                ] {
                    e.varint(v);
                }
            }
            TraceRecord::Functions { ts_ns, functions } => {
                e.u8(kind::FUNCTIONS);
                e.varint(*ts_ns);
                e.varint(functions.len() as u64);
                for (name, addr) in functions {
                    e.str(name);
                    e.varint(*addr);
                }
            }
            TraceRecord::SessionEnd { ts_ns, reason } => {
                e.u8(kind::SESSION_END);
                e.varint(*ts_ns);
                e.u8(match reason {
                    EndReason::Duration => 0,
                    EndReason::Interrupt => 1,
                    EndReason::Terminate => 2,
                    EndReason::Quit => 3,
                });
            }
            TraceRecord::Verdict(v) => {
                e.u8(kind::VERDICT);
                e.varint(v.ts_ns);
                e.varint(v.incarnation);
                e.str(&v.file);
                e.u8(severity_code(v.severity));
                e.bool(v.kernel_would_refuse);
                e.varint(v.reasons.len() as u64);
                for r in &v.reasons {
                    e.str(&r.code);
                    e.u8(r.severity.map_or(255, severity_code));
                    e.str(&r.symbol);
                    e.str(&r.struct_name);
                    e.str(&r.config);
                    e.str(&r.message);
                }
            }
            TraceRecord::Anomaly(a) => {
                e.u8(kind::ANOMALY);
                for v in [a.ts_ns, a.incarnation] {
                    e.varint(v);
                }
                e.str(&a.module);
                e.str(&a.detector);
                e.str(&a.symbol);
                for v in [a.func_ip, a.caller] {
                    e.varint(v);
                }
                e.str(&a.site);
                for v in [a.object, a.expected, a.observed] {
                    e.varint(v);
                }
                e.str(&a.option);
                e.str(&a.message);
                e.varint(a.count);
            }
        }
    }

    /// Decodes one record's payload (kind byte first); the whole payload
    /// must be consumed.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut d = Decoder::new(payload);
        let record = match d.u8()? {
            kind::SESSION_START => TraceRecord::SessionStart(Box::new(decode_session(&mut d)?)),
            kind::MODULE => TraceRecord::Module(Box::new(decode_module(&mut d)?)),
            kind::UNLOAD => TraceRecord::Unload {
                ts_ns: d.varint()?,
                incarnation: d.varint()?,
            },
            kind::FIRST_USE => TraceRecord::FirstUse {
                ts_ns: d.varint()?,
                incarnation: d.varint()?,
                func_ip: d.varint()?,
                caller: d.varint()?,
            },
            kind::COUNTS => {
                let ts_ns = d.varint()?;
                let n = d.count()?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((d.varint()?, d.varint()?, d.varint()?));
                }
                TraceRecord::Counts { ts_ns, entries }
            }
            kind::STATS => TraceRecord::Stats(StatsSnapshot {
                ts_ns: d.varint()?,
                counters: Stats {
                    lost_events: d.varint()?,
                    read_errors: d.varint()?,
                    registry_full: d.varint()?,
                    page_map_full: d.varint()?,
                    call_map_full: d.varint()?,
                    decode_errors: d.varint()?,
                },
            }),
            kind::SESSION_END => TraceRecord::SessionEnd {
                ts_ns: d.varint()?,
                reason: match d.u8()? {
                    0 => EndReason::Duration,
                    1 => EndReason::Interrupt,
                    2 => EndReason::Terminate,
                    3 => EndReason::Quit,
                    v => {
                        return Err(DecodeError::Invalid {
                            what: "end reason",
                            value: u64::from(v),
                        });
                    }
                },
            },
            kind::FUNCTIONS => {
                let ts_ns = d.varint()?;
                let n = d.count()?;
                let mut functions = Vec::with_capacity(n);
                for _ in 0..n {
                    functions.push((d.str()?, d.varint()?));
                }
                TraceRecord::Functions { ts_ns, functions }
            }
            kind::VERDICT => TraceRecord::Verdict(Box::new(decode_verdict(&mut d)?)),
            kind::ANOMALY => TraceRecord::Anomaly(Box::new(AnomalyRecord {
                ts_ns: d.varint()?,
                incarnation: d.varint()?,
                module: d.str()?,
                detector: d.str()?,
                symbol: d.str()?,
                func_ip: d.varint()?,
                caller: d.varint()?,
                site: d.str()?,
                object: d.varint()?,
                expected: d.varint()?,
                observed: d.varint()?,
                option: d.str()?,
                message: d.str()?,
                count: d.varint()?,
            })),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        d.finish()?;
        Ok(record)
    }
}

fn decode_session(d: &mut Decoder) -> Result<SessionStart, DecodeError> {
    let mut s = SessionStart {
        tool_version: d.str()?,
        kernel_release: d.str()?,
        boot_id: d.str()?,
        hostname: d.str()?,
        epoch_at_boot_ns: d.varint()?,
        started_ns: d.varint()?,
        command: d.strs()?,
        config_source: d.str()?,
        ..SessionStart::default()
    };
    for _ in 0..d.count()? {
        s.config.push((d.str()?, d.str()?));
    }
    s.attach_type = d.str()?;
    for _ in 0..d.count()? {
        s.functions.push((d.str()?, d.varint()?));
    }
    s.capped = d.strs()?;
    for _ in 0..d.count()? {
        s.not_attached.push((d.str()?, d.str()?));
    }
    s.module_filter = d.strs()?;
    Ok(s)
}

fn decode_verdict(d: &mut Decoder) -> Result<ModuleVerdict, DecodeError> {
    let ts_ns = d.varint()?;
    let incarnation = d.varint()?;
    let file = d.str()?;
    let severity = severity_from_code(d.u8()?)?;
    let kernel_would_refuse = d.bool("kernel_would_refuse")?;
    let n = d.count()?;
    let mut reasons = Vec::with_capacity(n);
    for _ in 0..n {
        let code = d.str()?;
        let severity = match d.u8()? {
            255 => None,
            v => Some(severity_from_code(v)?),
        };
        reasons.push(VerdictReason {
            code,
            severity,
            symbol: d.str()?,
            struct_name: d.str()?,
            config: d.str()?,
            message: d.str()?,
        });
    }
    Ok(ModuleVerdict {
        ts_ns,
        incarnation,
        file,
        severity,
        kernel_would_refuse,
        reasons,
    })
}

impl TraceRecord {
    /// When it happened (boot clock); the session header's start time for it.
    pub fn ts_ns(&self) -> u64 {
        match self {
            TraceRecord::SessionStart(s) => s.started_ns,
            TraceRecord::Module(m) => m.ts_ns,
            TraceRecord::Verdict(v) => v.ts_ns,
            TraceRecord::Anomaly(a) => a.ts_ns,
            TraceRecord::Stats(s) => s.ts_ns,
            TraceRecord::Unload { ts_ns, .. }
            | TraceRecord::FirstUse { ts_ns, .. }
            | TraceRecord::Counts { ts_ns, .. }
            | TraceRecord::SessionEnd { ts_ns, .. }
            | TraceRecord::Functions { ts_ns, .. } => *ts_ns,
        }
    }
}

fn decode_module(d: &mut Decoder) -> Result<ModuleSeen, DecodeError> {
    let ts_ns = d.varint()?;
    let origin = match d.u8()? {
        0 => ModuleOrigin::Present,
        1 => ModuleOrigin::Loaded,
        v => {
            return Err(DecodeError::Invalid {
                what: "module origin",
                value: u64::from(v),
            });
        }
    };
    Ok(ModuleSeen {
        ts_ns,
        origin,
        incarnation: d.varint()?,
        name: d.str()?,
        taints: d.varint()?,
        struct_module: d.varint()?,
        core_text: (d.varint()?, d.varint()?),
        init_text: (d.varint()?, d.varint()?),
        init_counted: d.bool("init_counted")?,
        imports: if d.bool("imports known")? {
            Some(d.strs()?)
        } else {
            None
        },
    })
}

/// A small trace of every record kind, for tests here and in the binary.
#[doc(hidden)]
pub mod samples {
    use super::*;

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
            functions: vec![("kfree".into(), 0x100), ("kstrdup".into(), 0x200)],
            capped: vec!["msleep".into()],
            not_attached: vec![("kstrtouint".into(), "EINVAL".into())],
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
                ("mutex_lock".into(), 0x10),
                ("kfree".into(), 0x20),
                ("kstrdup".into(), 0x30),
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
            let mut entries = vec![(load, 0x10, 1000 * i)];
            if i >= 3 {
                entries.push((load, 0x20, 10 * (i - 2)));
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
            TraceRecord::Counts {
                ts_ns: 7_000_000_000,
                entries: vec![(6_000_000_000, 0x200, 1000), (6_000_000_000, 0x100, 999)],
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
                functions: vec![("msleep".into(), 0x300)],
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_record_kind_round_trips() {
        for r in samples::all() {
            let mut e = Encoder::default();
            r.encode(&mut e);
            assert_eq!(TraceRecord::decode(&e.buf).unwrap(), r);
        }
    }

    #[test]
    fn every_truncation_of_every_record_is_an_error() {
        for r in samples::all() {
            let mut e = Encoder::default();
            r.encode(&mut e);
            for len in 0..e.buf.len() {
                assert!(
                    TraceRecord::decode(&e.buf[..len]).is_err(),
                    "{r:?} cut at {len}"
                );
            }
        }
    }

    #[test]
    fn unknown_kinds_and_trailing_bytes_are_refused() {
        assert_eq!(
            TraceRecord::decode(&[99]),
            Err(DecodeError::UnknownKind(99))
        );
        let mut e = Encoder::default();
        TraceRecord::Unload {
            ts_ns: 1,
            incarnation: 2,
        }
        .encode(&mut e);
        e.u8(0);
        assert_eq!(
            TraceRecord::decode(&e.buf),
            Err(DecodeError::Trailing { extra: 1 })
        );
    }
}
