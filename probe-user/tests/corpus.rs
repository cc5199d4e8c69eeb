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
