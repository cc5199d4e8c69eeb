//! `modscope export` against the real consumers: a fleet's worth of traces
//! in the real file format, exported to Parquet and JSON lines and queried
//! with DuckDB, whose totals must be `report --json`'s; and a Perfetto
//! timeline decoded with Perfetto's own protobuf classes. DuckDB and
//! Perfetto's classes come from PyPI (`cargo xtask setup` installs them),
//! so those tests are ignored in a plain `cargo test`; the suite runs them.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use modscope::kernel::kallsyms::KernelFunction;
use modscope::trace::{
    TraceWriter,
    records::{CountEntry, EndReason, ModuleOrigin, ModuleSeen, ModuleVerdict, TraceRecord},
    samples,
};
use modscope_analysis::verdict::Severity;
use serde_json::Value;

fn modscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modscope"))
        .args(args)
        .output()
        .expect("running modscope")
}

/// `modscope export --format FORMAT -o OUT INPUTS...`, which must succeed.
fn export(format: &str, out: &Path, inputs: &[&Path]) -> std::process::Output {
    let mut args = vec!["export", "--format", format, "-o", out.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let run = modscope(&args);
    assert_eq!(run.status.code(), Some(0), "{run:?}");
    run
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("modscope-exports-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn python(script: &str, args: &[&Path]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/exports")
        .join(script);
    let out = Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A small deterministic generator (the fleet must be the same each run).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

const KERNELS: [&str; 4] = [
    "6.1.0-56-amd64",
    "6.1.0-56-rt-amd64",
    "6.12.57+deb12-amd64",
    "6.1.0-56-arm64",
];
const MODULES: [&str; 5] = ["vendor_net", "vendor_gpu", "dummy", "ext4", "rtbad"];
const FUNCTIONS: [&str; 4] = ["kfree", "kstrdup", "mutex_lock", "msleep"];

/// One device's trace: one or two sessions, modules loading and
/// unloading, snapshots of growing totals, verdicts and anomalies.
fn device_trace(path: &Path, device: u64, rng: &mut Lcg) {
    let mut w = TraceWriter::create(path).unwrap();
    let sessions = 1 + rng.next(2);
    for s in 0..sessions {
        let start = (s + 1) * 1_000_000_000_000;
        let functions: Vec<KernelFunction> = FUNCTIONS
            .iter()
            .enumerate()
            .map(|(i, f)| KernelFunction::new(*f, 0xffff_ffff_8100_0000 + 0x100 * i as u64))
            .collect();
        w.write(&TraceRecord::SessionStart(Box::new(
            modscope::trace::records::SessionStart {
                hostname: format!("dev-{:03}", device % 120),
                boot_id: format!("boot-{device}-{s}"),
                kernel_release: KERNELS[(device % 4) as usize].into(),
                started_ns: start,
                functions: functions.clone(),
                ..samples::session()
            },
        )));
        for (m, name) in MODULES.iter().enumerate() {
            if rng.next(3) == 0 {
                continue;
            }
            let inc = start + 1_000 + m as u64;
            w.write(&TraceRecord::Module(Box::new(ModuleSeen {
                ts_ns: inc,
                origin: if m == 3 {
                    ModuleOrigin::Present
                } else {
                    ModuleOrigin::Loaded
                },
                incarnation: inc,
                imports: Some(FUNCTIONS.iter().map(|f| f.to_string()).collect()),
                ..samples::module(name, inc)
            })));
            if *name == "rtbad" {
                w.write(&TraceRecord::Verdict(Box::new(samples::verdict(inc))));
                w.write(&TraceRecord::Anomaly(Box::new(samples::anomaly(
                    inc,
                    1 + rng.next(50),
                ))));
            } else {
                w.write(&TraceRecord::Verdict(Box::new(ModuleVerdict {
                    severity: Severity::Info,
                    kernel_would_refuse: false,
                    reasons: vec![],
                    ..samples::verdict(inc)
                })));
            }
            let mut totals = [0u64; 4];
            for tick in 1..=(1 + rng.next(5)) {
                let mut entries = Vec::new();
                for f in 0..4 {
                    if rng.next(2) == 0 {
                        totals[f] += 1 + rng.next(100_000);
                        entries.push(CountEntry::new(inc, functions[f].address, totals[f]));
                    }
                }
                w.write(&TraceRecord::Counts {
                    ts_ns: inc + tick * 1_000_000_000,
                    entries,
                });
            }
            if rng.next(2) == 0 {
                w.write(&TraceRecord::Unload {
                    ts_ns: inc + 10_000_000_000,
                    incarnation: inc,
                });
            }
        }
        w.write(&TraceRecord::SessionEnd {
            ts_ns: start + 20_000_000_000,
            reason: EndReason::Duration,
        });
    }
    w.flush().unwrap();
}

/// `report --json` over each file, folded as the DuckDB queries fold.
#[derive(Default, Debug)]
struct Expected {
    by_host_module: BTreeMap<(String, String), u64>,
    by_kernel: BTreeMap<String, u64>,
    total: u64,
    sessions: u64,
    incarnations: u64,
    anomalous: u64,
    reasons: BTreeMap<String, u64>,
    incompatible: u64,
    calls_of_incompatible: u64,
}

fn expected_from_reports(files: &[PathBuf]) -> Expected {
    let mut e = Expected::default();
    for f in files {
        let out = modscope(&["report", "--json", f.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        for s in r["sessions"].as_array().unwrap() {
            e.sessions += 1;
            let host = s["hostname"].as_str().unwrap().to_owned();
            let kernel = s["kernel_release"].as_str().unwrap().to_owned();
            for m in s["modules"].as_array().unwrap() {
                e.incarnations += 1;
                let calls = m["total_calls"].as_u64().unwrap();
                if calls > 0 {
                    *e.by_host_module
                        .entry((host.clone(), m["name"].as_str().unwrap().into()))
                        .or_default() += calls;
                    *e.by_kernel.entry(kernel.clone()).or_default() += calls;
                }
                e.total += calls;
                e.anomalous += m["anomalies"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["count"].as_u64().unwrap())
                    .sum::<u64>();
                if m["verdict"]["verdict"] == "incompatible" {
                    e.incompatible += 1;
                    e.calls_of_incompatible += calls;
                }
                for reason in m["verdict"]["reasons"].as_array().into_iter().flatten() {
                    *e.reasons
                        .entry(reason["code"].as_str().unwrap().into())
                        .or_default() += 1;
                }
            }
        }
    }
    e
}

fn pairs(v: &Value) -> BTreeMap<(String, String), u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                (r[0].as_str().unwrap().into(), r[1].as_str().unwrap().into()),
                r[2].as_u64().unwrap(),
            )
        })
        .collect()
}

fn keyed(v: &Value) -> BTreeMap<String, u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().into(), r[1].as_u64().unwrap()))
        .collect()
}

#[test]
#[ignore = "needs DuckDB from PyPI: cargo xtask setup installs it"]
fn duckdb_answers_a_fleets_queries_with_the_reports_totals() {
    let dir = tmp("fleet");
    let traces = dir.join("traces");
    std::fs::create_dir_all(&traces).unwrap();
    let mut rng = Lcg(7);
    let files: Vec<PathBuf> = (0..300)
        .map(|d| {
            let f = traces.join(format!("device-{d:03}.trace"));
            device_trace(&f, d, &mut rng);
            f
        })
        .collect();
    let parquet = dir.join("parquet");
    let jsonl = dir.join("fleet.jsonl");
    for (format, out) in [("parquet", &parquet), ("jsonl", &jsonl)] {
        let run = export(format, out, &[&traces]);
        let said = String::from_utf8_lossy(&run.stderr);
        assert!(said.contains("exported 300 traces"), "{said}");
    }
    let want = expected_from_reports(&files);
    assert!(
        want.total > 0 && want.anomalous > 0 && want.incompatible > 0,
        "{want:?}"
    );
    let got = python("duckdb_totals.py", &[&parquet, &jsonl]);
    assert_eq!(pairs(&got["calls_by_host_module"]), want.by_host_module);
    assert_eq!(
        pairs(&got["module_totals_by_host_module"])
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect::<BTreeMap<_, _>>(),
        want.by_host_module
    );
    assert_eq!(keyed(&got["calls_by_kernel"]), want.by_kernel);
    assert_eq!(got["total_calls"].as_u64(), Some(want.total));
    assert_eq!(got["jsonl_total_calls"].as_u64(), Some(want.total));
    assert_eq!(got["sessions"].as_u64(), Some(want.sessions));
    assert_eq!(got["incarnations"].as_u64(), Some(want.incarnations));
    assert_eq!(got["anomalous_calls"].as_u64(), Some(want.anomalous));
    assert_eq!(keyed(&got["reasons_by_code"]), want.reasons);
    assert_eq!(
        got["incompatible_modules"].as_u64(),
        Some(want.incompatible)
    );
    assert_eq!(
        got["calls_of_incompatible"].as_u64(),
        Some(want.calls_of_incompatible)
    );
    assert_eq!(
        got["time_type"], "TIMESTAMPTZ_NS",
        "times keep their nanoseconds"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn story_trace(dir: &Path) -> PathBuf {
    let path = dir.join("story.trace");
    let mut w = TraceWriter::create(&path).unwrap();
    for r in samples::story() {
        w.write(&r);
    }
    w.flush().unwrap();
    path
}

#[test]
#[ignore = "needs Perfetto's protobuf classes from PyPI: cargo xtask setup installs them"]
fn perfetto_decodes_the_timeline_with_its_own_schema() {
    let dir = tmp("perfetto");
    let trace = story_trace(&dir);
    let out = dir.join("story.pftrace");
    export("perfetto", &out, &[&trace]);
    let got = python("perfetto_decode.py", &[&out]);
    let tracks: Vec<&str> = got["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        tracks[0].starts_with("modscope session 1: lab7 6.1.0-56-rt-amd64"),
        "{tracks:?}"
    );
    for t in [
        "module ext4",
        "module rtbad",
        "rtbad calls/s",
        "lost events",
    ] {
        assert!(tracks.contains(&t), "{t}: {tracks:?}");
    }
    let events = got["events"].as_array().unwrap();
    let on = |track: &str, kind: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["track"] == track && e["type"] == kind)
            .collect()
    };
    const S: u64 = 1_000_000_000;
    let load = 102 * S;
    let begin = on("module rtbad", "TYPE_SLICE_BEGIN");
    let end = on("module rtbad", "TYPE_SLICE_END");
    assert_eq!((begin.len(), end.len()), (1, 1));
    assert_eq!(begin[0]["ts"].as_u64(), Some(load));
    assert_eq!(
        end[0]["ts"].as_u64(),
        Some(load + 11 * S),
        "its life ends at the unload"
    );
    assert_eq!(
        begin[0]["args"]["taints"], "FOE",
        "forced, out of tree, unsigned"
    );
    let instants = on("module rtbad", "TYPE_INSTANT");
    let named = |n: &str| {
        instants
            .iter()
            .find(|e| e["name"] == n)
            .unwrap_or_else(|| panic!("{n}: {instants:?}"))
    };
    assert_eq!(
        named("first use: mutex_lock")["args"]["caller"],
        "init+0x10"
    );
    assert_eq!(
        named("first use: kfree")["ts"].as_u64(),
        Some(load + 3 * S - 5)
    );
    let verdict = named("verdict: incompatible");
    assert_eq!(verdict["args"]["reasons"], "CRC_MISMATCH");
    assert_eq!(verdict["args"]["kernel_would_refuse"], true);
    let rates: Vec<f64> = on("rtbad calls/s", "TYPE_COUNTER")
        .iter()
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    assert_eq!(rates.len(), 11, "ten snapshots and the unload: {rates:?}");
    assert_eq!(rates[10], 0.0, "no calls once unloaded");
    assert_eq!(rates[0], 1000.0, "1000 calls in its first second");
    assert_eq!(rates[3], 1010.0, "1000 mutex_lock and 10 kfree a second");
    assert!(events.iter().all(|e| e["sequence"] == 1));
    let ts: Vec<u64> = events.iter().map(|e| e["ts"].as_u64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "events in time order");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_is_not_a_trace_is_named_and_the_others_are_exported() {
    let dir = tmp("bad");
    let good = story_trace(&dir);
    let bad = dir.join("notes.trace");
    std::fs::write(&bad, b"not a trace").unwrap();
    let out = dir.join("out.jsonl");
    let run = modscope(&[
        "export",
        "--format",
        "jsonl",
        "-o",
        out.to_str().unwrap(),
        bad.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(6), "{said}");
    assert!(said.contains("notes.trace"), "{said}");
    assert!(said.contains("exported 1 traces"), "{said}");
    let lines = std::fs::read_to_string(&out).unwrap();
    assert!(
        lines.lines().any(|l| l.contains("\"module\":\"rtbad\"")),
        "{lines}"
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let run = modscope(&[
        "export",
        "--format",
        "jsonl",
        "-o",
        "-",
        empty.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no *.trace files"));
    std::fs::remove_dir_all(&dir).unwrap();
}

const TICKS: u64 = 100;

/// A rotating capture written by the real sink: three files or more.
fn rotated_capture(dir: &Path) {
    use modscope::session::{
        rotation::{Rotation, RotationPolicy},
        trace_sink::TraceSink,
    };
    use modscope::trace::records::StatsSnapshot;
    use probe_common::{ModuleName, ModuleRecord};
    let mut rotation = Rotation::new(RotationPolicy {
        dir: dir.to_owned(),
        max_bytes: Some(4096),
        max_age: None,
        keep: None,
    });
    let first = rotation.next_path(std::time::SystemTime::now());
    let mut sink = TraceSink::new(Some((&first, false)), None, vec![])
        .unwrap()
        .rotating(rotation);
    sink.start(samples::session()).unwrap();
    let mut m = ModuleRecord::zeroed();
    m.name = ModuleName::from_bytes(b"steady");
    m.incarnation = 1;
    sink.module(&m, ModuleOrigin::Present, false, None);
    let mut counts = BTreeMap::new();
    for tick in 1..=TICKS {
        for f in 0..20u64 {
            *counts.entry((1, 0x100 + f)).or_default() += tick;
        }
        sink.snapshot(tick, &counts, StatsSnapshot::default())
            .unwrap();
    }
    sink.end(50, &counts, StatsSnapshot::default(), EndReason::Interrupt)
        .unwrap();
}

#[test]
fn a_rotated_directory_exports_as_one_session_with_exact_totals() {
    let dir = tmp("rotated");
    let capture = dir.join("capture");
    std::fs::create_dir_all(&capture).unwrap();
    rotated_capture(&capture);
    let files = modscope::trace::files::in_directory(&capture).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    let report = modscope(&["report", "--json", capture.to_str().unwrap()]);
    assert_eq!(report.status.code(), Some(0), "{report:?}");
    let r: Value = serde_json::from_slice(&report.stdout).unwrap();
    assert_eq!(r["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(r["sessions"][0]["modules"].as_array().unwrap().len(), 1);
    let total = r["sessions"][0]["modules"][0]["total_calls"]
        .as_u64()
        .unwrap();
    assert_eq!(total, 20 * (1..=TICKS).sum::<u64>());
    let out = dir.join("out.jsonl");
    export("jsonl", &out, &[&capture]);
    let rows: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let of = |t: &str| rows.iter().filter(|r| r["table"] == t).collect::<Vec<_>>();
    assert_eq!(of("sessions").len(), 1);
    assert_eq!(of("modules").len(), 1);
    let calls: u64 = of("calls")
        .iter()
        .map(|c| c["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, total);
    std::fs::remove_dir_all(&dir).unwrap();
}
