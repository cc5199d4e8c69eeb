//! Trace decode rate: frames checked (CRC), decoded and folded into replay
//! state, in records per second, on a synthetic capture shaped like a busy
//! machine: 200 modules, 512 probed functions, first uses, counter
//! snapshots and load/unload churn. Prints figures; never fails on speed.
//! Run with `cargo bench -p probe-user --bench trace_decode` (or `cargo xtask bench`).

use std::time::Instant;

use modscope::trace::{
    frame::{self, Frames, Item},
    read_trace,
    replay::Replay,
};

const RECORDS: usize = 5_000_000;

#[path = "common/synthetic_trace.rs"]
mod synthetic_trace;

fn synthetic() -> Vec<u8> {
    synthetic_trace::synthetic(RECORDS)
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed().as_secs_f64());
        last = Some(v);
    }
    (best, last.expect("runs > 0"))
}

fn main() {
    let data = synthetic();
    println!(
        "trace-decode: synthetic trace of {RECORDS} records, {:.1} MiB ({:.1} bytes/record)",
        data.len() as f64 / (1 << 20) as f64,
        data.len() as f64 / RECORDS as f64
    );
    let (secs, n) = best_of(5, || {
        let frames = frame::frames_of(&data).expect("a trace");
        let mut replay = Replay::default();
        let mut n = 0u64;
        for item in Frames::new(frames) {
            if let Item::Record { record, .. } = item {
                replay.apply(&record);
                n += 1;
            }
        }
        n
    });
    assert_eq!(n, RECORDS as u64);
    println!(
        "trace-decode: streaming check + decode + replay: {:.3} s, {:.2} M records/s (goal >= 5)",
        secs,
        n as f64 / secs / 1e6
    );
    let (secs, t) = best_of(3, || read_trace(&data).expect("a trace"));
    assert!(t.damage.is_empty());
    println!(
        "trace-decode: read_trace (decode into a Vec, as `modscope report` does): {:.3} s, {:.2} M records/s",
        secs,
        t.records.len() as f64 / secs / 1e6
    );
}
