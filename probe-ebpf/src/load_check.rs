//! The layout check at load: a kprobe on `load_module(struct load_info *)`,
//! which runs before the loader has looked at the image. It finds the
//! image's `.gnu.linkonce.this_module` section (the module's compiled
//! `struct module`) by walking the ELF section headers, and reports a size
//! that is not this kernel's `sizeof(struct module)`: a module built for a
//! kernel whose debug or tracing options changed `struct module` (lockdep,
//! DEBUG_MUTEXES via `param_lock`, ftrace, kprobes, ...). Reads go through
//! `bpf_probe_read_kernel`; a malformed image ends the walk, never faults.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
    },
    macros::kprobe,
    programs::ProbeContext,
};
use probe_common::{EventHeader, EventKind, LoadLayoutEvent, ModuleName};

use crate::maps::{self, EVENTS, LOST_EVENTS, READ_ERRORS};

/// Section headers examined at most (the verifier walks this bound;
/// Debian's modules have 30 to 60 sections).
const MAX_SECTIONS: u64 = 96;
/// `sizeof(Elf64_Shdr)`.
const SHDR_SIZE: u64 = 64;

/// ".gnu.linkonce.this_module\0" as three little-endian words and a tail.
const NAME_W0: u64 = u64::from_le_bytes(*b".gnu.lin");
const NAME_W1: u64 = u64::from_le_bytes(*b"konce.th");
const NAME_W2: u64 = u64::from_le_bytes(*b"is_modul");
const NAME_TAIL: u16 = u16::from_le_bytes(*b"e\0");

#[kprobe]
pub fn load_check(ctx: ProbeContext) -> u32 {
    if let Err(slot) = try_load_check(&ctx) {
        maps::failed(&ctx, "load_check", slot);
    }
    0
}

#[inline(always)]
pub fn read<T>(addr: u64) -> Result<T, u32> {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(|_| READ_ERRORS)
}

/// The offset and size of `.gnu.linkonce.this_module` in the ELF image at
/// `hdr` (kernel memory), if it has one among its first [`MAX_SECTIONS`]
/// sections. Shared with the guard, which checks the image it is handed.
#[inline(always)]
pub fn this_module_section(hdr: u64) -> Result<Option<(u64, u64)>, u32> {
    let shoff: u64 = read(hdr + 0x28)?;
    let shnum = u64::from(read::<u16>(hdr + 0x3c)?);
    let shstrndx = u64::from(read::<u16>(hdr + 0x3e)?);
    let strtab: u64 = read(hdr + shoff + shstrndx * SHDR_SIZE + 24)?;
    for i in 0..MAX_SECTIONS {
        if i >= shnum {
            break;
        }
        let sh = hdr + shoff + i * SHDR_SIZE;
        let name_off = u64::from(read::<u32>(sh)?);
        let name = hdr + strtab + name_off;
        let Ok(words) = read::<[u64; 3]>(name) else {
            continue;
        };
        if words != [NAME_W0, NAME_W1, NAME_W2] || read::<u16>(name + 24) != Ok(NAME_TAIL) {
            continue;
        }
        return Ok(Some((read::<u64>(sh + 24)?, read::<u64>(sh + 32)?)));
    }
    Ok(None)
}

#[inline(always)]
fn try_load_check(ctx: &ProbeContext) -> Result<(), u32> {
    let cfg = maps::load_check();
    if cfg.struct_module_size == 0 {
        return Ok(());
    }
    let info: u64 = ctx.arg(0).ok_or(READ_ERRORS)?;
    let hdr: u64 = read(info + u64::from(cfg.info_hdr))?;
    let Some((offset, size)) = this_module_section(hdr)? else {
        return Ok(());
    };
    if size == cfg.struct_module_size {
        return Ok(());
    }
    let name_offset = u64::from(maps::layout().name);
    let name: ModuleName = read(hdr + offset + name_offset).unwrap_or(ModuleName::EMPTY);
    let Some(mut entry) = EVENTS.reserve::<LoadLayoutEvent>(0) else {
        return Err(LOST_EVENTS);
    };
    entry.write(LoadLayoutEvent {
        header: EventHeader {
            kind: EventKind::LoadLayout as u32,
            // SAFETY: no preconditions.
            cpu: unsafe { bpf_get_smp_processor_id() },
            // SAFETY: no preconditions.
            ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        pid_tgid: bpf_get_current_pid_tgid(),
        module_size: size,
        kernel_size: cfg.struct_module_size,
        name,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(0);
    Ok(())
}
