//! The /proc/modules parser. (`targets.rs` says what it checks.)
#![no_main]

#[path = "targets.rs"]
#[allow(dead_code)] // each binary uses one of the shared targets
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::proc_modules_parser(data));
