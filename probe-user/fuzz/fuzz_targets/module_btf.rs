//! A module's split BTF against a base. (`targets.rs` says what it checks.)
#![no_main]

#[path = "targets.rs"]
#[allow(dead_code)] // each binary uses one of the shared targets
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::module_btf(data));
