//! `cargo xtask vm --kernel RELEASE -- COMMAND...` and `cargo xtask module
//! --kernel RELEASE DIR`: reproducing a scenario by hand on any suite
//! kernel, x86-64 or arm64.
//!
//! `vm` boots the kernel and runs COMMAND with that architecture's
//! `modscope` first on `PATH`. The project directory and `/tmp` are the
//! host's, at the same paths (x86-64: vng shares the whole root; arm64: 9p
//! shares of those two). The guest's output comes back on standard output
//! and the exit status is the command's.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, bail};

use crate::{artifacts, kernels, setup, shell, vm};

/// The line the guest ends with: the command's exit status.
const STATUS_MARKER: &str = "MODSCOPE-XTASK-VM-STATUS";

#[derive(clap::Args)]
pub struct VmArgs {
    /// The kernel to boot (`cargo xtask vm --kernel list` lists them).
    #[arg(long, value_name = "RELEASE")]
    kernel: String,
    /// Time limit in seconds, boot included.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// The command to run in the guest (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
pub struct ModuleArgs {
    /// The kernel whose headers to build against.
    #[arg(long, value_name = "RELEASE")]
    kernel: String,
    /// The out-of-tree module's directory (a Kbuild or Makefile in it).
    dir: PathBuf,
}

/// The suite kernel named `release`, or an error listing them.
fn kernel_named(release: &str) -> anyhow::Result<kernels::Kernel> {
    let all = kernels::all()?;
    all.iter()
        .find(|k| k.release == release)
        .cloned()
        .with_context(|| {
            let known: Vec<String> = all
                .iter()
                .map(|k| format!("{} [{:?}]", k.describe(), k.arch))
                .collect();
            format!("no kernel {release}; these can boot: {}", known.join(", "))
        })
}

pub fn vm(args: VmArgs) -> anyhow::Result<std::process::ExitCode> {
    setup::run()?;
    let kernel = kernel_named(&args.kernel)?;
    let modscope = artifacts::modscope_for(kernel.arch)?;
    let work = vm::work_dir("xtask-vm", &kernel)?;
    let script = work.join("command.sh");
    let bin_dir = modscope.parent().expect("a binary in a directory");
    let quoted: Vec<String> = args.command.iter().map(|a| shell_quote(a)).collect();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexport PATH='{}':/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             grep -q ' /sys/kernel/tracing ' /proc/mounts || mount -t tracefs tracefs /sys/kernel/tracing\n\
             cd '{}'\n{}\necho \"{STATUS_MARKER} $?\"\n",
            bin_dir.display(),
            std::env::current_dir()?.display(),
            quoted.join(" ")
        ),
    )?;
    shell::step(&format!(
        "booting {} to run: {}",
        kernel.describe(),
        quoted.join(" ")
    ));
    let outcome = vm::run(&vm::Boot {
        kernel: &kernel,
        script: &script,
        rw_dir: &work,
        timeout: Duration::from_secs(args.timeout),
        log: &work.join("console.log"),
        echo: true,
        grace_after: Some((STATUS_MARKER, Duration::from_secs(15))),
        tcg: vm::Tcg::SingleThread,
    })?;
    let status = outcome
        .lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(STATUS_MARKER))
        .and_then(|s| s.trim().parse::<u8>().ok());
    match status {
        Some(code) => Ok(std::process::ExitCode::from(code)),
        None if outcome.timed_out => bail!("the guest timed out after {} s", args.timeout),
        None => bail!(
            "the guest ended before the command did (console: {})",
            work.join("console.log").display()
        ),
    }
}

fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

pub fn module(args: ModuleArgs) -> anyhow::Result<()> {
    let kernel = kernel_named(&args.kernel)?;
    let dir = args
        .dir
        .canonicalize()
        .with_context(|| format!("{}", args.dir.display()))?;
    shell::run(
        &format!("building {} against {}", dir.display(), kernel.describe()),
        Command::new("make")
            .arg("-C")
            .arg(&kernel.build_dir)
            .arg(format!("M={}", dir.display()))
            .args(artifacts::cross_compile(kernel.arch))
            .arg("modules"),
    )?;
    let mut built: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ko"))
        .collect();
    built.sort();
    if built.is_empty() {
        bail!("make built no .ko in {}", dir.display());
    }
    for ko in built {
        println!("{}", ko.display());
    }
    Ok(())
}
