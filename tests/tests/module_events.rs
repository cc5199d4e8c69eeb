//! `modscope events` against real module loads in a real kernel.

use std::time::Duration;

use vm_tests::*;

const HELLO: &str = "modscope_hello";
const PROPRIETARY: &str = "modscope_proprietary";
const WAIT: Duration = Duration::from_secs(30);

#[test]
fn one_load_and_one_unload_event_with_the_proc_modules_address() {
    let mut stream = EventStream::start();
    let loaded = insmod(HELLO, &[]);
    let address = proc_modules_address(HELLO);
    stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == HELLO);
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == HELLO);
    let events = stream.stop();

    let loads = events_for(&events, "load", HELLO);
    let unloads = events_for(&events, "unload", HELLO);
    assert_eq!(loads.len(), 1, "{loads:#?}");
    assert_eq!(unloads.len(), 1, "{unloads:#?}");
    assert_eq!(hex_field(loads[0], &["core_text", "base"]), address);
    assert!(loads[0]["core_text"]["size"].as_u64().unwrap() > 0);
    // The unload names the same incarnation the load did.
    assert_eq!(unloads[0]["struct_module"], loads[0]["struct_module"]);
    assert_eq!(unloads[0]["loaded_ktime_ns"], loads[0]["ktime_ns"]);
    assert!(unloads[0]["ktime_ns"].as_u64() > loads[0]["ktime_ns"].as_u64());
    assert!(
        registry_entries(&events, HELLO).is_empty(),
        "unloaded module left in the registry"
    );
}

#[test]
fn ranges_are_registered_before_init_runs() {
    let mut stream = EventStream::start();
    let loaded = insmod(HELLO, &[]);
    let load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == HELLO);
    let init_ran_ns = module_param_u64(HELLO, "init_boot_ns");
    let init_fn = module_param_u64(HELLO, "init_fn");
    let core_fn = module_param_u64(HELLO, "core_fn");
    loaded.unload();
    stream.stop();

    let seen_ns = load["ktime_ns"].as_u64().unwrap();
    assert!(
        seen_ns < init_ran_ns,
        "load seen at {seen_ns}, init ran at {init_ran_ns}: not before init"
    );
    let within = |addr: u64, range: &str| {
        let base = hex_field(&load, &[range, "base"]);
        let size = load[range]["size"].as_u64().unwrap();
        assert!(
            (base..base + size).contains(&addr),
            "{addr:#x} is outside {range} {base:#x}+{size:#x}"
        );
    };
    within(init_fn, "init_text");
    within(core_fn, "core_text");
}

#[test]
fn taint_letters_match_the_kernel() {
    let mut stream = EventStream::start();
    let proprietary = insmod(PROPRIETARY, &[]);
    let kernel_says = sys_module(PROPRIETARY, "taint");
    let load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == PROPRIETARY);
    proprietary.unload();
    let forced = insmod(HELLO, &["-f"]);
    let kernel_says_forced = sys_module(HELLO, "taint");
    let forced_load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == HELLO);
    forced.unload();
    stream.stop();

    assert_eq!(load["taints"], kernel_says.as_str());
    // Out of tree (O) and, with a non-GPL licence, proprietary (P).
    assert!(
        kernel_says.contains('P') && kernel_says.contains('O'),
        "{kernel_says}"
    );
    assert_eq!(forced_load["taints"], kernel_says_forced.as_str());
    assert!(
        kernel_says_forced.contains('F'),
        "insmod -f did not taint F: {kernel_says_forced}"
    );
}

#[test]
fn reload_keeps_the_registry_correct() {
    let mut stream = EventStream::start();
    let first = insmod(HELLO, &[]);
    let first_address = proc_modules_address(HELLO);
    first.unload();
    let second = insmod(HELLO, &[]);
    let second_address = proc_modules_address(HELLO);
    stream.wait_until(WAIT, |events| events_for(events, "load", HELLO).len() == 2);
    // The registry is read at stop, while the second incarnation is live.
    let events = stream.stop();
    second.unload();

    let loads = events_for(&events, "load", HELLO);
    assert_eq!(loads.len(), 2, "{loads:#?}");
    assert_eq!(events_for(&events, "unload", HELLO).len(), 1);
    assert_eq!(hex_field(loads[0], &["core_text", "base"]), first_address);
    assert_eq!(hex_field(loads[1], &["core_text", "base"]), second_address);
    let entries = registry_entries(&events, HELLO);
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(
        hex_field(entries[0], &["core_text", "base"]),
        second_address
    );
    assert_eq!(entries[0]["loaded_ktime_ns"], loads[1]["ktime_ns"]);
    eprintln!(
        "address {} on reload ({first_address:#x} then {second_address:#x})",
        if first_address == second_address {
            "reused"
        } else {
            "not reused"
        }
    );
}

#[test]
fn modules_loaded_before_start_are_seeded() {
    let loaded = insmod(HELLO, &[]);
    let address = proc_modules_address(HELLO);
    let mut stream = EventStream::start();
    loaded.unload();
    stream.wait_for(WAIT, |e| e["type"] == "unload" && e["name"] == HELLO);
    let events = stream.stop();

    let present = events_for(&events, "present", HELLO);
    assert_eq!(present.len(), 1, "{present:#?}");
    assert_eq!(present[0]["preexisting"], true);
    assert_eq!(hex_field(present[0], &["core_text", "base"]), address);
    let unloads = events_for(&events, "unload", HELLO);
    assert_eq!(unloads.len(), 1);
    assert_eq!(hex_field(unloads[0], &["core_text", "base"]), address);
    assert!(registry_entries(&events, HELLO).is_empty());
}

#[test]
fn unprivileged_user_is_told_which_capability_is_missing() {
    let out = modscope_unprivileged(&["events", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "stderr: {stderr}");
    assert!(stderr.contains("CAP_BPF"), "{stderr}");
    assert!(out.stdout.is_empty(), "printed events without privileges");
}

#[test]
fn probe_diagnostics_follow_the_log_level() {
    let mut stream =
        EventStream::start_with(&["events", "--json", "--log-level", "debug"], "registry");
    let stderr = stream.stderr();
    let loaded = insmod(HELLO, &[]);
    let load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == HELLO);
    loaded.unload();
    stream.stop();
    let said = format!(
        "modscope: probe debug: module_load: registered incarnation {} before its init",
        load["incarnation"]
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !stderr.lock().unwrap().contains(&said) {
        assert!(
            std::time::Instant::now() < deadline,
            "no {said:?} on stderr:\n{}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Off by default: the programs say nothing.
    let mut quiet = EventStream::start();
    let stderr = quiet.stderr();
    let loaded = insmod(HELLO, &[]);
    quiet.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == HELLO);
    loaded.unload();
    quiet.stop();
    std::thread::sleep(Duration::from_millis(200));
    let text = stderr.lock().unwrap().clone();
    assert!(!text.contains("modscope: probe"), "{text}");
}
