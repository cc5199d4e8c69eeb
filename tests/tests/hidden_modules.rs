//! Modules that hide: a test module that takes itself off the kernel's
//! module list during init (`list_del`, a rootkit's move) is reported with
//! the evidence, whether modscope saw it load or it hid before modscope
//! started (then by its calls from memory no module owns).

use std::time::Duration;

use serde_json::Value;
use vm_tests::*;

const HIDE: &str = "modscope_hide";
const WAIT: Duration = Duration::from_secs(90);

/// The hiding module, loaded; put back on the list and unloaded when
/// dropped (also when a test panics), so the guest's later tests see a
/// clean kernel.
struct Hidden;

impl Hidden {
    fn load() -> Self {
        load_module_file(&module_file(HIDE), false)
            .unwrap_or_else(|e| panic!("loading {HIDE}: {e}"));
        Hidden
    }
}

impl Drop for Hidden {
    fn drop(&mut self) {
        let _ = std::fs::write(format!("/sys/module/{HIDE}/parameters/show"), "1");
        let _ = unload_module(HIDE);
    }
}

/// The views and the unowned calls do not depend on the kernel's flavour
/// (`generic_kernel`); the PREEMPT_RT and lock-debugging guests run the
/// reload test's check that loads and unloads give no finding.
fn generic_only() -> bool {
    generic_kernel("modules that hide")
}

fn write_param(param: &str, value: &str) {
    let path = format!("/sys/module/{HIDE}/parameters/{param}");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("writing {value} to {path}: {e}"));
}

fn in_proc_modules(name: &str) -> bool {
    std::fs::read_to_string("/proc/modules")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

fn is_finding(e: &Value, detector: &str) -> bool {
    e["type"] == "anomaly" && e["detector"] == detector && e["module"] == HIDE
}

fn record(trace: &std::path::Path) -> EventStream {
    let args = [
        "record",
        "--json",
        "--function",
        "get_random_u32",
        "-o",
        &trace.display().to_string(),
    ];
    EventStream::start_with(&args, "calls")
}

#[test]
fn hidden_module_unlinked_while_watched_is_reported_with_the_evidence() {
    if !generic_only() {
        return;
    }
    let trace = std::env::temp_dir().join("modscope-hidden-watched.trace");
    let mut stream = record(&trace);
    let hidden = Hidden::load();
    assert!(
        !in_proc_modules(HIDE),
        "the module took itself off the list"
    );
    assert!(
        std::path::Path::new(&format!("/sys/module/{HIDE}/initstate")).exists(),
        "its kobject stays"
    );
    let load = stream.wait_for(WAIT, |e| e["type"] == "load" && e["name"] == HIDE);
    let found = stream.wait_for(WAIT, |e| is_finding(e, "hidden_module"));
    assert_eq!(
        found["incarnation"], load["incarnation"],
        "the finding is the incarnation modscope saw load: {found:#}"
    );
    let evidence = found["caller_offset"].as_str().unwrap();
    assert!(
        evidence
            .starts_with("listed by modscope's registry, /sys/module; missing from /proc/modules"),
        "{evidence}"
    );
    // Debian's x86-64 kernels list data symbols (KALLSYMS_ALL): the module
    // list itself is walked, and it is missing there too.
    if std::env::consts::ARCH == "x86_64" {
        assert!(
            evidence.ends_with("missing from /proc/modules, the kernel's module list"),
            "{evidence}"
        );
    }
    // Its calls are its own: counted, not unowned.
    write_param("trigger", "1000");
    std::thread::sleep(Duration::from_secs(3));
    let events = stream.stop();
    drop(hidden);
    assert!(
        !events.iter().any(|e| is_finding(e, "unowned_module_code")),
        "calls from a module modscope saw load are attributed to it"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| is_finding(e, "hidden_module"))
            .count(),
        1,
        "reported once"
    );
    let report = modscope_report(&trace);
    let module = report_module(&report, HIDE);
    assert!(
        module["anomalies"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["detector"] == "hidden_module"),
        "{module:#}"
    );
    assert_eq!(module["runtime_verdict"], "incompatible", "{module:#}");
}

#[test]
fn hidden_module_loaded_before_modscope_is_found_by_its_calls() {
    if !generic_only() {
        return;
    }
    let hidden = Hidden::load();
    let trace = std::env::temp_dir().join("modscope-hidden-before.trace");
    let mut stream = record(&trace);
    write_param("trigger", "5000");
    let found = stream.wait_for(WAIT, |e| is_finding(e, "hidden_module"));
    assert_eq!(found["incarnation"], 0, "modscope never saw it load");
    let evidence = found["caller_offset"].as_str().unwrap();
    assert!(
        evidence
            .starts_with("listed by /sys/module; missing from modscope's registry, /proc/modules"),
        "{evidence}"
    );
    let calls = stream.wait_for(WAIT, |e| is_finding(e, "unowned_module_code"));
    assert_eq!(calls["symbol"], "get_random_u32", "{calls:#}");
    // The return address is in the module's text, as sysfs places it.
    let text = parse_hex(sys_module(HIDE, "sections/.text").trim());
    let size: u64 = sys_module(HIDE, "coresize").trim().parse().unwrap();
    let caller = parse_hex(calls["caller"].as_str().unwrap());
    assert!(
        (text..text + size).contains(&caller),
        "{caller:#x} in [{text:#x}, +{size:#x})"
    );
    stream.stop();
    drop(hidden);
    let report = modscope_report(&trace);
    let load_anomalies = report["sessions"][0]["load_anomalies"].as_array().unwrap();
    assert!(
        load_anomalies
            .iter()
            .any(|a| a["detector"] == "hidden_module" && a["module"] == HIDE),
        "{load_anomalies:#?}"
    );
    // The site with its count as the session ended: every call seen.
    let site = load_anomalies
        .iter()
        .find(|a| a["detector"] == "unowned_module_code")
        .unwrap_or_else(|| panic!("the unowned site in the report: {load_anomalies:#?}"));
    assert_eq!(site["count"], 5000, "{site:#}");
    assert_eq!(site["module"], HIDE, "sysfs places the site: {site:#}");
}

#[test]
fn hidden_module_is_reported_by_the_guard_too() {
    if !generic_only() {
        return;
    }
    // Audit: the guard allows the load whatever attached (BPF-LSM or its
    // kprobe fallback), and its session compares the views all the same.
    let mut stream = EventStream::start_with(
        &["guard", "--json", "--no-module-tree", "--policy", "audit"],
        "registry",
    );
    stream.wait_for(WAIT, |e| e["type"] == "guard_ready");
    let hidden = Hidden::load();
    let found = stream.wait_for(WAIT, |e| is_finding(e, "hidden_module"));
    let evidence = found["caller_offset"].as_str().unwrap();
    assert!(
        evidence.contains("missing from /proc/modules"),
        "{evidence}"
    );
    assert_ne!(found["incarnation"], 0, "the guard's registry saw it load");
    stream.stop();
    drop(hidden);
}
