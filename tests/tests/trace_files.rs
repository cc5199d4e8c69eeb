//! `modscope record -o FILE` and `modscope report FILE` against real module
//! loads: the file holds what the live report holds, survives SIGKILL up to
//! its last flush, takes appended sessions, and ends cleanly on SIGTERM.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;
use vm_tests::*;

const CALLS: &str = "modscope_calls";
const WAIT: Duration = Duration::from_secs(60);

fn trace_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("modscope-trace-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn record_args(path: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "record".into(),
        "--json".into(),
        "-o".into(),
        path.display().to_string(),
        "--watch".into(),
        module_file(CALLS).display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn write_param(module: &str, param: &str, value: &str) {
    let path = format!("/sys/module/{module}/parameters/{param}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {value} to {path}: {e}"));
}

fn modules<'a>(session: &'a Value, name: &str) -> Vec<&'a Value> {
    session["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == name)
        .collect()
}

fn call<'a>(module: &'a Value, symbol: &str) -> Option<&'a Value> {
    module["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["symbol"] == symbol)
}

fn count(module: &Value, symbol: &str) -> u64 {
    call(module, symbol).map_or(0, |c| c["count"].as_u64().unwrap())
}

#[test]
fn the_report_of_a_trace_equals_the_live_report() {
    if !output_kernel("trace files") {
        return;
    }
    let path = trace_path("equal.trace");
    let mut stream = EventStream::start_with(&record_args(&path, &[]), "calls");
    let loaded = insmod(CALLS, &[]);
    write_param(CALLS, "trigger", "250");
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == CALLS);
    let events = stream.stop();

    let report = modscope_report(&path);
    assert_eq!(report["complete"], true, "{report:#}");
    assert_eq!(report["sessions"].as_array().unwrap().len(), 1);
    let session = &report["sessions"][0];
    assert_eq!(session["end_reason"], "SIGINT");
    assert_eq!(
        session["kernel_release"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    assert_eq!(
        session["boot_id"].as_str().unwrap(),
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .unwrap()
            .trim()
    );
    assert!(
        !session["config"].as_object().unwrap().is_empty(),
        "the kernel's ABI-relevant options are recorded: {session:#}"
    );
    let m = modules(session, CALLS);
    assert_eq!(m.len(), 1, "{session:#}");
    let m = m[0];
    assert_eq!(m["init_counted"], true);
    assert_eq!(m["taints"], "OE");
    assert!(
        m["loaded"].is_string() && m["unloaded"].is_string(),
        "{m:#}"
    );
    assert_eq!(count(m, "kstrdup"), 1250, "{m:#}");
    assert_eq!(count(m, "kfree"), 1250, "{m:#}");
    assert_eq!(count(m, "mutex_lock"), 500, "{m:#}");
    // Init's first kstrdup is made by modscope_calls_work, in core text,
    // while the module is loading.
    let first = call(m, "kstrdup").unwrap();
    assert!(
        first["first_caller"].as_str().unwrap().starts_with("core+"),
        "{first:#}"
    );
    let first_ns = first["first_use_ktime_ns"].as_u64().unwrap();
    assert!(
        m["loaded_ktime_ns"].as_u64().unwrap() < first_ns
            && first_ns < m["unloaded_ktime_ns"].as_u64().unwrap(),
        "{m:#}"
    );
    assert!(
        m["unused_imports"]
            .as_array()
            .unwrap()
            .contains(&Value::from("_printk")),
        "{m:#}"
    );

    // Every count the live report gave, the trace gives.
    let live = events.iter().rev().find(|e| e["type"] == "calls").unwrap();
    let live_m = live["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == CALLS)
        .unwrap();
    assert_eq!(live_m["calls"], {
        let mut v = m["calls"].clone();
        for c in v.as_array_mut().unwrap() {
            let c = c.as_object_mut().unwrap();
            c.remove("first_use");
            c.remove("first_caller");
        }
        v
    });
}

#[test]
fn sigkill_leaves_a_trace_readable_to_its_last_flush_and_appendable() {
    if !output_kernel("trace files") {
        return;
    }
    let path = trace_path("killed.trace");
    let stream = EventStream::start_with(
        &record_args(&path, &["--snapshot-interval", "0.2"]),
        "calls",
    );
    let loaded = insmod(CALLS, &[]);
    write_param(CALLS, "trigger", "100");
    // Several snapshot intervals: the counts are flushed.
    std::thread::sleep(Duration::from_millis(1500));
    stream.kill();
    loaded.unload();

    let report = modscope_report(&path);
    assert_eq!(report["complete"], false, "no end record after SIGKILL");
    let session = &report["sessions"][0];
    assert!(session["end_reason"].is_null(), "{session:#}");
    let m = modules(session, CALLS)[0];
    assert_eq!(count(m, "kstrdup"), 1100, "{m:#}");
    assert_eq!(count(m, "mutex_lock"), 500, "{m:#}");
    assert!(m["unloaded"].is_null(), "unloaded after the kill: {m:#}");

    // A second capture appends a session to the same file.
    let mut args = record_args(&path, &["--append", "--duration", "3"]);
    args.retain(|a| a != "--json");
    let out = Command::new(modscope_bin())
        .args(&args)
        .output()
        .expect("running modscope record --append");
    assert!(out.status.success(), "{out:?}");
    let report = modscope_report(&path);
    let sessions = report["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{report:#}");
    assert!(sessions[0]["end_reason"].is_null());
    assert_eq!(sessions[1]["end_reason"], "duration");
    assert_eq!(
        count(modules(&sessions[0], CALLS)[0], "kstrdup"),
        1100,
        "the first session is intact"
    );
    assert!(
        report["damage"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
}

#[test]
fn sigterm_ends_a_headless_capture_with_a_summary() {
    if !output_kernel("trace files") {
        return;
    }
    let path = trace_path("term.trace");
    let mut args = record_args(&path, &[]);
    args.retain(|a| a != "--json");
    let child = Command::new(modscope_bin())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting modscope record");
    // Ready once the session header is in the file.
    let start = Instant::now();
    while std::fs::metadata(&path).map_or(true, |m| m.len() < 100) {
        assert!(start.elapsed() < WAIT, "no trace header written");
        std::thread::sleep(Duration::from_millis(50));
    }
    let loaded = insmod(CALLS, &[]);
    loaded.unload();
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("ended by SIGTERM"), "{stdout}");
    assert!(stdout.contains(CALLS), "{stdout}");
    assert!(stdout.lines().count() <= 24, "one screen:\n{stdout}");
    assert!(!stdout.contains('{'), "no JSON without --json:\n{stdout}");
    let report = modscope_report(&path);
    assert_eq!(report["sessions"][0]["end_reason"], "SIGTERM");
    assert_eq!(
        count(modules(&report["sessions"][0], CALLS)[0], "kstrdup"),
        1000
    );
}

#[test]
fn a_rotating_capture_reads_back_exact_from_its_directory() {
    if !output_kernel("trace files") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("modscope-rotating-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let args = record_args(
        &dir,
        &[
            "--rotate-size",
            "4096",
            "--rotate-time",
            "1",
            "--snapshot-interval",
            "0.2",
            "--keep",
            "50",
        ],
    );
    let mut stream = EventStream::start_with(&args, "calls");
    let loaded = insmod(CALLS, &[]);
    for _ in 0..20 {
        write_param(CALLS, "trigger", "50");
        std::thread::sleep(Duration::from_millis(200));
    }
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == CALLS);
    stream.stop();
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() >= 3, "files of 4 KiB or 1 s rotate: {files:?}");
    for f in &files {
        let alone = modscope_report(f);
        assert_eq!(
            alone["sessions"].as_array().unwrap().len(),
            1,
            "{f:?} is a whole trace"
        );
        assert_eq!(alone["damage"].as_array().unwrap().len(), 0, "{f:?}");
    }
    let whole = modscope_report(&dir);
    let sessions = whole["sessions"].as_array().unwrap();
    assert_eq!(
        sessions.len(),
        1,
        "one session across {} files",
        files.len()
    );
    assert_eq!(sessions[0]["end_reason"], "SIGINT");
    let m = modules(&sessions[0], CALLS);
    assert_eq!(m.len(), 1, "one incarnation");
    assert_eq!(
        count(m[0], "kstrdup"),
        1000 + 20 * 50,
        "exact across the files"
    );
    assert!(m[0]["unloaded"].is_string());
    let _ = std::fs::remove_dir_all(&dir);
}
