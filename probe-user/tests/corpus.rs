//! `modscope check` over every module installed for every Debian kernel on
//! this machine, against its own kernel: no crash, no unreadable file, and
//! every module compatible. `cargo xtask test` installs the kernels and
//! runs this; plain `cargo test` skips it.

use std::process::Command;

#[test]
#[ignore = "needs the Debian kernels that `cargo xtask setup` installs; `cargo xtask test` runs it"]
fn every_installed_module_is_compatible_with_its_own_kernel() {
    let mut releases: Vec<String> = std::fs::read_dir("/boot")
        .expect("listing /boot")
        .filter_map(Result::ok)
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_prefix("config-")
                .map(str::to_owned)
        })
        .filter(|r| {
            std::path::Path::new(&format!("/lib/modules/{r}/build/Module.symvers")).exists()
        })
        // The suite's lock-debugging build ships no modules of its own.
        .filter(|r| !r.ends_with("-modscope-debug"))
        .collect();
    releases.sort();
    assert!(
        releases.len() >= 3,
        "expected the generic, rt and 6.12 kernels, found {releases:?}"
    );
    for release in releases {
        let out = Command::new(env!("CARGO_BIN_EXE_modscope"))
            .args(["check", "--json", "--kernel", &release])
            .arg(format!("/lib/modules/{release}"))
            .output()
            .expect("running modscope check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{release}: {stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{release}: not JSON ({e}); stderr: {stderr}"));
        let s = &v["summary"];
        let files = v["modules"].as_array().unwrap().len();
        eprintln!("{release}: {files} modules, summary {s}");
        assert!(files > 3000, "{release}: only {files} modules found");
        assert_eq!(s["unreadable"], 0, "{release}: {:#}", v["errors"]);
        let not_ok: Vec<_> = v["modules"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["verdict"] != "compatible")
            .map(|m| (m["path"].clone(), m["reasons"].clone()))
            .take(5)
            .collect();
        assert!(not_ok.is_empty(), "{release}: {not_ok:#?}");
        assert_eq!(out.status.code(), Some(0), "{release}");
        assert_ne!(
            v["target"]["struct_module_size"],
            serde_json::Value::Null,
            "{release}: no BTF read"
        );
    }
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_modscope"))
        .args(args)
        .output()
        .expect("running modscope");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The generic and PREEMPT_RT releases of 6.1 installed here.
fn flavours() -> (String, String) {
    let mut generic = None;
    let mut rt = None;
    for entry in std::fs::read_dir("/boot")
        .expect("listing /boot")
        .filter_map(Result::ok)
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(release) = name.strip_prefix("config-") else {
            continue;
        };
        // Debian's own kernels only (not the suite's lock-debugging build).
        if !release.starts_with("6.1.") || !release.ends_with("-amd64") {
            continue;
        }
        if release.contains("-rt-") {
            rt = Some(release.to_owned())
        } else {
            generic = Some(release.to_owned())
        }
    }
    (
        generic.expect("a generic 6.1 kernel"),
        rt.expect("a PREEMPT_RT 6.1 kernel"),
    )
}

#[test]
#[ignore = "needs the Debian kernels that `cargo xtask setup` installs; `cargo xtask test` runs it"]
fn module_btf_shows_the_lock_structs_preempt_rt_changes() {
    let (generic, rt) = flavours();
    let fuse = format!("/lib/modules/{generic}/kernel/fs/fuse/fuse.ko");
    let v = json(&["check", "--json", "--kernel", &rt, &fuse]);
    let m = &v["modules"][0];
    assert_eq!(m["verdict"], "incompatible");
    let mutex = m["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["code"] == "BTF_STRUCT_LAYOUT" && r["struct"] == "mutex")
        .unwrap_or_else(|| panic!("no struct mutex layout reason: {:#}", m["reasons"]));
    assert_eq!(
        mutex["severity"], "incompatible",
        "fuse embeds a mutex by value: {mutex}"
    );
    assert!(
        mutex["message"].as_str().unwrap().contains("PREEMPT_RT"),
        "{mutex}"
    );
    // Against its own kernel the same file is clean.
    let own = json(&["check", "--json", "--kernel", &generic, &fuse]);
    assert_eq!(
        own["modules"][0]["verdict"], "compatible",
        "{:#}",
        own["modules"][0]
    );
}

#[test]
#[ignore = "needs the Debian kernels that `cargo xtask setup` installs; `cargo xtask test` runs it"]
fn diff_generic_to_rt_explains_itself() {
    let (generic, rt) = flavours();
    let v = json(&[
        "diff",
        "--json",
        &generic,
        &rt,
        &format!("/lib/modules/{generic}/kernel/fs/fuse"),
    ]);
    let d = &v["diff"];
    let preempt_rt = d["config"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["option"] == "CONFIG_PREEMPT_RT")
        .expect("PREEMPT_RT differs");
    assert_eq!(preempt_rt["b"], "y");
    assert_eq!(preempt_rt["layout_relevant"], true);
    assert!(
        d["crc_changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["symbol"] == "mutex_lock")
    );
    assert!(
        d["symbols_gone"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "__mutex_init")
    );
    let structs = d["structs_changed"].as_array().unwrap();
    assert_eq!(structs[0]["name"], "spinlock", "watched structs come first");
    assert!(structs.iter().any(|s| s["name"] == "mutex"));
    assert_eq!(v["modules"]["safe_to_reuse"].as_array().unwrap().len(), 0);
    assert_eq!(
        v["modules"]["affected"].as_array().unwrap().len(),
        3,
        "cuse, fuse and virtiofs"
    );
}

#[test]
#[ignore = "needs the Debian kernels that `cargo xtask setup` installs; `cargo xtask test` runs it"]
fn all_kernels_matrix_has_one_verdict_per_installed_kernel() {
    let (generic, rt) = flavours();
    let cuse = format!("/lib/modules/{generic}/kernel/fs/fuse/cuse.ko");
    let v = json(&["check", "--json", "--all-kernels", &cuse]);
    let kernels: Vec<String> = v["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert!(
        kernels.contains(&generic) && kernels.contains(&rt),
        "{kernels:?}"
    );
    let results = v["modules"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), kernels.len());
    let verdict =
        |k: &str| results.iter().find(|r| r["kernel"] == k).unwrap()["report"]["verdict"].clone();
    assert_eq!(verdict(&generic), "compatible");
    assert_eq!(verdict(&rt), "incompatible");
    // A bigger struct module: 6.4+ kernels (their loader refuses it even
    // with -f) and the suite's lock-debugging 6.1 when built (it embeds a
    // debug struct mutex; 6.1's loader does not compare the sizes).
    let bigger = kernels
        .iter()
        .filter(|k| !k.starts_with("6.1.") || k.ends_with("-modscope-debug"));
    for kernel in bigger {
        let report = &results.iter().find(|r| &r["kernel"] == kernel).unwrap()["report"];
        assert_eq!(report["verdict"], "incompatible", "{kernel}: {report:#}");
        assert!(
            report["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["code"] == "THIS_MODULE_SIZE"),
            "{kernel}: {report:#}"
        );
    }
}
