use super::*;
use crate::trace::records::CountEntry;
use crate::trace::samples;

fn feed() -> (App, ReplayFeed) {
    let app = App::new(Mode::Live { dropped: 0 }, false);
    (app, ReplayFeed::new(samples::story(), "t".into(), (0, 0)))
}

const NO_TIME: Duration = Duration::ZERO;
const BUDGET: Duration = Duration::from_secs(1);

#[test]
fn playing_applies_records_as_the_play_head_reaches_them() {
    let (mut app, mut f) = feed();
    f.pump(&mut app, NO_TIME, BUDGET);
    // The session header and the modules present at the start (time 0).
    assert_eq!(f.position(), 3);
    // 2 s later: rtbad's load and verdict (idle gaps are shortened to 3 s).
    f.pump(&mut app, Duration::from_secs(2), BUDGET);
    assert_eq!(f.position(), 5);
    assert!(app.model.module("rtbad").is_some());
    f.set_speed(1024.0);
    f.pump(&mut app, Duration::from_secs(1), BUDGET);
    assert_eq!(f.position(), samples::story().len());
    let Mode::Replay(s) = &app.mode else {
        panic!("replay mode")
    };
    assert_eq!(s.position, s.total);
    assert_eq!(s.speed, 1024.0);
}

#[test]
fn pause_stops_the_play_head() {
    let (mut app, mut f) = feed();
    f.act(&mut app, Action::TogglePause);
    f.pump(&mut app, Duration::from_secs(100), BUDGET);
    assert_eq!(f.position(), 0);
    f.act(&mut app, Action::TogglePause);
    f.pump(&mut app, Duration::from_millis(1), BUDGET);
    assert_eq!(f.position(), 3);
}

#[test]
fn stepping_forward_and_back_is_one_record_and_rebuilds_the_state() {
    let (mut app, mut f) = feed();
    f.act(&mut app, Action::ToEnd);
    f.pump(&mut app, NO_TIME, BUDGET);
    let n = samples::story().len();
    assert_eq!(f.position(), n);
    assert_eq!(
        app.model.module("rtbad").unwrap().state(app.model.now_ns),
        super::super::module_entry::ModuleState::Unloaded
    );
    // Back over the session end and the unload.
    f.act(&mut app, Action::StepBack);
    f.pump(&mut app, NO_TIME, BUDGET);
    f.act(&mut app, Action::StepBack);
    f.pump(&mut app, NO_TIME, BUDGET);
    assert_eq!(f.position(), n - 2);
    let bad = app.model.module("rtbad").unwrap();
    assert!(
        bad.current().unwrap().unloaded_ns.is_none(),
        "unload undone"
    );
    assert_eq!(bad.calls[&0x10].count, 10_000, "rebuilt, not lost");
    f.act(&mut app, Action::StepForward);
    assert_eq!(f.position(), n - 1);
    assert!(
        app.model
            .module("rtbad")
            .unwrap()
            .current()
            .unwrap()
            .unloaded_ns
            .is_some()
    );
    let Mode::Replay(s) = &app.mode else { panic!() };
    assert!(s.paused, "stepping pauses");
}

#[test]
fn g_goes_to_the_start_and_n_finds_each_mark() {
    let (mut app, mut f) = feed();
    f.act(&mut app, Action::NextMark);
    f.pump(&mut app, NO_TIME, BUDGET);
    // The unsafe verdict on rtbad is the first mark.
    assert_eq!(f.position(), 5);
    assert_eq!(
        app.model.module("rtbad").unwrap().rating(),
        super::super::module_entry::Rating::Unsafe
    );
    f.act(&mut app, Action::NextMark);
    f.pump(&mut app, NO_TIME, BUDGET);
    assert_eq!(f.position(), 6, "the first mutex_lock call");
    assert_eq!(app.model.module("rtbad").unwrap().anomalies.len(), 1);
    f.act(&mut app, Action::NextMark);
    f.pump(&mut app, NO_TIME, BUDGET);
    assert_eq!(
        f.position(),
        samples::story().len(),
        "no more marks: the end"
    );
    f.act(&mut app, Action::ToStart);
    assert_eq!(f.position(), 0);
    assert!(app.model.modules.is_empty());
}

#[test]
fn seeking_far_is_done_in_slices_within_the_budget() {
    let mut records = samples::story();
    let tail = records.split_off(5);
    for i in 0..200_000u64 {
        records.push(TraceRecord::Counts {
            ts_ns: 110_000_000_000 + i,
            entries: vec![CountEntry::new(102_000_000_000, 0x20, i)],
        });
    }
    records.extend(tail);
    let total = records.len();
    let mut app = App::new(Mode::Live { dropped: 0 }, false);
    let mut f = ReplayFeed::new(records, "t".into(), (0, 0));
    f.act(&mut app, Action::ToEnd);
    f.pump(&mut app, NO_TIME, Duration::ZERO);
    assert!(f.position() < total, "one slice per turn with no budget");
    while f.position() < total {
        f.pump(&mut app, NO_TIME, Duration::from_millis(5));
    }
}

#[test]
fn speeds_step_through_the_table_and_stop_at_its_ends() {
    let (mut app, mut f) = feed();
    assert_eq!(f.speed(), 1.0);
    f.act(&mut app, Action::Faster);
    assert_eq!(f.speed(), 2.0);
    for _ in 0..40 {
        f.act(&mut app, Action::Slower);
    }
    assert_eq!(f.speed(), SPEEDS[0]);
    f.set_speed(3.0);
    assert_eq!(f.speed(), 4.0);
}

#[test]
fn the_play_head_stops_at_the_end_and_playing_ends_there() {
    let (mut app, mut f) = feed();
    f.set_speed(4096.0);
    for _ in 0..5 {
        f.pump(&mut app, Duration::from_secs(10), BUDGET);
    }
    let Mode::Replay(s) = &app.mode else {
        panic!("replay mode")
    };
    assert_eq!(s.position, s.total);
    assert_eq!(s.play_ns, s.end_ns, "never past the end");
    assert!(s.paused, "playing ended at the last record");
}

#[test]
fn damage_is_logged_where_it_lies_never_before_the_session() {
    let records = samples::story();
    let first_ts = records[0].ts_ns();
    let (mut app, _) = feed();
    let mut f = ReplayFeed::new(records, "t".into(), (2, 70)).with_damage(vec![
        (0, "before everything".into()),
        (4, "after the fourth record".into()),
    ]);
    f.pump(&mut app, NO_TIME, BUDGET);
    let damage: Vec<_> = app
        .model
        .log
        .iter()
        .filter(|e| e.kind == super::super::model::LogKind::Damage)
        .collect();
    assert_eq!(damage.len(), 1, "only the one the play head passed");
    assert!(damage[0].ts_ns >= first_ts);
    f.act_to_end(&mut app);
    let notes = app
        .model
        .log
        .iter()
        .filter(|e| e.kind == super::super::model::LogKind::Damage)
        .count();
    assert_eq!(notes, 2);
}
