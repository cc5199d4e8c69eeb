//! `modscope check`'s prediction of the loader against the loader itself:
//! every test module, built for this kernel and for its other flavour
//! (generic <-> PREEMPT_RT, same release), loaded with and without -f.

use std::path::PathBuf;

use serde_json::Value;
use vm_tests::*;

const MODULES: [&str; 3] = ["modscope_hello", "modscope_mutex", "modscope_proprietary"];

fn predicted(report: &Value, force: bool) -> Result<(), String> {
    let key = if force { "insmod_force" } else { "insmod" };
    match &report["loader"][key] {
        Value::Null => Ok(()),
        Value::String(e) => Err(e.clone()),
        other => panic!("loader.{key} is {other}"),
    }
}

fn compare(dir: &std::path::Path) -> Vec<(String, Value)> {
    let mut reports = Vec::new();
    for name in MODULES {
        let path = dir.join(format!("{name}.ko"));
        let report = modscope_check(&path);
        for force in [false, true] {
            let actual = try_insmod(&path, force);
            assert_eq!(
                predicted(&report, force),
                actual,
                "{} (insmod{}): modscope predicted otherwise; its reasons: {:#}",
                path.display(),
                if force { " -f" } else { "" },
                report["reasons"]
            );
        }
        eprintln!(
            "{}: {} / {}",
            path.display(),
            report["verdict"],
            report["loader"]
        );
        reports.push((name.to_owned(), report));
    }
    reports
}

#[test]
fn own_flavour_modules_load_as_predicted() {
    let reports = compare(&PathBuf::from(
        std::env::var("MODSCOPE_TEST_MODULES").expect("set by xtask"),
    ));
    for (name, report) in reports {
        assert_eq!(report["kernel_would_refuse"], false, "{name}: {report:#}");
        assert_ne!(report["verdict"], "incompatible", "{name}: {report:#}");
    }
}

#[test]
fn other_flavour_modules_load_or_fail_as_predicted() {
    let Ok(dir) = std::env::var("MODSCOPE_SIBLING_MODULES") else {
        eprintln!(
            "this kernel has no other flavour of its release installed; nothing to cross-load"
        );
        return;
    };
    let reports = compare(&PathBuf::from(dir));
    // The harmless difference: vermagic (preempt model) differs, every
    // symbol it imports has the same CRC: refused without -f, loads with it.
    let plain = &reports[2].1;
    assert_eq!(plain["kernel_would_refuse"], true, "{plain:#}");
    assert_eq!(plain["loader"]["insmod_force"], Value::Null, "{plain:#}");
    assert_eq!(plain["verdict"], "warning", "{plain:#}");
    // Lock and parameter APIs whose CRCs differ between the flavours.
    for (name, report) in &reports[..2] {
        assert_eq!(report["verdict"], "incompatible", "{name}: {report:#}");
        let crc = report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["code"] == "CRC_MISMATCH" || r["code"] == "UNKNOWN_SYMBOL");
        assert!(crc, "{name}: {report:#}");
    }
}
