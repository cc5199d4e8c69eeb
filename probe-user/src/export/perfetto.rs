//! A Perfetto TrackEvent timeline of a trace: per capture session a track,
//! under it one track per module with each incarnation's load-to-unload
//! life as a slice and its first uses, verdict and anomalies as instant
//! events with their arguments, and its calls per second as a counter
//! track; the probes' lost events as a session counter. Times stay on the
//! boot clock, Perfetto's default trace clock (sessions of different
//! boots in one file overlap on it; each keeps its own track).

use std::collections::{BTreeMap, BTreeSet};

use super::perfetto_proto::{
    self as proto, DebugAnnotation, TracePacket, TrackDescriptor, TrackEvent,
};
use crate::kernel::{
    clock::WallClock,
    kallsyms::{FunctionNames, KernelFunction},
    taint,
};
use crate::trace::{
    Trace, TraceRecord,
    records::ModuleOrigin,
    replay::{Replay, ReplayedSession, SessionIndex, SessionModule},
    report::{place, verdict_word},
};

/// The trusted sequence every packet is written on.
const SEQUENCE: u32 = 1;

/// The timeline of `trace` as Perfetto's messages: track descriptors
/// first, then the events in time order.
pub fn timeline(trace: &Trace) -> proto::Trace {
    let records: Vec<&TraceRecord> = trace.records.iter().map(|(_, r)| r).collect();
    let replay = Replay::from_records(records.iter().copied());
    let mut t = Timeline::default();
    for (n, s) in replay.sessions.iter().enumerate() {
        let tracks = SessionTracks::new(&mut t, n, s);
        tracks.modules(&mut t, s);
        let start_ns = s.start.as_ref().map_or(0, |st| st.started_ns);
        tracks.counters(&mut t, n, start_ns, &records);
    }
    t.finish()
}

#[derive(Default)]
struct Timeline {
    descriptors: Vec<TracePacket>,
    events: Vec<TracePacket>,
}

impl Timeline {
    fn track(&mut self, uuid: u64, parent: Option<u64>, name: String, counter: Option<&str>) {
        self.descriptors.push(TracePacket {
            track_descriptor: Some(TrackDescriptor {
                uuid: Some(uuid),
                name: Some(name),
                parent_uuid: parent,
                counter: counter.map(|unit| proto::CounterDescriptor {
                    unit_name: Some(unit.to_owned()),
                }),
                description: None,
            }),
            ..packet()
        });
    }

    fn event(&mut self, ts: u64, event: TrackEvent) {
        self.events.push(TracePacket {
            timestamp: Some(ts),
            track_event: Some(event),
            ..packet()
        });
    }

    fn finish(mut self) -> proto::Trace {
        self.events.sort_by_key(|p| p.timestamp);
        let mut packet: Vec<TracePacket> = self.descriptors;
        packet.append(&mut self.events);
        if let Some(first) = packet.first_mut() {
            first.sequence_flags = Some(proto::SEQ_INCREMENTAL_STATE_CLEARED);
        }
        proto::Trace { packet }
    }
}

fn packet() -> TracePacket {
    TracePacket {
        trusted_packet_sequence_id: Some(SEQUENCE),
        ..TracePacket::default()
    }
}

fn event(kind: i32, track: u64, category: &str, name: Option<String>) -> TrackEvent {
    TrackEvent {
        r#type: Some(kind),
        track_uuid: Some(track),
        categories: vec![category.to_owned()],
        name,
        ..TrackEvent::default()
    }
}

/// The tracks of one session: its own, and per module name a track and a
/// calls-per-second counter beside it.
struct SessionTracks {
    root: u64,
    /// Module name → (its track, its counter track).
    modules: BTreeMap<String, (u64, u64)>,
    names: FunctionNames,
}

impl SessionTracks {
    fn new(t: &mut Timeline, n: usize, s: &ReplayedSession) -> Self {
        let root = (n as u64 + 1) << 32;
        t.track(root, None, session_title(n, s), None);
        t.track(
            root | 0xffff_ffff,
            Some(root),
            "lost events".into(),
            Some("events"),
        );
        let mut modules = BTreeMap::new();
        for m in &s.modules {
            let i = modules.len() as u64;
            modules.entry(m.seen.name.clone()).or_insert_with(|| {
                let (track, counter) = (root | (2 * i + 1), root | (2 * i + 2));
                t.track(track, Some(root), format!("module {}", m.seen.name), None);
                t.track(
                    counter,
                    Some(track),
                    format!("{} calls/s", m.seen.name),
                    Some("calls/s"),
                );
                (track, counter)
            });
        }
        let functions: Vec<KernelFunction> = s
            .start
            .iter()
            .flat_map(|st| st.functions.iter())
            .chain(&s.added_functions)
            .cloned()
            .collect();
        Self {
            root,
            modules,
            names: FunctionNames::new(functions),
        }
    }

    fn modules(&self, t: &mut Timeline, s: &ReplayedSession) {
        for (i, m) in s.modules.iter().enumerate() {
            let track = self.modules[&m.seen.name].0;
            // A lost unload record: the life ends where the next one of the
            // same name begins, or with the session.
            let next = s.modules[i + 1..]
                .iter()
                .find(|n| n.seen.name == m.seen.name);
            let end = m
                .unloaded_ns
                .or(next.map(|n| n.seen.ts_ns))
                .unwrap_or(s.last_ns)
                .max(m.seen.ts_ns);
            life(t, track, m, end);
            self.first_uses(t, track, s, m);
            verdict(t, track, m);
            for a in &m.anomalies {
                anomaly(t, track, a);
            }
        }
        for a in &s.load_anomalies {
            anomaly(t, self.root, a);
        }
    }

    fn first_uses(&self, t: &mut Timeline, track: u64, s: &ReplayedSession, m: &SessionModule) {
        let inc = m.seen.incarnation;
        let mine = s.first_uses.iter().filter(|((i, _), _)| *i == inc);
        let mut uses: Vec<_> = mine.map(|((_, ip), f)| (f.ts_ns, *ip, f.caller)).collect();
        uses.sort_unstable();
        for (ts, ip, caller) in uses {
            let function = self
                .names
                .name(ip)
                .map_or_else(|| format!("{ip:#x}"), str::to_owned);
            let mut e = event(
                TYPE_INSTANT,
                track,
                "first_use",
                Some(format!("first use: {function}")),
            );
            e.debug_annotations = vec![
                DebugAnnotation::text("function", function),
                DebugAnnotation::text("caller", place(caller, m.seen.core_text, m.seen.init_text)),
                DebugAnnotation::uint("incarnation", inc),
            ];
            t.event(ts, e);
        }
    }

    /// Calls per second per module between successive count snapshots, and
    /// the lost-events total at each stats snapshot, from session `n`'s
    /// records (split as `Replay` splits them).
    fn counters(&self, t: &mut Timeline, n: usize, start_ns: u64, records: &[&TraceRecord]) {
        let mut rates = CallRates::new(start_ns);
        for r in session_records(records, n) {
            match r {
                TraceRecord::Module(m) => rates.seen(m.incarnation, &m.name, m.ts_ns),
                &TraceRecord::Unload { ts_ns, incarnation } => {
                    if let Some(counter) = rates
                        .unloaded(incarnation)
                        .and_then(|n| self.modules.get(&n))
                    {
                        let mut e = event(TYPE_COUNTER, counter.1, "calls", None);
                        e.double_counter_value = Some(0.0);
                        t.event(ts_ns, e);
                    }
                }
                TraceRecord::Counts { ts_ns, entries } => {
                    for (name, rate) in rates.sample(
                        *ts_ns,
                        entries.iter().map(|e| (e.incarnation, e.func_ip, e.calls)),
                    ) {
                        if let Some(&(_, counter)) = self.modules.get(&name) {
                            let mut e = event(TYPE_COUNTER, counter, "calls", None);
                            e.double_counter_value = Some(rate);
                            t.event(*ts_ns, e);
                        }
                    }
                }
                TraceRecord::Stats(st) => {
                    let mut e = event(TYPE_COUNTER, self.root | 0xffff_ffff, "stats", None);
                    e.double_counter_value = Some(st.counters.lost_events as f64);
                    t.event(st.ts_ns, e);
                }
                _ => {}
            }
        }
    }
}

use proto::{TYPE_COUNTER, TYPE_INSTANT, TYPE_SLICE_BEGIN, TYPE_SLICE_END};

fn session_title(n: usize, s: &ReplayedSession) -> String {
    match &s.start {
        Some(st) => format!(
            "modscope session {}: {} {} ({})",
            n + 1,
            st.hostname,
            st.kernel_release,
            WallClock::from_epoch_at_boot_ns(st.epoch_at_boot_ns).rfc3339(st.started_ns)
        ),
        None => format!("modscope session {} (header lost)", n + 1),
    }
}

fn life(t: &mut Timeline, track: u64, m: &SessionModule, end: u64) {
    let mut begin = event(TYPE_SLICE_BEGIN, track, "module", Some(m.seen.name.clone()));
    begin.debug_annotations = vec![
        DebugAnnotation::uint("incarnation", m.seen.incarnation),
        DebugAnnotation::text("taints", taint::letters(m.seen.taints)),
        DebugAnnotation::flag(
            "loaded_before_capture",
            m.seen.origin == ModuleOrigin::Present,
        ),
        DebugAnnotation::flag("init_counted", m.seen.init_counted),
    ];
    t.event(m.seen.ts_ns, begin);
    t.event(end, event(TYPE_SLICE_END, track, "module", None));
}

fn verdict(t: &mut Timeline, track: u64, m: &SessionModule) {
    let Some(v) = &m.verdict else { return };
    let word = verdict_word(v.severity);
    let codes: Vec<&str> = v.reasons.iter().map(|r| r.code.as_str()).collect();
    let mut e = event(
        TYPE_INSTANT,
        track,
        "verdict",
        Some(format!("verdict: {word}")),
    );
    e.debug_annotations = vec![
        DebugAnnotation::text("verdict", word),
        DebugAnnotation::text("file", v.file.clone()),
        DebugAnnotation::flag("kernel_would_refuse", v.kernel_would_refuse),
        DebugAnnotation::text("reasons", codes.join(", ")),
    ];
    t.event(v.ts_ns, e);
}

fn anomaly(t: &mut Timeline, track: u64, a: &crate::trace::records::AnomalyRecord) {
    let mut e = event(
        TYPE_INSTANT,
        track,
        "anomaly",
        Some(format!("anomaly: {}", a.detector)),
    );
    e.debug_annotations = vec![
        DebugAnnotation::text("detector", a.detector.clone()),
        DebugAnnotation::text("function", a.symbol.clone()),
        DebugAnnotation::text("site", a.site.clone()),
        DebugAnnotation::text("option", a.option.clone()),
        DebugAnnotation::text("expected", format!("{:#x}", a.expected)),
        DebugAnnotation::text("observed", format!("{:#x}", a.observed)),
        DebugAnnotation::uint("count", a.count),
        DebugAnnotation::text("message", a.message.clone()),
    ];
    t.event(a.ts_ns, e);
}

/// Session `n`'s records, split as `Replay` splits them.
fn session_records<'a>(
    records: &'a [&'a TraceRecord],
    n: usize,
) -> impl Iterator<Item = &'a TraceRecord> + 'a {
    let mut index = SessionIndex::default();
    records.iter().copied().filter(move |r| index.of(r) == n)
}

/// Per module, calls per second between snapshots, from counter totals.
struct CallRates {
    module_of: BTreeMap<u64, String>,
    /// (incarnation, function) → the last total.
    totals: BTreeMap<(u64, u64), u64>,
    /// The previous snapshot (at first, the session's start).
    previous: u64,
    /// Module name → when its latest incarnation was seen.
    seen_at: BTreeMap<String, u64>,
    /// Modules whose last rate was above 0.
    busy: BTreeSet<String>,
}

impl CallRates {
    fn new(start_ns: u64) -> Self {
        Self {
            module_of: BTreeMap::new(),
            totals: BTreeMap::new(),
            previous: start_ns,
            seen_at: BTreeMap::new(),
            busy: BTreeSet::new(),
        }
    }

    fn seen(&mut self, incarnation: u64, name: &str, ts: u64) {
        self.module_of.insert(incarnation, name.to_owned());
        self.seen_at.insert(name.to_owned(), ts);
    }

    /// The module's name when it was busy: its rate drops to 0 now.
    fn unloaded(&mut self, incarnation: u64) -> Option<String> {
        let name = self.module_of.get(&incarnation)?;
        self.busy.take(name)
    }

    /// The calls per second since the previous snapshot (or its load) of
    /// each module whose totals grew, and a 0 for each that stopped: a
    /// counter holds its value until the next, so idle modules cost nothing.
    fn sample(
        &mut self,
        ts: u64,
        entries: impl Iterator<Item = (u64, u64, u64)>,
    ) -> Vec<(String, f64)> {
        let mut grew: BTreeMap<String, u64> = BTreeMap::new();
        for (inc, ip, calls) in entries {
            let before = self.totals.insert((inc, ip), calls).unwrap_or(0);
            if let Some(name) = self.module_of.get(&inc) {
                *grew.entry(name.clone()).or_default() += calls.saturating_sub(before);
            }
        }
        let stopped = self.busy.iter().filter(|n| !grew.contains_key(*n));
        let mut rates: Vec<(String, f64)> = stopped.map(|n| (n.clone(), 0.0)).collect();
        for (name, delta) in &grew {
            let from = self
                .previous
                .max(self.seen_at.get(name).copied().unwrap_or(0));
            let seconds = ts.saturating_sub(from) as f64 / 1e9;
            let rate = if seconds > 0.0 {
                *delta as f64 / seconds
            } else {
                0.0
            };
            rates.push((name.clone(), rate));
        }
        self.busy = grew
            .into_iter()
            .filter(|(_, d)| *d > 0)
            .map(|(n, _)| n)
            .collect();
        self.previous = ts;
        rates
    }
}
