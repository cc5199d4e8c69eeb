use which::which;

/// Linking this crate for the bpf target needs the `bpf-linker` binary, a
/// dependency cargo cannot express: rebuild when it changes, and say how to
/// get it when it is missing instead of failing deep inside rustc. The host
/// build of the (empty) library target, which probe-user names as a
/// build-dependency, needs nothing.
fn main() {
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
