//! `cargo xtask stress`: churn kprobes in a VM and count guest crashes.
//! Each round starts `modscope record --watch modscope_calls.ko` (kprobes
//! on its imports, kfree among them), loads the module, makes it call,
//! unloads it and stops modscope (every kprobe disarmed), while a shell
//! loop keeps the kernel allocating and freeing. The guest is rebooted
//! after a crash until `rounds` rounds have run. This is how the
//! multi-threaded TCG crash (a call to address 0 while a kprobe on kfree
//! is disarmed) was measured; `--multi-threaded-tcg` brings it back.

use std::{path::Path, time::Duration};

use anyhow::Context as _;

use crate::{artifacts, kernels, setup, shell, vm};

#[derive(clap::Args)]
pub struct StressArgs {
    /// Kernel release to boot (default: the first of the suite's kernels).
    #[arg(long)]
    kernel: Option<String>,
    /// Record/insmod/rmmod/stop rounds in all.
    #[arg(long, default_value_t = 20)]
    rounds: u32,
    /// qemu's default emulation (a host thread per vCPU) instead of the
    /// single-threaded one everything else uses.
    #[arg(long)]
    multi_threaded_tcg: bool,
}

pub fn run(args: StressArgs) -> anyhow::Result<()> {
    setup::run()?;
    let all = kernels::all()?;
    let kernel = match &args.kernel {
        Some(r) => all
            .iter()
            .find(|k| &k.release == r)
            .cloned()
            .with_context(|| format!("{r} is not installed with headers"))?,
        None => kernels::x86_64_set(&all)?
            .into_iter()
            .next()
            .context("no kernel to boot")?,
    };
    let modscope = artifacts::modscope()?;
    let modules = artifacts::test_modules(&kernel)?;
    let tcg = if args.multi_threaded_tcg {
        vm::Tcg::MultiThread
    } else {
        vm::Tcg::SingleThread
    };
    let (mut done, mut crashes, mut boots) = (0u32, 0u32, 0u32);
    while done < args.rounds {
        boots += 1;
        let work = vm::work_dir("stress", &kernel)?;
        let script = work.join("stress.sh");
        std::fs::write(
            &script,
            guest_script(&modscope, &modules, args.rounds - done),
        )?;
        shell::step(&format!(
            "boot {boots} on {} ({tcg:?} TCG): {} rounds to go",
            kernel.describe(),
            args.rounds - done
        ));
        let outcome = vm::run(&vm::Boot {
            kernel: &kernel,
            script: &script,
            rw_dir: &work,
            timeout: Duration::from_secs(120 + 90 * u64::from(args.rounds - done)),
            log: &work.join("console.log"),
            echo: false,
            grace_after: Some(("STRESS-END", Duration::from_secs(15))),
            tcg,
        })?;
        let rounds = outcome
            .lines
            .iter()
            .filter(|l| l.contains("STRESS-ROUND"))
            .count() as u32;
        done += rounds;
        let crashed = !vm::oops_excerpt(&outcome.lines, 1).is_empty();
        if crashed {
            crashes += 1;
            eprintln!("    the guest crashed after {rounds} rounds:");
            for line in vm::oops_excerpt(&outcome.lines, 16) {
                eprintln!("      {line}");
            }
        } else if outcome.timed_out || rounds == 0 {
            anyhow::bail!(
                "the guest stopped without a crash after {rounds} rounds; console in {}",
                work.display()
            );
        }
    }
    println!(
        "stress: {done} rounds on {} with {tcg:?} TCG, {crashes} guest crashes",
        kernel.release
    );
    Ok(())
}

fn guest_script(modscope: &Path, modules: &Path, rounds: u32) -> String {
    format!(
        r#"#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
M='{modules}'
B='{modscope}'
( while :; do cat /proc/self/status /proc/meminfo >/dev/null; ls / >/dev/null; done ) &
BUSY=$!
i=0
while [ $i -lt {rounds} ]; do
  "$B" record --json --watch "$M/modscope_calls.ko" > /tmp/stress.json 2>/tmp/stress.err &
  P=$!
  n=0
  while ! grep -q '"ready"' /tmp/stress.json 2>/dev/null; do
    sleep 0.2; n=$((n+1)); [ $n -gt 600 ] && break
  done
  insmod "$M/modscope_calls.ko"
  echo 500 > /sys/module/modscope_calls/parameters/trigger
  rmmod modscope_calls
  kill -INT $P; wait $P
  echo "STRESS-ROUND $i modscope exited $?"
  i=$((i+1))
done
kill $BUSY
echo STRESS-END
"#,
        modules = modules.display(),
        modscope = modscope.display(),
    )
}
