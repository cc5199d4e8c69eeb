//! Export throughput: trace records per second through `export`'s three
//! formats, on a capture shaped like a busy device: 200 modules each
//! reloaded into new incarnations, 512 probed functions, counter
//! snapshots that grow, first uses, verdicts. Times the whole path:
//! decode, fold, tables, encode, write. Prints figures; never fails
//! on speed. Run with `cargo bench -p probe-user --bench export` (or
//! `cargo xtask bench --only export`).

use std::time::Instant;

use modscope::export::{Exported, Format, Sink};
use modscope::kernel::kallsyms::KernelFunction;
use modscope::trace::{
    TraceRecord, frame, read_trace,
    records::{CountEntry, EndReason, SessionStart},
    samples,
};

const RECORDS: usize = 1_000_000;

/// `records` records: every 1,000th loads a module into a new incarnation
/// (with its verdict), the others are snapshots of four functions' totals
/// or first uses of the live incarnations.
fn busy_device(records: usize) -> Vec<u8> {
    let functions: Vec<KernelFunction> = (0..512)
        .map(|i| {
            KernelFunction::new(
                format!("kernel_function_{i}"),
                0xffff_ffff_8100_0000 + i * 0x40,
            )
        })
        .collect();
    let mut out = frame::file_header().to_vec();
    let start = SessionStart {
        functions: functions.clone(),
        ..samples::session()
    };
    frame::encode_frame(&TraceRecord::SessionStart(Box::new(start)), &mut out);
    let mut live: Vec<u64> = Vec::new();
    let mut ts = 10_000_000_000u64;
    for i in 0..records as u64 - 2 {
        ts += 997;
        let record = if i % 1000 == 0 || live.is_empty() {
            let incarnation = ts;
            let name = format!("module_{}", (i / 1000) % 200);
            if live.len() == 200 {
                live.remove(0);
            }
            live.push(incarnation);
            frame::encode_frame(
                &TraceRecord::Module(Box::new(samples::module(&name, incarnation))),
                &mut out,
            );
            TraceRecord::Verdict(Box::new(samples::verdict(incarnation)))
        } else if i % 10 == 9 {
            TraceRecord::FirstUse {
                ts_ns: ts,
                incarnation: live[(i as usize / 10) % live.len()],
                func_ip: functions[(i % 512) as usize].address,
                caller: 0xffff_ffff_c000_0000 + i % 4096,
            }
        } else {
            let incarnation = live[i as usize % live.len()];
            let entries = (0..4)
                .map(|k| {
                    CountEntry::new(
                        incarnation,
                        functions[((i + k) % 512) as usize].address,
                        i * 3 + k,
                    )
                })
                .collect();
            TraceRecord::Counts { ts_ns: ts, entries }
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

fn main() {
    let data = busy_device(RECORDS);
    let dir = std::env::temp_dir().join(format!("modscope-export-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    println!(
        "export: a busy device's trace of {RECORDS} records, {:.1} MiB",
        data.len() as f64 / (1 << 20) as f64
    );
    for (name, format, out) in [
        ("parquet", Format::Parquet, dir.join("parquet")),
        ("jsonl", Format::Jsonl, dir.join("out.jsonl")),
        ("perfetto", Format::Perfetto, dir.join("out.pftrace")),
    ] {
        let mut best = f64::MAX;
        let mut done = Exported::default();
        for _ in 0..3 {
            let start = Instant::now();
            let trace = read_trace(&data).expect("a trace");
            done = Exported::default();
            let mut sink = Sink::create(format, &out).expect("the output");
            sink.add(std::path::Path::new("busy.trace"), trace, &mut done)
                .expect("export");
            sink.finish(&mut done).expect("export");
            best = best.min(start.elapsed().as_secs_f64());
        }
        let rows: Vec<String> = done.rows.iter().map(|(t, n)| format!("{n} {t}")).collect();
        println!(
            "export {name:>8}: {:>6.2} s best of 3, {:>10.0} records/s, {:.1} MiB written ({})",
            best,
            RECORDS as f64 / best,
            size_of_path(&out) as f64 / (1 << 20) as f64,
            rows.join(", ")
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn size_of_path(p: &std::path::Path) -> u64 {
    if p.is_dir() {
        std::fs::read_dir(p)
            .map(|d| d.flatten().map(|e| size_of_path(&e.path())).sum())
            .unwrap_or(0)
    } else {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }
}
