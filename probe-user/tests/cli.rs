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

/// A target directory with the fixtures' config and Module.symvers, and a
/// good and an incompatible module in `modules/`.
fn target_dir(name: &str) -> std::path::PathBuf {
    use modscope_analysis::fixtures::{self, Ko};
    let dir = tmp(name);
    std::fs::write(dir.join(".config"), fixtures::CONFIG).unwrap();
    std::fs::write(dir.join("Module.symvers"), fixtures::SYMVERS).unwrap();
    let modules = dir.join("modules");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::write(modules.join("good.ko"), Ko::good().build()).unwrap();
    // Built against another mutex_lock: the loader refuses its CRC.
    let foreign = Ko::good().import("mutex_lock", Some(0xdead));
    std::fs::write(modules.join("foreign.ko"), foreign.build()).unwrap();
    dir
}

/// `check` against `target_dir`'s kernel; `extra` may give its own
/// `--config` or `--symvers` instead.
fn check_in(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let config = dir.join(".config");
    let symvers = dir.join("Module.symvers");
    let mut args = vec!["check", "--kernel", modscope_analysis::fixtures::RELEASE];
    for (flag, file) in [("--config", &config), ("--symvers", &symvers)] {
        if !extra.contains(&flag) {
            args.extend([flag, file.to_str().unwrap()]);
        }
    }
    args.extend_from_slice(extra);
    modscope(&args)
}

#[test]
fn exit_statuses_combine_so_no_outcome_hides_another() {
    let dir = target_dir("status");
    let good = dir.join("modules/good.ko");
    let foreign = dir.join("modules/foreign.ko");
    let status = |paths: &[&std::path::Path]| {
        let paths: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        let out = check_in(&dir, &paths);
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        out.status.code()
    };
    let missing = std::path::Path::new("/nonexistent/x.ko");
    assert_eq!(status(&[&good]), Some(0));
    assert_eq!(status(&[&good, &foreign]), Some(5), "incompatible");
    assert_eq!(status(&[&good, missing]), Some(6), "bad input");
    assert_eq!(status(&[&foreign, missing]), Some(7), "both: 4 + 1 + 2");
}

#[test]
fn target_inputs_that_are_empty_or_not_what_they_claim_are_refused_by_name() {
    let dir = target_dir("claims");
    let good = dir.join("modules/good.ko");
    let good = good.to_str().unwrap();
    let not_btf = dir.join("not-btf");
    std::fs::write(&not_btf, "hello").unwrap();
    let cases: [(&[&str], &str); 3] = [
        (&["--btf", not_btf.to_str().unwrap()], "not-btf"),
        (&["--symvers", "/dev/null"], "/dev/null"),
        (&["--config", "/dev/null"], "/dev/null"),
    ];
    for (flags, named) in cases {
        let mut args = flags.to_vec();
        args.push(good);
        let out = check_in(&dir, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{flags:?}: {stderr}");
        assert!(stderr.contains(named), "{flags:?}: {stderr}");
        assert!(
            out.stdout.is_empty(),
            "{flags:?}: no verdict on a bad target"
        );
    }
}

#[test]
fn a_directory_without_modules_is_bad_input_not_zero_compatible() {
    let dir = target_dir("empty");
    let empty = dir.join("nothing-here");
    std::fs::create_dir_all(&empty).unwrap();
    let out = check_in(&dir, &["--json", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = v["errors"][0]["error"].as_str().unwrap();
    assert!(error.contains("no module files"), "{v}");
}

#[test]
fn check_says_which_checks_it_skipped() {
    let dir = target_dir("skipped");
    let out = check_in(&dir, &[dir.join("modules").to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // No BTF for this release: the struct module size check cannot run.
    assert!(stdout.contains("skipped:"), "{stdout}");
    assert!(stdout.contains("struct module"), "{stdout}");
}

#[test]
fn a_full_stdout_is_one_error_line_and_exit_1() {
    let dir = target_dir("full");
    let modules = dir.join("modules");
    for json in [false, true] {
        let mut args = vec![modules.to_str().unwrap()];
        if json {
            args.push("--json");
        }
        let config = dir.join(".config");
        let symvers = dir.join("Module.symvers");
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_modscope"))
            .args(["check", "--config", config.to_str().unwrap()])
            .args(["--symvers", symvers.to_str().unwrap()])
            .args(&args)
            .stdout(full)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "json={json}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("writing to standard output"), "{stderr}");
        assert_eq!(
            stderr.lines().filter(|l| !l.contains("warning")).count(),
            1,
            "{stderr}"
        );
    }
}

#[test]
fn arguments_echoed_in_errors_are_sanitised() {
    let out = modscope(&["check", "--kernel", "evil\x1b[2J\x07", "/nonexistent.ko"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("evil"), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
}

#[test]
fn diff_names_its_own_way_to_give_a_missing_input() {
    let dir = target_dir("diffhint");
    let bare = tmp("diffhint-bare");
    std::fs::write(bare.join(".config"), modscope_analysis::fixtures::CONFIG).unwrap();
    let out = modscope(&["diff", dir.to_str().unwrap(), bare.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("Module.symvers"), "{stderr}");
    assert!(
        !stderr.contains("--symvers"),
        "diff has no --symvers: {stderr}"
    );
    assert!(stderr.contains("directory holding"), "{stderr}");
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

#[test]
fn every_subcommand_help_ends_with_examples() {
    let top = modscope(&["--help"]);
    let top = String::from_utf8_lossy(&top.stdout);
    let commands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 8, "{top}");
    for sub in commands {
        let out = modscope(&[sub, "--help"]);
        let help = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{sub}");
        let examples = help
            .find("Examples:")
            .unwrap_or_else(|| panic!("{sub}: {help}"));
        assert!(
            help[examples..].contains(&format!("modscope {sub} ")),
            "{sub}'s examples use {sub}: {help}"
        );
    }
}
