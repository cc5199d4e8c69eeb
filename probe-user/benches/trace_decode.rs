//! Trace decode rate: frames checked (CRC), decoded and folded into replay
//! state, in records per second, on a synthetic capture shaped like a busy
//! machine: 200 modules, 512 probed functions, first uses, counter
//! snapshots and load/unload churn. Prints figures; never fails on speed.
//! Run with `cargo bench -p probe-user --bench trace_decode` (or `cargo xtask bench`).

use std::time::Instant;

use modscope::trace::{
    TraceRecord,
    frame::{self, Frames, Item},
    read_trace,
    records::{EndReason, ModuleOrigin, ModuleSeen, SessionStart, StatsSnapshot},
    replay::Replay,
};

const RECORDS: usize = 5_000_000;

fn synthetic() -> Vec<u8> {
    let functions: Vec<(String, u64)> = (0..512)
        .map(|i| {
            (
                format!("kernel_function_{i}"),
                0xffff_ffff_8100_0000 + i * 0x40,
            )
        })
        .collect();
    let mut out = frame::file_header().to_vec();
    frame::encode_frame(
        &TraceRecord::SessionStart(Box::new(SessionStart {
            kernel_release: "6.1.0-56-amd64".into(),
            functions: functions.clone(),
            ..SessionStart::default()
        })),
        &mut out,
    );
    let mut ts = 10_000_000_000u64;
    for i in 0..RECORDS as u64 - 2 {
        ts += 997;
        let incarnation = 1 + i % 200;
        let func = functions[(i % 512) as usize].1;
        let record = match i % 10 {
            0..=6 => TraceRecord::Counts {
                ts_ns: ts,
                entries: (0..4)
                    .map(|k| (incarnation, func + k * 0x40, i * 3 + k))
                    .collect(),
            },
            7 | 8 => TraceRecord::FirstUse {
                ts_ns: ts,
                incarnation,
                func_ip: func,
                caller: 0xffff_ffff_c000_0000 + i % 4096,
            },
            _ if i % 20 == 9 => TraceRecord::Module(Box::new(ModuleSeen {
                ts_ns: ts,
                origin: ModuleOrigin::Loaded,
                incarnation,
                name: format!("module_{}", i % 200),
                taints: 1 << 12,
                struct_module: 0xffff_ffff_c100_0000,
                core_text: (0xffff_ffff_c000_0000, 0x4000),
                init_text: (0xffff_ffff_c010_0000, 0x1000),
                init_counted: true,
                imports: None,
            })),
            _ if i % 40 == 19 => TraceRecord::Stats(StatsSnapshot {
                ts_ns: ts,
                ..StatsSnapshot::default()
            }),
            // The module loaded ten records earlier.
            _ => TraceRecord::Unload {
                ts_ns: ts,
                incarnation: 1 + (i - 10) % 200,
            },
        };
        frame::encode_frame(&record, &mut out);
    }
    frame::encode_frame(
        &TraceRecord::SessionEnd {
            ts_ns: ts,
            reason: EndReason::Duration,
        },
        &mut out,
    );
    out
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
