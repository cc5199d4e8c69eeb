//! Setting the guard up, in the order that keeps it honest: its settings
//! from BTF before the programs load; the `--watch` files checked and in
//! the kernel's map before any program attaches; BPF-LSM's state read (a
//! deny policy on a kernel that cannot refuse is an error, not a silent
//! audit); the pin directory claimed; the programs attached; then the
//! watcher and the module tree's background check.

use std::{path::Path, sync::Arc};

use modscope_analysis::target::{self, TargetSpec};
use probe_common::{GuardConfig, guard::Policy};

use super::{
    GuardOptions,
    error::{Result, SessionError},
    event::Event,
    guard_desk::{GuardDesk, MapChange},
};
use crate::{
    guard::{
        catalog::{self, CheckedFile},
        lsm::LsmState,
        watcher::{self, WatchSet},
    },
    kernel::{features::KernelPaths, file_identity},
    probe::{GuardMode, ModuleProbe},
    trace::guard_display::{GuardReason, judgement_name, policy_name},
};

/// Where `--pin` keeps the programs.
pub const PIN_DIR: &str = "/sys/fs/bpf/modscope-guard";

/// The programs' settings, read before they load.
pub fn config(paths: &KernelPaths, policy: Policy) -> Result<GuardConfig> {
    let btf = crate::kernel::lean_btf::open(&paths.vmlinux_btf)
        .map_err(|e| SessionError::GuardBtf(e.to_string()))?;
    file_identity::guard_config(&btf, policy).map_err(|e| SessionError::GuardBtf(e.to_string()))
}

/// Checks the named files, attaches the programs, starts the watcher.
/// Returns the desk and the events that say what was done.
pub fn attach(
    probe: &mut ModuleProbe,
    paths: &KernelPaths,
    opts: &GuardOptions,
) -> Result<(GuardDesk, Vec<Event>)> {
    let spec = TargetSpec {
        config: paths.config.clone(),
        btf: Some(paths.vmlinux_btf.clone()),
        ..TargetSpec::default()
    };
    let target = Arc::new(target::resolve(&spec).map_err(SessionError::GuardTarget)?);
    for p in &opts.watch {
        if !p.exists() {
            return Err(SessionError::Watch {
                path: p.display().to_string(),
                error: "no such file or directory".into(),
            });
        }
    }
    let set = WatchSet::new(&opts.watch, opts.module_tree.clone());
    let mut desk = GuardDesk::new(opts.policy);
    let mut events = Vec::new();
    for path in set.named_files() {
        let file = catalog::check(&path, &target);
        events.push(checked_event(&file));
        apply(probe, desk.accept(file))?;
    }
    let lsm = LsmState::read(Some(&target.config));
    let (mode, pinned) = attach_programs(probe, paths, opts, &lsm)?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    watcher::spawn(set, target, tx)
        .map_err(SessionError::io("starting the guard's file watcher"))?;
    desk.updates = Some(rx);
    events.push(ready_event(
        opts.policy,
        &mode,
        pinned.as_deref(),
        desk.checked_files(),
    ));
    Ok((desk, events))
}

fn attach_programs(
    probe: &mut ModuleProbe,
    paths: &KernelPaths,
    opts: &GuardOptions,
    lsm: &LsmState,
) -> Result<(GuardMode, Option<String>)> {
    if let Some(why) = lsm.explain() {
        if opts.policy != Policy::Audit || opts.pin.is_some() {
            return Err(SessionError::GuardUnavailable(why));
        }
        probe.attach_guard_kprobes()?;
        return Ok((GuardMode::Kprobes { lsm_refused: why }, None));
    }
    let pin = opts.pin.as_deref().map(claim_pin_dir).transpose()?;
    let btf = aya::Btf::parse_file(&paths.vmlinux_btf, aya::Endianness::default())
        .map_err(|e| SessionError::GuardBtf(e.to_string()))?;
    let mode = probe.attach_guard(&btf, pin.as_deref())?;
    Ok((mode, pin.map(|p| p.display().to_string())))
}

/// The pin directory, on a mounted bpffs, empty (no guard pinned yet).
fn claim_pin_dir(dir: &Path) -> Result<std::path::PathBuf> {
    let parent = dir.parent().unwrap_or(Path::new("/sys/fs/bpf"));
    mount_bpffs(parent);
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(SessionError::GuardPinned(dir.display().to_string()));
    }
    std::fs::create_dir_all(dir).map_err(SessionError::io(format!(
        "creating the pin directory {} (is bpffs mounted on {}?)",
        dir.display(),
        parent.display()
    )))?;
    Ok(dir.to_owned())
}

/// Mounts bpffs on `at` unless one is there (`BPF_FS_MAGIC`).
pub fn mount_bpffs(at: &Path) {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let Ok(c_path) = std::ffi::CString::new(at.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: a zeroed statfs is a valid out-buffer; the path is
    // NUL-terminated and lives across both calls.
    unsafe {
        let mut fs: libc::statfs = std::mem::zeroed();
        if libc::statfs(c_path.as_ptr(), &mut fs) == 0 && fs.f_type as i64 == BPF_FS_MAGIC {
            return;
        }
        libc::mount(
            c"bpf".as_ptr(),
            c_path.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        );
    }
}

/// Writes one accepted check into the kernel's map.
pub fn apply(probe: &mut ModuleProbe, change: MapChange) -> Result<()> {
    if let Some(key) = change.forget {
        probe.forget_file(&key)?;
    }
    if let Some((key, judgement)) = change.judge {
        probe.judge_file(&key, judgement)?;
    }
    Ok(())
}

pub fn checked_event(file: &CheckedFile) -> Event {
    Event::GuardChecked {
        time: Event::now(),
        file: file.path.display().to_string(),
        module: file.module.clone(),
        verdict: judgement_name(file.judgement),
        reasons: GuardReason::list(&file.reasons),
        error: file.error.clone(),
    }
}

fn ready_event(policy: Policy, mode: &GuardMode, pinned: Option<&str>, files: usize) -> Event {
    let (mode_name, why_not_lsm) = match mode {
        GuardMode::Lsm => ("lsm", None),
        GuardMode::Kprobes { lsm_refused } => ("kprobes", Some(lsm_refused.clone())),
    };
    let on_exit = match (mode, pinned) {
        (GuardMode::Kprobes { .. }, _) => "nothing is refused: kprobes only observe".to_owned(),
        (_, Some(dir)) => format!(
            "the programs stay pinned at {dir} after modscope ends, judging by the verdicts they hold, until `modscope guard --remove`"
        ),
        (_, None) => "the programs go with this process: if modscope dies, loads are no longer guarded (fail-open; --pin keeps them)".to_owned(),
    };
    Event::GuardReady {
        time: Event::now(),
        policy: policy_name(policy),
        mode: mode_name,
        why_not_lsm,
        pinned: pinned.map(str::to_owned),
        on_exit,
        checked_files: files,
    }
}
