//! What the TUI knows, folded from trace records: the session header, one
//! entry per module name (its incarnations, verdict, exact counts, rates),
//! the event log. Pure: live and replay feed it the same records.

use crate::kernel::kallsyms::KernelFunction;
use std::collections::{HashMap, VecDeque};

use rustc_hash::FxHashMap;

use modscope_analysis::verdict::Severity;

use super::module_entry::{Anomaly, CallStat, Incarnation, ModuleEntry, Rating};
use crate::{
    detectors::explain,
    kernel::taint,
    trace::{
        display::sanitize,
        guard_display,
        records::{
            AnomalyRecord, CountEntry, Decision, EndReason, ModuleOrigin, ModuleSeen,
            ModuleVerdict, SessionStart, Stats, StatsSnapshot, TraceRecord, VerdictReason,
        },
        replay::merge_anomaly,
    },
};

/// Log lines kept; older ones are dropped (and counted).
pub const LOG_CAPACITY: usize = 5_000;
/// Samples in a module's sparkline.
pub const SPARK_SAMPLES: usize = 30;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    pub kernel_release: String,
    pub hostname: String,
    pub boot_id: String,
    pub epoch_at_boot_ns: u64,
    pub config_source: String,
    /// ABI-relevant options and their values on this kernel.
    pub config: Vec<(String, String)>,
    pub attach_type: String,
    pub probes: usize,
    pub capped: usize,
    pub not_attached: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Session,
    Load,
    Unload,
    FirstUse,
    Verdict,
    Anomaly,
    Guard,
    Lost,
    Damage,
}

impl LogKind {
    pub fn word(self) -> &'static str {
        match self {
            LogKind::Session => "session",
            LogKind::Load => "load",
            LogKind::Unload => "unload",
            LogKind::FirstUse => "first use",
            LogKind::Verdict => "verdict",
            LogKind::Anomaly => "ANOMALY",
            LogKind::Guard => "guard",
            LogKind::Lost => "lost",
            LogKind::Damage => "damage",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub ts_ns: u64,
    pub kind: LogKind,
    pub text: String,
}

/// What applying one record changed, for the replay's "next mark".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// An anomaly, or a module's verdict changed.
    pub mark: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Model {
    pub session: Option<SessionInfo>,
    pub sessions: usize,
    pub ended: Option<EndReason>,
    pub functions: FxHashMap<u64, String>,
    pub modules: Vec<ModuleEntry>,
    by_name: HashMap<String, usize>,
    by_incarnation: FxHashMap<u64, usize>,
    pub log: VecDeque<LogEntry>,
    pub log_dropped: u64,
    pub stats: Stats,
    /// Latest time seen (boot clock).
    pub now_ns: u64,
    last_tick_ns: Option<u64>,
    pub records: u64,
    /// Calls from module memory no module owns, one per site.
    pub unowned: Vec<AnomalyRecord>,
}

impl Model {
    pub fn module(&self, name: &str) -> Option<&ModuleEntry> {
        self.by_name.get(name).map(|&i| &self.modules[i])
    }

    pub fn function_name(&self, addr: u64) -> String {
        self.functions
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| format!("{addr:#x}"))
    }

    /// Moves the clock (live: the wall clock; replay: the play head).
    pub fn advance(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
    }

    fn log(&mut self, ts_ns: u64, kind: LogKind, text: String) {
        if self.log.len() == LOG_CAPACITY {
            self.log.pop_front();
            self.log_dropped += 1;
        }
        self.log.push_back(LogEntry { ts_ns, kind, text });
    }

    /// Notes from outside the records (a damaged stretch of the file).
    pub fn note(&mut self, kind: LogKind, text: String) {
        self.log(self.now_ns, kind, text);
    }

    fn entry_mut(&mut self, name: &str) -> &mut ModuleEntry {
        let i = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.modules.push(ModuleEntry::new(name.to_owned()));
                self.by_name.insert(name.to_owned(), self.modules.len() - 1);
                self.modules.len() - 1
            }
        };
        &mut self.modules[i]
    }

    fn by_incarnation(&mut self, incarnation: u64) -> Option<&mut ModuleEntry> {
        let &i = self.by_incarnation.get(&incarnation)?;
        let m = &mut self.modules[i];
        (m.current().map(|c| c.id) == Some(incarnation)).then_some(m)
    }

    pub fn apply(&mut self, record: &TraceRecord) -> Applied {
        self.records += 1;
        let ts = record.ts_ns();
        self.advance(ts);
        let mut applied = Applied::default();
        match record {
            TraceRecord::SessionStart(s) => self.apply_session(ts, s),
            TraceRecord::Module(m) => self.apply_module(ts, m),
            TraceRecord::Verdict(v) => applied.mark = self.apply_verdict(v),
            TraceRecord::Anomaly(a) => applied.mark = self.apply_anomaly(a),
            TraceRecord::Guard(g) => {
                self.log(g.ts_ns, LogKind::Guard, guard_display::guard_line(g));
                applied.mark = g.decision != Decision::Allowed;
            }
            &TraceRecord::Unload { ts_ns, incarnation } => self.apply_unload(ts_ns, incarnation),
            &TraceRecord::FirstUse {
                ts_ns,
                incarnation,
                func_ip,
                caller,
            } => applied.mark = self.apply_first_use(ts_ns, incarnation, func_ip, caller),
            TraceRecord::Counts { ts_ns, entries } => self.apply_counts(*ts_ns, entries),
            TraceRecord::Stats(s) => self.apply_stats(s),
            TraceRecord::Functions { functions, .. } => self.apply_functions(functions),
            &TraceRecord::SessionEnd { ts_ns, reason } => {
                self.ended = Some(reason);
                self.log(
                    ts_ns,
                    LogKind::Session,
                    format!("ended ({})", reason.as_str()),
                );
            }
        }
        applied
    }

    /// A new session (an appended capture, maybe another boot): modules
    /// start over, the log goes on.
    fn apply_session(&mut self, ts: u64, s: &SessionStart) {
        self.modules.clear();
        self.by_name.clear();
        self.by_incarnation.clear();
        self.functions = s
            .functions
            .iter()
            .map(|f| (f.address, sanitize(&f.name)))
            .collect();
        self.stats = Stats::default();
        self.ended = None;
        self.last_tick_ns = None;
        self.sessions += 1;
        let info = SessionInfo {
            kernel_release: sanitize(&s.kernel_release),
            hostname: sanitize(&s.hostname),
            boot_id: sanitize(&s.boot_id),
            epoch_at_boot_ns: s.epoch_at_boot_ns,
            config_source: sanitize(&s.config_source),
            config: s
                .config
                .iter()
                .map(|(k, v)| (sanitize(k), sanitize(v)))
                .collect(),
            attach_type: sanitize(&s.attach_type),
            probes: s.functions.len(),
            capped: s.capped.len(),
            not_attached: s.not_attached.len(),
        };
        let text = format!(
            "{} started on {} ({}), {} functions probed",
            self.sessions, info.hostname, info.kernel_release, info.probes
        );
        self.session = Some(info);
        self.log(ts, LogKind::Session, text);
    }

    fn apply_module(&mut self, ts: u64, m: &ModuleSeen) {
        let name = sanitize(&m.name);
        let loaded = m.origin == ModuleOrigin::Loaded;
        let entry = self.entry_mut(&name);
        entry.incarnations.push(Incarnation {
            id: m.incarnation,
            origin: m.origin,
            loaded_ns: loaded.then_some(m.ts_ns),
            unloaded_ns: None,
            init_counted: m.init_counted,
            taints: taint::letters(m.taints),
            calls: 0,
        });
        entry.calls.clear();
        entry.detected.clear();
        entry.core_text = m.core_text;
        entry.init_text = m.init_text;
        entry.ticked_total = 0;
        if let Some(imports) = &m.imports {
            entry.imports = Some(imports.iter().map(|s| sanitize(s)).collect());
        }
        entry.tail_called = m.tail_called.iter().map(|s| sanitize(s)).collect();
        let i = self.by_name[&name];
        self.by_incarnation.insert(m.incarnation, i);
        if loaded {
            let taints = taint::letters(m.taints);
            let text = if taints.is_empty() {
                format!("{name} loaded")
            } else {
                format!("{name} loaded (taints {taints})")
            };
            self.log(ts, LogKind::Load, text);
        }
    }

    fn apply_unload(&mut self, ts_ns: u64, incarnation: u64) {
        if let Some(m) = self.by_incarnation(incarnation) {
            let calls = m.total_calls();
            if let Some(i) = m.incarnations.last_mut() {
                i.unloaded_ns = Some(ts_ns);
                i.calls = calls;
            }
            let text = format!("{} unloaded after {calls} counted calls", m.name);
            self.log(ts_ns, LogKind::Unload, text);
        }
    }

    /// A module's first call to a function; a call its verdict flags is an
    /// anomaly (and marks the replay).
    fn apply_first_use(&mut self, ts_ns: u64, incarnation: u64, func_ip: u64, caller: u64) -> bool {
        let mut mark = false;
        let symbol = self.function_name(func_ip);
        if let Some(m) = self.by_incarnation(incarnation) {
            let place = m.place(caller);
            let stat = m.calls.entry(func_ip).or_insert(CallStat {
                count: 0,
                first_use_ns: None,
                first_caller: None,
            });
            stat.first_use_ns.get_or_insert(ts_ns);
            if stat.first_caller.is_none() {
                stat.first_caller.clone_from(&place);
            }
            let name = m.name.clone();
            let flagged = m.flagged(&symbol).map(|r| r.code.clone());
            if let Some(code) = flagged {
                m.anomalies.push(Anomaly {
                    ts_ns,
                    symbol: symbol.clone(),
                    code: code.clone(),
                    caller: place.clone(),
                });
                mark = true;
                self.log(
                    ts_ns,
                    LogKind::Anomaly,
                    format!(
                        "{name} called {symbol} ({code}) from {}",
                        place.as_deref().unwrap_or("?")
                    ),
                );
            }
            let at = place.map(|p| format!(" at {p}")).unwrap_or_default();
            self.log(ts_ns, LogKind::FirstUse, format!("{name} → {symbol}{at}"));
        }
        mark
    }

    /// Logs what the kernel dropped or skipped since the last snapshot.
    fn apply_stats(&mut self, s: &StatsSnapshot) {
        let (now, before) = (&s.counters, &self.stats);
        let lost = now.lost_events.saturating_sub(before.lost_events);
        let skipped = now.skipped_runs.saturating_sub(before.skipped_runs);
        let news = [
            (
                lost,
                format!("the kernel dropped {lost} events (ring buffer full)"),
            ),
            (
                skipped,
                format!(
                    "the kernel skipped {skipped} probe runs (another BPF program was running \
                     on that CPU): those calls and loads are not counted"
                ),
            ),
        ];
        for (_, text) in news.into_iter().filter(|(n, _)| *n > 0) {
            self.log(s.ts_ns, LogKind::Lost, text);
        }
        self.stats = s.counters;
    }

    /// Functions probed from now on.
    fn apply_functions(&mut self, functions: &[KernelFunction]) {
        for f in functions {
            self.functions.insert(f.address, sanitize(&f.name));
        }
        if let Some(s) = &mut self.session {
            s.probes += functions.len();
        }
    }

    /// A detector's record: a new site is logged and marks the replay; a
    /// later record for the same site only updates its count.
    fn apply_anomaly(&mut self, a: &AnomalyRecord) -> bool {
        if a.incarnation == 0 {
            return self.apply_rowless_anomaly(a);
        }
        let Some(m) = self.by_incarnation(a.incarnation) else {
            return false;
        };
        let clean = AnomalyRecord {
            detector: sanitize(&a.detector),
            symbol: sanitize(&a.symbol),
            site: sanitize(&a.site),
            option: sanitize(&a.option),
            message: sanitize(&a.message),
            ..a.clone()
        };
        let before = m.detected.len();
        merge_anomaly(&mut m.detected, &clean);
        if m.detected.len() == before {
            return false;
        }
        let text = format!(
            "{}: {} at {} calling {}: {}",
            m.name, clean.detector, clean.site, clean.symbol, clean.message
        );
        self.log(a.ts_ns, LogKind::Anomaly, text);
        true
    }

    /// A finding with no module row: an image flagged as it was being
    /// loaded, a module that hid before the session, or a site of calls
    /// from unowned module memory (logged when new, counted after).
    fn apply_rowless_anomaly(&mut self, a: &AnomalyRecord) -> bool {
        let module = match sanitize(&a.module) {
            m if m.is_empty() => "unknown module".to_owned(),
            m => m,
        };
        let text = if a.detector == explain::LOAD_LAYOUT {
            format!(
                "{module}: {} while {} loaded it: {}",
                sanitize(&a.detector),
                sanitize(&a.site),
                sanitize(&a.message)
            )
        } else if a.caller != 0 {
            let before = self.unowned.len();
            merge_anomaly(&mut self.unowned, a);
            if self.unowned.len() == before {
                return false;
            }
            format!(
                "{module}: {} at {} calling {}: {}",
                sanitize(&a.detector),
                sanitize(&a.site),
                sanitize(&a.symbol),
                sanitize(&a.message)
            )
        } else {
            format!(
                "{module}: {}: {}",
                sanitize(&a.detector),
                sanitize(&a.message)
            )
        };
        self.log(a.ts_ns, LogKind::Anomaly, text);
        true
    }

    fn apply_verdict(&mut self, v: &ModuleVerdict) -> bool {
        let Some(m) = self.by_incarnation(v.incarnation) else {
            return false;
        };
        let before = m.rating();
        m.verdict = Some(ModuleVerdict {
            ts_ns: v.ts_ns,
            incarnation: v.incarnation,
            file: sanitize(&v.file),
            severity: v.severity,
            kernel_would_refuse: v.kernel_would_refuse,
            reasons: v
                .reasons
                .iter()
                .map(|r| VerdictReason {
                    code: sanitize(&r.code),
                    severity: r.severity,
                    symbol: sanitize(&r.symbol),
                    struct_name: sanitize(&r.struct_name),
                    config: sanitize(&r.config),
                    message: sanitize(&r.message),
                })
                .collect(),
        });
        let after = m.rating();
        let name = m.name.clone();
        // The codes just stored are sanitised already.
        let first = m
            .verdict
            .iter()
            .flat_map(|v| &v.reasons)
            .find(|r| r.severity >= Some(Severity::Warning))
            .map(|r| format!(": {}", r.code))
            .unwrap_or_default();
        let changed = before != after;
        // A clean verdict on a module seen for the first time is not news.
        if changed && !(before == Rating::Unchecked && after == Rating::Compatible) {
            let forced = if v.kernel_would_refuse {
                ", plain insmod refuses it"
            } else {
                ""
            };
            self.log(
                v.ts_ns,
                LogKind::Verdict,
                format!("{name} is {}{first}{forced}", after.word()),
            );
        }
        changed && after != Rating::Compatible
    }

    fn apply_counts(&mut self, ts_ns: u64, entries: &[CountEntry]) {
        for &CountEntry {
            incarnation: inc,
            func_ip: ip,
            calls: n,
        } in entries
        {
            if let Some(m) = self.by_incarnation(inc) {
                let stat = m.calls.entry(ip).or_insert(CallStat {
                    count: 0,
                    first_use_ns: None,
                    first_caller: None,
                });
                stat.count = stat.count.max(n);
            }
        }
        // Every counts record is a tick: rates and sparklines move on.
        let dt = self.last_tick_ns.map(|t| ts_ns.saturating_sub(t));
        self.last_tick_ns = Some(ts_ns);
        for m in &mut self.modules {
            if m.current().is_none_or(|i| i.unloaded_ns.is_some()) {
                continue;
            }
            let total = m.total_calls();
            let delta = total.saturating_sub(m.ticked_total);
            m.ticked_total = total;
            if let Some(dt) = dt.filter(|&d| d > 0) {
                m.rate = delta as f64 * 1e9 / dt as f64;
            }
            m.rate_ns = ts_ns;
            if m.spark.len() == SPARK_SAMPLES {
                m.spark.pop_front();
            }
            m.spark.push_back(delta);
        }
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
