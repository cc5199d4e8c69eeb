//! Running commands with their failures explained.

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Runs `cmd` with inherited stdio; an error names `what` and the command.
pub fn run(what: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("{what}: could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{what}: {cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs `cmd` and returns its stdout; true/false for "did it succeed" is
/// the caller's business, so a failure is not an error here.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn step(msg: &str) {
    eprintln!("==> {msg}");
}

pub fn skip(msg: &str) {
    eprintln!("    {msg}: already there, skipping");
}
