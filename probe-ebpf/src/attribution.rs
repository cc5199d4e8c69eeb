//! Which module made the call a kprobe is in: the return address at
//! function entry (`regs`), whose page maps to the module incarnation whose
//! text holds it. Shared by every kprobe that attributes.
//!
//! A kprobe on a function's first instruction runs before an arm64
//! callee's `paciasp` signs the link register, but the signature bits are
//! stripped anyway (`CallProbeConfig::strip_signature`, a no-op on x86-64),
//! so a probe placed later in a prologue still attributes.

use aya_ebpf::programs::ProbeContext;

use crate::{
    maps::{self, PAGES},
    regs,
};

/// `(incarnation, return address)` when a module made the call; `None` for
/// the core kernel (a few comparisons) and unmapped pages.
#[inline(always)]
pub fn module_caller(ctx: &ProbeContext) -> Result<Option<(u64, u64)>, u32> {
    let config = maps::call_probe();
    let caller = config.strip_signature(regs::return_address(ctx)?);
    let Some(page) = config.page_index(caller) else {
        return Ok(None);
    };
    Ok(match PAGES.get(page) {
        Some(&i) if i != 0 => Some((i, caller)),
        _ => None,
    })
}
