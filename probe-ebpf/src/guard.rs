//! The guard: BPF-LSM programs on the module load paths, and kprobes on the
//! same security hooks for kernels where BPF-LSM cannot attach (they
//! observe, never refuse).
//!
//! - `kernel_read_file` with `READING_MODULE` (finit_module): the file's
//!   key (device, inode, change time) looked up in `GUARD_FILES`, the
//!   verdicts user space computed; firmware, kexec and policy reads pass.
//! - `kernel_post_read_file` / `kernel_post_load_data`: the image itself,
//!   its `.gnu.linkonce.this_module` size against this kernel's
//!   `sizeof(struct module)`, for files never checked as well.
//! - `kernel_load_data` with `LOADING_MODULE` (init_module from a buffer):
//!   unchecked by nature.
//! - `kernel_module_request`: the kernel asking modprobe for a module,
//!   recorded, never refused.
//!
//! The decision table is `probe_common::guard::decide`; every decision that
//! concerns a module is an event in `EVENTS`.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel_str_bytes,
    },
    macros::{kprobe, lsm},
    programs::{LsmContext, ProbeContext},
};
use probe_common::{
    EventHeader, EventKind, FileKey, GuardConfig, GuardEvent, ModuleName,
    guard::{Decision, Judgement, Stage, decide},
};

use crate::{
    load_check::{read, this_module_section},
    maps::{self, EVENTS, GUARD_FILES, LOST_EVENTS},
};

/// What an LSM program returns to refuse: -EPERM.
const REFUSE: i32 = -1;

/// The facts of one decision, before it becomes an event.
struct Finding {
    stage: Stage,
    judgement: Judgement,
    key: FileKey,
    module_size: u64,
    kernel_size: u64,
    name: ModuleName,
}

impl Finding {
    fn new(stage: Stage, judgement: Judgement) -> Self {
        Self {
            stage,
            judgement,
            key: FileKey::default(),
            module_size: 0,
            kernel_size: 0,
            name: ModuleName::EMPTY,
        }
    }
}

#[lsm(hook = "kernel_read_file")]
pub fn guard_read_file(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(3);
    if earlier != 0 {
        return earlier;
    }
    verdict_of(&ctx, on_read_file(ctx.arg(0), ctx.arg(1), true))
}

#[lsm(hook = "kernel_post_read_file")]
pub fn guard_post_read_file(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(4);
    if earlier != 0 {
        return earlier;
    }
    let id: u32 = ctx.arg(3);
    let wanted = guard().reading_module;
    verdict_of(&ctx, on_image(ctx.arg(1), ctx.arg(2), id == wanted, true))
}

#[lsm(hook = "kernel_load_data")]
pub fn guard_load_data(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(2);
    if earlier != 0 {
        return earlier;
    }
    verdict_of(&ctx, on_load_data(ctx.arg(0), true))
}

#[lsm(hook = "kernel_post_load_data")]
pub fn guard_post_load_data(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(4);
    if earlier != 0 {
        return earlier;
    }
    let id: u32 = ctx.arg(2);
    let wanted = guard().loading_module;
    verdict_of(&ctx, on_image(ctx.arg(0), ctx.arg(1), id == wanted, true))
}

#[lsm(hook = "kernel_module_request")]
pub fn guard_module_request(ctx: LsmContext) -> i32 {
    let earlier: i32 = ctx.arg(1);
    if earlier != 0 {
        return earlier;
    }
    verdict_of(&ctx, on_request(ctx.arg(0)))
}

/// The kprobe fallback on `security_kernel_read_file(file, id, contents)`.
#[kprobe]
pub fn guard_read_file_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(file), Some(id)) = (ctx.arg(0), ctx.arg(1)) else {
        return 0;
    };
    let _ = verdict_of(&ctx, on_read_file(file, id, false));
    0
}

/// The kprobe fallback on
/// `security_kernel_post_read_file(file, buf, size, id)`.
#[kprobe]
pub fn guard_post_read_file_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(buf), Some(size), Some(id)) = (ctx.arg(1), ctx.arg(2), ctx.arg::<u32>(3)) else {
        return 0;
    };
    let wanted = guard().reading_module;
    let _ = verdict_of(&ctx, on_image(buf, size, id == wanted, false));
    0
}

/// The kprobe fallback on `security_kernel_load_data(id, contents)`.
#[kprobe]
pub fn guard_load_data_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(id) = ctx.arg(0) {
        let _ = verdict_of(&ctx, on_load_data(id, false));
    }
    0
}

/// The LSM return value for a decision, after its event is out.
#[inline(always)]
fn verdict_of<C: aya_ebpf::EbpfContext>(
    ctx: &C,
    outcome: Result<Option<(Finding, Decision)>, u32>,
) -> i32 {
    match outcome {
        Ok(Some((finding, decision))) => {
            if let Err(slot) = report(&finding, decision) {
                maps::failed(ctx, "guard", slot);
            }
            if decision == Decision::Refused {
                REFUSE
            } else {
                0
            }
        }
        Ok(None) => 0,
        Err(slot) => {
            // A kernel read failed: the file is unchecked as far as the
            // guard can tell, so the policy's answer for that stands.
            maps::failed(ctx, "guard", slot);
            let policy = guard().policy;
            match decide(policy, Judgement::Unchecked as u32, true) {
                Decision::Refused => REFUSE,
                _ => 0,
            }
        }
    }
}

#[inline(always)]
fn guard() -> GuardConfig {
    maps::guard()
}

#[inline(always)]
fn decided(finding: Finding, can_refuse: bool) -> Option<(Finding, Decision)> {
    let decision = decide(guard().policy, finding.judgement as u32, can_refuse);
    Some((finding, decision))
}

#[inline(always)]
fn on_read_file(file: u64, id: u32, can_refuse: bool) -> Result<Option<(Finding, Decision)>, u32> {
    let cfg = guard();
    if cfg.valid == 0 || id != cfg.reading_module {
        return Ok(None);
    }
    let key = file_key(file, &cfg)?;
    // SAFETY: the value is copied out at once; user space may replace it.
    let judgement = match unsafe { GUARD_FILES.get(&key) }.copied() {
        Some(tag) => Judgement::try_from(tag).unwrap_or(Judgement::Unchecked),
        None => Judgement::Unchecked,
    };
    let mut finding = Finding::new(Stage::File, judgement);
    finding.key = key;
    Ok(decided(finding, can_refuse))
}

/// The image check: an event only for a foreign `struct module`.
#[inline(always)]
fn on_image(
    buf: u64,
    size: u64,
    is_module: bool,
    can_refuse: bool,
) -> Result<Option<(Finding, Decision)>, u32> {
    let cfg = guard();
    let kernel_size = maps::load_check().struct_module_size;
    if cfg.valid == 0 || !is_module || kernel_size == 0 || buf == 0 {
        return Ok(None);
    }
    // An image the walk cannot read (not ELF: a compressed module the
    // kernel decompresses later) is no finding.
    let Ok(Some((offset, module_size))) = this_module_section(buf) else {
        return Ok(None);
    };
    if module_size == kernel_size || offset >= size {
        return Ok(None);
    }
    let mut finding = Finding::new(Stage::Image, Judgement::ForeignStructModule);
    finding.module_size = module_size;
    finding.kernel_size = kernel_size;
    finding.name = read(buf + offset + u64::from(maps::layout().name)).unwrap_or(ModuleName::EMPTY);
    Ok(decided(finding, can_refuse))
}

#[inline(always)]
fn on_load_data(id: u32, can_refuse: bool) -> Result<Option<(Finding, Decision)>, u32> {
    let cfg = guard();
    if cfg.valid == 0 || id != cfg.loading_module {
        return Ok(None);
    }
    Ok(decided(
        Finding::new(Stage::Buffer, Judgement::Unchecked),
        can_refuse,
    ))
}

/// A request is recorded with the name asked for, and always allowed.
#[inline(always)]
fn on_request(name_ptr: u64) -> Result<Option<(Finding, Decision)>, u32> {
    if guard().valid == 0 {
        return Ok(None);
    }
    let mut finding = Finding::new(Stage::Request, Judgement::Unchecked);
    // SAFETY: bpf_probe_read_kernel_str checks the address; the
    // destination is the finding's own buffer.
    let _ = unsafe { bpf_probe_read_kernel_str_bytes(name_ptr as *const u8, &mut finding.name.0) };
    Ok(Some((finding, Decision::Allowed)))
}

/// The file's identity as the kernel has it now.
#[inline(always)]
fn file_key(file: u64, cfg: &GuardConfig) -> Result<FileKey, u32> {
    let inode: u64 = read(file + u64::from(cfg.file_inode))?;
    let sb: u64 = read(inode + u64::from(cfg.inode_sb))?;
    let nsec_at = inode + u64::from(cfg.inode_ctime_nsec);
    let ctime_nsec = if cfg.ctime_nsec_width == 4 {
        u64::from(read::<u32>(nsec_at)?)
    } else {
        read::<u64>(nsec_at)?
    };
    Ok(FileKey {
        dev: u64::from(read::<u32>(sb + u64::from(cfg.sb_dev))?),
        ino: read(inode + u64::from(cfg.inode_ino))?,
        ctime_sec: read(inode + u64::from(cfg.inode_ctime_sec))?,
        ctime_nsec,
    })
}

#[inline(always)]
fn report(finding: &Finding, decision: Decision) -> Result<(), u32> {
    let Some(mut entry) = EVENTS.reserve::<GuardEvent>(0) else {
        return Err(LOST_EVENTS);
    };
    entry.write(GuardEvent {
        header: EventHeader {
            kind: EventKind::Guard as u32,
            // SAFETY: no preconditions.
            cpu: unsafe { bpf_get_smp_processor_id() },
            // SAFETY: no preconditions.
            ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        pid_tgid: bpf_get_current_pid_tgid(),
        stage: finding.stage as u32,
        decision: decision as u32,
        judgement: finding.judgement as u32,
        policy: guard().policy,
        key: finding.key,
        module_size: finding.module_size,
        kernel_size: finding.kernel_size,
        name: finding.name,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(0);
    Ok(())
}
