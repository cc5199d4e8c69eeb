//! What each fuzz target does with its bytes, shared by the fuzz binaries
//! (one `fuzz_target!` each) and the host test that replays the committed
//! seeds and regression corpus (`probe-user/tests/fuzz_corpus.rs`). Every
//! parser of untrusted bytes must return an error, never panic, hang or
//! allocate past its bound.

use modscope::{
    kernel::{kallsyms, proc_modules},
    trace::{self, replay::Replay},
};
use modscope_analysis::{
    btf as analysis_btf, kconfig::KernelConfig, keyring::Keyring, ko_file, rules, signature,
    struct_layout, symvers::Symvers, target::TargetKernel, vermagic::Vermagic,
};

/// What a target runs on one input.
pub type Target = fn(&[u8]);

/// Every target by name, as its binary and corpus directory are named.
pub const ALL: &[(&str, Target)] = &[
    ("ko_reader", ko_reader),
    ("config_parser", config_parser),
    ("symvers_parser", symvers_parser),
    ("btf", btf),
    ("module_btf", module_btf),
    ("signature", signature_check),
    ("trace_decoder", trace_decoder),
    ("kallsyms", kallsyms_parser),
    ("proc_modules", proc_modules_parser),
];

fn target() -> TargetKernel {
    TargetKernel::from_parts(
        "6.1.0-fuzz",
        KernelConfig::parse("CONFIG_SMP=y\nCONFIG_MODVERSIONS=y\nCONFIG_MODULE_SIG=y\n"),
        Symvers::parse("0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n"),
        Err("none".into()),
        Some(896),
    )
}

/// The module reader, decompression included (bounded: a bomb stops at
/// the bound), then the rules and the call-site reader on what it accepts.
pub fn ko_reader(data: &[u8]) {
    let Ok(bytes) = ko_file::decompress_module(data.to_vec()) else {
        return;
    };
    if let Ok(facts) = ko_file::parse(&bytes[..]) {
        let _ = rules::check(&facts, None, &target());
        let _ = modscope_analysis::call_sites::tail_called_imports(&bytes);
    }
}

pub fn config_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let cfg = KernelConfig::parse(&text);
    let _ = Vermagic::for_kernel("6.1.0-fuzz", &cfg, None);
    let v = Vermagic::parse(&text);
    let _ = v.differences(&Vermagic::parse(
        "6.1.0 SMP preempt mod_unload modversions ",
    ));
}

pub fn symvers_parser(data: &[u8]) {
    let s = Symvers::parse(&String::from_utf8_lossy(data));
    for (name, export) in s.iter() {
        assert!(!name.is_empty());
        let _ = export.namespace.as_deref();
    }
}

/// vmlinux BTF through btf-rs, and what `check` and `diff` read from it.
pub fn btf(data: &[u8]) {
    let Ok(b) = btf_rs::Btf::from_bytes(data) else {
        return;
    };
    let _ = analysis_btf::struct_size(&b, "module");
    let _ = analysis_btf::find_struct(&b, "mutex");
    let _ = struct_layout::all_layouts(&b);
}

/// A module's split BTF against a base: the base is the input's first
/// half, the module's the second (both must parse for anything to run).
pub fn module_btf(data: &[u8]) {
    let (base, split) = data.split_at(data.len() / 2);
    let Ok(base) = btf_rs::Btf::from_bytes(base) else {
        return;
    };
    if let Ok(split) = btf_rs::Btf::from_split_bytes(split, &base) {
        let _ = modscope_analysis::module_btf::referenced_structs(&split);
    }
}

/// The signature check, with a keyring of the test certificates, and the
/// certificate scanner on the same bytes.
pub fn signature_check(data: &[u8]) {
    static KEYS: std::sync::OnceLock<Keyring> = std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        // From the fuzz crate (probe-user/fuzz) or the host test (probe-user).
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = ["analysis", "../analysis"]
            .iter()
            .map(|d| here.join(d).join("testdata/signing"))
            .find(|d| d.exists())
            .expect("the signature test data");
        let mut der = std::fs::read(dir.join("signing-cert.der")).unwrap_or_default();
        der.extend(std::fs::read(dir.join("ecdsa-cert.der")).unwrap_or_default());
        Keyring::scan(&der)
    });
    let _ = signature::check(data, keys);
    let _ = Keyring::scan(data);
}

/// The trace file reader, and the replay and report over what it read.
pub fn trace_decoder(data: &[u8]) {
    let Ok(t) = trace::read_trace(data) else {
        return;
    };
    let replay = Replay::from_records(t.records.iter().map(|(_, r)| r));
    let _ = trace::report::build(&replay, &t.damage, &[]);
}

pub fn kallsyms_parser(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let k = kallsyms::Kallsyms::parse(&text);
    let _ = k.function("kfree");
    let _ = kallsyms::name_at(&text, 0xffff_ffff_8100_0000);
    let _ = kallsyms::parse_traceable(&text);
}

pub fn proc_modules_parser(data: &[u8]) {
    let _ = proc_modules::parse(&String::from_utf8_lossy(data), "/proc/modules");
}
