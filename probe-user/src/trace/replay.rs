//! Trace records folded into state: per capture session, the modules seen,
//! their exact counts and first uses, the probe counters. Pure; the report
//! and the TUI's replay read it.

use crate::kernel::kallsyms::KernelFunction;
use rustc_hash::FxHashMap;

use super::records::{
    AnomalyRecord, EndReason, GuardRecord, ModuleSeen, ModuleVerdict, SessionStart, StatsSnapshot,
    TraceRecord,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionModule {
    pub seen: ModuleSeen,
    pub unloaded_ns: Option<u64>,
    /// The static verdict on its file, when one was recorded.
    pub verdict: Option<ModuleVerdict>,
    /// Runtime anomalies, one per (site, function, detector), with the
    /// latest count.
    pub anomalies: Vec<AnomalyRecord>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstUse {
    pub ts_ns: u64,
    pub caller: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ReplayedSession {
    /// `None` when the session's header record was lost to damage.
    pub start: Option<SessionStart>,
    pub modules: Vec<SessionModule>,
    /// `(incarnation, function address)` → calls, as of the last snapshot.
    pub counts: FxHashMap<(u64, u64), u64>,
    pub first_uses: FxHashMap<(u64, u64), FirstUse>,
    pub stats: StatsSnapshot,
    pub end: Option<(u64, EndReason)>,
    /// Incarnation → its latest index in `modules`.
    by_incarnation: FxHashMap<u64, usize>,
    /// Functions probed after the session started.
    pub added_functions: Vec<KernelFunction>,
    /// Anomalies of no incarnation: module images flagged as they were
    /// being loaded (the load-time layout check), modules that hid before
    /// the session, and calls from module memory no module owns.
    pub load_anomalies: Vec<AnomalyRecord>,
    /// The guard's decisions, in order.
    pub guard: Vec<GuardRecord>,
    /// Latest timestamp seen in the session.
    pub last_ns: u64,
    pub records: u64,
}

impl ReplayedSession {
    fn module_mut(&mut self, incarnation: u64) -> Option<&mut SessionModule> {
        let i = *self.by_incarnation.get(&incarnation)?;
        self.modules.get_mut(i)
    }
}

/// Adds `a` to a list of anomalies: a new site, or a site's newer total
/// (counts only grow, as with call counts). A record without a call site
/// (a load check, a hidden module's evidence) is one per module.
pub fn merge_anomaly(list: &mut Vec<AnomalyRecord>, a: &AnomalyRecord) {
    let site = |x: &AnomalyRecord| (x.caller, x.func_ip, x.detector.clone(), x.module.clone());
    match list.iter_mut().find(|x| site(x) == site(a)) {
        Some(x) => x.count = x.count.max(a.count),
        None => list.push(a.clone()),
    }
}

#[derive(Debug, Default)]
pub struct Replay {
    pub sessions: Vec<ReplayedSession>,
}

impl Replay {
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a TraceRecord>) -> Self {
        let mut r = Self::default();
        for rec in records {
            r.apply(rec);
        }
        r
    }

    /// The last session, when `next` is its header again (rotation).
    fn continued_by(&mut self, next: &SessionStart) -> Option<&mut ReplayedSession> {
        let last = self.sessions.last_mut()?;
        last.start
            .as_ref()
            .is_some_and(|s| s.continues(next))
            .then_some(last)
    }

    fn current(&mut self) -> &mut ReplayedSession {
        if self.sessions.is_empty() {
            self.sessions.push(ReplayedSession::default());
        }
        self.sessions.last_mut().expect("one session exists")
    }

    pub fn apply(&mut self, record: &TraceRecord) {
        if let TraceRecord::SessionStart(s) = record {
            if let Some(current) = self.continued_by(s) {
                // The next file of a rotated capture: the same session.
                current.end = None;
                current.records += 1;
                return;
            }
            self.sessions.push(ReplayedSession {
                last_ns: s.started_ns,
                start: Some((**s).clone()),
                ..ReplayedSession::default()
            });
            self.current().records = 1;
            return;
        }
        let s = self.current();
        s.records += 1;
        match record {
            TraceRecord::SessionStart(_) => unreachable!("handled above"),
            TraceRecord::Module(m) => {
                s.last_ns = s.last_ns.max(m.ts_ns);
                if let Some(known) = s.module_mut(m.incarnation) {
                    // Carried into a rotated file: the same incarnation.
                    known.seen = (**m).clone();
                    return;
                }
                s.by_incarnation.insert(m.incarnation, s.modules.len());
                s.modules.push(SessionModule {
                    seen: (**m).clone(),
                    unloaded_ns: None,
                    verdict: None,
                    anomalies: Vec::new(),
                });
            }
            &TraceRecord::Unload { ts_ns, incarnation } => {
                s.last_ns = s.last_ns.max(ts_ns);
                if let Some(m) = s.module_mut(incarnation) {
                    m.unloaded_ns = Some(ts_ns);
                }
            }
            &TraceRecord::FirstUse {
                ts_ns,
                incarnation,
                func_ip,
                caller,
            } => {
                s.last_ns = s.last_ns.max(ts_ns);
                s.first_uses
                    .entry((incarnation, func_ip))
                    .or_insert(FirstUse { ts_ns, caller });
            }
            TraceRecord::Counts { ts_ns, entries } => {
                s.last_ns = s.last_ns.max(*ts_ns);
                for e in entries {
                    // Totals only grow; a smaller one is from damage or a
                    // reordered file, and never lowers what was seen.
                    let c = s.counts.entry((e.incarnation, e.func_ip)).or_default();
                    *c = (*c).max(e.calls);
                }
            }
            TraceRecord::Stats(st) => {
                s.last_ns = s.last_ns.max(st.ts_ns);
                s.stats = *st;
            }
            TraceRecord::Functions { ts_ns, functions } => {
                s.last_ns = s.last_ns.max(*ts_ns);
                s.added_functions.extend(functions.iter().cloned());
            }
            TraceRecord::Verdict(v) => {
                s.last_ns = s.last_ns.max(v.ts_ns);
                if let Some(m) = s.module_mut(v.incarnation) {
                    m.verdict = Some((**v).clone());
                }
            }
            TraceRecord::Guard(g) => {
                s.last_ns = s.last_ns.max(g.ts_ns);
                s.guard.push((**g).clone());
            }
            TraceRecord::Anomaly(a) => {
                s.last_ns = s.last_ns.max(a.ts_ns);
                if a.incarnation == 0 && a.caller == 0 {
                    s.load_anomalies.push((**a).clone());
                } else if a.incarnation == 0 {
                    merge_anomaly(&mut s.load_anomalies, a);
                } else if let Some(m) = s.module_mut(a.incarnation) {
                    merge_anomaly(&mut m.anomalies, a);
                }
            }
            &TraceRecord::SessionEnd { ts_ns, reason } => {
                s.last_ns = s.last_ns.max(ts_ns);
                s.end = Some((ts_ns, reason));
            }
        }
    }
}

/// Which session each record belongs to (its index in `Replay::sessions`),
/// split as `Replay::apply` splits them, for readers that walk the records
/// themselves.
#[derive(Debug, Default)]
pub struct SessionIndex {
    current: Option<usize>,
    header: Option<SessionStart>,
}

impl SessionIndex {
    pub fn of(&mut self, record: &TraceRecord) -> usize {
        let index = match (record, self.current) {
            (TraceRecord::SessionStart(s), Some(i))
                if self.header.as_ref().is_some_and(|h| h.continues(s)) =>
            {
                i
            }
            (TraceRecord::SessionStart(s), i) => {
                self.header = Some((**s).clone());
                i.map_or(0, |i| i + 1)
            }
            (_, i) => i.unwrap_or(0),
        };
        self.current = Some(index);
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::records::CountEntry;
    use crate::trace::samples;

    #[test]
    fn sample_trace_folds_into_one_session() {
        let r = Replay::from_records(&samples::all());
        assert_eq!(r.sessions.len(), 1);
        let s = &r.sessions[0];
        assert_eq!(s.start.as_ref().unwrap().hostname, "lab7");
        assert_eq!(s.modules.len(), 2);
        assert_eq!(s.modules[0].unloaded_ns, Some(8_000_000_000));
        assert_eq!(s.modules[1].unloaded_ns, None);
        assert_eq!(s.counts[&(6_000_000_000, 0x200)], 1000);
        assert_eq!(s.first_uses[&(6_000_000_000, 0x200)].ts_ns, 6_000_000_100);
        assert_eq!(s.stats.counters.lost_events, 2);
        assert_eq!(s.end, Some((9_000_000_000, EndReason::Interrupt)));
        assert_eq!(s.records, 12);
        assert_eq!(s.guard, vec![samples::guard_refusal()]);
        assert_eq!(s.modules[0].anomalies.len(), 1);
        assert_eq!(
            s.modules[0].verdict.as_ref().map(|v| v.reasons.len()),
            Some(2)
        );
        assert_eq!(
            s.added_functions,
            vec![KernelFunction::new("msleep", 0x300)]
        );
    }

    #[test]
    fn an_anomaly_sites_later_totals_update_it_and_never_lower_it() {
        let mut all = samples::all();
        let inc = 6_000_000_000;
        all.push(TraceRecord::Anomaly(Box::new(samples::anomaly(inc, 750))));
        all.push(TraceRecord::Anomaly(Box::new(samples::anomaly(inc, 500))));
        let other_site = AnomalyRecord {
            caller: 0xffff_ffff_c000_0200,
            site: "core+0x200".into(),
            ..samples::anomaly(inc, 3)
        };
        all.push(TraceRecord::Anomaly(Box::new(other_site)));
        let r = Replay::from_records(&all);
        let a = &r.sessions[0].modules[0].anomalies;
        assert_eq!(a.len(), 2, "{a:#?}");
        assert_eq!(a[0].count, 750);
        assert_eq!(a[1].count, 3);
    }

    #[test]
    fn later_snapshots_replace_totals_and_sessions_stay_apart() {
        let mut all = samples::all();
        let later = SessionStart {
            started_ns: 10,
            ..samples::session()
        };
        all.push(TraceRecord::SessionStart(Box::new(later)));
        all.push(TraceRecord::Counts {
            ts_ns: 10,
            entries: vec![CountEntry::new(1, 0x100, 5)],
        });
        all.push(TraceRecord::Counts {
            ts_ns: 11,
            entries: vec![CountEntry::new(1, 0x100, 9)],
        });
        let r = Replay::from_records(&all);
        assert_eq!(r.sessions.len(), 2);
        assert_eq!(r.sessions[1].counts[&(1, 0x100)], 9);
        assert!(!r.sessions[1].counts.contains_key(&(6_000_000_000, 0x200)));
        assert_eq!(r.sessions[1].end, None, "second session was cut short");
    }

    #[test]
    fn a_rotated_files_header_and_carried_modules_continue_the_session() {
        let all = samples::all();
        let mut rotated = all[..all.len() - 1].to_vec();
        rotated.push(TraceRecord::SessionEnd {
            ts_ns: 8_500_000_000,
            reason: EndReason::Rotated,
        });
        // The next file: the header again, the live module carried over,
        // its totals whole, then more calls and the end.
        rotated.push(all[0].clone());
        let carried = all
            .iter()
            .find(|r| matches!(r, TraceRecord::Module(m) if m.name == "old"));
        rotated.push(carried.unwrap().clone());
        rotated.push(TraceRecord::Counts {
            ts_ns: 8_600_000_000,
            entries: vec![CountEntry::new(6_000_000_000, 0x200, 1000)],
        });
        rotated.push(all[all.len() - 1].clone());
        let r = Replay::from_records(&rotated);
        assert_eq!(r.sessions.len(), 1);
        let s = &r.sessions[0];
        assert_eq!(s.modules.len(), 2, "no incarnation twice");
        assert_eq!(s.counts[&(6_000_000_000, 0x200)], 1000, "totals, not sums");
        assert_eq!(s.end, Some((9_000_000_000, EndReason::Interrupt)));
        let mut index = SessionIndex::default();
        assert!(rotated.iter().all(|rec| index.of(rec) == 0));
        let mut other = samples::session();
        other.started_ns += 1;
        assert_eq!(index.of(&TraceRecord::SessionStart(Box::new(other))), 1);
    }

    #[test]
    fn records_before_any_header_are_kept_in_a_headless_session() {
        let all = samples::all();
        let r = Replay::from_records(&all[1..]);
        assert_eq!(r.sessions.len(), 1);
        assert!(r.sessions[0].start.is_none());
        assert_eq!(r.sessions[0].modules.len(), 2);
    }
}
