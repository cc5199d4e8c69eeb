//! When a module's init has run, the kernel frees its init text, and the
//! pages may later hold other code (another module's, a BPF program's, a
//! kprobe's). `do_init_module()` is where that happens: its entry remembers
//! the module per thread, its return unmaps the init pages and clears the
//! init range in the registry, so no later call is credited to the module.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use probe_common::ModuleName;

use crate::{
    maps::{self, INIT_PENDING, MODULES, READ_ERRORS},
    text_pages,
};

#[kprobe]
pub fn init_start(ctx: ProbeContext) -> u32 {
    let Some(module) = ctx.arg::<u64>(0) else {
        return 0;
    };
    let task = bpf_get_current_pid_tgid();
    let _ = INIT_PENDING.insert(&task, &module, 0);
    0
}

#[kretprobe]
pub fn init_done(ctx: RetProbeContext) -> u32 {
    if let Err(slot) = try_init_done() {
        maps::failed(&ctx, "init_done", slot);
    }
    0
}

#[inline(always)]
fn try_init_done() -> Result<(), u32> {
    let task = bpf_get_current_pid_tgid();
    // SAFETY: a plain u64 value read from a map slot.
    let Some(&module) = (unsafe { INIT_PENDING.get(&task) }) else {
        return Ok(());
    };
    let _ = INIT_PENDING.remove(&task);
    let layout = maps::layout();
    let src = (module + layout.name as u64) as *const u8;
    let mut name = ModuleName::EMPTY;
    // SAFETY: the helper checks the address; the destination is a local array.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel_buf(src, &mut name.0) }
        .map_err(|_| READ_ERRORS)?;
    // On failure the module is already gone (module_free cleaned up).
    let Some(record) = MODULES.get_ptr_mut(&name) else {
        return Ok(());
    };
    // SAFETY: a registry value, written only on the load/free/init paths of
    // this module, which the loader serialises.
    let record = unsafe { &mut *record };
    if record.module_addr != module {
        return Ok(());
    }
    text_pages::unregister(
        record.init_text_base,
        record.init_text_size,
        record.incarnation,
    );
    record.init_text_base = 0;
    record.init_text_size = 0;
    Ok(())
}
