use super::*;
use crate::trace::records::CountEntry;
use crate::trace::samples;
use crate::tui::module_entry::ModuleState;

fn story_model() -> Model {
    let mut m = Model::default();
    for r in samples::story() {
        m.apply(&r);
    }
    m
}

#[test]
fn the_story_folds_into_two_modules_with_exact_counts() {
    let m = story_model();
    assert_eq!(m.sessions, 1);
    assert_eq!(
        m.session.as_ref().unwrap().kernel_release,
        "6.1.0-56-rt-amd64"
    );
    let bad = m.module("rtbad").unwrap();
    assert_eq!(bad.rating(), Rating::Unsafe);
    assert_eq!(bad.state(m.now_ns), ModuleState::Unloaded);
    assert_eq!(bad.taints(), "FOE", "forced, out of tree, unsigned");
    assert_eq!(bad.calls[&0x10].count, 10_000);
    assert_eq!(bad.calls[&0x20].count, 80);
    assert_eq!(bad.calls[&0x10].first_caller.as_deref(), Some("init+0x10"));
    assert_eq!(bad.calls[&0x20].first_caller.as_deref(), Some("core+0x44"));
    assert_eq!(bad.incarnations[0].calls, 10_080);
    assert_eq!(bad.used(), 2);
    assert_eq!(bad.imported(), Some(3));
    let ext4 = m.module("ext4").unwrap();
    assert_eq!(ext4.rating(), Rating::Compatible);
    assert_eq!(ext4.state(m.now_ns), ModuleState::Live);
    assert_eq!(ext4.current().unwrap().loaded_ns, None);
    assert_eq!(m.ended, Some(EndReason::Interrupt));
}

#[test]
fn a_call_to_a_flagged_symbol_is_an_anomaly_and_a_mark() {
    let mut m = Model::default();
    let mut marks = Vec::new();
    for r in samples::story() {
        if m.apply(&r).mark {
            marks.push(r);
        }
    }
    // The unsafe verdict, then the first mutex_lock call.
    assert_eq!(marks.len(), 2, "{marks:?}");
    assert!(matches!(marks[0], TraceRecord::Verdict(_)));
    assert!(matches!(
        marks[1],
        TraceRecord::FirstUse { func_ip: 0x10, .. }
    ));
    let bad = m.module("rtbad").unwrap();
    assert_eq!(bad.anomalies.len(), 1);
    assert_eq!(bad.anomalies[0].symbol, "mutex_lock");
    assert_eq!(bad.anomalies[0].code, "CRC_MISMATCH");
    assert!(
        m.log
            .iter()
            .any(|l| l.kind == LogKind::Anomaly && l.text.contains("mutex_lock"))
    );
    // kfree is not flagged: no anomaly for it.
    assert!(!bad.anomalies.iter().any(|a| a.symbol == "kfree"));
}

#[test]
fn a_detector_site_is_logged_and_marked_once_and_its_count_follows() {
    let mut m = Model::default();
    let story = samples::story();
    // Up to rtbad's verdict (module, verdict records), then its anomaly.
    for r in &story[..5] {
        m.apply(r);
    }
    let inc = match &story[3] {
        TraceRecord::Module(s) => s.incarnation,
        other => panic!("story changed: {other:?}"),
    };
    let first = AnomalyRecord {
        message: "bad magic\x1b[2J".into(),
        ..samples::anomaly(inc, 1)
    };
    assert!(m.apply(&TraceRecord::Anomaly(Box::new(first.clone()))).mark);
    let later = AnomalyRecord {
        count: 4000,
        ..first.clone()
    };
    assert!(!m.apply(&TraceRecord::Anomaly(Box::new(later))).mark);
    let bad = m.module("rtbad").unwrap();
    assert_eq!(bad.detected.len(), 1);
    assert_eq!(bad.detected[0].count, 4000);
    assert_eq!(bad.anomaly_count(), 1);
    assert_eq!(bad.rating(), Rating::Unsafe);
    assert!(!bad.detected[0].message.contains('\x1b'), "sanitised");
    let logged: Vec<_> = m
        .log
        .iter()
        .filter(|l| l.kind == LogKind::Anomaly && l.text.contains("spinlock_magic"))
        .collect();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0].text.contains("core+0x123"));
}

#[test]
fn rates_follow_the_ticks_and_go_stale() {
    let mut m = Model::default();
    let story = samples::story();
    // Up to the fifth counts record (1000 mutex_lock + 10 kfree per second).
    let mut counts = 0;
    for r in &story {
        m.apply(r);
        if matches!(r, TraceRecord::Counts { .. }) {
            counts += 1;
            if counts == 5 {
                break;
            }
        }
    }
    let bad = m.module("rtbad").unwrap();
    assert_eq!(bad.rate(m.now_ns), 1010.0);
    assert_eq!(bad.spark.len(), 5);
    assert_eq!(bad.spark.back(), Some(&1010));
    let later = m.now_ns + 3_000_000_000;
    assert_eq!(bad.rate(later), 0.0, "no counts for 3 s: stale");
}

#[test]
fn hostile_names_are_sanitised_on_the_way_in() {
    let mut m = Model::default();
    m.apply(&TraceRecord::Module(Box::new(samples::module(
        "evil\x1b[2J",
        5,
    ))));
    assert_eq!(m.modules[0].name, "evil\u{fffd}[2J");
    assert!(m.log.iter().all(|l| !l.text.contains('\x1b')));
}

#[test]
fn a_new_session_starts_the_modules_over_and_keeps_the_log() {
    let mut m = story_model();
    let log = m.log.len();
    m.apply(&TraceRecord::SessionStart(Box::new(samples::session())));
    assert!(m.modules.is_empty());
    assert_eq!(m.sessions, 2);
    assert_eq!(m.log.len(), log + 1);
    assert_eq!(m.ended, None);
}

#[test]
fn the_log_is_bounded_and_counts_what_it_dropped() {
    let mut m = Model::default();
    for i in 0..(LOG_CAPACITY as u64 + 10) {
        m.apply(&TraceRecord::Module(Box::new(samples::module("m", i + 1))));
    }
    assert_eq!(m.log.len(), LOG_CAPACITY);
    assert_eq!(m.log_dropped, 10);
    assert_eq!(m.module("m").unwrap().incarnations.len(), LOG_CAPACITY + 10);
}

#[test]
fn reloads_keep_history_and_count_each_incarnation_apart() {
    let mut m = Model::default();
    m.apply(&TraceRecord::Module(Box::new(samples::module("m", 10))));
    m.apply(&TraceRecord::Counts {
        ts_ns: 11,
        entries: vec![CountEntry::new(10, 0x100, 7)],
    });
    m.apply(&TraceRecord::Unload {
        ts_ns: 12,
        incarnation: 10,
    });
    m.apply(&TraceRecord::Module(Box::new(samples::module("m", 20))));
    // A late total for the old incarnation does not land on the new one.
    m.apply(&TraceRecord::Counts {
        ts_ns: 21,
        entries: vec![CountEntry::new(10, 0x100, 9), CountEntry::new(20, 0x100, 2)],
    });
    let e = m.module("m").unwrap();
    assert_eq!(e.incarnations.len(), 2);
    assert_eq!(e.incarnations[0].calls, 7);
    assert_eq!(e.total_calls(), 2);
    assert_eq!(e.state(m.now_ns), ModuleState::Loading);
}

#[test]
fn a_detector_raises_a_compatible_modules_rating() {
    let mut m = Model::default();
    let story = samples::story();
    // ext4: present, verdict compatible.
    for r in &story[..3] {
        m.apply(r);
    }
    assert_eq!(m.module("ext4").unwrap().rating(), Rating::Compatible);
    let tracepoint = AnomalyRecord {
        module: "ext4".into(),
        detector: "tracepoint_probe".into(),
        ..samples::anomaly(1, 1)
    };
    m.apply(&TraceRecord::Anomaly(Box::new(tracepoint)));
    assert_eq!(m.module("ext4").unwrap().rating(), Rating::Warning);
    let lock = AnomalyRecord {
        module: "ext4".into(),
        caller: 0xffff_ffff_c000_0999,
        ..samples::anomaly(1, 1)
    };
    m.apply(&TraceRecord::Anomaly(Box::new(lock)));
    assert_eq!(m.module("ext4").unwrap().rating(), Rating::Unsafe);
}

#[test]
fn an_unloaded_module_shows_no_rate_and_totals_saturate() {
    let m = story_model();
    let bad = m.module("rtbad").unwrap();
    assert_eq!(bad.state(m.now_ns), ModuleState::Unloaded);
    assert_eq!(bad.rate(m.now_ns), 0.0, "gone: no calls per second");
    // Two counters near the top of u64 (a damaged or hostile trace).
    let mut m = Model::default();
    let story = samples::story();
    for r in &story[..5] {
        m.apply(r);
    }
    let inc = m.module("rtbad").unwrap().current().unwrap().id;
    m.apply(&TraceRecord::Counts {
        ts_ns: story[4].ts_ns() + 1,
        entries: vec![
            CountEntry {
                incarnation: inc,
                func_ip: 0x10,
                calls: u64::MAX - 1,
            },
            CountEntry {
                incarnation: inc,
                func_ip: 0x20,
                calls: u64::MAX - 1,
            },
        ],
    });
    assert_eq!(m.module("rtbad").unwrap().total_calls(), u64::MAX);
}

#[test]
fn a_hidden_module_is_unsafe_and_unowned_calls_log_once_per_site() {
    let mut m = story_model();
    let hidden = AnomalyRecord {
        incarnation: 1,
        module: "ext4".into(),
        detector: explain::HIDDEN_MODULE.into(),
        symbol: String::new(),
        func_ip: 0,
        caller: 0,
        site: "listed by /sys/module; missing from /proc/modules".into(),
        ..samples::anomaly(1, 1)
    };
    assert!(m.apply(&TraceRecord::Anomaly(Box::new(hidden))).mark);
    assert_eq!(m.module("ext4").unwrap().rating(), Rating::Unsafe);
    let unowned = |count| AnomalyRecord {
        incarnation: 0,
        module: String::new(),
        detector: explain::UNOWNED_CODE.into(),
        symbol: "get_random_u32".into(),
        site: "0xffffffffc0a5e010".into(),
        ..samples::anomaly(0, count)
    };
    let logged = m.log.len();
    assert!(m.apply(&TraceRecord::Anomaly(Box::new(unowned(5)))).mark);
    assert!(!m.apply(&TraceRecord::Anomaly(Box::new(unowned(9)))).mark);
    assert_eq!(
        m.log.len(),
        logged + 1,
        "a site's newer count is not a new line"
    );
    let line = &m.log.back().unwrap().text;
    assert!(
        line.starts_with(
            "unknown module: unowned_module_code at 0xffffffffc0a5e010 calling get_random_u32"
        ),
        "{line}"
    );
    assert_eq!(m.unowned[0].count, 9);
}

#[test]
fn skipped_probe_runs_are_logged_by_what_each_snapshot_adds() {
    let mut m = story_model();
    let logged = m.log.len();
    let snapshot = |ts_ns, skipped_runs| {
        TraceRecord::Stats(StatsSnapshot {
            ts_ns,
            counters: Stats {
                skipped_runs,
                ..m.stats
            },
        })
    };
    let (first, same, more) = (snapshot(9, 40), snapshot(10, 40), snapshot(11, 45));
    for r in [&first, &same, &more] {
        m.apply(r);
    }
    let lines: Vec<&str> = m.log.iter().skip(logged).map(|l| l.text.as_str()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].contains("skipped 40 probe runs"), "{lines:?}");
    assert!(lines[1].contains("skipped 5 probe runs"), "{lines:?}");
    assert_eq!(m.stats.skipped_runs, 45);
}
