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
