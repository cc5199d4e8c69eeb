//! The TUI under load: a large trace replayed at maximum speed (records
//! applied to the App per second), the time to draw a frame of the final
//! state, and the longest turn of the live loop under a flood (the bound on
//! how long a key waits). Prints figures; never fails on speed.
//! Run with `cargo bench -p probe-user --bench tui_replay` (or `cargo xtask bench --only tui`).

use std::{
    sync::{Arc, atomic::AtomicU64, mpsc},
    time::{Duration, Instant},
};

use modscope::{
    trace::read_trace,
    tui::{App, Mode, live_feed::LiveFeed, render, replay::ReplayFeed, run::Feed},
};
use ratatui::{Terminal, backend::TestBackend};

#[path = "common/synthetic_trace.rs"]
mod synthetic_trace;

const RECORDS: usize = 1_000_000;
const FRAMES: usize = 300;
/// The live loop's budget per turn for applying records (run.rs).
const APPLY_BUDGET: Duration = Duration::from_millis(20);

fn replay_app() -> App {
    App::new(Mode::Live { dropped: 0 }, false)
}

fn frame_times(app: &App, w: u16, h: u16) -> (f64, f64) {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    let mut times: Vec<f64> = (0..FRAMES)
        .map(|_| {
            let start = Instant::now();
            t.draw(|f| render::draw(f, app)).expect("draw");
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[FRAMES / 2], times[FRAMES * 99 / 100])
}

fn main() {
    let data = synthetic_trace::synthetic(RECORDS);
    let trace = read_trace(&data).expect("a trace");
    let records: Vec<_> = trace.records.into_iter().map(|(_, r)| r).collect();
    println!(
        "tui: synthetic trace of {} records ({:.1} MiB), 200 modules, 512 functions",
        records.len(),
        data.len() as f64 / (1 << 20) as f64
    );
    let mut best = f64::MAX;
    let mut app = replay_app();
    for _ in 0..3 {
        app = replay_app();
        let mut feed = ReplayFeed::new(records.clone(), "bench".into(), (0, 0));
        let start = Instant::now();
        feed.act_to_end(&mut app);
        best = best.min(start.elapsed().as_secs_f64());
    }
    println!(
        "tui: replay at maximum speed: {:.3} s, {:.2} M records/s applied to the App (best of 3)",
        best,
        records.len() as f64 / best / 1e6
    );
    for (w, h) in [(80, 24), (200, 60)] {
        let (median, p99) = frame_times(&app, w, h);
        println!(
            "tui: frame render {w}x{h}, {} modules: median {median:.0} µs, p99 {p99:.0} µs ({FRAMES} frames)",
            app.model.modules.len()
        );
    }
    let mut zoomed = app.clone();
    zoomed.on_key(modscope::tui::Key::Enter);
    let (median, p99) = frame_times(&zoomed, 200, 60);
    println!("tui: frame render 200x60, detail zoomed: median {median:.0} µs, p99 {p99:.0} µs");

    // A flood: the live tap's channel full, pumped as the loop does.
    let (tx, rx) = mpsc::sync_channel(65_536);
    let mut feed = LiveFeed {
        records: rx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let mut app = replay_app();
    let mut longest = Duration::ZERO;
    let mut turns = 0;
    let mut next = 0;
    let start = Instant::now();
    loop {
        // Fill the channel as a busy session would.
        while next < records.len() && tx.try_send(records[next].clone()).is_ok() {
            next += 1;
        }
        let t = Instant::now();
        feed.pump(&mut app, Duration::ZERO, APPLY_BUDGET);
        longest = longest.max(t.elapsed());
        turns += 1;
        if app.model.records as usize == records.len() {
            break;
        }
    }
    println!(
        "tui: live flood of {} records: {:.3} s in {turns} turns; longest turn {:.1} ms (keys wait at most this plus a 15 ms poll; goal: input within 50 ms)",
        app.model.records,
        start.elapsed().as_secs_f64(),
        longest.as_secs_f64() * 1e3
    );
}
