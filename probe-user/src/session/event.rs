//! The events modscope reports, as JSON lines for scripts and as text for
//! people. Addresses are hex strings: kernel addresses exceed the 2^53 that
//! JSON numbers carry exactly in most consumers.

use std::time::SystemTime;

use probe_common::{ModuleRecord, RecordFlags};
use serde::Serialize;

use crate::{
    kernel::{clock, kallsyms::NotAttached, taint},
    trace::{
        call_report::ModuleCalls,
        display::{AnomalyInfo, hex, sanitize},
        guard_display::{GuardInfo, GuardReason},
        records::Stats,
    },
};

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TextRange {
    pub base: String,
    pub size: u64,
}

impl TextRange {
    fn new(base: u64, size: u64) -> Self {
        Self {
            base: hex(base),
            size,
        }
    }
}

/// A module as reported in events.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModuleInfo {
    pub name: String,
    /// Kernel taint letters, e.g. "OE".
    pub taints: String,
    pub taint_mask: u64,
    pub core_text: TextRange,
    pub init_text: TextRange,
    /// The kernel's `struct module *`: with `loaded_ktime_ns`, names one
    /// incarnation of the module.
    pub struct_module: String,
    /// Boot-clock time of the load; 0 for modules loaded before modscope.
    pub loaded_ktime_ns: u64,
    /// Names this load in call reports: the load time, or a small id for
    /// modules loaded before modscope.
    pub incarnation: u64,
    /// Loaded before modscope started: the core range covers the whole core
    /// allocation (from /proc/modules) and the init range is unknown.
    pub preexisting: bool,
}

impl From<&ModuleRecord> for ModuleInfo {
    fn from(r: &ModuleRecord) -> Self {
        Self {
            name: String::from_utf8_lossy(r.name.as_bytes()).into_owned(),
            taints: taint::letters(r.taints),
            taint_mask: r.taints,
            core_text: TextRange::new(r.core_text_base, r.core_text_size),
            init_text: TextRange::new(r.init_text_base, r.init_text_size),
            struct_module: hex(r.module_addr),
            loaded_ktime_ns: r.load_ns,
            incarnation: r.incarnation,
            preexisting: r.flags & RecordFlags::PREEXISTING != 0,
        }
    }
}

/// What the call probe covers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct CallProbeStatus {
    /// Kernel functions with a live counter.
    pub attached: usize,
    /// Functions the kernel would not probe, with its reason.
    pub not_attached: Vec<NotAttached>,
    /// Functions left out by the probe cap (`--max-probes`).
    pub capped: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A module loaded before modscope started, now in the registry.
    Present {
        time: String,
        #[serde(flatten)]
        module: ModuleInfo,
    },
    /// Probes are attached: every load from here on is seen before its init.
    Ready {
        time: String,
        kernel: String,
        probes: Vec<String>,
        /// The architecture's facts the call probe was loaded with.
        #[serde(skip_serializing_if = "Option::is_none")]
        attribution: Option<String>,
    },
    Load {
        time: String,
        ktime_ns: u64,
        #[serde(flatten)]
        module: ModuleInfo,
    },
    Unload {
        time: String,
        ktime_ns: u64,
        #[serde(flatten)]
        module: ModuleInfo,
    },
    /// Records the kernel could not deliver (ring buffer full) since the last report.
    Lost { time: String, count: u64 },
    /// A ring-buffer record that failed to decode.
    DecodeError { time: String, error: String },
    /// At exit: the registry as the kernel held it, and the counters.
    Registry {
        time: String,
        modules: Vec<ModuleInfo>,
        stats: Stats,
    },
    /// A module's first call to a probed kernel function.
    FirstUse {
        time: String,
        ktime_ns: u64,
        module: String,
        incarnation: u64,
        symbol: String,
        /// The return address, and where it is in the module (`core+0x…`, `init+0x…`).
        caller: String,
        caller_offset: Option<String>,
    },
    /// An in-kernel detector's first anomaly at a call site.
    Anomaly {
        time: String,
        #[serde(flatten)]
        anomaly: AnomalyInfo,
    },
    /// At exit, with detectors: every anomalous call site with its exact count.
    Anomalies {
        time: String,
        sites: Vec<AnomalyInfo>,
    },
    /// A decision of the guard on a module load.
    Guard {
        time: String,
        #[serde(flatten)]
        decision: GuardInfo,
    },
    /// The guard is attached: how, under which policy, and what happens
    /// when modscope ends.
    GuardReady {
        time: String,
        policy: &'static str,
        /// `lsm`, or `kprobes` (observes only).
        mode: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        why_not_lsm: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pinned: Option<String>,
        on_exit: String,
        checked_files: usize,
    },
    /// A file the guard checked: named by --watch, or changed.
    GuardChecked {
        time: String,
        file: String,
        module: String,
        verdict: &'static str,
        reasons: Vec<GuardReason>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The module tree's first pass is done.
    GuardTreeChecked {
        time: String,
        files: usize,
        incompatible: usize,
        unchecked: usize,
        milliseconds: u64,
    },
    /// Something the guard could not do, and what it means.
    GuardWarning { time: String, message: String },
    /// At exit, with call probes: per module incarnation, the exact calls.
    Calls {
        time: String,
        probes: CallProbeStatus,
        modules: Vec<ModuleCalls>,
    },
}

impl Event {
    pub fn now() -> String {
        clock::rfc3339(SystemTime::now())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events serialise: no maps with non-string keys")
    }

    /// One line for people.
    pub fn to_text(&self) -> String {
        let range = |r: &TextRange| format!("{}+{:#x}", r.base, r.size);
        let module = |kind: &str, time: &str, m: &ModuleInfo| {
            format!(
                "{time} {kind:<7} {name} taints={taints} core={core} init={init}",
                name = sanitize(&m.name),
                taints = if m.taints.is_empty() { "-" } else { &m.taints },
                core = range(&m.core_text),
                init = range(&m.init_text),
            )
        };
        match self {
            Event::Present { time, module: m } => module("present", time, m),
            Event::Ready {
                time,
                kernel,
                probes,
                attribution,
            } => {
                let facts = attribution
                    .as_ref()
                    .map(|a| format!("\n{time} attribution {a}"))
                    .unwrap_or_default();
                format!(
                    "{time} ready   kernel {kernel}, attached {}{facts}",
                    probes.join(", ")
                )
            }
            Event::Load {
                time, module: m, ..
            } => module("load", time, m),
            Event::Unload {
                time, module: m, ..
            } => module("unload", time, m),
            Event::Lost { time, count } => {
                format!("{time} lost    {count} events (ring buffer full)")
            }
            Event::DecodeError { time, error } => {
                format!("{time} error   undecodable record: {error}")
            }
            Event::Registry {
                time,
                modules,
                stats,
            } => format!(
                "{time} exit    {} modules in the registry; lost {}, read errors {}, registry full {}, \
                 decode errors {}, skipped probe runs {}",
                modules.len(),
                stats.lost_events,
                stats.read_errors,
                stats.registry_full,
                stats.decode_errors,
                stats.skipped_runs
            ),
            Event::FirstUse {
                time,
                module,
                symbol,
                caller,
                caller_offset,
                ..
            } => format!(
                "{time} first   {} -> {} from {}",
                sanitize(module),
                sanitize(symbol),
                caller_offset.as_deref().unwrap_or(caller)
            ),
            Event::Anomaly { time, anomaly: a } => format!(
                "{time} ANOMALY {} {} at {} calling {}: {}",
                sanitize(&a.module),
                a.detector,
                sanitize(&a.caller_offset),
                sanitize(&a.symbol),
                sanitize(&a.message)
            ),
            Event::Anomalies { time, sites } => anomalies_text(time, sites),
            Event::Guard { time, decision } => format!("{time} GUARD   {}", decision.line),
            Event::GuardReady {
                time,
                policy,
                mode,
                why_not_lsm,
                pinned,
                on_exit,
                checked_files,
            } => {
                let how = match why_not_lsm {
                    Some(why) => format!("{mode} (audit only: {})", sanitize(why)),
                    None => (*mode).to_owned(),
                };
                let pin = pinned
                    .as_ref()
                    .map_or(String::new(), |p| format!(", pinned at {p}"));
                format!(
                    "{time} guard   {policy} through {how}{pin}; {checked_files} files checked; {on_exit}"
                )
            }
            Event::GuardChecked {
                time,
                file,
                verdict,
                reasons,
                error,
                ..
            } => {
                let codes: Vec<&str> = reasons.iter().map(|r| r.code.as_str()).collect();
                let why = error.clone().unwrap_or_else(|| codes.join(", "));
                format!(
                    "{time} checked {} {verdict} {}",
                    sanitize(file),
                    sanitize(&why)
                )
            }
            Event::GuardTreeChecked {
                time,
                files,
                incompatible,
                unchecked,
                milliseconds,
            } => format!(
                "{time} guard   module tree checked: {files} files, {incompatible} incompatible, {unchecked} without a verdict, in {:.1} s",
                *milliseconds as f64 / 1000.0
            ),
            Event::GuardWarning { time, message } => {
                format!("{time} guard   {}", sanitize(message))
            }
            Event::Calls {
                time,
                probes,
                modules,
            } => calls_text(time, probes, modules),
        }
    }
}

fn anomalies_text(time: &str, sites: &[AnomalyInfo]) -> String {
    let mut s = format!("{time} anomalies {} call sites", sites.len());
    for a in sites {
        s.push_str(&format!(
            "\n  {} {} at {} calling {}: {} calls (CONFIG_{})",
            sanitize(&a.module),
            a.detector,
            sanitize(&a.caller_offset),
            sanitize(&a.symbol),
            a.count,
            a.option
        ));
    }
    s
}

fn calls_text(time: &str, probes: &CallProbeStatus, modules: &[ModuleCalls]) -> String {
    let mut s = format!(
        "{time} calls   {} functions probed, {} not probeable, {} over the cap",
        probes.attached,
        probes.not_attached.len(),
        probes.capped.len()
    );
    for m in modules {
        s.push_str(&format!(
            "\n  {}{}{}",
            sanitize(&m.name),
            if m.init_counted {
                ""
            } else {
                " (init not counted)"
            },
            if m.unloaded_ktime_ns.is_some() {
                " (unloaded)"
            } else {
                ""
            }
        ));
        for c in &m.calls {
            s.push_str(&format!("\n    {:>10}  {}", c.count, sanitize(&c.symbol)));
        }
        if !m.tail_called.is_empty() {
            let tail = sanitize(&m.tail_called.join(" "));
            s.push_str(&format!(
                "\n    tail-called (calls from there are credited to the caller): {tail}"
            ));
        }
        if let Some(unused) = &m.unused_imports {
            s.push_str(&format!("\n    unused: {}", sanitize(&unused.join(" "))));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::ModuleName;

    fn record() -> ModuleRecord {
        let mut r = ModuleRecord::zeroed();
        r.name = ModuleName::from_bytes(b"modscope_hello");
        r.taints = (1 << 12) | (1 << 13);
        r.module_addr = 0xffff_ffff_c0a6_0040;
        r.core_text_base = 0xffff_ffff_c0a5_e000;
        r.core_text_size = 0x1000;
        r.init_text_base = 0xffff_ffff_c0a6_4000;
        r.init_text_size = 0x200;
        r.load_ns = 77;
        r
    }

    #[test]
    fn load_event_json_shape() {
        let ev = Event::Load {
            time: "T".into(),
            ktime_ns: 77,
            module: ModuleInfo::from(&record()),
        };
        let v: serde_json::Value = serde_json::from_str(&ev.to_json()).unwrap();
        assert_eq!(v["type"], "load");
        assert_eq!(v["name"], "modscope_hello");
        assert_eq!(v["taints"], "OE");
        assert_eq!(v["core_text"]["base"], "0xffffffffc0a5e000");
        assert_eq!(v["core_text"]["size"], 4096);
        assert_eq!(v["init_text"]["base"], "0xffffffffc0a64000");
        assert_eq!(v["init_text"]["size"], 512);
        assert_eq!(v["ktime_ns"], 77);
        assert_eq!(v["preexisting"], false);
    }

    #[test]
    fn text_line_escapes_control_characters() {
        let mut r = record();
        r.name = ModuleName::from_bytes(b"evil\x1b[2Jname");
        let ev = Event::Unload {
            time: "T".into(),
            ktime_ns: 1,
            module: ModuleInfo::from(&r),
        };
        let line = ev.to_text();
        assert!(!line.contains('\x1b'), "{line:?}");
        assert!(line.contains("evil\u{fffd}[2Jname"), "{line:?}");
    }

    #[test]
    fn preexisting_flag_is_reported() {
        let mut r = record();
        r.flags = RecordFlags::PREEXISTING;
        assert!(ModuleInfo::from(&r).preexisting);
    }
}
