//! What the in-kernel registry knows about one loaded module.

/// `MODULE_NAME_LEN` in the kernel: `64 - sizeof(unsigned long)` on 64-bit.
pub const MODULE_NAME_LEN: usize = 56;

/// A module's name as the kernel stores it: NUL-padded bytes. Used as the
/// registry key, because a name is unique among loaded modules and is known
/// both to the probes and to `/proc/modules`.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ModuleName(pub [u8; MODULE_NAME_LEN]);

impl ModuleName {
    pub const EMPTY: Self = Self([0; MODULE_NAME_LEN]);

    /// Builds a key from a name, truncating like the kernel does.
    pub fn from_bytes(name: &[u8]) -> Self {
        let mut out = [0u8; MODULE_NAME_LEN];
        let len = name.len().min(MODULE_NAME_LEN - 1);
        out[..len].copy_from_slice(&name[..len]);
        Self(out)
    }

    /// The bytes up to the first NUL.
    pub fn as_bytes(&self) -> &[u8] {
        let end = self
            .0
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(MODULE_NAME_LEN);
        &self.0[..end]
    }
}

/// Flags on a [`ModuleRecord`]. Kept as a plain `u32` bit set on the wire;
/// userspace tests bits, it never reinterprets the integer as an enum.
pub struct RecordFlags;

impl RecordFlags {
    /// Seeded by userspace from `/proc/modules` at start-up: the module was
    /// already loaded, so its init text is gone and its core range is the
    /// whole core allocation rather than the text alone.
    pub const PREEXISTING: u32 = 1 << 0;
}

/// One module as the registry holds it. `module_addr` (the kernel's
/// `struct module *`) and `load_ns` together identify one incarnation: a
/// module loaded again at a reused address gets a new record.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleRecord {
    pub name: ModuleName,
    /// `mod->taints`: bit N is the kernel's taint flag N.
    pub taints: u64,
    pub module_addr: u64,
    pub core_text_base: u64,
    pub core_text_size: u64,
    pub init_text_base: u64,
    pub init_text_size: u64,
    /// `bpf_ktime_get_boot_ns()` when the load was seen; 0 for modules
    /// loaded before modscope.
    pub load_ns: u64,
    /// Names this incarnation in the text-page map and call counters: the
    /// load time for loads the probes saw, a small userspace-assigned id
    /// for modules that were already loaded.
    pub incarnation: u64,
    pub flags: u32,
    pub _pad: u32,
}

impl ModuleRecord {
    pub const fn zeroed() -> Self {
        Self {
            name: ModuleName::EMPTY,
            taints: 0,
            module_addr: 0,
            core_text_base: 0,
            core_text_size: 0,
            init_text_base: 0,
            init_text_size: 0,
            load_ns: 0,
            incarnation: 0,
            flags: 0,
            _pad: 0,
        }
    }
}

const _: () = assert!(core::mem::size_of::<ModuleName>() == 56);
const _: () = assert!(core::mem::size_of::<ModuleRecord>() == 56 + 8 * 8 + 8);
