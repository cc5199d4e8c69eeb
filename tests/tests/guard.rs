//! `modscope guard` against the kernel's own loader: BPF-LSM refusing the
//! modules `check` judges incompatible (forced loads too), audit mode,
//! re-judging a replaced file, memory-buffer loads, the in-kernel
//! `struct module` size check, and what SIGKILL leaves behind with and
//! without `--pin`. The module built for the sibling flavour is the
//! incompatible one; each test says why it skips where there is none.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use vm_tests::{
    EventStream, flavour, init_module_from_buffer, load_module_file, modscope_bin, modscope_check,
    module_file, unload_module,
};

const WAIT: Duration = Duration::from_secs(120);
const EPERM: &str = "Operation not permitted";

/// The test module built for the sibling flavour (generic on PREEMPT_RT
/// and debug kernels, PREEMPT_RT on generic ones).
fn sibling(name: &str) -> Option<PathBuf> {
    let dir = std::env::var("MODSCOPE_SIBLING_MODULES").ok()?;
    let path = PathBuf::from(dir).join(format!("{name}.ko"));
    path.exists().then_some(path)
}

/// A scratch copy of `from` at `/tmp/modscope-guard/<test>/<name>.ko`.
fn scratch(test: &str, from: &Path, name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/tmp/modscope-guard/{test}"));
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join(format!("{name}.ko"));
    copy_over(from, &to);
    to
}

/// Replaces `to`'s contents in place (same inode, new change time), as
/// `cp` does.
fn copy_over(from: &Path, to: &Path) {
    std::fs::write(to, std::fs::read(from).unwrap()).unwrap();
}

/// The guard started with `args`, and how it attached (`guard_ready`).
fn start_guard(args: &[&str]) -> (EventStream, Value) {
    let mut all = vec!["guard", "--json", "--no-module-tree"];
    all.extend_from_slice(args);
    let mut stream = EventStream::start_with(&all, "registry");
    let ready = stream.wait_for(WAIT, |e| e["type"] == "guard_ready");
    (stream, ready)
}

/// The guard, attached through BPF-LSM; `None` (said why) where BPF-LSM
/// cannot attach, which the kprobe fallback test covers.
fn guard(args: &[&str]) -> Option<EventStream> {
    let (stream, ready) = start_guard(args);
    if ready["mode"] != "lsm" {
        eprintln!("BPF-LSM did not attach here, the guard observes only: {ready:#}");
        stream.stop();
        return None;
    }
    Some(stream)
}

fn watch(path: &Path) -> [&str; 2] {
    ["--watch", path.to_str().unwrap()]
}

fn tainted() -> String {
    std::fs::read_to_string("/proc/sys/kernel/tainted").unwrap()
}

fn loaded(name: &str) -> bool {
    std::fs::read_to_string("/proc/modules")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').next() == Some(name))
}

fn guard_events<'a>(events: &'a [Value], module: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "guard" && e["module"] == module)
        .collect()
}

fn codes(v: &Value) -> Vec<String> {
    let mut c: Vec<String> = v["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect();
    c.sort();
    c
}

fn rt_only() -> bool {
    if flavour() != "rt" {
        eprintln!("not the PREEMPT_RT kernel: the generic-flavour module is refused there");
        return false;
    }
    true
}

#[test]
fn guard_deny_incompatible_refuses_a_generic_module_on_preempt_rt_forced_or_not() {
    if !rt_only() {
        return;
    }
    let generic = scratch(
        "deny",
        &sibling("modscope_hello").unwrap(),
        "modscope_hello",
    );
    let own = scratch("deny", &module_file("modscope_calls"), "modscope_calls");
    let mut args = vec!["--policy", "deny-incompatible"];
    args.extend(watch(&generic));
    args.extend(watch(&own));
    let Some(mut stream) = guard(&args) else {
        return;
    };
    let taints = tainted();
    assert_eq!(load_module_file(&generic, false), Err(EPERM.into()));
    assert_eq!(
        load_module_file(&generic, true),
        Err(EPERM.into()),
        "insmod -f too"
    );
    assert!(!loaded("modscope_hello"));
    assert_eq!(tainted(), taints, "a refused module taints nothing");
    load_module_file(&own, false).expect("the PREEMPT_RT build loads");
    stream.wait_for(WAIT, |e| {
        e["type"] == "guard" && e["module"] == "modscope_calls"
    });
    unload_module("modscope_calls").unwrap();
    let events = stream.stop();
    let refused = guard_events(&events, "modscope_hello");
    assert_eq!(refused.len(), 2, "{refused:#?}");
    let check = modscope_check(&generic);
    for e in &refused {
        assert_eq!(e["decision"], "refused", "{e:#}");
        assert_eq!(e["verdict"], "incompatible");
        assert_eq!(e["file"], generic.to_str().unwrap());
        assert_eq!(e["policy"], "deny-incompatible");
        assert_eq!(codes(e), codes(&check), "the reasons check gives");
    }
    let allowed = guard_events(&events, "modscope_calls");
    assert_eq!(allowed[0]["decision"], "allowed", "{allowed:#?}");
}

#[test]
fn guard_audit_loads_the_generic_module_and_says_it_would_have_refused_it() {
    if !rt_only() {
        return;
    }
    let generic = scratch(
        "audit",
        &sibling("modscope_hello").unwrap(),
        "modscope_hello",
    );
    let mut args = vec!["--policy", "audit"];
    args.extend(watch(&generic));
    let Some(mut stream) = guard(&args) else {
        return;
    };
    load_module_file(&generic, true).expect("audit refuses nothing (forced past vermagic)");
    assert!(loaded("modscope_hello"));
    unload_module("modscope_hello").unwrap();
    stream.wait_for(WAIT, |e| {
        e["type"] == "guard" && e["module"] == "modscope_hello"
    });
    let events = stream.stop();
    let e = guard_events(&events, "modscope_hello")[0];
    assert_eq!(e["decision"], "would_refuse", "{e:#}");
    assert_eq!(e["verdict"], "incompatible");
}

#[test]
fn guard_a_file_replaced_after_its_check_is_judged_again() {
    if !rt_only() {
        return;
    }
    let own = module_file("modscope_hello");
    let file = scratch("replaced", &own, "modscope_hello");
    let mut args = vec!["--policy", "deny-incompatible"];
    args.extend(watch(&file));
    let Some(mut stream) = guard(&args) else {
        return;
    };
    let checked = |verdict: &'static str| {
        let path = file.to_str().unwrap().to_owned();
        move |e: &Value| {
            e["type"] == "guard_checked" && e["file"] == path && e["verdict"] == verdict
        }
    };
    stream.wait_until(WAIT, |ev| {
        ev.iter().any(checked("compatible")) || ev.iter().any(checked("warning"))
    });
    copy_over(&sibling("modscope_hello").unwrap(), &file);
    stream.wait_for(WAIT, checked("incompatible"));
    assert_eq!(
        load_module_file(&file, true),
        Err(EPERM.into()),
        "judged by the new contents"
    );
    copy_over(&own, &file);
    let start = Instant::now();
    loop {
        // The change is seen, then the file checked again.
        match load_module_file(&file, false) {
            Ok(()) => break,
            Err(e) => {
                assert_eq!(e, EPERM);
                assert!(start.elapsed() < WAIT, "never judged compatible again");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    unload_module("modscope_hello").unwrap();
    let events = stream.stop();
    let decisions: Vec<&str> = guard_events(&events, "modscope_hello")
        .iter()
        .map(|e| e["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions.first(), Some(&"refused"), "{decisions:?}");
    assert_eq!(decisions.last(), Some(&"allowed"), "{decisions:?}");
}

#[test]
fn guard_deny_unchecked_refuses_memory_buffers_and_files_it_never_checked() {
    if lsm_missing() {
        return;
    }
    let checked = scratch(
        "unchecked",
        &module_file("modscope_hello"),
        "modscope_hello",
    );
    let unknown = scratch(
        "unchecked-other",
        &module_file("modscope_calls"),
        "modscope_calls",
    );
    let mut args = vec!["--policy", "deny-unchecked"];
    args.extend(watch(&checked));
    let Some(mut stream) = guard(&args) else {
        return;
    };
    assert_eq!(
        init_module_from_buffer(&checked),
        Err(EPERM.into()),
        "a buffer is never checked"
    );
    assert_eq!(
        load_module_file(&unknown, false),
        Err(EPERM.into()),
        "never checked"
    );
    load_module_file(&checked, false).expect("the checked file loads");
    unload_module("modscope_hello").unwrap();
    stream.wait_for(WAIT, |e| e["type"] == "guard" && e["decision"] == "allowed");
    let events = stream.stop();
    let buffer: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "guard" && e["stage"] == "buffer")
        .collect();
    assert_eq!(buffer.len(), 1, "{events:#?}");
    assert_eq!(buffer[0]["decision"], "refused");
    assert_eq!(buffer[0]["verdict"], "unchecked");
    let unknown_refusal = events
        .iter()
        .find(|e| e["type"] == "guard" && e["stage"] == "file" && e["decision"] == "refused");
    assert_eq!(unknown_refusal.unwrap()["verdict"], "unchecked");

    // Under deny-incompatible the same buffer loads.
    let stream = guard(&["--policy", "deny-incompatible"]).expect("attached a moment ago");
    init_module_from_buffer(&checked).expect("deny-incompatible lets a buffer through");
    unload_module("modscope_hello").unwrap();
    stream.stop();
}

#[test]
fn guard_a_foreign_struct_module_is_refused_in_the_kernel_though_never_checked() {
    if flavour() != "debug" {
        eprintln!(
            "not the lock-debugging kernel, where the generic build's struct module is smaller"
        );
        return;
    }
    let generic = scratch(
        "foreign",
        &sibling("modscope_hello").unwrap(),
        "modscope_hello",
    );
    let Some(mut stream) = guard(&["--policy", "deny-incompatible"]) else {
        return;
    };
    assert_eq!(load_module_file(&generic, true), Err(EPERM.into()));
    let e = stream.wait_for(WAIT, |e| e["type"] == "guard" && e["stage"] == "image");
    stream.stop();
    assert_eq!(e["decision"], "refused", "{e:#}");
    assert_eq!(e["verdict"], "foreign_struct_module");
    assert_eq!(e["module"], "modscope_hello");
    let (theirs, ours) = (
        e["struct_module_size"].as_u64().unwrap(),
        e["kernel_struct_module_size"].as_u64().unwrap(),
    );
    assert!(ours > theirs, "lock debugging grows struct module: {e:#}");
}

fn lsm_missing() -> bool {
    let active = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !active.split(',').any(|m| m.trim() == "bpf") {
        eprintln!("BPF-LSM is not active here ({active:?}): covered by the audit fallback test");
        return true;
    }
    false
}

fn guard_programs() -> Vec<String> {
    let out = Command::new("bpftool")
        .args(["prog", "show"])
        .output()
        .expect("bpftool");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains("guard_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn guard_sigkill_leaves_nothing_attached_without_pin_and_keeps_loads_governed_with_it() {
    if lsm_missing() {
        return;
    }
    let Some(incompatible) = sibling("modscope_hello") else {
        eprintln!("no sibling flavour here: nothing incompatible to refuse");
        return;
    };
    let file = scratch("pin", &incompatible, "modscope_hello");
    let Some(stream) = guard(&watch(&file)) else {
        return;
    };
    assert!(!guard_programs().is_empty(), "attached while it runs");
    stream.kill();
    let start = Instant::now();
    while !guard_programs().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            guard_programs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(
        load_module_file(&file, false),
        Err(EPERM.into()),
        "fail-open: the kernel's own answer"
    );

    let mut args = vec!["--pin"];
    args.extend(watch(&file));
    let stream = guard(&args).expect("attached a moment ago");
    stream.kill();
    assert_eq!(
        load_module_file(&file, true),
        Err(EPERM.into()),
        "still governed after SIGKILL"
    );
    let removed = Command::new(modscope_bin())
        .args(["guard", "--remove"])
        .output()
        .unwrap();
    assert!(removed.status.success(), "{removed:?}");
    assert!(String::from_utf8_lossy(&removed.stdout).contains("removed the pinned guard"));
    let start = Instant::now();
    while !guard_programs().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            guard_programs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(load_module_file(&file, false), Err(EPERM.into()));
}

/// The guard's cost on a load: the same module loaded and unloaded with
/// and without the guard; printed, not asserted (a benchmark's figure).
#[test]
fn guard_the_guards_cost_on_a_module_load_is_measured() {
    if lsm_missing() {
        return;
    }
    let file = scratch("cost", &module_file("modscope_hello"), "modscope_hello");
    let time_loads = || {
        let start = Instant::now();
        for _ in 0..20 {
            load_module_file(&file, false).unwrap();
            unload_module("modscope_hello").unwrap();
        }
        start.elapsed() / 20
    };
    let without = time_loads();
    let Some(stream) = guard(&watch(&file)) else {
        return;
    };
    let with = time_loads();
    stream.stop();
    let figure = format!(
        "modscope-figure guard cost: load+unload of modscope_hello {:.0} us without the guard, {:.0} us with it ({})\n",
        without.as_secs_f64() * 1e6,
        with.as_secs_f64() * 1e6,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    // The console is what `cargo xtask test` keeps of a guest.
    let _ = std::fs::write("/dev/console", &figure);
    eprint!("{figure}");
}

/// Where BPF-LSM is active but its programs cannot attach (arm64 before
/// 6.4), the guard says so and observes through kprobes: the module it
/// would refuse loads, and the event says it would have been refused.
#[test]
fn guard_falls_back_to_observing_through_kprobes_where_lsm_cannot_attach() {
    let Some(incompatible) = sibling("modscope_hello") else {
        eprintln!("no sibling flavour here: nothing incompatible to load");
        return;
    };
    let file = scratch("fallback", &incompatible, "modscope_hello");
    let (mut stream, ready) = start_guard(&watch(&file));
    if ready["mode"] == "lsm" {
        eprintln!("BPF-LSM attached here: the fallback is not used");
        stream.stop();
        return;
    }
    assert_eq!(ready["mode"], "kprobes", "{ready:#}");
    assert!(
        ready["why_not_lsm"].as_str().is_some_and(|w| !w.is_empty()),
        "{ready:#}"
    );
    assert!(
        ready["on_exit"]
            .as_str()
            .unwrap()
            .contains("nothing is refused"),
        "{ready:#}"
    );
    let _ = load_module_file(&file, true);
    let _ = unload_module("modscope_hello");
    let e = stream.wait_for(WAIT, |e| e["type"] == "guard" && e["stage"] == "file");
    stream.stop();
    assert_eq!(e["decision"], "would_refuse", "{e:#}");
    assert_eq!(e["verdict"], "incompatible");
}
