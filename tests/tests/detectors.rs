//! The in-kernel anomaly detectors, on every kernel of the suite: a clean
//! module triggers none; each detector's test module triggers exactly one
//! anomaly (one call site) with exact counts; on the lock-debugging kernel,
//! modules built for the generic kernel and force-loaded are flagged before
//! or as the kernel itself complains.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use vm_tests::*;

const WAIT: Duration = Duration::from_secs(60);

fn record(watch: &[PathBuf], trace: Option<&std::path::Path>) -> EventStream {
    let mut args: Vec<String> = vec!["record".into(), "--json".into()];
    for m in watch {
        args.push("--watch".into());
        args.push(m.display().to_string());
    }
    if let Some(t) = trace {
        args.push("-o".into());
        args.push(t.display().to_string());
    }
    EventStream::start_with(&args, "calls")
}

fn anomalies_of<'a>(events: &'a [Value], module: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["type"] == "anomaly" && e["module"] == module)
        .collect()
}

/// The exit summary's sites for `module`.
fn final_sites<'a>(events: &'a [Value], module: &str) -> Vec<&'a Value> {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == "anomalies")
        .expect("an anomalies summary at exit")["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["module"] == module)
        .collect()
}

/// How many functions the detectors watch ("kprobe/check_fields xN").
fn checked_functions(events: &[Value]) -> u64 {
    let ready = events.iter().find(|e| e["type"] == "ready").unwrap();
    ready["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str()?.strip_prefix("kprobe/check_fields x"))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// Loads `file`, unloads it, and returns the whole event stream.
fn load_and_unload(file: &std::path::Path, name: &str, force: bool) -> Vec<Value> {
    let mut stream = record(&[file.to_owned()], None);
    if let Err(e) = load_module_file(file, force) {
        panic!("insmod {}: {e}", file.display());
    }
    rmmod(name);
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == name);
    stream.stop()
}

#[test]
fn a_clean_module_triggers_no_anomaly() {
    let events = load_and_unload(&module_file("modscope_clean"), "modscope_clean", false);
    let watched = checked_functions(&events);
    assert!(watched >= 1, "the detectors are attached");
    if flavour() == "debug" {
        assert!(
            watched >= 4,
            "lock debugging: spinlock and mutex acquisitions are checked too ({watched})"
        );
    }
    assert_eq!(
        anomalies_of(&events, "modscope_clean"),
        Vec::<&Value>::new()
    );
    assert!(final_sites(&events, "modscope_clean").is_empty());
    // The locks were really taken under the probes (not a vacuous pass).
    let calls = events.iter().rev().find(|e| e["type"] == "calls").unwrap();
    let m = calls["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "modscope_clean")
        .unwrap_or_else(|| panic!("no calls for modscope_clean: {calls:#}"));
    let total: u64 = m["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert!(total >= 2000, "{m:#}");
}

#[test]
fn a_tracepoint_registration_is_one_anomaly_with_the_modules_taints() {
    let events = load_and_unload(
        &module_file("modscope_tracepoint"),
        "modscope_tracepoint",
        false,
    );
    let found = anomalies_of(&events, "modscope_tracepoint");
    assert_eq!(found.len(), 1, "{found:#?}");
    let a = found[0];
    assert_eq!(a["detector"], "tracepoint_probe");
    assert!(
        a["symbol"]
            .as_str()
            .unwrap()
            .starts_with("tracepoint_probe_register"),
        "{a:#}"
    );
    assert!(
        a["caller_offset"].as_str().unwrap().starts_with("init+"),
        "{a:#}"
    );
    assert_eq!(a["option"], "TRACEPOINTS");
    let message = a["message"].as_str().unwrap();
    assert!(
        message.contains("module_free"),
        "names the tracepoint: {a:#}"
    );
    assert!(
        message.contains("taints OE"),
        "out of tree, unsigned: {a:#}"
    );
    let sites = final_sites(&events, "modscope_tracepoint");
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0]["count"], 1);
}

/// Allocators followed for the object-bounds check ("kprobe+kretprobe/alloc xN").
fn followed_allocators(events: &[Value]) -> u64 {
    let ready = events.iter().find(|e| e["type"] == "ready").unwrap();
    ready["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str()?.strip_prefix("kprobe+kretprobe/alloc x"))
        .map(|n| n.parse::<u64>().unwrap())
        .sum()
}

/// A wait queue head sized as the generic kernels have it (24 bytes), at
/// the end of the module's allocation: past its end where the kernel's
/// wait_queue_head is bigger (PREEMPT_RT 48, lock debugging 80), inside it
/// on the generic kernels. The size comes from the kernel's BTF, the
/// allocation from following the module's kmalloc/krealloc.
#[test]
fn a_wait_queue_sized_for_the_generic_kernel_is_flagged_where_it_is_bigger() {
    let module = "modscope_waitqueue_small";
    let events = load_and_unload(&module_file(module), module, false);
    assert!(
        followed_allocators(&events) >= 2,
        "kmalloc's and krealloc's results are followed"
    );
    // Counted exactly, though each allocator also has a return probe
    // (whose entry swaps the return address for the kernel's trampoline).
    let calls = events
        .iter()
        .rev()
        .find(|e| e["type"] == "calls")
        .expect("a calls summary at exit")["modules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == module)
        .expect("the module's calls")["calls"]
        .as_array()
        .unwrap()
        .clone();
    let allocations: Vec<(&str, u64)> = calls
        .iter()
        .map(|c| (c["symbol"].as_str().unwrap(), c["count"].as_u64().unwrap()))
        .filter(|(s, _)| s.contains("kmalloc") || s.starts_with("krealloc"))
        .collect();
    assert_eq!(
        allocations.len(),
        2,
        "kmalloc's and krealloc's functions: {calls:#?}"
    );
    assert!(allocations.iter().all(|&(_, n)| n == 1), "{calls:#?}");
    // The free goes through count_free (count, forget the allocation).
    let frees: Vec<u64> = calls
        .iter()
        .filter(|c| c["symbol"] == "kfree")
        .map(|c| c["count"].as_u64().unwrap())
        .collect();
    assert_eq!(frees, [1], "the exit's kfree, counted once: {calls:#?}");
    let ready = events.iter().find(|e| e["type"] == "ready").unwrap();
    assert!(
        ready["probes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().unwrap().starts_with("kprobe/count_free x")),
        "{ready}"
    );
    let found = anomalies_of(&events, module);
    let option = match flavour().as_str() {
        "rt" => "PREEMPT_RT",
        "debug" => "DEBUG_SPINLOCK",
        _ => {
            assert_eq!(
                found,
                Vec::<&Value>::new(),
                "24 bytes is this kernel's size"
            );
            return;
        }
    };
    assert_eq!(found.len(), 1, "exactly one call site: {found:#?}");
    let a = found[0];
    assert_eq!(a["detector"], "object_bounds", "{a:#}");
    assert_eq!(a["symbol"], "__init_waitqueue_head", "{a:#}");
    assert_eq!(a["option"], option, "{a:#}");
    assert!(
        a["caller_offset"].as_str().unwrap().starts_with("init+"),
        "{a:#}"
    );
    let (size, room) = (
        parse_hex(a["expected"].as_str().unwrap()),
        parse_hex(a["observed"].as_str().unwrap()),
    );
    assert_eq!(room, 24, "the module left 24 bytes: {a:#}");
    assert!(size > 24, "this kernel's wait_queue_head is bigger: {a:#}");
    assert!(
        a["message"]
            .as_str()
            .unwrap()
            .contains("struct wait_queue_head"),
        "{a:#}"
    );
    let sites = final_sites(&events, module);
    assert_eq!(sites.len(), 1);
    assert_eq!(sites[0]["count"], 1);
}

/// The kernel log's time (seconds since boot) of the first line holding `needle`.
fn dmesg_time(needle: &str) -> Option<f64> {
    let out = Command::new("dmesg").output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.strip_prefix('[')?.split(']').next()?.trim().parse().ok())
}

/// Lockdep's `debug_locks`: the kernel's lock-debugging checks still run.
fn kernel_lock_checks_on() -> bool {
    std::fs::read_to_string("/proc/lockdep_stats")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.trim().strip_prefix("debug_locks:"))
        .is_some_and(|v| v.trim() == "1")
}

/// Runs a module compiled as without lock debugging, with a trace; on the
/// lock-debugging kernel it must be one anomaly site with exact counts,
/// before the kernel's own complaint; elsewhere (the layout it assumes is
/// the kernel's) none.
fn nodebug_module(
    module: &str,
    detector: &str,
    symbol: &str,
    option: &str,
    rounds: u64,
    kernel_says: &str,
) {
    let trace =
        PathBuf::from(std::env::var("MODSCOPE_VM_OUT").unwrap()).join(format!("{module}.trace"));
    let mut stream = record(&[module_file(module)], Some(&trace));
    let checks_were_on = kernel_lock_checks_on();
    let _loaded = insmod(module, &[]);
    stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == module);
    // A snapshot with the final counts, then stop.
    std::thread::sleep(Duration::from_millis(1500));
    let events = stream.stop();
    let found = anomalies_of(&events, module);
    if flavour() != "debug" {
        assert_eq!(
            found,
            Vec::<&Value>::new(),
            "this kernel has no lock debugging"
        );
        return;
    }
    assert_eq!(found.len(), 1, "exactly one call site: {found:#?}");
    let a = found[0];
    assert_eq!(a["detector"], detector, "{a:#}");
    assert_eq!(a["symbol"], symbol, "{a:#}");
    assert_eq!(a["option"], option, "{a:#}");
    assert!(
        a["caller_offset"].as_str().unwrap().starts_with("core+"),
        "the noinline helper is core text: {a:#}"
    );
    assert_ne!(a["expected"], a["observed"], "{a:#}");
    assert_ne!(a["object"], "0x0000000000000000", "{a:#}");
    if detector == "spinlock_magic" {
        assert_eq!(a["expected"], "0xdead4ead", "SPINLOCK_MAGIC: {a:#}");
    } else {
        assert_eq!(
            parse_hex(a["expected"].as_str().unwrap()),
            parse_hex(a["object"].as_str().unwrap()),
            "the mutex's own address: {a:#}"
        );
    }
    let sites = final_sites(&events, module);
    assert_eq!(sites.len(), 1);
    assert_eq!(
        sites[0]["count"], rounds,
        "every call, exactly: {:#}",
        sites[0]
    );

    // Before or as the kernel complains: the kprobe runs at the entry of
    // the very function whose debug check prints the complaint. The kernel
    // complains once per boot (its first lock-debugging error turns the
    // checks off), so only when its checks were still on.
    let ours = a["ktime_ns"].as_u64().unwrap() as f64 / 1e9;
    if checks_were_on {
        let theirs = dmesg_time(kernel_says)
            .unwrap_or_else(|| panic!("the kernel did not say {kernel_says:?}"));
        assert!(
            ours <= theirs + 0.001,
            "anomaly at {ours:.6} s, kernel complaint at {theirs:.6} s"
        );
    } else {
        eprintln!("an earlier lock-debugging error turned the kernel's checks off");
    }

    // The trace has the same site and count, for replay elsewhere.
    let report = modscope_report(&trace);
    let m = report_module(&report, module);
    assert_eq!(m["anomalies"].as_array().unwrap().len(), 1, "{m:#}");
    assert_eq!(m["anomalies"][0]["count"], rounds, "{m:#}");
    assert_eq!(m["anomalies"][0]["detector"], detector, "{m:#}");
}

#[test]
fn a_spinlock_compiled_without_lock_debugging_is_flagged_where_it_matters() {
    nodebug_module(
        "modscope_spinlock_nodebug",
        "spinlock_magic",
        "_raw_spin_lock",
        "DEBUG_SPINLOCK",
        1000,
        "spinlock bad magic",
    );
}

#[test]
fn a_mutex_compiled_without_lock_debugging_is_flagged_on_the_debug_kernel() {
    if flavour() != "debug" {
        eprintln!("its mutex layout is only safe to try on the lock-debugging kernel");
        return;
    }
    nodebug_module(
        "modscope_mutex_nodebug",
        "mutex_magic",
        "mutex_trylock",
        "DEBUG_MUTEXES",
        100,
        "lock->magic != lock",
    );
}

/// The lock-debugging kernel's struct module embeds a debug struct mutex
/// (`param_lock`), so every module built for the generic kernel has the
/// wrong `struct module`: the load-time check reports it before the
/// loader's own refusal (module_layout's CRC, without -f).
#[test]
fn a_generic_module_on_the_debug_kernel_is_flagged_at_load() {
    if flavour() != "debug" {
        eprintln!("not the lock-debugging kernel: nothing to cross-load");
        return;
    }
    let dir = std::env::var("MODSCOPE_SIBLING_MODULES").expect("the generic build, set by xtask");
    let file = PathBuf::from(dir).join("modscope_hello.ko");
    let mut stream = record(std::slice::from_ref(&file), None);
    let out = Command::new("insmod").arg(&file).output().unwrap();
    assert!(!out.status.success(), "the loader refuses it: {out:?}");
    let a = stream.wait_for(WAIT, |e| {
        e["type"] == "anomaly" && e["module"] == "modscope_hello"
    });
    let events = stream.stop();
    assert_eq!(a["detector"], "struct_module_size", "{a:#}");
    assert!(
        a["caller_offset"].as_str().unwrap().starts_with("insmod"),
        "{a:#}"
    );
    let (theirs, ours) = (
        parse_hex(a["expected"].as_str().unwrap()),
        parse_hex(a["observed"].as_str().unwrap()),
    );
    assert!(theirs > ours, "lock debugging grows struct module: {a:#}");
    assert_eq!(
        anomalies_of(&events, "modscope_hello").len(),
        1,
        "one load attempt, one anomaly"
    );
    let ours_t = a["ktime_ns"].as_u64().unwrap() as f64 / 1e9;
    let theirs_t = dmesg_time("disagrees about version of symbol module_layout")
        .expect("the loader's own refusal");
    assert!(ours_t <= theirs_t + 0.001, "{ours_t} vs {theirs_t}");
}

/// Where a kernel publishes no /sys/kernel/btf/vmlinux (vendor kernels),
/// `--btf FILE` supplies it: the same BTF as a raw file, and as the
/// headers' vmlinux ELF where the headers ship one (Debian's 6.12), gives
/// the same checks, the same call counts and the same anomaly.
#[test]
fn btf_given_as_a_file_gives_the_same_counts_and_anomalies() {
    let out = std::env::var("MODSCOPE_VM_OUT").expect("set by xtask");
    let raw = format!("{out}/vmlinux.btf");
    std::fs::copy("/sys/kernel/btf/vmlinux", &raw).unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let elf = format!("/lib/modules/{}/build/vmlinux", release.trim());
    let mut given = vec![raw];
    if std::path::Path::new(&elf).exists() {
        given.push(elf);
    }
    let baseline = tracepoint_session(None);
    assert_eq!(baseline.anomalies, 1, "{baseline:?}");
    for btf in &given {
        assert_eq!(tracepoint_session(Some(btf)), baseline, "--btf {btf}");
    }
    // The file is what is read: one that is not BTF is an error naming it.
    let bogus = format!("{out}/not-btf");
    std::fs::write(&bogus, b"not BTF at all").unwrap();
    let run = Command::new(modscope_bin())
        .args(["record", "--duration", "1", "--btf", &bogus])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success() && stderr.contains(&bogus), "{stderr}");
}

/// What one session with the tracepoint module saw.
#[derive(Debug, PartialEq, Eq)]
struct SessionSeen {
    checked_functions: u64,
    tracepoint_calls: u64,
    anomalies: usize,
}

fn tracepoint_session(btf: Option<&str>) -> SessionSeen {
    let name = "modscope_tracepoint";
    let mut args: Vec<String> = vec!["record".into(), "--json".into(), "--watch".into()];
    args.push(module_file(name).display().to_string());
    if let Some(b) = btf {
        args.extend(["--btf".into(), b.to_owned()]);
    }
    let mut stream = EventStream::start_with(&args, "calls");
    insmod(name, &[]).unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == name);
    let events = stream.stop();
    let calls = events.iter().rev().find(|e| e["type"] == "calls").unwrap();
    let tracepoint_calls = calls["modules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == name)
        .flat_map(|m| m["calls"].as_array().unwrap().iter())
        .filter(|c| {
            c["symbol"]
                .as_str()
                .unwrap()
                .starts_with("tracepoint_probe")
        })
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    SessionSeen {
        checked_functions: checked_functions(&events),
        tracepoint_calls,
        anomalies: anomalies_of(&events, name).len(),
    }
}
