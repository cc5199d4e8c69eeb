use which::which;

/// Linking this crate for the bpf target needs the `bpf-linker` binary, a
/// dependency cargo cannot express: rebuild when it changes, and say how to
/// get it when it is missing instead of failing deep inside rustc. The host
/// build of the (empty) library target, which probe-user names as a
/// build-dependency, needs nothing.
fn main() {
    emit_target_arch();
    let target = std::env::var("TARGET").unwrap_or_default();
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) if target.starts_with("bpf") => panic!(
            "bpf-linker is not on PATH; run `cargo xtask setup` (it builds bpf-linker against \
             the nightly toolchain's libLLVM), or build modscope with AYA_BUILD_SKIP=1 for \
             host-only work"
        ),
        Err(_) => {}
    }
}

/// The architecture whose registers the programs read (`attribution.rs`):
/// aya-build passes `--cfg bpf_target_arch` from the user-space target;
/// a direct build (the lint) takes `AYA_BPF_TARGET_ARCH`, else the host's.
fn emit_target_arch() {
    println!("cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"aarch64\"))");
    println!("cargo:rerun-if-env-changed=AYA_BPF_TARGET_ARCH");
    if std::env::var_os("CARGO_CFG_BPF_TARGET_ARCH").is_some() {
        return;
    }
    let arch = std::env::var("AYA_BPF_TARGET_ARCH").unwrap_or_else(|_| {
        let host = std::env::var("HOST").unwrap_or_default();
        host.split('-').next().unwrap_or_default().to_owned()
    });
    println!("cargo:rustc-cfg=bpf_target_arch=\"{arch}\"");
}
