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

/// `check` from this x86-64 machine against Debian's arm64 kernels, as
/// `cargo xtask setup` unpacks them: every arm64 module each kernel ships
/// is compatible with it, judged from its config, Module.symvers, arm64
/// vermagic and the BTF inside its uncompressed Image; and an x86-64 module
/// is refused as the wrong architecture.
#[test]
#[ignore = "needs the arm64 kernels that `cargo xtask setup` unpacks; `cargo xtask test` runs it"]
fn arm64_kernels_own_modules_are_compatible_checked_from_x86_64() {
    let home = std::env::var("HOME").expect("HOME");
    let root = std::path::PathBuf::from(home).join(".cache/modscope/arm64");
    let releases = modscope_analysis::target::installed_releases(Some(&root));
    assert_eq!(
        releases.len(),
        3,
        "the unpacked arm64 kernels: {releases:?}"
    );
    for release in &releases {
        let arg = |p: String| root.join(p).display().to_string();
        let target = [
            "--kernel".to_owned(),
            release.clone(),
            "--config".into(),
            arg(format!("boot/config-{release}")),
            "--symvers".into(),
            arg(format!("usr/src/linux-headers-{release}/Module.symvers")),
            "--btf".into(),
            arg(format!("boot/vmlinuz-{release}")),
        ];
        let mut args: Vec<String> = vec!["check".into(), "--json".into()];
        args.extend(target.iter().cloned());
        args.push(arg(format!("lib/modules/{release}/kernel")));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let v = json(&refs);
        let s = &v["summary"];
        let files = v["modules"].as_array().unwrap().len();
        eprintln!("arm64 {release}: {files} modules, summary {s}");
        assert!(files > 3000, "{release}: only {files} modules found");
        assert_eq!(s["unreadable"], 0, "{release}: {:#}", v["errors"]);
        assert_eq!(
            s["compatible"].as_u64(),
            Some(files as u64),
            "{release}: {s}"
        );
        assert_ne!(
            v["target"]["struct_module_size"],
            serde_json::Value::Null,
            "{release}: BTF"
        );
        let x86 = std::fs::read_dir("/lib/modules")
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path().join("kernel/fs/fat/fat.ko"))
            .find(|p| p.exists() || p.with_extension("ko.xz").exists());
        if let Some(x86) = x86 {
            let x86 = if x86.exists() {
                x86
            } else {
                x86.with_extension("ko.xz")
            };
            let mut args: Vec<String> = vec!["check".into(), "--json".into()];
            args.extend(target.iter().cloned());
            args.push(x86.display().to_string());
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let v = json(&refs);
            let reasons = &v["modules"][0]["reasons"];
            assert_eq!(reasons[0]["code"], "WRONG_ARCHITECTURE", "{v:#}");
        }
    }
}
