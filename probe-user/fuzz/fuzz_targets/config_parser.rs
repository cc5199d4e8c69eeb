//! The .config parser on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modscope_analysis::{kconfig::KernelConfig, vermagic::Vermagic};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let cfg = KernelConfig::parse(&text);
    let _ = Vermagic::for_kernel("6.1.0-fuzz", &cfg, None);
    let v = Vermagic::parse(&text);
    let _ = v.differences(&Vermagic::parse("6.1.0 SMP preempt mod_unload modversions "));
});
