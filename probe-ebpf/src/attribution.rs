//! Which module made the call a kprobe is in: at function entry the return
//! address is at the top of the stack, and its page maps to the module
//! incarnation whose text holds it. Shared by every kprobe that attributes.

use aya_ebpf::{helpers::bpf_probe_read_kernel, programs::ProbeContext};
use probe_common::calls::page_index;

use crate::maps::{self, PAGES, READ_ERRORS};

/// `(incarnation, return address)` when a module made the call; `None` for
/// the core kernel (one comparison) and unmapped pages.
#[inline(always)]
pub fn module_caller(ctx: &ProbeContext) -> Result<Option<(u64, u64)>, u32> {
    // SAFETY: regs is the kprobe's pt_regs, valid for the program's run.
    let sp = unsafe { (*ctx.regs).rsp };
    // SAFETY: bpf_probe_read_kernel checks the address.
    let caller: u64 =
        unsafe { bpf_probe_read_kernel(sp as *const u64) }.map_err(|_| READ_ERRORS)?;
    let Some(page) = page_index(caller, maps::call_probe().module_area_start) else {
        return Ok(None);
    };
    Ok(match PAGES.get(page) {
        Some(&i) if i != 0 => Some((i, caller)),
        _ => None,
    })
}
