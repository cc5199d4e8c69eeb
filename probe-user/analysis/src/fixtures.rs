//! Hand-built module ELF files and target kernels for the rule tests.

use object::{
    Architecture, BinaryFormat, Endianness, SectionKind, SymbolFlags, SymbolKind, SymbolScope,
    write::{Object, Symbol, SymbolSection},
};

use super::{kconfig::KernelConfig, symvers::Symvers, target::TargetKernel};

pub const RELEASE: &str = "6.1.0-56-amd64";
pub const MAGIC: &str = "6.1.0-56-amd64 SMP preempt mod_unload modversions ";
pub const STRUCT_MODULE: u64 = 896;

pub struct Ko {
    pub modinfo: Vec<(String, String)>,
    pub versions: Vec<(String, u32)>,
    pub extended_versions: bool,
    pub imports: Vec<String>,
    pub this_module_size: usize,
    pub arch: Architecture,
    pub tracepoints: Vec<String>,
    pub mcount_sites: usize,
    pub signed: bool,
    pub omit_this_module: bool,
    pub omit_modinfo: bool,
}

impl Ko {
    /// A GPL, in-tree, signed module that imports `_printk` with the right CRC.
    pub fn good() -> Self {
        Self {
            modinfo: vec![
                ("license".into(), "GPL".into()),
                ("intree".into(), "Y".into()),
                ("retpoline".into(), "Y".into()),
                ("name".into(), "fixture".into()),
                ("vermagic".into(), MAGIC.into()),
            ],
            versions: vec![
                ("module_layout".into(), 0x9060323f),
                ("_printk".into(), 0x92997ed8),
            ],
            extended_versions: false,
            imports: vec!["_printk".into()],
            this_module_size: STRUCT_MODULE as usize,
            arch: Architecture::X86_64,
            tracepoints: Vec::new(),
            mcount_sites: 0,
            signed: true,
            omit_this_module: false,
            omit_modinfo: false,
        }
    }

    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.modinfo.retain(|(k, _)| k != key);
        self.modinfo.push((key.into(), value.into()));
        self
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.modinfo.retain(|(k, _)| k != key);
        self
    }

    pub fn import(mut self, name: &str, crc: Option<u32>) -> Self {
        self.imports.push(name.into());
        if let Some(crc) = crc {
            self.versions.push((name.into(), crc));
        }
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut obj = Object::new(BinaryFormat::Elf, self.arch, Endianness::Little);
        let mut add = |name: &str, data: &[u8], kind: SectionKind| {
            let id = obj.add_section(Vec::new(), name.as_bytes().to_vec(), kind);
            obj.append_section_data(id, data, 8);
            id
        };
        if !self.omit_modinfo {
            let modinfo: Vec<u8> = self
                .modinfo
                .iter()
                .flat_map(|(k, v)| format!("{k}={v}\0").into_bytes())
                .collect();
            add(".modinfo", &modinfo, SectionKind::ReadOnlyData);
        }
        if self.extended_versions {
            let names: Vec<u8> = self
                .versions
                .iter()
                .flat_map(|(n, _)| format!("{n}\0").into_bytes())
                .collect();
            let crcs: Vec<u8> = self
                .versions
                .iter()
                .flat_map(|(_, c)| c.to_le_bytes())
                .collect();
            add("__version_ext_names", &names, SectionKind::ReadOnlyData);
            add("__version_ext_crcs", &crcs, SectionKind::ReadOnlyData);
        } else if !self.versions.is_empty() {
            let mut v = Vec::new();
            for (name, crc) in &self.versions {
                let mut entry = [0u8; 64];
                entry[..8].copy_from_slice(&u64::from(*crc).to_le_bytes());
                entry[8..8 + name.len()].copy_from_slice(name.as_bytes());
                v.extend_from_slice(&entry);
            }
            add("__versions", &v, SectionKind::ReadOnlyData);
        }
        if !self.omit_this_module {
            add(
                ".gnu.linkonce.this_module",
                &vec![0; self.this_module_size],
                SectionKind::Data,
            );
        }
        if self.mcount_sites > 0 {
            add(
                "__mcount_loc",
                &vec![0; 8 * self.mcount_sites],
                SectionKind::ReadOnlyData,
            );
        }
        if !self.tracepoints.is_empty() {
            let tp = add(
                "__tracepoints",
                &vec![0; 64 * self.tracepoints.len()],
                SectionKind::Data,
            );
            for (i, name) in self.tracepoints.iter().enumerate() {
                obj.add_symbol(Symbol {
                    name: format!("__tracepoint_{name}").into_bytes(),
                    value: 64 * i as u64,
                    size: 64,
                    kind: SymbolKind::Data,
                    scope: SymbolScope::Linkage,
                    weak: false,
                    section: SymbolSection::Section(tp),
                    flags: SymbolFlags::None,
                });
            }
        }
        for name in &self.imports {
            obj.add_symbol(import(name));
        }
        let mut bytes = obj.write().expect("fixture ELF writes");
        if self.signed {
            bytes.extend_from_slice(b"fake signature~Module signature appended~\n");
        }
        bytes
    }
}

/// An undefined function symbol: an import.
pub fn import(name: &str) -> Symbol {
    Symbol {
        name: name.as_bytes().to_vec(),
        value: 0,
        size: 0,
        kind: SymbolKind::Text,
        scope: SymbolScope::Linkage,
        weak: false,
        section: SymbolSection::Undefined,
        flags: SymbolFlags::None,
    }
}

pub const CONFIG: &str = "CONFIG_SMP=y\nCONFIG_PREEMPT_BUILD=y\nCONFIG_MODULE_UNLOAD=y\nCONFIG_MODVERSIONS=y\n\
    CONFIG_MODULE_SIG=y\nCONFIG_MODULE_FORCE_LOAD=y\nCONFIG_RETPOLINE=y\nCONFIG_FUNCTION_TRACER=y\nCONFIG_TRACEPOINTS=y\n";

pub const SYMVERS: &str = "0x9060323f\tmodule_layout\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x92997ed8\t_printk\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x4dfa8d4b\tmutex_lock\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x6ef6b54f\tktime_get_boot_fast_ns\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
    0xbdfb6dbb\t__fentry__\tvmlinux\tEXPORT_SYMBOL\t\n\
    0x11111111\tusb_stor_probe1\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\tUSB_STORAGE\n\
    0x22222222\t__tracepoint_sched_switch\tvmlinux\tEXPORT_SYMBOL_GPL\t\n";

pub fn target_with(config: &str, symvers: &str, struct_module_size: Option<u64>) -> TargetKernel {
    TargetKernel::from_parts(
        RELEASE,
        KernelConfig::parse(config),
        Symvers::parse(symvers),
        Err("no BTF in unit tests".into()),
        struct_module_size,
    )
}

pub fn target() -> TargetKernel {
    target_with(CONFIG, SYMVERS, Some(STRUCT_MODULE))
}
