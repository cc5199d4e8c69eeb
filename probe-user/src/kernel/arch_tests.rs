use super::*;
use crate::kernel::kcore;

/// Debian's arm64 6.1 under qemu (read off a boot): the image, the linear
/// 128 MiB MODULES_VADDR region, and the VMCOREINFO it printed.
fn arm64_kcore() -> Kcore {
    kcore::samples::read_core_file(
        &[
            0xffff_d3d9_6720_0000..0xffff_d3d9_6921_0000,
            0xffff_8000_0800_0000..0xffff_fbff_f000_0000,
            0xffff_8000_0000_0000..0xffff_8000_0800_0000,
        ],
        "PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(MODULES_VADDR)=0xffff800000000000\n\
         NUMBER(KERNELPACMASK)=0xffff000000000000\n",
    )
}

const ARM64_SYMBOLS: ImageSymbols = ImageSymbols {
    stext: Some(0xffff_d3d9_6721_0000),
    etext: Some(0xffff_d3d9_67f0_0000),
    end: None,
};

#[test]
fn arm64_window_covers_every_region_the_loader_can_choose() {
    let k = arm64_kcore();
    let f = ArchFacts::derive(Arch::Aarch64, 4096, &ARM64_SYMBOLS, Some(&k)).unwrap();
    assert_eq!(f.window_source, FactSource::Kcore);
    assert_eq!(f.module_window.start, 0xffff_d3d9_6921_0000 - (2 << 30));
    assert_eq!(f.module_window.end, 0xffff_d3d9_6720_0000 + (2 << 30));
    assert_eq!(f.core_text, 0xffff_d3d9_6721_0000..0xffff_d3d9_67f0_0000);
    assert_eq!(f.pac_mask, 0xffff_0000_0000_0000);
    let c = f.call_probe_config();
    assert_eq!(c.page_shift, 12);
    // A module in the 128 MiB direct region just below the image.
    assert!(c.page_index(0xffff_d3d9_6000_0000).is_some());
    assert_eq!(c.page_index(0xffff_d3d9_6721_0040), None, "core text");
    assert!(
        c.module_area_pages * 8 <= 8 << 20,
        "PAGES stays within 8 MiB"
    );
}

#[test]
fn arm64_without_kcore_takes_a_superset_from_kallsyms() {
    let f = ArchFacts::derive(Arch::Aarch64, 16384, &ARM64_SYMBOLS, None).unwrap();
    assert_eq!(f.window_source, FactSource::Superset);
    assert_eq!(f.page_size, 16384);
    let with_kcore = ArchFacts::derive(Arch::Aarch64, 4096, &ARM64_SYMBOLS, Some(&arm64_kcore()));
    let exact = with_kcore.unwrap().module_window;
    assert!(f.module_window.start <= exact.start && f.module_window.end >= exact.end);
    assert_eq!(f.pac_mask, 0);
}

#[test]
fn x86_64_window_is_kcores_module_segment() {
    let k = kcore::samples::read_core_file(
        &[
            0xffff_ffff_8100_0000..0xffff_ffff_8380_0000,
            0xffff_ffff_c000_0000..0xffff_ffff_ff00_0000,
            0xffff_c900_0000_0000..0xffff_e8ff_ffff_ffff,
        ],
        "PAGESIZE=4096\n",
    );
    let symbols = ImageSymbols {
        stext: Some(0xffff_ffff_8100_0000),
        etext: Some(0xffff_ffff_8200_0000),
        end: Some(0xffff_ffff_8380_0000),
    };
    let f = ArchFacts::derive(Arch::X86_64, 4096, &symbols, Some(&k)).unwrap();
    assert_eq!(
        f.module_window,
        0xffff_ffff_c000_0000..0xffff_ffff_ff00_0000
    );
    assert_eq!(f.window_source, FactSource::Kcore);
    let c = f.call_probe_config();
    assert_eq!(
        c.module_area_pages,
        (0xffff_ffff_ff00_0000 - 0xffff_ffff_c000_0000) >> 12
    );
    let fallback = ArchFacts::derive(Arch::X86_64, 4096, &symbols, None).unwrap();
    assert_eq!(fallback.module_window.start, 0xffff_ffff_a000_0000);
    assert_eq!(fallback.window_source, FactSource::Superset);
}

#[test]
fn hidden_addresses_and_odd_page_sizes_are_errors() {
    let hidden = ImageSymbols::parse("0000000000000000 T _stext\n0000000000000000 T _etext\n");
    let err = ArchFacts::derive(Arch::X86_64, 4096, &hidden, None).unwrap_err();
    assert!(matches!(err, ArchError::MissingSymbol("_stext")), "{err}");
    let err = ArchFacts::derive(Arch::X86_64, 6000, &ARM64_SYMBOLS, None).unwrap_err();
    assert!(matches!(err, ArchError::PageSize(6000)), "{err}");
}

#[test]
fn image_symbols_are_read_whatever_their_type_letter() {
    let s = ImageSymbols::parse(
        "ffffd3d967210000 T _stext\nffffd3d967f00000 D _etext\nffffffffc0001000 t x [mod]\n\
         ffffd3d969210000 B _end\n",
    );
    assert_eq!(s.stext, Some(0xffff_d3d9_6721_0000));
    assert_eq!(s.etext, Some(0xffff_d3d9_67f0_0000));
    assert_eq!(s.end, Some(0xffff_d3d9_6921_0000));
}
