//! The module reader on arbitrary bytes, compressed or not: it must return
//! an error, never panic, and a module it accepts must survive the rules.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modscope_analysis::{kconfig::KernelConfig, ko_file, rules, symvers::Symvers, target::TargetKernel};

fuzz_target!(|data: &[u8]| {
    let Ok(bytes) = ko_file::decompress_module(data.to_vec()) else { return };
    if let Ok(facts) = ko_file::parse(&bytes[..]) {
        let target = TargetKernel::from_parts(
            "6.1.0-fuzz",
            KernelConfig::parse("CONFIG_SMP=y\nCONFIG_MODVERSIONS=y\nCONFIG_MODULE_SIG=y\n"),
            Symvers::parse("0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n"),
            Err("none".into()),
            Some(896),
        );
        let _ = rules::check(&facts, None, &target);
    }
});
