//! What `/metrics` says, folded from the same trace records the session
//! writes (so a scrape and the trace never disagree), plus the programs'
//! run-time statistics. Pure: tested on the host.
//!
//! Label cardinality is bounded: at most `MAX_MODULES` module names and
//! `MAX_CALL_SERIES` (module, function) pairs get series of their own;
//! past the bound, further modules and pairs are summed into the label
//! value `_other`, and `modscope_metrics_series_folded_total` counts the
//! names and pairs folded so. Detector and option labels come from
//! modscope's own tables; program names from its own object.

use std::collections::{BTreeMap, BTreeSet};

use crate::kernel::kallsyms::FunctionNames;
use crate::trace::{
    TraceRecord,
    guard_display::decision_name,
    records::{AnomalyRecord, ModuleOrigin, Stats},
    replay::merge_anomaly,
    report::verdict_word,
};

pub const MAX_MODULES: usize = 1_000;
pub const MAX_CALL_SERIES: usize = 10_000;
/// The label value that stands for every name past the bounds.
pub const OTHER: &str = "_other";

/// The verdicts `modscope_module_verdict` has a series for, per module.
pub const VERDICTS: [&str; 4] = ["compatible", "warning", "incompatible", "unchecked"];

/// One program's figures as the kernel counts them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProgramRuns {
    /// Time spent in it (while BPF statistics are on).
    pub run_time_ns: u64,
    pub runs: u64,
    /// Runs the kernel skipped (kernels from 6.7 count them).
    pub skipped: u64,
}

#[derive(Debug, Default)]
pub struct MetricsState {
    names: FunctionNames,
    probes: ProbeCounts,
    /// Incarnation → module name (as labelled: `_other` past the bound).
    incarnations: BTreeMap<u64, String>,
    modules: BTreeMap<String, ModuleMetrics>,
    /// (incarnation, function address) → its latest total.
    totals: BTreeMap<(u64, u64), u64>,
    /// (module, function) series that exist.
    call_series: BTreeSet<(String, String)>,
    pub stats: Stats,
    /// Program name → its figures, from the kernel's statistics.
    pub programs: BTreeMap<String, ProgramRuns>,
    /// Names and pairs summed into `_other`.
    pub folded: u64,
    /// The guard's decisions by name (`allowed`, `refused`, `would_refuse`).
    pub guard: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCounts {
    pub attached: u64,
    pub refused: u64,
    pub capped: u64,
}

#[derive(Debug, Default)]
pub struct ModuleMetrics {
    /// Live incarnations.
    pub live: BTreeSet<u64>,
    pub loads: u64,
    /// The last incarnation's static verdict (`None`: no file found).
    pub static_verdict: Option<modscope_analysis::verdict::Severity>,
    /// (incarnation, anomaly site) records, with the latest counts.
    pub anomalies: Vec<AnomalyRecord>,
    /// Function → calls, summed over incarnations.
    pub calls: BTreeMap<String, u64>,
}

impl ModuleMetrics {
    /// The verdict once the detectors' findings count, as `report` gives it.
    pub fn verdict(&self) -> &'static str {
        match crate::detectors::explain::with_findings(
            self.static_verdict,
            self.anomalies.iter().map(|a| a.detector.as_str()),
        ) {
            None => "unchecked",
            Some(s) => verdict_word(s),
        }
    }
}

impl MetricsState {
    pub fn modules(&self) -> &BTreeMap<String, ModuleMetrics> {
        &self.modules
    }

    pub fn probes(&self) -> ProbeCounts {
        self.probes
    }

    /// Follows one record the session wrote.
    pub fn apply(&mut self, record: &TraceRecord) {
        match record {
            TraceRecord::SessionStart(s) => {
                self.names = FunctionNames::new(s.functions.iter().cloned());
                self.probes = ProbeCounts {
                    attached: s.functions.len() as u64,
                    refused: s.not_attached.len() as u64,
                    capped: s.capped.len() as u64,
                };
            }
            TraceRecord::Functions { functions, .. } => {
                self.names.extend(functions.iter().cloned());
                self.probes.attached += functions.len() as u64;
            }
            TraceRecord::Module(m) => {
                let name = self.module_label(&m.name);
                self.incarnations.insert(m.incarnation, name.clone());
                let entry = self.modules.entry(name).or_default();
                entry.live.insert(m.incarnation);
                if m.origin == ModuleOrigin::Loaded {
                    entry.loads += 1;
                }
            }
            TraceRecord::Unload { incarnation, .. } => {
                if let Some(m) = self.module_of(*incarnation) {
                    m.live.remove(incarnation);
                }
            }
            TraceRecord::Verdict(v) => {
                if let Some(m) = self.module_of(v.incarnation) {
                    m.static_verdict = Some(v.severity);
                }
            }
            TraceRecord::Anomaly(a) => {
                let name = match self.incarnations.get(&a.incarnation) {
                    Some(n) => n.clone(),
                    None => self.module_label(&a.module),
                };
                merge_anomaly(&mut self.modules.entry(name).or_default().anomalies, a);
            }
            TraceRecord::Counts { entries, .. } => {
                for e in entries {
                    self.count(e.incarnation, e.func_ip, e.calls);
                }
            }
            TraceRecord::Stats(s) => self.stats = s.counters,
            TraceRecord::Guard(g) => {
                *self.guard.entry(decision_name(g.decision)).or_default() += 1;
            }
            TraceRecord::FirstUse { .. } | TraceRecord::SessionEnd { .. } => {}
        }
    }

    fn module_of(&mut self, incarnation: u64) -> Option<&mut ModuleMetrics> {
        let name = self.incarnations.get(&incarnation)?;
        self.modules.get_mut(name)
    }

    /// `name`, or `_other` once `MAX_MODULES` names have series.
    fn module_label(&mut self, name: &str) -> String {
        if self.modules.contains_key(name) || self.modules.len() < MAX_MODULES {
            return name.to_owned();
        }
        self.folded += 1;
        OTHER.to_owned()
    }

    /// A counter total: what it grew by goes to its module's series.
    fn count(&mut self, incarnation: u64, func_ip: u64, calls: u64) {
        let before = self
            .totals
            .insert((incarnation, func_ip), calls)
            .unwrap_or(0);
        let grew = calls.saturating_sub(before);
        let Some(module) = self.incarnations.get(&incarnation).cloned() else {
            return;
        };
        let function = self
            .names
            .name(func_ip)
            .map_or_else(|| format!("{func_ip:#x}"), str::to_owned);
        let key = (module.clone(), function.clone());
        let (module, function) = if self.call_series.contains(&key) {
            key
        } else if self.call_series.len() < MAX_CALL_SERIES {
            self.call_series.insert(key.clone());
            key
        } else {
            self.folded += 1;
            (OTHER.to_owned(), OTHER.to_owned())
        };
        let m = self.modules.entry(module).or_default();
        let c = m.calls.entry(function).or_default();
        *c = c.saturating_add(grew);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{records::CountEntry, samples};

    fn state_of(records: &[TraceRecord]) -> MetricsState {
        let mut s = MetricsState::default();
        for r in records {
            s.apply(r);
        }
        s
    }

    #[test]
    fn the_sample_session_as_metrics() {
        let s = state_of(&samples::all());
        let m = &s.modules()["m"];
        assert!(m.live.is_empty(), "unloaded");
        assert_eq!(m.loads, 1);
        assert_eq!(m.calls["kstrdup"], 1000);
        assert_eq!(m.calls["kfree"], 999);
        assert_eq!(m.verdict(), "incompatible");
        assert_eq!(m.anomalies.len(), 1);
        let old = &s.modules()["old"];
        assert_eq!((old.live.len(), old.loads), (1, 0), "present, not loaded");
        assert_eq!(
            s.probes(),
            ProbeCounts {
                attached: 3,
                refused: 1,
                capped: 1
            }
        );
        assert_eq!(s.stats.lost_events, 2);
    }

    #[test]
    fn calls_sum_over_incarnations_and_never_go_back() {
        let mut s = state_of(&samples::all()[..1]);
        for (inc, total) in [(1, 10), (1, 25), (1, 20), (2, 5)] {
            if !s.incarnations.contains_key(&inc) {
                s.apply(&TraceRecord::Module(Box::new(samples::module("m", inc))));
            }
            s.apply(&TraceRecord::Counts {
                ts_ns: 0,
                entries: vec![CountEntry::new(inc, 0x100, total)],
            });
        }
        assert_eq!(
            s.modules()["m"].calls["kfree"],
            30,
            "25 from the first, 5 from the second"
        );
        assert_eq!(s.modules()["m"].loads, 2);
    }

    #[test]
    fn names_past_the_bound_fold_into_other() {
        let mut s = state_of(&samples::all()[..1]);
        for i in 0..(MAX_MODULES as u64 + 5) {
            s.apply(&TraceRecord::Module(Box::new(samples::module(
                &format!("m{i}"),
                i + 1,
            ))));
        }
        assert_eq!(s.modules().len(), MAX_MODULES + 1);
        assert_eq!(s.modules()[OTHER].live.len(), 5, "the five past the bound");
        assert!(s.folded >= 5);
    }
}
