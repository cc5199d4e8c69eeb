//! The per-module report of a trace (`modscope report`): for each capture
//! session, each module incarnation with its taints, load and unload times,
//! exact calls per probed function with first-use times, and the probed
//! imports it never called. Pure: built from [`Replay`].

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::{
    call_report::{self, Incarnation, ModuleCalls},
    display::hex,
    frame::{Damage, FORMAT_VERSION},
    records::{ModuleOrigin, ModuleVerdict, Stats},
    replay::{Replay, ReplayedSession, SessionModule},
};
use crate::kernel::{
    clock::WallClock,
    kallsyms::{FunctionNames, KernelFunction, NotAttached},
    taint,
};
use modscope_analysis::verdict::Severity;

#[derive(Debug, Serialize)]
pub struct Report {
    pub format_version: u8,
    /// No damage, and every session ended cleanly.
    pub complete: bool,
    pub records: u64,
    pub damage: Vec<DamageReport>,
    pub sessions: Vec<SessionReport>,
}

#[derive(Debug, Serialize)]
pub struct DamageReport {
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct SessionReport {
    /// False when the session's header record was lost to damage.
    pub header: bool,
    pub tool_version: String,
    pub kernel_release: String,
    pub boot_id: String,
    pub hostname: String,
    pub command: Vec<String>,
    pub started: Option<String>,
    /// Time of the last record: the end, or where a cut-short capture stops.
    pub last_record: Option<String>,
    /// `duration`, `SIGINT`, `SIGTERM`; `null` when the capture was cut short.
    pub end_reason: Option<&'static str>,
    pub seconds: f64,
    pub config_source: String,
    pub config: BTreeMap<String, String>,
    pub attach_type: String,
    pub probed_functions: usize,
    pub capped: Vec<String>,
    pub not_attached: Vec<NotAttached>,
    pub stats: Stats,
    pub modules: Vec<ModuleReport>,
    /// Module images flagged as they were being loaded (before they had an
    /// incarnation): the load-time layout check.
    pub load_anomalies: Vec<crate::trace::display::AnomalyInfo>,
    /// The guard's decisions (`modscope guard -o`), in order.
    pub guard: Vec<crate::trace::guard_display::GuardInfo>,
}

#[derive(Debug, Serialize)]
pub struct ModuleReport {
    pub name: String,
    pub incarnation: u64,
    pub taints: String,
    pub taint_mask: u64,
    /// Loaded before the capture started.
    pub preexisting: bool,
    /// Load time; `null` for modules loaded before the capture.
    pub loaded: Option<String>,
    pub loaded_ktime_ns: Option<u64>,
    pub unloaded: Option<String>,
    pub unloaded_ktime_ns: Option<u64>,
    /// Probes were live before its init ran, so init's calls are counted.
    pub init_counted: bool,
    pub total_calls: u64,
    pub calls: Vec<CallReport>,
    /// Imported functions that were probed and never called; `null` when
    /// its module file was not found. Tail-called ones are never here.
    pub unused_imports: Option<Vec<String>>,
    /// Probed imports its code reaches by a tail call: their calls from
    /// there are credited to the caller, so their counts fall short.
    pub tail_called: Vec<String>,
    /// Imported functions that were not probed (data, capped, refused).
    pub unprobed_imports: Option<Vec<String>>,
    /// The static verdict on its file against the recorded kernel; `null`
    /// when its file was not found.
    pub verdict: Option<VerdictReport>,
    /// The verdict once the detectors' findings count (`compatible`,
    /// `warning`, `incompatible`; `unchecked` with neither a file nor a
    /// finding): a lock or layout anomaly makes a module incompatible
    /// whatever its file said.
    pub runtime_verdict: &'static str,
    /// What the in-kernel detectors caught, one entry per call site, with
    /// exact counts.
    pub anomalies: Vec<crate::trace::display::AnomalyInfo>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VerdictReport {
    /// `compatible`, `warning` or `incompatible`, as `check` says.
    pub verdict: &'static str,
    pub file: String,
    pub kernel_would_refuse: bool,
    pub reasons: Vec<VerdictReasonReport>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VerdictReasonReport {
    pub code: String,
    pub severity: &'static str,
    pub symbol: Option<String>,
    pub config: Option<String>,
    pub message: String,
}

fn severity_word(l: Option<Severity>) -> &'static str {
    match l {
        Some(Severity::Incompatible) => "incompatible",
        Some(Severity::Warning) => "warning",
        Some(Severity::Info) => "info",
        None => "unknown",
    }
}

/// A static verdict as `check` words it: `compatible`, `warning`,
/// `incompatible`.
pub fn verdict_word(worst: Severity) -> &'static str {
    match worst {
        Severity::Info => "compatible",
        l => severity_word(Some(l)),
    }
}

fn verdict_report(v: &ModuleVerdict) -> VerdictReport {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    VerdictReport {
        verdict: verdict_word(v.severity),
        file: v.file.clone(),
        kernel_would_refuse: v.kernel_would_refuse,
        reasons: v
            .reasons
            .iter()
            .map(|r| VerdictReasonReport {
                code: r.code.clone(),
                severity: severity_word(r.severity),
                symbol: some(&r.symbol),
                config: some(&r.config),
                message: r.message.clone(),
            })
            .collect(),
    }
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct CallReport {
    pub symbol: String,
    pub count: u64,
    pub first_use: Option<String>,
    pub first_use_ktime_ns: Option<u64>,
    /// Where the first call came from: `core+0x…` or `init+0x…`.
    pub first_caller: Option<String>,
}

pub fn build(replay: &Replay, damage: &[Damage], module_filter: &[String]) -> Report {
    let sessions: Vec<SessionReport> = replay
        .sessions
        .iter()
        .map(|s| session(s, module_filter))
        .collect();
    Report {
        format_version: FORMAT_VERSION,
        complete: damage.is_empty() && sessions.iter().all(|s| s.end_reason.is_some()),
        records: replay.sessions.iter().map(|s| s.records).sum(),
        damage: damage
            .iter()
            .map(|d| DamageReport {
                offset: d.offset,
                bytes: d.bytes,
                reason: d.reason.clone(),
            })
            .collect(),
        sessions,
    }
}

fn session(s: &ReplayedSession, module_filter: &[String]) -> SessionReport {
    let start = s.start.clone().unwrap_or_default();
    // Without a header the wall clock is unknown: times stay boot-clock.
    let clock = s
        .start
        .as_ref()
        .map(|st| WallClock::from_epoch_at_boot_ns(st.epoch_at_boot_ns));
    let at = |ns: u64| clock.map(|c| c.rfc3339(ns));
    let functions: Vec<KernelFunction> = start
        .functions
        .iter()
        .chain(&s.added_functions)
        .cloned()
        .collect();
    let names = FunctionNames::new(functions.iter().cloned());
    let probed: BTreeSet<String> = functions.iter().map(|f| f.name.clone()).collect();
    let calls = session_calls(s, &names, &probed);
    let facts = SessionFacts {
        functions: &functions,
        probed: &probed,
        at: &at,
    };
    let modules = s
        .modules
        .iter()
        .zip(calls)
        .filter(|(m, _)| module_filter.is_empty() || module_filter.contains(&m.seen.name))
        .map(|(m, c)| module_report(s, m, c, &facts))
        .collect();
    SessionReport {
        header: s.start.is_some(),
        tool_version: start.tool_version,
        kernel_release: start.kernel_release,
        boot_id: start.boot_id,
        hostname: start.hostname,
        command: start.command,
        started: s.start.as_ref().and_then(|st| at(st.started_ns)),
        last_record: at(s.last_ns),
        end_reason: s.end.map(|(_, r)| r.as_str()),
        seconds: s.last_ns.saturating_sub(start.started_ns) as f64 / 1e9,
        config_source: start.config_source,
        config: start.config.into_iter().collect(),
        attach_type: start.attach_type,
        probed_functions: functions.len(),
        capped: start.capped,
        not_attached: start.not_attached,
        stats: s.stats.counters,
        modules,
        load_anomalies: s
            .load_anomalies
            .iter()
            .filter(|a| module_filter.is_empty() || module_filter.contains(&a.module))
            .map(crate::trace::display::AnomalyInfo::new)
            .collect(),
        guard: s
            .guard
            .iter()
            .filter(|g| module_filter.is_empty() || module_filter.contains(&g.module))
            .map(crate::trace::guard_display::GuardInfo::new)
            .collect(),
    }
}

/// What every module's report in a session reads.
struct SessionFacts<'a> {
    functions: &'a [KernelFunction],
    probed: &'a BTreeSet<String>,
    /// Boot-clock time to wall clock, when the session header gave it.
    at: &'a dyn Fn(u64) -> Option<String>,
}

/// The call report of each incarnation in the session, in order.
fn session_calls(
    s: &ReplayedSession,
    names: &FunctionNames,
    probed: &BTreeSet<String>,
) -> Vec<ModuleCalls> {
    let incarnations: Vec<Incarnation> = s
        .modules
        .iter()
        .map(|m| Incarnation {
            name: m.seen.name.clone(),
            incarnation: m.seen.incarnation,
            loaded_ktime_ns: m.seen.ts_ns,
            init_counted: m.seen.init_counted,
            unloaded_ktime_ns: m.unloaded_ns,
            imports: m.seen.imports.as_ref().map(|v| v.iter().cloned().collect()),
            tail_called: m.seen.tail_called.iter().cloned().collect(),
        })
        .collect();
    let first_ts: BTreeMap<(u64, u64), u64> =
        s.first_uses.iter().map(|(k, f)| (*k, f.ts_ns)).collect();
    let counts: BTreeMap<(u64, u64), u64> = s.counts.iter().map(|(k, n)| (*k, *n)).collect();
    call_report::build(&incarnations, &counts, &first_ts, names, probed)
}

fn module_report(
    s: &ReplayedSession,
    m: &SessionModule,
    c: ModuleCalls,
    facts: &SessionFacts,
) -> ModuleReport {
    let SessionFacts {
        functions,
        probed,
        at,
    } = *facts;
    let preexisting = m.seen.origin == ModuleOrigin::Present;
    let caller_of = |symbol: &str| {
        let ip = functions.iter().find(|f| f.name == symbol)?.address;
        let f = s.first_uses.get(&(m.seen.incarnation, ip))?;
        Some(place(f.caller, m.seen.core_text, m.seen.init_text))
    };
    ModuleReport {
        name: m.seen.name.clone(),
        incarnation: m.seen.incarnation,
        taints: taint::letters(m.seen.taints),
        taint_mask: m.seen.taints,
        preexisting,
        loaded: (!preexisting).then(|| at(m.seen.ts_ns)).flatten(),
        loaded_ktime_ns: (!preexisting).then_some(m.seen.ts_ns),
        unloaded: m.unloaded_ns.and_then(at),
        unloaded_ktime_ns: m.unloaded_ns,
        init_counted: m.seen.init_counted,
        verdict: m.verdict.as_ref().map(verdict_report),
        runtime_verdict: match crate::detectors::explain::with_findings(
            m.verdict.as_ref().map(|v| v.severity),
            m.anomalies.iter().map(|a| a.detector.as_str()),
        ) {
            None => "unchecked",
            Some(l) => verdict_word(l),
        },
        anomalies: m
            .anomalies
            .iter()
            .map(crate::trace::display::AnomalyInfo::new)
            .collect(),
        total_calls: c.calls.iter().fold(0, |t, u| t.saturating_add(u.count)),
        unprobed_imports: m.seen.imports.as_ref().map(|imports| {
            imports
                .iter()
                .filter(|i| !probed.contains(*i))
                .cloned()
                .collect()
        }),
        calls: c
            .calls
            .into_iter()
            .map(|u| CallReport {
                first_use: u.first_use_ktime_ns.and_then(at),
                first_caller: caller_of(&u.symbol),
                symbol: u.symbol,
                count: u.count,
                first_use_ktime_ns: u.first_use_ktime_ns,
            })
            .collect(),
        unused_imports: c.unused_imports,
        tail_called: c.tail_called,
    }
}

/// `core+0x…`, `init+0x…`, or the bare address when outside both.
pub fn place(addr: u64, core: (u64, u64), init: (u64, u64)) -> String {
    place_in(addr, core, init).unwrap_or_else(|| hex(addr))
}

/// `core+0x…` or `init+0x…` when `addr` is in one of the (base, size)
/// text ranges (a zero base is no range); the live session, the report and
/// the TUI all name call sites this way.
pub fn place_in(addr: u64, core: (u64, u64), init: (u64, u64)) -> Option<String> {
    let within = |(base, size): (u64, u64)| base != 0 && addr >= base && addr - base < size;
    if within(core) {
        Some(format!("core+{:#x}", addr - core.0))
    } else if within(init) {
        Some(format!("init+{:#x}", addr - init.0))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::samples;

    #[test]
    fn report_of_the_sample_trace() {
        let r = build(&Replay::from_records(&samples::all()), &[], &[]);
        assert!(r.complete);
        assert_eq!(r.records, 12);
        assert_eq!(r.sessions[0].guard.len(), 1);
        assert_eq!(r.sessions[0].guard[0].decision, "refused");
        let s = &r.sessions[0];
        assert_eq!(s.end_reason, Some("SIGINT"));
        assert_eq!(s.seconds, 4.0);
        assert_eq!(s.probed_functions, 3, "two at the start, msleep later");
        assert_eq!(s.stats.lost_events, 2);
        let m = &s.modules[0];
        assert_eq!(m.name, "m");
        assert_eq!(m.taints, "O");
        assert!(m.init_counted);
        assert_eq!(m.total_calls, 1999);
        assert_eq!(m.anomalies.len(), 1);
        assert_eq!(m.anomalies[0].detector, "spinlock_magic");
        assert_eq!(m.anomalies[0].caller_offset, "core+0x123");
        assert_eq!(m.anomalies[0].expected, "0xdead4ead");
        assert_eq!(
            m.calls[0],
            CallReport {
                symbol: "kstrdup".into(),
                count: 1000,
                first_use: Some("2026-09-21T14:13:26.000000100Z".into()),
                first_use_ktime_ns: Some(6_000_000_100),
                first_caller: Some("init+0x10".into()),
            }
        );
        assert_eq!(m.calls[1].symbol, "kfree");
        assert_eq!(m.calls[1].first_use, None);
        assert_eq!(m.unused_imports, Some(vec![]));
        assert_eq!(m.unprobed_imports, Some(vec!["_printk".to_owned()]));
        assert!(m.unloaded.is_some());
        let old = &s.modules[1];
        assert!(old.preexisting);
        assert_eq!(old.loaded, None);
        assert_eq!(old.unused_imports, None, "its file was not found");
    }

    #[test]
    fn cut_short_and_damaged_traces_are_not_complete() {
        let all = samples::all();
        let r = build(&Replay::from_records(&all[..all.len() - 1]), &[], &[]);
        assert!(!r.complete);
        assert_eq!(r.sessions[0].end_reason, None);
        let damage = [Damage {
            offset: 16,
            bytes: 3,
            reason: "checksum mismatch".into(),
        }];
        assert!(!build(&Replay::from_records(&all), &damage, &[]).complete);
    }

    #[test]
    fn module_filter_keeps_only_named_modules() {
        let r = build(
            &Replay::from_records(&samples::all()),
            &[],
            &["old".to_owned()],
        );
        let names: Vec<&str> = r.sessions[0]
            .modules
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(names, ["old"]);
    }
}
