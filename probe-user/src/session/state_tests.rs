use probe_common::{CallKey, EventHeader, EventKind, ModuleName};

use super::*;
use crate::kernel::kallsyms::KernelFunction;

const CORE: u64 = 0xffff_ffff_c0a5_e000;
const INIT: u64 = 0xffff_ffff_c0a6_4000;
const KSTRDUP: u64 = 0xffff_ffff_8100_0200;

fn record(name: &str, incarnation: u64, load_ns: u64) -> ModuleRecord {
    let mut r = ModuleRecord::zeroed();
    r.name = ModuleName::from_bytes(name.as_bytes());
    r.taints = 1 << 12;
    r.core_text_base = CORE;
    r.core_text_size = 0x2000;
    r.init_text_base = INIT;
    r.init_text_size = 0x200;
    r.load_ns = load_ns;
    r.incarnation = incarnation;
    r
}

fn state(ready_ns: u64) -> SessionState {
    let imports = [(
        "watched".to_owned(),
        modscope_analysis::Imports::of_symbols(["kstrdup".to_owned()]),
    )]
    .into();
    SessionState::new(
        WallClock::from_epoch_at_boot_ns(0),
        ready_ns,
        FunctionNames::new([KernelFunction::new("kstrdup", KSTRDUP)]),
        imports,
    )
}

fn header(ts_ns: u64, kind: EventKind) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        cpu: 0,
        ts_ns,
    }
}

#[test]
fn init_is_counted_only_for_a_watched_module_loaded_after_the_probes() {
    let mut s = state(100);
    assert!(s.track(&record("watched", 200, 200), true));
    // Loaded before the probes were ready.
    assert!(!s.track(&record("watched", 50, 50), true));
    // Present before the session.
    assert!(!s.track(&record("watched", 1, 0), false));
    // Imports unknown.
    assert!(!s.track(&record("other", 300, 300), true));
}

#[test]
fn a_first_use_names_the_module_the_function_and_the_call_site() {
    let mut s = state(0);
    s.track(&record("watched", 7, 10), true);
    let e = FirstUseEvent {
        header: header(20, EventKind::FirstUse),
        key: CallKey {
            incarnation: 7,
            func_ip: KSTRDUP,
        },
        caller: INIT + 0x17,
    };
    match s.first_use(&e) {
        Event::FirstUse {
            module,
            symbol,
            caller_offset,
            ktime_ns,
            ..
        } => {
            assert_eq!(module, "watched");
            assert_eq!(symbol, "kstrdup");
            assert_eq!(caller_offset.as_deref(), Some("init+0x17"));
            assert_eq!(ktime_ns, 20);
        }
        other => panic!("{other:?}"),
    }
    // An unknown function is its address; an unknown incarnation has no site.
    let unknown = FirstUseEvent {
        key: CallKey {
            incarnation: 99,
            func_ip: 0x1234,
        },
        ..e
    };
    match s.first_use(&unknown) {
        Event::FirstUse {
            module,
            symbol,
            caller_offset,
            ..
        } => {
            assert_eq!(
                (module.as_str(), symbol.as_str()),
                ("", "0x0000000000001234")
            );
            assert_eq!(caller_offset, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn exact_counts_per_incarnation_reach_the_call_report_with_unload_times() {
    let mut s = state(0);
    let first = record("watched", 10, 10);
    s.track(&first, true);
    s.unloaded(&first, 40);
    s.track(&record("watched", 50, 50), true);
    let counts = [((10, KSTRDUP), 3), ((50, KSTRDUP), 1250)].into();
    let first_uses = [((50, KSTRDUP), 55)].into();
    let probed = ["kstrdup".to_owned(), "kfree".to_owned()].into();
    let report = s.call_report(&counts, &first_uses, &probed);
    assert_eq!(report.len(), 2);
    assert_eq!(report[0].unloaded_ktime_ns, Some(40));
    assert_eq!(report[0].calls[0].count, 3);
    assert_eq!(report[1].unloaded_ktime_ns, None);
    assert_eq!(report[1].calls[0].count, 1250);
    assert_eq!(report[1].calls[0].first_use_ktime_ns, Some(55));
    assert!(report[1].init_counted);
}

#[test]
fn imports_learnt_at_load_reach_the_newest_incarnation_and_name_its_functions() {
    let mut s = state(0);
    s.track(&record("late", 10, 10), true);
    assert!(!s.knows_imports("late"));
    s.learn_imports(
        "late".into(),
        modscope_analysis::Imports::of_symbols(["msleep".to_owned()]),
        &[KernelFunction::new("msleep", 0xffff_ffff_8100_0300)],
    );
    assert!(s.knows_imports("late"));
    let counts = [((10, 0xffff_ffff_8100_0300), 2)].into();
    let probed = ["msleep".to_owned()].into();
    let report = s.call_report(&counts, &Default::default(), &probed);
    assert_eq!(report[0].calls[0].symbol, "msleep");
    // Its init ran before the probes: not counted.
    assert!(!report[0].init_counted);
}

#[test]
fn an_anomaly_is_one_record_per_site_and_its_count_is_updated_only_when_it_changes() {
    let mut s = state(0);
    s.track(&record("watched", 7, 10), true);
    let e = super::super::anomaly_sites::tests::spinlock_anomaly(7, CORE + 0x40, KSTRDUP);
    let (record, event) = s.anomaly(&e, "");
    assert_eq!(record.module, "watched");
    assert_eq!(record.site, "core+0x40");
    assert_eq!(record.detector, "spinlock_magic");
    assert!(matches!(event, Event::Anomaly { .. }));
    let counts = [(e.key, 5)].into();
    assert_eq!(s.anomaly_updates(&counts)[0].count, 5);
    assert!(s.anomaly_updates(&counts).is_empty());
    assert_eq!(s.all_anomalies().len(), 1);
}

#[test]
fn decode_errors_are_counted() {
    let mut s = state(0);
    s.decode_error("short record".into());
    assert!(matches!(
        s.decode_error("x".into()),
        Event::DecodeError { .. }
    ));
    assert_eq!(s.decode_errors(), 2);
}

#[test]
fn only_text_past_the_kernel_loop_is_left_to_userspace() {
    let four_mib = MAX_TEXT_PAGES << 12;
    let base = 0xffff_ffff_c000_0800;
    let beyond = |base, size| beyond_kernel_registration(base, size, 12);
    assert_eq!(beyond(base, 0x1000), None);
    // Pages from base's page: exactly 4 MiB of pages are covered.
    assert_eq!(beyond(base, four_mib - 0x800), None);
    assert_eq!(
        beyond(base, four_mib),
        Some((0xffff_ffff_c000_0000 + four_mib, 0x800))
    );
    assert_eq!(beyond(0, four_mib * 2), None);
    assert_eq!(beyond(u64::MAX - 10, four_mib), None);
    let mut big = record("big", 3, 3);
    big.core_text_size = four_mib + 0x1000;
    let tails = large_text(&big, 12);
    assert_eq!(tails.len(), 1);
    assert_eq!(tails[0].incarnation, 3);
    // With 64 KiB pages the kernel's loop covers 64 MiB.
    assert!(large_text(&big, 16).is_empty());
}
