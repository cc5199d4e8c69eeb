//! A rotating capture through the real sink: every file stands alone, the
//! directory read whole is exact, and `--keep` bounds the files.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use probe_common::{ModuleName, ModuleRecord};

use super::rotation::{Rotation, RotationPolicy};
use super::trace_sink::TraceSink;
use crate::trace::{
    self, TraceRecord,
    records::{EndReason, ModuleOrigin, StatsSnapshot},
    replay::Replay,
    samples,
};

fn record(name: &str, incarnation: u64) -> ModuleRecord {
    let mut r = ModuleRecord::zeroed();
    r.name = ModuleName::from_bytes(name.as_bytes());
    r.load_ns = incarnation;
    r.incarnation = incarnation;
    r
}

fn rotating_sink(dir: &std::path::Path, keep: Option<usize>) -> TraceSink {
    let mut rotation = Rotation::new(RotationPolicy {
        dir: dir.to_owned(),
        max_bytes: Some(4096),
        max_age: None,
        keep,
    });
    let first = rotation.next_path(std::time::SystemTime::now());
    TraceSink::new(Some((&first, false)), None, vec![])
        .unwrap()
        .rotating(rotation)
}

/// 50 snapshots of a long-lived module and one reloaded every 10: enough
/// bytes for several files at 4 KiB.
fn capture(sink: &mut TraceSink) -> BTreeMap<(u64, u64), u64> {
    sink.start(samples::session()).unwrap();
    sink.module(&record("steady", 1), ModuleOrigin::Present, false, None);
    let mut counts = BTreeMap::new();
    let mut churn = 0;
    for tick in 1..=50u64 {
        if tick % 10 == 1 {
            if churn != 0 {
                sink.unload(tick * 1_000, churn);
            }
            churn = 1_000_000 + tick;
            sink.module(&record("churn", churn), ModuleOrigin::Loaded, true, None);
        }
        for f in 0..20u64 {
            *counts.entry((1, 0x1000 + f)).or_default() += tick * f;
            *counts.entry((churn, 0x2000 + f)).or_default() += 1;
        }
        let stats = StatsSnapshot {
            ts_ns: tick * 1_000_000,
            ..StatsSnapshot::default()
        };
        sink.snapshot(tick * 1_000_000, &counts, stats).unwrap();
    }
    sink.end(
        60_000_000,
        &counts,
        StatsSnapshot::default(),
        EndReason::Interrupt,
    )
    .unwrap();
    counts
}

fn files(dir: &std::path::Path) -> Vec<PathBuf> {
    trace::files::in_directory(dir).unwrap()
}

fn read(path: &std::path::Path) -> trace::Trace {
    trace::read_trace(&std::fs::read(path).unwrap()).unwrap()
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modscope-rotate-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn each_file_stands_alone_and_the_directory_is_exact() {
    let dir = tmp("whole");
    let want = capture(&mut rotating_sink(&dir, None));
    let files = files(&dir);
    assert!(files.len() >= 3, "{files:?}");
    let mut all = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let t = read(f);
        assert!(t.damage.is_empty(), "{f:?}");
        assert!(
            matches!(t.records[0].1, TraceRecord::SessionStart(_)),
            "{f:?} starts with the header"
        );
        let last = &t.records.last().unwrap().1;
        let end = if i + 1 == files.len() {
            EndReason::Interrupt
        } else {
            EndReason::Rotated
        };
        assert!(
            matches!(last, TraceRecord::SessionEnd { reason, .. } if *reason == end),
            "{f:?}: {last:?}"
        );
        let alone = Replay::from_records(t.records.iter().map(|(_, r)| r));
        let s = &alone.sessions[0];
        assert!(
            s.modules.iter().any(|m| m.seen.name == "steady"),
            "{f:?} carries the live module"
        );
        assert!(s.counts[&(1, 0x1013)] > 0, "{f:?} carries the totals");
        all.extend(t.records.into_iter().map(|(_, r)| r));
    }
    let whole = Replay::from_records(&all);
    assert_eq!(whole.sessions.len(), 1, "one session across the files");
    let s = &whole.sessions[0];
    assert_eq!(s.end.map(|e| e.1), Some(EndReason::Interrupt));
    let names: Vec<&str> = s.modules.iter().map(|m| m.seen.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "steady").count(),
        1,
        "{names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| **n == "churn").count(),
        5,
        "{names:?}"
    );
    let got: BTreeMap<(u64, u64), u64> = s.counts.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(got, want, "every total exact");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keep_removes_the_oldest_files_and_the_rest_still_read() {
    let dir = tmp("keep");
    let want = capture(&mut rotating_sink(&dir, Some(2)));
    let files = files(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let mut all = Vec::new();
    for f in &files {
        all.extend(read(f).records.into_iter().map(|(_, r)| r));
    }
    let s = &Replay::from_records(&all).sessions[0];
    assert_eq!(
        s.counts[&(1, 0x1013)],
        want[&(1, 0x1013)],
        "totals survive the oldest files"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_ages_out_at_the_first_snapshot_past_its_time() {
    let dir = tmp("age");
    let mut rotation = Rotation::new(RotationPolicy {
        dir: dir.clone(),
        max_bytes: None,
        max_age: Some(Duration::from_millis(30)),
        keep: None,
    });
    let first = rotation.next_path(std::time::SystemTime::now());
    let mut sink = TraceSink::new(Some((&first, false)), None, vec![])
        .unwrap()
        .rotating(rotation);
    sink.start(samples::session()).unwrap();
    let counts = BTreeMap::new();
    sink.snapshot(1, &counts, StatsSnapshot::default()).unwrap();
    assert_eq!(files(&dir).len(), 1);
    std::thread::sleep(Duration::from_millis(40));
    sink.snapshot(2, &counts, StatsSnapshot::default()).unwrap();
    assert_eq!(files(&dir).len(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}
