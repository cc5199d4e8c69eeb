//! `cargo xtask run`: modscope's main job, wherever this machine is. On a
//! kernel with modules, modscope runs here; on one without (CI machines,
//! this kind of host), a Debian kernel boots in a VM and modscope runs in
//! it while sample modules from tests/modules load and unload.

use std::{io::IsTerminal as _, path::Path, process::Command, time::Duration};

use anyhow::Context as _;

use crate::{artifacts, kernels, setup, shell, vm};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Arguments for modscope (default: the live TUI in a terminal, `events` otherwise).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let has_modules = Path::new("/proc/modules").exists();
    if args.args.is_empty() && interactive && !has_modules {
        return crate::demo::run();
    }
    setup::run()?;
    let modscope = artifacts::modscope()?;
    let modscope_args = match (args.args.is_empty(), interactive) {
        (true, true) => vec!["live".to_owned()],
        (true, false) => vec!["events".to_owned()],
        (false, _) => args.args,
    };
    if has_modules {
        shell::step(&format!(
            "running modscope {} on this kernel",
            modscope_args.join(" ")
        ));
        return shell::run("modscope", Command::new(&modscope).args(&modscope_args));
    }
    let all = kernels::all()?;
    let kernel = kernels::x86_64_set(&all)?
        .into_iter()
        .next()
        .context("no kernel to boot")?;
    shell::step(&format!(
        "this kernel has no module support; booting {} in a VM (software emulation, ~20 s) to run modscope there",
        kernel.describe()
    ));
    let modules = artifacts::test_modules(&kernel)?;
    let work = vm::work_dir("demo", &kernel)?;
    let script = work.join("demo.sh");
    std::fs::write(&script, demo_script(&modscope, &modscope_args, &modules))?;
    let outcome = vm::run(&vm::Boot {
        kernel: &kernel,
        script: &script,
        rw_dir: &work,
        timeout: Duration::from_secs(600),
        log: &work.join("console.log"),
        echo: true,
        grace_after: None,
        tcg: vm::Tcg::SingleThread,
    })?;
    if outcome.timed_out || outcome.panicked {
        anyhow::bail!(
            "the demo VM did not finish cleanly; console in {}",
            work.display()
        );
    }
    Ok(())
}

/// modscope in the background, sample modules loading and unloading in
/// front of it, then a clean stop.
fn demo_script(modscope: &Path, args: &[String], modules: &Path) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
        .collect();
    format!(
        r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
M='{modules}'
'{modscope}' {args} &
PID=$!
sleep 3
echo "--- demo: insmod modscope_hello.ko"
insmod "$M/modscope_hello.ko"; sleep 1
echo "--- demo: insmod modscope_proprietary.ko (taints P)"
insmod "$M/modscope_proprietary.ko"; sleep 1
echo "--- demo: rmmod both, then force-load modscope_hello (taints F)"
rmmod modscope_hello modscope_proprietary; sleep 1
insmod -f "$M/modscope_hello.ko"; sleep 1
rmmod modscope_hello; sleep 1
kill -INT $PID; wait $PID
echo "--- demo: done"
"#,
        modules = modules.display(),
        modscope = modscope.display(),
        args = quoted.join(" "),
    )
}
