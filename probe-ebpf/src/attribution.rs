//! Which module made the call a probe is in: the return address at
//! function entry (`regs`: a kprobe's registers, or an fentry program's
//! trampoline frame), whose page maps to the module incarnation whose text
//! holds it. Shared by every program that attributes.
//!
//! A kprobe on a function's first instruction runs before an arm64
//! callee's `paciasp` signs the link register, but the signature bits are
//! stripped anyway (`CallProbeConfig::strip_signature`, a no-op on x86-64),
//! so a probe placed later in a prologue still attributes.

use aya_ebpf::programs::ProbeContext;

use crate::{
    kernel_words::WordRead,
    maps::{self, PAGES},
    regs,
};

/// Who made the call a kprobe is in.
#[derive(Clone, Copy)]
pub enum Caller {
    /// The core kernel, or an address outside the module window.
    Kernel,
    /// A known module's text: its incarnation and the return address.
    Module { incarnation: u64, address: u64 },
    /// A module-window page that maps to no incarnation.
    Unowned(u64),
}

impl Caller {
    /// `(incarnation, return address)` for a module's call.
    #[inline(always)]
    pub fn module(self) -> Option<(u64, u64)> {
        match self {
            Self::Module {
                incarnation,
                address,
            } => Some((incarnation, address)),
            _ => None,
        }
    }
}

/// The caller of the probed function, its return address read the `R`
/// way: the core kernel costs a few comparisons, a module one array
/// lookup.
#[inline(always)]
pub fn caller<R: WordRead>(ctx: &ProbeContext) -> Result<Caller, u32> {
    Ok(owner(regs::return_address::<R>(ctx)?))
}

/// Who owns the code a return address points into.
#[inline(always)]
pub fn owner(return_address: u64) -> Caller {
    let config = maps::call_probe();
    let address = config.strip_signature(return_address);
    let Some(page) = config.page_index(address) else {
        return Caller::Kernel;
    };
    match PAGES.get(page) {
        Some(&incarnation) if incarnation != 0 => Caller::Module {
            incarnation,
            address,
        },
        _ => Caller::Unowned(address),
    }
}
