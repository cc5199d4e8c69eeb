//! `modscope guard`: refuse the modules judged unsafe on this kernel before
//! they load (BPF-LSM), and `guard --remove`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use modscope::{
    probe,
    session::{self, GuardOptions, LiveOptions, guard_start},
};
use probe_common::guard::Policy;

use super::probe_args::{KernelArgs, LogArgs, TraceFileArgs};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum PolicyArg {
    /// Allow every load; record what deny-incompatible would refuse.
    Audit,
    /// Refuse modules `check` judges incompatible with this kernel, forced
    /// loads (`insmod -f`) included, and any image whose struct module is
    /// not this kernel's size.
    #[default]
    DenyIncompatible,
    /// Also refuse what was not checked: modules from memory buffers
    /// (init_module) and files the guard has no verdict for.
    DenyUnchecked,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Audit => Policy::Audit,
            PolicyArg::DenyIncompatible => Policy::DenyIncompatible,
            PolicyArg::DenyUnchecked => Policy::DenyUnchecked,
        }
    }
}

#[derive(clap::Args)]
pub struct GuardArgs {
    /// What to refuse.
    #[arg(long, value_enum, default_value_t = PolicyArg::DenyIncompatible)]
    policy: PolicyArg,
    /// A module file, or a directory of them, to check before the guard
    /// attaches and again whenever it changes (repeatable). This kernel's
    /// module tree is checked too, in the background.
    #[arg(long, value_name = "PATH")]
    watch: Vec<PathBuf>,
    /// Do not check /lib/modules/RELEASE: only the --watch files have
    /// verdicts (under deny-unchecked, nothing else loads).
    #[arg(long)]
    no_module_tree: bool,
    /// Keep the programs attached after modscope ends (pinned in
    /// /sys/fs/bpf/modscope-guard) until `modscope guard --remove`.
    #[arg(long)]
    pin: bool,
    /// Remove a pinned guard, and do nothing else.
    #[arg(long, exclusive = true)]
    remove: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    #[command(flatten)]
    trace: TraceFileArgs,
    #[command(flatten)]
    kernel: KernelArgs,
    #[command(flatten)]
    log: LogArgs,
}

pub async fn run(args: GuardArgs) -> anyhow::Result<()> {
    let pin_dir = Path::new(guard_start::PIN_DIR);
    if args.remove {
        return remove(pin_dir);
    }
    let paths = args.kernel.paths();
    let release = modscope::kernel::features::release(&paths);
    let module_tree =
        (!args.no_module_tree).then(|| PathBuf::from(format!("/lib/modules/{release}")));
    session::run(LiveOptions {
        paths,
        json: args.json,
        duration: args.duration,
        calls: None,
        trace: args.trace.options(&[]),
        view: None,
        diagnostics: args.log.to_stderr(),
        metrics: None,
        guard: Some(GuardOptions {
            policy: args.policy.into(),
            watch: args.watch,
            module_tree,
            pin: args.pin.then(|| pin_dir.to_owned()),
        }),
    })
    .await?;
    Ok(())
}

fn remove(dir: &Path) -> anyhow::Result<()> {
    guard_start::mount_bpffs(dir.parent().unwrap_or(Path::new("/sys/fs/bpf")));
    let removed = probe::remove_pinned(dir)
        .with_context(|| format!("removing the pinned guard at {}", dir.display()))?;
    if removed.is_empty() {
        println!("no guard is pinned at {}", dir.display());
    } else {
        println!(
            "removed the pinned guard at {} ({} programs): module loads are no longer guarded",
            dir.display(),
            removed.len()
        );
    }
    Ok(())
}
