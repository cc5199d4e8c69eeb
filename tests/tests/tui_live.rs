//! The live TUI in a real terminal inside the guest: `modscope live` under
//! tmux while a test module loads, is driven, and unloads.

use std::time::Duration;

use vm_tests::{tmux::Tmux, *};

const CALLS: &str = "modscope_calls";
const START: Duration = Duration::from_secs(120);

fn row<'a>(pane: &'a str, name: &str) -> &'a str {
    // A table row: the border, the 12-column verdict, a space, the name.
    pane.lines()
        .find(|l| {
            l.starts_with('│')
                && l.chars()
                    .skip(14)
                    .collect::<String>()
                    .starts_with(&format!("{name} "))
        })
        .unwrap_or_else(|| panic!("no row for {name}:\n{pane}"))
}

#[test]
fn the_live_tui_shows_a_module_load_work_and_unload() {
    if !output_kernel("the live TUI") {
        return;
    }
    let expected = modscope_check(&module_file(CALLS));
    let verdict = match expected["verdict"].as_str().unwrap() {
        "incompatible" => "unsafe",
        v => v,
    }
    .to_owned();
    let cmd = format!(
        "{} live --watch {} ; echo MODSCOPE-EXITED $?; sleep 60",
        modscope_bin().display(),
        module_file(CALLS).display()
    );
    let t = Tmux::start("live", &cmd, 100, 30);
    // The header names the running kernel once the probes are attached.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let pane = t.wait_for_within(&format!("modscope live · {}", release.trim()), START);
    // How the functions were probed: fentry, one kprobe_multi link, or a
    // kprobe each.
    assert!(
        ["fentry", "kprobe_multi", "kprobe"]
            .iter()
            .any(|t| pane.contains(&format!("functions by {t},"))),
        "{pane}"
    );
    // Only the test module in the table (the guest has some 50 modules).
    t.keys(&["/"]);
    for c in CALLS.chars() {
        t.keys(&[&c.to_string()]);
    }
    t.keys(&["Enter"]);
    t.wait_for("Modules 0 ·");
    let loaded = insmod(CALLS, &[]);
    let pane = t.wait_for("Modules 1 ·");
    let r = row(&pane, CALLS);
    assert!(
        r.contains(&verdict),
        "verdict {verdict} as `check` says: {pane}"
    );
    assert!(r.contains("OE"), "taints: {r}");
    std::fs::write(format!("/sys/module/{CALLS}/parameters/trigger"), "250").unwrap();
    // Counts arrive with the next tick; the detail shows exact numbers.
    t.keys(&["Enter"]);
    let pane = t.wait_for("1,250");
    assert!(pane.contains("kstrdup") && pane.contains("kfree"), "{pane}");
    assert!(pane.contains("Static reasons"), "{pane}");
    t.keys(&["Escape"]);
    loaded.unload();
    let pane = t.wait_for("unloaded ");
    assert!(row(&pane, CALLS).contains("unloaded"), "{pane}");
    t.keys(&["q"]);
    let pane = t.wait_for_within("MODSCOPE-EXITED 0", START);
    assert!(!pane.contains("Modules"), "terminal restored: {pane}");
}
