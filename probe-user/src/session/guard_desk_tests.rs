use super::*;
use crate::trace::samples;
use probe_common::{EventHeader, EventKind, ModuleName, guard::Stage as S};

fn key(ino: u64, ctime: i64) -> FileKey {
    FileKey {
        dev: 0x0080_0001,
        ino,
        ctime_sec: ctime,
        ctime_nsec: 5,
    }
}

fn checked(path: &str, key: Option<FileKey>, judgement: Judgement) -> CheckedFile {
    CheckedFile {
        path: path.into(),
        key,
        module: "modscope_hello".into(),
        judgement,
        reasons: samples::verdict(0).reasons,
        error: None,
    }
}

fn event(stage: S, key: FileKey, decision: Decision, judgement: Judgement) -> GuardEvent {
    let mut comm = [0u8; 16];
    comm[..6].copy_from_slice(b"insmod");
    GuardEvent {
        header: EventHeader {
            kind: EventKind::Guard as u32,
            cpu: 0,
            ts_ns: 77,
        },
        pid_tgid: (812u64 << 32) | 812,
        stage: stage as u32,
        decision: decision as u32,
        judgement: judgement as u32,
        policy: Policy::DenyIncompatible as u32,
        key,
        module_size: 0,
        kernel_size: 0,
        name: ModuleName::EMPTY,
        comm,
    }
}

#[test]
fn a_changed_file_replaces_its_old_identity_in_the_map() {
    let mut desk = GuardDesk::new(Policy::DenyIncompatible);
    let first = desk.accept(checked("/m.ko", Some(key(1, 100)), Judgement::Compatible));
    assert_eq!(
        first,
        MapChange {
            forget: None,
            judge: Some((key(1, 100), Judgement::Compatible))
        }
    );
    let again = desk.accept(checked("/m.ko", Some(key(1, 200)), Judgement::Incompatible));
    assert_eq!(
        again,
        MapChange {
            forget: Some(key(1, 100)),
            judge: Some((key(1, 200), Judgement::Incompatible))
        }
    );
    // The same identity checked twice keeps its entry.
    let same = desk.accept(checked("/m.ko", Some(key(1, 200)), Judgement::Incompatible));
    assert_eq!(same.forget, None);
    assert_eq!(desk.checked_files(), 1);
    assert_eq!(
        desk.forget(std::path::Path::new("/m.ko")),
        Some(key(1, 200))
    );
    assert_eq!(desk.checked_files(), 0);
}

#[test]
fn a_file_without_a_verdict_is_left_unchecked_in_the_map() {
    let mut desk = GuardDesk::new(Policy::DenyUnchecked);
    let change = desk.accept(checked("/x.ko", Some(key(2, 1)), Judgement::Unchecked));
    assert_eq!(change, MapChange::default());
}

#[test]
fn a_refusal_names_the_checked_file_and_its_reasons() {
    let mut desk = GuardDesk::new(Policy::DenyIncompatible);
    desk.accept(checked(
        "/tmp/m.ko",
        Some(key(1, 100)),
        Judgement::Incompatible,
    ));
    let r = desk.record(&event(
        S::File,
        key(1, 100),
        Decision::Refused,
        Judgement::Incompatible,
    ));
    assert_eq!(r.file, "/tmp/m.ko");
    assert_eq!(r.module, "modscope_hello");
    assert_eq!(r.reasons, samples::verdict(0).reasons);
    assert_eq!((r.pid, r.comm.as_str()), (812, "insmod"));
    assert_eq!(r.decision, Decision::Refused);
}

#[test]
fn a_file_changed_since_its_check_is_named_without_the_old_reasons() {
    let mut desk = GuardDesk::new(Policy::DenyUnchecked);
    desk.accept(checked(
        "/tmp/m.ko",
        Some(key(1, 100)),
        Judgement::Compatible,
    ));
    let r = desk.record(&event(
        S::File,
        key(1, 300),
        Decision::Refused,
        Judgement::Unchecked,
    ));
    assert_eq!(r.file, "/tmp/m.ko");
    assert!(r.reasons.is_empty());
    assert_eq!(r.module, "", "the image was not read at this stage");
}

#[test]
fn an_image_finding_takes_the_name_from_the_image() {
    let desk = GuardDesk::new(Policy::DenyIncompatible);
    let mut e = event(
        S::Image,
        FileKey::default(),
        Decision::Refused,
        Judgement::ForeignStructModule,
    );
    e.name = ModuleName::from_bytes(b"modscope_mutex");
    e.module_size = 1344;
    e.kernel_size = 1280;
    let r = desk.record(&e);
    assert_eq!(r.module, "modscope_mutex");
    assert_eq!(r.file, "");
    assert_eq!((r.module_size, r.kernel_size), (1344, 1280));
}
