//! The Module.symvers parser on arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use modscope_analysis::symvers::Symvers;

fuzz_target!(|data: &[u8]| {
    let s = Symvers::parse(&String::from_utf8_lossy(data));
    for (name, export) in s.iter() {
        assert!(!name.is_empty());
        let _ = export.namespace.as_deref();
    }
});
