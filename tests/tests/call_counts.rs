//! `modscope record`: exact per-module call counts against modules whose
//! calls are known, init included.

use std::time::Duration;

use serde_json::Value;
use vm_tests::*;

const CALLS: &str = "modscope_calls";
const TWIN: &str = "modscope_calls_twin";
const WAIT: Duration = Duration::from_secs(60);

fn record(watch: &[&str]) -> EventStream {
    let mut args: Vec<String> = vec!["record".into(), "--json".into()];
    for m in watch {
        args.push("--watch".into());
        args.push(module_file(m).display().to_string());
    }
    EventStream::start_with(&args, "calls")
}

fn write_param(module: &str, param: &str, value: &str) {
    let path = format!("/sys/module/{module}/parameters/{param}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {value} to {path}: {e}"));
}

/// The `calls` report entries for `name`, one per incarnation.
fn reports<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    let calls = events
        .iter()
        .rev()
        .find(|e| e["type"] == "calls")
        .expect("a calls report");
    calls["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == name)
        .collect()
}

fn count(report: &Value, symbol: &str) -> u64 {
    report["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["symbol"] == symbol)
        .map_or(0, |c| c["count"].as_u64().unwrap())
}

#[test]
fn init_and_triggered_calls_are_counted_exactly() {
    let mut stream = record(&[CALLS]);
    let loaded = insmod(CALLS, &[]);
    write_param(CALLS, "trigger", "250");
    write_param(CALLS, "trigger", "3");
    // The count table took every call: the hash map holds none.
    let counts = bpf_maps::BpfMap::named("COUNTS").expect("the count table");
    let cells: u64 = counts.array_u64s().into_iter().sum();
    let made = 2 * (1000 + 250 + 3) + 2 * 500;
    assert!(
        cells >= made,
        "the table counted {cells} of at least {made}"
    );
    let hashed = bpf_maps::BpfMap::named("CALLS")
        .expect("the hash map")
        .keys();
    assert!(
        hashed.is_empty(),
        "calls counted in the hash map: {} keys",
        hashed.len()
    );
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == CALLS);
    let events = stream.stop();

    let r = reports(&events, CALLS);
    assert_eq!(r.len(), 1, "{r:#?}");
    let r = r[0];
    assert_eq!(r["init_counted"], true, "{r:#}");
    assert_eq!(count(r, "kstrdup"), 1000 + 250 + 3, "{r:#}");
    assert_eq!(count(r, "kfree"), 1000 + 250 + 3, "{r:#}");
    assert_eq!(count(r, "mutex_lock"), 500, "{r:#}");
    assert_eq!(count(r, "mutex_unlock"), 500, "{r:#}");
    // lib/kstrtox.c cannot be kprobed: the report says so rather than counting 0.
    let calls = events.iter().rev().find(|e| e["type"] == "calls").unwrap();
    let refused: Vec<&str> = calls["probes"]["not_attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["function"].as_str().unwrap())
        .collect();
    assert_eq!(refused, ["kstrtouint"], "{:#}", calls["probes"]);
    assert_eq!(
        calls["probes"]["attached"], 5,
        "kstrdup kfree mutex_lock mutex_unlock _printk"
    );
    let unused: Vec<&str> = r["unused_imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        unused.contains(&"_printk"),
        "imported, never called: {unused:?}"
    );
    assert!(!unused.contains(&"kfree"), "{unused:?}");
    assert_ne!(r["unloaded_ktime_ns"], Value::Null);
    // The first call of kstrdup came from init text; kstrtouint's from core text.
    let first = |sym: &str| {
        events
            .iter()
            .find(|e| e["type"] == "first_use" && e["module"] == CALLS && e["symbol"] == sym)
            .cloned()
            .unwrap()
    };
    assert!(
        first("kstrdup")["caller_offset"]
            .as_str()
            .unwrap()
            .starts_with("core+"),
        "work() is core text"
    );
    assert!(
        first("mutex_lock")["caller_offset"]
            .as_str()
            .unwrap()
            .starts_with("init+"),
        "init calls mutex_lock"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "first_use" && e["module"] == CALLS && e["symbol"] == "kfree")
            .count(),
        1
    );
}

#[test]
fn two_modules_calling_the_same_functions_at_once_get_their_own_counts() {
    let mut stream = record(&[CALLS, TWIN]);
    let a = insmod(CALLS, &[]);
    let b = insmod(TWIN, &[]);
    let writers: Vec<_> = [(CALLS, "20000"), (TWIN, "30000")]
        .into_iter()
        .map(|(m, n)| std::thread::spawn(move || write_param(m, "trigger", n)))
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    a.unload();
    b.unload();
    stream.wait_until(WAIT, |ev| {
        ev.iter().filter(|e| e["type"] == "unload").count() >= 2
    });
    let events = stream.stop();

    let (ra, rb) = (reports(&events, CALLS)[0], reports(&events, TWIN)[0]);
    assert_eq!(count(ra, "kstrdup"), 1000 + 20000, "{ra:#}");
    assert_eq!(count(ra, "kfree"), 1000 + 20000, "{ra:#}");
    assert_eq!(count(rb, "kstrdup"), 1000 + 30000, "{rb:#}");
    assert_eq!(count(rb, "kfree"), 1000 + 30000, "{rb:#}");
    let registry = events
        .iter()
        .rev()
        .find(|e| e["type"] == "registry")
        .unwrap();
    assert_eq!(registry["stats"]["call_map_full"], 0);
    assert_eq!(registry["stats"]["lost_events"], 0);
}

#[test]
fn a_reloaded_module_starts_from_zero() {
    let mut stream = record(&[CALLS]);
    let first = insmod(CALLS, &[]);
    write_param(CALLS, "trigger", "7");
    first.unload();
    let second = insmod(CALLS, &[]);
    second.unload();
    stream.wait_until(WAIT, |ev| {
        ev.iter()
            .filter(|e| e["type"] == "unload" && e["name"] == CALLS)
            .count()
            == 2
    });
    let events = stream.stop();

    let r = reports(&events, CALLS);
    assert_eq!(r.len(), 2, "one report per incarnation: {r:#?}");
    assert_ne!(r[0]["incarnation"], r[1]["incarnation"]);
    assert_eq!(count(r[0], "kstrdup"), 1007);
    assert_eq!(
        count(r[1], "kstrdup"),
        1000,
        "the reload is not credited with the first load's calls"
    );
}

/// Many loads, each counted exactly and each pruned from the maps once
/// unloaded. 60 are enough for a load to take a count-table row an earlier
/// one used: the row is the load time modulo 256, so 60 loads all miss each
/// other's rows about once in a thousand runs (e^(-60*59/512)). A cycle
/// takes 0.5-1 s under emulation; the 1,000-cycle churn run is the bench's
/// (`cargo xtask bench --only probe`).
#[test]
fn sixty_reloads_keep_counts_exact_and_leave_no_probe_behind() {
    const LOADS: usize = 60;
    let mut stream = record(&[CALLS]);
    let live = bpf_objects::program_names();
    assert!(
        live.iter().any(|p| p == "count_call") && bpf_objects::link_count() > 0,
        "the kernel lists the session's programs and links: {live:?}"
    );
    let started = std::time::Instant::now();
    for _ in 0..LOADS {
        insmod(CALLS, &[]).unload();
    }
    let events = stream.wait_until(WAIT * 4, |ev| {
        ev.iter()
            .filter(|e| e["type"] == "unload" && e["name"] == CALLS)
            .count()
            == LOADS
    });
    eprintln!(
        "{LOADS} load/unload cycles: {:.0} ms per cycle",
        started.elapsed().as_secs_f64() * 1000.0 / LOADS as f64
    );
    // Once the session has read their last counts (a second's tick), the
    // unloaded incarnations have left every map.
    let gone: Vec<u64> = events
        .iter()
        .filter(|e| e["type"] == "unload" && e["name"] == CALLS)
        .map(|e| e["incarnation"].as_u64().unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    assert_unloaded_incarnations_left_the_maps(&gone);
    let events = stream.stop();

    let r = reports(&events, CALLS);
    assert_eq!(r.len(), LOADS, "one report per incarnation");
    let hidden: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["type"] == "anomaly"
                && matches!(
                    e["detector"].as_str(),
                    Some("hidden_module" | "unowned_module_code")
                )
        })
        .collect();
    assert!(
        hidden.is_empty(),
        "loads and unloads are not hiding: {hidden:#?}"
    );
    for (i, m) in r.iter().enumerate() {
        assert_eq!(count(m, "kstrdup"), 1000, "load {i}: {m:#}");
        assert_eq!(count(m, "mutex_lock"), 500, "load {i}: {m:#}");
        assert_eq!(m["init_counted"], true, "load {i}");
    }
    let registry = events
        .iter()
        .rev()
        .find(|e| e["type"] == "registry")
        .unwrap();
    assert!(
        registry["modules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != CALLS),
        "stale registry entry"
    );
    for counter in [
        "lost_events",
        "page_map_full",
        "call_map_full",
        "read_errors",
    ] {
        assert_eq!(registry["stats"][counter], 0, "{counter}");
    }
    // Nothing of modscope's survives it in the kernel.
    let progs = bpf_objects::program_names();
    for name in ["count_call", "module_load", "module_free"] {
        assert!(
            !progs.iter().any(|p| p == name),
            "{name} still loaded: {progs:?}"
        );
    }
    assert_eq!(
        bpf_objects::link_count(),
        0,
        "BPF links left behind (the guest runs nothing else)"
    );
    if let Ok(events) = std::fs::read_to_string("/sys/kernel/tracing/kprobe_events") {
        assert!(
            events.trim().is_empty(),
            "kprobe_events left behind: {events}"
        );
    }
}

/// No entry of the kernel's counting maps, and no text page, still names
/// an incarnation that unloaded; no row of the count table is still owned
/// by one; the hash maps hold only what live modules use.
fn assert_unloaded_incarnations_left_the_maps(gone: &[u64]) {
    let gone: std::collections::BTreeSet<u64> = gone.iter().copied().collect();
    for name in ["CALLS", "SEEN"] {
        let map = bpf_maps::BpfMap::named(name).unwrap_or_else(|| panic!("no map {name}"));
        let keys = map.keys();
        let stale = keys
            .iter()
            .filter(|k| gone.contains(&bpf_maps::first_u64(k)))
            .count();
        assert_eq!(
            stale,
            0,
            "{name}: {stale} of {} entries name unloaded incarnations",
            keys.len()
        );
    }
    for name in ["ROWS", "PAGES"] {
        let map = bpf_maps::BpfMap::named(name).unwrap_or_else(|| panic!("no map {name}"));
        let stale = map
            .array_u64s()
            .into_iter()
            .filter(|v| gone.contains(v))
            .count();
        assert_eq!(
            stale, 0,
            "{name}: {stale} entries name unloaded incarnations"
        );
    }
}

#[test]
fn init_text_is_unmapped_once_init_has_run() {
    let mut stream = record(&[CALLS]);
    let loaded = insmod(CALLS, &[]);
    let load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == CALLS);
    assert!(load["init_text"]["size"].as_u64().unwrap() > 0, "{load:#}");
    // The registry is read at stop, with the module live and its init freed.
    let events = stream.stop();
    loaded.unload();
    let entry = registry_entries(&events, CALLS);
    assert_eq!(entry.len(), 1);
    assert_eq!(entry[0]["init_text"]["size"], 0, "{:#}", entry[0]);
    assert_eq!(entry[0]["core_text"], load["core_text"]);
}

/// Probes over the imports of every filesystem module: some of
/// those imports (`__rcu_read_lock`, …) sit on the probe's own path, and a
/// breakpoint probe there is an "Unrecoverable kprobe" kernel BUG. They are
/// refused by name, the rest attach, and the kernel stays well.
#[test]
fn probing_hundreds_of_imports_never_probes_the_probe_path() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let fs = format!("/lib/modules/{}/kernel/fs", release.trim());
    let out = std::process::Command::new(modscope_bin())
        .args([
            "record",
            "--json",
            "--duration",
            "2",
            "--max-probes",
            "64",
            "--watch",
        ])
        .arg(&fs)
        .output()
        .expect("running modscope record");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["type"] == "calls")
        .expect("a calls report");
    let attached = calls["probes"]["attached"].as_u64().unwrap();
    assert!(attached >= 50, "{:#}", calls["probes"]);
    assert!(
        !calls["probes"]["capped"].as_array().unwrap().is_empty(),
        "the fs modules import more than 64 functions: the cap is reported"
    );
    let traceable =
        std::fs::read_to_string("/sys/kernel/tracing/available_filter_functions").unwrap();
    let traceable: std::collections::HashSet<&str> = traceable
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let refused = calls["probes"]["not_attached"].as_array().unwrap();
    // modscope's list of functions on the kprobe handler's own path.
    let probe_path = [
        "__rcu_read_lock",
        "__rcu_read_unlock",
        "rcu_read_unlock_strict",
        "rcu_read_lock_held",
        "rcu_read_lock_sched_held",
        "rcu_read_lock_bh_held",
        "rcu_read_lock_any_held",
        "rcu_is_watching",
        "migrate_disable",
        "migrate_enable",
        "preempt_count_add",
        "preempt_count_sub",
        "debug_smp_processor_id",
        "__this_cpu_preempt_check",
        "trace_call_bpf",
    ];
    assert!(
        refused
            .iter()
            .filter(|r| r["error"].as_str().unwrap().contains("not traceable"))
            .all(|r| {
                let f = r["function"].as_str().unwrap();
                !traceable.contains(f) || probe_path.contains(&f)
            }),
        "only untraceable and probe-path functions are refused as such"
    );
    // Imported by filesystem modules, and on the kprobe handler's own path.
    // With PREEMPT_RCU (Debian's x86-64 and PREEMPT_RT kernels) the RCU
    // read lock is a function the fs modules import; without it (arm64's
    // generic 6.1) it is inlined and there is nothing to refuse.
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    if kallsyms.lines().any(|l| l.ends_with(" T __rcu_read_lock")) {
        assert!(
            refused.iter().any(|r| r["function"] == "__rcu_read_lock"),
            "{refused:#?}"
        );
    }
    // The kernel is still well: a module loads and unloads.
    insmod(CALLS, &[]).unload();
}

/// Text past the 4 MiB the in-kernel registration loop covers is mapped
/// from userspace as the load is reported: calls from there are counted.
#[test]
fn calls_from_past_four_mib_of_text_are_counted() {
    const BIG: &str = "modscope_big";
    let mut stream = record(&[BIG]);
    let loaded = insmod(BIG, &[]);
    let load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == BIG);
    assert!(
        load["core_text"]["size"].as_u64().unwrap() > 5 << 20,
        "{load:#}"
    );
    write_param(BIG, "trigger", "300");
    let first = stream.wait_for(WAIT, |e| {
        e["type"] == "first_use" && e["module"] == BIG && e["symbol"] == "kstrdup"
    });
    let offset = first["caller_offset"].as_str().unwrap();
    let offset = u64::from_str_radix(offset.trim_start_matches("core+0x"), 16).unwrap();
    assert!(
        offset > 4 << 20,
        "the call comes from past 4 MiB: {first:#}"
    );
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == BIG);
    let events = stream.stop();
    let r = reports(&events, BIG);
    assert_eq!(count(r[0], "kstrdup"), 300, "{:#}", r[0]);
    assert_eq!(count(r[0], "kfree"), 300, "{:#}", r[0]);
}

/// Without --watch, a module that loads during the session and whose file
/// is on the module path gets its imports probed as it loads: its later
/// calls are counted, and the report says its init was not. (`--function
/// kfree` keeps the session small; without it every loaded module's imports
/// are probed too.)
#[test]
fn a_module_loaded_during_the_session_gets_its_imports_probed() {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    // The guest's /lib is a throwaway overlay: put the module on the path.
    let extra = format!("/lib/modules/{}/extra", release.trim());
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::copy(module_file(CALLS), format!("{extra}/{CALLS}.ko")).unwrap();
    let mut stream = EventStream::start_with(&["record", "--json", "--function", "kfree"], "calls");
    let loaded = insmod(CALLS, &[]);
    stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == CALLS);
    write_param(CALLS, "trigger", "250");
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == CALLS);
    let events = stream.stop();
    std::fs::remove_file(format!("{extra}/{CALLS}.ko")).unwrap();
    let r = reports(&events, CALLS);
    assert_eq!(r.len(), 1, "{r:#?}");
    let r = r[0];
    assert_eq!(r["init_counted"], false, "{r:#}");
    assert!(r["unused_imports"].is_array(), "its file was found: {r:#}");
    // kfree was probed before it loaded: init's calls count too. kstrdup
    // was probed as it loaded: the trigger's calls only.
    assert_eq!(count(r, "kfree"), 1000 + 250, "{r:#}");
    assert_eq!(count(r, "kstrdup"), 250, "{r:#}");
    assert_eq!(count(r, "mutex_lock"), 0, "only init calls it: {r:#}");
}

#[test]
fn an_import_reached_by_a_tail_call_is_never_reported_unused() {
    const TAIL: &str = "modscope_tailcall";
    let mut stream = record(&[TAIL]);
    insmod(TAIL, &[]).unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == TAIL);
    let events = stream.stop();
    let r = reports(&events, TAIL);
    assert_eq!(r.len(), 1, "{r:#?}");
    let list = |key: &str| -> Vec<String> {
        r[0][key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {:#}", r[0]))
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(count(r[0], "proc_mkdir"), 1, "{:#}", r[0]);
    assert!(
        !list("unused_imports").contains(&"proc_remove".to_owned()),
        "proc_remove ran at unload: {:#}",
        r[0]
    );
    // Without frame pointers (x86-64) the exit's last call is a `jmp`: the
    // kernel's caller gets the credit, and the report says why it shows 0.
    let tail_called = list("tail_called").contains(&"proc_remove".to_owned());
    if cfg!(target_arch = "x86_64") {
        assert!(tail_called, "{:#}", r[0]);
        assert_eq!(count(r[0], "proc_remove"), 0, "{:#}", r[0]);
    } else {
        assert!(tail_called || count(r[0], "proc_remove") == 1, "{:#}", r[0]);
    }
}

/// `count_call` attaches to core-kernel functions through one kprobe_multi
/// link where the kernel has fprobe (`CONFIG_FPROBE`: Debian's x86-64
/// 6.12), else a kprobe each; asked for (`--attach fentry`), by fentry
/// where the kernel has BPF trampolines on ftrace's direct calls (x86-64;
/// arm64 from 6.4); where the default is the link, `MODSCOPE_ATTACH=kprobe`
/// (the flag's environment form) asks for a kprobe each. Each way counts
/// every call of each incarnation exactly, init included, and leaves no BPF
/// link behind. From Linux 6.2 the copies on trampolines, and on x86-64
/// the link's, read the frame through `bpf_rdonly_cast`, not the helper.
#[test]
fn count_call_attaches_each_way_the_kernel_has_and_counts_exactly() {
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
    let by_default = if flag("MODSCOPE_KERNEL_FPROBE") {
        "kprobe_multi"
    } else {
        "kprobe"
    };
    attach_and_count_exactly(&[], &[], by_default);
    if flag("MODSCOPE_KERNEL_FENTRY") {
        attach_and_count_exactly(&["--attach", "fentry"], &[], "fentry");
    }
    if by_default == "kprobe_multi" {
        attach_and_count_exactly(&[], &[("MODSCOPE_ATTACH", "kprobe")], "kprobe");
    }
}

/// A session on four functions with `flags` and `env`: `count_call`
/// attached to all by `attach_type`, exact counts over two incarnations, no
/// link left.
fn attach_and_count_exactly(flags: &[&str], env: &[(&str, &str)], attach_type: &str) {
    let links_before = bpf_objects::link_count();
    let functions = ["kstrdup", "kfree", "mutex_lock", "mutex_unlock"];
    let mut args = vec!["record", "--json", "--no-detectors"];
    args.extend(flags);
    for f in functions {
        args.extend(["--function", f]);
    }
    let mut stream = EventStream::start_with_env(&args, env, "calls");
    let ready = stream.wait_for(WAIT, |e| e["type"] == "ready");
    let probes: Vec<&str> = ready["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // From 6.2, fentry's copies read through a view, and so do the kprobes
    // (the link and a kprobe each) where they read memory: on x86-64.
    let copies_read_through_a_view =
        kernel_version() >= (6, 2) && (attach_type == "fentry" || cfg!(target_arch = "x86_64"));
    let read = if copies_read_through_a_view {
        " (rdonly_cast)"
    } else {
        ""
    };
    let expected = format!("{attach_type}/count_call x4{read}");
    assert!(
        probes.contains(&expected.as_str()),
        "{expected} in {probes:?}"
    );
    for _ in 0..2 {
        insmod(CALLS, &[]).unload();
        stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == CALLS);
    }
    let events = stream.stop();
    let r = reports(&events, CALLS);
    assert_eq!(r.len(), 2, "{r:#?}");
    for incarnation in r {
        assert_eq!(count(incarnation, "kstrdup"), 1000, "{incarnation:#}");
        assert_eq!(count(incarnation, "kfree"), 1000, "{incarnation:#}");
        assert_eq!(count(incarnation, "mutex_lock"), 500, "{incarnation:#}");
        assert_eq!(count(incarnation, "mutex_unlock"), 500, "{incarnation:#}");
    }
    assert_eq!(
        bpf_objects::link_count(),
        links_before,
        "every link the session made ({attach_type}) is gone"
    );
}

/// A kprobe program is skipped, not run, on a CPU where a BPF map syscall
/// is under way: a probe on the hash map's update, hit by map updates,
/// misses them all. Kernels from 6.7 count those skips, and the session
/// reports them (the registry's stats, the trace's); earlier ones count
/// nothing and the session says 0. (A kprobe each, by `--attach`: an fentry
/// program is not skipped there.)
#[test]
fn probe_runs_the_kernel_skipped_are_reported_where_the_kernel_counts_them() {
    const UPDATES: u32 = 50;
    let version = kernel_version();
    let trace = std::env::temp_dir().join(format!("skipped-{}.trace", std::process::id()));
    let trace_arg = trace.display().to_string();
    let args = [
        "record",
        "--json",
        "--no-detectors",
        "--function",
        "htab_map_update_elem",
        "--attach",
        "kprobe",
        "-o",
        &trace_arg,
    ];
    let stream = EventStream::start_with(&args, "calls");
    bpf_maps::hash_map_updates(UPDATES);
    let events = stream.stop();
    let registry = events
        .iter()
        .rev()
        .find(|e| e["type"] == "registry")
        .unwrap();
    let report = modscope_report(&trace);
    let _ = std::fs::remove_file(&trace);
    // The trace's own end, read a moment apart from the registry's line.
    for (what, skipped) in [
        ("the session", &registry["stats"]["skipped_runs"]),
        ("the trace", &report["sessions"][0]["stats"]["skipped_runs"]),
    ] {
        let skipped = skipped
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: {skipped}"));
        if version >= (6, 7) {
            assert!(
                skipped >= u64::from(UPDATES),
                "{what}: {skipped} skipped runs for {UPDATES} map updates"
            );
        } else {
            assert_eq!(
                skipped, 0,
                "{what}: kernel {version:?} counts no skipped kprobe runs"
            );
        }
    }
}
