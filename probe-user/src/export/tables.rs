//! A trace as five tables (sessions, modules, calls, anomalies, verdict
//! reasons), every row carrying the session's host, boot id, kernel release
//! and session key, so that the tables of many traces concatenate into one
//! dataset. Pure: built from the trace report, so every total is the one
//! `report --json` gives. The encoders (`jsonl`, `parquet`) read them.

use crate::kernel::clock::WallClock;
use crate::trace::{
    Trace,
    replay::{Replay, ReplayedSession},
    report::{self, ModuleReport, SessionReport},
};

/// What a column holds. Times are nanoseconds since the epoch, UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    UInt,
    Bool,
    Float,
    Time,
}

/// One cell; `Null` where the trace does not know (a time without the
/// session's header, a verdict without a file).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    UInt(u64),
    Bool(bool),
    Float(f64),
    Time(i64),
    Null,
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::UInt(v)
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Value::UInt(v as u64)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

pub type Schema = &'static [(&'static str, Kind)];

/// One table's rows, in its schema's column order.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub name: &'static str,
    pub schema: Schema,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    fn new(name: &'static str, schema: Schema) -> Self {
        Self {
            name,
            schema,
            rows: Vec::new(),
        }
    }

    fn push(&mut self, key: &SessionKey, rest: Vec<Value>) {
        let mut row = key.values();
        row.extend(rest);
        debug_assert_eq!(row.len(), self.schema.len(), "{}", self.name);
        self.rows.push(row);
    }
}

/// The columns every table starts with.
const KEY: [(&str, Kind); 4] = [
    ("host", Kind::Text),
    ("boot_id", Kind::Text),
    ("kernel_release", Kind::Text),
    ("session", Kind::Text),
];

macro_rules! schema {
    ($($name:literal: $kind:ident),* $(,)?) => {
        &[KEY[0], KEY[1], KEY[2], KEY[3], $(($name, Kind::$kind)),*]
    };
}

pub const SESSIONS: Schema = schema![
    "source": Text, "tool_version": Text, "started": Time, "last_record": Time,
    "end_reason": Text, "seconds": Float, "attach_type": Text, "probed_functions": UInt,
    "capped_functions": UInt, "refused_functions": UInt, "lost_events": UInt,
    "read_errors": UInt, "registry_full": UInt, "page_map_full": UInt, "call_map_full": UInt,
    "decode_errors": UInt, "skipped_probe_runs": UInt, "modules": UInt, "total_calls": UInt, "trace_damaged_bytes": UInt,
];
pub const MODULES: Schema = schema![
    "module": Text, "incarnation": UInt, "preexisting": Bool, "loaded": Time,
    "unloaded": Time, "taints": Text, "init_counted": Bool, "total_calls": UInt,
    "verdict": Text, "runtime_verdict": Text, "kernel_would_refuse": Bool, "file": Text,
    "anomalous_calls": UInt, "unused_imports": UInt, "tail_called_imports": UInt,
];
pub const CALLS: Schema = schema![
    "module": Text, "incarnation": UInt, "function": Text, "calls": UInt,
    "first_use": Time, "first_caller": Text,
];
pub const ANOMALIES: Schema = schema![
    "module": Text, "incarnation": UInt, "detector": Text, "option": Text,
    "function": Text, "caller": Text, "site": Text, "object": Text, "expected": Text,
    "observed": Text, "count": UInt, "first_seen": Time, "message": Text,
];
pub const VERDICT_REASONS: Schema = schema![
    "module": Text, "incarnation": UInt, "file": Text, "code": Text, "severity": Text,
    "symbol": Text, "config": Text, "message": Text,
];

/// The tables, in the order they are written.
pub const TABLES: [(&str, Schema); 5] = [
    ("sessions", SESSIONS),
    ("modules", MODULES),
    ("calls", CALLS),
    ("anomalies", ANOMALIES),
    ("verdict_reasons", VERDICT_REASONS),
];

/// Which session a row belongs to. `session` is unique across a fleet:
/// the boot id and the session's start on that boot's clock (or, for a
/// session whose header was lost, the source file and its place there).
struct SessionKey {
    host: String,
    boot_id: String,
    kernel_release: String,
    session: String,
}

impl SessionKey {
    fn values(&self) -> Vec<Value> {
        vec![
            self.host.as_str().into(),
            self.boot_id.as_str().into(),
            self.kernel_release.as_str().into(),
            self.session.as_str().into(),
        ]
    }
}

/// The five tables of one trace file; `source` names it in `sessions`.
pub fn of_trace(source: &str, trace: &Trace) -> [Table; 5] {
    let replay = Replay::from_records(trace.records.iter().map(|(_, r)| r));
    let report = report::build(&replay, &trace.damage, &[]);
    let damaged: u64 = trace.damage.iter().map(|d| d.bytes).sum();
    let mut tables = TABLES.map(|(name, schema)| Table::new(name, schema));
    for (n, (replayed, s)) in replay.sessions.iter().zip(&report.sessions).enumerate() {
        let facts = SessionFacts::new(source, n, replayed, s);
        let [sessions, modules, calls, anomalies, reasons] = &mut tables;
        sessions.push(&facts.key, session_row(&facts, replayed, s, damaged));
        for m in &s.modules {
            modules.push(&facts.key, module_row(&facts, m));
            call_rows(calls, &facts, m);
            reason_rows(reasons, &facts, m);
        }
        anomaly_rows(anomalies, &facts, s);
    }
    tables
}

/// A session's key, source and clock.
struct SessionFacts<'a> {
    key: SessionKey,
    source: &'a str,
    clock: Option<WallClock>,
}

impl<'a> SessionFacts<'a> {
    fn new(source: &'a str, n: usize, r: &ReplayedSession, s: &SessionReport) -> Self {
        let session = match &r.start {
            Some(st) => format!("{}:{}", st.boot_id, st.started_ns),
            None => format!("{source}#{}", n + 1),
        };
        Self {
            key: SessionKey {
                host: s.hostname.clone(),
                boot_id: s.boot_id.clone(),
                kernel_release: s.kernel_release.clone(),
                session,
            },
            source,
            clock: r
                .start
                .as_ref()
                .map(|st| WallClock::from_epoch_at_boot_ns(st.epoch_at_boot_ns)),
        }
    }

    /// A boot-clock time as epoch nanoseconds, when the clock is known.
    fn at(&self, boot_ns: Option<u64>) -> Value {
        match (self.clock, boot_ns) {
            (Some(c), Some(ns)) => {
                Value::Time((c.epoch_at_boot_ns().saturating_add(ns)).min(i64::MAX as u64) as i64)
            }
            _ => Value::Null,
        }
    }
}

fn session_row(
    f: &SessionFacts,
    r: &ReplayedSession,
    s: &SessionReport,
    damaged: u64,
) -> Vec<Value> {
    let st = &s.stats;
    let total = s
        .modules
        .iter()
        .fold(0u64, |t, m| t.saturating_add(m.total_calls));
    vec![
        f.source.into(),
        s.tool_version.as_str().into(),
        f.at(r.start.as_ref().map(|st| st.started_ns)),
        f.at(Some(r.last_ns)),
        s.end_reason.into(),
        s.seconds.into(),
        s.attach_type.as_str().into(),
        s.probed_functions.into(),
        s.capped.len().into(),
        s.not_attached.len().into(),
        st.lost_events.into(),
        st.read_errors.into(),
        st.registry_full.into(),
        st.page_map_full.into(),
        st.call_map_full.into(),
        st.decode_errors.into(),
        st.skipped_runs.into(),
        s.modules.len().into(),
        total.into(),
        damaged.into(),
    ]
}

fn module_row(f: &SessionFacts, m: &ModuleReport) -> Vec<Value> {
    let v = m.verdict.as_ref();
    let anomalous = m
        .anomalies
        .iter()
        .fold(0u64, |t, a| t.saturating_add(a.count));
    vec![
        m.name.as_str().into(),
        m.incarnation.into(),
        m.preexisting.into(),
        f.at(m.loaded_ktime_ns),
        f.at(m.unloaded_ktime_ns),
        m.taints.as_str().into(),
        m.init_counted.into(),
        m.total_calls.into(),
        v.map(|v| v.verdict).into(),
        m.runtime_verdict.into(),
        v.map(|v| v.kernel_would_refuse).into(),
        v.map(|v| v.file.as_str()).into(),
        anomalous.into(),
        m.unused_imports.as_ref().map(Vec::len).into(),
        m.tail_called.len().into(),
    ]
}

fn call_rows(t: &mut Table, f: &SessionFacts, m: &ModuleReport) {
    for c in &m.calls {
        t.push(
            &f.key,
            vec![
                m.name.as_str().into(),
                m.incarnation.into(),
                c.symbol.as_str().into(),
                c.count.into(),
                f.at(c.first_use_ktime_ns),
                c.first_caller.as_deref().into(),
            ],
        );
    }
}

fn reason_rows(t: &mut Table, f: &SessionFacts, m: &ModuleReport) {
    let Some(v) = &m.verdict else { return };
    for r in &v.reasons {
        t.push(
            &f.key,
            vec![
                m.name.as_str().into(),
                m.incarnation.into(),
                v.file.as_str().into(),
                r.code.as_str().into(),
                r.severity.into(),
                r.symbol.as_deref().into(),
                r.config.as_deref().into(),
                r.message.as_str().into(),
            ],
        );
    }
}

/// Each module's anomalies, then those caught while an image was loading
/// (no incarnation yet: `incarnation` is null).
fn anomaly_rows(t: &mut Table, f: &SessionFacts, s: &SessionReport) {
    let per_module = s
        .modules
        .iter()
        .flat_map(|m| m.anomalies.iter().map(|a| (Some(a.incarnation), a)));
    let at_load = s.load_anomalies.iter().map(|a| (None, a));
    for (incarnation, a) in per_module.chain(at_load) {
        t.push(
            &f.key,
            vec![
                a.module.as_str().into(),
                incarnation.into(),
                a.detector.as_str().into(),
                a.option.as_str().into(),
                a.symbol.as_str().into(),
                a.caller.as_str().into(),
                a.caller_offset.as_str().into(),
                a.object.as_str().into(),
                a.expected.as_str().into(),
                a.observed.as_str().into(),
                a.count.into(),
                f.at(Some(a.ktime_ns)),
                a.message.as_str().into(),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::samples;

    fn trace_of(records: Vec<crate::trace::TraceRecord>) -> Trace {
        Trace {
            records: records.into_iter().map(|r| (0, r)).collect(),
            damage: vec![],
        }
    }

    fn column<'a>(t: &'a Table, name: &str) -> Vec<&'a Value> {
        let i = t.schema.iter().position(|(n, _)| *n == name).unwrap();
        t.rows.iter().map(|r| &r[i]).collect()
    }

    #[test]
    fn every_row_carries_the_session_key_and_totals_match_the_report() {
        let [sessions, modules, calls, anomalies, reasons] =
            of_trace("lab7.trace", &trace_of(samples::all()));
        let key = Value::Text(format!(
            "{}:{}",
            samples::session().boot_id,
            5_000_000_000u64
        ));
        for t in [&sessions, &modules, &calls, &anomalies, &reasons] {
            assert!(!t.rows.is_empty(), "{}", t.name);
            assert!(t.rows.iter().all(|r| r.len() == t.schema.len()));
            assert!(
                column(t, "session").iter().all(|v| **v == key),
                "{}",
                t.name
            );
            assert!(column(t, "host").iter().all(|v| **v == "lab7".into()));
        }
        assert_eq!(column(&sessions, "total_calls"), [&Value::UInt(1999)]);
        assert_eq!(column(&modules, "total_calls")[0], &Value::UInt(1999));
        let per_call: u64 = column(&calls, "calls")
            .iter()
            .map(|v| match v {
                Value::UInt(n) => *n,
                _ => panic!("{v:?}"),
            })
            .sum();
        assert_eq!(per_call, 1999);
        assert_eq!(column(&reasons, "code")[0], &"CRC_MISMATCH".into());
        assert_eq!(column(&anomalies, "detector")[0], &"spinlock_magic".into());
    }

    #[test]
    fn without_its_header_a_session_has_no_clock_and_a_key_from_its_file() {
        let [sessions, modules, ..] =
            of_trace("cut.trace", &trace_of(samples::all()[1..].to_vec()));
        assert_eq!(column(&sessions, "session"), [&"cut.trace#1".into()]);
        assert_eq!(column(&sessions, "started"), [&Value::Null]);
        assert!(
            column(&modules, "loaded")
                .iter()
                .all(|v| **v == Value::Null)
        );
    }
}
