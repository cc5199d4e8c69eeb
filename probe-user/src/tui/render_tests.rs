use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::*;
use crate::trace::{
    TraceRecord,
    records::{Stats, StatsSnapshot},
    samples,
};
use crate::tui::{Key, Mode};

fn app() -> App {
    let mut app = App::new(Mode::Live { dropped: 0 }, false);
    for r in samples::story() {
        app.apply(&r);
    }
    app
}

fn render(app: &App, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| draw(f, app)).unwrap();
    t.backend().buffer().clone()
}

fn text(b: &Buffer) -> Vec<String> {
    (0..b.area.height)
        .map(|y| (0..b.area.width).map(|x| b[(x, y)].symbol()).collect())
        .collect()
}

fn screen(app: &App, w: u16, h: u16) -> String {
    text(&render(app, w, h)).join("\n")
}

#[test]
fn an_80_by_24_screen_shows_header_table_detail_log_and_footer() {
    let s = screen(&app(), 80, 24);
    let lines: Vec<&str> = s.lines().collect();
    assert!(
        lines[0].contains("modscope live · 6.1.0-56-rt-amd64 · lab7"),
        "{s}"
    );
    assert!(lines[1].contains("PREEMPT_RT=y"), "{s}");
    assert!(lines[2].contains("spinlock (PREEMPT_RT)"), "{s}");
    assert!(
        lines[3].contains("lost 0 · 3 functions by kprobe, 1 refused, 1 capped"),
        "{s}"
    );
    assert!(s.contains("verdict"), "{s}");
    assert!(s.contains("✖ unsafe"), "{s}");
    assert!(s.contains("✔ compatible"), "{s}");
    // Unsafe first, selected, with its anomaly count.
    let rtbad = lines
        .iter()
        .position(|l| l.contains("rtbad") && l.contains("unsafe"))
        .unwrap();
    let ext4 = lines
        .iter()
        .position(|l| l.contains("ext4") && l.contains("compatible"))
        .unwrap();
    assert!(rtbad < ext4);
    assert!(
        lines[rtbad].contains("unloaded")
            && lines[rtbad].contains("FOE")
            && lines[rtbad].contains("! 1"),
        "{}",
        lines[rtbad]
    );
    assert!(lines[rtbad].contains("2/3"), "{}", lines[rtbad]);
    assert!(s.contains("Static reasons"), "{s}");
    assert!(s.contains("Events"), "{s}");
    assert!(lines[23].contains("q quit"), "{s}");
    assert_eq!(lines.len(), 24);
}

#[test]
fn skipped_probe_runs_show_in_the_status_line_once_there_are_any() {
    let mut a = app();
    let status = |a: &App| screen(a, 80, 24).lines().nth(3).unwrap().to_owned();
    assert!(!status(&a).contains("skipped"), "{}", status(&a));
    a.apply(&TraceRecord::Stats(StatsSnapshot {
        ts_ns: 9_000_000_000,
        counters: Stats {
            skipped_runs: 12,
            ..a.model.stats
        },
    }));
    assert!(
        status(&a).contains("lost 0 · skipped 12 · 3 functions by kprobe"),
        "{}",
        status(&a)
    );
}

#[test]
fn the_zoomed_detail_explains_each_reason_and_the_runtime_evidence() {
    let mut a = app();
    a.on_key(Key::Enter);
    let s = screen(&a, 120, 40);
    assert!(s.contains("plain insmod refuses it"), "{s}");
    assert!(s.contains("✖ CRC_MISMATCH mutex_lock"), "{s}");
    assert!(
        s.contains("why it matters: mutex_lock was built here from a different definition"),
        "{s}"
    );
    assert!(s.contains("(this kernel: CONFIG_PREEMPT_RT=y)"), "{s}");
    assert!(
        s.contains("called mutex_lock 10,000 times although CRC_MISMATCH flags it"),
        "{s}"
    );
    assert!(!s.contains("called kfree"), "kfree takes no lock: {s}");
    assert!(
        s.contains("first called mutex_lock (CRC_MISMATCH) from init+0x10"),
        "{s}"
    );
    assert!(
        s.contains("mutex_lock                     10,000  first"),
        "{s}"
    );
    assert!(s.contains("#1 loaded"), "{s}");
    assert!(s.contains("after 10,080 calls"), "{s}");
}

#[test]
fn help_overlay_lists_the_keys() {
    let mut a = app();
    a.on_key(Key::Char('?'));
    let s = screen(&a, 80, 24);
    assert!(s.contains("Keys (any key closes)"), "{s}");
    assert!(s.contains("filter modules by name or verdict"), "{s}");
}

#[test]
fn no_color_draws_no_colour_and_keeps_the_words() {
    let mut a = app();
    a.no_color = true;
    let b = render(&a, 80, 24);
    for c in b.content() {
        assert_eq!(c.fg, ratatui::style::Color::Reset, "{:?}", c);
        assert_eq!(c.bg, ratatui::style::Color::Reset, "{:?}", c);
    }
    let s = text(&b).join("\n");
    assert!(s.contains("✖ unsafe"), "{s}");
    // With colour, the verdict is red.
    let b = render(&app(), 80, 24);
    assert!(
        b.content()
            .iter()
            .any(|c| c.fg == ratatui::style::Color::Red)
    );
}

#[test]
fn escape_sequences_in_names_never_reach_the_screen() {
    let mut a = app();
    a.apply(&TraceRecord::Module(Box::new(samples::module(
        "x\x1b]0;pwned\x07",
        7,
    ))));
    let b = render(&a, 100, 30);
    assert!(
        b.content()
            .iter()
            .all(|c| !c.symbol().contains('\x1b') && !c.symbol().contains('\x07'))
    );
    assert!(text(&b).join("\n").contains("x\u{fffd}]0;pwned\u{fffd}"));
}

#[test]
fn small_and_resized_terminals_still_draw() {
    for (w, h) in [(80, 24), (40, 12), (200, 60), (10, 5)] {
        let _ = render(&app(), w, h);
    }
}

#[test]
fn the_replay_header_shows_position_speed_and_damage() {
    let mut a = app();
    a.mode = Mode::Replay(super::super::app::ReplayStatus {
        file: "/tmp/t.trace".into(),
        position: 7,
        total: 20,
        play_ns: 105_500_000_000,
        start_ns: 100_000_000_000,
        end_ns: 114_000_000_000,
        paused: true,
        speed: 4.0,
        damaged: (1, 35),
    });
    let s = screen(&a, 140, 24);
    assert!(s.contains("replay /tmp/t.trace"), "{s}");
    assert!(
        s.contains("⏸ paused ×4 5.5/14.0 s · record 7/20 · damaged"),
        "{s}"
    );
    assert!(s.contains("damaged: 1 stretches, 35 B skipped"), "{s}");
    assert!(s.contains("space pause"), "{s}");
}

#[test]
fn sparklines_scale_to_the_largest_sample() {
    assert_eq!(sparkline([0, 1, 2, 4].into_iter(), 6), "   ▃▅█");
    assert_eq!(sparkline([5, 5].into_iter(), 2), "██");
    assert_eq!(sparkline(std::iter::empty(), 3), "   ");
    assert_eq!(sparkline((0..50).map(|_| 1), 4), "████");
}

#[test]
fn a_detector_anomaly_shows_in_the_detail_and_the_table() {
    let mut story = samples::story();
    let inc = match &story[3] {
        TraceRecord::Module(m) => m.incarnation,
        other => panic!("story changed: {other:?}"),
    };
    let unload = story
        .iter()
        .position(|r| matches!(r, TraceRecord::Unload { .. }))
        .unwrap();
    let anomaly = crate::trace::records::AnomalyRecord {
        module: "rtbad".into(),
        count: 4000,
        ..samples::anomaly(inc, 4000)
    };
    story.insert(unload, TraceRecord::Anomaly(Box::new(anomaly)));
    let mut a = App::new(Mode::Live { dropped: 0 }, false);
    for r in &story {
        a.apply(r);
    }
    let table = screen(&a, 120, 40);
    let row = table.lines().find(|l| l.contains("rtbad")).unwrap();
    assert!(
        row.contains("! 2"),
        "flagged first call + detector site: {row}"
    );
    a.on_key(Key::Enter);
    let s = screen(&a, 160, 50);
    assert!(
        s.contains("spinlock_magic at core+0x123 calling _raw_spin_lock"),
        "{s}"
    );
    assert!(s.contains("(4000 calls, CONFIG_DEBUG_SPINLOCK)"), "{s}");
}

#[test]
fn a_12_row_terminal_shows_the_table_and_a_tiny_one_says_it_is_too_small() {
    let s = screen(&app(), 80, 12);
    assert!(s.contains("rtbad"), "the table keeps its rows:\n{s}");
    let s = screen(&app(), 80, 8);
    assert!(s.contains("terminal too small (80×8)"), "{s}");
    let s = screen(&app(), 30, 24);
    assert!(s.contains("too small"), "{s}");
}

#[test]
fn a_long_event_is_never_cut_in_the_zoomed_log() {
    let mut a = app();
    let long = format!("start {} end-of-the-line", "x".repeat(150));
    a.model.note(crate::tui::model::LogKind::Damage, long);
    a.view.focus = Pane::Log;
    a.on_key(Key::Enter);
    assert!(a.view.log_zoomed);
    let s = screen(&a, 80, 24);
    assert!(s.contains("end-of-the-line"), "{s}");
    assert!(s.contains("damage start xxx"), "{s}");
    let xs: usize = s.matches('x').count();
    assert!(xs >= 150, "every character shown: {xs}\n{s}");
    // In the split view too, the newest event is whole.
    a.on_key(Key::Esc);
    let s = screen(&a, 100, 30);
    assert!(s.contains("end-of-the-line"), "{s}");
    assert!(!a.view.log_zoomed);
}
