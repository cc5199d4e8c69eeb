//! Every reason code, the loader's answers and bad input, on hand-built ELF.

use std::path::Path;

use object::Architecture;

use super::{
    ModuleReport,
    fixtures::{self, CONFIG, Ko, SYMVERS},
    ko_file::{self, KoError},
    report, signature,
    verdict::{Code, Severity, Verdict},
};

fn check(ko: &Ko) -> ModuleReport {
    check_on(ko, &fixtures::target())
}

fn check_on(ko: &Ko, target: &super::target::TargetKernel) -> ModuleReport {
    let bytes = ko.build();
    let facts = ko_file::parse(&bytes[..]).expect("fixture parses");
    report(Path::new("fixture.ko"), &facts, None, target)
}

fn codes(r: &ModuleReport) -> Vec<Code> {
    r.reasons.iter().map(|x| x.code).collect()
}

fn reason(r: &ModuleReport, code: Code) -> &super::verdict::Reason {
    r.reasons
        .iter()
        .find(|x| x.code == code)
        .unwrap_or_else(|| panic!("no {code:?} in {:#?}", r.reasons))
}

#[test]
fn a_good_module_is_compatible_and_loads() {
    let r = check(&Ko::good());
    assert_eq!(r.verdict, Verdict::Compatible, "{:#?}", r.reasons);
    assert!(r.reasons.is_empty(), "{:#?}", r.reasons);
    assert!(!r.kernel_would_refuse);
    assert_eq!(r.loader.insmod_force, None);
    assert_eq!(r.name, "fixture");
    assert_eq!((r.imports, r.versioned_imports), (1, 2));
}

#[test]
fn vermagic_preempt_model_without_crcs_is_incompatible() {
    let mut ko = Ko::good().set("vermagic", "6.1.0-56-amd64 SMP preempt_rt mod_unload ");
    ko.versions.clear();
    let r = check(&ko);
    let v = reason(&r, Code::VermagicMismatch);
    assert_eq!(v.severity, Severity::Incompatible);
    assert_eq!(v.config.as_deref(), Some("CONFIG_PREEMPT_RT"));
    assert!(v.message.contains("preempt model"), "{}", v.message);
    assert_eq!(r.loader.insmod.as_deref(), Some("Invalid module format"));
    assert_eq!(r.loader.insmod_force, None, "-f skips the vermagic check");
}

#[test]
fn vermagic_release_is_ignored_when_the_module_has_crcs() {
    let r = check(&Ko::good().set(
        "vermagic",
        "6.1.0-99-amd64 SMP preempt mod_unload modversions ",
    ));
    assert_eq!(r.verdict, Verdict::Compatible, "{:#?}", r.reasons);
    assert!(
        !r.kernel_would_refuse,
        "same_magic skips the release with modversions"
    );
}

#[test]
fn vermagic_release_without_crcs_needs_a_forced_load() {
    let mut ko = Ko::good().set(
        "vermagic",
        "6.1.0-99-amd64 SMP preempt mod_unload modversions ",
    );
    ko.versions.clear();
    let r = check(&ko);
    assert_eq!(
        reason(&r, Code::VermagicMismatch).severity,
        Severity::Warning
    );
    assert!(r.kernel_would_refuse);
}

#[test]
fn missing_vermagic_is_a_forced_load() {
    let r = check(&Ko::good().unset("vermagic"));
    assert_eq!(
        reason(&r, Code::VermagicMissing).severity,
        Severity::Warning
    );
    assert_eq!(r.loader.insmod.as_deref(), Some("Invalid module format"));
    assert_eq!(r.loader.insmod_force, None);
}

#[test]
fn crc_mismatch_on_a_lock_api_names_the_option() {
    let rt_config = format!("{CONFIG}CONFIG_PREEMPT_RT=y\n");
    let target = fixtures::target_with(&rt_config, SYMVERS, Some(fixtures::STRUCT_MODULE));
    let r = check_on(&Ko::good().import("mutex_lock", Some(0x5de130f5)), &target);
    let crc = reason(&r, Code::CrcMismatch);
    assert_eq!(crc.severity, Severity::Incompatible);
    assert_eq!(crc.symbol.as_deref(), Some("mutex_lock"));
    assert_eq!(crc.config.as_deref(), Some("CONFIG_PREEMPT_RT"));
    assert!(
        crc.message.contains("0x5de130f5") && crc.message.contains("0x4dfa8d4b"),
        "{}",
        crc.message
    );
    assert_eq!(r.verdict, Verdict::Incompatible);
    assert_eq!(r.loader.insmod.as_deref(), Some("Invalid argument"));
    assert_eq!(r.loader.insmod_force, None, "-f ignores symbol versions");
}

#[test]
fn module_layout_crc_mismatch_is_reported() {
    let mut ko = Ko::good();
    ko.versions[0].1 = 0x9487079a;
    let r = check(&ko);
    let v = reason(&r, Code::StructModuleCrc);
    assert_eq!(v.struct_name.as_deref(), Some("module"));
    assert_eq!(r.loader.insmod.as_deref(), Some("Invalid module format"));
    assert_eq!(r.loader.insmod_force, None);
}

#[test]
fn import_without_crc_only_warns() {
    let r = check(&Ko::good().import("mutex_lock", None));
    assert_eq!(
        reason(&r, Code::NoSymbolVersion).severity,
        Severity::Warning
    );
    assert_eq!(r.verdict, Verdict::Warning);
    assert!(!r.kernel_would_refuse);
}

#[test]
fn unknown_symbol_is_refused_even_with_force() {
    let r = check(&Ko::good().import("no_such_symbol", Some(1)));
    assert_eq!(
        reason(&r, Code::UnknownSymbol).symbol.as_deref(),
        Some("no_such_symbol")
    );
    assert_eq!(r.loader.insmod.as_deref(), Some("Unknown symbol in module"));
    assert_eq!(
        r.loader.insmod_force.as_deref(),
        Some("Unknown symbol in module")
    );
}

#[test]
fn debug_import_missing_on_the_target_needs_its_config() {
    let r = check(&Ko::good().import("__raw_spin_lock_init", Some(7)));
    let n = reason(&r, Code::NeedsConfig);
    assert_eq!(n.config.as_deref(), Some("CONFIG_DEBUG_SPINLOCK"));
    assert!(
        n.message.contains("which the target lacks"),
        "{}",
        n.message
    );
    assert!(!codes(&r).contains(&Code::UnknownSymbol));
}

#[test]
fn gpl_only_export_to_a_proprietary_module() {
    let r = check(
        &Ko::good()
            .set("license", "Proprietary")
            .import("ktime_get_boot_fast_ns", Some(0x6ef6b54f)),
    );
    assert_eq!(
        reason(&r, Code::GplOnlySymbol).symbol.as_deref(),
        Some("ktime_get_boot_fast_ns")
    );
    assert!(codes(&r).contains(&Code::NotGplCompatible));
    assert_eq!(
        r.loader.insmod_force.as_deref(),
        Some("Unknown symbol in module")
    );
}

#[test]
fn namespaced_symbol_needs_its_import() {
    let ko = Ko::good().import("usb_stor_probe1", Some(0x11111111));
    let r = check(&ko);
    assert!(
        reason(&r, Code::MissingNamespaceImport)
            .message
            .contains("USB_STORAGE")
    );
    assert_eq!(r.loader.insmod_force.as_deref(), Some("Invalid argument"));
    let r = check(&ko.set("import_ns", "USB_STORAGE"));
    assert!(
        !codes(&r).contains(&Code::MissingNamespaceImport),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn this_module_size_mismatch_is_refused_even_with_force_from_6_4() {
    let mut ko = Ko::good();
    ko.this_module_size = 960;
    let target = super::target::TargetKernel::from_parts(
        "6.12.117+deb12-amd64",
        super::kconfig::KernelConfig::parse(CONFIG),
        super::symvers::Symvers::parse(SYMVERS),
        Err("no BTF in unit tests".into()),
        Some(896),
    );
    let r = check_on(&ko, &target);
    let t = reason(&r, Code::ThisModuleSize);
    assert!(
        t.message.contains("960") && t.message.contains("896"),
        "{}",
        t.message
    );
    // A 6.1 module on 6.12: the version is the cause to name first.
    let version = t.message.find("another kernel version").expect(&t.message);
    assert!(
        version < t.message.find("lock debugging").unwrap(),
        "{}",
        t.message
    );
    assert_eq!(
        r.loader.insmod_force.as_deref(),
        Some("Invalid module format")
    );
}

#[test]
fn before_6_4_the_loader_does_not_compare_struct_module_sizes() {
    // Debian's 6.1 loads a generic-built module into a lock-debugging
    // build with -f (seen in the VM suite): the size is not checked.
    let mut ko = Ko::good();
    ko.this_module_size = 960;
    let r = check(&ko);
    assert!(
        fixtures::RELEASE.starts_with("6.1."),
        "{}",
        fixtures::RELEASE
    );
    let t = reason(&r, Code::ThisModuleSize);
    assert_eq!(t.severity, Severity::Incompatible);
    assert!(t.message.contains("does not compare"), "{}", t.message);
    assert!(
        !t.message.contains("another kernel version"),
        "{}",
        t.message
    );
    assert_eq!(r.loader.insmod_force, None, "{:?}", r.loader);
}

#[test]
fn debug_feature_and_tracepoint_imports_are_classified() {
    let r = check(
        &Ko::good()
            .import("__fentry__", Some(0xbdfb6dbb))
            .import("__tracepoint_sched_switch", Some(0x22222222)),
    );
    assert_eq!(
        reason(&r, Code::DebugFeatureImport).config.as_deref(),
        Some("CONFIG_FUNCTION_TRACER")
    );
    assert_eq!(reason(&r, Code::TracepointImport).severity, Severity::Info);
    assert_eq!(r.verdict, Verdict::Compatible);
}

#[test]
fn tracepoints_and_ftrace_sites_are_counted() {
    let mut ko = Ko::good();
    ko.tracepoints = vec!["fixture_event".into()];
    ko.mcount_sites = 3;
    let r = check(&ko);
    assert!(
        reason(&r, Code::TracepointDefined)
            .message
            .contains("fixture_event")
    );
    assert!(reason(&r, Code::FtraceSites).message.starts_with("3 "));
    let proprietary = check(&{
        let mut k = Ko::good().set("license", "Proprietary");
        k.tracepoints = vec!["secret".into()];
        k
    });
    assert_eq!(
        reason(&proprietary, Code::TracepointDefined).severity,
        Severity::Warning
    );
}

#[test]
fn out_of_tree_unsigned_and_retpoline() {
    let mut ko = Ko::good().unset("intree").unset("retpoline");
    ko.signed = false;
    let r = check(&ko);
    for code in [Code::OutOfTree, Code::Unsigned, Code::RetpolineMissing] {
        assert!(
            codes(&r).contains(&code),
            "{code:?} missing from {:#?}",
            r.reasons
        );
    }
    assert_eq!(r.verdict, Verdict::Warning);
    let forced = fixtures::target_with(
        &format!("{CONFIG}CONFIG_MODULE_SIG_FORCE=y\n"),
        SYMVERS,
        Some(896),
    );
    let r = check_on(&ko, &forced);
    assert_eq!(
        reason(&r, Code::SignatureRequired).severity,
        Severity::Incompatible
    );
    assert_eq!(
        r.loader.insmod_force.as_deref(),
        Some("Key was rejected by service")
    );
}

fn check_signed(ko: &Ko, outcome: &signature::Outcome, config: &str) -> ModuleReport {
    let bytes = ko.build();
    let facts = ko_file::parse(&bytes[..]).expect("fixture parses");
    let target = fixtures::target_with(config, SYMVERS, Some(fixtures::STRUCT_MODULE));
    report(Path::new("fixture.ko"), &facts, Some(outcome), &target)
}

#[test]
fn a_signature_that_does_not_verify_is_refused_without_sig_force() {
    use signature::{EBADMSG, EKEYREJECTED, Outcome};
    let changed = Outcome::Refused {
        insmod: EKEYREJECTED,
        why: "changed after signing".into(),
    };
    let r = check_signed(&Ko::good(), &changed, CONFIG);
    assert_eq!(r.verdict, Verdict::Incompatible);
    assert_eq!(
        reason(&r, Code::SignatureInvalid).severity,
        Severity::Incompatible
    );
    assert_eq!(r.loader.insmod.as_deref(), Some(EKEYREJECTED));
    assert_eq!(r.loader.insmod_force, None, "-f skips the signature check");
    // The loader checks the signature first: its errno is what insmod says.
    let damaged = Outcome::Refused {
        insmod: EBADMSG,
        why: "damaged".into(),
    };
    let foreign = Ko::good().import("mutex_lock", Some(0xdead));
    let r = check_signed(&foreign, &damaged, CONFIG);
    assert_eq!(r.loader.insmod.as_deref(), Some(EBADMSG), "not the CRC's");
    assert!(codes(&r).contains(&Code::CrcMismatch));
    // Enforced: the forced load is refused as unsigned.
    let enforced = format!("{CONFIG}CONFIG_MODULE_SIG_FORCE=y\n");
    let r = check_signed(&Ko::good(), &changed, &enforced);
    assert_eq!(r.loader.insmod_force.as_deref(), Some(EKEYREJECTED));
}

#[test]
fn an_unknown_key_loads_with_a_taint_unless_enforced() {
    use signature::Outcome;
    let unknown = Outcome::UnknownKey {
        signer: "CN=someone else".into(),
    };
    let r = check_signed(&Ko::good(), &unknown, CONFIG);
    let why = reason(&r, Code::SignatureUntrusted);
    assert_eq!(why.severity, Severity::Info);
    assert!(why.message.contains("CN=someone else"), "{}", why.message);
    assert!(!r.kernel_would_refuse);
    let enforced = format!("{CONFIG}CONFIG_MODULE_SIG_FORCE=y\n");
    let r = check_signed(&Ko::good(), &unknown, &enforced);
    assert_eq!(
        reason(&r, Code::SignatureUntrusted).severity,
        Severity::Incompatible
    );
    assert_eq!(r.loader.insmod.as_deref(), Some(signature::EKEYREJECTED));
    let valid = Outcome::Valid {
        signer: "CN=Build time autogenerated kernel key".into(),
    };
    let r = check_signed(&Ko::good(), &valid, &enforced);
    assert_eq!(reason(&r, Code::SignatureVerified).severity, Severity::Info);
    assert_eq!(r.verdict, Verdict::Compatible);
}

#[test]
fn no_target_btf_is_said() {
    let r = check_on(&Ko::good(), &fixtures::target_with(CONFIG, SYMVERS, None));
    assert_eq!(reason(&r, Code::BtfUnavailable).severity, Severity::Info);
}

#[test]
fn extended_modversions_are_read() {
    let mut ko = Ko::good().import("mutex_lock", Some(0x0bad0bad));
    ko.extended_versions = true;
    let bytes = ko.build();
    let facts = ko_file::parse(&bytes[..]).unwrap();
    assert!(facts.has_versions);
    assert_eq!(facts.versions.len(), 3);
    let r = check(&ko);
    assert_eq!(
        reason(&r, Code::CrcMismatch).symbol.as_deref(),
        Some("mutex_lock")
    );
}

/// A kernel image's payload is one xz stream followed by other bytes (the
/// decompressed size, padding): the stream is read, the rest ignored.
#[test]
fn an_xz_stream_with_bytes_after_it_decompresses() {
    use std::io::Write as _;
    let plain = Ko::good().build();
    let mut xz =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    xz.write_all(&plain).unwrap();
    let mut data = xz.finish().unwrap();
    data.extend_from_slice(&[0x40, 0x1f, 0x9c, 0x00, 0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(ko_file::decompress(data).unwrap(), plain);
}

#[test]
fn compressed_modules_read_like_plain_ones() {
    use std::io::Write as _;
    let plain = Ko::good().build();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    let gz = gz.finish().unwrap();
    let mut xz =
        lzma_rust2::XzWriter::new(Vec::new(), lzma_rust2::XzOptions::with_preset(1)).unwrap();
    xz.write_all(&plain).unwrap();
    let xz = xz.finish().unwrap();
    for data in [gz, xz] {
        let plain = ko_file::decompress(data).unwrap();
        let facts = ko_file::parse(&plain[..]).unwrap();
        assert_eq!(facts.name(), Some("fixture"));
    }
}

#[test]
fn a_module_of_another_architecture_is_refused_before_anything_else() {
    let mut arm = Ko::good();
    arm.arch = Architecture::Aarch64;
    let x86_target = fixtures::target_with(
        &format!("{}CONFIG_X86_64=y\n", fixtures::CONFIG),
        fixtures::SYMVERS,
        Some(fixtures::STRUCT_MODULE),
    );
    let r = check_on(&arm, &x86_target);
    assert_eq!(r.verdict, Verdict::Incompatible);
    assert_eq!(codes(&r)[0], Code::WrongArchitecture, "{:#?}", r.reasons);
    assert!(
        reason(&r, Code::WrongArchitecture)
            .message
            .contains("built for aarch64")
    );
    assert_eq!(r.loader.insmod.as_deref(), Some("Invalid module format"));
    assert_eq!(
        r.loader.insmod_force.as_deref(),
        Some("Invalid module format")
    );
    let arm_target = fixtures::target_with(
        &format!("{}CONFIG_ARM64=y\n", fixtures::CONFIG),
        fixtures::SYMVERS,
        Some(fixtures::STRUCT_MODULE),
    );
    let r = check_on(&arm, &arm_target);
    assert!(
        !codes(&r).contains(&Code::WrongArchitecture),
        "{:#?}",
        r.reasons
    );
}

#[test]
fn bad_input_is_a_named_error() {
    let good = Ko::good().build();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 3].to_vec(), "corrupt ELF"),
        ("text", b"hello, not a module".to_vec(), "not an ELF file"),
        ("empty", Vec::new(), "not an ELF file"),
        (
            "riscv64",
            {
                let mut k = Ko::good();
                k.arch = Architecture::Riscv64;
                k.build()
            },
            "built for Riscv64, not x86-64 or arm64",
        ),
        (
            "no modinfo",
            {
                let mut k = Ko::good();
                k.omit_modinfo = true;
                k.build()
            },
            "no .modinfo",
        ),
        (
            "no this_module",
            {
                let mut k = Ko::good();
                k.omit_this_module = true;
                k.build()
            },
            "no .gnu.linkonce.this_module",
        ),
    ];
    for (what, data, expected) in cases {
        let err = ko_file::parse(&data[..])
            .err()
            .unwrap_or_else(|| panic!("{what} parsed"));
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
    let bad_xz = [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2, 3].to_vec();
    assert!(matches!(
        ko_file::decompress(bad_xz),
        Err(KoError::Compression { format: "xz", .. })
    ));
    let bad_zstd = [0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff].to_vec();
    assert!(matches!(
        ko_file::decompress(bad_zstd),
        Err(KoError::Compression { format: "zstd", .. })
    ));
}

#[test]
fn special_files_are_refused_before_they_are_opened() {
    let dir = std::env::temp_dir().join(format!("modscope-special-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("x.ko");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Opening a FIFO for reading would block until a writer comes.
    let err = ko_file::read_bytes(&fifo).unwrap_err();
    assert!(
        matches!(
            err,
            KoError::Input(crate::input::InputError::NotRegularFile("FIFO"))
        ),
        "{err}"
    );
    let err = ko_file::read_bytes(std::path::Path::new("/dev/zero")).unwrap_err();
    assert!(
        matches!(
            err,
            KoError::Input(crate::input::InputError::NotRegularFile("device"))
        ),
        "{err}"
    );
    let err = ko_file::with_module(&dir, false, |_, _| ()).unwrap_err();
    assert!(
        matches!(
            err,
            KoError::Input(crate::input::InputError::NotRegularFile("directory"))
        ),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_compression_bomb_stops_at_its_first_bytes_or_at_the_bound() {
    use std::io::Write as _;
    let gzip = |payload: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(payload).unwrap();
        e.finish().unwrap()
    };
    let zeros = vec![0u8; 1 << 20];
    let err = ko_file::decompress_bounded(gzip(&zeros), 64 << 10, true).unwrap_err();
    assert!(
        matches!(err, KoError::NotElf),
        "zeros are refused at once: {err}"
    );
    let mut elf_then_zeros = b"\x7fELF".to_vec();
    elf_then_zeros.extend_from_slice(&zeros);
    let err = ko_file::decompress_bounded(gzip(&elf_then_zeros), 64 << 10, true).unwrap_err();
    assert!(
        matches!(
            err,
            KoError::Input(crate::input::InputError::TooLarge { limit: 65536, .. })
        ),
        "{err}"
    );
    let small = ko_file::decompress_bounded(gzip(&elf_then_zeros), 2 << 20, true).unwrap();
    assert_eq!(small, elf_then_zeros);
}

#[test]
fn a_damaged_symbol_table_is_a_reason_not_silently_fewer_imports() {
    use object::{Object as _, ObjectSection as _};
    let mut bytes = Ko::good().import("mutex_lock", Some(0x4dfa8d4b)).build();
    let symtab = object::File::parse(&bytes[..])
        .unwrap()
        .section_by_name(".symtab")
        .and_then(|s| s.file_range())
        .unwrap()
        .0 as usize;
    // Past the null symbol: names and section indices of the next ones.
    bytes[symtab + 24..symtab + 24 + 48].fill(0x41);
    let facts = ko_file::parse(&bytes[..]).expect("the headers still parse");
    let r = report(Path::new("damaged.ko"), &facts, None, &fixtures::target());
    let why = reason(&r, Code::SymbolTableDamaged);
    assert_eq!(why.severity, Severity::Incompatible);
    assert!(
        why.message.contains("sections that do not exist"),
        "{}",
        why.message
    );
    assert_eq!(r.verdict, Verdict::Incompatible);
    // An intact module has none.
    assert!(!codes(&check(&Ko::good())).contains(&Code::SymbolTableDamaged));
}
