//! The real `modscope` binary on the host. CI's host kernel has no module
//! support, which is exactly the case these tests pin down; on a kernel
//! with modules they check the other branch instead.

use std::process::Command;

fn modscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_modscope"))
        .args(args)
        .output()
        .expect("running modscope")
}

#[test]
fn live_events_explain_a_kernel_without_modules() {
    let out = modscope(&["events", "--json", "--duration", "0.5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stdout.is_empty(),
        "no events can exist: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    if std::path::Path::new("/proc/modules").exists() {
        // Modules exist here: it either streams for half a second or fails for a reason it names.
        assert_ne!(out.status.code(), Some(3), "{stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("without CONFIG_MODULES"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = modscope(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unrecognized subcommand"));
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("modscope-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_reports_bad_files_and_keeps_going() {
    let dir = tmp("bad");
    let mut config: String = (0..20).map(|i| format!("CONFIG_OPTION_{i}=y\n")).collect();
    config.insert_str(0, "CONFIG_SMP=y\nCONFIG_MODVERSIONS=y\ngarbage here\n");
    std::fs::write(dir.join("config"), config).unwrap();
    std::fs::write(
        dir.join("symvers"),
        "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n",
    )
    .unwrap();
    std::fs::write(dir.join("truncated.ko"), b"\x7fELF\x02\x01\x01").unwrap();
    std::fs::write(dir.join("text.ko"), b"not a module").unwrap();
    std::fs::write(
        dir.join("bad.ko.xz"),
        [0xfd, b'7', b'z', b'X', b'Z', 0, 9, 9],
    )
    .unwrap();
    let out = modscope(&[
        "check",
        "--json",
        "--kernel",
        "6.1.0-test",
        "--config",
        dir.join("config").to_str().unwrap(),
        "--symvers",
        dir.join("symvers").to_str().unwrap(),
        "--btf",
        "/nonexistent",
        dir.to_str().unwrap(),
        "/nonexistent/module.ko",
    ]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "bad input is its own exit status"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = v["errors"].as_array().unwrap();
    let find = |name: &str| {
        errors
            .iter()
            .find(|e| e["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("no error for {name}: {errors:#?}"))["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(find("truncated.ko").contains("corrupt ELF"));
    assert_eq!(find("text.ko"), "not an ELF file");
    assert!(find("bad.ko.xz").contains("bad xz compression"));
    assert!(find("module.ko").contains("cannot read"));
    assert_eq!(v["summary"]["unreadable"], 4);
    let warnings = v["target"]["warnings"].as_array().unwrap();
    assert!(
        warnings[0].as_str().unwrap().contains("line 3"),
        "{warnings:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("malformed line"));
}

#[test]
fn check_with_a_missing_symvers_names_it() {
    let dir = tmp("nosymvers");
    std::fs::write(dir.join("config"), "CONFIG_SMP=y\n").unwrap();
    let out = modscope(&[
        "check",
        "--config",
        dir.join("config").to_str().unwrap(),
        "--symvers",
        dir.join("missing").to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Module.symvers") && stderr.contains("missing"),
        "{stderr}"
    );
}

#[test]
fn a_config_that_is_mostly_garbage_is_refused() {
    let dir = tmp("garbage");
    std::fs::write(
        dir.join("config"),
        "CONFIG_SMP=y\n\x01\x02garbage\nmore garbage\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("symvers"),
        "0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n",
    )
    .unwrap();
    let out = modscope(&[
        "check",
        "--json",
        "--config",
        dir.join("config").to_str().unwrap(),
        "--symvers",
        dir.join("symvers").to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(6));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON even on error");
    assert!(
        v["error"].as_str().unwrap().contains("2 malformed lines"),
        "{v}"
    );
}

fn sample_trace(path: &std::path::Path) -> Vec<u8> {
    use modscope::trace::{TraceWriter, samples};
    let mut w = TraceWriter::create(path).unwrap();
    for r in samples::all() {
        w.write(&r);
    }
    w.flush().unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn report_reads_a_trace_as_json() {
    let path = tmp("report").join("t.trace");
    sample_trace(&path);
    let out = modscope(&["report", "--json", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], true);
    let m = &v["sessions"][0]["modules"][0];
    assert_eq!(m["name"], "m");
    assert_eq!(m["calls"][0]["symbol"], "kstrdup");
    assert_eq!(m["calls"][0]["count"], 1000);
    assert_eq!(m["init_counted"], true);
    assert_eq!(m["unprobed_imports"][0], "_printk");
}

#[test]
fn report_skips_damage_and_says_so() {
    let path = tmp("damaged").join("t.trace");
    let mut bytes = sample_trace(&path);
    // Corrupt one byte inside the counts record, and cut the last record short.
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&path, &bytes).unwrap();
    let out = modscope(&["report", "--json", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["complete"], false);
    assert_eq!(v["damage"].as_array().unwrap().len(), 2, "{v}");
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(stderr.contains("cut short"), "{stderr}");
    assert!(v["records"].as_u64().unwrap() >= 5, "{v}");
}

#[test]
fn report_refuses_a_file_that_is_not_a_trace() {
    let path = tmp("nottrace").join("notes.txt");
    std::fs::write(&path, "hello").unwrap();
    let out = modscope(&["report", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a modscope trace"));
    let out = modscope(&["report", "/nonexistent/t.trace"]);
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/t.trace"));
}

#[test]
fn modscope_without_arguments_explains_why_the_live_tui_cannot_run_here() {
    if std::path::Path::new("/proc/modules").exists() {
        // A kernel with modules: the live TUI could start; not this test's case.
        return;
    }
    let out = modscope(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the live TUI cannot run here"), "{stderr}");
    assert!(stderr.contains("without CONFIG_MODULES"), "{stderr}");
    assert!(
        stderr.contains("modscope check") && stderr.contains("modscope replay"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn replay_needs_a_terminal_and_says_so() {
    let out = modscope(&["replay", "/nonexistent.trace"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not a terminal"), "{stderr}");
    assert!(stderr.contains("modscope report"), "{stderr}");
}
