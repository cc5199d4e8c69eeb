//! `cargo xtask demo`: the live TUI in the user's terminal, in a VM running
//! Debian's kernel (most machines, CI's included, run kernels without
//! module support). Meanwhile sample modules from tests/modules load, work,
//! misbehave as designed (a module built for the PREEMPT_RT flavour,
//! force-loaded: CRC mismatches, taint F) and unload, in a loop. `q` ends
//! modscope, the guest's shell, and the VM.

use std::{io::IsTerminal as _, os::unix::fs::PermissionsExt as _, path::Path};

use anyhow::{Context as _, bail};

use crate::{artifacts, kernels, setup, shell, vm};

pub fn run() -> anyhow::Result<()> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        bail!(
            "the demo draws modscope's TUI in this terminal, and standard input or output is not one; \
             `cargo xtask run events` streams events instead"
        );
    }
    setup::run()?;
    let modscope = artifacts::modscope()?;
    let all = kernels::all()?;
    let kernel = kernels::x86_64_set(&all)?
        .into_iter()
        .next()
        .context("no kernel to boot")?;
    let modules = artifacts::test_modules(&kernel)?;
    let sibling = match kernels::sibling(&all, &kernel) {
        Some(s) => Some(artifacts::test_modules(s)?),
        None => None,
    };
    let work = vm::work_dir("demo-tui", &kernel)?;
    let script = work.join("demo-tui.sh");
    let (rows, cols) = terminal_size();
    std::fs::write(
        &script,
        script_text(&modscope, &modules, sibling.as_deref(), rows, cols),
    )?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    shell::step(&format!(
        "booting {} in a VM (software emulation: about a minute until the TUI shows); q quits modscope and the VM",
        kernel.describe()
    ));
    let status = vm::vng_boot(&kernel, &work)
        .arg("--shell")
        .arg(&script)
        .status()
        .context("starting vng")?;
    if !status.success() {
        bail!(
            "the demo VM ended with {status}; its files are in {}",
            work.display()
        );
    }
    Ok(())
}

/// The user's terminal size (the guest's serial console cannot ask).
fn terminal_size() -> (u16, u16) {
    // SAFETY: TIOCGWINSZ fills a winsize; a zeroed one is valid.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: stdout is a terminal (checked); ws is valid for the call.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
    if rc == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
        (ws.ws_row, ws.ws_col)
    } else {
        (24, 80)
    }
}

fn script_text(
    modscope: &Path,
    modules: &Path,
    sibling: Option<&Path>,
    rows: u16,
    cols: u16,
) -> String {
    // The module built for the other flavour is watched under its own name,
    // so its verdict is the one of the file that is force-loaded.
    let (watch_other, misbehave) = match sibling {
        Some(s) => (
            format!("--watch '{}/modscope_hello.ko'", s.display()),
            format!(
                "insmod -f '{}/modscope_hello.ko' 2>/dev/null; sleep 4; rmmod modscope_hello",
                s.display()
            ),
        ),
        None => (String::new(), ":".to_owned()),
    };
    format!(
        r#"#!/bin/sh
# Written by `cargo xtask demo`; the guest's console shell.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export TERM="${{TERM:-xterm-256color}}"
stty rows {rows} cols {cols} 2>/dev/null
M='{modules}'
(
  sleep 15
  while :; do
    insmod "$M/modscope_calls.ko"
    for n in 2000 4000 8000 4000 2000; do
      echo $n > /sys/module/modscope_calls/parameters/trigger; sleep 1
    done
    insmod "$M/modscope_proprietary.ko"; sleep 2
    {misbehave}
    insmod "$M/modscope_mutex.ko"; sleep 2
    rmmod modscope_calls modscope_proprietary modscope_mutex
    sleep 3
  done
) >/dev/null 2>&1 &
LOOP=$!
'{modscope}' live --watch "$M" {watch_other}
STATUS=$?
kill $LOOP 2>/dev/null
[ $STATUS -eq 0 ] || {{ echo "modscope exited with $STATUS; press Enter"; read _; }}

"#,
        modules = modules.display(),
        modscope = modscope.display(),
    )
}
